"""Kill a profile's whole daemon and start it again, several times; after each restart run one CalcJob through it.

Run by ``tests/test_daemon.py`` in a subprocess (``python recover_daemon.py PROFILE CYCLES HOW``); ``HOW`` is
``recover`` (``aiida-ilmlff recover``) or ``verdi`` (plain ``verdi daemon start``, for the record). Prints one JSON
line: per cycle, the broker files the dead daemon left, whether the CalcJob (``core.arithmetic.add`` run by
``/bin/bash`` on ``localhost``) finished within ``JOB_TIMEOUT_S`` and how long it took.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

from daemon_kill import alive, kill_whole_daemon  # beside this script

JOB_TIMEOUT_S = 90


def add_job(x: int):
    """A ``core.arithmetic.add`` CalcJob builder on ``localhost`` (``/bin/bash`` as the code)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        code = orm.load_code('bash-add@localhost')
    except NotExistent:
        code = orm.InstalledCode(
            label='bash-add',
            computer=orm.load_computer('localhost'),
            filepath_executable='/bin/bash',
            default_calc_job_plugin='core.arithmetic.add',
        ).store()
    builder = code.get_builder()
    builder.x, builder.y = orm.Int(x), orm.Int(1)
    builder.metadata.options.resources = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
    return builder


def main(profile: str, cycles: int, how: str) -> int:
    from aiida import load_profile
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client
    from aiida.manage import get_manager

    from aiida_ilmlff.daemon_recovery import broker_service_dir, find_stale_broker

    profile_obj = load_profile(profile)
    manager = get_manager()
    client = get_daemon_client(profile)
    service_dir = broker_service_dir(profile_obj)
    bin_dir = pathlib.Path(sys.executable).parent
    start = {
        'recover': [bin_dir / 'aiida-ilmlff', 'recover', '-p', profile, '1'],
        'verdi': [bin_dir / 'verdi', '-p', profile, 'daemon', 'start', '1'],
    }[how]
    results = []
    for cycle in range(cycles):
        killed = kill_whole_daemon(client)
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.2)
        stale = find_stale_broker(service_dir) if service_dir else None
        started = subprocess.run([str(arg) for arg in start], capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f'{start}: {started.stdout}{started.stderr}')
        # This process's own broker connection still names the dead broker's socket (a ZeroMQ client reads
        # ``broker.sockets`` once): a submit through it would never reach the new broker.
        manager.reset_runner()
        manager.reset_broker()
        node = submit(add_job(cycle))
        begin = time.monotonic()
        while not node.is_terminated and time.monotonic() - begin < JOB_TIMEOUT_S:
            time.sleep(0.5)
        results.append(
            {
                'cycle': cycle,
                'stale_broker_files': sorted(path.name for path in stale.files) if stale else [],
                'finished_ok': node.is_finished_ok,
                'sum': node.outputs.sum.value if node.is_finished_ok else None,
                'seconds': round(time.monotonic() - begin, 1),
            }
        )
    print(json.dumps({'how': how, 'cycles': results}))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
