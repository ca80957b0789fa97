"""Fixtures of the pipeline tests: the four codes on localhost and small PYR14BF4 inputs."""

from __future__ import annotations

import pathlib
import shutil
import sys

import pytest

BIN = pathlib.Path(sys.executable).parent
MD_TESTS = pathlib.Path(__file__).resolve().parents[1] / 'md'
PYR14BF4 = {'PYR14': 2, 'BF4': 2}
#: One thread per job: the tests run several jobs at once on 2 cores.
ONE_THREAD = {
    'OMP_NUM_THREADS': '1',
    'MKL_NUM_THREADS': '1',
    'TF_INTRA_OP_PARALLELISM_THREADS': '1',
    'TF_INTER_OP_PARALLELISM_THREADS': '1',
    'DP_INTRA_OP_PARALLELISM_THREADS': '1',
    'DP_INTER_OP_PARALLELISM_THREADS': '1',
    'TF_CPP_MIN_LOG_LEVEL': '3',
}


def _executable(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        pytest.skip(f'{name} is not installed')
    return path


@pytest.fixture
def pipeline_codes(aiida_code_installed, aiida_localhost):
    """``{'label': cp2k, 'mace': mace_run_train, 'deepmd': dp, 'runner': ilmlff-runner}`` InstalledCodes."""
    aiida_localhost.set_minimum_job_poll_interval(0.0)
    specs = {
        'label': ('cp2k.psmp', 'cp2k'),
        'mace': ('mace_run_train', 'ilmlff.mace.train'),
        'deepmd': ('dp', 'ilmlff.deepmd.train'),
        'runner': ('ilmlff-runner', 'ilmlff.md'),
    }
    return {
        key: aiida_code_installed(
            label=f'{key}-pipeline-test',
            default_calc_job_plugin=plugin,
            computer=aiida_localhost,
            filepath_executable=_executable(executable),
        )
        for key, (executable, plugin) in specs.items()
    }


@pytest.fixture(scope='session')
def tiny_mace_file(pytestconfig) -> pathlib.Path:
    """The tiny MACE model of the MD tests (GFN1-xTB PYR14BF4 frames; cached with them), as a foundation model."""
    if str(MD_TESTS) not in sys.path:
        sys.path.insert(0, str(MD_TESTS))
    import md_models
    from md_xtb import cp2k_executable

    cache = pathlib.Path(pytestconfig.cache.mkdir(f'ilmlff-{md_models.RECIPE_VERSION}'))
    if not (cache / 'frames.xyz').exists() and cp2k_executable() is None:
        pytest.skip('cp2k.psmp is not installed')
    return md_models.train_mace(md_models.labelled_frames(cache), cache)


def count_nodes() -> int:
    """Number of nodes in the profile."""
    from aiida import orm

    return orm.QueryBuilder().append(orm.Node).count()
