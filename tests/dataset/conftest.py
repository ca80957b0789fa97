"""Fixtures of the data-set tests alone: synthetic MD trajectories.

The box builder's PYR14BF4 box (``pyr14bf4_box``) and ``cp2k_code`` are shared fixtures of :mod:`tests.fixtures`.
"""

from __future__ import annotations

import numpy as np
import pytest


def synthetic_energies(n: int, transient: int = 12, seed: int = 0) -> np.ndarray:
    """An MD-like potential energy [eV]: an exponential relaxation over ~``transient`` frames plus AR(1) noise."""
    rng = np.random.default_rng(seed)
    noise = np.zeros(n)
    for k in range(1, n):
        noise[k] = 0.6 * noise[k - 1] + rng.normal(0.0, 0.05)
    return -3000.0 + 2.0 * np.exp(-np.arange(n) / (transient / 3.0)) + noise


def synthetic_trajectory(box, n: int = 50, seed: int = 0, sigma: float = 0.02):
    """``n`` frames of ``box`` with small random displacements and :func:`synthetic_energies` (ASE calculator)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    energies = synthetic_energies(n, seed=seed)
    frames = []
    for k in range(n):
        atoms = box.copy()
        atoms.positions = box.positions + rng.normal(0.0, sigma, box.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=float(energies[k]), forces=np.zeros((len(box), 3)))
        frames.append(atoms)
    return frames


@pytest.fixture
def extxyz_trajectory(tmp_path, pyr14bf4_box):
    """A 50-frame extxyz trajectory of PYR14BF4 (energies with an equilibration transient), without molecule ids."""
    from ase.io import write

    box = pyr14bf4_box(0)
    frames = synthetic_trajectory(box, 50)
    for atoms in frames:
        del atoms.arrays['mol_id']
        atoms.info = {}
    path = tmp_path / 'md.extxyz'
    write(path, frames, format='extxyz')
    return path
