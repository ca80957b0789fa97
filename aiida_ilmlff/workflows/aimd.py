"""``ilmlff.aimd``: CP2K ab initio MD (NVT, CSVR thermostat) whose every printed step is a labelled frame.

The EQ source of ``ilmlff.dataset`` at the labelling level of theory: the CP2K ``FORCE_EVAL`` comes from the
same protocol as the ``ilmlff.label`` single points (``LabelWorkChain.get_builder_from_protocol``), so the
frames carry the same level-of-theory fingerprint and can be merged with labelled nEQ frames without
relabelling. The work chain adds ``GLOBAL/RUN_TYPE MD`` and a ``MOTION`` section (:func:`md_parameters`),
runs :class:`~aiida_ilmlff.workflows.cp2k_base.IlmlffCp2kBaseWorkChain` (restarts on walltime continue the
MD from CP2K's restart file) and reads positions, forces, potential energies and the analytical stress of every
printed step from the retrieved ``aiida-pos-1.xyz``, ``aiida-frc-1.xyz``, ``aiida-1.ener`` and ``aiida.out``
(Å, Hartree/bohr, Hartree, GPa; converted to Å, eV/Å, eV, eV/Å^3 with the ASE sign) with
:func:`~aiida_ilmlff.calculations.functions.sampling.parse_cp2k_md`.

**No trajectory past a failed SCF.** CP2K 2023.1 with OT does not stop when an SCF fails: it prints a warning and
propagates the unconverged forces (measured: a 106-atom GFN1-xTB AIMD unconverged from step 0 reached 72,000 K at
step 1). The CP2K job therefore runs under the ``ilmlff.cp2k.scf`` monitor
(:mod:`aiida_ilmlff.calculations.monitors`), which kills it at the first unconverged step
(``md.max_unconverged_steps``, default 0); the base work chain then re-runs the MD from its start one rung up the
SCF ladder and, after the last rung, stops with its exit code 510, which this work chain forwards as 401. No frame
from the first unconverged step on is ever a label (:func:`~aiida_ilmlff.sampling.cp2k_md.labelled_steps`), and a
failed AIMD gives no trajectory. For GFN-xTB, CP2K's own ``CHECK_ATOMIC_CHARGES`` stays on in the MD
(``md.check_atomic_charges``): an abort on it climbs the same ladder instead of switching the check off.

Outputs: ``trajectory`` (``FramesData``, origin ``import``, every converged printed step before the first
unconverged one, labelled with energy, forces and stress) and ``summary`` (``Dict``). Exit codes: 320 the
trajectory could not be parsed (fatal), 401 the CP2K MD work chain (the sub-process) failed.
"""

from __future__ import annotations

import copy
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from aiida_ilmlff.calculations.functions.box import relaxed_box
from aiida_ilmlff.calculations.functions.sampling import parse_cp2k_md
from aiida_ilmlff.calculations.monitors import SCF_MONITOR_ENTRY_POINT
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.box_atoms import box_atoms
from aiida_ilmlff.data.level_of_theory import cp2k_level_of_theory
from aiida_ilmlff.parsers.cp2k_output import HARTREE_PER_BOHR_TO_EV_PER_A, optimisation_max_gradients
from aiida_ilmlff.sampling.cp2k_md import CP2K_ENER_FILE
from aiida_ilmlff.systems.checks import molecule_graph_mismatches
from aiida_ilmlff.workflows.cp2k_base import (
    IlmlffCp2kBaseWorkChain,
    read_cp2k_stdout,
    with_wavefunction_restart,
)
from aiida_ilmlff.workflows.protocols.checks import check_code_plugin

__all__ = (
    'HOT_AIMD_FACTOR',
    'MD_DEFAULTS',
    'RELAX_DEFAULTS',
    'AimdWorkChain',
    'md_parameters',
    'relax_parameters',
    'validate_inputs',
    'validate_md',
    'validate_relax',
)

#: MD settings (the ``md`` input): temperature [K], timestep [fs], steps, CSVR time constant [fs], print
#: stride [steps], random seed (velocities and thermostat); ``max_unconverged_steps``: unconverged SCF steps the
#: job may run through before the monitor kills it (0: the first; frames from the first one on are never used
#: whatever the value); ``check_atomic_charges``: GFN-xTB's ``CHECK_ATOMIC_CHARGES`` in the MD (CP2K's safety
#: check, on); ``stress``: print the analytical stress of every step.
MD_DEFAULTS: dict[str, t.Any] = {
    'temperature': 450.0,
    'timestep_fs': 0.5,
    'steps': 1000,
    'thermostat_timecon_fs': 50.0,
    'print_every': 1,
    'seed': 1,
    'max_unconverged_steps': 0,
    'check_atomic_charges': True,
    'stress': True,
}


#: The pre-relaxation of the starting structure (the ``relax`` input): at most ``max_steps`` CP2K geometry-
#: optimisation steps at the MD's level of theory (0: none), done when the largest force component is below
#: ``max_force_eV_A``; ``optimizer``: CP2K's ``BFGS``, ``LBFGS`` (large systems) or ``CG``.
RELAX_DEFAULTS: dict[str, t.Any] = {'max_steps': 0, 'max_force_eV_A': 0.1, 'optimizer': 'BFGS'}

#: CP2K geometry optimisers the ``relax`` input accepts.
RELAX_OPTIMIZERS = ('BFGS', 'LBFGS', 'CG')

#: An AIMD whose mean temperature exceeds this multiple of its thermostat target is reported as far from
#: equilibrium (measured: the LiTFSI example's 24-step `fast-dft` AIMDs of built boxes at 298 K averaged 1075 K
#: and 1409 K).
HOT_AIMD_FACTOR = 1.5


def validate_md(value: orm.Dict | None, _: t.Any = None) -> str | None:
    """Check the ``md`` settings: known keys, positive temperature, timestep, steps, time constant, stride."""
    if value is None:
        return None
    settings = value.get_dict() if isinstance(value, orm.Dict) else dict(value)
    unknown = sorted(set(settings) - set(MD_DEFAULTS))
    if unknown:
        return f'`md`: unknown key(s) {unknown}; known: {sorted(MD_DEFAULTS)}'
    s = {**MD_DEFAULTS, **settings}
    for key in ('temperature', 'timestep_fs', 'thermostat_timecon_fs'):
        try:
            if not float(s[key]) > 0:
                return f'`md.{key}` must be > 0, got {s[key]}'
        except (TypeError, ValueError):
            return f'`md.{key}` must be a number, got {s[key]!r}'
    for key in ('steps', 'print_every'):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 1:
            return f'`md.{key}` must be a positive integer, got {s[key]!r}'
    value = s['max_unconverged_steps']
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return f'`md.max_unconverged_steps` must be an integer >= 0 (0: stop at the first), got {value!r}'
    for key in ('check_atomic_charges', 'stress'):
        if not isinstance(s[key], bool):
            return f'`md.{key}` must be true or false, got {s[key]!r}'
    if not isinstance(s['seed'], int) or not 0 <= s['seed'] < 2**31:
        return f'`md.seed` must be an integer in [0, 2**31), got {s["seed"]!r}'
    if float(s['timestep_fs']) > 2.0:
        return (
            f'`md.timestep_fs` = {s["timestep_fs"]} fs is too long for hydrogen-containing ions: use <= 2 fs (0.5 fs)'
        )
    return None


def validate_relax(value: orm.Dict | t.Mapping | None, _: t.Any = None) -> str | None:
    """Check the ``relax`` settings: known keys, ``max_steps`` >= 0, ``max_force_eV_A`` > 0, a known optimiser."""
    if value is None:
        return None
    settings = value.get_dict() if isinstance(value, orm.Dict) else dict(value)
    unknown = sorted(set(settings) - set(RELAX_DEFAULTS))
    if unknown:
        return f'`relax`: unknown key(s) {unknown}; known: {sorted(RELAX_DEFAULTS)}'
    s = {**RELAX_DEFAULTS, **settings}
    steps = s['max_steps']
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        return f'`relax.max_steps` must be an integer >= 0 (0: no relaxation), got {steps!r}'
    try:
        if not float(s['max_force_eV_A']) > 0:
            return f'`relax.max_force_eV_A` must be > 0, got {s["max_force_eV_A"]}'
    except (TypeError, ValueError):
        return f'`relax.max_force_eV_A` must be a number, got {s["max_force_eV_A"]!r}'
    if str(s['optimizer']).upper() not in RELAX_OPTIMIZERS:
        return f'`relax.optimizer` must be one of {list(RELAX_OPTIMIZERS)}, got {s["optimizer"]!r}'
    return None


def validate_inputs(value: t.Mapping, _: t.Any = None) -> str | None:
    """The CP2K code (``cp2k.cp2k.code``) must be a code of plugin ``cp2k``."""
    code = ((value.get('cp2k') or {}).get('cp2k') or {}).get('code')
    return check_code_plugin(code, 'cp2k', 'cp2k.cp2k.code')


def _subsection(section: dict, key: str) -> dict:
    match = next((k for k in section if str(k).upper() == key), None)
    if match is None or not isinstance(section[match], dict):
        section.pop(match, None) if match is not None else None
        match = key
        section[match] = {}
    return section[match]


def _set_force_eval_options(force_eval: dict, s: t.Mapping[str, t.Any]) -> None:
    """Stress printing and the xTB charge check in ``force_eval`` (in place; see :func:`md_parameters`)."""
    if s['stress']:
        for key in [k for k in force_eval if str(k).upper() == 'STRESS_TENSOR']:
            force_eval.pop(key)
        force_eval['STRESS_TENSOR'] = 'ANALYTICAL'
        printing = _subsection(force_eval, 'PRINT')
        for key in [k for k in printing if str(k).upper() == 'STRESS_TENSOR']:
            printing.pop(key)
        printing['STRESS_TENSOR'] = {'_': 'ON', 'EACH': {'MD': int(s['print_every'])}}
    qs = next((v for k, v in _subsection(force_eval, 'DFT').items() if str(k).upper() == 'QS'), None)
    method = next((v for k, v in qs.items() if str(k).upper() == 'METHOD'), '') if isinstance(qs, dict) else ''
    if str(method).upper() == 'XTB':
        xtb = _subsection(qs, 'XTB')
        for key in [k for k in xtb if str(k).upper() == 'CHECK_ATOMIC_CHARGES']:
            xtb.pop(key)
        xtb['CHECK_ATOMIC_CHARGES'] = bool(s['check_atomic_charges'])


def md_parameters(parameters: dict, md: t.Mapping[str, t.Any]) -> dict:
    """A copy of the CP2K ``parameters`` set up for NVT MD with the CSVR thermostat.

    ``GLOBAL/RUN_TYPE MD`` and ``SEED``; ``MOTION/MD`` (``ENSEMBLE NVT``, ``STEPS``, ``TIMESTEP`` [fs],
    ``TEMPERATURE`` [K], ``THERMOSTAT/TYPE CSVR`` with ``TIMECON`` [fs]); ``MOTION/PRINT`` trajectory and forces
    (XYZ) every ``print_every`` steps. Initial velocities: Maxwell-Boltzmann at ``TEMPERATURE`` (CP2K's default).
    The level of theory is not changed; in ``FORCE_EVAL`` only what does not change energies: with ``stress``,
    ``STRESS_TENSOR ANALYTICAL`` and ``PRINT/STRESS_TENSOR`` into the main output (every step); for GFN-xTB,
    ``XTB/CHECK_ATOMIC_CHARGES`` = ``check_atomic_charges``.
    """
    s = {**MD_DEFAULTS, **md}
    params = copy.deepcopy(parameters)
    glob = params.setdefault('GLOBAL', {})
    for key in [k for k in glob if str(k).upper() in ('RUN_TYPE', 'SEED')]:
        glob.pop(key)
    glob['RUN_TYPE'] = 'MD'
    glob['SEED'] = int(s['seed'])
    for key in [k for k in params if str(k).upper() == 'MOTION']:
        params.pop(key)
    force_eval = next((v for k, v in params.items() if str(k).upper() == 'FORCE_EVAL'), None)
    if isinstance(force_eval, dict):
        _set_force_eval_options(force_eval, s)
    each = {'EACH': {'MD': int(s['print_every'])}}
    params['MOTION'] = {
        'MD': {
            'ENSEMBLE': 'NVT',
            'STEPS': int(s['steps']),
            'TIMESTEP': float(s['timestep_fs']),
            'TEMPERATURE': float(s['temperature']),
            'THERMOSTAT': {'TYPE': 'CSVR', 'REGION': 'GLOBAL', 'CSVR': {'TIMECON': float(s['thermostat_timecon_fs'])}},
        },
        'PRINT': {
            'TRAJECTORY': {'FORMAT': 'XYZ', **each},
            'FORCES': {'FORMAT': 'XYZ', **each},
            'RESTART': {'BACKUP_COPIES': 0, **each},
        },
    }
    return params


def relax_parameters(parameters: dict, relax: t.Mapping[str, t.Any]) -> dict:
    """A copy of the CP2K ``parameters`` set up for the pre-relaxation of the MD's starting structure.

    ``GLOBAL/RUN_TYPE GEO_OPT``; ``MOTION/GEO_OPT`` with ``OPTIMIZER``, ``MAX_ITER`` = ``max_steps`` and
    ``MAX_FORCE`` = ``max_force_eV_A`` (converted to Hartree/bohr); ``RMS_FORCE`` equal to it and ``MAX_DR``/``RMS_DR``
    of 1 bohr, so that the largest force alone decides (a pre-relaxation lowers the strain of a built box before an
    MD; it is no converged minimum). The ``FORCE_EVAL`` (the level of theory) is not changed.
    """
    s = {**RELAX_DEFAULTS, **relax}
    params = copy.deepcopy(parameters)
    glob = params.setdefault('GLOBAL', {})
    for key in [k for k in glob if str(k).upper() == 'RUN_TYPE']:
        glob.pop(key)
    glob['RUN_TYPE'] = 'GEO_OPT'
    for key in [k for k in params if str(k).upper() == 'MOTION']:
        params.pop(key)
    force = float(s['max_force_eV_A']) / HARTREE_PER_BOHR_TO_EV_PER_A
    params['MOTION'] = {
        'GEO_OPT': {
            'OPTIMIZER': str(s['optimizer']).upper(),
            'MAX_ITER': int(s['max_steps']),
            'MAX_FORCE': force,
            'RMS_FORCE': force,
            'MAX_DR': 1.0,
            'RMS_DR': 1.0,
        },
    }
    return params


class AimdWorkChain(WorkChain):
    """CP2K NVT (CSVR) molecular dynamics of a structure; every converged printed step a labelled frame.

    See the module docstring; ``docs/dataset.md`` for its use as the EQ source of ``ilmlff.dataset``.
    """

    @classmethod
    def define(cls, spec):
        """Define the process specification."""
        super().define(spec)
        spec.input(
            'structure',
            valid_type=orm.StructureData,
            help='Starting structure (a periodic box, Å); its `mol_id`/`molecules` attributes go to the frames.',
        )
        spec.expose_inputs(
            IlmlffCp2kBaseWorkChain,
            namespace='cp2k',
            exclude=('cp2k.structure',),
            namespace_options={
                'help': 'Inputs of the CP2K run (IlmlffCp2kBaseWorkChain); `cp2k.parameters` defines the level of '
                'theory (FORCE_EVAL) and is extended with the MD settings.'
            },
        )
        spec.input(
            'md',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(MD_DEFAULTS),
            validator=validate_md,
            help='MD settings: temperature [K], timestep_fs, steps, thermostat_timecon_fs (CSVR), print_every '
            '[steps], seed, max_unconverged_steps (0: the SCF monitor stops the job at the first unconverged '
            'step), check_atomic_charges (GFN-xTB), stress (analytical stress of every step). Missing keys take '
            'the defaults of MD_DEFAULTS.',
        )
        spec.input(
            'relax',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(RELAX_DEFAULTS),
            validator=validate_relax,
            help='Pre-relaxation of `structure` before the MD (CP2K GEO_OPT at the same level of theory; the MD then '
            'starts from its geometry and wavefunction): max_steps (0: none), max_force_eV_A (done below this '
            'largest force component), optimizer (BFGS, LBFGS, CG). A built box is strained: its unrelaxed AIMD '
            'heats far above the thermostat (HOT_AIMD_FACTOR).',
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.should_relax)(cls.run_relax, cls.inspect_relax),
            cls.run_md,
            cls.inspect_md,
            cls.results,
        )
        spec.output(
            'trajectory',
            valid_type=FramesData,
            help='FramesData of every printed MD step before the first unconverged one: positions [Å], energy '
            '[eV], forces [eV/Å], stress [eV/Å^3, ASE sign], origin `import`, the level-of-theory fingerprint, '
            'step and time in `perturbation`.',
        )
        spec.output('summary', valid_type=orm.Dict, help='Steps, dropped steps, temperature and drift statistics.')
        spec.output(
            'relaxed_structure',
            valid_type=orm.StructureData,
            required=False,
            help='The pre-relaxed starting structure of the MD (with `relax.max_steps` > 0): `structure` with the '
            'positions of the CP2K optimisation, its attributes kept.',
        )
        spec.exit_code(320, 'ERROR_OUTPUT_PARSING', message='The MD trajectory could not be read: {message}')
        spec.exit_code(
            401,
            'ERROR_SUB_PROCESS_FAILED_MD',
            message='The CP2K MD work chain (IlmlffCp2kBaseWorkChain) failed: {message}',
        )
        spec.exit_code(
            402,
            'ERROR_SUB_PROCESS_FAILED_RELAX',
            message='The CP2K pre-relaxation (IlmlffCp2kBaseWorkChain, GEO_OPT) failed: {message}',
        )
        spec.exit_code(
            501,
            'ERROR_RELAXATION_BROKE_MOLECULES',
            message='The pre-relaxation broke or joined molecules of the box: {message}',
        )

    def setup(self):
        """Build the MD parameters and the level of theory."""
        calc = self.inputs.cp2k.cp2k
        md = {**MD_DEFAULTS, **self.inputs.md.get_dict()}
        parameters = calc.parameters.get_dict()
        self.ctx.level_parameters = parameters
        self.ctx.relax_settings = {**RELAX_DEFAULTS, **self.inputs.relax.get_dict()}
        self.ctx.start = self.inputs.structure
        self.ctx.md_settings = md
        self.ctx.parameters = md_parameters(parameters, md)
        level = cp2k_level_of_theory(parameters, calc.get('basissets'), calc.get('pseudos'))
        self.ctx.level_of_theory = level['fingerprint']
        self.report(
            f'CP2K NVT MD ({level["method"]}, level of theory {level["fingerprint"]}): {md["steps"]} steps of '
            f'{md["timestep_fs"]} fs at {md["temperature"]} K (CSVR, {md["thermostat_timecon_fs"]} fs)'
        )

    def should_relax(self) -> bool:
        """Whether the starting structure is pre-relaxed (``relax.max_steps`` > 0)."""
        return int(self.ctx.relax_settings['max_steps']) > 0

    def run_relax(self):
        """Submit the CP2K pre-relaxation (GEO_OPT, capped at ``max_steps``: a capped run is accepted as done)."""
        inputs = AttributeDict(self.exposed_inputs(IlmlffCp2kBaseWorkChain, namespace='cp2k'))
        calc = AttributeDict(inputs.cp2k)
        calc.structure = self.inputs.structure
        calc.parameters = orm.Dict(relax_parameters(self.ctx.level_parameters, self.ctx.relax_settings))
        inputs.cp2k = calc
        overrides = inputs['handler_overrides'].get_dict() if 'handler_overrides' in inputs else {}
        inputs.handler_overrides = orm.Dict({**overrides, 'accept_capped_optimisation': {'enabled': True}})
        inputs.metadata = {**dict(inputs.get('metadata', {})), 'call_link_label': 'cp2k_relax'}
        s = self.ctx.relax_settings
        self.report(
            f'pre-relaxation: CP2K GEO_OPT ({str(s["optimizer"]).upper()}) of at most {s["max_steps"]} steps, '
            f'until the largest force is below {float(s["max_force_eV_A"]):g} eV/Å'
        )
        return ToContext(relax=self.submit(IlmlffCp2kBaseWorkChain, **inputs))

    def inspect_relax(self):
        """Check the relaxation, keep its geometry (box attributes kept) and its wavefunction for the MD."""
        node = self.ctx.relax
        if not node.is_finished_ok or 'output_structure' not in node.outputs:
            message = f'{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}'
            self.report(message)
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_RELAX.format(message=message)
        relaxed = relaxed_box(
            self.inputs.structure, node.outputs.output_structure, metadata={'call_link_label': 'relaxed_box'}
        )
        calcs = sorted((c for c in node.called if isinstance(c, orm.CalcJobNode)), key=lambda c: c.ctime)
        gradients = [g for calc in calcs for g in optimisation_max_gradients(read_cp2k_stdout(calc))]
        capped = calcs[-1].exit_status != 0
        forces = f'largest force {gradients[0]:.2f} -> {gradients[-1]:.2f} eV/Å' if gradients else 'no step summary'
        self.report(
            f'pre-relaxed in {len(gradients)} step(s), {"capped at max_steps" if capped else "converged"}: {forces}'
        )
        mismatches = self._molecule_mismatches(relaxed)
        if mismatches:
            return self.exit_codes.ERROR_RELAXATION_BROKE_MOLECULES.format(message='; '.join(mismatches[:3]))
        self.out('relaxed_structure', relaxed)
        self.ctx.start = relaxed
        self.ctx.wavefunction = node.outputs.remote_folder
        return None

    @staticmethod
    def _molecule_mismatches(structure: orm.StructureData) -> list[str]:
        """Molecules of a built box whose bond graph changed (empty for a structure without ``mol_id``)."""
        atoms = box_atoms(structure)
        if 'mol_id' not in atoms.arrays or 'molecules' not in atoms.info:
            return []
        return molecule_graph_mismatches(atoms)

    def run_md(self):
        """Submit the CP2K MD (from the pre-relaxed geometry and wavefunction where there are)."""
        inputs = AttributeDict(self.exposed_inputs(IlmlffCp2kBaseWorkChain, namespace='cp2k'))
        calc = AttributeDict(inputs.cp2k)
        calc.structure = self.ctx.start
        parameters = self.ctx.parameters
        if 'wavefunction' in self.ctx:
            calc.parent_calc_folder = self.ctx.wavefunction
            parameters = with_wavefunction_restart(parameters)
        calc.parameters = orm.Dict(parameters)
        settings = calc.settings.get_dict() if 'settings' in calc else {}
        retrieve = list(settings.get('additional_retrieve_list', []))
        if CP2K_ENER_FILE not in retrieve:
            retrieve.append(CP2K_ENER_FILE)
        settings['additional_retrieve_list'] = retrieve
        calc.settings = orm.Dict(settings)
        inputs.cp2k = calc
        monitors = dict(calc.get('monitors', {}))
        if not any(m.get_dict().get('entry_point') == SCF_MONITOR_ENTRY_POINT for m in monitors.values()):
            limit = int(self.ctx.md_settings['max_unconverged_steps'])
            kwargs = {'max_unconverged_steps': limit}
            monitors['scf'] = orm.Dict({'entry_point': SCF_MONITOR_ENTRY_POINT, 'kwargs': kwargs})
        calc.monitors = monitors
        inputs.metadata = {**dict(inputs.get('metadata', {})), 'call_link_label': 'cp2k_md'}
        return ToContext(md=self.submit(IlmlffCp2kBaseWorkChain, **inputs))

    def inspect_md(self):
        """Check the MD work chain."""
        node = self.ctx.md
        if not node.is_finished_ok:
            message = f'{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}'
            self.report(message)
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_MD.format(message=message)
        return None

    def results(self):
        """Parse every run of the MD (restarts included) into one trajectory."""
        calcs = sorted(
            (c for c in self.ctx.md.called if isinstance(c, orm.CalcJobNode) and 'retrieved' in c.outputs),
            key=lambda c: c.ctime,
        )
        retrieved = {f'run_{k:02d}': calc.outputs.retrieved for k, calc in enumerate(calcs)}
        settings = {
            'level_of_theory': self.ctx.level_of_theory,
            'temperature': float(self.ctx.md_settings['temperature']),
            'timestep_fs': float(self.ctx.md_settings['timestep_fs']),
        }
        try:
            outputs, process = parse_cp2k_md.run_get_node(
                structure=self.ctx.start,
                settings=orm.Dict(settings),
                metadata={'call_link_label': 'parse_md'},
                **retrieved,
            )
        except Exception as exception:  # the calcfunction excepted: report the reason
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=str(exception))
        if not process.is_finished_ok:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=process.exit_message or 'unknown')
        summary = outputs['summary'].get_dict()
        mean = summary['temperature_mean']
        self.report(
            f'{summary["n_frames"]} frames from steps {summary["first_step"]}..{summary["last_step"]}; mean T '
            f'{"unknown" if mean is None else f"{mean:.0f} K"}; {len(summary["unconverged_steps"])} unconverged '
            'step(s) left out'
        )
        target = float(self.ctx.md_settings['temperature'])
        if mean is not None and mean > HOT_AIMD_FACTOR * target:
            self.report(
                f'warning: mean T {mean:.0f} K is more than {HOT_AIMD_FACTOR:g} x the thermostat target '
                f'{target:.0f} K: the starting structure was far from equilibrium (e.g. a built box that was not '
                'relaxed) and these frames are no equilibrium sample at the target temperature; run a longer AIMD '
                'or relax the box first'
            )
        self.out('trajectory', outputs['trajectory'])
        self.out('summary', outputs['summary'])
        return None
