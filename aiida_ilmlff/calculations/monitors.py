"""CalcJob monitors (aiida-core's ``monitors`` input, entry-point group ``aiida.calculations.monitors``).

``ilmlff.cp2k.scf`` (:func:`cp2k_scf_monitor`): kill a running CP2K job as soon as its main output reports an SCF
that did not converge. CP2K 2023.1 has no keyword that makes an unconverged SCF fatal (its input reference has no
``IGNORE_CONVERGENCE_FAILURE``; that keyword, and the abort it switches off, came with later versions): with OT it
prints ``SCF run NOT converged`` and goes on with the unconverged forces. An MD then runs away (measured: a 106-atom
GFN1-xTB AIMD unconverged from step 0 reached 72,000 K at step 1 and 9e7 K at step 3, at 60 s a step). Use::

    builder.cp2k.monitors = {'scf': orm.Dict({'entry_point': 'ilmlff.cp2k.scf'})}

The engine calls the monitor each time it polls the job (at most every ``minimum_poll_interval`` seconds when
given). It reads only the lines that matter (a ``grep`` over the transport, so a long output is not copied; the
whole file when ``grep`` fails) and, when more than ``max_unconverged_steps`` force evaluations failed, returns a
kill result: the job is killed, its files retrieved and parsed, and the CalcJob ends with aiida-core's exit code
150 ``STOPPED_BY_MONITOR`` and a message that starts with :data:`SCF_MONITOR_MESSAGE`.
``ilmlff.cp2k.base`` handles that exit code (the SCF ladder, then its 510).
"""

from __future__ import annotations

import os
import shlex
import tempfile
import typing as t

from aiida.engine.processes.calcjobs.monitors import CalcJobMonitorAction, CalcJobMonitorResult

from aiida_ilmlff.parsers.cp2k_output import (
    CP2K_OUTPUT_FILE,
    SCF_NOT_CONVERGED_MARKERS,
    SCF_WALLTIME_MARKER,
    unconverged_evaluations,
)

if t.TYPE_CHECKING:
    from aiida.orm import CalcJobNode
    from aiida.transports import Transport

__all__ = ('SCF_MONITOR_ENTRY_POINT', 'SCF_MONITOR_MESSAGE', 'cp2k_scf_monitor', 'is_scf_monitor_stop')

#: Entry point of :func:`cp2k_scf_monitor` (group ``aiida.calculations.monitors``).
SCF_MONITOR_ENTRY_POINT = 'ilmlff.cp2k.scf'
#: Start of the message of a job killed by :func:`cp2k_scf_monitor` (the CalcJob's exit message, code 150).
SCF_MONITOR_MESSAGE = 'CP2K SCF not converged'

_PATTERN = '|'.join(
    [*SCF_NOT_CONVERGED_MARKERS, SCF_WALLTIME_MARKER, r'ENERGY\| Total FORCE_EVAL', r'MD\| Step number']
)


def is_scf_monitor_stop(node: CalcJobNode) -> bool:
    """Whether ``node`` (a finished CalcJob) was killed by :func:`cp2k_scf_monitor`."""
    return node.exit_status == 150 and str(node.exit_message or '').startswith(SCF_MONITOR_MESSAGE)


def _read_digest(node: CalcJobNode, transport: Transport) -> str | None:
    """The lines of the running job's main output that :func:`unconverged_evaluations` needs (``None``: no file)."""
    workdir = node.get_remote_workdir()
    if workdir is None:
        return None
    name = node.get_option('output_filename') or CP2K_OUTPUT_FILE
    path = os.path.join(workdir, name)
    if not transport.isfile(path):
        return None
    status, stdout, _ = transport.exec_command_wait(f'grep -E {shlex.quote(_PATTERN)} {shlex.quote(path)}')
    if status in (0, 1):  # 1: no line matched
        return stdout
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, name)
        transport.getfile(path, local)
        with open(local, encoding='utf-8', errors='replace') as handle:
            return handle.read()


def cp2k_scf_monitor(
    node: CalcJobNode, transport: Transport, max_unconverged_steps: int = 0
) -> CalcJobMonitorResult | None:
    """Kill the CP2K job when more than ``max_unconverged_steps`` force evaluations had an unconverged SCF.

    :param node: the running ``Cp2kCalculation``. :param transport: an open transport to its computer.
    :param max_unconverged_steps: unconverged force evaluations (MD steps) tolerated; 0 (the default) stops the
        job at the first.
    :return: ``None`` while the SCF converges; else a kill result (files retrieved and parsed, exit code 150) whose
        message names the failed evaluations.
    """
    text = _read_digest(node, transport)
    if not text:
        return None
    failed = unconverged_evaluations(text)
    if len(failed) <= int(max_unconverged_steps):
        return None
    shown = ', '.join(str(k) for k in failed[:5]) + (' ...' if len(failed) > 5 else '')
    return CalcJobMonitorResult(
        message=f'{SCF_MONITOR_MESSAGE}: {len(failed)} force evaluation(s) of the run had an unconverged SCF '
        f'(allowed: {int(max_unconverged_steps)}); evaluations {shown} (0 = the initial MD step); job killed',
        action=CalcJobMonitorAction.KILL,
        retrieve=True,
        parse=True,
        override_exit_code=True,
    )
