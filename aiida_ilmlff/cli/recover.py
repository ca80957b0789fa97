"""``aiida-ilmlff recover``: start a profile's daemon again after it died (see :mod:`aiida_ilmlff.daemon_recovery`)."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from aiida_ilmlff.cli.setup import fail


def _daemon_answers(client) -> bool:
    """Whether the daemon's circus arbiter answers (a PID file left by a killed daemon does not count)."""
    from aiida.engine.daemon.client import DaemonException

    if not client.is_daemon_running:
        return False
    try:
        client.get_status(timeout=5)
    except DaemonException:
        return False
    return True


@click.command('recover')
@click.argument('workers', type=click.IntRange(min=1), default=1)
@click.option('-p', '--profile', 'profile_name', default=None, help='AiiDA profile (default: the default one).')
def recover(workers: int, profile_name: str | None) -> None:
    """Start the daemon of a profile with WORKERS workers after it died (killed, OOM, rebooted login node).

    On a ZeroMQ profile it first deletes the files a dead broker service left (broker.pid, broker.status,
    broker.sockets and the socket directory), which can otherwise make the new worker connect to the dead
    broker and never run anything (aiida-core 2.9). The broker's task queue, which holds the processes to
    resume, is kept. Refuses when the daemon is running. Then `verdi daemon start WORKERS`.
    """
    from aiida.engine.daemon.client import get_daemon_client
    from aiida.manage import get_config

    from aiida_ilmlff.daemon_recovery import broker_service_dir, clear_stale_broker_files

    config = get_config()
    try:
        profile = config.get_profile(profile_name)
    except Exception as exception:  # ProfileConfigurationError: unknown or no default profile
        fail(f'no profile {profile_name or "(default)"}: {exception}')
    client = get_daemon_client(profile.name)
    if _daemon_answers(client):
        fail(f'the daemon of profile `{profile.name}` is running: `verdi -p {profile.name} daemon status` shows it')
    service_dir = broker_service_dir(profile)
    if service_dir is not None:
        stale = clear_stale_broker_files(service_dir)
        if stale is None:
            click.echo(f'broker: nothing stale in {service_dir}')
        else:
            names = ', '.join(path.name for path in stale.files)
            click.echo(f'broker: deleted what the dead broker service (pid {stale.pid}) left: {names}')
    verdi = os.path.join(os.path.dirname(sys.executable), 'verdi')
    result = subprocess.run([verdi, '-p', profile.name, 'daemon', 'start', str(workers)], check=False)
    sys.exit(result.returncode)
