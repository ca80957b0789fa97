"""The primitives of aiida_ilmlff.common and the one stratified split: values and agreement with references."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from ase import units

from aiida_ilmlff.common import AMU_A3_TO_G_CM3, min_pair_distance, minimum_image, sha256_bytes, sha256_file
from aiida_ilmlff.sampling.split import largest_remainder, split_indices, train_valid_indices


def test_density_constant_is_ase_amu():
    """The box builder sized its boxes with ASE's amu: the one constant keeps that value exactly."""
    assert units._amu * 1e3 / 1e-24 == AMU_A3_TO_G_CM3


def test_sha256_of_file_and_bytes(tmp_path):
    path = tmp_path / 'data.bin'
    content = bytes(range(256)) * 5000
    path.write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()
    assert sha256_file(path) == sha256_file(path, chunk=7) == sha256_bytes(content) == expected
    assert sha256_bytes('abc') == hashlib.sha256(b'abc').hexdigest()


@pytest.mark.parametrize(
    'cell',
    [np.diag([7.0, 8.0, 9.0]), np.array([[8.0, 0.0, 0.0], [2.5, 7.5, 0.0], [1.0, 1.5, 8.5]])],
    ids=['orthorhombic', 'triclinic'],
)
def test_min_pair_distance_matches_brute_force(cell):
    rng = np.random.default_rng(3)
    positions = rng.uniform(0, 1, (40, 3)) @ cell
    delta = minimum_image(positions[:, None] - positions[None], cell)
    distances = np.linalg.norm(delta, axis=-1) + np.diag(np.full(len(positions), np.inf))
    i, j = np.unravel_index(np.argmin(distances), distances.shape)
    distance, pair = min_pair_distance(positions, cell)
    assert distance == pytest.approx(distances[i, j], abs=1e-12)
    assert pair == (min(i, j), max(i, j))
    assert min_pair_distance(positions, cell, cutoff=1e-3) == (float('inf'), None)


def test_largest_remainder_and_two_way_split():
    assert largest_remainder([5.6, 0.7, 0.7], 7).tolist() == [5, 1, 1]
    origins = ['EQ'] * 12 + ['nEQ'] * 8
    train, valid = train_valid_indices(origins, 0.25, seed=4)
    expected = split_indices(origins, (0.75, 0.25), 4, stratify=True)
    assert (train, valid) == (expected[0].tolist(), expected[1].tolist())
    assert sorted(train + valid) == list(range(20)) and len(valid) == 5
    assert sum(origins[k] == 'nEQ' for k in valid) == 2  # the origin mix is kept
    with pytest.raises(ValueError, match='each split needs at least 2'):
        train_valid_indices(origins[:3], 0.25, seed=0, min_frames=2)
