"""Molecular centres of mass and species grouping."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis import MoleculeTree, make_whole, molecular_centers_of_mass, species_groups


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


# ------------------------------------------------------------------------------------- molecules made whole


def _split(positions, cell):
    """Every atom wrapped into the cell one by one: molecules on a face come out cut in two."""
    fractional = positions @ np.linalg.inv(cell)
    return (fractional - np.floor(fractional)) @ cell


@pytest.mark.parametrize(
    'cell', [np.diag([10.0, 11.0, 12.0]), np.array([[10.0, 0, 0], [3.0, 10.0, 0], [1.0, 2.0, 11.0]])]
)
def test_make_whole_joins_a_molecule_cut_by_the_cell(rng, cell):
    chain = np.cumsum(np.vstack([[0.0, 0, 0], rng.normal(size=(11, 3))]), axis=0)
    chain = 1.5 * chain / np.linalg.norm(np.diff(chain, axis=0), axis=1).mean()  # a 12-atom chain, ~1.5 Å bonds
    other = np.array([[5.0, 5.0, 5.0], [5.0, 5.0, 6.1]])
    whole = np.vstack([chain + cell[0] * 0.95, other])  # the chain crosses the face at x = a
    mol_id = np.array([0] * 12 + [1, 1])
    cut = _split(whole, cell)
    assert np.linalg.norm(cut[:12] - cut[0], axis=1).max() > 5.0  # the chain is cut
    joined = make_whole(cut, cell, mol_id)
    shift = joined[0] - whole[0]  # the root keeps its (wrapped) place: a lattice translation of the molecule
    np.testing.assert_allclose(joined[:12], whole[:12] + shift, atol=1e-9)
    np.testing.assert_allclose(joined[12:], whole[12:], atol=1e-9)
    fractional_shift = shift @ np.linalg.inv(cell)
    np.testing.assert_allclose(fractional_shift, np.rint(fractional_shift), atol=1e-9)
    # frames: the same trees applied to a (T, N, 3) array with one cell per frame
    frames = np.stack([cut, cut + 0.1])
    np.testing.assert_allclose(MoleculeTree(cut, cell, mol_id).apply(frames, np.stack([cell, cell]))[1], joined + 0.1)


def test_make_whole_errors():
    with pytest.raises(ValueError, match='mol_id'):
        MoleculeTree(np.zeros((3, 3)), np.eye(3) * 10, [0, 0])
    tree = MoleculeTree(np.zeros((3, 3)), np.eye(3) * 10, [0, 0, 1])
    with pytest.raises(ValueError, match='N = 3'):
        tree.apply(np.zeros((4, 3)), np.eye(3) * 10)
