"""SIGKILL a profile's whole daemon, as a crashed login node would (used by ``pipeline_faults.py`` and
``recover_daemon.py``)."""

from __future__ import annotations

import os
import pathlib
import signal


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (killed, not yet reaped by its dead parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return pathlib.Path(f'/proc/{pid}/stat').read_text().split()[2] != 'Z'
    except OSError:
        return False


def kill_whole_daemon(client) -> list[int]:
    """SIGKILL the circus arbiter of ``client`` (an aiida ``DaemonClient``) first, so it cannot start a new worker,
    then its direct children: the workers, circusd-stats and, on a ZeroMQ profile, the broker service. Jobs that
    ``core.direct`` started are not among them (their shells exited, they were re-parented), so they run on.

    :returns: the process ids killed, arbiter first.
    """
    import psutil

    arbiter = client.get_daemon_pid()
    children = sorted(child.pid for child in psutil.Process(arbiter).children())
    killed = [arbiter, *children]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return killed
