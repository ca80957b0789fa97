"""``ilmlff.properties``: liquid properties of an ionic liquid from an MLFF: density, self-diffusion, RDFs and
coordination numbers, Li+ clusters, TFSI conformers (Park, Ryu & Lee, arXiv 2503.18249)::

    structure + models
      -> NPT stages (ilmlff.md.base; each continues from the previous checkpoint)     npt_1, npt_2, ...
           density of each stage: pymbar equilibration, mean +- error                density_stage_k
           until the density stop rule holds or max_npt_stages                       (density_stop_rule)
      -> structure scaled to the mean density of the last stage                      scale_to_density
      -> NVT production (ilmlff.md.base)                                             nvt
      -> analyses of the NVT trajectory, streamed                                    analyse_diffusion,
                                                                                     analyse_structure,
                                                                                     analyse_li_environment,
                                                                                     analyse_tfsi_conformers
      -> properties (Dict), curves (ArrayData), figures (PNG)                       collect_properties

The density stop rule is :func:`~aiida_ilmlff.analysis.npt.density_stop_rule`. When
``max_npt_stages`` is reached without convergence the work chain warns in its report, goes on with the last
stage's mean density and sets ``properties['density_g_cm3']['converged']`` to false; it finishes with exit status
0, or with 510 ``ERROR_DENSITY_NOT_CONVERGED`` (after every output is attached) when
``density_convergence.fail_if_not_converged`` is true.

Molecules stay molecules: every stage's ``bond`` guard measures against the bonds and lengths of the input
structure (the NPT stages continue from each other's checkpoints; the NVT run gets the last one as
``md.bond_reference``). When an NPT stage or the NVT production stops on the MD's ``bond`` guard (a covalent
bond of the starting box stretched past ``max_bond_stretch``; ``ilmlff.md`` 505, after the restarts of
:class:`~aiida_ilmlff.workflows.md.MDBaseWorkChain`), no property is computed from that trajectory: the work chain
attaches ``properties`` with ``broken`` (which bond of which ion, how far, in which stage, at which step),
``density_g_cm3`` ``None`` and no diffusion or coordination
(:func:`~aiida_ilmlff.calculations.functions.md.broken_molecule_properties`), and ends with 511
``ERROR_MOLECULE_BROKEN``. A stage that gives up on any other guard (non-finite energy, force, temperature,
atoms too close, volume: the model is unstable at this state point) is reported the same way, with ``unstable``
(the guard, its measured value and threshold, stage and step;
:func:`~aiida_ilmlff.calculations.functions.md.unstable_model_properties`), and ends with 512
``ERROR_MODEL_UNSTABLE``; a caller such as ``ilmlff.pipeline`` keeps such a model's row, marked, in its table. Any
other failure of an MD stage (401/402: a crash, no checkpoint) leaves no ``properties`` at all: a density is
reported only from NPT stages that finished.

Exit codes: 401 an NPT stage failed, 402 the NVT production failed, 350 an analysis failed, 510 (optional)
density not converged, 511 a molecule broke, 512 the model was unstable. See ``docs/properties.md``.
"""

from __future__ import annotations

import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, append_, while_

from aiida_ilmlff.analysis.npt import DENSITY_CONVERGENCE, density_stop_rule, validate_density_convergence
from aiida_ilmlff.analysis.settings import ANALYSIS_SETTINGS, validate_analysis_settings
from aiida_ilmlff.calculations.functions.md import broken_molecule_properties, unstable_model_properties
from aiida_ilmlff.calculations.functions.properties import (
    analyse_diffusion,
    analyse_li_environment,
    analyse_structure,
    analyse_tfsi_conformers,
    collect_properties,
    npt_stage_density,
    scale_to_density,
    summarise_density,
)
from aiida_ilmlff.calculations.functions.trajectory import md_segment_inputs, merge_md_segments
from aiida_ilmlff.calculations.md import structure_elements, validate_models
from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.data.trajectory import MDTrajectoryData
from aiida_ilmlff.runner.contract import GUARDS, PARAMETERS, broken_bond
from aiida_ilmlff.workflows.md import MDBaseWorkChain, models_namespace
from aiida_ilmlff.workflows.protocols import ProtocolMixin, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import LIQUID_TEMPERATURE_K, check_code_plugin, check_liquid_temperature
from aiida_ilmlff.workflows.protocols.plain import is_set_by_parent, to_plain

__all__ = ('PropertiesWorkChain', 'structure_molecules', 'validate_inputs')

#: Inputs of ``ilmlff.md`` that the work chain sets itself in the ``npt`` and ``nvt`` namespaces.
_SET_BY_WORKCHAIN = ('md.code', 'md.structure', 'md.models', 'md.restart', 'md.frame_index', 'md.bond_reference')
_NPT_ENSEMBLES = ('npt', 'npt_berendsen')


def structure_molecules(structure: orm.Data) -> tuple[list[str] | None, list[str]]:
    """``(species name of every molecule or None, element symbols)`` of a StructureData or FramesData.

    Molecule names come from the ``mol_id`` (one int per site) and ``molecules`` (one name per molecule)
    attributes set by the box builder (for a FramesData: its last frame's ``mol_id`` array and ``molecules``).
    None when either is missing or they do not fit together.
    """
    if isinstance(structure, FramesData):
        atoms = structure[-1]
        mol_id = atoms.arrays.get('mol_id')
        molecules = atoms.info.get('molecules')
        n_sites = len(atoms)
    else:
        mol_id = structure.base.attributes.get('mol_id', None)
        molecules = structure.base.attributes.get('molecules', None)
        n_sites = len(structure.sites)
    elements = structure_elements(structure, -1 if isinstance(structure, FramesData) else None)
    if mol_id is None or molecules is None or len(mol_id) != n_sites or len(mol_id) == 0:
        return None, elements
    if isinstance(molecules, str):
        molecules = molecules.split()
    molecules = [str(name) for name in molecules]
    if min(mol_id) < 0 or max(mol_id) >= len(molecules):
        return None, elements
    return molecules, elements


def _stage_parameters(inputs: t.Mapping, namespace: str) -> dict | None:
    try:
        return to_plain(inputs[namespace]['md']['parameters'])
    except (KeyError, TypeError):
        return None


def check_inputs(values: t.Mapping, context: t.Mapping | None = None) -> str | None:
    """Cross-checks of the whole input as plain values; the message names the input and the fix.

    Temperature in the liquid range and pressure finite; models cover the structure's elements; ``npt`` runs an
    NPT ensemble and ``nvt`` the ``nvt`` one at the top-level temperature (and pressure); ``density_convergence``
    and ``analysis`` keys known and sane for this structure (species present, molecule ids when per-species
    diffusion or centre-of-mass RDFs are asked, the MSD window within the NVT run).

    :param values: the inputs (nodes are turned into plain values with :func:`to_plain`; ``structure`` and
        ``models`` may stay nodes).
    :param context: what a parent work chain sets at run time: ``temperature``, ``models`` (or
        :data:`SET_BY_PARENT`), and, instead of ``structure``, ``species`` (ion name of every molecule) and
        ``elements``.
    """
    values = {**to_plain(values), **(context or {})}
    errors = []
    temperature = values.get('temperature')
    if is_set_by_parent(temperature):
        temperature = None
    if temperature is not None:
        problem = check_liquid_temperature(temperature)
        if problem:
            errors.append(problem)
    pressure = values.get('pressure')
    if pressure is not None and not abs(pressure) < float('inf'):
        errors.append(f'`pressure` must be a finite number (bar), got {pressure}')
    structure = values.get('structure')
    models = values.get('models')
    if not is_set_by_parent(models):
        models = models or {}
        problem = validate_models(models, None)
        if problem:
            errors.append(problem)
    else:
        models = {}
    species, elements = values.get('species'), values.get('elements') or []
    if structure is not None and not is_set_by_parent(structure):
        species, elements = structure_molecules(structure)
    for key, node in models.items():
        covered = set(node.base.attributes.get('elements', None) or [])
        missing = sorted(set(elements) - covered)
        if missing:
            errors.append(f'`models.{key}` does not cover the elements {missing} of `structure`')
    for namespace, allowed in (('npt', _NPT_ENSEMBLES), ('nvt', ('nvt',))):
        parameters = _stage_parameters(values, namespace)
        if parameters is None:
            continue
        ensemble = parameters.get('ensemble')
        if ensemble not in allowed:
            errors.append(f'`{namespace}.md.parameters.ensemble` must be one of {list(allowed)}, got {ensemble!r}')
        stage_temperature = parameters.get('temperature_K')
        if temperature is not None and stage_temperature is not None and stage_temperature != temperature:
            errors.append(
                f'`{namespace}.md.parameters.temperature_K` ({stage_temperature}) differs from `temperature` '
                f'({temperature}): the top-level `temperature` sets both stages'
            )
        stage_pressure = parameters.get('pressure_bar')
        if namespace == 'npt' and pressure is not None and stage_pressure is not None and stage_pressure != pressure:
            errors.append(
                f'`npt.md.parameters.pressure_bar` ({stage_pressure}) differs from `pressure` ({pressure}): the '
                'top-level `pressure` sets the NPT stages'
            )
    max_stages = values.get('max_npt_stages')
    if max_stages is not None and max_stages < 1:
        errors.append(f'`max_npt_stages` must be >= 1, got {max_stages}')
    convergence = values.get('density_convergence')
    if convergence is not None:
        errors += validate_density_convergence(convergence)
    analysis = values.get('analysis')
    if analysis is not None and elements:
        production_ps = None
        nvt = _stage_parameters(values, 'nvt')
        if nvt is not None and isinstance(nvt.get('steps'), int):
            production_ps = nvt['steps'] * nvt.get('timestep_fs', PARAMETERS['timestep_fs'].default) / 1000.0
        errors += validate_analysis_settings(analysis, species, elements, production_ps)
    if errors:
        return 'invalid input of ilmlff.properties:\n- ' + '\n- '.join(errors)
    return None


def validate_inputs(inputs: t.Mapping, _: t.Any = None) -> str | None:
    """Port validator of the whole namespace: :func:`check_inputs` on the plain values."""
    return check_inputs(inputs)


def _validate_temperature(value: orm.Float | None, _) -> str | None:
    return None if value is None else check_liquid_temperature(value.value)


class PropertiesWorkChain(ProtocolMixin, WorkChain):
    """NPT density equilibration in stages, NVT production at the mean volume, then the liquid's properties."""

    _protocol_file = 'properties.yaml'

    @classmethod
    def define(cls, spec):
        """Define inputs, outline, outputs and exit codes."""
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, help='The `ilmlff-runner` code that runs the MD.')
        spec.input(
            'structure',
            valid_type=(orm.StructureData, FramesData),
            help='Starting box: a StructureData with the `mol_id`/`molecules` attributes of the box builder, or a '
            'FramesData (its last frame). Molecule ids are needed for per-species diffusion and centre-of-mass RDFs.',
        )
        spec.input_namespace(
            'models',
            valid_type=MLFFModelData,
            dynamic=True,
            help='MLFF models; the first in natural key order (model_0) drives the MD, the others form a committee.',
        )
        spec.input(
            'temperature',
            valid_type=orm.Float,
            validator=_validate_temperature,
            help='Temperature in K of every stage (NPT and NVT); it overrides `temperature_K` of the stage '
            f'parameters. Must lie in {LIQUID_TEMPERATURE_K[0]:g}-{LIQUID_TEMPERATURE_K[1]:g} K: below, every ionic '
            'liquid is a glass or a crystal; above, it has decomposed.',
        )
        spec.input(
            'pressure',
            valid_type=orm.Float,
            default=lambda: orm.Float(1.0),
            help='Pressure in bar of the NPT stages.',
        )
        spec.expose_inputs(
            MDBaseWorkChain,
            namespace='npt',
            exclude=_SET_BY_WORKCHAIN,
            namespace_options={'help': 'Inputs of each NPT stage (`md.parameters.steps` is the length of one stage).'},
        )
        spec.expose_inputs(
            MDBaseWorkChain,
            namespace='nvt',
            exclude=_SET_BY_WORKCHAIN,
            namespace_options={'help': 'Inputs of the NVT production run (ensemble `nvt`).'},
        )
        spec.input(
            'max_npt_stages',
            valid_type=orm.Int,
            default=lambda: orm.Int(5),
            help='Most NPT stages run before going on with an unconverged density.',
        )
        spec.input(
            'density_convergence',
            valid_type=orm.Dict,
            default=lambda: orm.Dict({}),
            help='Density stop rule: '
            + '; '.join(f'{key} (default {default}): {text}' for key, (default, text) in DENSITY_CONVERGENCE.items()),
        )
        spec.input(
            'analysis',
            valid_type=orm.Dict,
            default=lambda: orm.Dict({}),
            help='Analysis settings: '
            + '; '.join(f'{key} (default {default}): {text}' for key, (default, text) in ANALYSIS_SETTINGS.items()),
        )
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            while_(cls.should_run_npt)(
                cls.run_npt,
                cls.inspect_npt,
            ),
            cls.prepare_nvt,
            cls.run_nvt,
            cls.inspect_nvt,
            cls.run_analysis,
            cls.results,
        )

        spec.output(
            'properties',
            valid_type=orm.Dict,
            help='density_g_cm3 {mean, error, n_stages, converged, ...}, temperature_K, diffusion {species: {D_m2_s, '
            'D_err_m2_s, fit_window_ps, ...}}, coordination {"a-b": {r_cut_A, cn, ...}}, li_clusters, tfsi_conformers. '
            'When the MD broke a molecule (exit 511): broken {label, species, elements, i, j, stretch, stage, step, '
            '...}, density_g_cm3 null, diffusion and coordination empty.',
        )
        spec.output_namespace('curves', valid_type=orm.ArrayData, dynamic=True, help='`msd`, `rdf`, `cn` curves.')
        spec.output_namespace(
            'figures',
            valid_type=orm.SinglefileData,
            dynamic=True,
            help='PNG figures: `density` (NPT trace), `msd` (log-log, fit windows), `rdf` (with CN on a twin axis).',
        )
        spec.output('npt_trajectory', valid_type=MDTrajectoryData, help='The NPT stages joined into one trajectory.')
        spec.output('nvt_trajectory', valid_type=MDTrajectoryData, help='The NVT production trajectory.')

        spec.exit_code(350, 'ERROR_ANALYSIS_FAILED', message='The analysis `{name}` failed: {message}')
        spec.exit_code(
            401,
            'ERROR_SUB_PROCESS_FAILED_NPT',
            message='NPT stage {stage} (MDBaseWorkChain<{pk}>) failed with exit status {status}.',
        )
        spec.exit_code(
            402,
            'ERROR_SUB_PROCESS_FAILED_NVT',
            message='The NVT production (MDBaseWorkChain<{pk}>) failed: {status}.',
        )
        spec.exit_code(
            510,
            'ERROR_DENSITY_NOT_CONVERGED',
            message='The density did not converge in {stages} NPT stages (all outputs were produced with the last '
            "stage's mean density).",
        )
        spec.exit_code(
            511,
            'ERROR_MOLECULE_BROKEN',
            message='The model broke a molecule in {stage}: {bond}. No property was computed from that trajectory; '
            '`properties.broken` names the bond.',
        )
        spec.exit_code(
            512,
            'ERROR_MODEL_UNSTABLE',
            message="The model's MD was unstable in {stage}: the `{guard}` guard tripped after the restarts with "
            'smaller time steps ({detail}). No property was computed from that trajectory; `properties.unstable` '
            'names the guard.',
        )

    # ------------------------------------------------------------------------------------------ protocols

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        options: t.Mapping | None = None,
        temperature_K: float | None = None,
        pressure_bar: float | None = None,
    ) -> dict:
        """The protocol inputs as plain values (no nodes; ``structure``, ``models`` and ``code`` not included).

        ``npt`` and ``nvt`` are the plain inputs of :meth:`MDBaseWorkChain.get_plain_protocol_inputs` with the
        ``ilmlff.md.base`` protocol of the same name, this protocol's section merged over it, and the top-level
        ``temperature`` (and ``pressure`` for NPT) forced into their parameters.

        :raises ValueError: an unknown protocol or override key; a temperature outside any liquid.
        """
        quick: dict[str, t.Any] = {}
        if temperature_K is not None:
            quick['temperature'] = float(temperature_K)
        if pressure_bar is not None:
            quick['pressure'] = float(pressure_bar)
        if overrides:
            cls._validate_override_keys(overrides)
        protocol = cls.check_protocol(protocol)
        inputs = cls.get_protocol_inputs(protocol, recursive_merge(quick, overrides or {}))
        temperature, pressure = float(inputs['temperature']), float(inputs['pressure'])
        message = check_liquid_temperature(temperature)
        if message:
            raise ValueError(message)
        inputs['temperature'], inputs['pressure'] = temperature, pressure
        for stage in ('npt', 'nvt'):
            forced = {'temperature_K': temperature}
            if stage == 'npt':
                forced['pressure_bar'] = pressure
            stage_overrides = recursive_merge(inputs.get(stage) or {}, {'md': {'parameters': forced}})
            inputs[stage] = MDBaseWorkChain.get_plain_protocol_inputs(protocol, stage_overrides, options=options)
        inputs['density_convergence'] = inputs.get('density_convergence') or {}
        inputs['analysis'] = inputs.get('analysis') or {}
        return inputs

    @staticmethod
    def plain_inputs_to_nodes(code: orm.AbstractCode | None, inputs: t.Mapping) -> dict:
        """The inputs of :meth:`get_plain_protocol_inputs` as nodes (``structure`` and ``models`` not set).

        :raises ValueError: when ``code`` is not an ``ilmlff.md`` code.
        """
        message = check_code_plugin(code, 'ilmlff.md', 'code')
        if message:
            raise ValueError(message)
        nodes: dict[str, t.Any] = {} if code is None else {'code': code}
        nodes['temperature'] = orm.Float(inputs['temperature'])
        nodes['pressure'] = orm.Float(inputs['pressure'])
        for stage in ('npt', 'nvt'):
            nodes[stage] = MDBaseWorkChain.plain_inputs_to_nodes(None, inputs[stage])
        nodes['max_npt_stages'] = orm.Int(inputs['max_npt_stages'])
        nodes['density_convergence'] = orm.Dict(inputs['density_convergence'])
        nodes['analysis'] = orm.Dict(inputs['analysis'])
        return nodes

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structure: orm.StructureData | FramesData,
        *,
        models: t.Any,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        temperature_K: float | None = None,
        pressure_bar: float | None = None,
    ):
        """A builder filled from the YAML protocol ``protocol`` (``fast``, ``balanced`` or ``stringent``).

        :param code: the ``ilmlff-runner`` code (plugin ``ilmlff.md``).
        :param structure: the starting box (StructureData with molecule ids, or FramesData).
        :param models: an ``MLFFModelData``, a list (model 0 drives) or a ``{key: model}`` mapping.
        :param overrides: nested mapping merged over the protocol, same layout as the inputs (e.g.
            ``{'nvt': {'md': {'parameters': {'steps': 5000}}}, 'analysis': {'viscosity_Pa_s': 0.05}}``).
        :param options: ``metadata.options`` of every MD calculation (merged over the protocol's).
        :param temperature_K: temperature in K (default the protocol's, 450 K: liquid PYR14BF4); within
            :data:`~aiida_ilmlff.workflows.protocols.checks.LIQUID_TEMPERATURE_K`.
        :param pressure_bar: NPT pressure in bar (default 1).
        :raises ValueError: an unknown protocol or override key, a code of another plugin, a temperature outside
            any liquid.
        """
        inputs = cls.get_plain_protocol_inputs(
            protocol, overrides, options=options, temperature_K=temperature_K, pressure_bar=pressure_bar
        )
        builder = cls.get_builder()
        for key, value in cls.plain_inputs_to_nodes(code, inputs).items():
            builder[key] = value
        builder.structure = structure
        builder.models = models_namespace(models)
        return builder

    # ------------------------------------------------------------------------------------------ NPT

    def setup(self):
        """Start from the input structure, no stage yet."""
        self.ctx.structure = self.inputs.structure
        self.ctx.checkpoint = None
        self.ctx.stages = []  # npt_stage_density Dicts
        self.ctx.npt = []  # finished MDBaseWorkChain nodes
        self.ctx.converged = False
        self.ctx.settings = {
            key: default for key, (default, _) in DENSITY_CONVERGENCE.items()
        } | self.inputs.density_convergence.get_dict()

    def should_run_npt(self) -> bool:
        """Another stage while the density has not converged and stages are left."""
        return not self.ctx.converged and len(self.ctx.stages) < self.inputs.max_npt_stages.value

    def _md_inputs(self, namespace: str) -> AttributeDict:
        inputs = AttributeDict(self.exposed_inputs(MDBaseWorkChain, namespace=namespace))
        inputs.md = AttributeDict(inputs.md)
        inputs.md.code = self.inputs.code
        inputs.md.models = dict(self.inputs.models)
        parameters = inputs.md.parameters.get_dict()
        parameters['temperature_K'] = self.inputs.temperature.value
        if namespace == 'npt':
            parameters['pressure_bar'] = self.inputs.pressure.value
        inputs.md.parameters = parameters
        return inputs

    def run_npt(self):
        """Submit the next NPT stage, continuing from the previous stage's checkpoint."""
        stage = len(self.ctx.stages) + 1
        inputs = self._md_inputs('npt')
        parameters = inputs.md.parameters
        inputs.md.structure = self.ctx.structure
        if self.ctx.checkpoint is not None:
            inputs.md.restart = self.ctx.checkpoint
            parameters['steps'] = int(self.ctx.checkpoint.base.attributes.get('step')) + int(parameters['steps'])
        inputs.md.parameters = orm.Dict(parameters)
        inputs.metadata = {'call_link_label': f'npt_{stage}'}
        node = self.submit(MDBaseWorkChain, **inputs)
        self.report(f'launching NPT stage {stage} <{node.pk}> (to step {parameters["steps"]})')
        return ToContext(npt=append_(node))

    def inspect_npt(self):
        """Check the stage, compute its density statistics, apply the stop rule (all in the report)."""
        stage = len(self.ctx.stages) + 1
        node = self.ctx.npt[-1]
        if not node.is_finished_ok:
            failed = self._failed_model(node, f'npt_{stage}')
            if failed is not None:
                return failed
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_NPT.format(stage=stage, pk=node.pk, status=node.exit_status)
        stats = npt_stage_density(node.outputs.thermo, metadata={'call_link_label': f'density_stage_{stage}'})
        self.ctx.stages.append(stats)
        self.ctx.structure = node.outputs.final_structure
        self.ctx.checkpoint = node.outputs.checkpoint
        values = [s.get_dict() for s in self.ctx.stages]
        self.ctx.converged, reason = density_stop_rule(values, self.ctx.settings)
        last = values[-1]
        self.report(
            f'NPT stage {stage}: density {last["mean"]:.4f} ± {last["error"]:.4f} g/cm^3 (equilibrated from '
            f'{last["equilibration_time_fs"] / 1000:.2f} ps, {100 * last["equilibrated_fraction"]:.0f} % of the stage, '
            f'g = {last["statistical_inefficiency"]:.1f}, drift {last["drift_g_cm3_per_ps"]:+.4f} g/cm^3/ps); {reason}'
        )
        return None

    def prepare_nvt(self):
        """Join the NPT stages, summarise the density and scale the last structure to the mean density."""
        nodes = self.ctx.npt
        if len(nodes) > 1:
            segments = md_segment_inputs(nodes, deviation=False)
            merged = merge_md_segments(**segments, metadata={'call_link_label': 'merge_npt_stages'})
            self.ctx.npt_trajectory, thermo = merged['trajectory'], merged['thermo']
        else:
            self.ctx.npt_trajectory, thermo = nodes[0].outputs.trajectory, nodes[0].outputs.thermo
        if not self.ctx.converged:
            self.report(
                f'WARNING: the density did not converge in {len(nodes)} NPT stage(s) (max_npt_stages): going on with '
                'the last stage\'s mean density; properties["density_g_cm3"]["converged"] is false'
            )
        stages = {f'stage_{k}': stats for k, stats in enumerate(self.ctx.stages, 1)}
        summary = summarise_density(
            thermo, orm.Bool(self.ctx.converged), **stages, metadata={'call_link_label': 'summarise_density'}
        )
        self.ctx.density = summary['density']
        self.ctx.figures = {'density': summary['figure']}
        self.ctx.nvt_structure = scale_to_density(
            self.ctx.structure, self.ctx.density, metadata={'call_link_label': 'scale_to_density'}
        )
        cell = self.ctx.nvt_structure.cell
        self.report(
            f'NVT at the mean density {self.ctx.density["mean"]:.4f} g/cm^3: cell '
            f'{cell[0][0]:.3f} x {cell[1][1]:.3f} x {cell[2][2]:.3f} Å (diagonal)'
        )

    # ------------------------------------------------------------------------------------------ NVT

    def run_nvt(self):
        """Submit the NVT production run from the scaled structure (fresh velocities at the temperature)."""
        inputs = self._md_inputs('nvt')
        inputs.md.structure = self.ctx.nvt_structure
        # the bond guard of the NVT run keeps the bonds and lengths of the starting box (carried by the NPT
        # checkpoints), not those of the NPT's last frame
        inputs.md.bond_reference = self.ctx.checkpoint
        inputs.md.parameters = orm.Dict(inputs.md.parameters)
        inputs.metadata = {'call_link_label': 'nvt'}
        node = self.submit(MDBaseWorkChain, **inputs)
        self.report(f'launching the NVT production <{node.pk}> ({inputs.md.parameters["steps"]} steps)')
        return ToContext(nvt=node)

    def inspect_nvt(self):
        """The NVT run must have finished."""
        node = self.ctx.nvt
        if not node.is_finished_ok:
            failed = self._failed_model(node, 'nvt')
            if failed is not None:
                return failed
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_NVT.format(pk=node.pk, status=node.exit_status)
        return None

    def _failed_model(self, node, stage: str):
        """When the MD work chain ``node`` gave up on a guard: attach ``properties`` with ``broken`` (the ``bond``
        guard, 511) or ``unstable`` (any other guard, 512), with no density, diffusion or coordination, and return
        the exit code; otherwise (no guard, e.g. a code crash) ``None``."""
        guard = next((g for g in GUARDS.values() if g.exit_status == node.exit_status), None)
        if guard is None:
            return None
        calculations = sorted(
            (
                child
                for child in node.called
                if child.exit_status == guard.exit_status and 'output_parameters' in child.outputs
            ),
            key=lambda child: child.ctime,
        )
        if not calculations:
            return None
        output_parameters = calculations[-1].outputs.output_parameters
        if guard.name == 'bond':
            if broken_bond(output_parameters.get_dict()) is None:
                return None
            properties = broken_molecule_properties(
                output_parameters,
                orm.Str(stage),
                self.inputs.temperature,
                metadata={'call_link_label': 'broken_molecule'},
            )
            bond = properties['broken']
            self.report(
                f'{stage} ({node.process_label}<{node.pk}>) broke a molecule: {bond["label"]} (> {bond["threshold"]}x '
                f'its starting length) at step {bond["step"]}; no density, diffusion or structure is computed for this '
                'model'
            )
            self.out('properties', properties)
            return self.exit_codes.ERROR_MOLECULE_BROKEN.format(stage=stage, bond=bond['label'])
        if not (output_parameters.get_dict().get('guard') or {}).get('name'):
            return None
        properties = unstable_model_properties(
            output_parameters, orm.Str(stage), self.inputs.temperature, metadata={'call_link_label': 'unstable_model'}
        )
        record = properties['unstable']
        self.report(
            f'{stage} ({node.process_label}<{node.pk}>) was unstable: the `{record["guard"]}` guard tripped at step '
            f'{record["step"]} after the restarts with smaller time steps ({record["message"]}); no density, diffusion '
            'or structure is computed for this model'
        )
        self.out('properties', properties)
        return self.exit_codes.ERROR_MODEL_UNSTABLE.format(stage=stage, guard=record['guard'], detail=record['message'])

    # ------------------------------------------------------------------------------------------ analysis

    def run_analysis(self):
        """Diffusion, RDF/CN, and (when present) Li+ environment and TFSI conformers of the NVT trajectory."""
        trajectory = self.ctx.nvt.outputs.trajectory
        analysis = self.inputs.analysis
        settings = {key: default for key, (default, _) in ANALYSIS_SETTINGS.items()} | analysis.get_dict()
        species = set((trajectory.base.attributes.get('species', None) or {}).keys())
        results: dict[str, t.Any] = {}
        try:
            name = 'diffusion'
            if settings['diffusion_species'] is None or settings['diffusion_species']:
                results['diffusion'] = analyse_diffusion(
                    trajectory, analysis, self.inputs.temperature, metadata={'call_link_label': 'analyse_diffusion'}
                )
            name = 'structure'
            results['structure'] = analyse_structure(
                trajectory, analysis, metadata={'call_link_label': 'analyse_structure'}
            )
            name = 'li_environment'
            if settings['li_species'] in species:
                results['li_clusters'] = analyse_li_environment(
                    trajectory, analysis, metadata={'call_link_label': 'analyse_li_environment'}
                )
            name = 'tfsi_conformers'
            if settings['tfsi_species'] in species:
                results['tfsi_conformers'] = analyse_tfsi_conformers(
                    trajectory, analysis, metadata={'call_link_label': 'analyse_tfsi_conformers'}
                )
        except Exception as exception:  # a calcfunction that raised: its node is stored as excepted
            self.report(f'the analysis `{name}` failed: {exception}')
            return self.exit_codes.ERROR_ANALYSIS_FAILED.format(name=name, message=str(exception))
        self.ctx.analysis = results
        return None

    def results(self):
        """Attach the properties Dict, curves, figures and trajectories."""
        results = self.ctx.analysis
        structure = results['structure']
        diffusion = results.get('diffusion')
        optional = {key: results[key] for key in ('li_clusters', 'tfsi_conformers') if key in results}
        properties = collect_properties(
            self.ctx.density,
            self.inputs.temperature,
            diffusion['diffusion'] if diffusion else _empty_diffusion(),
            structure['coordination'],
            **optional,
            metadata={'call_link_label': 'collect_properties'},
        )
        curves = {'rdf': structure['rdf'], 'cn': structure['cn']}
        figures = dict(self.ctx.figures, rdf=structure['figure'])
        if diffusion:
            curves['msd'] = diffusion['msd']
            figures['msd'] = diffusion['figure']
        self.out('properties', properties)
        self.out('curves', curves)
        self.out('figures', figures)
        self.out('npt_trajectory', self.ctx.npt_trajectory)
        self.out('nvt_trajectory', self.ctx.nvt.outputs.trajectory)
        density = self.ctx.density.get_dict()
        lines = [
            f'density {density["mean"]:.4f} ± {density["error"]:.4f} g/cm^3'
            + ('' if density.get('converged', True) else ' (stop rule did not hold)')
        ]
        for species, entry in properties['diffusion'].items():
            if entry.get('D_m2_s') is None:  # not diffusive over the fit window: no D (analysis.properties)
                lines.append(
                    f'D({species}): none, {entry.get("regime", "not diffusive")} (MSD reached '
                    f'{entry.get("msd_reached_A2", float("nan")):.3g} A^2; needs about '
                    f'{entry.get("time_needed_ps") or float("nan"):.3g} ps)'
                )
                continue
            error = entry.get('D_err_m2_s')
            lines.append(
                f'D({species}) = {entry["D_m2_s"]:.3e} ± {error if error is not None else float("nan"):.1e} m^2/s'
            )
        self.report('; '.join(lines))
        if not self.ctx.converged and self.ctx.settings['fail_if_not_converged']:
            return self.exit_codes.ERROR_DENSITY_NOT_CONVERGED.format(stages=len(self.ctx.stages))
        return None


def _empty_diffusion() -> orm.Dict:
    """An empty diffusion Dict for ``analysis.diffusion_species = []`` (stored as an input of collect_properties)."""
    return orm.Dict({})
