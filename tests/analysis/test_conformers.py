"""Dihedral angles and TFSI cis/trans conformers on hand-built molecules."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis import classify_cis_trans, dihedral, tfsi_dihedral_atoms, tfsi_dihedrals

CELL = np.diag([12.0, 12.0, 12.0])


def test_dihedral_matches_mdanalysis(rng):
    from MDAnalysis.lib.distances import calc_dihedrals

    points = [rng.normal(size=(50, 3)) for _ in range(4)]
    expected = np.degrees(calc_dihedrals(*(p.astype(np.float64) for p in points)))
    np.testing.assert_allclose(dihedral(*points), expected, atol=1e-4)


def test_dihedral_uses_the_minimum_image(rng):
    points = [rng.normal(size=(20, 3)) + 6.0 for _ in range(4)]
    shifted = [p + CELL[k % 3] * (1 - 2 * (k % 2)) for k, p in enumerate(points)]
    np.testing.assert_allclose(dihedral(*shifted, cell=CELL), dihedral(*points), atol=1e-9)


def tfsi(phi_deg: float, origin) -> tuple[np.ndarray, np.ndarray]:
    """A TFSI-like skeleton (N, 2 S, 2 C, 4 O, 6 F) with a C-S...S-C dihedral of phi."""
    phi = np.radians(phi_deg)
    s1, s2 = np.array([-1.3, 0.5, 0.0]), np.array([1.3, 0.5, 0.0])
    c1 = s1 + np.array([-0.5, 1.7, 0.0])
    c2 = s2 + np.array([0.5, 1.7 * np.cos(phi), 1.7 * np.sin(phi)])
    rest = [np.zeros(3)] + [s1 + d for d in ([0, -1, 1], [0, -1, -1])] + [s2 + d for d in ([0, -1, 1], [0, -1, -1])]
    fluorines = [c + d for c in (c1, c2) for d in ([1, 0, 0], [0, 0, 1], [0, 0, -1])]
    positions = np.array([rest[0], s1, s2, c1, c2, *rest[1:], *fluorines]) + origin
    numbers = np.array([7, 16, 16, 6, 6, 8, 8, 8, 8] + [9] * 6)
    return positions, numbers


def test_tfsi_cis_and_trans():
    cis, numbers = tfsi(40.0, [11.5, 6.0, 6.0])  # straddles the cell boundary at x = 12
    trans, _ = tfsi(-170.0, [4.0, 4.0, 4.0])
    positions = np.concatenate([cis, trans, [[2.0, 2.0, 2.0]]]) % 12.0  # wrapped, plus one Li
    all_numbers = np.concatenate([numbers, numbers, [3]])
    mol_id = np.array([0] * 15 + [1] * 15 + [2])
    atoms = tfsi_dihedral_atoms(all_numbers, mol_id, positions, CELL)
    assert atoms.shape == (2, 4)
    assert all_numbers[atoms].tolist() == [[6, 16, 16, 6]] * 2
    angles = tfsi_dihedrals(positions, atoms, CELL)
    np.testing.assert_allclose(np.abs(angles), [40.0, 170.0], atol=1e-9)
    frames = np.stack([positions, positions])
    assert tfsi_dihedrals(frames, atoms, CELL).shape == (2, 2)
    fractions = classify_cis_trans(angles)
    assert fractions.is_cis.tolist() == [[True, False]]
    assert fractions.mean_cis_fraction == 0.5
    assert fractions.mean_trans_fraction == 0.5
    with pytest.raises(ValueError, match='not 2 and 2'):
        tfsi_dihedral_atoms(all_numbers, mol_id, positions, CELL, molecules=[2])


def test_classify_cis_trans_over_time():
    series = np.array([[10.0, 179.0, -35.0, 200.0], [100.0, -100.0, 89.0, -89.0]])
    result = classify_cis_trans(series)
    assert result.is_cis.tolist() == [[True, False, True, False], [False, False, True, True]]
    assert result.cis_fraction.tolist() == [0.5, 0.5]
    assert classify_cis_trans(series, cis_cut_deg=60).cis_fraction.tolist() == [0.5, 0.0]
