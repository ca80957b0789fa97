"""What a killed ZeroMQ broker service leaves, and clearing it (``aiida_ilmlff.daemon_recovery``, issue 19).

The service directory is built by hand the way aiida-core 2.9.4's ``ZeromqBrokerService.start`` writes it; the
restart itself, with a real daemon killed four times, is ``tests/test_daemon.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from aiida_ilmlff.cli import cli
from aiida_ilmlff.daemon_recovery import BROKER_FILES, clear_stale_broker_files, find_stale_broker


def _service_dir(tmp_path, pid: int):
    service, sockets = tmp_path / 'broker', tmp_path / 'aiida_zeromq_x1y2'
    (service / 'storage' / 'tasks').mkdir(parents=True)
    (service / 'storage' / 'tasks' / 'task-1.json').write_text('{}')
    sockets.mkdir()
    (sockets / 'router.sock').write_text('')
    (service / 'broker.pid').write_text(f'aiida-zeromq-broker {pid}')
    (service / 'broker.status').write_text('{}')
    (service / 'broker.sockets').write_text(f'{sockets}\n')
    return service, sockets


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_a_dead_broker_is_stale_and_cleared_without_its_task_queue(tmp_path):
    pid = _dead_pid()
    service, sockets = _service_dir(tmp_path, pid)
    stale = find_stale_broker(service)
    assert stale is not None and stale.pid == pid and stale.sockets_dir == sockets
    assert sorted(path.name for path in stale.files) == sorted(BROKER_FILES)
    assert clear_stale_broker_files(service) == stale
    assert not sockets.exists() and not any((service / name).exists() for name in BROKER_FILES)
    assert (service / 'storage' / 'tasks' / 'task-1.json').exists()
    assert find_stale_broker(service) is None and clear_stale_broker_files(service) is None


def test_a_reused_pid_is_stale_and_a_running_broker_is_not(tmp_path):
    """A live process that is not ``verdi ... daemon broker`` (its pid reused) does not keep the files; a live
    broker does, and nothing of it is deleted."""
    service, sockets = _service_dir(tmp_path / 'reused', os.getpid())
    assert find_stale_broker(service) is not None
    # The stand-in broker touches `ready` once it runs its own program: right after Popen returns, /proc can still
    # show an empty command line (the exec is not finished), which would read as a process that is not a broker.
    ready = tmp_path / 'ready'
    program = 'import pathlib, sys, time; pathlib.Path(sys.argv[1]).touch(); time.sleep(60)'
    broker = subprocess.Popen([sys.executable, '-c', program, str(ready), 'daemon', 'broker'])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        service, sockets = _service_dir(tmp_path / 'live', broker.pid)
        assert find_stale_broker(service) is None and clear_stale_broker_files(service) is None
        assert sockets.exists() and all((service / name).exists() for name in BROKER_FILES)
    finally:
        broker.kill()
        broker.wait()


def test_files_without_a_pid_file_are_stale(tmp_path):
    service, sockets = _service_dir(tmp_path, 1)
    (service / 'broker.pid').unlink()
    stale = find_stale_broker(service)
    assert stale is not None and stale.pid is None and stale.sockets_dir == sockets


@pytest.mark.parametrize('args', [['-p', 'no-such-profile-xyz'], ['0']])
def test_recover_refuses_bad_input(args):
    result = CliRunner().invoke(cli, ['recover', *args])
    assert result.exit_code != 0
    assert 'no-such-profile-xyz' in result.output or "Invalid value for '[WORKERS]'" in result.output
