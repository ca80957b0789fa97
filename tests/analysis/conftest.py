"""Fixtures of the analysis tests: random generators and MDAnalysis in-memory universes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded generator, so every test is deterministic."""
    return np.random.default_rng(20250318)


def cellpar(cell: np.ndarray) -> np.ndarray:
    """(a, b, c, alpha, beta, gamma) of a (3, 3) cell, as MDAnalysis ``dimensions``."""
    lengths = np.linalg.norm(cell, axis=1)

    def angle(i, j):
        return np.degrees(np.arccos(cell[i] @ cell[j] / (lengths[i] * lengths[j])))

    return np.array([*lengths, angle(1, 2), angle(0, 2), angle(0, 1)])


@pytest.fixture
def mda_universe():
    """Factory of an in-memory MDAnalysis Universe from (T, N, 3) positions and a (3, 3) cell.

    Returns ``(universe, cell_used)``: MDAnalysis stores the box as float32 cell parameters, so the
    cell it works with (``cell_used``, float64) is rebuilt from them for a like-for-like comparison.
    """
    mda = pytest.importorskip('MDAnalysis')
    from MDAnalysis.coordinates.memory import MemoryReader
    from MDAnalysis.lib.mdamath import triclinic_vectors

    def make(positions: np.ndarray, cell: np.ndarray, dt_ps: float = 1.0):
        n_frames, n_atoms, _ = positions.shape
        dims = np.tile(cellpar(cell), (n_frames, 1)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            universe = mda.Universe.empty(n_atoms, trajectory=False)
            universe.load_new(positions.astype(np.float32), format=MemoryReader, dimensions=dims, dt=dt_ps)
        return universe, triclinic_vectors(dims[0]).astype(np.float64)

    return make
