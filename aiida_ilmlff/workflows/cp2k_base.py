"""``ilmlff.cp2k.base``: aiida-cp2k's ``Cp2kBaseWorkChain`` with the handlers a labelling campaign needs.

Differences from the parent work chain:

* ``restart_incomplete_calculation`` (aiida-cp2k's only handler, disabled there) is enabled: a run that hit
  the walltime or stopped early restarts from its wavefunction. An MD continues from CP2K's restart file
  (``EXT_RESTART`` with ``RESTART_COUNTERS``) for the steps it has left: CP2K counts ``MOTION/MD/STEPS`` from the
  restored ``STEP_START_VAL``, so the restart asks for the requested total less the step of the restart file
  (:func:`remaining_md_steps`; measured with CP2K 2023.1: restarted at step 4 with ``STEPS 6`` it ran to step 10,
  and ``MAX_STEPS`` cannot cap it exactly: restarted at step 4 with ``MAX_STEPS 6`` it stopped at 5). CP2K writes
  the restart file every ``MOTION/PRINT/RESTART/EACH/MD`` steps (20 by default; ``ilmlff.aimd`` sets it to its
  print interval) and not when it stops at its walltime: an MD stopped before its first restart file cannot be
  continued and the work chain stops with exit code 400 (raise ``max_wallclock_seconds`` or print restarts more
  often). An SCF that CP2K stopped at its walltime is no SCF failure
  (:data:`~aiida_ilmlff.parsers.cp2k_output.SCF_WALLTIME_MARKER`).
* ``GLOBAL/WALLTIME`` is set to 95 % of ``metadata.options.max_wallclock_seconds`` (unless given), so CP2K
  stops cleanly and writes its restart files before the scheduler kills the job.
* :meth:`handle_scf_not_converged` climbs an SCF ladder when the SCF fails, whether CP2K aborted (exit
  450) or, as CP2K 2023.1 does with OT, printed an SCF failure marker
  (:data:`~aiida_ilmlff.parsers.cp2k_output.SCF_NOT_CONVERGED_MARKERS`) and finished (exit 0): such a run
  never counts as a success. The rungs (:data:`SCF_LADDER`) are

  1. ``robust_ot``: OT with the conjugate-gradient minimiser, ``FULL_ALL`` preconditioner, a smaller step
     (``STEPSIZE 0.05``), at least 50 inner x 20 outer SCF steps;
  2. ``diagonalization``: standard diagonalisation with Broyden mixing (``ALPHA 0.2``), Fermi-Dirac
     smearing at 300 K with 20 added MOs, at least 300 SCF steps.

  Each rung restarts from the wavefunction of the failed run (``SCF_GUESS RESTART``, which CP2K replaces
  by ``ATOMIC`` when the file is absent). After the last rung the work chain stops with exit code 510.
  The ladder changes only how the SCF is solved; the 300 K smearing of rung 2 changes the energy of a
  system with a gap of more than ~0.5 eV by far less than 1 meV (ionic liquids have gaps of several eV).
* :meth:`handle_scf_monitor` (priority 550): the ``ilmlff.cp2k.scf`` monitor
  (:mod:`aiida_ilmlff.calculations.monitors`) killed the job at an unconverged SCF (exit 150): climb the same
  ladder. An MD run (``RUN_TYPE MD``) is re-run from where the failed run started (the same parent folder and
  restart file), never continued from the failed run, whose last steps were propagated with unconverged forces.
  After the last rung :meth:`stop_on_scf_monitor` (priority 549) stops the work chain with exit code 510; disable
  ``handle_scf_monitor`` (``handler_overrides``) to stop at the first failure without the ladder. The same rule
  applies to an MD that finished (exit 0) with more unconverged steps than the monitor allows.
* :meth:`handle_xtb_atomic_charges`: GFN-xTB's ``CHECK_ATOMIC_CHARGES`` aborts CP2K on strongly distorted
  frames ("Atomic charges outside chemical range"); for a single point the check is switched off and the run
  restarted (a sanity check of CP2K, not part of the method: the energies are unchanged). In an MD it stays on:
  the SCF ladder is climbed and, after the last rung, the work chain stops with 320.
* :meth:`~aiida_ilmlff.workflows.cancelled.CancelledJobMixin.handle_cancelled_job` (priority 900): the job was
  cancelled from outside (``scancel``): submitted again from its start with ``resubmit_cancelled`` (the protocols'
  default), otherwise the work chain stops with exit code 403.
* :meth:`accept_capped_optimisation` (off by default, priority 402): a geometry optimisation that ran its
  ``MAX_ITER`` steps is accepted as it is (the pre-relaxation of ``ilmlff.aimd``) instead of being continued.
* :meth:`handle_cp2k_abort`: any other ``[ABORT]`` stops the work chain with exit code 320 and CP2K's message.

Exit codes (AiiDA bands): 300, 310 (aiida-cp2k), 301/302 (sub-process excepted/killed), 320 CP2K aborted
with an unrecoverable message, 400 no restart data (aiida-cp2k), 401 too many restarts, 402 unhandled
failure, 403 job cancelled (``resubmit_cancelled`` false), 510 SCF not converged after the ladder.
"""

from __future__ import annotations

import copy
import typing as t

from aiida import engine, orm
from aiida_cp2k.workchains.base import Cp2kBaseWorkChain, Cp2kCalculation

from aiida_ilmlff.calculations.monitors import SCF_MONITOR_ENTRY_POINT, is_scf_monitor_stop
from aiida_ilmlff.parsers.cp2k_output import (
    parse_cp2k_stdout,
    restart_md_step,
    unconverged_evaluations,
    xtb_charge_abort,
)
from aiida_ilmlff.workflows.cancelled import CancelledJobMixin

__all__ = (
    'SCF_LADDER',
    'WALLTIME_FRACTION',
    'IlmlffCp2kBaseWorkChain',
    'apply_scf_rung',
    'read_cp2k_stdout',
    'read_retrieved',
    'remaining_md_steps',
    'with_walltime',
    'with_wavefunction_restart',
)

#: CP2K's ``GLOBAL/WALLTIME`` as a fraction of the scheduler's ``max_wallclock_seconds``.
WALLTIME_FRACTION = 0.95

#: The SCF ladder, one entry per rung: name and a one-line description (see the module docstring).
SCF_LADDER = (
    ('robust_ot', 'OT CG minimiser, FULL_ALL preconditioner, STEPSIZE 0.05, >= 50 x 20 SCF steps'),
    ('diagonalization', 'diagonalisation, Broyden mixing ALPHA 0.2, Fermi-Dirac 300 K, ADDED_MOS 20, >= 300 SCF steps'),
)

_RESTART_WFN = './parent_calc/aiida-RESTART.wfn'
_OPTIMISATION_STEPS_REACHED = Cp2kCalculation.exit_codes.ERROR_MAXIMUM_NUMBER_OPTIMIZATION_STEPS_REACHED.status


def _section(params: dict, *path: str) -> dict:
    """Return the nested section ``path`` of ``params`` (created when missing; keys matched case-insensitively)."""
    node = params
    for key in path:
        match = next((k for k in node if str(k).upper() == key), None)
        if match is None or not isinstance(node[match], dict):
            match = match or key
            node[match] = {}
        node = node[match]
    return node


def _pop(section: dict, key: str) -> t.Any:
    """Remove ``key`` from ``section`` case-insensitively; return its value (``None`` if absent)."""
    match = next((k for k in section if str(k).upper() == key), None)
    return section.pop(match) if match is not None else None


def _get_int(section: dict, key: str, default: int) -> int:
    match = next((k for k in section if str(k).upper() == key), None)
    try:
        return int(section[match]) if match is not None else default
    except (TypeError, ValueError):
        return default


def with_wavefunction_restart(parameters: dict) -> dict:
    """A copy of the CP2K ``parameters`` whose SCF starts from the wavefunction of ``parent_calc_folder``.

    ``FORCE_EVAL/DFT/RESTART_FILE_NAME`` = ``./parent_calc/aiida-RESTART.wfn`` (where aiida-cp2k copies the parent
    folder) and ``SCF/SCF_GUESS RESTART``; CP2K falls back to ``ATOMIC`` when the file is absent.
    """
    params = copy.deepcopy(parameters)
    dft = _section(params, 'FORCE_EVAL', 'DFT')
    _pop(dft, 'RESTART_FILE_NAME')
    dft['RESTART_FILE_NAME'] = _RESTART_WFN
    scf = _section(dft, 'SCF')
    _pop(scf, 'SCF_GUESS')
    scf['SCF_GUESS'] = 'RESTART'
    return params


def apply_scf_rung(parameters: dict, rung: int) -> dict:
    """Return a copy of the CP2K ``parameters`` with SCF ladder rung ``rung`` (1-based) applied.

    :raises ValueError: for a rung outside ``1..len(SCF_LADDER)``.
    """
    if not 1 <= rung <= len(SCF_LADDER):
        raise ValueError(f'SCF ladder rung must be in 1..{len(SCF_LADDER)}, got {rung}')
    params = with_wavefunction_restart(parameters)
    scf = _section(params, 'FORCE_EVAL', 'DFT', 'SCF')
    if SCF_LADDER[rung - 1][0] == 'robust_ot':
        ot = _section(scf, 'OT')
        for key in ('MINIMIZER', 'PRECONDITIONER', 'STEPSIZE', 'LINESEARCH'):
            _pop(ot, key)
        ot.update({'MINIMIZER': 'CG', 'LINESEARCH': '2PNT', 'PRECONDITIONER': 'FULL_ALL', 'STEPSIZE': 0.05})
        inner = max(_get_int(scf, 'MAX_SCF', 50), 50)
        _pop(scf, 'MAX_SCF')
        scf['MAX_SCF'] = inner
        outer = _section(scf, 'OUTER_SCF')
        eps = next((v for k, v in scf.items() if str(k).upper() == 'EPS_SCF'), 1.0e-6)
        n_outer = max(_get_int(outer, 'MAX_SCF', 20), 20)
        for key in ('MAX_SCF', 'EPS_SCF'):
            _pop(outer, key)
        outer.update({'MAX_SCF': n_outer, 'EPS_SCF': eps})
    else:
        for key in ('OT', 'OUTER_SCF', 'DIAGONALIZATION', 'MIXING', 'SMEAR', 'ADDED_MOS', 'MAX_SCF'):
            _pop(scf, key)
        scf.update(
            {
                'MAX_SCF': 300,
                'ADDED_MOS': 20,
                'DIAGONALIZATION': {'_': True, 'ALGORITHM': 'STANDARD'},
                'MIXING': {'_': True, 'METHOD': 'BROYDEN_MIXING', 'ALPHA': 0.2, 'NBROYDEN': 8},
                'SMEAR': {'_': True, 'METHOD': 'FERMI_DIRAC', 'ELECTRONIC_TEMPERATURE': 300},
            }
        )
    return params


def with_walltime(parameters: dict, max_wallclock_seconds: int | None) -> dict:
    """Return ``parameters`` with ``GLOBAL/WALLTIME`` = 95 % of ``max_wallclock_seconds`` (if not already set)."""
    if not max_wallclock_seconds:
        return parameters
    glob = next((v for k, v in parameters.items() if str(k).upper() == 'GLOBAL'), None) or {}
    if any(str(k).upper() == 'WALLTIME' for k in glob):
        return parameters
    params = copy.deepcopy(parameters)
    _section(params, 'GLOBAL')['WALLTIME'] = max(int(WALLTIME_FRACTION * int(max_wallclock_seconds)), 1)
    return params


#: CP2K's default ``MOTION/MD/STEPS``.
CP2K_DEFAULT_MD_STEPS = 3


def remaining_md_steps(parameters: dict, last_step: int) -> int:
    """``MOTION/MD/STEPS`` for an MD restarted at ``last_step`` so that it ends at the step ``parameters`` asked for.

    :param parameters: the CP2K input as first submitted (its ``MOTION/MD/STEPS`` is the requested total; CP2K's
        default of 3 when absent).
    :param last_step: the step of the stopped run's restart file (its ``STEP_START_VAL``,
        :func:`~aiida_ilmlff.parsers.cp2k_output.restart_md_step`), from which the restart goes on.
    :returns: the requested total less ``last_step``, at least 1 (a run that stopped after its last step repeats
        one step rather than run none: CP2K writes no trajectory for ``STEPS 0``, and repeated steps are merged).
    """
    md = _section(copy.deepcopy(parameters), 'MOTION', 'MD')
    total = _get_int(md, 'STEPS', CP2K_DEFAULT_MD_STEPS)
    return max(total - int(last_step), 1)


def read_retrieved(calc: orm.CalcJobNode, name: str) -> str:
    """The text of the file ``name`` in the retrieved folder of ``calc`` ('' if it cannot be read)."""
    try:
        return calc.outputs.retrieved.base.repository.get_object_content(name)
    except (AttributeError, KeyError, OSError, FileNotFoundError):
        return ''
    except Exception:  # e.g. NotExistent when nothing was retrieved
        return ''


def read_cp2k_stdout(calc: orm.CalcJobNode) -> str:
    """The text of CP2K's main output in the retrieved folder ('' if it cannot be read)."""
    return read_retrieved(calc, calc.base.attributes.get('output_filename', Cp2kCalculation._DEFAULT_OUTPUT_FILE))


class IlmlffCp2kBaseWorkChain(CancelledJobMixin, Cp2kBaseWorkChain):
    """aiida-cp2k's base work chain with the SCF ladder, the xTB charge-check handler and a CP2K walltime.

    Inputs are those of ``Cp2kBaseWorkChain`` (namespace ``cp2k`` for the ``Cp2kCalculation``); outputs too.
    See the module docstring for the handlers and exit codes.
    """

    @classmethod
    def define(cls, spec):
        """Define the process specification."""
        super().define(spec)
        spec.exit_code(
            320,
            'ERROR_CP2K_ABORTED',
            message='CP2K aborted with a message no handler can fix: {message}',
        )
        spec.exit_code(
            510,
            'ERROR_SCF_NOT_CONVERGED',
            message='The SCF did not converge, even after the last rung of the SCF ladder.',
        )

    def setup(self):
        """Set up the context; put CP2K's walltime at 95 % of the scheduler's."""
        super().setup()
        self.ctx.scf_rung = 0
        options = self.ctx.inputs.get('metadata', {}).get('options', {})
        parameters = self.ctx.inputs.parameters.get_dict()
        updated = with_walltime(parameters, options.get('max_wallclock_seconds'))
        if updated is not parameters:
            self.ctx.inputs.parameters = orm.Dict(updated)

    def _is_md(self) -> bool:
        """Whether the run is a molecular dynamics (``GLOBAL/RUN_TYPE MD``)."""
        glob = next((v for k, v in self.ctx.inputs.parameters.get_dict().items() if str(k).upper() == 'GLOBAL'), {})
        run_type = next((v for k, v in (glob or {}).items() if str(k).upper() == 'RUN_TYPE'), '')
        return str(run_type).upper() == 'MD'

    def _allowed_unconverged(self) -> int:
        """Unconverged force evaluations the ``ilmlff.cp2k.scf`` monitor of the inputs tolerates (0 without one)."""
        for monitor in (self.ctx.inputs.get('monitors') or {}).values():
            settings = monitor.get_dict() if isinstance(monitor, orm.Dict) else dict(monitor)
            if settings.get('entry_point') == SCF_MONITOR_ENTRY_POINT:
                return int((settings.get('kwargs') or {}).get('max_unconverged_steps', 0))
        return 0

    def _climb_ladder(self, calc: orm.CalcJobNode, reason: str) -> engine.ProcessHandlerReport | None:
        """Apply the next SCF-ladder rung and restart (``None`` when the ladder is exhausted).

        A single point restarts from the failed run's wavefunction; an MD re-runs the failed run from its own start
        (parent folder unchanged), so that no step computed with unconverged forces is continued.
        """
        if self.ctx.scf_rung >= len(SCF_LADDER):
            return None
        self.ctx.scf_rung += 1
        name, description = SCF_LADDER[self.ctx.scf_rung - 1]
        self.ctx.inputs.parameters = orm.Dict(apply_scf_rung(self.ctx.inputs.parameters.get_dict(), self.ctx.scf_rung))
        if self._is_md():
            start = 'MD re-run from the start of the failed run'
        else:
            self._restart_from(calc)
            start = 'restarting from its wavefunction'
        self.report(
            f'{reason} in {calc.process_label}<{calc.pk}>: SCF ladder rung {self.ctx.scf_rung}/{len(SCF_LADDER)} '
            f'`{name}` ({description}), {start}'
        )
        return engine.ProcessHandlerReport(True)

    def _restart_from(self, calc: orm.CalcJobNode) -> None:
        """Use ``calc``'s work directory as ``parent_calc_folder`` (for the wavefunction restart)."""
        if 'remote_folder' in calc.outputs:
            self.ctx.inputs.parent_calc_folder = calc.outputs.remote_folder

    @engine.process_handler(priority=600, exit_codes=[Cp2kCalculation.exit_codes.ERROR_OUTPUT_CONTAINS_ABORT])
    def handle_xtb_atomic_charges(self, calc):
        """GFN-xTB aborted on its atomic-charge check: switch ``CHECK_ATOMIC_CHARGES`` off and restart.

        In an MD the check stays on: charges outside the chemical range there mean a failing SCF or a trajectory
        running away, so the SCF ladder is climbed (the MD re-run from its start) and, after the last rung, the
        work chain stops with exit code 320 and the reason.
        """
        if not xtb_charge_abort(read_cp2k_stdout(calc)):
            return None
        if self._is_md():
            report = self._climb_ladder(calc, 'The GFN-xTB atomic-charge check aborted the MD')
            if report is not None:
                return report
            message = 'GFN-xTB atomic charges outside the chemical range in an MD, at every rung of the SCF ladder'
            self.report(f'{calc.process_label}<{calc.pk}>: {message}')
            return engine.ProcessHandlerReport(True, self.exit_codes.ERROR_CP2K_ABORTED.format(message=message))
        params = self.ctx.inputs.parameters.get_dict()
        xtb = _section(params, 'FORCE_EVAL', 'DFT', 'QS', 'XTB')
        previous = _pop(xtb, 'CHECK_ATOMIC_CHARGES')
        if previous is not None and str(previous).strip().upper() in ('F', 'FALSE', '.FALSE.', 'OFF', 'NO'):
            return engine.ProcessHandlerReport(
                True, self.exit_codes.ERROR_CP2K_ABORTED.format(message='xTB atomic-charge check with the check off')
            )
        xtb['CHECK_ATOMIC_CHARGES'] = False
        self.ctx.inputs.parameters = orm.Dict(params)
        self.report(
            f'{calc.process_label}<{calc.pk}> aborted on the GFN-xTB atomic-charge check (charges outside the '
            'chemical range): restarting with CHECK_ATOMIC_CHARGES off'
        )
        return engine.ProcessHandlerReport(True)

    @engine.process_handler(priority=550, exit_codes=[Cp2kCalculation.exit_codes.STOPPED_BY_MONITOR])
    def handle_scf_monitor(self, calc):
        """The ``ilmlff.cp2k.scf`` monitor killed the job at an unconverged SCF: climb the SCF ladder."""
        if not is_scf_monitor_stop(calc):
            return None
        return self._climb_ladder(calc, 'The SCF monitor stopped the job')

    @engine.process_handler(priority=549, exit_codes=[Cp2kCalculation.exit_codes.STOPPED_BY_MONITOR])
    def stop_on_scf_monitor(self, calc):
        """The SCF monitor killed the job and no rung is left (or the ladder handler is off): exit code 510."""
        if not is_scf_monitor_stop(calc):
            return None
        self.report(f'{calc.process_label}<{calc.pk}>: {calc.exit_message}; no SCF-ladder rung left: stopping')
        return engine.ProcessHandlerReport(True, self.exit_codes.ERROR_SCF_NOT_CONVERGED)

    @engine.process_handler(priority=500)
    def handle_scf_not_converged(self, calc):
        """The SCF failed (exit 450, or exit 0 with an SCF failure marker in the output): climb the SCF ladder.

        A finished MD, or a geometry optimisation that finished or ran its ``MAX_ITER`` steps, counts as failed when
        more force evaluations than the SCF monitor tolerates (0 without a monitor) did not converge.
        """
        if calc.exit_status == Cp2kCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED.status:
            pass
        elif calc.exit_status in (0, _OPTIMISATION_STEPS_REACHED):
            if len(unconverged_evaluations(read_cp2k_stdout(calc))) <= self._allowed_unconverged():
                return None
        else:
            return None
        report = self._climb_ladder(calc, 'SCF did not converge')
        if report is None:
            self.report(
                f'SCF of {calc.process_label}<{calc.pk}> did not converge after the last rung of the SCF ladder'
            )
            return engine.ProcessHandlerReport(True, self.exit_codes.ERROR_SCF_NOT_CONVERGED)
        return report

    @engine.process_handler(
        priority=402,
        exit_codes=[Cp2kCalculation.exit_codes.ERROR_MAXIMUM_NUMBER_OPTIMIZATION_STEPS_REACHED],
        enabled=False,
    )
    def accept_capped_optimisation(self, calc):
        """A geometry optimisation that ran its ``MOTION/GEO_OPT/MAX_ITER`` steps is done, not incomplete.

        Off by default (then :meth:`restart_incomplete_calculation` continues the optimisation); ``ilmlff.aimd``
        enables it for its pre-relaxation of a built box, which needs the forces lowered, not converged. Its SCF
        was checked first (:meth:`handle_scf_not_converged`): the outputs of this run, the last geometry included
        (``output_structure``), become the work chain's.
        """
        self.report(
            f'{calc.process_label}<{calc.pk}> ran the MAX_ITER steps of its geometry optimisation: accepted as a '
            'capped optimisation (accept_capped_optimisation)'
        )
        self.ctx.is_finished = True
        return engine.ProcessHandlerReport(True)

    @engine.process_handler(priority=401, exit_codes=[
        Cp2kCalculation.exit_codes.ERROR_OUT_OF_WALLTIME,
        Cp2kCalculation.exit_codes.ERROR_OUTPUT_INCOMPLETE,
        Cp2kCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED,
        Cp2kCalculation.exit_codes.ERROR_MAXIMUM_NUMBER_OPTIMIZATION_STEPS_REACHED,
    ], enabled=True)  # fmt: skip
    def restart_incomplete_calculation(self, calc):
        """aiida-cp2k's restart handler, enabled: restart an incomplete run from its wavefunction.

        An MD continues from CP2K's restart file for the steps it has left (:func:`remaining_md_steps`).
        """
        report = Cp2kBaseWorkChain.restart_incomplete_calculation.__wrapped__(self, calc)
        if report is not None and report.exit_code.status != 0:
            return report
        parameters = self.ctx.inputs.parameters.get_dict()
        if not self._is_md() or not any(str(k).upper() == 'EXT_RESTART' for k in parameters):
            return report
        step = restart_md_step(read_retrieved(calc, Cp2kCalculation._DEFAULT_RESTART_FILE_NAME))
        if step is None:
            self.report(
                f'{calc.process_label}<{calc.pk}> wrote no MD restart file before it stopped: the MD cannot be '
                'continued (raise max_wallclock_seconds, or MOTION/PRINT/RESTART/EACH/MD for more restart files)'
            )
            return engine.ProcessHandlerReport(True, self.exit_codes.NO_RESTART_DATA)
        remaining = remaining_md_steps(self.inputs.cp2k.parameters.get_dict(), step)
        md = _section(parameters, 'MOTION', 'MD')
        _pop(md, 'STEPS')
        md['STEPS'] = remaining
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report(f'the MD continues from its restart file at step {step} for {remaining} more step(s)')
        return report

    @engine.process_handler(priority=100, exit_codes=[Cp2kCalculation.exit_codes.ERROR_OUTPUT_CONTAINS_ABORT])
    def handle_cp2k_abort(self, calc):
        """Any other CP2K ``[ABORT]``: stop with exit code 320 and CP2K's message (bad input, missing data)."""
        message = parse_cp2k_stdout(read_cp2k_stdout(calc)).abort_message or 'no message found in the output'
        self.report(f'{calc.process_label}<{calc.pk}> aborted: {message}')
        return engine.ProcessHandlerReport(True, self.exit_codes.ERROR_CP2K_ABORTED.format(message=message))
