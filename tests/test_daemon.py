"""Daemon tests: submit an aiida-ilmlff process to a running daemon, await it, query its provenance.

Two profiles, each made by ``aiida-ilmlff setup`` in a throw-away AIIDA_PATH with its own daemon:

* ``services``: PostgreSQL (127.0.0.1:5432, trust auth) + RabbitMQ (127.0.0.1:5672, guest/guest).
  Where those services are absent the test skips with the reason, except under ``CI=true``,
  where it fails.
* SQLite + the ZeroMQ broker of aiida-core 2.9 (no services): runs everywhere.

The workload (``tests/scripts/workloads.py``) labels two Li+ BF4- frames with real CP2K (protocol
``fast``) through ``ilmlff.label``.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

BIN = pathlib.Path(sys.executable).parent
SCRIPTS = pathlib.Path(__file__).parent / 'scripts'
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')
SERVICES = {'PostgreSQL': ('127.0.0.1', 5432), 'RabbitMQ': ('127.0.0.1', 5672)}


def _unreachable(services) -> list[str]:
    missing = []
    for name in services:
        host, port = SERVICES[name]
        try:
            with socket.create_connection((host, port), timeout=3):
                pass
        except OSError as exception:
            missing.append(f'{name} at {host}:{port} ({exception})')
    return missing


def _run(args, env, timeout=600):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, check=False)


PROFILES = {
    'psql-rabbitmq': (['--db-backend', 'postgres', '--broker', 'rabbitmq'], ['PostgreSQL', 'RabbitMQ']),
    'sqlite-zeromq': (['--db-backend', 'sqlite', '--broker', 'zeromq'], []),
}


@pytest.mark.daemon
@pytest.mark.parametrize(
    'kind',
    [pytest.param('psql-rabbitmq', marks=pytest.mark.services), 'sqlite-zeromq'],
)
def test_daemon_submit_await_query(kind, tmp_path):
    """Set up a profile, start its daemon, submit ``ilmlff.label``, await it and query provenance."""
    setup_args, services = PROFILES[kind]
    missing = _unreachable(services)
    if missing:
        message = 'services test needs ' + '; '.join(missing)
        pytest.fail(message) if IN_CI else pytest.skip(message)

    env = {
        **os.environ,
        'AIIDA_PATH': str(tmp_path),
        'PATH': f'{BIN}{os.pathsep}{os.environ.get("PATH", "")}',
    }
    profile = 'daemontest'
    setup = _run([str(BIN / 'aiida-ilmlff'), 'setup', '-p', profile, *setup_args], env)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    config = json.loads((tmp_path / '.aiida' / 'config.json').read_text())['profiles'][profile]
    try:
        start = _run([str(BIN / 'verdi'), '-p', profile, 'daemon', 'start', '1'], env)
        assert start.returncode == 0, start.stdout + start.stderr
        result = _run([sys.executable, str(SCRIPTS / 'submit_workload.py'), profile, '400'], env)
        lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
        assert result.returncode == 0 and lines, result.stdout + result.stderr
        summary = json.loads(lines[-1])
        print(kind, summary)
        assert summary['exit_status'] == 0
        assert summary['storage'] == ('PsqlDosBackend' if kind == 'psql-rabbitmq' else 'SqliteDosStorage')
        assert summary['n_labelled'] == 2
        assert 'aiida.calculations:cp2k' in summary['upstream_calcjobs']
    finally:
        _run([str(BIN / 'verdi'), '-p', profile, 'daemon', 'stop'], env)
        _run([str(BIN / 'verdi'), 'profile', 'delete', '--delete-data', '--force', profile], env)
        if config['storage']['backend'] == 'core.psql_dos':
            from aiida.manage.external.postgres import Postgres

            postgres = Postgres(interactive=False, quiet=True, dbinfo={'host': '127.0.0.1', 'port': 5432})
            user = config['storage']['config']['database_username']
            if postgres.dbuser_exists(user):
                postgres.drop_dbuser(user)
