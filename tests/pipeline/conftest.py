"""Fixtures of the pipeline tests: the four codes on localhost (from :mod:`tests.fixtures.codes`)."""

from __future__ import annotations

import pytest

from tests.fixtures.codes import THREADS_ENV

#: One thread per job: the tests run several jobs at once on 2 cores.
ONE_THREAD = dict(THREADS_ENV)


@pytest.fixture
def pipeline_codes(cp2k_code, mace_train_code, dp_code, runner_code):
    """``{'label': cp2k, 'mace': mace_run_train, 'deepmd': dp, 'runner': ilmlff-runner}`` InstalledCodes."""
    return {'label': cp2k_code, 'mace': mace_train_code, 'deepmd': dp_code, 'runner': runner_code}
