"""Fixtures of the training tests: codes on ``localhost`` and frames labelled by real CP2K GFN1-xTB.

The frames (Li+ BF4- pairs rattled in an 8 Å box, 6 atoms) are labelled once per session by running
``cp2k.psmp`` directly (about 1 s a frame; see ``training_cp2k_frames.py``) at the GFN1-xTB level of the labelling
``fast`` protocol. Every real run is tiny and single-threaded: the machine has 2 cores shared by many.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
BIN = pathlib.Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from training_helpers import LEVEL_OF_THEORY  # noqa: E402


def _executable(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f'{name} not installed in {BIN}')
    return str(path)


@pytest.fixture
def mace_train_code(aiida_code_installed, aiida_localhost):
    """``mace_run_train`` of this virtual environment as an InstalledCode on localhost."""
    return aiida_code_installed(
        label='mace-train-test',
        default_calc_job_plugin='ilmlff.mace.train',
        computer=aiida_localhost,
        filepath_executable=_executable('mace_run_train'),
    )


@pytest.fixture
def dp_code(aiida_code_installed, aiida_localhost):
    """``dp`` (deepmd-kit, TensorFlow backend) of this virtual environment on localhost."""
    return aiida_code_installed(
        label='dp-test',
        default_calc_job_plugin='ilmlff.deepmd.train',
        computer=aiida_localhost,
        filepath_executable=_executable('dp'),
    )


@pytest.fixture
def evaluate_code(aiida_code_installed, aiida_localhost):
    """The compute-node evaluation command ``ilmlff-evaluate`` on localhost."""
    return aiida_code_installed(
        label='ilmlff-evaluate-test',
        default_calc_job_plugin='ilmlff.evaluate',
        computer=aiida_localhost,
        filepath_executable=_executable('ilmlff-evaluate'),
    )


@pytest.fixture(scope='session')
def cp2k_labelled_atoms(tmp_path_factory) -> list:
    """36 Li+ BF4- frames labelled by CP2K GFN1-xTB (energy eV, forces eV/Å), as ASE Atoms."""
    if shutil.which('cp2k.psmp') is None:
        pytest.skip('cp2k.psmp not installed')
    from training_cp2k_frames import labelled_frames

    atoms = labelled_frames(36, tmp_path_factory.mktemp('cp2k'), seed=0)
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
