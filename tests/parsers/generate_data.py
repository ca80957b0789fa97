"""Regenerate the real ``mace_run_train`` and ``dp`` output files under ``tests/parsers/data/`` (not a test).

Run explicitly, from the checkout (about 2-3 minutes on one free core: 36 CP2K GFN1-xTB single points, one tiny
MACE training, one tiny DeePMD training)::

    AIIDA_PATH=$PWD .venv/bin/python -m pytest -p no:cacheprovider tests/parsers/generate_data.py

It runs the real ``ilmlff.mace.train`` and ``ilmlff.deepmd.train`` CalcJobs with the training tests' tiny
hyperparameters (:mod:`tests.fixtures.training`) on the training tests' Li+ BF4- frames (24 train, 6 valid,
6 test) and copies what the parser reads (retrieved files, and the retrieved-temporary evaluation files) from
the job's working directory. Then regenerate the regression files:
``pytest tests/parsers --force-regen``.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.calculations.deepmd import DeepmdTrainCalculation
from aiida_ilmlff.calculations.mace import MaceTrainCalculation
from tests.fixtures.models import cache_folder
from tests.fixtures.training import (
    LIBF4_RECIPE,
    TINY_DEEPMD,
    TINY_MACE,
    cached_libf4_frames,
    job_options,
    localhost_code,
)

DATA = pathlib.Path(__file__).resolve().parent / 'data'
#: What the parser of each CalcJob reads (retrieve_list + retrieve_temporary_list), relative to the work directory.
#: The model files are left out (hundreds of kB): the parsers only hash them, so the tests put a stand-in there.
KEEP = {
    'mace_train': [
        'logs',
        'results',
        'mace_train.out',
        'mace_train.err',
        'eval.log',
        'ilmlff_split.json',
        'eval_output.xyz',
    ],
    'deepmd_train': [
        'input.json',
        'lcurve.out',
        'ilmlff_split.json',
        'train.log',
        'freeze.log',
        'test.log',
        'train.err',
        'freeze.err',
        'test.err',
        'detail.e.out',
        'detail.f.out',
    ],
}


@pytest.fixture(scope='module')
def libf4_frames(aiida_profile, pytestconfig):
    """The training tests' 36 Li+ BF4- frames (the same disk cache), split 24/6/6 as there."""
    from aiida_ilmlff.data import FramesData

    atoms = cached_libf4_frames(cache_folder(pytestconfig, LIBF4_RECIPE), 36, seed=0)
    for frame in atoms:
        frame.info['level_of_theory'] = 'cp2k/gfn1-xtb (fast)'
        frame.info['origin'] = 'nEQ'
    return {
        'train': FramesData.from_ase(atoms[:24]).store(),
        'valid': FramesData.from_ase(atoms[24:30]).store(),
        'test': FramesData.from_ase(atoms[30:36]).store(),
    }


def _copy(node, name: str) -> None:
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    work = pathlib.Path(node.outputs.remote_folder.get_remote_path())
    target = DATA / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for entry in KEEP[name]:
        source = work / entry
        if source.is_dir():
            shutil.copytree(source, target / entry, ignore=shutil.ignore_patterns('*_debug.log'))
        elif source.exists():
            shutil.copy(source, target / entry)


@pytest.mark.parametrize(
    ('name', 'calculation', 'key', 'parameters'),
    [
        ('mace_train', MaceTrainCalculation, 'mace_train', TINY_MACE),
        ('deepmd_train', DeepmdTrainCalculation, 'dp', TINY_DEEPMD),
    ],
)
def test_generate(libf4_frames, name, calculation, key, parameters):
    _, node = run_get_node(
        calculation,
        code=localhost_code(key),
        parameters=orm.Dict(parameters),
        metadata={'options': job_options()},
        **libf4_frames,
    )
    _copy(node, name)
