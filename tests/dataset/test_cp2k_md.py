"""Reading CP2K MD files (units, steps, unconverged SCF, restarts), on a real 8-step GFN1-xTB run of Li+ BF4-.

``data/cp2k_md_libf4``: CP2K 2023.1, ``md.inp`` on ``frame.xyz`` (6 atoms, 8 Å box), NVT CSVR at 600 K, 0.5 fs,
with the analytical stress of every step printed into ``aiida.out`` (``STRESS_TENSOR ANALYTICAL``).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from aiida import orm
from ase import units
from ase.io import read

from aiida_ilmlff.calculations.functions.sampling import parse_cp2k_md
from aiida_ilmlff.parsers.cp2k_output import parse_cp2k_stress, unconverged_evaluations
from aiida_ilmlff.sampling.cp2k_md import (
    labelled_steps,
    merge_runs,
    parse_cp2k_ener,
    parse_cp2k_xyz_trajectory,
    unconverged_md_steps,
)
from aiida_ilmlff.sampling.cp2k_md import parse_cp2k_md as parse_run

DATA = pathlib.Path(__file__).parent / 'data' / 'cp2k_md_libf4'
FILES = ('aiida-pos-1.xyz', 'aiida-frc-1.xyz', 'aiida-1.ener', 'aiida.out')


def _texts():
    return [(DATA / name).read_text() for name in FILES]


def test_units_and_steps():
    pos, frc, ener, out = _texts()
    run = parse_run(pos, frc, ener, out)
    assert run.steps.tolist() == list(range(9))
    assert np.allclose(run.times, 0.5 * np.arange(9))
    assert run.symbols == ['Li', 'B', 'F', 'F', 'F', 'F']
    assert run.positions.shape == run.forces.shape == (9, 6, 3)
    columns = parse_cp2k_ener(ener)
    assert np.allclose(run.energies, columns['potential'] * units.Hartree, rtol=1e-12)  # ASE's CODATA 2014 Hartree
    _, _, comment_energies, _, raw_forces = parse_cp2k_xyz_trajectory(frc)
    assert np.allclose(run.energies, comment_energies * units.Hartree, atol=1e-6)
    assert np.allclose(run.forces, raw_forces * units.Hartree / units.Bohr, rtol=1e-12)
    assert np.isclose(units.Hartree / units.Bohr, 51.4220, atol=1e-3)  # Hartree/bohr -> eV/Å
    assert np.isclose(run.temperatures[0], 600.0)
    assert not run.unconverged.any()
    # Start positions are the input frame's (Å).
    assert np.allclose(run.positions[0], read(DATA / 'frame.xyz').positions, atol=1e-6)
    # Newton's third law: forces sum to ~0 in a periodic system.
    assert np.abs(run.forces.sum(axis=1)).max() < 1e-3


def test_unconverged_steps_are_found():
    pos, frc, ener, out = _texts()
    marker = ' ENERGY| Total FORCE_EVAL'
    positions = [k for k in range(len(out)) if out.startswith(marker, k)]
    third = positions[3]  # before the energy line of the 4th evaluation = MD step 3
    broken = out[:third] + '  *** SCF run NOT converged ***\n' + out[third:]
    assert unconverged_md_steps(broken, first_step=0) == {3}
    run = parse_run(pos, frc, ener, broken)
    assert run.unconverged.tolist() == [k == 3 for k in range(9)]
    # Step 3 and every later step were propagated with unconverged forces: none of them is a label.
    assert labelled_steps(run).tolist() == [k < 3 for k in range(9)]


def test_a_killed_job_counts_its_last_evaluation():
    """A monitor reads the output while CP2K runs: the SCF warning of a step whose energy line is not yet written
    already counts (evaluation 9 of a run cut after step 8's energy)."""
    *_, out = _texts()
    assert unconverged_evaluations(out) == []
    running = out + '\n  *** SCF run NOT converged ***\n'
    assert unconverged_evaluations(running) == [9]
    assert unconverged_md_steps(running, first_step=0) == {9}


def test_stress_of_every_step():
    """Every step carries CP2K's analytical stress, converted from GPa (positive under compression) to eV/Å^3 with
    the ASE sign: the first block of the output is step 0, the last step 8."""
    pos, frc, ener, out = _texts()
    run = parse_run(pos, frc, ener, out)
    assert run.stresses.shape == (9, 3, 3) and np.isfinite(run.stresses).all()
    blocks = out.split('STRESS| Analytical stress tensor [GPa]')
    assert len(blocks) == 10
    assert np.allclose(run.stresses[0], parse_cp2k_stress('STRESS| Analytical stress tensor [GPa]' + blocks[1]))
    assert np.allclose(run.stresses[8], parse_cp2k_stress(out))
    assert np.allclose(run.stresses, np.transpose(run.stresses, (0, 2, 1)))  # symmetric
    trace_gpa = [float(line.split()[-1]) for line in out.splitlines() if 'STRESS| 1/3 Trace' in line]
    assert np.allclose(-np.trace(run.stresses, axis1=1, axis2=2) / 3 / units.GPa, trace_gpa, rtol=1e-8)
    assert len({round(float(v), 12) for v in run.stresses[:, 0, 0]}) == 9  # one stress per step, not one copy


def test_restarts_merge_by_step():
    pos, frc, ener, out = _texts()
    first = parse_run(pos, frc, ener, out)
    second = parse_run(pos, frc, ener, out)
    second.steps = second.steps + 4  # a restart from step 4 overlapping steps 4..8
    second.energies = second.energies + 1.0
    merged = merge_runs([first, second])
    assert merged.steps.tolist() == list(range(13))
    assert np.allclose(merged.energies[:4], first.energies[:4])
    assert np.allclose(merged.energies[4:], second.energies)
    assert np.allclose(merged.stresses[4:], second.stresses)
    # A run re-done from step 0 (the SCF ladder) replaces the failed run entirely, also past its own end.
    redo = parse_run(pos, frc, ener, out)
    redo.steps, redo.energies = redo.steps[:5], redo.energies[:5] - 2.0
    for name in ('times', 'positions', 'forces', 'temperatures', 'conserved', 'unconverged', 'stresses'):
        setattr(redo, name, getattr(redo, name)[:5])
    replaced = merge_runs([first, redo])
    assert replaced.steps.tolist() == list(range(5)) and np.allclose(replaced.energies, first.energies[:5] - 2.0)
    with pytest.raises(ValueError, match='no CP2K MD run'):
        merge_runs([])


def test_truncated_file_drops_the_partial_block():
    pos, *_ = _texts()
    steps, *_ = parse_cp2k_xyz_trajectory(pos[: len(pos) - 40])
    assert steps.tolist() == list(range(8))
    with pytest.raises(ValueError, match='no frame'):
        parse_cp2k_xyz_trajectory('')


def _folder(texts: dict[str, str]) -> orm.FolderData:
    import io

    folder = orm.FolderData()
    for name, text in texts.items():
        folder.base.repository.put_object_from_filelike(io.BytesIO(text.encode()), name)
    return folder.store()


def test_parse_cp2k_md_calcfunction():
    pos, frc, ener, out = _texts()
    atoms = read(DATA / 'frame.xyz')
    atoms.set_cell([8.0] * 3)
    atoms.pbc = True
    structure = orm.StructureData(ase=atoms)
    structure.base.attributes.set('mol_id', [0, 1, 1, 1, 1, 1])
    structure.base.attributes.set('molecules', ['Li', 'BF4'])
    marker = ' ENERGY| Total FORCE_EVAL'
    positions = [k for k in range(len(out)) if out.startswith(marker, k)]
    broken = out[: positions[5]] + '  *** SCF run NOT converged ***\n' + out[positions[5] :]
    folder = _folder(dict(zip(FILES, (pos, frc, ener, broken))))
    settings = orm.Dict({'level_of_theory': 'cp2k/GFN1-xTB:test', 'temperature': 600.0, 'timestep_fs': 0.5})
    outputs = parse_cp2k_md(structure=structure, settings=settings, run_00=folder)
    trajectory, summary = outputs['trajectory'], outputs['summary'].get_dict()
    # Steps 0-4 only: step 5 did not converge and steps 6-8 followed from its forces.
    assert len(trajectory) == 5 and summary['unconverged_steps'] == [5]
    assert summary['first_unconverged_step'] == 5 and summary['n_steps_after_unconverged'] == 3
    assert [frame.info['perturbation']['step'] for frame in trajectory.to_ase()] == [0, 1, 2, 3, 4]
    assert trajectory.stresses.shape == (5, 3, 3) and np.isfinite(trajectory.stresses).all()
    assert summary['n_frames_with_stress'] == 5 and summary['units']['stress'] == 'eV/Angstrom^3'
    assert trajectory.is_labelled and list(set(trajectory.levels_of_theory)) == ['cp2k/GFN1-xTB:test']
    assert set(trajectory.origins) == {'import'} and np.allclose(trajectory.temperatures, 600.0)
    assert trajectory.mol_ids.tolist()[:6] == [0, 1, 1, 1, 1, 1]
    first = trajectory[0]
    assert first.info['perturbation']['generator'] == 'cp2k_aimd' and first.info['perturbation']['step'] == 0
    assert np.allclose(first.cell.array, np.eye(3) * 8.0)
    assert summary['units']['forces'] == 'eV/Angstrom'
