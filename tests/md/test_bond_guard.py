"""The ``bond`` guard: molecules stay molecules (issue 16, known answers).

The runner perceives the covalent bonds of each molecule of the starting frame and stops with runner status 16
(``ilmlff.md`` 505 ``ERROR_BOND_BROKEN``) when one of them is longer than ``max_bond_stretch`` x its starting
length. Known answers with a stand-in calculator whose bonds are Morse springs (the bond list taken from the
project's bond graph, :func:`aiida_ilmlff.sampling.molecules.bond_graph`, not from the guard's own perception):

- a constant force larger than the Morse bond's largest restoring force (D a / 2) pulls one F of a BF4- away:
  the bond dissociates, and the guard stops the run on that very bond;
- the same bonds at 600 K without the pull: thermal vibrations (a few per cent) never reach 1.5x, the run
  completes.

Morse springs only (no angle or intermolecular terms) make the molecules floppy and let them overlap, so these
runs switch the ``min_distance`` guard off; the bond guard does not depend on it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.io import read, write

from aiida_ilmlff.common.geometry import minimum_image
from aiida_ilmlff.runner import contract
from aiida_ilmlff.runner import guards as guard_module
from aiida_ilmlff.runner.contract import MD_OUTPUTS
from aiida_ilmlff.runner.md import run_md
from aiida_ilmlff.sampling.molecules import bond_graph

#: Morse well depth (eV) and width (1/Å) of every bond of the stand-in: largest restoring force D a / 2 = 4 eV/Å.
MORSE_D, MORSE_A = 4.0, 2.0


class MorseBonds(Calculator):
    """Stand-in force field: a Morse spring on every given bond (at its starting length), nothing else; plus an
    optional constant external force ``pull`` (eV/Å, shape (3,)) on atom ``pulled``."""

    implemented_properties = ('energy', 'forces')

    def __init__(self, pairs, lengths, pulled: int | None = None, pull=None):
        super().__init__()
        self.pairs = np.asarray(pairs, dtype=int)
        self.r0 = np.asarray(lengths, dtype=float)
        self.pulled = pulled
        self.pull = None if pull is None else np.asarray(pull, dtype=float)

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        positions = self.atoms.positions
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        delta = minimum_image(positions[j] - positions[i], self.atoms.cell.array)
        distance = np.linalg.norm(delta, axis=1)
        decay = np.exp(-MORSE_A * (distance - self.r0))
        energy = float(np.sum(MORSE_D * (1 - decay) ** 2))
        slope = 2 * MORSE_D * MORSE_A * decay * (1 - decay)  # dE/dr
        pair_force = (slope / distance)[:, None] * delta  # on i (towards j when stretched)
        forces = np.zeros_like(positions)
        np.add.at(forces, i, pair_force)
        np.add.at(forces, j, -pair_force)
        if self.pulled is not None:
            forces[self.pulled] += self.pull
            energy -= float(self.pull @ positions[self.pulled])
        self.results = {'energy': energy, 'forces': forces}


def _bonds(atoms):
    """Intramolecular bonds of the box (the project's bond graph, scale 1.2) and their lengths."""
    mol_id = atoms.arrays['mol_id']
    pairs = np.array(sorted((i, j) for i, j in bond_graph(atoms) if mol_id[i] == mol_id[j]))
    delta = minimum_image(atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]], atoms.cell.array)
    return pairs, np.linalg.norm(delta, axis=1)


def _settings(parameters):
    return {
        'structure': 'structure.extxyz',
        'models': [{'key': 'model_0', 'path': 'stand-in', 'architecture': 'mace'}],
        'parameters': parameters,
        'restart': None,
    }


def _nvt(temperature, steps, **guards):
    return {
        'ensemble': 'nvt',
        'temperature_K': temperature,
        'thermostat': 'langevin',
        'friction_per_fs': 0.02,
        'timestep_fs': 0.5,
        'steps': steps,
        'traj_every': 10,
        'thermo_every': 10,
        'checkpoint_every': 100,
        'seed': 3,
        'guards': {'min_distance_A': None, **guards},
    }


def _status(folder):
    return json.loads((folder / MD_OUTPUTS['status']).read_text())


def test_pulled_apart_molecule_stops_on_its_bond(runner_workdir, box_atoms):
    """A BF4- fluorine pulled by 6 eV/Å (> the Morse bond's 4 eV/Å): the guard stops the run on the B-F bond."""
    pairs, lengths = _bonds(box_atoms)
    symbols = box_atoms.get_chemical_symbols()
    molecules = box_atoms.info['molecules']
    boron = next(k for k, s in enumerate(symbols) if s == 'B')
    fluorine = next(int(j) for i, j in pairs if i == boron and symbols[j] == 'F')
    direction = minimum_image(box_atoms.positions[fluorine] - box_atoms.positions[boron], box_atoms.cell.array)
    pull = 6.0 * direction / np.linalg.norm(direction)
    calculator = MorseBonds(pairs, lengths, pulled=fluorine, pull=pull)

    code = run_md(_settings(_nvt(450.0, 2000)), runner_workdir, False, [calculator])

    status = _status(runner_workdir)
    assert code == 16 == contract.GUARDS['bond'].runner_status, status
    assert status['status'] == 'guard' and status['exit_status'] == 16
    guard = status['guard']
    bond = guard['bond']
    assert guard['name'] == 'bond' and sorted(guard['atoms']) == sorted([boron, fluorine])
    assert (bond['i'], bond['j']) == (min(boron, fluorine), max(boron, fluorine))
    assert sorted(bond['elements']) == ['B', 'F']
    assert bond['species'] == 'BF4' == list(molecules)[bond['molecule']]
    assert bond['stretch'] == pytest.approx(guard['value']) and bond['stretch'] > 1.5 == guard['threshold']
    assert bond['reference_length_A'] == pytest.approx(
        lengths[np.flatnonzero((pairs == [bond['i'], bond['j']]).all(1))[0]]
    )
    assert 'BF4' in bond['label'] and 'B(' in bond['label'] and 'F(' in bond['label']
    assert 0 < guard['step'] < 2000 and guard['time_fs'] == pytest.approx(0.5 * guard['step'])
    # the state that broke is written; the last good frame (checkpoint) still has the bond within 1.5x
    failure = read(runner_workdir / MD_OUTPUTS['failure'])
    broken = np.linalg.norm(minimum_image(failure.positions[fluorine] - failure.positions[boron], failure.cell.array))
    assert broken / bond['reference_length_A'] == pytest.approx(bond['stretch'], rel=1e-6)
    checkpoint = json.loads((runner_workdir / MD_OUTPUTS['checkpoint']).read_text())
    assert checkpoint['step'] < guard['step']
    good = np.array(checkpoint['positions'])
    kept = np.linalg.norm(minimum_image(good[fluorine] - good[boron], np.array(checkpoint['cell'])))
    assert kept / bond['reference_length_A'] <= 1.5
    # the checkpoint carries the starting frame's bonds, so a restart keeps the topology and the reference lengths
    assert len(checkpoint['bonds']) == len(pairs) == status['bond_guard']['bonds']
    assert status['bond_guard']['checks'] == guard['step'] + 1  # every step (bond_every 1) and step 0


def test_intact_molecules_at_600_K_run_to_the_end(runner_workdir, box_atoms):
    """The same bonds at 600 K, nothing pulling: the run completes; the largest stretch stays far below 1.5x."""
    pairs, lengths = _bonds(box_atoms)
    calculator = MorseBonds(pairs, lengths)

    code = run_md(_settings(_nvt(600.0, 1000)), runner_workdir, False, [calculator])

    status = _status(runner_workdir)
    assert code == 0, status
    assert status['status'] == 'completed' and status['bond_guard']['checks'] == 1001
    from aiida_ilmlff.analysis.trajectory import TrajectoryReader

    with TrajectoryReader(runner_workdir / MD_OUTPUTS['trajectory']) as reader:
        frames = reader.read()
        positions, cells = frames.positions, frames.cell
        temperature = reader.observable('temperature')
    assert temperature[len(temperature) // 2 :].mean() == pytest.approx(600.0, rel=0.25)
    stretch = np.max(
        [
            np.linalg.norm(minimum_image(frame[pairs[:, 1]] - frame[pairs[:, 0]], cell), axis=1) / lengths
            for frame, cell in zip(positions, cells)
        ]
    )
    print(f'largest bond stretch at 600 K over 500 fs: {stretch:.3f}')
    assert 1.02 < stretch < 1.3  # thermal: it moves, but nowhere near the guard


def test_restart_keeps_the_starting_bonds(runner_workdir, box_atoms, tmp_path, copy_tree):
    """A restart takes the bonds and reference lengths from the checkpoint, not from its own first frame."""
    pairs, lengths = _bonds(box_atoms)
    parameters = _nvt(600.0, 100)
    assert run_md(_settings(parameters), runner_workdir, False, [MorseBonds(pairs, lengths)]) == 0
    first = json.loads((runner_workdir / MD_OUTPUTS['checkpoint']).read_text())
    second = tmp_path / 'second'
    copy_tree(runner_workdir, second)
    (second / 'restart.json').write_text(json.dumps(first))
    settings = {**_settings({**parameters, 'steps': 200}), 'restart': 'restart.json'}
    assert run_md(settings, second, False, [MorseBonds(pairs, lengths)]) == 0
    status = _status(second)
    assert status['bond_guard']['reference'] == 'checkpoint'
    checkpoint = json.loads((second / MD_OUTPUTS['checkpoint']).read_text())
    assert checkpoint['bonds'] == first['bonds'] and checkpoint['bond_lengths_A'] == first['bond_lengths_A']
    np.testing.assert_allclose(sorted(first['bond_lengths_A']), sorted(lengths), rtol=1e-7)  # extxyz digits


def test_bond_reference_carries_the_topology_to_a_new_run(runner_workdir, box_atoms, tmp_path):
    """A fresh run (new structure, new velocities) given ``bond_reference`` keeps that checkpoint's bonds and
    starting lengths; a checkpoint of other atoms is refused (exit 2)."""
    pairs, lengths = _bonds(box_atoms)
    assert run_md(_settings(_nvt(600.0, 100)), runner_workdir, False, [MorseBonds(pairs, lengths)]) == 0
    checkpoint = (runner_workdir / MD_OUTPUTS['checkpoint']).read_text()
    second = tmp_path / 'second'
    second.mkdir()
    final = read(runner_workdir / MD_OUTPUTS['final'])
    write(str(second / 'structure.extxyz'), final, format='extxyz')
    (second / 'reference.json').write_text(checkpoint)
    settings = {**_settings(_nvt(600.0, 20)), 'bond_reference': 'reference.json'}
    assert run_md(settings, second, False, [MorseBonds(pairs, lengths)]) == 0
    assert _status(second)['bond_guard']['reference'] == 'bond_reference'
    assert (
        json.loads((second / MD_OUTPUTS['checkpoint']).read_text())['bond_lengths_A']
        == json.loads(checkpoint)['bond_lengths_A']
    )
    other = json.loads(checkpoint)
    other['numbers'] = other['numbers'][::-1]
    (second / 'reference.json').write_text(json.dumps(other))
    assert run_md(settings, second, False, [MorseBonds(pairs, lengths)]) == 2
    assert 'bond_reference' in _status(second)['reason']


def test_without_molecule_ids_the_guard_is_off_and_says_so(runner_workdir, box_atoms):
    """No ``mol_id``: no bonds to watch; ``status.json`` says why."""
    atoms = read(runner_workdir / 'structure.extxyz')
    del atoms.arrays['mol_id']
    atoms.info = {}
    write(str(runner_workdir / 'structure.extxyz'), atoms, format='extxyz')
    pairs, lengths = _bonds(box_atoms)
    assert run_md(_settings(_nvt(450.0, 10)), runner_workdir, False, [MorseBonds(pairs, lengths)]) == 0
    assert 'mol_id' in _status(runner_workdir)['bond_guard']['off']


# ---------------------------------------------------------------------------------------------- units


def test_bonds_are_intramolecular_and_minimum_image():
    """A molecule cut by the cell keeps its bond (minimum image); a close pair of two molecules is no bond."""
    cell = np.eye(3) * 10.0
    # C-H across the x boundary (1.09 Å through the image), and an H of molecule 1 1.0 Å from that C
    positions = np.array([[0.2, 5, 5], [9.11, 5, 5], [0.2, 6.2, 5], [0.2, 7.2, 5]])
    numbers = np.array([6, 1, 6, 1])
    mol_id = np.array([0, 0, 1, 1])
    watch = guard_module.BondWatch.from_frame(numbers, positions, cell, mol_id, ['CH', 'CH'])
    assert watch.pairs.tolist() == [[0, 1], [2, 3]]
    np.testing.assert_allclose(watch.reference_lengths, [1.09, 1.0], atol=1e-12)
    stretched = positions.copy()
    stretched[1, 0] -= 0.6  # the H moves away from its C, through the boundary
    np.testing.assert_allclose(watch.lengths(stretched, cell), [1.69, 1.0], atol=1e-12)
    assert watch.worst(stretched, cell) == (0, pytest.approx(1.69 / 1.09))


def test_bond_guard_trips_with_its_status_and_names_the_bond():
    """Runner status 16, exit code 505, the bond's atoms, elements, species and stretch in the failure."""
    cell = np.eye(3) * 10.0
    positions = np.array([[5.0, 5, 5], [6.4, 5, 5], [1.0, 1, 1]])
    watch = guard_module.BondWatch.from_frame(np.array([5, 9, 3]), positions, cell, np.array([0, 0, 1]), ['BF4', 'Li'])
    checker = guard_module.GuardChecker({'min_distance_A': None}, 400.0, 1000.0, watch)
    state = {
        'step': 7,
        'time_fs': 3.5,
        'energy': -1.0,
        'forces': np.zeros((3, 3)),
        'cell': cell,
        'temperature': 400.0,
        'volume': 1000.0,
    }
    assert checker.check(positions=positions, **state) is None
    positions[1, 0] = 5.0 + 1.4 * 1.49
    assert checker.check(positions=positions, **state) is None
    positions[1, 0] = 5.0 + 1.4 * 1.51
    failure = checker.check(positions=positions, **state)
    assert failure.guard.name == 'bond' and failure.guard.runner_status == 16 and failure.guard.exit_status == 505
    assert contract.guard_for_exit_status(16).exit_label == 'ERROR_BOND_BROKEN'
    assert failure.value == pytest.approx(1.51) and failure.atoms == [0, 1]
    info = failure.to_dict()
    json.dumps(info)
    assert info['bond']['elements'] == ['B', 'F'] and info['bond']['species'] == 'BF4'
    assert info['bond']['length_A'] == pytest.approx(1.4 * 1.51) and info['step'] == 7
    assert checker.check(positions=positions, check_bonds=False, **state) is None  # not a bond step
    off = guard_module.GuardChecker({'min_distance_A': None, 'max_bond_stretch': None}, 400.0, 1000.0, watch)
    assert off.check(positions=positions, **state) is None


def test_bond_perception_scale_is_the_project_s():
    """The guard perceives bonds like the box checks and the molecule tools (one criterion)."""
    from aiida_ilmlff.systems.checks import BOND_SCALE

    assert contract.BOND_PERCEPTION_SCALE == BOND_SCALE


@pytest.mark.parametrize(
    ('value', 'fragment'),
    [
        (1.0, 'must be > 1'),
        (0.8, 'must be > 1'),
        (-2.0, 'must be > 1'),
        ('1.5', 'must be a number > 1 or null'),
        (True, 'must be a number > 1 or null'),
        (float('inf'), 'must be a number > 1 or null'),
    ],
)
def test_bond_threshold_at_or_below_one_is_refused(value, fragment):
    """A threshold <= 1 would stop every run at its first vibration: a clear error naming the key."""
    errors = contract.validate_parameters(
        {'ensemble': 'nve', 'steps': 10, 'initial_temperature_K': 300.0, 'guards': {'max_bond_stretch': value}}
    )
    assert len(errors) == 1 and 'parameters.guards.max_bond_stretch' in errors[0] and fragment in errors[0], errors


def test_bond_guard_settings_accepted():
    """1.2, null (off) and ``bond_every`` are valid; ``bond_every`` 0 is not; the default is 1.5 every step."""
    base = {'ensemble': 'nve', 'steps': 10, 'initial_temperature_K': 300.0}
    assert contract.validate_parameters({**base, 'guards': {'max_bond_stretch': 1.2, 'bond_every': 5}}) == []
    assert contract.validate_parameters({**base, 'guards': {'max_bond_stretch': None}}) == []
    assert 'bond_every' in contract.validate_parameters({**base, 'guards': {'bond_every': 0}})[0]
    resolved = contract.resolve_parameters(base)['guards']
    assert resolved['max_bond_stretch'] == 1.5 and resolved['bond_every'] == 1


def test_bond_check_cost(box_atoms):
    """What one check costs on the 70-atom box and on a 27x larger one (printed; documented in docs/md.md)."""
    for repeat in (1, 3):
        atoms = box_atoms.repeat(repeat)  # whole copies of the box, one after the other
        n_molecules = int(box_atoms.arrays['mol_id'].max()) + 1
        atoms.arrays['mol_id'] = np.concatenate(
            [box_atoms.arrays['mol_id'] + k * n_molecules for k in range(repeat**3)]
        )
        watch = guard_module.BondWatch.from_frame(
            atoms.numbers, atoms.positions, atoms.cell.array, atoms.arrays['mol_id']
        )
        assert len(watch.pairs) == 34 * 2 * repeat**3  # PYR14+ 30 bonds (10 heavy-atom, 20 C-H) + BF4- 4, 2 pairs
        positions, cell = atoms.positions, atoms.cell.array
        started = time.perf_counter()
        for _ in range(500):
            watch.worst(positions, cell)
        per_check = (time.perf_counter() - started) / 500
        print(f'{len(atoms)} atoms, {len(watch.pairs)} bonds: {1e6 * per_check:.0f} us per bond check')
