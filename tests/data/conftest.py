"""Fixtures for the data-node tests: small labelled frame sets of two compositions."""

from __future__ import annotations

import numpy as np
import pytest


def _frame(numbers, rng, *, cell=10.0, energy=True, forces=True, stress=True, velocities=False, **info):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    numbers = np.asarray(numbers)
    atoms = Atoms(numbers=numbers, positions=rng.random((len(numbers), 3)) * cell, cell=np.eye(3) * cell, pbc=True)
    atoms.cell[0, 1] = 0.37 * rng.random()  # a non-orthogonal cell
    results = {}
    if energy:
        results['energy'] = float(rng.normal() * 10 - 100)
    if forces:
        results['forces'] = rng.normal(size=(len(numbers), 3))
    if stress:
        s = rng.normal(size=(3, 3)) * 1e-3
        results['stress'] = s + s.T
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    if velocities:
        atoms.set_velocities(rng.normal(size=(len(numbers), 3)) * 0.01)
    atoms.arrays['mol_id'] = np.arange(len(numbers)) // 3
    atoms.info.update(info)
    return atoms


@pytest.fixture
def make_frame():
    """Factory for one random ``ase.Atoms`` frame with a SinglePointCalculator (see ``_frame``)."""
    return _frame


@pytest.fixture
def ase_frames():
    """Eight labelled frames: two compositions (BF4-like 5 atoms, a 7-atom cation-like), mixed origins."""
    rng = np.random.default_rng(42)
    bf4 = [5, 9, 9, 9, 9]
    other = [7, 6, 6, 1, 1, 1, 1]
    frames = []
    for i in range(8):
        numbers = bf4 if i % 2 == 0 else other
        origin = ['EQ', 'nEQ', 'AL', 'import'][i % 4]
        info = {'origin': origin, 'level_of_theory': 'cp2k:gfn1-xtb:abc123'}
        if origin == 'nEQ':
            info['perturbation'] = {'kind': 'rattle', 'stdev': 0.05, 'seed': i}
        if origin in ('EQ', 'AL'):
            info['temperature'] = 450.0
            info['iteration'] = i
        if i == 0:
            info['source'] = '1b4e28ba-2fa1-11d2-883f-0016d3cca427'
            info['molecules'] = ['BF4', 'BF4']
        frames.append(_frame(numbers, rng, velocities=(i < 2), **info))
    return frames
