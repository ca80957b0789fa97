"""Daemon tests: submit an aiida-ilmlff process to a running daemon, await it, query its provenance.

Two profiles, each made by ``aiida-ilmlff setup`` in a throw-away AIIDA_PATH with its own daemon
(:mod:`tests.fixtures.daemon`):

* ``services``: PostgreSQL (127.0.0.1:5432, trust auth) + RabbitMQ (127.0.0.1:5672, guest/guest).
  Where those services are absent the test skips with the reason, except under ``CI=true``,
  where it fails.
* SQLite + the ZeroMQ broker of aiida-core 2.9 (no services): runs everywhere.

The workload (``tests/scripts/workloads.py``) labels two Li+ BF4- frames with real CP2K (protocol
``fast``) through ``ilmlff.label``.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.daemon import PROFILE_PARAMS, daemon_profile


@pytest.mark.daemon
@pytest.mark.parametrize('kind', PROFILE_PARAMS)
def test_daemon_submit_await_query(kind, tmp_path):
    """Set up a profile, start its daemon, submit ``ilmlff.label``, await it and query provenance."""
    with daemon_profile(kind, tmp_path) as profile:
        result = profile.script('submit_workload.py', profile.name, '400')
        lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
        assert result.returncode == 0 and lines, result.stdout + result.stderr
        summary = json.loads(lines[-1])
        print(kind, summary)
        assert summary['exit_status'] == 0
        assert summary['storage'] == ('PsqlDosBackend' if kind == 'psql-rabbitmq' else 'SqliteDosStorage')
        assert summary['n_labelled'] == 2
        assert 'aiida.calculations:cp2k' in summary['upstream_calcjobs']
