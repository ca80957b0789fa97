"""``ilmlff.aimd``: CP2K ab initio MD (NVT, CSVR thermostat) whose every printed step is a labelled frame.

The EQ source of ``ilmlff.dataset`` at the labelling level of theory: the CP2K ``FORCE_EVAL`` comes from the
same protocol as the ``ilmlff.label`` single points (``LabelWorkChain.get_builder_from_protocol``), so the
frames carry the same level-of-theory fingerprint and can be merged with labelled nEQ frames without
relabelling. The work chain adds ``GLOBAL/RUN_TYPE MD`` and a ``MOTION`` section (:func:`md_parameters`),
runs :class:`~aiida_ilmlff.workflows.cp2k_base.IlmlffCp2kBaseWorkChain` (restarts on walltime continue the
MD from CP2K's restart file) and reads positions, forces and potential energies of every printed step from
the retrieved ``aiida-pos-1.xyz``, ``aiida-frc-1.xyz`` and ``aiida-1.ener`` (Å, Hartree/bohr, Hartree,
converted to Å, eV/Å, eV) with :func:`~aiida_ilmlff.calculations.functions.sampling.parse_cp2k_md`.

An MD step whose SCF did not converge (CP2K with OT prints a warning and goes on) is left out of the
trajectory and listed in the summary; the SCF-ladder handler of the base work chain, which would rerun the
whole MD, is switched off here (``handler_overrides``).

Outputs: ``trajectory`` (``FramesData``, origin ``import``, every converged printed step, labelled) and
``summary`` (``Dict``). Exit codes: 320 the trajectory could not be parsed (fatal), 401 the CP2K MD work chain
(the sub-process) failed.
"""

from __future__ import annotations

import copy
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain

from aiida_ilmlff.calculations.functions.sampling import parse_cp2k_md
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.level_of_theory import cp2k_level_of_theory
from aiida_ilmlff.sampling.cp2k_md import CP2K_ENER_FILE
from aiida_ilmlff.workflows.cp2k_base import IlmlffCp2kBaseWorkChain
from aiida_ilmlff.workflows.protocols.checks import check_code_plugin

__all__ = ('MD_DEFAULTS', 'AimdWorkChain', 'md_parameters', 'validate_inputs', 'validate_md')

#: MD settings (the ``md`` input): temperature [K], timestep [fs], steps, CSVR time constant [fs], print
#: stride [steps], random seed (velocities and thermostat).
MD_DEFAULTS: dict[str, t.Any] = {
    'temperature': 450.0,
    'timestep_fs': 0.5,
    'steps': 1000,
    'thermostat_timecon_fs': 50.0,
    'print_every': 1,
    'seed': 1,
}


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
    if not isinstance(s['seed'], int) or not 0 <= s['seed'] < 2**31:
        return f'`md.seed` must be an integer in [0, 2**31), got {s["seed"]!r}'
    if float(s['timestep_fs']) > 2.0:
        return (
            f'`md.timestep_fs` = {s["timestep_fs"]} fs is too long for hydrogen-containing ions: use <= 2 fs (0.5 fs)'
        )
    return None


def validate_inputs(value: t.Mapping, _: t.Any = None) -> str | None:
    """The CP2K code (``cp2k.cp2k.code``) must be a code of plugin ``cp2k``."""
    code = ((value.get('cp2k') or {}).get('cp2k') or {}).get('code')
    return check_code_plugin(code, 'cp2k', 'cp2k.cp2k.code')


def md_parameters(parameters: dict, md: t.Mapping[str, t.Any]) -> dict:
    """A copy of the CP2K ``parameters`` set up for NVT MD with the CSVR thermostat.

    ``GLOBAL/RUN_TYPE MD`` and ``SEED``; ``MOTION/MD`` (``ENSEMBLE NVT``, ``STEPS``, ``TIMESTEP`` [fs],
    ``TEMPERATURE`` [K], ``THERMOSTAT/TYPE CSVR`` with ``TIMECON`` [fs]); ``MOTION/PRINT`` trajectory and forces
    (XYZ) every ``print_every`` steps. The ``FORCE_EVAL`` (the level of theory) is not touched. Initial
    velocities: Maxwell-Boltzmann at ``TEMPERATURE`` (CP2K's default).
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
            '[steps], seed. Missing keys take the defaults of MD_DEFAULTS.',
        )
        spec.inputs.validator = validate_inputs
        spec.outline(cls.setup, cls.run_md, cls.inspect_md, cls.results)
        spec.output(
            'trajectory',
            valid_type=FramesData,
            help='FramesData of every converged printed MD step: positions [Å], energy [eV], forces [eV/Å], '
            'origin `import`, the level-of-theory fingerprint, step and time in `perturbation`.',
        )
        spec.output('summary', valid_type=orm.Dict, help='Steps, dropped steps, temperature and drift statistics.')
        spec.exit_code(320, 'ERROR_OUTPUT_PARSING', message='The MD trajectory could not be read: {message}')
        spec.exit_code(
            401,
            'ERROR_SUB_PROCESS_FAILED_MD',
            message='The CP2K MD work chain (IlmlffCp2kBaseWorkChain) failed: {message}',
        )

    def setup(self):
        """Build the MD parameters and the level of theory."""
        calc = self.inputs.cp2k.cp2k
        md = {**MD_DEFAULTS, **self.inputs.md.get_dict()}
        parameters = calc.parameters.get_dict()
        self.ctx.md_settings = md
        self.ctx.parameters = md_parameters(parameters, md)
        level = cp2k_level_of_theory(parameters, calc.get('basissets'), calc.get('pseudos'))
        self.ctx.level_of_theory = level['fingerprint']
        self.report(
            f'CP2K NVT MD ({level["method"]}, level of theory {level["fingerprint"]}): {md["steps"]} steps of '
            f'{md["timestep_fs"]} fs at {md["temperature"]} K (CSVR, {md["thermostat_timecon_fs"]} fs)'
        )

    def run_md(self):
        """Submit the CP2K MD."""
        inputs = AttributeDict(self.exposed_inputs(IlmlffCp2kBaseWorkChain, namespace='cp2k'))
        calc = AttributeDict(inputs.cp2k)
        calc.structure = self.inputs.structure
        calc.parameters = orm.Dict(self.ctx.parameters)
        settings = calc.settings.get_dict() if 'settings' in calc else {}
        retrieve = list(settings.get('additional_retrieve_list', []))
        if CP2K_ENER_FILE not in retrieve:
            retrieve.append(CP2K_ENER_FILE)
        settings['additional_retrieve_list'] = retrieve
        calc.settings = orm.Dict(settings)
        inputs.cp2k = calc
        overrides = inputs.handler_overrides.get_dict() if 'handler_overrides' in inputs else {}
        overrides.setdefault('handle_scf_not_converged', {'enabled': False})
        inputs.handler_overrides = orm.Dict(overrides)
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
                structure=self.inputs.structure,
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
        self.out('trajectory', outputs['trajectory'])
        self.out('summary', outputs['summary'])
        return None
