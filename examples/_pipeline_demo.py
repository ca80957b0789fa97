"""Shared by the example scripts: submit ``ilmlff.pipeline`` to the daemon, print progress, report the result.

Uses the profile found through ``AIIDA_PATH`` (``make demo`` sets it to the checkout) and the codes that
``aiida-ilmlff setup`` registers (``cp2k``, ``mace-train``, ``dp``, ``ilmlff-runner`` on ``localhost``).
"""

from __future__ import annotations

import json
import pathlib
import time
import typing as t

from aiida_ilmlff.runner.calculators import thread_environment

CODES = {
    'label': 'cp2k@localhost',
    'mace': 'mace-train@localhost',
    'deepmd': 'dp@localhost',
    'runner': 'ilmlff-runner@localhost',
}


def start_daemon() -> bool:
    """Start the profile's daemon if it is not running; return whether this call started it."""
    from aiida.engine.daemon.client import get_daemon_client

    client = get_daemon_client()
    if client.is_daemon_running:
        return False
    print(f'starting the daemon of profile {client.profile.name}', flush=True)
    client.start_daemon()
    return True


def stop_daemon() -> None:
    """Stop the profile's daemon, waiting up to ``DAEMON_TIMEOUT`` s (``aiida_ilmlff.daemon_recovery``; the value
    ``aiida-ilmlff setup`` gives its profiles) for the workers' graceful shut-down, also in a profile made otherwise
    (AiiDA's default of 2 s times out on a loaded 2-core machine)."""
    from aiida.engine.daemon.client import get_daemon_client

    from aiida_ilmlff.daemon_recovery import DAEMON_TIMEOUT

    get_daemon_client().stop_daemon(wait=True, timeout=DAEMON_TIMEOUT)


def _last_report(node) -> str | None:
    from aiida import orm

    logs = orm.Log.collection.get_logs_for(node)
    return logs[-1].message if logs else None


def _print_progress(descendants: list, shown: dict) -> None:
    """Print the progress line of each training and MD job that changed since the last call (``shown``: pk -> line).

    The lines come from the progress monitors (:mod:`aiida_ilmlff.calculations.progress`), which the daemon runs
    while the jobs run; ``verdi process report PK`` of the job shows all of them.
    """
    from aiida import orm

    from aiida_ilmlff.calculations.progress import PROGRESS_EXTRA

    for child in sorted(descendants, key=lambda n: n.pk):
        if isinstance(child, orm.CalcJobNode):
            line = child.base.extras.get(PROGRESS_EXTRA, None)
            if line and shown.get(child.pk) != line:
                print(f'    {child.process_label}<{child.pk}>: {line}', flush=True)
                shown[child.pk] = line


def _rollback() -> None:
    """Roll back the storage session after a failed query, so that the next poll starts a fresh transaction."""
    from aiida.manage import get_manager

    try:
        get_manager().get_profile_storage().get_session().rollback()
    except Exception:  # the next poll tries again; its own error is reported then
        pass


def wait(node, poll: float = 10.0, patience_s: float = 600.0) -> None:
    """Block until ``node`` terminates, printing its latest report line, how many sub-processes run and the
    progress lines of the training and MD jobs (epochs, losses, simulated time, temperature).

    A poll that fails on the database (``sqlalchemy.exc.SQLAlchemyError``: a locked SQLite file while the daemon
    writes, a dropped PostgreSQL connection) is rolled back and tried again; the error is raised only when every
    poll failed for ``patience_s`` seconds. Watching never changes the processes: the daemon runs them either way.
    """
    from sqlalchemy.exc import SQLAlchemyError

    last = None
    shown: dict = {}
    start = time.monotonic()
    failing_since: float | None = None
    print(
        f'watch it with `verdi process report {node.pk}`; a running training or MD job: `verdi process report PK` '
        '(its progress lines)',
        flush=True,
    )
    while True:
        try:
            if node.is_terminated:
                break
            descendants = node.called_descendants
            running = sum(1 for child in descendants if not child.is_terminated)
            message = _last_report(node) or node.process_state.value
            failing_since = None
        except SQLAlchemyError as error:
            _rollback()
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > patience_s:
                raise
            reason = f'{type(error).__name__}: {str(error).splitlines()[0]}'
            print(f'    (database busy, polling again: {reason})', flush=True)
            time.sleep(poll)
            continue
        line = (
            f'[{(time.monotonic() - start) / 60:5.1f} min] {message} ({len(descendants)} processes, {running} running)'
        )
        if line.split('] ', 1)[1] != (last or '').split('] ', 1)[-1]:
            print(line, flush=True)
            last = line
        try:
            _print_progress(descendants, shown)
        except SQLAlchemyError:
            _rollback()
        time.sleep(poll)
    print(
        f'[{(time.monotonic() - start) / 60:5.1f} min] {node.process_label}<{node.pk}> {node.process_state.value} '
        f'[{node.exit_status}] {node.exit_message or ""}',
        flush=True,
    )


def use_label_cache() -> None:
    """Turn caching on for the DFT labelling CalcJobs (CP2K, pw.x) in this profile, never for training, and say so.

    A second demo (or any pipeline) on the same frames then runs no DFT job: its labels are cache clones of the
    first run's (:mod:`aiida_ilmlff.caching`). A daemon that was already running keeps the settings it started with.
    """
    from aiida.engine.daemon.client import get_daemon_client
    from aiida.manage import get_config

    from aiida_ilmlff.caching import CACHED_CALCJOBS, configure_caching

    profile = get_daemon_client().profile.name
    added = configure_caching(get_config(), profile)
    cached = ', '.join(identifier.split(':', 1)[1] for identifier in CACHED_CALCJOBS)
    print(f'caching on for {cached} in profile {profile} (DFT labels reused; training never cached)', flush=True)
    if added and get_daemon_client().is_daemon_running:
        print('the daemon started before caching was set: `verdi daemon restart` to reuse labels', flush=True)


#: The daemon runs several small jobs at once (4 trainings, 2 MD runs): one thread each keeps 2 cores busy without
#: oversubscribing them (torch and TensorFlow would otherwise each start a pool as large as the machine).
ONE_THREAD = {**thread_environment(1), 'TF_CPP_MIN_LOG_LEVEL': '3'}


def run(
    composition: dict | list[dict],
    temperature_K: float | None,
    output: str,
    overrides: dict | None = None,
    keep_daemon: bool = False,
    codes: t.Mapping | None = None,
) -> int:
    """Submit the pipeline for ``composition`` (or a list of compositions: one model over all of them), wait, print
    the comparison and write ``output``/ files; ``temperature_K`` None takes the ions' own default."""
    from aiida import load_profile

    load_profile()
    from aiida.engine import submit

    from aiida_ilmlff.analysis.comparison import format_comparison_table
    from aiida_ilmlff.cli.report import write_figures
    from aiida_ilmlff.workflows.pipeline import PipelineWorkChain

    several = isinstance(composition, list)
    builder = PipelineWorkChain.get_builder_from_protocol(
        dict(codes or CODES),
        None if several else composition,
        compositions=composition if several else None,
        protocol='fast',
        overrides=overrides,
        temperature_K=temperature_K,
        options={'environment_variables': ONE_THREAD},
    )
    use_label_cache()
    started = start_daemon()
    try:
        node = submit(builder)
        print(f'submitted ilmlff.pipeline<{node.pk}>: {builder.metadata.description}', flush=True)
        print(f'watch it with `verdi process list` / `verdi process report {node.pk}`', flush=True)
        wait(node)
    finally:
        if started and not keep_daemon:
            stop_daemon()
    if 'comparison' not in node.outputs:
        print(f'no comparison: see `verdi process report {node.pk}`', flush=True)
        return 1
    comparison = node.outputs.comparison.get_dict()
    print(format_comparison_table(comparison), flush=True)
    folder = pathlib.Path(output)
    for path in write_figures(node, folder):
        print(f'wrote {path}')
    (folder / 'comparison.json').write_text(json.dumps({'pipeline': node.pk, **comparison}, indent=2))
    print(f'wrote {folder / "comparison.json"}; the same table from the graph: aiida-ilmlff report {node.pk}')
    return 0 if node.is_finished_ok else 1
