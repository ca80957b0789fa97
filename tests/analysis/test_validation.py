"""A model's structure against its reference run: RDF peaks, bonds and angles on a CsCl-like Li+/BF4- lattice."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import atomic_masses

from aiida_ilmlff.analysis.trajectory import TrajectoryWriter
from aiida_ilmlff.analysis.validation import (
    central_element,
    molecule_bonds,
    structure_agreement,
    validation_rdf_pairs,
)

SPACING = 4.5  # Å between lattice sites: 3 x 3 x 3 BF4 on the corners, Li in the cube centres
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)


def _static():
    numbers, mol_id, molecules = [], [], []
    for _ in range(27):
        numbers += [5, 9, 9, 9, 9]
        mol_id += [len(molecules)] * 5
        molecules.append('BF4')
    for _ in range(27):
        numbers.append(3)
        mol_id.append(len(molecules))
        molecules.append('Li')
    return np.array(numbers), np.array(mol_id), molecules


def _write(path, bond=1.40, spacing=SPACING, n_frames=40, seed=0, numbers=None):
    """A CsCl-like lattice with thermal noise: every molecule displaced by 0.12 Å (random), atoms by 0.02 Å."""
    rng = np.random.default_rng(seed)
    static_numbers, mol_id, molecules = _static()
    numbers = static_numbers if numbers is None else numbers
    sites = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)], dtype=float) * spacing
    cell = np.eye(3) * 3 * spacing
    positions = []
    for _ in range(n_frames):
        frame = []
        for site in sites:
            centre = site + rng.normal(0.0, 0.12, 3)
            frame += [centre, *(centre + bond * TETRAHEDRON)]
        for site in sites:
            frame.append(site + spacing / 2 + rng.normal(0.0, 0.12, 3))
        frame = np.asarray(frame) + rng.normal(0.0, 0.02, (len(numbers), 3))
        positions.append(frame)
    with TrajectoryWriter(path, numbers, atomic_masses[numbers], mol_id, molecules, dtype='float64', energy=False) as w:
        w.append(np.arange(n_frames) * 10.0, np.asarray(positions), np.broadcast_to(cell, (n_frames, 3, 3)))
    return path


def test_pairs_and_central_atoms():
    numbers, mol_id, molecules = _static()
    assert central_element(numbers, mol_id, molecules, 'BF4') == 'B'
    assert central_element(numbers, mol_id, molecules, 'Li') == 'Li'
    assert validation_rdf_pairs(numbers, mol_id, molecules) == [
        ['BF4', 'BF4'],
        ['BF4', 'Li'],
        ['Li', 'Li'],
        ['BF4:B', 'Li:Li'],
        ['Li', 'BF4:F'],
    ]
    # PYR14 (C9H20N): its one N is the central atom
    assert central_element([6] * 9 + [1] * 20 + [7], [0] * 30, ['PYR14'], 'PYR14') == 'N'
    with pytest.raises(ValueError, match='not a species'):
        central_element(numbers, mol_id, molecules, 'TFSI')


def test_bonds_of_molecules_split_by_the_boundary():
    """A BF4 at the cell corner is split across the boundary: its 4 B-F bonds are still found, and no Li bond."""
    numbers, mol_id, _ = _static()
    positions = np.zeros((len(numbers), 3))
    positions[:5] = (np.vstack([[0, 0, 0], 1.4 * TETRAHEDRON]) + 0.1) % 13.5
    positions[5:] = np.random.default_rng(0).uniform(3.0, 10.0, (len(numbers) - 5, 3))
    bonds = molecule_bonds(numbers, positions, np.eye(3) * 13.5, mol_id)
    assert [tuple(pair) for pair in bonds[:4]] == [(0, 1), (0, 2), (0, 3), (0, 4)]


def test_same_structure_agrees_and_a_wrong_one_does_not(tmp_path):
    settings = {'rdf_bins': 100}
    reference = _write(tmp_path / 'reference.h5', seed=1, n_frames=150)
    identical = structure_agreement(reference, reference, settings)
    assert identical['within_targets'] is True and identical['mean_rdf_distance_A'] == 0.0
    assert set(identical['rdf']) == {'BF4-BF4', 'BF4-Li', 'Li-Li', 'BF4:B-Li:Li', 'Li-BF4:F'}
    assert identical['max_abs_peak_shift_A'] == 0.0 and identical['max_abs_height_deviation'] == 0.0

    # another run of the same structure: differences are sampling noise (100 bins of 0.067 Å)
    same = structure_agreement(_write(tmp_path / 'model.h5', seed=2, n_frames=150), reference, settings)
    assert same['max_abs_peak_shift_A'] < 0.067 and same['max_abs_height_deviation'] < 0.1
    assert same['bonds']['B-F']['shift'] == pytest.approx(0.0, abs=0.005)
    assert same['angles']['F-B-F']['mean'] == pytest.approx(109.47, abs=0.5)
    assert same['n_frames'] == same['n_reference_frames'] == 150

    # a model with 0.1 Å longer B-F bonds in a lattice 2 % wider: its bond and RDF peaks move
    wrong = structure_agreement(
        _write(tmp_path / 'wrong.h5', bond=1.50, spacing=SPACING * 1.02, seed=3, n_frames=150), reference, settings
    )
    assert wrong['bonds']['B-F']['shift'] == pytest.approx(0.10, abs=0.01)
    assert wrong['bonds']['B-F']['width_ratio'] == pytest.approx(1.0, abs=0.05)
    assert wrong['rdf']['BF4-BF4']['peak_shift'] == pytest.approx(0.09, abs=0.04)
    assert wrong['within_targets'] is False
    assert wrong['mean_rdf_distance_A'] > 5 * same['mean_rdf_distance_A']

    numbers = _static()[0].copy()
    numbers[-1] = 11  # a Na where the reference has a Li
    with pytest.raises(ValueError, match='not of the same atoms'):
        structure_agreement(_write(tmp_path / 'other.h5', numbers=numbers), reference)
