"""Fixtures of the training tests alone: Li+ BF4- frames labelled by real CP2K GFN1-xTB, stored as FramesData.

The frames are labelled once and cached on disk (:func:`tests.fixtures.training.cached_libf4_frames`).
The codes (``mace_train_code``, ``dp_code``, ``evaluate_code``) are shared fixtures of :mod:`tests.fixtures.codes`;
the hyperparameters and the frame recipe live in :mod:`tests.fixtures.training`. Every real run is tiny and
single-threaded: the machine has 2 cores shared by many.
"""

from __future__ import annotations

import pytest

from tests.fixtures.codes import find_executable
from tests.fixtures.models import cache_folder
from tests.fixtures.training import LEVEL_OF_THEORY, LIBF4_RECIPE, cached_libf4_frames


@pytest.fixture(scope='session')
def cp2k_labelled_atoms(pytestconfig) -> list:
    """36 Li+ BF4- frames labelled by CP2K GFN1-xTB (energy eV, forces eV/Å, stress eV/Å^3), as ASE Atoms (cached)."""
    folder = cache_folder(pytestconfig, LIBF4_RECIPE)
    if not (folder / 'libf4_36_0.npz').exists() and find_executable('cp2k.psmp') is None:
        pytest.skip('cp2k.psmp not installed')
    atoms = cached_libf4_frames(folder, 36, seed=0)
    for frame in atoms:
        frame.info['level_of_theory'] = LEVEL_OF_THEORY
        frame.info['origin'] = 'nEQ'
    return atoms


def without_stress(atoms_list: list) -> list:
    """Copies of ``atoms_list`` whose labels keep energy and forces but not the stress."""
    from ase.calculators.singlepoint import SinglePointCalculator

    copies = []
    for atoms in atoms_list:
        copy = atoms.copy()
        copy.info = dict(atoms.info)
        copy.calc = SinglePointCalculator(copy, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        copies.append(copy)
    return copies


@pytest.fixture(scope='session')
def frames(aiida_profile, cp2k_labelled_atoms) -> dict:
    """Stored FramesData ``all`` (36), ``train`` (24), ``valid`` (6) and ``test`` (6), CP2K-labelled with energy,
    forces and stress; ``mixed`` (the 24 ``train`` frames, the stress kept on the first 12 only) and ``no_stress``
    (the 24 ``train`` frames without any stress)."""
    from aiida_ilmlff.data import FramesData

    atoms = cp2k_labelled_atoms
    nodes = {
        'all': FramesData.from_ase(atoms[:36], label='LiBF4 all'),
        'train': FramesData.from_ase(atoms[:24], label='LiBF4 train'),
        'valid': FramesData.from_ase(atoms[24:30], label='LiBF4 valid'),
        'test': FramesData.from_ase(atoms[30:36], label='LiBF4 test'),
        'mixed': FramesData.from_ase(atoms[:12] + without_stress(atoms[12:24]), label='LiBF4 train, half stress'),
        'no_stress': FramesData.from_ase(without_stress(atoms[:24]), label='LiBF4 train, no stress'),
    }
    return {key: node.store() for key, node in nodes.items()}
