"""Fault tests: the daemon killed with SIGKILL in the middle of a pipeline, then restarted (issue 19, item 3a).

The pipeline is ``ilmlff.pipeline`` at its smallest with one architecture (``tests/scripts/workloads.py``:
``smallest_pipeline_builder``): CP2K AIMD + CP2K labelling (ilmlff.dataset -> ilmlff.label), the test split, a
committee of 2 tiny MACE models (ilmlff.train), ilmlff.evaluate, ilmlff.properties and the comparison table. It runs
once undisturbed (SQLite + ZeroMQ, the reference) and once per profile kind with the daemon killed twice
(``tests/scripts/pipeline_faults.py``, mode ``kill``):

1. while a CP2K single point of ilmlff.label runs: SIGKILL the daemon worker; circus starts a new one;
2. while a MACE training job of ilmlff.train runs: SIGKILL the whole daemon (circus arbiter, worker, circusd-stats
   and the ZeroMQ broker service where there is one); ``aiida-ilmlff recover`` (the files a dead ZeroMQ broker
   leaves deleted, then ``verdi daemon start``: :mod:`aiida_ilmlff.daemon_recovery`).

Each kill run must end with the reference's table, the same CalcJobs (per plugin) and the same number of nodes of
every type (no node made twice), and every job script executed exactly once: the ``localhost`` computer's prepend
text logs the process id and work directory of every job script that starts, outside AiiDA, and each CalcJob's
``job_id`` (``core.direct``: that process id) and work directory must be in it exactly once.

Nothing in aiida_ilmlff had to change for the resume to work: every work chain context holds nodes, plain data
and AttributeDicts (checkpointed with the process), every step that launches sub-processes stores them only through
``self.submit`` + ``to_context`` (what the checkpoint records), and no step writes files outside the repository.

Marker ``faults``: left out of ``make test``, run by ``make test-faults`` (``.ci/run`` runs it after ``make test``).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.fixtures.daemon import PROFILE_PARAMS, daemon_profile

#: Whole pipeline, seconds: about 3-4 min on 2 free cores; killed and restarted twice, a minute more at most.
PIPELINE_TIMEOUT_S = 1500


def _run_pipeline(profile, mode: str, tmp_path) -> dict:
    runlog, out = tmp_path / 'runs.log', tmp_path / 'result.json'
    result = profile.script(
        'pipeline_faults.py', profile.name, mode, runlog, out, PIPELINE_TIMEOUT_S, timeout=PIPELINE_TIMEOUT_S + 120
    )
    assert out.exists(), result.stdout + result.stderr
    summary = json.loads(out.read_text())
    summary['kind'] = profile.kind
    if result.returncode != 0:
        report = profile.verdi('process', 'report', str(summary['pk'])).stdout
        pytest.fail(
            f'{mode} pipeline on {profile.kind}: {summary.get("error")} [{summary["exit_status"]}]\n{report[-6000:]}\n'
            f'{result.stderr[-4000:]}'
        )
    return summary


@pytest.fixture(scope='module')
def undisturbed(tmp_path_factory):
    """The reference: the same pipeline, same seeds, never disturbed (SQLite + ZeroMQ profile)."""
    tmp_path = tmp_path_factory.mktemp('undisturbed')
    with daemon_profile('sqlite-zeromq', tmp_path / 'aiida', 'faultsref') as profile:
        summary = _run_pipeline(profile, 'undisturbed', tmp_path)
    print(f'undisturbed pipeline: {summary["wall_s"]:.0f} s wall, {summary["counts"]}')
    return summary


def _by_plugin(jobs: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job['process_type']] = counts.get(job['process_type'], 0) + 1
    return dict(sorted(counts.items()))


UUID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')


def _without_identities(value):
    """``value`` without what names nodes (uuids, pks), which differs between two runs by construction: keys ending
    in ``uuid``/``pk`` are dropped, and a mapping keyed by uuids (e.g. per trajectory) becomes the sorted list of its
    values."""
    if isinstance(value, dict):
        if value and all(UUID.match(str(key)) for key in value):
            return sorted((_without_identities(item) for item in value.values()), key=repr)
        return {
            key: _without_identities(item)
            for key, item in value.items()
            if not (key.endswith('uuid') or key.endswith('pk') or key == 'pks')
        }
    if isinstance(value, list):
        return [_without_identities(item) for item in value]
    return value


@pytest.mark.faults
@pytest.mark.daemon
@pytest.mark.timeout(3600)
@pytest.mark.parametrize('kind', PROFILE_PARAMS)
def test_daemon_killed_during_labelling_and_training(kind, undisturbed, tmp_path):
    """SIGKILL the daemon worker during labelling and the whole daemon during training: same table, no job twice."""
    with daemon_profile(kind, tmp_path / 'aiida', 'faultskill') as profile:
        killed = _run_pipeline(profile, 'kill', tmp_path)
    figures = {
        'kind': kind,
        'wall_s': {'undisturbed': round(undisturbed['wall_s'], 1), 'killed': round(killed['wall_s'], 1)},
        'events': [
            {
                'stage': event['stage'],
                'killed': 'whole daemon' if event['whole_daemon'] else 'worker',
                'running_job': event['running_job'],
                'kill_to_restart_s': round(event['restart_time'] - event['kill_time'], 2),
                'restart_to_worker_seen_s': round(event['worker_up_time'] - event['restart_time'], 2),
                'restart_to_resume_s': round(event['restart_to_resume_s'], 2),
                'kill_to_resume_s': round(event['kill_to_resume_s'], 2),
                'resumed_by': event['resume']['what'],
                'before_kill': event['before'],
                'after_resume': event['after_resume'],
            }
            for event in killed['events']
        ],
        'at_end': {'undisturbed': undisturbed['counts'], 'killed': killed['counts']},
    }
    print('FAULTS ' + json.dumps(figures))
    if os.environ.get('ILMLFF_FAULTS_REPORT'):
        with open(os.environ['ILMLFF_FAULTS_REPORT'], 'a') as stream:
            stream.write(json.dumps({**figures, 'table': killed['table'], 'reference_table': undisturbed['table']}))
            stream.write('\n')

    # Both kills happened where they were meant to, and the pipeline came back after each.
    assert [event['stage'] for event in killed['events']] == ['label', 'train']
    for event in killed['events']:
        assert event['restart_to_resume_s'] >= 0
        assert event['after_resume']['calcjobs'] >= event['before']['calcjobs']
    assert killed['exit_status'] == 0

    # The same table as the undisturbed run with the same seeds (the comparison, uuids aside, and the models' files).
    assert killed['table'] == undisturbed['table'], f'killed:\n{killed["table"]}\nundisturbed:\n{undisturbed["table"]}'
    assert _without_identities(killed['comparison']) == _without_identities(undisturbed['comparison'])
    assert killed['models'] == undisturbed['models']

    # No CalcJob ran twice: the same CalcJobs per plugin as undisturbed, all finished, and every one's job script
    # executed exactly once (its job id and work directory each in the run log once, and nothing else there).
    jobs, runs = killed['calcjobs'], killed['code_runs']
    assert _by_plugin(jobs) == _by_plugin(undisturbed['calcjobs'])
    assert all(job['process_state'] == 'finished' and job['exit_status'] == 0 for job in jobs), jobs
    assert len(runs) == len(jobs) == len(undisturbed['code_runs'])
    assert sorted(run['pid'] for run in runs) == sorted(job['job_id'] for job in jobs)
    assert sorted(os.path.realpath(run['workdir']) for run in runs) == sorted(
        os.path.realpath(job['workdir']) for job in jobs
    )
    assert len({run['pid'] for run in runs}) == len({run['workdir'] for run in runs}) == len(runs)
    # The jobs that were running at each kill finished and ran once.
    for event in killed['events']:
        job = next(job for job in jobs if job['pk'] == event['running_job']['pk'])
        assert [run['pid'] for run in runs].count(job['job_id']) == 1

    # No node duplicated: as many nodes of every type as the undisturbed run, and no two calculations with one hash.
    assert killed['node_counts'] == undisturbed['node_counts']
    assert not killed['duplicated_hashes']
