"""``ilmlff.validate``: a model's MD against the reference AIMD it should reproduce, at the reference's state point.

Force errors on a test set do not show whether a model's MD is right (Fu et al., arXiv 2210.07237); Park, Ryu &
Lee (arXiv 2503.18249) compare MLFF MD with AIMD. For one model (a committee: the first key in natural order
drives the MD, every member gives the committee deviation):

1. **MD** (``ilmlff.md.base``): NVT from the reference AIMD's last frame (same box, so the same density) at the
   reference's temperature, the model's MD parameters otherwise (steps, time step, thermostat). A guard trip (a
   bond broke, atoms too close, the temperature ran away) is the finding: the work chain attaches ``validation``
   (``md_intact`` false, the guard, the time of the trip) and exits 510.
2. **structure** (:func:`~aiida_ilmlff.calculations.functions.validation.compare_with_reference`): centre-of-mass
   and site-site RDFs, bond and angle distributions against the AIMD's
   (:func:`~aiida_ilmlff.calculations.functions.reference.aimd_trajectory`).
3. **a posteriori errors** (``a_posteriori_frames`` > 0): frames drawn from the model's own MD are labelled at the
   reference level of theory (``ilmlff.label``) and the committee is evaluated on them (``ilmlff.evaluate``): the
   force RMSE on configurations the model itself visits, its ratio to ``test_force_rmse``, and, with two or more
   members, the calibration of the committee deviation against the true error (``calibrate_committee``).

Bad input is refused before submission: a reference that is not one AIMD run (one box, times, one level of
theory, one temperature), a temperature or ensemble other than the reference's state point, models that do not
cover its elements, and, with ``training_set``, a reference of another level of theory or composition than the
models were trained on.
"""

from __future__ import annotations

import typing as t

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from aiida_ilmlff.calculations.evaluate import EvaluateCalculation
from aiida_ilmlff.calculations.functions.active_learning import calibrate_committee
from aiida_ilmlff.calculations.functions.reference import aimd_run_problem, aimd_trajectory
from aiida_ilmlff.calculations.functions.validation import (
    a_posteriori_frames,
    collect_validation,
    compare_with_reference,
)
from aiida_ilmlff.common.plain import finite_or_none
from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.runner.contract import validate_parameters
from aiida_ilmlff.workflows.label import LabelWorkChain
from aiida_ilmlff.workflows.md import MDBaseWorkChain, models_namespace
from aiida_ilmlff.workflows.protocols import ProtocolMixin, UnknownOverrideError, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import check_code_plugin

__all__ = ('ValidationWorkChain', 'check_reference', 'reference_temperature_of', 'validate_inputs')

#: The reference's temperature and a model run's may differ by this much [K] (both are thermostat targets).
TEMPERATURE_TOLERANCE_K = 1.0


def reference_temperature_of(reference: FramesData) -> float | None:
    """The thermostat target [K] of a reference AIMD (its frames' ``temperature``), None when not recorded."""
    values = np.asarray(reference.temperatures, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def check_reference(reference: FramesData) -> str | None:
    """Why ``reference`` is not one AIMD run the validation can use, or None.

    :func:`~aiida_ilmlff.calculations.functions.reference.aimd_run_problem` (one box, at least 3 frames with
    increasing ``time_fs``, molecule indices), plus molecule names, one level of theory and one temperature.
    """
    problem = aimd_run_problem(reference)
    if problem is not None:
        return f'`reference`: {problem} (give the `trajectory` of ilmlff.aimd on a built box)'
    if not reference.molecules[0]:
        return '`reference` has no molecule names: give the `trajectory` of ilmlff.aimd on a built box'
    levels = sorted(set(reference.levels_of_theory.tolist()))
    if len(levels) != 1 or not levels[0]:
        return f'`reference` must be of one level of theory, got {levels}'
    temperatures = np.asarray(reference.temperatures, dtype=float)
    if not np.isfinite(temperatures).all() or np.ptp(temperatures) > TEMPERATURE_TOLERANCE_K:
        return '`reference`: every frame needs the one thermostat temperature of the AIMD run'
    return None


def validate_inputs(inputs: t.Mapping, port: t.Any = None) -> str | None:
    """Cross-checks of the whole namespace (see the module docstring)."""
    reference = inputs.get('reference')
    models = inputs.get('models') or {}
    if reference is None:
        return None  # the namespace exposed by a parent (ilmlff.pipeline) that sets models and reference at run time
    if port is not None and 'models' not in port:  # exposed by a parent that sets the models at run time
        return check_reference(reference)
    if not models:
        return '`models`: give at least one model (a committee: the first key drives the MD)'
    message = check_reference(reference)
    if message:
        return message
    elements = set(reference.elements)
    for key, model in models.items():
        missing = sorted(elements - set(model.elements))
        if missing:
            return f'`models.{key}` does not cover the elements {missing} of the reference: use a model trained on them'
    temperature = reference_temperature_of(reference)
    parameters = inputs.get('md', {}).get('md', {}).get('parameters')
    values = parameters.get_dict() if parameters is not None else {}
    given = values.get('temperature_K')
    if given is not None and abs(float(given) - temperature) > TEMPERATURE_TOLERANCE_K:
        return (
            f'`md.md.parameters.temperature_K` is {given:g} K but the reference AIMD ran at {temperature:g} K: the '
            'validation compares at the state point the reference ran; leave temperature_K out (it is set from the '
            'reference) or validate against an AIMD at that temperature'
        )
    if values.get('ensemble', 'nvt') != 'nvt':
        return (
            f"`md.md.parameters.ensemble` is {values['ensemble']!r}: the validation runs NVT in the reference's box "
            '(its density); leave ensemble out'
        )
    errors = validate_parameters({**values, 'ensemble': 'nvt', 'temperature_K': temperature})
    if errors:
        return '`md.md.parameters`: ' + '; '.join(errors)
    training_set = inputs.get('training_set')
    if training_set is not None:
        level = reference.levels_of_theory[0]
        trained = sorted(set(training_set.levels_of_theory.tolist()))
        if level not in trained:
            return (
                f'the reference AIMD is of level of theory {level[:16]}... but the models were trained on '
                f'{[item[:16] + "..." for item in trained]}: compare a model with a reference at its own level'
            )
        composition = reference.composition_keys[0]
        compositions = sorted(set(training_set.composition_keys.tolist()) - {''})
        if composition not in compositions:
            return (
                f'the reference AIMD is of composition {composition!r}, the training set holds {compositions}: '
                'validate against an AIMD of a composition the models were trained on'
            )
    n_frames = inputs.get('a_posteriori_frames')
    if n_frames is not None and n_frames.value > 0 and not inputs.get('label'):
        return '`a_posteriori_frames` > 0 needs the `label` inputs (ilmlff.label at the reference level of theory)'
    return None


class ValidationWorkChain(ProtocolMixin, WorkChain):
    """A model's NVT MD at the state point of a reference AIMD, compared with it; a posteriori force errors.

    Build it with :meth:`get_builder_from_protocol`.
    """

    _protocol_file = 'validate.yaml'

    _md_process = MDBaseWorkChain
    _label_process = LabelWorkChain
    _evaluate_process = EvaluateCalculation

    @classmethod
    def define(cls, spec):
        """Define the process specification."""
        super().define(spec)
        spec.input_namespace(
            'models',
            valid_type=MLFFModelData,
            dynamic=True,
            help='The model, or a committee (the first key in natural order drives the MD; all give the deviation).',
        )
        spec.input(
            'reference',
            valid_type=FramesData,
            help='The reference AIMD (the `trajectory` of ilmlff.aimd): one box, time_fs, molecule indices, one level '
            'of theory and temperature. The model runs from its last frame at its temperature.',
        )
        spec.input(
            'training_set',
            valid_type=FramesData,
            required=False,
            help="The models' training set: the reference must be of one of its levels of theory and compositions.",
        )
        spec.expose_inputs(
            MDBaseWorkChain,
            namespace='md',
            exclude=('md.structure', 'md.frame_index', 'md.models', 'md.parameters'),
            namespace_options={
                'help': 'ilmlff.md.base inputs of the model MD (structure, models, ensemble and temperature are set '
                'from the reference); `max_guard_restarts` 0 reports the first guard trip as it is.'
            },
        )
        spec.input(
            'md.md.parameters',
            valid_type=orm.Dict,
            help='ilmlff.md parameters of the model MD (steps, timestep_fs, thermostat, traj_every, ...); ensemble '
            "(nvt) and temperature_K (the reference's) are set by the work chain and may be left out.",
        )
        spec.input(
            'analysis',
            valid_type=orm.Dict,
            default=lambda: orm.Dict({}),
            help='discard_ps (of the model run), rdf_bins, rdf_r_max_A, rdf_pairs (default: centres of mass and '
            'central atoms of every pair of species).',
        )
        spec.input(
            'a_posteriori_frames',
            valid_type=orm.Int,
            default=lambda: orm.Int(0),
            help='Frames drawn from the model MD and labelled at the reference level of theory (0: none).',
        )
        spec.expose_inputs(
            LabelWorkChain,
            namespace='label',
            exclude=('frames',),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'ilmlff.label inputs for the a posteriori frames (the reference level of theory).',
            },
        )
        spec.input(
            'test_force_rmse',
            valid_type=orm.Float,
            required=False,
            help="The driving model's force RMSE on the test set [meV/Å]: the a posteriori RMSE is divided by it.",
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            cls.run_md,
            cls.inspect_md,
            cls.compare_structure,
            if_(cls.should_run_a_posteriori)(
                cls.run_labelling,
                cls.inspect_labelling,
                cls.run_evaluation,
                cls.inspect_evaluation,
            ),
            cls.results,
        )
        spec.output(
            'validation',
            valid_type=orm.Dict,
            help='md_intact, the state point, the MD length, the structure summary (RDF peak shifts and height '
            'ratios, distances, bond and angle shifts, within_targets) and the a posteriori errors.',
        )
        spec.output('trajectory', valid_type=orm.Data, required=False, help="The model's NVT trajectory.")
        spec.output('structure', valid_type=orm.Dict, required=False, help='The full structure comparison.')
        spec.output('rdf', valid_type=orm.ArrayData, required=False, help='g(r) of the model and the reference.')
        spec.output('figure', valid_type=orm.SinglefileData, required=False, help='PNG: model g(r) over reference.')
        spec.output('a_posteriori', valid_type=FramesData, required=False, help='The labelled a posteriori frames.')
        spec.output('a_posteriori_metrics', valid_type=orm.Dict, required=False, help='ilmlff.evaluate metrics.')
        spec.output('calibration', valid_type=orm.Dict, required=False, help='Committee deviation vs true error.')
        spec.output('calibration_plot', valid_type=orm.SinglefileData, required=False, help='PNG of the above.')
        spec.exit_code(401, 'ERROR_SUB_PROCESS_FAILED_MD', message='The model MD gave no trajectory: {message}')
        spec.exit_code(
            402, 'ERROR_SUB_PROCESS_FAILED_LABEL', message='No a posteriori frame could be labelled: {message}'
        )
        spec.exit_code(
            403, 'ERROR_SUB_PROCESS_FAILED_EVALUATE', message='The a posteriori evaluation failed: {message}'
        )
        spec.exit_code(320, 'ERROR_COMPARISON_FAILED', message='The structure comparison failed: {message}')
        spec.exit_code(
            510,
            'ERROR_MD_NOT_INTACT',
            message='The model MD tripped a guard after {time_ps} ps ({message}): no structure to compare; '
            '`validation` says when and why.',
        )

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        label_code: orm.AbstractCode,
        elements: t.Iterable[str],
        temperature_K: float,
        options: t.Mapping | None = None,
    ) -> dict:
        """The protocol inputs as plain values (no models, reference or codes in them).

        ``md`` is :meth:`MDBaseWorkChain.get_plain_protocol_inputs` of the same protocol with this protocol's ``md``
        merged over it, NVT at ``temperature_K``; ``label`` is :meth:`LabelWorkChain.get_plain_protocol_inputs` of
        ``label.protocol`` (default: this protocol's name) for ``elements``.

        :raises ValueError: an unknown protocol or override key (naming its path).
        """
        protocol = cls.check_protocol(protocol)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        md = recursive_merge(
            inputs.get('md') or {}, {'md': {'parameters': {'ensemble': 'nvt', 'temperature_K': float(temperature_K)}}}
        )
        inputs['md'] = MDBaseWorkChain.get_plain_protocol_inputs(protocol, md, options=options)
        label = dict(inputs.get('label') or {})
        label_protocol = label.pop('protocol', None) or protocol
        try:
            inputs['label'] = LabelWorkChain.get_plain_protocol_inputs(
                label_protocol, label or None, code=label_code, elements=elements, options=dict(options or {}) or None
            )
        except UnknownOverrideError as exception:
            raise exception.prefixed('label') from None
        return inputs

    @classmethod
    def get_builder_from_protocol(
        cls,
        codes: t.Mapping[str, orm.AbstractCode],
        models: t.Any,
        reference: FramesData,
        *,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        training_set: FramesData | None = None,
        test_force_rmse: float | None = None,
    ):
        """A builder filled from the YAML protocol (``fast``, ``balanced``, ``stringent``).

        :param codes: ``{'runner': ilmlff-runner code, 'label': the reference's labelling code (CP2K or pw.x)}``.
        :param models: an ``MLFFModelData``, a list (model 0 drives) or a ``{key: model}`` mapping.
        :param reference: the reference AIMD frames (the ``trajectory`` of ``ilmlff.aimd``); its temperature is the
            MD's.
        :param overrides: nested mapping over the protocol (e.g. ``{'md': {'md': {'parameters': {'steps': 5000}}},
            'a_posteriori_frames': 10, 'label': {'protocol': 'fast-dft'}}``).
        :param options: ``metadata.options`` of every job.
        :param training_set: the models' training set (checks the reference's level of theory and composition).
        :param test_force_rmse: the driving model's test-set force RMSE [meV/Å].
        :raises ValueError: missing codes, a code of another plugin, an unknown protocol or override key, a reference
            that is not one AIMD run.
        """
        missing = sorted({'runner', 'label'} - set(codes or {}))
        if missing:
            raise ValueError(f'`codes`: missing {missing}; give {{"runner": ..., "label": ...}}')
        message = check_code_plugin(codes['runner'], 'ilmlff.md', 'codes.runner') or check_reference(reference)
        if message:
            raise ValueError(message)
        inputs = cls.get_plain_protocol_inputs(
            protocol,
            overrides,
            label_code=codes['label'],
            elements=reference.elements,
            temperature_K=reference_temperature_of(reference),
            options=options,
        )
        builder = cls.get_builder()
        builder.models = models_namespace(models)
        builder.reference = reference
        md = MDBaseWorkChain.plain_inputs_to_nodes(codes['runner'], inputs['md'])
        builder.md = md
        builder.label = LabelWorkChain.plain_inputs_to_nodes(
            codes['label'], inputs['label'], elements=reference.elements
        )
        builder.analysis = orm.Dict(inputs.get('analysis') or {})
        builder.a_posteriori_frames = orm.Int(inputs['a_posteriori_frames'])
        if training_set is not None:
            builder.training_set = training_set
        if test_force_rmse is not None:
            builder.test_force_rmse = orm.Float(test_force_rmse)
        return builder

    def setup(self):
        """The state point of the reference and the record of the validation."""
        self.ctx.temperature = reference_temperature_of(self.inputs.reference)
        self.ctx.driver = sorted(self.inputs.models)[0]
        self.ctx.record = {
            'temperature_K': self.ctx.temperature,
            'reference_uuid': self.inputs.reference.uuid,
            'reference_frames': len(self.inputs.reference),
            'level_of_theory': self.inputs.reference.levels_of_theory[0],
            'composition': self.inputs.reference.composition_keys[0],
            'driver': self.ctx.driver,
            'committee_size': len(self.inputs.models),
            'test_force_rmse': self.inputs.test_force_rmse.value if 'test_force_rmse' in self.inputs else None,
        }
        self.ctx.parts = {}

    def run_md(self):
        """NVT from the reference's last frame at its temperature."""
        inputs = AttributeDict(self.exposed_inputs(MDBaseWorkChain, namespace='md'))
        md = AttributeDict(inputs.md)
        md.structure = self.inputs.reference
        md.models = dict(self.inputs.models)
        parameters = md.parameters.get_dict() if 'parameters' in md else {}
        parameters.update({'ensemble': 'nvt', 'temperature_K': self.ctx.temperature})
        md.parameters = orm.Dict(parameters)
        inputs.md = md
        inputs.metadata = {'call_link_label': 'md'}
        node = self.submit(self._md_process, **inputs)
        self.report(
            f'NVT of the model at {self.ctx.temperature:g} K from the reference box: {node.process_label}<{node.pk}>'
        )
        return ToContext(md=node)

    def inspect_md(self):
        """A trajectory is needed; a guard trip is recorded and ends the validation with 510."""
        node = self.ctx.md
        if 'trajectory' not in node.outputs:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_MD.format(
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
            )
        trajectory = node.outputs.trajectory
        self.out('trajectory', trajectory)
        self.ctx.record['md_ps'] = trajectory.simulated_ps
        self.ctx.record['md_intact'] = node.is_finished_ok
        if not node.is_finished_ok:
            # the last MD job's message names the guard, the bond or value and the step (the work chain's is generic)
            jobs = sorted((n for n in node.called if isinstance(n, orm.CalcJobNode)), key=lambda n: n.ctime)
            message = (jobs[-1].exit_message if jobs and jobs[-1].exit_message else None) or node.exit_message
            self.ctx.record.update(md_exit_status=node.exit_status, md_exit_message=message)
            self._store_record()
            return self.exit_codes.ERROR_MD_NOT_INTACT.format(
                time_ps=f'{self.ctx.record["md_ps"]:.3g}', message=f'exit {node.exit_status}: {message}'
            )
        return None

    def compare_structure(self):
        """RDFs, bonds and angles of the model MD against the reference AIMD."""
        try:
            reference = aimd_trajectory(self.inputs.reference, metadata={'call_link_label': 'reference_trajectory'})
            outputs = compare_with_reference(
                self.ctx.md.outputs.trajectory,
                reference,
                self.inputs.analysis,
                metadata={'call_link_label': 'compare_with_reference'},
            )
        except Exception as exception:  # the calcfunction excepted: said in the exit message
            self._store_record()
            return self.exit_codes.ERROR_COMPARISON_FAILED.format(message=str(exception))
        for name in ('structure', 'rdf', 'figure'):
            self.out(name, outputs[name])
        self.ctx.parts['structure'] = outputs['structure']
        structure = outputs['structure'].get_dict()
        self.report(
            f'structure: largest RDF peak shift {structure["max_abs_peak_shift_A"]} Å, height deviation '
            f'{structure["max_abs_height_deviation"]}, within targets {structure["within_targets"]}'
        )
        return None

    def should_run_a_posteriori(self) -> bool:
        """Whether frames from the model MD are to be labelled."""
        return self.inputs.a_posteriori_frames.value > 0

    def run_labelling(self):
        """Draw frames from the model MD and label them at the reference level of theory."""
        settings = {
            'n_frames': self.inputs.a_posteriori_frames.value,
            'discard_ps': self.inputs.analysis.get_dict().get('discard_ps', 0.0),
        }
        frames = a_posteriori_frames(
            self.ctx.md.outputs.trajectory, orm.Dict(settings), metadata={'call_link_label': 'a_posteriori_frames'}
        )
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.frames = frames
        inputs.metadata = {'call_link_label': 'label_a_posteriori'}
        node = self.submit(self._label_process, **inputs)
        self.report(f'labelling {len(frames)} frames of the model MD: {node.process_label}<{node.pk}>')
        return ToContext(labelling=node)

    def inspect_labelling(self):
        """Keep what was labelled (at least one frame)."""
        node = self.ctx.labelling
        labelled = node.outputs.labelled if 'labelled' in node.outputs else None
        if labelled is None or len(labelled) == 0:
            message = f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
            self.ctx.record['a_posteriori_problem'] = f'no frame of the model MD could be labelled: {message}'
            self._store_record()
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_LABEL.format(message=message)
        level = self.inputs.reference.levels_of_theory[0]
        if set(labelled.levels_of_theory.tolist()) != {level}:
            self._store_record()
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_LABEL.format(
                message='the a posteriori frames were labelled at another level of theory than the reference: give '
                '`label` inputs of the same level'
            )
        self.ctx.labelled = labelled
        self.out('a_posteriori', labelled)
        return None

    def run_evaluation(self):
        """Evaluate the committee on the labelled a posteriori frames."""
        md = self.exposed_inputs(MDBaseWorkChain, namespace='md')['md']
        given = dict((md.get('metadata') or {}).get('options') or {})
        keys = ('resources', 'max_wallclock_seconds', 'environment_variables', 'withmpi', 'queue_name', 'account')
        options = {key: given[key] for key in keys if key in given}
        node = self.submit(
            self._evaluate_process,
            code=md['code'],
            frames=self.ctx.labelled,
            models=dict(self.inputs.models),
            parameters=orm.Dict({'plot': False}),
            metadata={'options': options, 'call_link_label': 'evaluate_a_posteriori'},
        )
        return ToContext(evaluation=node)

    def inspect_evaluation(self):
        """The a posteriori force RMSE, its ratio to the test-set RMSE, and the committee calibration."""
        node = self.ctx.evaluation
        if not node.is_finished_ok or 'metrics' not in node.outputs:
            self._store_record()
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_EVALUATE.format(
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
            )
        self.out('a_posteriori_metrics', node.outputs.metrics)
        self.ctx.parts['metrics'] = node.outputs.metrics
        if len(self.inputs.models) > 1 and 'predictions' in node.outputs:
            try:
                outputs = calibrate_committee(
                    frames=self.ctx.labelled,
                    predictions=node.outputs.predictions,
                    settings=orm.Dict({'iteration': 0}),
                    metadata={'call_link_label': 'calibrate_committee'},
                )
            except Exception as exception:  # calibration is diagnostic: never fatal
                self.report(f'calibration failed: {exception}')
            else:
                self.out('calibration', outputs['calibration'])
                self.out('calibration_plot', outputs['calibration_plot'])
                self.ctx.parts['calibration'] = outputs['calibration']
        return None

    def _store_record(self) -> None:
        validation = collect_validation(
            orm.Dict(finite_or_none(self.ctx.record)), **self.ctx.parts, metadata={'call_link_label': 'validation'}
        )
        self.out('validation', validation)
        return validation

    def results(self):
        """Attach the ``validation`` record and report the a posteriori error."""
        validation = self._store_record().get_dict()
        a_posteriori = validation.get('a_posteriori')
        if a_posteriori:
            ratio = a_posteriori.get('ratio_to_test')
            self.report(
                f'a posteriori: force RMSE {a_posteriori["force_rmse"]} meV/Å on {a_posteriori["n_frames"]} frames of '
                'its own MD' + (f', {ratio:.2f} x the test-set RMSE' if ratio is not None else '')
            )
