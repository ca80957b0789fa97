"""Run the smallest ``ilmlff.pipeline`` on a profile's daemon: undisturbed, or with the daemon killed twice.

Run by ``tests/test_faults.py`` in a subprocess (``python pipeline_faults.py PROFILE MODE RUNLOG OUT TIMEOUT``) so the
profile under test (PostgreSQL + RabbitMQ, or SQLite + ZeroMQ) is loaded in a clean interpreter; writes one JSON file
``OUT`` with everything the test checks and reports.

``MODE``:

* ``undisturbed``: submit, wait.
* ``kill``: submit; when a CP2K single point of ``ilmlff.label`` is running (its job submitted and its script
  started), SIGKILL the daemon worker and let the daemon's circus arbiter start a new one (what happens when the
  kernel's OOM killer takes a worker); when a training job of ``ilmlff.train`` is running, SIGKILL the whole daemon
  (circus arbiter, worker and, on a ZeroMQ profile, the broker service: a crashed login node) and start it again
  with ``aiida-ilmlff recover`` (which clears the files a dead ZeroMQ broker leaves, then ``verdi daemon start``).
  Each time: the time from the restart to the first process node changed or log line written after it (the
  pipeline resuming), and the CalcJobs and code runs counted before the kill and after.

Code runs are counted outside AiiDA: the ``localhost`` computer's prepend text appends one line per executed job
script (``$$``: the job's process id, which is what ``core.direct`` records as the CalcJob's ``job_id``, and the
working directory) to ``RUNLOG``. A job submitted twice leaves two lines (two process ids, possibly one directory);
a CalcJob node made twice leaves a second directory. Neither the daemon nor the database can edit that file.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from daemon_kill import alive, kill_whole_daemon  # beside this script

RUN_MARK = 'ilmlff-fault-run'
POLL_S = 0.2


def now() -> float:
    return time.time()


def utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def instrument_computer(runlog: pathlib.Path) -> None:
    """Make every job script on ``localhost`` append ``RUN_MARK pid workdir time`` to ``runlog`` first."""
    from aiida import orm

    computer = orm.load_computer('localhost')
    text = computer.get_prepend_text() or ''
    if RUN_MARK not in text:
        line = f'echo "{RUN_MARK} $$ $PWD $(date +%s.%N)" >> {runlog}'
        computer.set_prepend_text(f'{text}\n{line}'.lstrip('\n'))


def code_runs(runlog: pathlib.Path) -> list[dict]:
    """The job scripts executed so far: ``{'pid', 'workdir', 'time'}`` per line of ``runlog``."""
    if not runlog.exists():
        return []
    runs = []
    for line in runlog.read_text().splitlines():
        mark, pid, workdir, started = line.split()
        if mark == RUN_MARK:
            runs.append({'pid': pid, 'workdir': workdir, 'time': float(started)})
    return runs


def calcjobs() -> list[dict]:
    """Every CalcJob node of the profile: pk, plugin, state, job id, work directory."""
    from aiida import orm

    qb = orm.QueryBuilder().append(orm.CalcJobNode, project=['*'])
    rows = []
    for (node,) in qb.all():
        rows.append(
            {
                'pk': node.pk,
                'process_type': node.process_type,
                'process_state': node.process_state.value if node.process_state else None,
                'exit_status': node.exit_status,
                'job_id': node.get_job_id(),
                'workdir': node.get_remote_workdir(),
            }
        )
    return sorted(rows, key=lambda row: row['pk'])


def node_counts() -> dict[str, int]:
    """Number of nodes of the profile per node type (and process type for processes)."""
    from aiida import orm

    counts: dict[str, int] = {}
    qb = orm.QueryBuilder().append(orm.Node, project=['node_type', 'process_type'])
    for node_type, process_type in qb.iterall():
        key = f'{node_type}|{process_type or ""}'
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def duplicated_hashes() -> dict[str, list[int]]:
    """CalcJob and calcfunction nodes that share a hash (the same inputs run twice), hash -> pks."""
    from aiida import orm

    seen: dict[str, list[int]] = {}
    for cls in (orm.CalcJobNode, orm.CalcFunctionNode):
        for pk, extras in orm.QueryBuilder().append(cls, project=['id', 'extras']).iterall():
            value = (extras or {}).get('_aiida_hash')
            if value:
                seen.setdefault(value, []).append(pk)
    return {key: pks for key, pks in seen.items() if len(pks) > 1}


def callers(node) -> list[str]:
    types = []
    while node.caller is not None:
        node = node.caller
        types.append(node.process_type or '')
    return types


def running_job(pipeline, stage: str, runlog: pathlib.Path):
    """A CalcJob of ``stage`` (``label``: CP2K single points of ilmlff.label; ``train``: ilmlff.train's jobs) whose
    job is submitted and whose script has started (its process id is in ``runlog``), or None."""
    from aiida import orm
    from aiida.engine import ProcessState

    started = {run['pid'] for run in code_runs(runlog)}
    for node in pipeline.called_descendants:
        if not isinstance(node, orm.CalcJobNode) or node.process_state != ProcessState.WAITING:
            continue
        if node.get_job_id() not in started:
            continue
        chain = callers(node)
        if stage == 'label' and node.process_type == 'aiida.calculations:cp2k':
            if any(kind.endswith(':ilmlff.label') for kind in chain):
                return node
        if stage == 'train' and any(kind.endswith(':ilmlff.train') for kind in chain):
            return node
    return None


def counts_now(runlog: pathlib.Path) -> dict:
    jobs = calcjobs()
    runs = code_runs(runlog)
    return {
        'calcjobs': len(jobs),
        'calcjobs_with_job_id': sum(1 for job in jobs if job['job_id']),
        'code_runs': len(runs),
        'terminated_calcjobs': sum(1 for job in jobs if job['process_state'] in ('finished', 'excepted', 'killed')),
    }


def first_change_after(start: float) -> dict | None:
    """The first process node changed or log line written after ``start`` (epoch seconds), or None."""
    from aiida import orm

    since = utc(start)
    found = []
    qb = orm.QueryBuilder().append(
        orm.ProcessNode, filters={'mtime': {'>': since}}, project=['id', 'process_type', 'mtime']
    )
    for pk, process_type, mtime in qb.iterall():
        found.append((mtime.timestamp(), f'{process_type}<{pk}> changed'))
    qb = orm.QueryBuilder().append(orm.Log, filters={'time': {'>': since}}, project=['time', 'dbnode_id', 'message'])
    for when, pk, message in qb.iterall():
        found.append((when.timestamp(), f'log of <{pk}>: {message[:120]}'))
    if not found:
        return None
    when, what = min(found)
    return {'time': when, 'what': what}


def _locked(exception: Exception) -> bool:
    """SQLite's 'database is locked': the daemon held the write lock past the client's busy timeout."""
    return 'database is locked' in str(exception)


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it is true; a read refused by SQLite's write lock is polled again (seen on the
    SQLite profile while the daemon wrote: `sqlite3.OperationalError: database is locked`)."""
    from aiida.manage import get_manager

    start = now()
    while True:
        try:
            value = predicate()
        except Exception as exception:
            if not _locked(exception):
                raise
            get_manager().get_profile_storage().get_session().rollback()
            value = None
        if value:
            return value
        if now() - start > timeout:
            raise TimeoutError(f'waited {timeout:.0f} s for {what}')
        time.sleep(POLL_S)


def worker_pids(client) -> set[int]:
    try:
        info = client.get_worker_info(timeout=5).get('info') or {}
    except Exception:
        return set()
    return {int(pid) for pid in info}


def kill_and_restart(profile: str, pipeline, stage: str, runlog: pathlib.Path, whole_daemon: bool) -> dict:
    """Wait until a job of ``stage`` runs, SIGKILL the worker (or the whole daemon), restart, wait for the resume."""
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_ilmlff.daemon_recovery import broker_service_dir, find_stale_broker

    client = get_daemon_client(profile)
    job = wait_for(lambda: running_job(pipeline, stage, runlog) or pipeline.is_terminated, 1200, f'a {stage} job')
    if job is True:
        raise RuntimeError(f'the pipeline ended before any {stage} job ran: [{pipeline.exit_status}]')
    workers = wait_for(lambda: worker_pids(client), 60, 'the daemon worker')
    event: dict = {
        'stage': stage,
        'whole_daemon': whole_daemon,
        'running_job': {'pk': job.pk, 'process_type': job.process_type, 'job_id': job.get_job_id()},
        'before': counts_now(runlog),
    }
    if whole_daemon:
        killed = kill_whole_daemon(client)
    else:
        killed = sorted(workers)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
    event['killed_pids'] = killed
    event['kill_time'] = now()
    wait_for(lambda: not any(alive(pid) for pid in killed), 60, 'the killed processes to end')
    if whole_daemon:
        # What the dead ZeroMQ broker service left, which `aiida-ilmlff recover` deletes before it starts the daemon.
        service_dir = broker_service_dir(client.profile)
        stale = find_stale_broker(service_dir) if service_dir else None
        event['stale_broker_files'] = sorted(path.name for path in stale.files) if stale else []
        event['restart_time'] = now()
        start = subprocess.run(
            [str(pathlib.Path(sys.executable).parent / 'aiida-ilmlff'), 'recover', '-p', profile, '1'],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        event['daemon_start'] = {'returncode': start.returncode, 'output': (start.stdout + start.stderr)[-2000:]}
        if start.returncode != 0:
            raise RuntimeError(f'aiida-ilmlff recover failed: {start.stdout}{start.stderr}')
        new = wait_for(lambda: worker_pids(client) - set(workers), 60, 'the new daemon worker')
    else:
        # circus notices the dead worker and starts another: its start is the restart.
        new = wait_for(lambda: worker_pids(client) - set(workers), 60, 'circus to start a new worker')
        import psutil

        event['restart_time'] = min(psutil.Process(pid).create_time() for pid in new)
    event['new_worker_pids'] = sorted(new)
    event['worker_up_time'] = now()
    resumed = wait_for(lambda: first_change_after(event['restart_time']), 600, 'the pipeline to resume')
    event['resume'] = resumed
    event['restart_to_resume_s'] = resumed['time'] - event['restart_time']
    event['kill_to_resume_s'] = resumed['time'] - event['kill_time']
    event['after_resume'] = counts_now(runlog)
    return event


def main(profile: str, mode: str, runlog: str, out: str, timeout: float) -> int:
    from aiida import load_profile, orm
    from aiida.engine import submit

    load_profile(profile)
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the checkout: `tests` is importable
    from workloads import smallest_pipeline_builder  # beside this script

    runlog_path = pathlib.Path(runlog)
    instrument_computer(runlog_path)
    codes = {
        'label': orm.load_code('cp2k@localhost'),
        'mace': orm.load_code('mace-train@localhost'),
        'runner': orm.load_code('ilmlff-runner@localhost'),
    }
    builder = smallest_pipeline_builder(codes)
    result: dict = {'mode': mode, 'events': []}
    start = now()
    node = submit(builder)
    result['pk'] = node.pk
    try:
        if mode == 'kill':
            result['events'].append(kill_and_restart(profile, node, 'label', runlog_path, whole_daemon=False))
            result['events'].append(kill_and_restart(profile, node, 'train', runlog_path, whole_daemon=True))
        wait_for(lambda: node.is_terminated, timeout - (now() - start), 'the pipeline to end')
    except (TimeoutError, RuntimeError) as exception:
        result['error'] = str(exception)
    result['wall_s'] = now() - start
    result['storage'] = node.backend.__class__.__name__
    result['exit_status'] = node.exit_status
    result['process_state'] = node.process_state.value if node.process_state else None
    if node.is_finished_ok:
        from aiida_ilmlff.analysis.comparison import format_comparison_table

        comparison = node.outputs.comparison.get_dict()
        result['table'] = format_comparison_table(comparison)
        result['comparison'] = comparison
        result['models'] = {
            name: {key: model.base.attributes.get('sha256', None) for key, model in models.items()}
            for name, models in ((name, node.outputs.models[name]) for name in node.outputs.models)
        }
    result['calcjobs'] = calcjobs()
    result['code_runs'] = code_runs(runlog_path)
    result['counts'] = counts_now(runlog_path)
    result['node_counts'] = node_counts()
    result['duplicated_hashes'] = duplicated_hashes()
    pathlib.Path(out).write_text(json.dumps(result, indent=1, default=str))
    return 0 if node.is_finished_ok and 'error' not in result else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
