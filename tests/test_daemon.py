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


@pytest.mark.daemon
def test_recover_after_the_whole_daemon_is_killed(tmp_path):
    """SIGKILL the whole daemon of a ZeroMQ profile (arbiter, worker, broker service) four times; after each,
    ``aiida-ilmlff recover`` deletes the broker files the dead service left and starts the daemon, and a CalcJob
    submitted then finishes. With plain ``verdi daemon start`` (aiida-core 2.9.4) the job ran in 0 of 5 such
    restarts: the new worker or the submitting client connected to the dead broker's socket
    (:mod:`aiida_ilmlff.daemon_recovery`)."""
    with daemon_profile('sqlite-zeromq', tmp_path) as profile:
        result = profile.script('recover_daemon.py', profile.name, '4', 'recover', timeout=900)
        lines = [line for line in result.stdout.splitlines() if line.startswith('{')]
        assert result.returncode == 0 and lines, result.stdout + result.stderr
        cycles = json.loads(lines[-1])['cycles']
        print(cycles)
        # The kill left the broker files each time (what made plain `verdi daemon start` hang), and every job ran.
        assert all(cycle['stale_broker_files'] for cycle in cycles), cycles
        assert [cycle['sum'] for cycle in cycles] == [1, 2, 3, 4], cycles
