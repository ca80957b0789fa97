"""A scheduler job cancelled from outside (``scancel``): how to recognise it; the handler of the restart work chains.

aiida-core does not recognise a cancelled job: ``core.slurm``'s ``parse_output`` maps only the accounting states
``OUT_OF_MEMORY``, ``TIMEOUT`` and ``NODE_FAIL`` (and two ``stderr`` messages) to exit codes, and returns ``None``
for ``CANCELLED``. The CalcJob is then retrieved and parsed as if the job had ended by itself, and its parser fails
on the truncated output with whatever exit code that output gives (an incomplete CP2K output, a runner that wrote
no result), which no handler reads as "cancelled". :func:`scheduler_cancellation` finds the cancellation from two
sources:

1. the job's scheduler ``stderr`` (``_scheduler-stderr.txt``, always retrieved by AiiDA), where ``slurmstepd``
   writes ``*** JOB 42 ON node01 CANCELLED AT 2026-12-05T11:55:40 ***`` when a running job is cancelled. This works
   without Slurm accounting (the one-node cluster of ``tools/slurm_ssh.sh`` has none: ``sacct`` answers "Slurm
   accounting storage is disabled", so the CalcJob's ``detailed_job_info`` has a non-zero ``retval``);
2. the CalcJob's ``detailed_job_info`` (``sacct``, where accounting runs): ``State`` ``CANCELLED by <uid>``. This
   also covers a job cancelled while it was still pending, or starting (Slurm creates the ``stderr`` file only when
   the batch script starts; with ``--get-user-env``, which AiiDA sets, slurmd first loads the user's environment).

Without accounting, a job cancelled before its script started leaves no trace the work chain can read: its
CalcJob fails as its parser says (e.g. 302 of ``ilmlff.md``, no ``status.json``), which is an unhandled failure.

A cancellation "DUE TO TIME LIMIT" is not one: that is the wall time, which ``core.slurm`` already maps to exit code
120 (``ERROR_SCHEDULER_OUT_OF_WALLTIME``).

:class:`CancelledJobMixin` gives a ``BaseRestartWorkChain`` the input ``resubmit_cancelled`` (set by the protocols),
the exit code 403 ``ERROR_JOB_CANCELLED`` and the handler :meth:`CancelledJobMixin.handle_cancelled_job`
(priority 900, before every other handler, since the parser's exit code of a cancelled job says nothing about the
physics): with ``resubmit_cancelled`` true the calculation is submitted again (it counts towards
``max_iterations``), otherwise the work chain stops with 403. Either way the work chain's report says which job
was cancelled, when, and what was done. To stop a work chain and its jobs on purpose, use
``verdi process kill PK`` (it cancels the job and the work chain), not ``scancel``.
"""

from __future__ import annotations

import re

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler

__all__ = ('CANCELLED_MARKER', 'CancelledJobMixin', 'scheduler_cancellation')

#: What ``slurmstepd`` writes to a job's ``stderr`` when the job is cancelled while it runs; group 1: job id,
#: 2: node, 3: time (Slurm's ISO format), 4: the reason after ``DUE TO`` when there is one (``TIME LIMIT``,
#: ``PREEMPTION``, ``NODE FAILURE``).
CANCELLED_MARKER = re.compile(r'\*\*\* JOB (\d+) ON (\S+) CANCELLED AT (\S+)(?: DUE TO ([A-Z_ ]+?))? \*\*\*')

_NOT_A_CANCELLATION = ('TIME LIMIT',)  # the wall time: exit code 120 of aiida-core


def _stderr(calc: orm.CalcJobNode) -> str:
    """The retrieved scheduler ``stderr`` of ``calc`` ('' when absent)."""
    name = calc.get_option('scheduler_stderr') or '_scheduler-stderr.txt'
    try:
        return calc.outputs.retrieved.base.repository.get_object_content(name, mode='r')
    except Exception:  # no `retrieved` output (NotExistentAttributeError) or no such file
        return ''


def _accounting_state(calc: orm.CalcJobNode) -> str:
    """``State`` of the job in ``calc``'s ``detailed_job_info`` (``sacct --parsable``; '' when unavailable)."""
    info = calc.get_detailed_job_info() or {}
    if info.get('retval', 0) != 0:
        return ''
    lines = str(info.get('stdout') or '').splitlines()
    if len(lines) < 2:
        return ''
    data = dict(zip(lines[0].split('|'), lines[1].split('|')))
    return data.get('State', '')


def scheduler_cancellation(calc: orm.CalcJobNode) -> str | None:
    """How the scheduler job of ``calc`` was cancelled, as a phrase for a report, or ``None`` if it was not.

    :param calc: a terminated CalcJobNode (its ``retrieved`` output and ``detailed_job_info`` are read).
    :return: e.g. ``'Slurm job 42 cancelled at 2026-12-05T11:55:40 on node01'`` (from the job's scheduler
        ``stderr``) or ``'Slurm job 42 CANCELLED by 1000 (sacct)'`` (from the accounting); ``None`` when neither
        shows a cancellation, or the only one is the wall time ("DUE TO TIME LIMIT", exit code 120).
    """
    job = calc.get_job_id() or '?'
    for match in CANCELLED_MARKER.finditer(_stderr(calc)):
        reason = (match.group(4) or '').strip()
        if reason in _NOT_A_CANCELLATION:
            continue
        due = f' due to {reason.lower()}' if reason else ''
        return f'Slurm job {match.group(1)} cancelled at {match.group(3)} on {match.group(2)}{due}'
    state = _accounting_state(calc)
    if state.startswith('CANCELLED'):
        return f'Slurm job {job} {state} (sacct)'
    return None


class CancelledJobMixin:
    """The ``resubmit_cancelled`` input, exit code 403 and the cancelled-job handler of a ``BaseRestartWorkChain``.

    Put it before the work chain's base class (``class X(CancelledJobMixin, BaseRestartWorkChain)``). A work chain
    can override :meth:`prepare_resubmission` to resubmit from a checkpoint rather than from the start.
    """

    @classmethod
    def define(cls, spec):
        """Add ``resubmit_cancelled`` and exit code 403 ``ERROR_JOB_CANCELLED``."""
        super().define(spec)  # type: ignore[misc]
        spec.input(
            'resubmit_cancelled',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='What to do when the scheduler job is cancelled from outside (`scancel`, an administrator, a '
            'preemption): True submits the calculation again (counted in `max_iterations`), False stops the work '
            'chain with exit code 403. Set by the protocols (`resubmit_cancelled`).',
        )
        spec.exit_code(
            403,
            'ERROR_JOB_CANCELLED',
            message='The scheduler job of {calculation} was cancelled ({detail}) and `resubmit_cancelled` is False.',
        )

    def prepare_resubmission(self, calc: orm.CalcJobNode) -> str:
        """Change ``self.ctx.inputs`` for the next submission after ``calc`` was cancelled; return what was done
        (for the report). Default: nothing changes, the calculation runs again from its start."""
        return 'submitting it again with the same inputs'

    @process_handler(priority=900)
    def handle_cancelled_job(self, calc):
        """The job was cancelled from outside: resubmit it or stop with 403, as ``resubmit_cancelled`` says."""
        if calc.is_finished_ok:
            return None
        detail = scheduler_cancellation(calc)
        if detail is None:
            return None
        what = f'{calc.process_label}<{calc.pk}>'
        if not self.inputs.resubmit_cancelled.value:  # type: ignore[attr-defined]
            self.report(f'{what}: {detail}; resubmit_cancelled is False: stopping')  # type: ignore[attr-defined]
            exit_codes = self.exit_codes  # type: ignore[attr-defined]
            exit_code = exit_codes.ERROR_JOB_CANCELLED.format(calculation=what, detail=detail)
            return ProcessHandlerReport(True, exit_code)
        action = self.prepare_resubmission(calc)
        self.report(f'{what}: {detail}; resubmit_cancelled is True: {action}')  # type: ignore[attr-defined]
        return ProcessHandlerReport(True)
