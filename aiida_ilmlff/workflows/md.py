"""``ilmlff.md.base``: run ``ilmlff.md`` until all steps are done, recovering from wall time and guard failures.

Handlers (each action is written to the work chain's report):

- wall time (``ERROR_OUT_OF_WALLTIME`` 400, or the scheduler's 120 when a checkpoint came back): continue
  from the ``checkpoint`` output with the same parameters (``steps`` counts the whole simulation).
- a job cancelled from outside (``scancel``; :mod:`~aiida_ilmlff.workflows.cancelled`): with
  ``resubmit_cancelled`` (protocol, default true) submitted again, from the checkpoint it left when one came back;
  otherwise the work chain stops with exit code 403.
- a guard (500-505, 505 the ``bond`` guard: a molecule came apart): restart from the checkpoint, which holds the
  last good saved frame, with the time step halved; ``steps`` grows so that the simulated time stays the same and
  the output strides double so that frames stay evenly spaced in time. The checkpoint carries the starting
  frame's bonds, so the restart keeps the topology and reference lengths of the ``bond`` guard. After
  ``max_guard_restarts`` such restarts the work chain fails with the guard's exit code (a model that breaks
  molecules at any time step ends with 505), keeping as outputs the frames saved before the trip.

When more than one calculation contributed frames, the outputs ``trajectory``, ``thermo`` and
``deviation`` are the joined segments (:func:`~aiida_ilmlff.calculations.functions.trajectory.merge_md_segments`,
a calcfunction, so the provenance is kept); the other outputs are those of the last calculation.
"""

from __future__ import annotations

import math
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_ilmlff.calculations.functions.trajectory import md_segment_inputs, merge_md_segments
from aiida_ilmlff.calculations.md import MDCalculation
from aiida_ilmlff.runner.contract import GUARDS, PARAMETERS
from aiida_ilmlff.workflows.cancelled import CancelledJobMixin
from aiida_ilmlff.workflows.protocols import ProtocolMixin, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import check_code_plugin, check_liquid_temperature
from aiida_ilmlff.workflows.protocols.gpu import apply_gpu
from aiida_ilmlff.workflows.protocols.monitors import monitors_to_nodes

__all__ = ('MDBaseWorkChain', 'models_namespace', 'numbered_namespace')

_GUARD_EXIT_CODES = [MDCalculation.exit_codes(guard.exit_label) for guard in GUARDS.values()]
_STRIDES = ('traj_every', 'thermo_every', 'checkpoint_every')


def numbered_namespace(nodes: t.Any, prefix: str) -> dict[str, orm.Data]:
    """``nodes`` as a port namespace: a mapping is kept, a node or a sequence becomes ``<prefix>_0, <prefix>_1``."""
    if isinstance(nodes, t.Mapping):
        return dict(nodes)
    if isinstance(nodes, orm.Data):
        nodes = [nodes]
    return {f'{prefix}_{i}': node for i, node in enumerate(nodes)}


def models_namespace(models: t.Any) -> dict[str, orm.Data]:
    """``models`` as the ``models`` namespace: a mapping is kept, a node or a sequence becomes ``model_0, ...``."""
    return numbered_namespace(models, 'model')


class MDBaseWorkChain(ProtocolMixin, CancelledJobMixin, BaseRestartWorkChain):
    """Run an :class:`~aiida_ilmlff.calculations.md.MDCalculation`, restarting it from checkpoints as needed."""

    _process_class = MDCalculation
    _protocol_file = 'md/base.yaml'

    @classmethod
    def define(cls, spec):
        """Define inputs, outline, outputs and exit codes."""
        super().define(spec)
        spec.expose_inputs(MDCalculation, namespace='md')
        spec.input(
            'max_guard_restarts',
            valid_type=orm.Int,
            default=lambda: orm.Int(3),
            help='How many times a guard failure may be retried (each time from the last good frame with the time '
            'step halved) before the work chain fails with the guard exit code.',
        )
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.expose_outputs(MDCalculation)
        spec.exit_code(
            310, 'ERROR_NO_CHECKPOINT', message='The MD stopped early and left no checkpoint to continue from.'
        )
        for guard in GUARDS.values():
            spec.exit_code(
                guard.exit_status,
                guard.exit_label,
                message=f'{guard.message} It persisted after the allowed restarts with smaller time steps.',
            )

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        options: t.Mapping | None = None,
        ensemble: str | None = None,
        temperature_K: float | None = None,
        pressure_bar: float | None = None,
    ) -> dict:
        """The protocol inputs as plain values (no nodes): ``md`` (``parameters``, ``settings``, ``engine``,
        ``metadata``), ``max_iterations``, ``max_guard_restarts``, ``resubmit_cancelled``, ``clean_workdir``.

        The keyword arguments are merged under ``overrides`` (``overrides`` wins); see
        :meth:`get_builder_from_protocol`.

        The meta input ``gpu`` (``overrides={'gpu': {'gres': 'gpu:1'}}``, see
        :mod:`aiida_ilmlff.workflows.protocols.gpu`) is applied to ``md`` and removed.

        :raises ValueError: an unknown protocol or override key, a temperature outside any liquid, a bad ``gpu``.
        """
        quick = {k: v for k, v in (('ensemble', ensemble), ('temperature_K', temperature_K)) if v is not None}
        if pressure_bar is not None:
            quick['pressure_bar'] = pressure_bar
        base: dict[str, t.Any] = {'md': {'parameters': quick}} if quick else {}
        if options:
            base = recursive_merge(base, {'md': {'metadata': {'options': dict(options)}}})
        cls.check_protocol(protocol)
        if overrides:
            cls._validate_override_keys(overrides)
        inputs = cls.get_protocol_inputs(protocol, recursive_merge(base, overrides or {}))
        apply_gpu(inputs['md'], inputs.pop('gpu', None), ('settings', 'device'))
        temperature = inputs['md'].get('parameters', {}).get('temperature_K')
        if temperature is not None:
            message = check_liquid_temperature(temperature, 'md.parameters.temperature_K')
            if message:
                raise ValueError(message)
        return inputs

    @staticmethod
    def plain_inputs_to_nodes(code: orm.AbstractCode | None, inputs: t.Mapping) -> dict:
        """The inputs of :meth:`get_plain_protocol_inputs` as nodes (``md.structure``/``md.models`` not set).

        :raises ValueError: when ``code`` is not an ``ilmlff.md`` code (the message names `md.code`).
        """
        message = check_code_plugin(code, 'ilmlff.md', 'md.code')
        if message:
            raise ValueError(message)
        md = inputs['md']
        namespace: dict[str, t.Any] = {'parameters': orm.Dict(dict(md.get('parameters', {})))}
        if code is not None:
            namespace['code'] = code
        if md.get('settings'):
            namespace['settings'] = orm.Dict(md['settings'])
        if md.get('engine'):
            namespace['engine'] = orm.Str(md['engine'])
        monitors = monitors_to_nodes(md.get('monitors'), 'md.monitors')
        if monitors:
            namespace['monitors'] = monitors
        namespace['metadata'] = md.get('metadata', {})
        return {
            'md': namespace,
            'max_iterations': orm.Int(inputs['max_iterations']),
            'max_guard_restarts': orm.Int(inputs['max_guard_restarts']),
            'resubmit_cancelled': orm.Bool(inputs.get('resubmit_cancelled', True)),
            'clean_workdir': orm.Bool(inputs.get('clean_workdir', False)),
        }

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structure: orm.StructureData | orm.Data,
        *,
        models: t.Any,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        ensemble: str | None = None,
        temperature_K: float | None = None,
        pressure_bar: float | None = None,
    ):
        """A builder filled from the YAML protocol ``protocol`` (``fast``, ``balanced`` or ``stringent``).

        :param code: the ``ilmlff-runner`` code (plugin ``ilmlff.md``).
        :param structure: the starting ``StructureData`` (or a ``FramesData``: its last frame).
        :param models: an ``MLFFModelData``, a list of them (model 0 drives, the others form the committee) or a
            ``{key: model}`` mapping.
        :param overrides: nested mapping merged over the protocol (same layout as the inputs, e.g.
            ``{'md': {'parameters': {'steps': 500}}}``); it wins over the keyword arguments below.
        :param options: ``metadata.options`` of the calculations (merged over the protocol's).
        :param ensemble: ``nve``, ``nvt``, ``npt`` or ``npt_berendsen``.
        :param temperature_K: target temperature in K; :param pressure_bar: target pressure in bar (npt).
        :raises ValueError: an unknown protocol or override key, a code of another plugin, a temperature
            outside any liquid (the message names the input and the valid values).
        """
        inputs = cls.get_plain_protocol_inputs(
            protocol,
            overrides,
            options=options,
            ensemble=ensemble,
            temperature_K=temperature_K,
            pressure_bar=pressure_bar,
        )
        nodes = cls.plain_inputs_to_nodes(code, inputs)
        builder = cls.get_builder()
        builder.md.code = code
        builder.md.structure = structure
        builder.md.models = models_namespace(models)
        for key, value in nodes['md'].items():
            if key != 'code':
                builder.md[key] = value
        for key in ('max_iterations', 'max_guard_restarts', 'resubmit_cancelled', 'clean_workdir'):
            builder[key] = nodes[key]
        return builder

    def setup(self):
        """Take the ``md`` inputs as the first calculation's inputs."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(MDCalculation, 'md'))
        self.ctx.guard_restarts = 0

    # ------------------------------------------------------------------------------------------ handlers

    def _continue_from(self, node) -> orm.SinglefileData | None:
        checkpoint = node.outputs.checkpoint if 'checkpoint' in node.outputs else None
        if checkpoint is not None:
            self.ctx.inputs.restart = checkpoint
        return checkpoint

    def prepare_resubmission(self, calc) -> str:
        """A cancelled MD continues from the checkpoint it left, if one came back; else it runs again from its start."""
        checkpoint = self._continue_from(calc)
        if checkpoint is None:
            return 'submitting it again from its start (no checkpoint came back)'
        attributes = checkpoint.base.attributes
        return f'continuing from its checkpoint at step {attributes.get("step")} (t = {attributes.get("time_fs"):g} fs)'

    @process_handler(
        priority=600,
        exit_codes=[
            MDCalculation.exit_codes.ERROR_OUT_OF_WALLTIME,
            MDCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME,
        ],
    )
    def handle_out_of_walltime(self, node):
        """Continue from the checkpoint with the same parameters."""
        checkpoint = self._continue_from(node)
        if checkpoint is None:
            self.report(f'{node.process_label}<{node.pk}> ran out of wall time and left no checkpoint: aborting')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_NO_CHECKPOINT)
        attributes = checkpoint.base.attributes
        self.report(
            f'{node.process_label}<{node.pk}> stopped for wall time; continuing from its checkpoint at step '
            f'{attributes.get("step")} (t = {attributes.get("time_fs"):g} fs)'
        )
        return ProcessHandlerReport(True)

    @process_handler(priority=500, exit_codes=_GUARD_EXIT_CODES)
    def handle_guard(self, node):
        """Restart from the last good frame with the time step halved, at most ``max_guard_restarts`` times."""
        guard = next(g for g in GUARDS.values() if g.exit_status == node.exit_status)
        exit_code = self.exit_codes(guard.exit_label)
        limit = self.inputs.max_guard_restarts.value
        message = node.exit_message or guard.message
        if self.ctx.guard_restarts >= limit:
            tried = f'again after {limit} restart(s) with smaller time steps' if limit else '(max_guard_restarts is 0)'
            self.report(
                f'{node.process_label}<{node.pk}> tripped the `{guard.name}` guard {tried}: giving up ({message})'
            )
            return self._give_up(node, exit_code)
        checkpoint = node.outputs.checkpoint if 'checkpoint' in node.outputs else None
        if checkpoint is None:
            self.report(
                f'{node.process_label}<{node.pk}> tripped the `{guard.name}` guard on its starting state '
                f'(no good frame to restart from): {message}'
            )
            return self._give_up(node, exit_code)
        parameters = self.ctx.inputs.parameters.get_dict()
        old_dt = float(parameters.get('timestep_fs', PARAMETERS['timestep_fs'].default))
        new_dt = old_dt / 2
        step = int(checkpoint.base.attributes.get('step'))
        parameters['timestep_fs'] = new_dt
        parameters['steps'] = step + math.ceil((parameters['steps'] - step) * old_dt / new_dt)
        for key in _STRIDES:
            parameters[key] = 2 * int(parameters.get(key, PARAMETERS[key].default))
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.ctx.inputs.restart = checkpoint
        self.ctx.guard_restarts += 1
        self.report(
            f'{node.process_label}<{node.pk}> tripped the `{guard.name}` guard ({message}); restart '
            f'{self.ctx.guard_restarts}/{limit} from the last good frame at step {step} '
            f'(t = {checkpoint.base.attributes.get("time_fs"):g} fs) with the time step halved: '
            f'{old_dt:g} fs -> {new_dt:g} fs (steps {parameters["steps"]}, strides doubled)'
        )
        return ProcessHandlerReport(True)

    def _give_up(self, node, exit_code) -> ProcessHandlerReport:
        """Fail with the guard's exit code, keeping the frames saved before the trip as outputs.

        A caller decides what they are worth: active learning selects candidates from them (the frames just before
        a molecule came apart are the ones a committee should disagree on, as in DP-GEN); ``ilmlff.properties``
        computes nothing from a run that tripped a guard (its 511/530).
        """
        for name, value in self.get_outputs(node).items():
            if name not in self.node.outputs:
                self.out(name, value)
        return ProcessHandlerReport(True, exit_code)

    # ------------------------------------------------------------------------------------------ outputs

    def get_outputs(self, node) -> dict[str, orm.Node]:
        """The last calculation's outputs, with the trajectory, thermo and deviation of all segments joined."""
        outputs = dict(self.exposed_outputs(node, MDCalculation))
        segments = [child for child in self.ctx.children if 'trajectory' in child.outputs and 'thermo' in child.outputs]
        segments = [child for child in segments if child.outputs.trajectory.n_frames > 0 or child is node]
        if len(segments) < 2:
            return outputs
        merged = merge_md_segments(**md_segment_inputs(segments), metadata={'call_link_label': 'merge_segments'})
        self.report(f'joined the trajectories of {len(segments)} segments: {merged["trajectory"].n_frames} frames')
        outputs.update(merged)
        if 'deviation' not in merged:
            outputs.pop('deviation', None)
        return outputs
