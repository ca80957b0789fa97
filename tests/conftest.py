"""Shared fixtures for the aiida-ilmlff test suite.

Profiles: the session profile is a temporary ``core.sqlite_dos`` profile with the ZeroMQ broker of
aiida-core 2.9 (no services needed), so ``submit_and_await`` and daemon tests work everywhere.
The ``services`` tests make their own PostgreSQL + RabbitMQ profile (see ``test_daemon.py``).

Shared fixtures live in the package :mod:`tests.fixtures` (codes, boxes, the cached real-code data set and tiny
models, node counts), registered here; a folder's ``conftest.py`` keeps only what that folder alone uses.
"""

from __future__ import annotations

import os
import pathlib

import pytest

pytest_plugins = [
    'aiida.tools.pytest_fixtures',
    'tests.fixtures.codes',
    'tests.fixtures.boxes',
    'tests.fixtures.models',
    'tests.fixtures.parsers',
]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


@pytest.fixture(scope='session')
def aiida_profile(aiida_config, aiida_profile_factory):
    """A temporary SQLite profile with the ZeroMQ broker, loaded for the whole test session."""
    with aiida_profile_factory(aiida_config, broker_backend='core.zeromq') as profile:
        yield profile


@pytest.fixture(scope='session')
def shared_dir() -> pathlib.Path:
    """The project's ``shared/`` folder beside the checkout (``$ILMLFF_SHARED`` overrides it)."""
    path = pathlib.Path(os.environ.get('ILMLFF_SHARED', REPO_ROOT.parent / 'shared'))
    if not path.is_dir():
        pytest.fail(f'shared folder not found at {path}: set ILMLFF_SHARED') if IN_CI else pytest.skip(
            f'shared folder not found at {path}'
        )
    return path


@pytest.fixture(scope='session')
def pseudo_dir(shared_dir) -> pathlib.Path:
    """The SSSP 1.3 efficiency UPF files in ``shared/pseudos`` (never copied into the repository)."""
    return shared_dir / 'pseudos'
