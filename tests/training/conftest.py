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
    """36 Li+ BF4- frames labelled by CP2K GFN1-xTB (energy eV, forces eV/Å), as ASE Atoms (cached on disk)."""
    folder = cache_folder(pytestconfig, LIBF4_RECIPE)
    if not (folder / 'libf4_36_0.npz').exists() and find_executable('cp2k.psmp') is None:
        pytest.skip('cp2k.psmp not installed')
    atoms = cached_libf4_frames(folder, 36, seed=0)
    for frame in atoms:
        frame.info['level_of_theory'] = LEVEL_OF_THEORY
        frame.info['origin'] = 'nEQ'
    return atoms


@pytest.fixture(scope='session')
def frames(aiida_profile, cp2k_labelled_atoms) -> dict:
    """Stored FramesData ``all`` (36), ``train`` (24), ``valid`` (6) and ``test`` (6), CP2K-labelled."""
    from aiida_ilmlff.data import FramesData

    atoms = cp2k_labelled_atoms
    nodes = {
        'all': FramesData.from_ase(atoms[:36], label='LiBF4 all'),
        'train': FramesData.from_ase(atoms[:24], label='LiBF4 train'),
        'valid': FramesData.from_ase(atoms[24:30], label='LiBF4 valid'),
        'test': FramesData.from_ase(atoms[30:36], label='LiBF4 test'),
    }
    return {key: node.store() for key, node in nodes.items()}
