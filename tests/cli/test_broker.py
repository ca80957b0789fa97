"""``aiida-ilmlff setup`` and RabbitMQ's ``consumer_timeout`` (issue 19): the reading, the comparison, the line.

``rabbitmqctl`` is faked for each answer a node gives (a number, no timeout, an error, a missing command); one test
asks the broker of this machine (the ``services`` marker: RabbitMQ 3.10 on 127.0.0.1, default 30 min).
"""

from __future__ import annotations

import shutil
import subprocess
import types

import pytest

from aiida_ilmlff.broker import (
    RECOMMENDED,
    ConsumerTimeout,
    broker_check,
    consumer_timeout_message,
    longest_walltime,
    read_consumer_timeout,
)


def _rabbitmqctl(stdout: str = '', returncode: int = 0, stderr: str = '', error: Exception | None = None):
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        if error is not None:
            raise error
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)

    run.calls = calls
    return run


def test_reading_each_answer_of_rabbitmqctl():
    run = _rabbitmqctl('{ok,1800000}\n')
    timeout = read_consumer_timeout('127.0.0.1', run)
    assert timeout.known and timeout.milliseconds == 1800000
    assert run.calls == [['rabbitmqctl', 'eval', 'application:get_env(rabbit, consumer_timeout).']]
    assert read_consumer_timeout('localhost', _rabbitmqctl('undefined\n')) == ConsumerTimeout(True, None, timeout.how)
    refused = read_consumer_timeout('127.0.0.1', _rabbitmqctl('', 69, 'Error: unable to perform an operation on node'))
    assert not refused.known and 'unable to perform an operation' in refused.how and 'as root' in refused.how
    missing = read_consumer_timeout(
        '127.0.0.1', _rabbitmqctl(error=FileNotFoundError(2, 'No such file', 'rabbitmqctl'))
    )
    assert not missing.known and 'No such file' in missing.how
    remote = _rabbitmqctl('{ok,1}')
    far = read_consumer_timeout('mq.cluster.example.org', remote)
    assert not far.known and 'mq.cluster.example.org' in far.how and remote.calls == []


def test_longest_walltime_of_each_protocol():
    """The largest max_wallclock_seconds over every protocol file (balanced: 24 h jobs; stringent: 48 h training)."""
    assert longest_walltime('fast')[0] == 3600
    seconds, where = longest_walltime('balanced')
    assert seconds == 86400 and where.endswith('max_wallclock_seconds') and '.yaml: ' in where
    assert longest_walltime('stringent') == (172800, 'train/deepmd.yaml: deepmd.metadata.options.max_wallclock_seconds')
    assert longest_walltime('no-such-protocol') == (0, '')


@pytest.mark.parametrize(
    ('timeout', 'warning', 'expected'),
    [
        (
            ConsumerTimeout(True, 1800000, 'x'),
            True,
            'consumer_timeout is 0.5 h, shorter than the longest wall time of ',
        ),
        (ConsumerTimeout(True, 36000000000, 'x'), False, 'consumer_timeout is 1e+04 h: longer than the longest'),
        (ConsumerTimeout(True, 86400000, 'x'), False, 'consumer_timeout is 24 h: longer than'),  # equal: enough
        (ConsumerTimeout(True, None, 'x'), False, 'consumer_timeout: none'),
        (ConsumerTimeout(False, None, 'rabbitmqctl is missing'), True, 'consumer_timeout could not be checked'),
    ],
)
def test_the_warning_and_its_fix(timeout, warning, expected):
    line, is_warning = consumer_timeout_message(timeout, 86400, 'md/base.yaml: md.x', 'balanced')
    assert is_warning is warning and line.startswith(expected), line
    assert (RECOMMENDED in line) is warning
    if warning:
        assert '(24 h, md/base.yaml: md.x)' in line and 'docs/howto_cluster.md' in line


def test_only_a_rabbitmq_profile_is_checked():
    zeromq = types.SimpleNamespace(process_control_backend='core.zeromq', process_control_config={})
    assert broker_check(zeromq, 'balanced', _rabbitmqctl('{ok,1}')) is None
    rabbit = types.SimpleNamespace(
        process_control_backend='core.rabbitmq', process_control_config={'broker_host': '127.0.0.1'}
    )
    line, warning = broker_check(rabbit, 'balanced', _rabbitmqctl('{ok,1800000}'))
    assert (
        warning and 'consumer_timeout is 0.5 h, shorter than the longest wall time of protocol `balanced` (24 h' in line
    )


@pytest.mark.services
def test_the_broker_of_this_machine():
    """RabbitMQ on 127.0.0.1 (the CI machine's, 30 min unless raised): the value comes back from the node."""
    if shutil.which('rabbitmqctl') is None:
        pytest.fail(
            'rabbitmqctl is not installed: the services tests need RabbitMQ on this machine (tools/services.sh)'
        )
    timeout = read_consumer_timeout('127.0.0.1')
    assert timeout.known, timeout.how
    assert timeout.milliseconds is None or timeout.milliseconds > 0
    line, warning = consumer_timeout_message(timeout, *longest_walltime('balanced'), 'balanced')
    print(line)
    assert warning is (timeout.milliseconds is not None and timeout.milliseconds < 86400 * 1000)
