"""Trajectory import: extxyz, ASE .traj, LAMMPS dump, GROMACS (MDAnalysis), ilmlff HDF5; molecules; species checks."""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import write

from aiida_ilmlff.sampling import (
    SpeciesMismatchError,
    assign_molecules,
    composition_element_counts,
    read_first_frame,
    read_trajectory,
)
from aiida_ilmlff.systems import molecule_graphs_match
from tests.fixtures.boxes import PYR14BF4

from .conftest import synthetic_trajectory


def test_extxyz_by_builder_order(extxyz_trajectory, pyr14bf4_box):
    imported = read_trajectory(extxyz_trajectory, 'extxyz', composition=PYR14BF4)
    assert len(imported.images) == 50 and imported.molecule_source == 'order'
    box = pyr14bf4_box()
    first = imported.images[0]
    assert first.arrays['mol_id'].tolist() == box.arrays['mol_id'].tolist()
    assert first.info['molecules'] == ['PYR14', 'PYR14', 'BF4', 'BF4']
    assert first.calc is None  # force-field labels are not kept
    assert np.isfinite(imported.energies).all() and imported.indices.tolist() == list(range(50))
    assert molecule_graphs_match(first, scale=1.3)

    windowed = read_trajectory(extxyz_trajectory, 'extxyz', composition=PYR14BF4, start=10, stop=40, stride=5)
    assert windowed.indices.tolist() == [10, 15, 20, 25, 30, 35]
    labelled = read_trajectory(extxyz_trajectory, 'extxyz', keep_labels=True)
    assert labelled.images[0].calc.results['energy'] == pytest.approx(imported.energies[0])


def test_shuffled_atoms_get_molecules_from_bonds(tmp_path, pyr14bf4_box):
    box = pyr14bf4_box()
    order = np.random.default_rng(0).permutation(len(box))
    shuffled = box[order]
    del shuffled.arrays['mol_id']
    shuffled.info = {}
    path = tmp_path / 'shuffled.traj'
    write(path, [shuffled, shuffled])
    imported = read_trajectory(path, 'traj', composition=PYR14BF4)
    assert imported.molecule_source == 'bonds'
    mol_id = imported.images[0].arrays['mol_id']
    molecules = imported.images[0].info['molecules']
    assert sorted(molecules) == ['BF4', 'BF4', 'PYR14', 'PYR14']
    # the same partition of atoms into molecules as the builder's
    original = box.arrays['mol_id'][order]
    pairs = {(int(a), int(b)) for a, b in zip(mol_id, original)}
    assert len(pairs) == 4
    assert molecule_graphs_match(imported.images[0], ordered=False)


def test_species_mismatch_is_named(extxyz_trajectory):
    assert composition_element_counts(PYR14BF4) == {'B': 2, 'C': 18, 'F': 8, 'H': 40, 'N': 2}
    with pytest.raises(SpeciesMismatchError) as info:
        read_trajectory(extxyz_trajectory, 'extxyz', composition={'PYR14': 2, 'TFSI': 2})
    message = str(info.value)
    assert 'do not match the composition' in message and 'B: 2 vs 0' in message and 'S: 0 vs 4' in message
    with pytest.raises(SpeciesMismatchError):
        read_trajectory(extxyz_trajectory, 'extxyz', composition={'PYR14': 3, 'BF4': 3})
    with pytest.raises(ValueError, match='unknown trajectory format'):
        read_trajectory(extxyz_trajectory, 'pdb')


def test_molecule_ids_from_the_file_are_checked(pyr14bf4_box):
    box = pyr14bf4_box()
    wrong = box.arrays['mol_id'].copy()
    wrong[0], wrong[-1] = wrong[-1], wrong[0]  # a PYR14 atom in a BF4 molecule and vice versa
    with pytest.raises(ValueError, match='match no ion'):
        assign_molecules(box, PYR14BF4, mol_id=wrong)
    ids, molecules, how = assign_molecules(box, PYR14BF4, mol_id=box.arrays['mol_id'] + 10)
    assert how == 'file' and ids.tolist() == box.arrays['mol_id'].tolist() and molecules[0] == 'PYR14'


def test_lammps_dump_with_type_map(tmp_path, pyr14bf4_box):
    box = pyr14bf4_box()
    elements = ['H', 'C', 'N', 'B', 'F']
    types = [elements.index(s) + 1 for s in box.get_chemical_symbols()]
    lines = []
    for step in range(3):
        positions = box.positions + 0.01 * step
        lines += [
            'ITEM: TIMESTEP',
            str(step * 100),
            'ITEM: NUMBER OF ATOMS',
            str(len(box)),
            'ITEM: BOX BOUNDS pp pp pp',
        ]
        lines += [f'0.0 {box.cell[k, k]:.10f}' for k in range(3)]
        lines.append('ITEM: ATOMS id type x y z')
        order = np.random.default_rng(step).permutation(len(box))  # LAMMPS writes atoms in any order
        lines += [
            f'{i + 1} {types[i]} {positions[i, 0]:.8f} {positions[i, 1]:.8f} {positions[i, 2]:.8f}' for i in order
        ]
    path = tmp_path / 'run.dump'
    path.write_text('\n'.join(lines) + '\n')
    imported = read_trajectory(path, 'lammps-dump', composition=PYR14BF4, type_map=elements)
    assert len(imported.images) == 3
    first = imported.images[0]
    assert first.get_chemical_symbols() == box.get_chemical_symbols()
    assert np.allclose(first.positions, box.positions, atol=1e-6)
    assert imported.molecule_source == 'order'
    with pytest.raises(SpeciesMismatchError):
        read_trajectory(path, 'lammps-dump', composition=PYR14BF4)  # types read as atomic numbers 1..5


def test_gromacs_through_mdanalysis(tmp_path, pyr14bf4_box):
    import warnings

    import MDAnalysis

    box = pyr14bf4_box()
    mol_id = box.arrays['mol_id']
    universe = MDAnalysis.Universe.empty(
        len(box), n_residues=4, atom_resindex=mol_id, residue_segindex=[0] * 4, trajectory=True
    )
    universe.add_TopologyAttr('names', [f'{s}{k % 9}' for k, s in enumerate(box.get_chemical_symbols())])
    universe.add_TopologyAttr('resnames', ['PYR', 'PYR', 'BF4', 'BF4'])
    universe.add_TopologyAttr('resids', [1, 2, 3, 4])
    universe.atoms.positions = box.positions
    universe.dimensions = [*box.cell.lengths(), 90, 90, 90]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        universe.atoms.write(str(tmp_path / 'conf.gro'))
        with MDAnalysis.Writer(str(tmp_path / 'traj.xtc'), len(box)) as writer:
            for step in range(4):
                universe.atoms.positions = box.positions + 0.05 * step
                universe.trajectory.ts.time = step * 0.5  # ps
                writer.write(universe.atoms)
    imported = read_trajectory(tmp_path / 'traj.xtc', 'gromacs', composition=PYR14BF4, topology=tmp_path / 'conf.gro')
    assert len(imported.images) == 4 and imported.molecule_source == 'file'
    first = imported.images[0]
    assert first.get_chemical_symbols() == box.get_chemical_symbols()
    assert np.allclose(first.positions, box.positions, atol=0.006)  # xtc keeps 0.001 nm
    assert first.info['molecules'] == ['PYR14', 'PYR14', 'BF4', 'BF4']
    assert np.allclose(first.cell.lengths(), box.cell.lengths(), atol=1e-3)
    assert np.allclose(imported.times, [0.0, 500.0, 1000.0, 1500.0])  # fs


def test_ilmlff_hdf5_trajectory(tmp_path, pyr14bf4_box):
    from aiida_ilmlff.analysis import TrajectoryWriter

    box = pyr14bf4_box()
    frames = synthetic_trajectory(box, 12)
    path = tmp_path / 'trajectory.h5'
    with TrajectoryWriter.from_atoms(path, box, energy=True, dtype='float64') as writer:
        for k, atoms in enumerate(frames):
            writer.append(k * 5.0, atoms.positions, atoms.cell.array, energy=atoms.calc.results['energy'])
    imported = read_trajectory(path, 'ilmlff-h5', start=2, stride=3)
    assert imported.indices.tolist() == [2, 5, 8, 11]
    assert np.allclose(imported.times, [10.0, 25.0, 40.0, 55.0])
    assert np.allclose(imported.energies, [frames[k].calc.results['energy'] for k in (2, 5, 8, 11)])
    assert imported.images[0].info['molecules'] == ['PYR14', 'PYR14', 'BF4', 'BF4']
    assert imported.molecule_source == 'file'
    assert read_first_frame(path, 'ilmlff-h5').get_chemical_formula() == box.get_chemical_formula()
