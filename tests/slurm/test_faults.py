"""Faults of the production path (issue 19, 3b): a Slurm job cancelled with ``scancel`` while it runs.

The job is a real one: a 10-step runner MD (``ilmlff.md.base``, the tiny MACE model) on the Slurm computer of
``docs/computers/slurm-ssh.yaml``, run in-process while a thread waits for the job in ``squeue`` (found by a
``--comment`` token of this test, so that no other job is touched) and ``scancel``s it once it runs. With the
protocol's ``resubmit_cancelled: true`` the work chain submits the MD again and finishes; with ``false`` it stops
with exit code 403. Both outcomes are checked against Slurm's job completion log and the work chain's report
(the lines of ``verdi process report``).
"""

from __future__ import annotations

import pathlib
import subprocess
import threading
import time
import uuid

import pytest
from aiida import orm
from aiida.engine import run_get_node

from tests.fixtures.codes import options
from tests.slurm.test_slurm_ssh import LABEL, _slurm_record, slurm_computer, slurm_over_ssh  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

MD_PARAMETERS = {'steps': 10, 'traj_every': 5, 'thermo_every': 5, 'checkpoint_every': 5, 'temperature_K': 450.0}


def started_job(token: str) -> str | None:
    """The id of the job with Slurm comment ``token`` once it runs its script, else ``None``.

    RUNNING in ``squeue`` is not enough: with ``--get-user-env`` (AiiDA sets it) slurmd first loads the user's
    environment, and a job cancelled then has run nothing and written no stderr; the stderr file in the job's work
    directory shows that the script started.
    """
    queue = subprocess.run(
        ['squeue', '-h', '-o', '%i|%k|%T|%Z'], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    for line in queue.splitlines():
        job_id, comment, state, workdir = [*line.split('|'), '', '', ''][:4]
        if comment == token and state == 'RUNNING' and pathlib.Path(workdir, '_scheduler-stderr.txt').exists():
            return job_id
    return None


class Canceller(threading.Thread):
    """Wait for the first job whose Slurm comment is ``token`` to run its script, then ``scancel`` it (once).

    ``cancelled`` is the job id (``None`` until done); ``error`` what went wrong, if anything.
    """

    def __init__(self, token: str, delay: float = 2.0, timeout: float = 300.0):
        super().__init__(daemon=True)
        self.token, self.delay, self.timeout = token, delay, timeout
        self.cancelled: str | None = None
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            job_id = started_job(self.token)
            if job_id is not None:
                time.sleep(self.delay)  # the runner is running, not just starting
                done = subprocess.run(['scancel', job_id], capture_output=True, text=True, timeout=30, check=False)
                if done.returncode != 0:
                    self.error = f'scancel {job_id}: {done.stderr.strip()}'
                self.cancelled = job_id
                return
            time.sleep(0.3)
        self.error = self.error or f'no running job with comment {self.token} within {self.timeout:.0f} s'


def report_lines(node: orm.ProcessNode) -> list[str]:
    """The messages ``verdi process report`` shows for ``node`` itself (its DbLog entries), oldest first."""
    return [log.message for log in orm.Log.collection.get_logs_for(node, order_by=[{'id': 'asc'}])]


def md_builder(runner, structure, model, token: str, parameters: dict = MD_PARAMETERS, **overrides):
    """An ``ilmlff.md.base`` builder (protocol ``fast``, ``parameters``) whose job carries the Slurm comment
    ``token`` (how the test's threads find it in ``squeue``); ``overrides`` go to the protocol."""
    from aiida_ilmlff.workflows.md import MDBaseWorkChain

    job_options = options(max_wallclock_seconds=900, custom_scheduler_commands=f'#SBATCH --comment={token}')
    return MDBaseWorkChain.get_builder_from_protocol(
        runner,
        structure,
        models=[model],
        protocol='fast',
        overrides={'md': {'parameters': parameters, 'metadata': {'options': job_options}}, **overrides},
    )


def _run_with_scancel(builder, token: str):
    canceller = Canceller(token)
    canceller.start()
    start = time.monotonic()
    try:
        _, node = run_get_node(builder)
    finally:
        canceller.stop.set()
        canceller.join(timeout=60)
    seconds = time.monotonic() - start
    assert canceller.error is None, canceller.error
    assert canceller.cancelled is not None
    return node, canceller.cancelled, seconds


def _calcjobs(node):
    return sorted((n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)), key=lambda n: n.pk)


def _job_state(job_id: str) -> str:
    record = _slurm_record(job_id)
    return next((word.split('=', 1)[1] for word in record.split() if word.startswith('JobState=')), '')


def test_scancel_resubmits_md(slurm_computer, md_structure, mace_model):  # noqa: F811
    """Protocol default (``resubmit_cancelled: true``): the cancelled MD runs again as a new job and finishes."""
    runner = orm.load_code(f'ilmlff-runner@{LABEL}')
    token = f'ilmlff-scancel-{uuid.uuid4().hex[:8]}'
    builder = md_builder(runner, md_structure, mace_model, token)
    assert builder.resubmit_cancelled.value is True
    node, cancelled, seconds = _run_with_scancel(builder, token)
    lines = report_lines(node)
    print(f'scancel -> resubmit: {seconds:.1f} s; job {cancelled} cancelled; report of {node.pk}:', *lines, sep='\n  ')

    assert node.is_finished_ok, (node.exit_status, node.exit_message, lines)
    first, *rest = _calcjobs(node)
    assert first.get_job_id() == cancelled
    assert _job_state(cancelled) == 'CANCELLED', _slurm_record(cancelled)
    assert not first.is_finished_ok
    assert len(rest) == 1 and rest[0].is_finished_ok, [(c.pk, c.exit_status) for c in rest]
    assert _job_state(rest[0].get_job_id()) == 'COMPLETED', _slurm_record(rest[0].get_job_id())
    expected = f'MDCalculation<{first.pk}>: Slurm job {cancelled} cancelled at '
    assert any(expected in line and 'resubmit_cancelled is True: ' in line for line in lines), lines
    assert node.outputs.trajectory.n_frames == 3


def test_scancel_stops_with_403_when_the_protocol_says_so(slurm_computer, md_structure, mace_model):  # noqa: F811
    """``resubmit_cancelled: false``: the work chain stops with 403 ``ERROR_JOB_CANCELLED`` after one job."""
    runner = orm.load_code(f'ilmlff-runner@{LABEL}')
    token = f'ilmlff-scancel-{uuid.uuid4().hex[:8]}'
    builder = md_builder(runner, md_structure, mace_model, token, resubmit_cancelled=False)
    node, cancelled, seconds = _run_with_scancel(builder, token)
    lines = report_lines(node)
    print(f'scancel -> 403: {seconds:.1f} s; job {cancelled} cancelled; report of {node.pk}:', *lines, sep='\n  ')

    assert node.exit_status == 403, (node.exit_status, node.exit_message, lines)
    assert f'Slurm job {cancelled} cancelled at ' in node.exit_message
    (calc,) = _calcjobs(node)
    assert calc.get_job_id() == cancelled
    assert _job_state(cancelled) == 'CANCELLED', _slurm_record(cancelled)
    assert any(f'Slurm job {cancelled} cancelled at ' in line and 'resubmit_cancelled is False: stopping' in line
               for line in lines), lines  # fmt: skip
