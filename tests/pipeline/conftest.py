"""Fixtures of the pipeline tests: the four codes on localhost and small PYR14BF4 inputs."""

from __future__ import annotations

import pathlib
import shutil
import sys

import pytest

from tests.md.conftest import model_recipes

BIN = pathlib.Path(sys.executable).parent
PYR14BF4 = {'PYR14': 2, 'BF4': 2}
#: One thread per job: the tests run several jobs at once on 2 cores.
ONE_THREAD = dict(model_recipes.THREADS_ENV)


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


def count_nodes() -> int:
    """Number of nodes in the profile."""
    from aiida import orm

    return orm.QueryBuilder().append(orm.Node).count()
