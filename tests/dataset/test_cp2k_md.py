"""Reading CP2K MD files (units, steps, unconverged SCF, restarts), on a real 8-step GFN1-xTB run of Li+ BF4-.

``data/cp2k_md_libf4``: CP2K 2023.1, ``md.inp`` on ``frame.xyz`` (6 atoms, 8 Å box), NVT CSVR at 600 K, 0.5 fs.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from aiida import orm
from ase import units
from ase.io import read

from aiida_ilmlff.calculations.functions.sampling import parse_cp2k_md
from aiida_ilmlff.sampling.cp2k_md import (
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
    assert len(trajectory) == 8 and summary['unconverged_steps'] == [5]
    assert trajectory.is_labelled and list(set(trajectory.levels_of_theory)) == ['cp2k/GFN1-xTB:test']
    assert set(trajectory.origins) == {'import'} and np.allclose(trajectory.temperatures, 600.0)
    assert trajectory.mol_ids.tolist()[:6] == [0, 1, 1, 1, 1, 1]
    first = trajectory[0]
    assert first.info['perturbation']['generator'] == 'cp2k_aimd' and first.info['perturbation']['step'] == 0
    assert np.allclose(first.cell.array, np.eye(3) * 8.0)
    assert summary['units']['forces'] == 'eV/Angstrom'
