"""Fixtures of the data-set tests: PYR14BF4 boxes, synthetic MD trajectories, a CP2K code on localhost."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

CP2K_EXECUTABLE = '/usr/bin/cp2k.psmp'

#: Two ion pairs of PYR14BF4 (70 atoms) at the liquid density (~317 Å^3 per pair).
PYR14BF4 = {'PYR14': 2, 'BF4': 2}
DENSITY = 1.2


@pytest.fixture(scope='session')
def pyr14bf4_box():
    """A factory ``pyr14bf4_box(seed=0)`` -> a fresh copy of a 70-atom PYR14BF4 box (cached per seed)."""
    from aiida_ilmlff.systems import build_ionic_liquid

    cache = {}

    def factory(seed: int = 0):
        if seed not in cache:
            cache[seed] = build_ionic_liquid(PYR14BF4, DENSITY, seed=seed)
        atoms = cache[seed].copy()
        atoms.info = dict(cache[seed].info)
        return atoms

    return factory


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


@pytest.fixture
def localhost(aiida_computer_local):
    """A configured ``core.local`` + ``core.direct`` computer (job poll interval 0)."""
    return aiida_computer_local(label='localhost-dataset-tests')


@pytest.fixture
def cp2k_code(localhost):
    """An ``InstalledCode`` for ``/usr/bin/cp2k.psmp`` (plugin ``cp2k``)."""
    from aiida import orm

    if shutil.which(CP2K_EXECUTABLE) is None:
        pytest.skip(f'{CP2K_EXECUTABLE} is not installed')
    existing = orm.QueryBuilder().append(orm.InstalledCode, filters={'label': 'cp2k-dataset'}).first(flat=True)
    if existing is not None and existing.computer.pk == localhost.pk:
        return existing
    return orm.InstalledCode(
        label='cp2k-dataset', computer=localhost, filepath_executable=CP2K_EXECUTABLE, default_calc_job_plugin='cp2k'
    ).store()


def count_nodes() -> int:
    """Number of nodes in the profile."""
    from aiida import orm

    return orm.QueryBuilder().append(orm.Node).count()
