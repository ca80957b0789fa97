"""Molecular centres of mass and species grouping."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis import molecular_centers_of_mass, species_groups


def test_center_of_mass_of_molecules(rng):
    positions = np.array([[0.0, 0, 0], [1.0, 0, 0], [5.0, 5, 5], [0.0, 3, 0], [0.0, 4, 0]])
    masses = np.array([12.0, 4.0, 7.0, 1.0, 3.0])
    mol_id = np.array([0, 0, 1, 2, 2])
    com = molecular_centers_of_mass(positions, mol_id, masses)
    np.testing.assert_allclose(com, [[0.25, 0, 0], [5, 5, 5], [0, 3.75, 0]])
    frames = positions[None] + rng.normal(size=(4, 1, 3))
    com_t = molecular_centers_of_mass(frames, mol_id, masses)
    assert com_t.shape == (4, 3, 3)
    np.testing.assert_allclose(com_t[2], molecular_centers_of_mass(frames[2], mol_id, masses))
    # a subset, in the order asked
    np.testing.assert_allclose(molecular_centers_of_mass(positions, mol_id, masses, [2, 0]), com[[2, 0]])


def test_center_of_mass_errors():
    with pytest.raises(ValueError, match='no atoms'):
        molecular_centers_of_mass(np.zeros((2, 3)), [0, 0], [1.0, 1.0], molecules=[0, 1])
    with pytest.raises(ValueError, match='same length'):
        molecular_centers_of_mass(np.zeros((2, 3)), [0, 0, 1], [1.0, 1.0])


def test_species_groups():
    groups = species_groups(['PYR14', 'TFSI', 'Li', 'TFSI', 'PYR14'])
    assert list(groups) == ['PYR14', 'TFSI', 'Li']
    assert groups['TFSI'].tolist() == [1, 3]
