"""Bond-length and bond-angle distributions against a reference: known answers on a BF4- tetrahedron."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis.intramolecular import (
    angle_triplets,
    bond_angles,
    bond_lengths,
    distribution_agreement,
    intramolecular_agreement,
    type_labels,
)

TETRAHEDRAL = np.degrees(np.arccos(-1.0 / 3.0))  # 109.47 deg
CELL = np.eye(3) * 8.0
NUMBERS = [5, 9, 9, 9, 9]  # B, 4 F
PAIRS = [(0, 1), (0, 2), (0, 3), (0, 4)]


def _bf4(bond: float, centre=(0.2, 4.0, 4.0)) -> np.ndarray:
    """A regular BF4 tetrahedron of B-F length ``bond`` [Å] around ``centre``, wrapped into the 8 Å cell."""
    directions = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)
    positions = np.vstack([[0.0, 0.0, 0.0], bond * directions]) + np.asarray(centre)
    return positions % 8.0


def test_angles_from_bonds_and_labels():
    triplets = angle_triplets(PAIRS)
    assert len(triplets) == 6 and all(row[1] == 0 for row in triplets)
    assert set(type_labels(NUMBERS, PAIRS)) == {'B-F'} and set(type_labels(NUMBERS, triplets)) == {'F-B-F'}
    assert type_labels([6, 7, 1], [(1, 0), (0, 2)]) == ['C-N', 'C-H']
    assert type_labels([6, 7, 1], [(2, 0, 1)]) == ['H-C-N']
    assert angle_triplets([]).shape == (0, 3)


def test_lengths_and_angles_across_the_boundary():
    """B sits 0.2 Å from the cell face: two F are wrapped to the far side, the minimum image makes it whole."""
    positions = _bf4(1.40)
    assert np.ptp(positions[:, 0]) > 4.0  # the molecule is split by the wrap
    np.testing.assert_allclose(bond_lengths(positions, CELL, PAIRS), 1.40, atol=1e-5)
    np.testing.assert_allclose(bond_angles(positions, CELL, angle_triplets(PAIRS)), TETRAHEDRAL, atol=1e-3)


def test_shifted_and_widened_distributions():
    """Model bonds 0.05 Å longer with twice the spread: shift, width ratio and Wasserstein distance follow."""
    rng = np.random.default_rng(0)
    reference = 1.40 + 0.02 * rng.standard_normal(20000)
    model = 1.45 + 0.04 * rng.standard_normal(20000)
    result = distribution_agreement(model, reference)
    assert result.shift == pytest.approx(0.05, abs=1e-3)
    assert result.width_ratio == pytest.approx(2.0, rel=0.03)
    same = distribution_agreement(reference + 0.05, reference)
    assert same.wasserstein == pytest.approx(0.05, abs=1e-9) and same.width_ratio == pytest.approx(1.0)
    with pytest.raises(ValueError, match='non-empty, finite'):
        distribution_agreement([], reference)
    assert distribution_agreement([1.0, 1.0], [1.0, 1.0]).width_ratio is None


def test_intramolecular_agreement_of_two_runs():
    """A model run of stretched BF4 against a reference run: B-F shifted by the stretch, F-B-F unchanged."""
    rng = np.random.default_rng(1)
    reference = np.array([_bf4(1.40 + 0.01 * rng.standard_normal()) for _ in range(30)])
    model = np.array([_bf4(1.46 + 0.01 * rng.standard_normal()) for _ in range(20)])
    result = intramolecular_agreement(NUMBERS, PAIRS, model, CELL, reference, np.broadcast_to(CELL, (30, 3, 3)))
    bonds, angles = result['bonds']['B-F'], result['angles']['F-B-F']
    assert bonds.shift == pytest.approx(0.06, abs=0.01) and bonds.n_values == 80 and bonds.n_reference_values == 120
    assert angles.shift == pytest.approx(0.0, abs=1e-3) and angles.mean == pytest.approx(TETRAHEDRAL, abs=1e-3)
    with pytest.raises(ValueError, match='same 5 atoms'):
        intramolecular_agreement(NUMBERS, PAIRS, model[:, :4], CELL, reference, CELL)
    with pytest.raises(ValueError, match='no bonds'):
        intramolecular_agreement(NUMBERS, [], model, CELL, reference, CELL)
