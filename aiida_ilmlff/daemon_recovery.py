"""Start a profile's daemon again after it died: clear what a dead ZeroMQ broker service left behind (issue 19).

On a profile with the ZeroMQ broker of aiida-core 2.9 (``verdi presto --use-zeromq``; SQLite profiles made by
``aiida-ilmlff setup --broker zeromq``) the daemon runs the broker as a service beside its workers. The service
writes three files in its directory (``broker.pid``, ``broker.status`` and ``broker.sockets``, the last naming a
temporary directory that holds its ``router.sock``) and deletes them when it stops. When it is killed (SIGKILL,
the OOM killer, a rebooted login node) they stay. ``verdi daemon start`` then starts a new broker and a new worker
at the same time: the worker reads ``broker.sockets`` once, and when it reads it before the new broker has
rewritten it, it connects to the dead broker's socket and waits there for ever (so does any client that submits
then). Nothing runs, nothing is reported and ``verdi process list`` shows every process Waiting. Measured with
aiida-core 2.9.4 on this project's machine (``tests/scripts/recover_daemon.py``): after a SIGKILL of the whole
daemon and plain ``verdi daemon start``, a CalcJob submitted then ran in 0 of 5 restarts; one red
``make test-faults`` hung the same way.

:func:`clear_stale_broker_files` deletes those files when the process that ``broker.pid`` names is not a running
broker, so the new worker waits for the new broker's ``broker.sockets`` (aiida-core's worker does so when the file
is absent). ``aiida-ilmlff recover`` calls it and then ``verdi daemon start``. RabbitMQ profiles have no such
files: for them this is ``verdi daemon start``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil

__all__ = (
    'BROKER_FILES',
    'DAEMON_TIMEOUT',
    'StaleBroker',
    'broker_service_dir',
    'clear_stale_broker_files',
    'find_stale_broker',
)

#: The files the ZeroMQ broker service writes in its directory (``aiida.brokers.zeromq.service``).
BROKER_FILES = ('broker.pid', 'broker.status', 'broker.sockets')


@dataclasses.dataclass(frozen=True)
class StaleBroker:
    """What a dead ZeroMQ broker service left: ``files`` (paths in its directory) and ``sockets_dir`` (the temporary
    directory named in ``broker.sockets``, or None), and ``pid`` (the dead process, or None when unreadable)."""

    files: tuple[pathlib.Path, ...]
    sockets_dir: pathlib.Path | None
    pid: int | None


#: Seconds the daemon client waits for an answer of the circus daemon (AiiDA's ``daemon.timeout`` option, set in
#: every profile ``aiida-ilmlff setup`` creates; AiiDA's default is 2): ``verdi daemon stop`` waits this long for
#: the workers' graceful shut-down. The default timed out on a loaded 2-core machine after a work chain had finished
#: (CI 2026-12-07), so that `verdi daemon stop` exited 1 with the daemon still stopping.
DAEMON_TIMEOUT = 120


def broker_service_dir(profile) -> pathlib.Path | None:
    """The ZeroMQ broker service directory of ``profile`` (an :class:`aiida.manage.configuration.Profile`), or None
    for a profile with another broker (RabbitMQ) or none."""
    if profile.process_control_backend != 'core.zeromq':
        return None
    from aiida.manage import get_config

    return pathlib.Path(get_config().filepaths(profile)['broker_service']['dir'])


def _broker_pid(service_dir: pathlib.Path) -> int | None:
    try:
        words = (service_dir / 'broker.pid').read_text().split()
        return int(words[-1]) if words else None
    except (OSError, ValueError):
        return None


def _is_running_broker(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) ZeroMQ broker service process: its command line runs
    ``verdi ... daemon broker`` (the command of ``DaemonClient._cmd_start_zmq_broker``)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        command = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return 'daemon' in command and 'broker' in command


def find_stale_broker(service_dir: pathlib.Path | str) -> StaleBroker | None:
    """What a dead broker service left in ``service_dir``, or None (no files, or the broker named runs).

    A broker counts as dead when ``broker.pid`` is missing or unreadable while other files are there, or names a
    process that is gone, a zombie, or not a broker (its process id reused).
    """
    service_dir = pathlib.Path(service_dir)
    files = tuple(service_dir / name for name in BROKER_FILES if (service_dir / name).exists())
    if not files:
        return None
    pid = _broker_pid(service_dir)
    if pid is not None and _is_running_broker(pid):
        return None
    sockets_dir = None
    try:
        named = (service_dir / 'broker.sockets').read_text().strip()
        sockets_dir = pathlib.Path(named) if named else None
    except OSError:
        pass
    return StaleBroker(files=files, sockets_dir=sockets_dir, pid=pid)


def clear_stale_broker_files(service_dir: pathlib.Path | str) -> StaleBroker | None:
    """Delete what a dead ZeroMQ broker service left in ``service_dir`` (see :func:`find_stale_broker`) and the
    socket directory it named; never touches the files of a running broker or its task queue (``storage/``, which
    holds the processes to resume).

    :returns: what was deleted, or None when nothing was stale.
    """
    stale = find_stale_broker(service_dir)
    if stale is None:
        return None
    if stale.sockets_dir is not None and stale.sockets_dir.name.startswith('aiida_zeromq_'):
        shutil.rmtree(stale.sockets_dir, ignore_errors=True)
    for path in stale.files:
        path.unlink(missing_ok=True)
    return stale
