"""RabbitMQ's ``consumer_timeout`` against the wall times of a protocol (``aiida-ilmlff setup``; issue 19).

RabbitMQ (3.8.15 and later) closes the channel of a consumer that holds a message unacknowledged for longer than
``consumer_timeout`` (default 30 min). An AiiDA daemon worker holds the task message of each process it runs until
the process ends, so a CalcJob (or a work chain) that lasts longer than that is lost to its worker: it stops
progressing, and the daemon logs a ``PRECONDITION_FAILED - delivery acknowledgement ... timed out`` error.
:func:`broker_check` compares the broker's value with the longest ``max_wallclock_seconds`` of a protocol
(every protocol file, see :func:`longest_walltime`) and says what to set. ZeroMQ (the default broker of
``verdi presto`` profiles) has no such timeout.

The value is read with ``rabbitmqctl eval 'application:get_env(rabbit, consumer_timeout).'`` when the broker runs
on this machine and ``rabbitmqctl`` may talk to it (root or the rabbitmq user: it needs the Erlang cookie); otherwise
it cannot be checked, and the message says so. (The management HTTP API does not show the setting.)
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import subprocess
import typing as t

import yaml

__all__ = ('ConsumerTimeout', 'broker_check', 'consumer_timeout_message', 'longest_walltime', 'read_consumer_timeout')

#: The rabbitmq.conf line that the how-to recommends (about 417 days, in ms: no practical limit).
RECOMMENDED = 'consumer_timeout = 36000000000'
_LOCAL_HOSTS = ('127.0.0.1', 'localhost', '::1')
_COMMAND = ['rabbitmqctl', 'eval', 'application:get_env(rabbit, consumer_timeout).']


@dataclasses.dataclass(frozen=True)
class ConsumerTimeout:
    """The broker's ``consumer_timeout``.

    :param known: whether it could be read. :param milliseconds: the timeout in ms; ``None`` with ``known``: no
        timeout. :param how: how it was read, or why it could not be.
    """

    known: bool
    milliseconds: int | None
    how: str


def read_consumer_timeout(host: str, run: t.Callable = subprocess.run) -> ConsumerTimeout:
    """Read the ``consumer_timeout`` of the RabbitMQ node on ``host`` with ``rabbitmqctl`` (this machine only).

    :param host: the profile's ``broker_host``. :param run: ``subprocess.run`` (replaced in tests).
    :returns: never raises; an unreadable value is ``known=False`` with the reason in ``how``.
    """
    if host not in _LOCAL_HOSTS:
        return ConsumerTimeout(False, None, f'the broker runs on {host}: rabbitmqctl can only ask a local node')
    try:
        result = run(_COMMAND, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exception:
        return ConsumerTimeout(False, None, f'`rabbitmqctl eval` failed: {exception}')
    output = (result.stdout or '').strip()
    how = '`rabbitmqctl eval application:get_env(rabbit, consumer_timeout)`'
    if result.returncode == 0:
        match = re.fullmatch(r'\{ok,\s*(\d+)\}', output)
        if match:
            return ConsumerTimeout(True, int(match.group(1)), how)
        if output in ('undefined', '{ok,false}', '{ok,infinity}', '{ok,undefined}'):
            return ConsumerTimeout(True, None, how)
    lines = [line for line in (output + '\n' + (result.stderr or '')).splitlines() if line.strip()]
    reason = lines[0].strip() if lines else f'exit status {result.returncode}'
    return ConsumerTimeout(False, None, f'`rabbitmqctl eval` gave {reason!r} (run it as root or as rabbitmq)')


def _walltimes(value: t.Any, path: str) -> t.Iterator[tuple[int, str]]:
    if isinstance(value, collections.abc.Mapping):
        for key, item in value.items():
            here = f'{path}.{key}' if path else str(key)
            if key == 'max_wallclock_seconds' and isinstance(item, (int, float)) and not isinstance(item, bool):
                yield int(item), here
            else:
                yield from _walltimes(item, here)


def longest_walltime(protocol: str) -> tuple[int, str]:
    """The longest ``max_wallclock_seconds`` [s] of ``protocol`` over every protocol file, and where it is set.

    :returns: ``(seconds, 'md/base.yaml: md.metadata.options.max_wallclock_seconds')``; ``(0, '')`` when no file
        has the protocol or none sets a wall time.
    """
    from aiida_ilmlff.workflows.protocols import PROTOCOL_DIR, recursive_merge

    best = (0, '')
    for path in sorted(PROTOCOL_DIR.rglob('*.yaml')):
        data = yaml.safe_load(path.read_text(encoding='utf-8')) or {}
        if protocol not in (data.get('protocols') or {}):
            continue
        inputs = recursive_merge(data.get('default_inputs') or {}, data['protocols'][protocol])
        for seconds, where in _walltimes(inputs, ''):
            if seconds > best[0]:
                best = (seconds, f'{path.relative_to(PROTOCOL_DIR).as_posix()}: {where}')
    return best


def _hours(seconds: float) -> str:
    return f'{seconds / 3600:.3g} h'


def consumer_timeout_message(timeout: ConsumerTimeout, walltime_s: int, where: str, protocol: str) -> tuple[str, bool]:
    """One line for ``aiida-ilmlff setup`` and whether it is a warning.

    A warning when the timeout is unknown or shorter than ``walltime_s`` (the longest wall time of ``protocol``,
    set at ``where``); the line names the fix (:data:`RECOMMENDED` in rabbitmq.conf, docs/howto_cluster.md).
    """
    fix = f'set `{RECOMMENDED}` in /etc/rabbitmq/rabbitmq.conf and restart RabbitMQ (docs/howto_cluster.md)'
    longest = f'the longest wall time of protocol `{protocol}` ({_hours(walltime_s)}, {where})'
    if not timeout.known:
        return f'consumer_timeout could not be checked ({timeout.how}); if it is shorter than {longest}, {fix}', True
    if timeout.milliseconds is None:
        return 'consumer_timeout: none (RabbitMQ never drops a long-running process)', False
    seconds = timeout.milliseconds / 1000.0
    if seconds < walltime_s:
        return (
            f'consumer_timeout is {_hours(seconds)}, shorter than {longest}: RabbitMQ drops any process running '
            f'longer (a job waiting in the queue counts too); {fix}',
            True,
        )
    return f'consumer_timeout is {_hours(seconds)}: longer than {longest}', False


def broker_check(profile: t.Any, protocol: str, run: t.Callable = subprocess.run) -> tuple[str, bool] | None:
    """The consumer-timeout line of ``profile`` (an AiiDA ``Profile``) for ``protocol``; ``None`` when its broker is
    not RabbitMQ (no such timeout)."""
    if profile.process_control_backend != 'core.rabbitmq':
        return None
    host = str((profile.process_control_config or {}).get('broker_host', '127.0.0.1'))
    seconds, where = longest_walltime(protocol)
    return consumer_timeout_message(read_consumer_timeout(host, run), seconds, where, protocol)
