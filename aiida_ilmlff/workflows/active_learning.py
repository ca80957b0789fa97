"""``ilmlff.active_learning``: explore with MLFF MD, select by committee deviation, label, retrain until converged.

The loop of DP-GEN / dpgen2, with every step a node in the provenance graph. Iteration ``k`` (counted from 1):

1. **train** a committee (``ilmlff.train``, at least 2 members) on the current training set, unless the
   committee of the previous step was already trained on exactly that set;
2. **explore**: one ``ilmlff.md.base`` run per starting structure x temperature x pressure of the current
   stage, the first model driving and the others giving the force deviation of every saved frame;
3. **select** (:func:`~aiida_ilmlff.calculations.functions.active_learning.select_candidates`): accurate
   (``max_devi_f < f_lo``), candidate (``f_lo <= max_devi_f < f_hi``) and failed (``>= f_hi``) frames; at
   most ``task_max`` candidates survive the minimum-distance and near-duplicate filters; with
   ``fallback_to_failed``, when no frame lies between the levels and the stage has not converged, the failed
   frames of lowest deviation are picked instead (a first model for which every explored frame failed), and
   when an exploration MD stopped early (a guard trip) with every saved frame accurate, its last frames;
4. **label** them (``ilmlff.label``): new frames of origin ``AL`` with the iteration number;
5. **calibrate**: the committee is evaluated (``ilmlff.evaluate``) on the labelled candidates; the
   correlation of its deviation with its true force error is stored and plotted;
6. **merge** the new frames into the cumulative training set (``merge_frames``).

A stage is converged when its accurate ratio reaches ``conv_accuracy`` and none of its MD runs stopped early
(a committee that handled the few frames before its MD broke has not converged); the loop then moves to the next
stage without labelling (the committee is unchanged, so it is not retrained), and is converged after the
last stage. It stops at ``max_iterations`` (counted over continued runs too); with ``final_training`` the
committee is then trained once more on the final set, so that ``models`` were trained on ``frames``.

Failures: a labelling work chain that labels some frames but fails (too many rejected) is reported and the
iteration goes on with what was labelled; when no selected frame could be labelled the work chain stops
with 403 (outputs attached). No candidate left while not converged (and no failed frame to fall back on, or
``fallback_to_failed`` off) stops with 320: the trust levels need changing.

Trust levels: in eV/Å (``selection.trust_levels`` ``absolute``, DP-GEN's 0.05 / 0.15), or ``relative``: multiples
of the mean validation force RMSE of the run's first committee, resolved once after its training and kept for
the whole run (and its continuations), so that the accurate ratios of all iterations are measured against one
level in eV/Å.

Continuation: give a previous run's ``frames`` as ``frames``, its ``models`` as ``continuation.models`` and
its ``iterations`` as ``continuation.iterations`` (or call :meth:`ActiveLearningWorkChain.
get_builder_continuation`); the new run starts at the next iteration and stage, reuses the committee when
it was trained on those frames, and redoes nothing.
"""

from __future__ import annotations

import copy
import typing as t

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_, while_

from aiida_ilmlff.calculations.evaluate import EvaluateCalculation
from aiida_ilmlff.calculations.functions.active_learning import (
    calibrate_committee,
    collect_iterations,
    select_candidates,
)
from aiida_ilmlff.calculations.functions.frames import merge_frames
from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.runner.contract import validate_parameters
from aiida_ilmlff.sampling.selection import F_HI, F_LO, relative_trust_levels
from aiida_ilmlff.sampling.split import train_valid_indices
from aiida_ilmlff.workflows.label import LabelWorkChain
from aiida_ilmlff.workflows.md import MDBaseWorkChain, numbered_namespace
from aiida_ilmlff.workflows.protocols import ProtocolMixin, UnknownOverrideError, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import check_code_plugin, check_liquid_temperature
from aiida_ilmlff.workflows.protocols.plain import is_set_by_parent, to_plain
from aiida_ilmlff.workflows.train import TrainWorkChain

__all__ = (
    'ActiveLearningWorkChain',
    'check_inputs',
    'normalise_stage',
    'reference_temperature',
    'resolve_stage_temperatures',
    'validate_inputs',
)

#: Values of ``selection.trust_levels``: what the numbers ``f_lo`` and ``f_hi`` are.
TRUST_LEVELS = {
    'absolute': 'eV/Å',
    'relative': "multiples of the first committee's mean validation force RMSE",
}

_STAGE_KEYS = {
    'ensemble': 'nve, nvt, npt or npt_berendsen (default nvt)',
    'temperatures_K': 'list of target temperatures [K] (or `temperature_K`, one number)',
    'temperature_offsets_K': 'list of temperatures relative to the reference temperature [K] (protocols only: '
    'get_builder_from_protocol turns them into `temperatures_K`)',
    'pressures_bar': 'list of target pressures [bar] for npt (or `pressure_bar`, one number)',
    'steps': 'MD steps of every run of the stage (required, > 0)',
    'structures': 'keys of `exploration.structures` to start from (default: all)',
    'parameters': 'other ilmlff.md parameters of this stage (timestep_fs, traj_every, ...)',
}


# --------------------------------------------------------------------------------------------- validation


def normalise_stage(stage: t.Mapping) -> dict:
    """A stage with list-valued ``temperatures_K`` / ``pressures_bar`` (scalar ``temperature_K`` accepted).

    :raises ValueError: for unknown keys, a missing or non-positive ``steps``, or bad temperatures.
    """
    stage = dict(stage)
    unknown = sorted(set(stage) - set(_STAGE_KEYS) - {'temperature_K', 'pressure_bar'})
    if unknown:
        raise ValueError(f'unknown key(s) {unknown}; known: {sorted(_STAGE_KEYS)}')
    if 'temperature_offsets_K' in stage:
        raise ValueError(
            '`temperature_offsets_K` is only resolved by get_builder_from_protocol (offsets from the reference '
            'temperature); give absolute `temperatures_K` here'
        )
    steps = stage.get('steps')
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f'`steps` is {steps!r}: every stage needs a positive integer number of MD steps')
    for single, plural in (('temperature_K', 'temperatures_K'), ('pressure_bar', 'pressures_bar')):
        if single in stage:
            stage.setdefault(plural, [stage.pop(single)])
        if plural in stage and not isinstance(stage[plural], (list, tuple)):
            stage[plural] = [stage[plural]]
    stage.setdefault('ensemble', 'nvt')
    if stage['ensemble'] != 'nve':
        temperatures = stage.get('temperatures_K') or []
        if not temperatures or any(not isinstance(v, (int, float)) or v <= 0 for v in temperatures):
            raise ValueError(f'`temperatures_K` is {temperatures!r}: give positive temperatures in K')
    stage.setdefault('temperatures_K', [None])
    if stage['ensemble'].startswith('npt'):
        if not stage.get('pressures_bar'):
            raise ValueError(f'ensemble `{stage["ensemble"]}` needs `pressures_bar`')
    else:
        stage['pressures_bar'] = [None]
    stage.setdefault('parameters', {})
    return stage


def resolve_stage_temperatures(stages: t.Sequence[t.Mapping], temperature: float | None) -> list[dict]:
    """The stages with every ``temperature_offsets_K`` turned into absolute ``temperatures_K``.

    The protocols give their exploration temperatures relative to the system's temperature (``T + 0``,
    ``T + 50 K``, ...), so that one protocol fits PYR14BF4 at 450 K and PYR14TFSI at 298 K alike: dpgen's practice of
    exploring at and above the target temperature, to reach configurations the target MD will visit.

    :param stages: stages as in ``exploration.stages``; those without ``temperature_offsets_K`` are kept as they are.
    :param temperature: the reference temperature [K] (the pipeline's or the data set's).
    :returns: new stage dicts.
    :raises ValueError: if a stage has both offsets and ``temperatures_K``, offsets that are not numbers, or offsets
        but no reference ``temperature``.
    """
    resolved = []
    for index, raw in enumerate(stages):
        stage = dict(raw)
        if 'temperature_offsets_K' in stage:
            offsets = stage.pop('temperature_offsets_K')
            offsets = offsets if isinstance(offsets, (list, tuple)) else [offsets]
            if 'temperatures_K' in stage or 'temperature_K' in stage:
                raise ValueError(
                    f'`exploration.stages[{index}]`: give `temperature_offsets_K` or `temperatures_K`, not both'
                )
            if not offsets or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in offsets):
                raise ValueError(
                    f'`exploration.stages[{index}].temperature_offsets_K` is {offsets!r}: give numbers in K'
                )
            if temperature is None:
                raise ValueError(
                    f'`exploration.stages[{index}]` gives temperatures relative to the reference temperature: pass '
                    '`temperature` (K), or frames that record their MD temperature'
                )
            stage['temperatures_K'] = [float(temperature) + float(offset) for offset in offsets]
        resolved.append(stage)
    return resolved


def reference_temperature(frames: FramesData) -> float | None:
    """The temperature [K] the frames were sampled at: the median of the finite per-frame ``temperature`` of the
    ``EQ`` frames (of all frames if none is ``EQ``), ``None`` if no frame records one."""
    temperatures = np.asarray(frames.temperatures, dtype=float)
    eq = np.asarray(frames.origins) == 'EQ'
    for chosen in (temperatures[eq], temperatures):
        finite = chosen[np.isfinite(chosen)]
        if finite.size:
            return float(np.median(finite))
    return None


def stage_runs(stage: dict, structures: t.Sequence[str]) -> list[dict]:
    """The MD runs of a normalised stage: one per structure x temperature x pressure, in that order."""
    keys = stage.get('structures') or sorted(structures)
    return [
        {'structure': key, 'temperature_K': temperature, 'pressure_bar': pressure}
        for key in keys
        for temperature in stage['temperatures_K']
        for pressure in stage['pressures_bar']
    ]


def md_parameters(base: t.Mapping, stage: dict, run: dict, seed: int) -> dict:
    """The ``ilmlff.md`` parameters of one exploration run: ``base`` < stage ``parameters`` < the run's values."""
    parameters = recursive_merge(dict(base), stage.get('parameters') or {})
    parameters['ensemble'] = stage['ensemble']
    parameters['steps'] = int(stage['steps'])
    if run['temperature_K'] is not None:
        parameters['temperature_K'] = float(run['temperature_K'])
    if run['pressure_bar'] is not None:
        parameters['pressure_bar'] = float(run['pressure_bar'])
    parameters['seed'] = int(seed)
    return parameters


def check_inputs(values: t.Mapping, context: t.Mapping | None = None) -> str | None:
    """Cross-checks as plain values: trust levels, committee size, exploration stages (temperatures within
    :data:`~aiida_ilmlff.workflows.protocols.checks.LIQUID_TEMPERATURE_K`), continuation.

    :param values: the inputs (nodes become plain values; frames, structures and models stay nodes).
    :param context: what a parent sets at run time: ``frames`` (or
        :data:`~aiida_ilmlff.workflows.protocols.plain.SET_BY_PARENT`) and ``structures`` (the keys of
        ``exploration.structures`` it will give).
    """
    inputs = {**to_plain(values), **(context or {})}
    selection = inputs.get('selection') or {}
    f_lo = selection.get('f_lo', F_LO)
    f_hi = selection.get('f_hi', F_HI)
    mode = selection.get('trust_levels', 'absolute')
    if mode not in TRUST_LEVELS:
        return f'`selection.trust_levels` must be one of {sorted(TRUST_LEVELS)}, got {mode!r}'
    if mode == 'relative' and not 0 < f_lo < f_hi:
        return (
            f'`selection.f_lo` ({f_lo:g}) and `selection.f_hi` ({f_hi:g}) are relative trust levels (multiples of '
            "the committee's validation force RMSE): they must satisfy 0 < f_lo < f_hi (e.g. 1.5 and 5)"
        )
    if not 0 <= f_lo < f_hi:
        return (
            f'`selection.f_lo` ({f_lo:g} eV/Å) must be >= 0 and below `selection.f_hi` ({f_hi:g} eV/Å): frames with '
            'a max force deviation between the two are the candidates; lower f_lo or raise f_hi (dpgen: 0.05 / 0.15)'
        )
    train = inputs.get('train') or {}
    size = train.get('committee_size', 4)
    if size < 2:
        return (
            f'`train.committee_size` is {size}: active learning needs a committee of at least 2 models (their force '
            'deviation is the uncertainty that selects frames); set committee_size >= 2 (4 is usual)'
        )
    frames = inputs.get('frames')
    if frames is not None and not is_set_by_parent(frames):
        if not frames.is_labelled:
            return '`frames`: every initial frame needs an energy and forces (label them with ilmlff.label first)'
        fraction = train.get('valid_fraction', 0.1)
        try:
            train_valid_indices(frames.origins, fraction, 0, min_frames=2)
        except ValueError as exception:
            return f'`frames` cannot be split for training: {exception}'
    exploration = inputs.get('exploration') or {}
    if 'structures' in inputs:
        structures = sorted(inputs['structures'])
    else:
        structures = sorted(exploration.get('structures') or {})
    if not structures:
        return '`exploration.structures`: give at least one starting structure'
    stages = exploration.get('stages') or []
    if not stages:
        return '`exploration.stages`: give at least one stage, e.g. [{"ensemble": "nvt", "temperatures_K": [450], ...}]'
    base = exploration.get('parameters') or {}
    for index, raw in enumerate(stages):
        if not isinstance(raw, dict):
            return f'`exploration.stages[{index}]` must be a dict, got {type(raw).__name__}'
        try:
            stage = normalise_stage(raw)
        except ValueError as exception:
            return f'`exploration.stages[{index}]`: {exception}'
        for temperature in stage.get('temperatures_K') or []:
            message = check_liquid_temperature(temperature, f'exploration.stages[{index}].temperatures_K')
            if message:
                return message
        missing = sorted(set(stage.get('structures') or []) - set(structures))
        if missing:
            return f'`exploration.stages[{index}].structures`: {missing} not in `exploration.structures` {structures}'
        for run in stage_runs(stage, structures):
            errors = validate_parameters(md_parameters(base, stage, run, 0))
            if errors:
                return f'`exploration.stages[{index}]` gives invalid MD parameters: ' + '; '.join(errors)
    checks = (
        ('conv_accuracy', lambda v: 0 < v <= 1, 'must be in (0, 1]'),
        ('max_iterations', lambda v: v >= 1, 'must be >= 1'),
    )
    for name, check, message in checks:
        if name in inputs and not check(inputs[name]):
            return f'`{name}` {message}, got {inputs[name]}'
    if 'task_max' in selection and selection['task_max'] < 1:
        return f'`selection.task_max` must be >= 1, got {selection["task_max"]}'
    rate = selection.get('adaptive_lo_rate')
    if rate is not None and not 0 < rate < 1:
        return f'`selection.adaptive_lo_rate` must be in (0, 1), got {rate}'
    continuation = inputs.get('continuation') or {}
    if continuation.get('models') and 'iterations' not in continuation:
        return "`continuation.models` needs `continuation.iterations` (the previous run's `iterations` output)"
    if continuation.get('models') and len(continuation['models']) < 2:
        return '`continuation.models`: a committee needs at least 2 models'
    return None


def validate_inputs(inputs: t.Mapping, _: t.Any = None) -> str | None:
    """Port validator of the whole namespace: :func:`check_inputs`."""
    return check_inputs(inputs)


# --------------------------------------------------------------------------------------------- work chain


class ActiveLearningWorkChain(ProtocolMixin, WorkChain):
    """Concurrent learning of an MLFF committee (DP-GEN semantics): train, explore, select, label, repeat.

    See the module docstring for the loop and ``docs/active_learning.md`` for trust levels, protocols and the
    measured costs. Build it with :meth:`get_builder_from_protocol`; continue a run with
    :meth:`get_builder_continuation`.
    """

    _protocol_file = 'active_learning.yaml'
    #: The processes the loop runs (class attributes so that a subclass may swap one in tests).
    _train_process = TrainWorkChain
    _md_process = MDBaseWorkChain
    _label_process = LabelWorkChain
    _evaluate_process = EvaluateCalculation

    @classmethod
    def define(cls, spec):
        """Define the process specification."""
        super().define(spec)
        spec.input('frames', valid_type=FramesData, help='The initial labelled training set (energy eV, forces eV/Å).')
        spec.expose_inputs(
            TrainWorkChain,
            namespace='train',
            exclude=('train', 'valid', 'test'),
            namespace_options={'help': 'Inputs of ilmlff.train (the frames excluded); committee_size >= 2.'},
        )
        spec.expose_inputs(
            LabelWorkChain,
            namespace='label',
            exclude=('frames',),
            namespace_options={'help': 'Inputs of ilmlff.label for the selected frames (the frames excluded).'},
        )
        spec.input_namespace('exploration', help='The exploration MD: runner code, starting structures, stages.')
        spec.input('exploration.code', valid_type=orm.AbstractCode, help='The `ilmlff-runner` code (MD, evaluate).')
        spec.input_namespace(
            'exploration.structures',
            valid_type=(orm.StructureData, FramesData),
            dynamic=True,
            help='Starting structures by key (StructureData, or FramesData: its last frame).',
        )
        spec.input(
            'exploration.stages',
            valid_type=orm.List,
            help='Exploration schedule: a list of stages, each a dict with '
            + '; '.join(f'`{k}`: {v}' for k, v in _STAGE_KEYS.items())
            + '. A stage is explored until its accurate ratio reaches `conv_accuracy`, then the next one.',
        )
        spec.input(
            'exploration.parameters',
            valid_type=orm.Dict,
            default=lambda: orm.Dict({}),
            help='ilmlff.md parameters shared by every run (thermostat, timestep_fs, traj_every, ...); each stage '
            'sets ensemble, steps, temperature_K, pressure_bar, and the seed changes with iteration and run.',
        )
        spec.input('exploration.settings', valid_type=orm.Dict, required=False, help='ilmlff.md `settings`.')
        spec.input(
            'exploration.options',
            valid_type=orm.Dict,
            default=lambda: orm.Dict({'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}),
            help='`metadata.options` of the MD and evaluation jobs.',
        )
        spec.input(
            'exploration.max_guard_restarts',
            valid_type=orm.Int,
            default=lambda: orm.Int(1),
            help='Restarts with a halved time step allowed per MD run when a guard trips (ilmlff.md.base).',
        )
        spec.input_namespace('selection', help='Trust levels and filters of the frame selection.')
        spec.input(
            'selection.f_lo',
            valid_type=orm.Float,
            default=lambda: orm.Float(F_LO),
            help='Lower trust level on the max force deviation [eV/Å, or relative: see `trust_levels`]: below it a '
            'frame is accurate.',
        )
        spec.input(
            'selection.f_hi',
            valid_type=orm.Float,
            default=lambda: orm.Float(F_HI),
            help='Upper trust level [eV/Å, or relative: see `trust_levels`]: at or above it a frame has failed (not '
            'labelled, unless `fallback_to_failed` picks it).',
        )
        spec.input(
            'selection.trust_levels',
            valid_type=orm.Str,
            default=lambda: orm.Str('absolute'),
            help='What `f_lo` and `f_hi` are: `absolute` (eV/Å) or `relative` (multiples of the mean validation force '
            'RMSE of the first committee of the run, resolved after its training and kept for the whole run).',
        )
        spec.input(
            'selection.fallback_to_failed',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='When no frame lies between the trust levels and the stage has not converged, label the failed '
            'frames of lowest deviation (same filters) instead of stopping with 320; when no frame failed either '
            'but an exploration MD stopped early, the last frames before it stopped.',
        )
        spec.input(
            'selection.adaptive_lo_rate',
            valid_type=orm.Float,
            required=False,
            help='Adaptive lower level for the selection: lower f_lo to the deviation quantile that makes this '
            'fraction of the non-failed frames candidates (accuracy and convergence still use f_lo).',
        )
        spec.input(
            'selection.task_max',
            valid_type=orm.Int,
            default=lambda: orm.Int(10),
            help='Most frames labelled per iteration (dpgen fp_task_max).',
        )
        spec.input(
            'selection.min_distance',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.7),
            help='Candidates with two atoms closer than this [Å] are dropped.',
        )
        spec.input(
            'selection.duplicate_rmsd',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.02),
            help='A candidate within this RMSD [Å] of an already picked frame of the same run is a near-duplicate.',
        )
        spec.input('selection.seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seed of the random pick.')
        spec.input(
            'conv_accuracy',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.9),
            help='A stage is converged when the fraction of accurate frames reaches this value.',
        )
        spec.input(
            'max_iterations',
            valid_type=orm.Int,
            default=lambda: orm.Int(5),
            help='Last iteration number (continued runs count the iterations of the runs before them).',
        )
        spec.input(
            'calibrate',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='Evaluate the committee on the labelled candidates: deviation vs true force error, per iteration.',
        )
        spec.input(
            'final_training',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='When the loop stops with new labels the committee has not seen, train it once more on the final '
            'set so that `models` were trained on `frames`.',
        )
        spec.input_namespace('continuation', required=False, help='Continue a previous run (its outputs).')
        spec.input_namespace(
            'continuation.models',
            valid_type=MLFFModelData,
            dynamic=True,
            required=False,
            help="The previous run's `models`; reused when they were trained on `frames`.",
        )
        spec.input(
            'continuation.iterations',
            valid_type=orm.Dict,
            required=False,
            help="The previous run's `iterations`: the iteration counter, stage and records continue from it.",
        )
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            while_(cls.should_run_iteration)(
                cls.start_iteration,
                if_(cls.needs_training)(cls.run_training, cls.inspect_training),
                cls.run_exploration,
                cls.inspect_exploration,
                if_(cls.should_label)(
                    cls.run_labelling,
                    cls.inspect_labelling,
                    if_(cls.should_calibrate)(cls.run_calibration, cls.inspect_calibration),
                    cls.update_training_set,
                ),
                cls.finish_iteration,
            ),
            if_(cls.needs_final_training)(cls.run_training, cls.inspect_training),
            cls.results,
        )

        spec.output('frames', valid_type=FramesData, help='The final cumulative labelled training set.')
        spec.output_namespace('models', valid_type=MLFFModelData, dynamic=True, help='The final committee.')
        spec.output(
            'iterations',
            valid_type=orm.Dict,
            help='Per-iteration counts and ratios (accurate/candidate/failed, selected, labelled, training-set '
            'size, calibration), `converged`, `status`, `n_iterations`, and the state a continuation needs.',
        )
        spec.output_namespace(
            'iteration',
            valid_type=orm.Data,
            dynamic=True,
            required=False,
            help='Per iteration `iter_NNN`: models, trajectories, deviations, statistics, selected, labelled, '
            'frames (cumulative set), calibration, calibration_data, calibration_plot.',
        )

        spec.exit_code(
            401,
            'ERROR_SUB_PROCESS_FAILED_TRAINING',
            message='Training of iteration {iteration} gave no usable committee: {detail}',
        )
        spec.exit_code(
            402,
            'ERROR_SUB_PROCESS_FAILED_EXPLORATION',
            message='No exploration MD of iteration {iteration} gave a trajectory with committee deviations: {detail}',
        )
        spec.exit_code(
            403,
            'ERROR_SUB_PROCESS_FAILED_LABEL',
            message='No selected frame of iteration {iteration} could be labelled ({detail}); outputs are those '
            'before the iteration.',
        )
        spec.exit_code(310, 'ERROR_SELECTION_FAILED', message='The selection of iteration {iteration} failed: {detail}')
        spec.exit_code(
            360, 'ERROR_MERGE_FAILED', message='The new frames of iteration {iteration} could not be merged: {detail}'
        )
        spec.exit_code(
            320,
            'ERROR_NO_CANDIDATES',
            message='Iteration {iteration}: no candidate frame ({detail}) but the accurate ratio is below '
            "`conv_accuracy`: the trust levels need changing (raise `selection.f_hi` above the failed frames' "
            'deviations, lower `selection.f_lo` or set `selection.adaptive_lo_rate`), or the exploration does.',
        )

    # ----------------------------------------------------------------------------------------- builders

    @classmethod
    def get_builder_from_protocol(
        cls,
        codes: t.Mapping[str, orm.AbstractCode],
        frames: FramesData,
        *,
        structures: t.Any,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        architecture: str = 'mace',
        temperature: float | None = None,
    ):
        """A builder from the protocols of ``active_learning.yaml`` (``fast``, ``balanced``, ``stringent``).

        :param codes: ``{'train': mace_run_train or dp code, 'runner': ilmlff-runner code, 'label': CP2K or
            pw.x code}`` (codes or their labels).
        :param frames: the initial labelled FramesData.
        :param structures: starting structure(s) of the exploration: a StructureData/FramesData, a sequence
            (keys ``structure_0``, ...) or a ``{key: node}`` mapping.
        :param protocol: the protocol name; the training and labelling protocols of the same name are used
            unless ``overrides`` set ``train.protocol`` / ``label.protocol``.
        :param overrides: nested mapping merged over the protocol: ``selection``, ``exploration``
            (``stages``, ``parameters``, ...), ``conv_accuracy``, ``max_iterations``, ``train`` (``protocol``,
            ``committee_size`` and the overrides of ``TrainWorkChain.get_builder_from_protocol``, e.g.
            ``{'member': {'mace': {'parameters': {...}}}}``), ``label``
            (``protocol`` and the overrides of ``LabelWorkChain.get_builder_from_protocol``).
        :param architecture: ``mace`` or ``deepmd``.
        :param options: ``metadata.options`` merged into every job (training, MD, evaluation, labelling).
        :param temperature: the reference temperature [K] of the protocol's exploration stages (they are given as
            offsets from it); default: :func:`reference_temperature` of ``frames`` (their EQ frames' MD temperature).
        :raises ValueError: for an unknown protocol, architecture or override key, a missing code or one of
            another plugin than its stage needs (the message names the key), invalid sub-builders, or stages
            relative to a temperature that neither ``temperature`` nor the frames give.
        """
        codes = cls._resolve_codes(codes)
        if not isinstance(frames, FramesData):
            raise ValueError(f'`frames`: expected a labelled FramesData, got {type(frames).__name__}')
        if temperature is None:
            temperature = reference_temperature(frames)
        inputs = cls.get_plain_protocol_inputs(
            protocol,
            overrides,
            codes=codes,
            elements=frames.elements,
            n_atoms=int(max(frames.n_atoms_per_frame)),
            options=options,
            architecture=architecture,
            temperature=temperature,
        )
        builder = cls.get_builder()
        for key, value in cls.plain_inputs_to_nodes(codes, inputs, elements=frames.elements).items():
            builder[key] = value
        builder.frames = frames
        builder.exploration.structures = numbered_namespace(structures, 'structure')
        return builder

    @staticmethod
    def _resolve_codes(codes: t.Mapping[str, t.Any]) -> dict[str, orm.AbstractCode]:
        """``codes`` loaded (labels allowed), every key present; the runner checked against its plugin."""
        missing = sorted({'train', 'runner', 'label'} - set(codes or {}))
        if missing:
            raise ValueError(f'`codes`: missing {missing}; give {{"train": ..., "runner": ..., "label": ...}}')
        codes = {key: orm.load_code(value) if isinstance(value, (str, int)) else value for key, value in codes.items()}
        message = check_code_plugin(codes['runner'], ('ilmlff.md', 'ilmlff.evaluate'), 'codes.runner')
        if message:
            raise ValueError(message)
        return codes

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        codes: t.Mapping[str, t.Any],
        elements: t.Iterable[str],
        n_atoms: int | None = None,
        options: t.Mapping | None = None,
        architecture: str = 'mace',
        temperature: float | None = None,
    ) -> dict:
        """The protocol inputs as plain values (no frames, no structures, no nodes).

        ``train`` holds :meth:`TrainWorkChain.get_plain_protocol_inputs` of ``train.protocol`` (default: this
        protocol), ``label`` holds :meth:`LabelWorkChain.get_plain_protocol_inputs` of ``label.protocol`` for
        ``elements``; ``exploration.options`` has ``options`` merged in.

        :param codes: ``{'train', 'runner', 'label'}`` codes (the label code chooses the labelling engine).
        :param elements: of the frames to label. :param n_atoms: atoms of the largest frame (labelling limit).
        :param temperature: the reference temperature [K]: stages with ``temperature_offsets_K`` get
            ``temperatures_K`` = ``temperature`` + offset (:func:`resolve_stage_temperatures`).
        :raises ValueError: an unknown protocol, architecture or override key (naming its path), a code of
            another plugin than its stage needs, a temperature outside any liquid, offsets without ``temperature``.
        """
        codes = cls._resolve_codes(codes)
        protocol = cls.check_protocol(protocol)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        train_overrides = dict(inputs.get('train') or {})
        label_overrides = dict(inputs.get('label') or {})
        train_protocol = train_overrides.pop('protocol', None) or protocol
        label_protocol = label_overrides.pop('protocol', None) or protocol
        committee_size = train_overrides.pop('committee_size', None)
        try:
            inputs['train'] = TrainWorkChain.get_plain_protocol_inputs(
                train_protocol,
                train_overrides or None,
                architecture=architecture,
                options=options,
                committee_size=committee_size,
            )
            TrainWorkChain.plain_inputs_to_nodes(codes['train'], inputs['train'])  # checks the code's plugin
        except UnknownOverrideError as exception:
            raise exception.prefixed('train') from None
        except ValueError as exception:
            raise ValueError(f'`codes.train` / `train` (ilmlff.train): {exception}') from None
        try:
            inputs['label'] = LabelWorkChain.get_plain_protocol_inputs(
                label_protocol,
                label_overrides or None,
                code=codes['label'],
                elements=elements,
                max_atoms=n_atoms,
                options=dict(options) if options else None,
            )
        except UnknownOverrideError as exception:
            raise exception.prefixed('label') from None
        exploration = inputs['exploration']
        exploration['options'] = recursive_merge(exploration.get('options', {}), dict(options or {}))
        exploration['stages'] = resolve_stage_temperatures(exploration.get('stages') or [], temperature)
        message = check_inputs(
            {key: value for key, value in inputs.items() if key not in ('train', 'label')},
            {'structures': ['structure']} if not exploration.get('structures') else None,
        )
        if message and 'structures' not in message:
            raise ValueError(message)
        return inputs

    @classmethod
    def plain_inputs_to_nodes(cls, codes: t.Mapping[str, t.Any], inputs: t.Mapping, *, elements: t.Iterable[str]):
        """The inputs of :meth:`get_plain_protocol_inputs` as unstored nodes (``frames`` and
        ``exploration.structures`` not set)."""
        codes = cls._resolve_codes(codes)
        exploration = inputs['exploration']
        selection = inputs['selection']
        nodes: dict[str, t.Any] = {
            'train': TrainWorkChain.plain_inputs_to_nodes(codes['train'], inputs['train']),
            'label': LabelWorkChain.plain_inputs_to_nodes(codes['label'], inputs['label'], elements=elements),
            'exploration': {
                'code': codes['runner'],
                'stages': orm.List(list(exploration['stages'])),
                'parameters': orm.Dict(exploration.get('parameters', {})),
                'options': orm.Dict(exploration.get('options', {})),
                'max_guard_restarts': orm.Int(exploration.get('max_guard_restarts', 1)),
            },
            'selection': {
                **{key: orm.Float(selection[key]) for key in ('f_lo', 'f_hi', 'min_distance', 'duplicate_rmsd')},
                **{key: orm.Int(selection[key]) for key in ('task_max', 'seed')},
                'trust_levels': orm.Str(selection.get('trust_levels', 'absolute')),
                'fallback_to_failed': orm.Bool(selection.get('fallback_to_failed', True)),
            },
            'conv_accuracy': orm.Float(inputs['conv_accuracy']),
            'max_iterations': orm.Int(inputs['max_iterations']),
            'calibrate': orm.Bool(inputs.get('calibrate', True)),
            'final_training': orm.Bool(inputs.get('final_training', True)),
        }
        if exploration.get('settings'):
            nodes['exploration']['settings'] = orm.Dict(exploration['settings'])
        if selection.get('adaptive_lo_rate'):
            nodes['selection']['adaptive_lo_rate'] = orm.Float(selection['adaptive_lo_rate'])
        return nodes

    @classmethod
    def get_builder_continuation(cls, node: orm.WorkflowNode, max_iterations: int | None = None):
        """A builder that continues the finished run ``node`` from its last finished iteration.

        The inputs are those of ``node``; ``frames``, ``continuation.models`` and ``continuation.iterations``
        are its outputs. :param max_iterations: the new last iteration (default: the old one + 1).
        :raises ValueError: if ``node`` has no ``frames``/``models``/``iterations`` outputs.
        """
        missing = [name for name in ('frames', 'models', 'iterations') if name not in node.outputs]
        if missing:
            raise ValueError(f'{node.process_label}<{node.pk}> has no output(s) {missing} to continue from')
        builder = node.get_builder_restart()
        builder.frames = node.outputs.frames
        builder.continuation.models = dict(node.outputs.models)
        builder.continuation.iterations = node.outputs.iterations
        done = node.outputs.iterations.get('n_iterations', 0)
        builder.max_iterations = orm.Int(max_iterations if max_iterations is not None else done + 1)
        return builder

    # ----------------------------------------------------------------------------------------- outline

    def setup(self):
        """The loop state: training set, committee, iteration counter and stage (from a continuation)."""
        self.ctx.frames = self.inputs.frames
        self.ctx.models = None
        self.ctx.models_training_set = None
        self.ctx.last_models = None
        self.ctx.iteration = 0
        self.ctx.stage = 0
        self.ctx.stage_iterations = 0
        self.ctx.converged = False
        self.ctx.stop = False
        self.ctx.status = 'running'
        self.ctx.records = {}
        self.ctx.statistics = {}
        self.ctx.stages = [normalise_stage(stage) for stage in self.inputs.exploration.stages.get_list()]
        selection = self.inputs.selection
        self.ctx.relative = selection.trust_levels.value == 'relative'
        # Trust levels in eV/Å: known now when absolute, after the first training when relative.
        self.ctx.trust = (
            None
            if self.ctx.relative
            else {'mode': 'absolute', 'f_lo': selection.f_lo.value, 'f_hi': selection.f_hi.value}
        )
        continuation = self.inputs.get('continuation', {}) or {}
        if 'iterations' in continuation:
            previous = continuation['iterations'].get_dict()
            if self.ctx.relative and (previous.get('trust') or {}).get('mode') == 'relative':
                self.ctx.trust = previous['trust']
            self.ctx.iteration = int(previous.get('n_iterations', 0))
            self.ctx.stage = int(previous.get('stage', 0))
            self.ctx.stage_iterations = int(previous.get('stage_iterations', 0))
            self.ctx.converged = bool(previous.get('converged', False))
            models = continuation.get('models')
            if self.ctx.trust is None:
                models = None  # relative levels never resolved: retrain, and resolve them from that committee
                self.report('the relative trust levels of the previous run are unknown: retraining the committee')
            if models and previous.get('models_training_set') == self.inputs.frames.uuid:
                self.ctx.models = dict(models)
                self.ctx.models_training_set = self.inputs.frames.uuid
                how = 'reusing its committee (trained on these frames)'
            else:
                self.ctx.last_models = dict(models) if models else None
                how = 'retraining the committee on these frames'
            self.report(
                f'continuing after iteration {self.ctx.iteration} (stage {self.ctx.stage}, converged '
                f'{self.ctx.converged}) with {self.inputs.frames.n_frames} frames, {how}'
            )
        if self.ctx.relative and self.ctx.trust is None:
            levels = (
                f'relative trust levels {selection.f_lo.value:g} / {selection.f_hi.value:g} x the first '
                "committee's validation force RMSE"
            )
        else:
            levels = f'trust levels f_lo {self.ctx.trust["f_lo"]:.3g} / f_hi {self.ctx.trust["f_hi"]:.3g} eV/Å'
        self.report(
            f'{len(self.ctx.stages)} stage(s); {levels}; task_max {self.inputs.selection.task_max.value}; '
            f'conv_accuracy {self.inputs.conv_accuracy.value:g}; max_iterations {self.inputs.max_iterations.value}'
        )
        self.report('iter stage  frames  accurate        candidate       failed          selected labelled set')

    def should_run_iteration(self) -> bool:
        """Another iteration: not converged, not stopped, below ``max_iterations``."""
        if self.ctx.converged or self.ctx.stop:
            return False
        if self.ctx.iteration >= self.inputs.max_iterations.value:
            self.ctx.status = 'max_iterations'
            return False
        return True

    def start_iteration(self):
        """Count the iteration; clear the per-iteration context."""
        self.ctx.iteration += 1
        self.ctx.record = {
            'stage': self.ctx.stage,
            'n_train_before': self.ctx.frames.n_frames,
            'n_train_after': self.ctx.frames.n_frames,
            'n_labelled': 0,
            'n_label_rejected': 0,
        }
        self.ctx.selected = None
        self.ctx.labelled = None

    @property
    def _prefix(self) -> str:
        return f'iteration.iter_{self.ctx.iteration:03d}'

    def needs_training(self) -> bool:
        """Whether the committee must be (re)trained on the current training set."""
        return self.ctx.models is None

    def needs_final_training(self) -> bool:
        """After the loop: the last labels were never trained on and ``final_training`` is set."""
        return (
            self.inputs.final_training.value
            and self.ctx.models is None
            and self.ctx.status in ('max_iterations', 'converged')
            and self.ctx.iteration > 0
        )

    def run_training(self):
        """Train the committee on the current training set (``ilmlff.train``)."""
        inputs = AttributeDict(self.exposed_inputs(TrainWorkChain, namespace='train'))
        inputs.train = self.ctx.frames
        label = f'train_iter_{self.ctx.iteration:03d}' if self.ctx.status == 'running' else 'train_final'
        inputs.metadata = {'call_link_label': label}
        node = self.submit(self._train_process, **inputs)
        self.report(f'training on {self.ctx.frames.n_frames} frames: {node.process_label}<{node.pk}>')
        return ToContext(training=node)

    def inspect_training(self):
        """Keep the committee (at least 2 models, even when some members failed)."""
        node = self.ctx.training
        models = dict(node.outputs.models) if 'models' in node.outputs else {}
        if not node.is_finished_ok:
            self.report(f'{node.process_label}<{node.pk}> exit {node.exit_status}: {node.exit_message}')
        if len(models) < 2:
            detail = f'{node.process_label}<{node.pk}> gave {len(models)} model(s), exit {node.exit_status}'
            self._attach_results('training_failed')
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_TRAINING.format(iteration=self.ctx.iteration, detail=detail)
        self.ctx.models = models
        self.ctx.models_training_set = self.ctx.frames.uuid
        if self.ctx.status == 'running':
            self.out(f'{self._prefix}.models', models)
        if self.ctx.trust is None:
            return self._resolve_relative_trust_levels(node)
        return None

    def _resolve_relative_trust_levels(self, node: orm.ProcessNode):
        """Relative trust levels in eV/Å from the mean validation force RMSE [meV/Å] of the first committee."""
        selection = self.inputs.selection
        try:
            rmse = node.outputs.metrics.get_dict()['committee']['valid']['force_rmse']['mean'] / 1000.0
            f_lo, f_hi = relative_trust_levels(selection.f_lo.value, selection.f_hi.value, rmse)
        except (AttributeError, KeyError, TypeError, ValueError) as exception:
            self._attach_results('training_failed')
            detail = f'no validation force RMSE for the relative trust levels in {node.process_label}<{node.pk}>'
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_TRAINING.format(
                iteration=self.ctx.iteration, detail=f'{detail} ({exception})'
            )
        self.ctx.trust = {
            'mode': 'relative',
            'f_lo': f_lo,
            'f_hi': f_hi,
            'f_lo_relative': selection.f_lo.value,
            'f_hi_relative': selection.f_hi.value,
            'force_rmse_valid': rmse,
            'iteration': self.ctx.iteration,
        }
        self.report(
            f'trust levels f_lo {f_lo:.3g} / f_hi {f_hi:.3g} eV/Å: {selection.f_lo.value:g} / {selection.f_hi.value:g}'
            f" x the committee's validation force RMSE {rmse:.3g} eV/Å, kept for the whole run"
        )
        return None

    def run_exploration(self):
        """One ``ilmlff.md.base`` run per structure x temperature x pressure of the current stage."""
        stage = self.ctx.stages[self.ctx.stage]
        structures = self.inputs.exploration.structures
        base = self.inputs.exploration.parameters.get_dict()
        seed0 = int(base.get('seed', 0))
        options = self.inputs.exploration.options.get_dict()
        futures = {}
        self.ctx.runs = []
        for index, run in enumerate(stage_runs(stage, list(structures))):
            key = f'md_{index:03d}'
            parameters = md_parameters(base, stage, run, seed0 + 1000 * self.ctx.iteration + index)
            md = {
                'code': self.inputs.exploration.code,
                'structure': structures[run['structure']],
                'models': self.ctx.models,
                'parameters': orm.Dict(parameters),
                'metadata': {'options': copy.deepcopy(options)},
            }
            if 'settings' in self.inputs.exploration:
                md['settings'] = self.inputs.exploration.settings
            node = self.submit(
                self._md_process,
                md=md,
                max_guard_restarts=self.inputs.exploration.max_guard_restarts,
                metadata={'call_link_label': f'explore_iter_{self.ctx.iteration:03d}_{key}'},
            )
            futures[key] = node
            self.ctx.runs.append(key)
            conditions = ', '.join(
                f'{name} {value:g}' for name, value in run.items() if name != 'structure' and value is not None
            )
            self.report(
                f'exploring `{run["structure"]}` ({stage["ensemble"]}, {conditions}, {stage["steps"]} steps): '
                f'{node.process_label}<{node.pk}>'
            )
        return ToContext(**{f'explore_{key}': node for key, node in futures.items()})

    def inspect_exploration(self):
        """Select the candidates from every run with a trajectory and deviations; decide convergence."""
        explorations: dict[str, orm.Data] = {}
        failed = []
        truncated = []  # runs that stopped before their last step: the committee has not converged on them
        for key in self.ctx.runs:
            node = self.ctx[f'explore_{key}']
            outputs = node.outputs
            if 'trajectory' in outputs and 'deviation' in outputs and outputs.trajectory.n_frames > 0:
                explorations[f'trajectory_{key}'] = outputs.trajectory
                explorations[f'deviation_{key}'] = outputs.deviation
                self.out(f'{self._prefix}.trajectories.{key}', outputs.trajectory)
                if not node.is_finished_ok:
                    truncated.append(key)
                    self.report(
                        f'{node.process_label}<{node.pk}> exit {node.exit_status} ({node.exit_message}): using the '
                        f'{outputs.trajectory.n_frames} frames it saved; the stage cannot converge on a run that '
                        'stopped early'
                    )
            else:
                failed.append(f'{node.process_label}<{node.pk}> exit {node.exit_status}')
        if not explorations:
            self._attach_results('exploration_failed')
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_EXPLORATION.format(
                iteration=self.ctx.iteration, detail='; '.join(failed)
            )
        selection = self.inputs.selection
        settings = {
            'f_lo': self.ctx.trust['f_lo'],
            'f_hi': self.ctx.trust['f_hi'],
            'fallback_to_failed': selection.fallback_to_failed.value,
            'adaptive_lo_rate': selection.adaptive_lo_rate.value if 'adaptive_lo_rate' in selection else None,
            'task_max': selection.task_max.value,
            'min_distance': selection.min_distance.value,
            'duplicate_rmsd': selection.duplicate_rmsd.value,
            'seed': selection.seed.value + self.ctx.iteration,
            'iteration': self.ctx.iteration,
            'conv_accuracy': self.inputs.conv_accuracy.value,
            'truncated_runs': truncated,
        }
        try:
            outputs = select_candidates(
                settings=orm.Dict(settings),
                metadata={'call_link_label': f'select_iter_{self.ctx.iteration:03d}'},
                **explorations,
            )
        except Exception as exception:  # the calcfunction excepted: report it as the selection failure
            self._attach_results('selection_failed')
            return self.exit_codes.ERROR_SELECTION_FAILED.format(iteration=self.ctx.iteration, detail=str(exception))
        statistics = outputs['statistics']
        self.out(f'{self._prefix}.statistics', statistics)
        self.out(f'{self._prefix}.deviations', outputs['deviations'])
        self.ctx.statistics[f'iter_{self.ctx.iteration:03d}'] = statistics
        self.ctx.record['n_failed_runs'] = len(failed)
        stats = statistics.get_dict()
        self.ctx.stage_iterations += 1
        if stats['converged']:
            self.ctx.record['stage_converged'] = True
            if self.ctx.stage + 1 < len(self.ctx.stages):
                self.report(
                    f'stage {self.ctx.stage} converged (accurate ratio {stats["ratio_accurate"]:.3f} >= '
                    f'{stats["conv_accuracy"]:g}): moving to stage {self.ctx.stage + 1}'
                )
                self.ctx.stage += 1
                self.ctx.stage_iterations = 0
            else:
                self.ctx.converged = True
                self.ctx.status = 'converged'
            return None
        if 'selected' not in outputs:
            self._report_iteration()
            self._attach_results('no_candidates')
            detail = (
                f'{stats["n_accurate"]} accurate, {stats["n_candidate"]} candidate(s) filtered out, '
                f'{stats["n_failed"]} failed of {stats["n_frames"]}; accurate ratio {stats["ratio_accurate"]:.3f} < '
                f'{stats["conv_accuracy"]:g}'
            )
            if stats.get('truncated_runs'):
                detail += f'; MD stopped early in {", ".join(stats["truncated_runs"])}'
            return self.exit_codes.ERROR_NO_CANDIDATES.format(iteration=self.ctx.iteration, detail=detail)
        self.ctx.selected = outputs['selected']
        self.out(f'{self._prefix}.selected', self.ctx.selected)
        return None

    def should_label(self) -> bool:
        """Whether frames were selected in this iteration."""
        return self.ctx.selected is not None

    def run_labelling(self):
        """Label the selected frames (``ilmlff.label``)."""
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.frames = self.ctx.selected
        inputs.metadata = {'call_link_label': f'label_iter_{self.ctx.iteration:03d}'}
        node = self.submit(self._label_process, **inputs)
        self.report(f'labelling {self.ctx.selected.n_frames} selected frames: {node.process_label}<{node.pk}>')
        return ToContext(labelling=node)

    def inspect_labelling(self):
        """Keep what was labelled; stop (403) only when nothing was."""
        node = self.ctx.labelling
        labelled = node.outputs.labelled if 'labelled' in node.outputs else None
        n_selected = self.ctx.selected.n_frames
        if labelled is None or labelled.n_frames == 0:
            self.ctx.record.update(n_labelled=0, n_label_rejected=n_selected, label_exit_status=node.exit_status)
            self._report_iteration()
            self._attach_results('labelling_failed')
            detail = f'{node.process_label}<{node.pk}> exit {node.exit_status}: {node.exit_message}'
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_LABEL.format(iteration=self.ctx.iteration, detail=detail)
        if not node.is_finished_ok:
            self.report(
                f'{node.process_label}<{node.pk}> exit {node.exit_status} ({node.exit_message}): continuing with the '
                f'{labelled.n_frames} of {n_selected} frames it labelled'
            )
        self.ctx.labelled = labelled
        self.ctx.record.update(
            n_labelled=labelled.n_frames,
            n_label_rejected=n_selected - labelled.n_frames,
            label_exit_status=node.exit_status,
        )
        self.out(f'{self._prefix}.labelled', labelled)
        return None

    def should_calibrate(self) -> bool:
        """Whether to evaluate the committee on the labelled candidates."""
        return self.inputs.calibrate.value

    def run_calibration(self):
        """Evaluate the committee on the labelled candidates (``ilmlff.evaluate``)."""
        node = self.submit(
            self._evaluate_process,
            code=self.inputs.exploration.code,
            frames=self.ctx.labelled,
            models=self.ctx.models,
            parameters=orm.Dict({'plot': False}),
            metadata={
                'options': self.inputs.exploration.options.get_dict(),
                'call_link_label': f'evaluate_iter_{self.ctx.iteration:03d}',
            },
        )
        return ToContext(evaluation=node)

    def inspect_calibration(self):
        """Correlate deviation and true force error (a calcfunction); a failure here is only reported."""
        node = self.ctx.evaluation
        if not node.is_finished_ok or 'predictions' not in node.outputs:
            self.report(f'calibration skipped: {node.process_label}<{node.pk}> exit {node.exit_status}')
            return
        try:
            outputs = calibrate_committee(
                frames=self.ctx.labelled,
                predictions=node.outputs.predictions,
                settings=orm.Dict(
                    {'iteration': self.ctx.iteration, 'f_lo': self.ctx.trust['f_lo'], 'f_hi': self.ctx.trust['f_hi']}
                ),
                metadata={'call_link_label': f'calibrate_iter_{self.ctx.iteration:03d}'},
            )
        except Exception as exception:  # calibration is diagnostic: never fatal
            self.report(f'calibration failed: {exception}')
            return
        for name, value in outputs.items():
            self.out(f'{self._prefix}.{name}', value)
        result = outputs['calibration'].get_dict()
        self.ctx.record['calibration_pearson'] = result['deviation_vs_max_error']['pearson']
        self.ctx.record['calibration_spearman'] = result['deviation_vs_max_error']['spearman']
        self.ctx.record['calibration_error_over_deviation'] = result['mean_error_over_deviation']

    def update_training_set(self):
        """Merge the new labelled frames into the cumulative training set."""
        try:
            merged = merge_frames(
                frames_0=self.ctx.frames,
                frames_1=self.ctx.labelled,
                metadata={'call_link_label': f'merge_iter_{self.ctx.iteration:03d}'},
            )
        except Exception as exception:  # e.g. mixed levels of theory
            self._attach_results('merge_failed')
            return self.exit_codes.ERROR_MERGE_FAILED.format(iteration=self.ctx.iteration, detail=str(exception))
        self.ctx.frames = merged
        self.ctx.last_models = self.ctx.models
        self.ctx.models = None
        self.ctx.record['n_train_after'] = merged.n_frames
        self.out(f'{self._prefix}.frames', merged)
        return None

    def finish_iteration(self):
        """One status line per iteration in the report (dpgen2's table)."""
        self._report_iteration()

    def _report_iteration(self):
        key = f'iter_{self.ctx.iteration:03d}'
        record = self.ctx.record
        self.ctx.records[str(self.ctx.iteration)] = dict(record)
        stats = self.ctx.statistics[key].get_dict() if key in self.ctx.statistics else None
        if stats is None:
            return
        line = (
            f'{self.ctx.iteration:4d} {record["stage"]:5d} {stats["n_frames"]:7d}  '
            f'{stats["n_accurate"]:5d} ({stats["ratio_accurate"]:.3f})  '
            f'{stats["n_candidate"]:5d} ({stats["ratio_candidate"]:.3f})  '
            f'{stats["n_failed"]:5d} ({stats["ratio_failed"]:.3f})  '
            f'{stats["n_selected"]:8d} {record["n_labelled"]:8d} {record["n_train_before"]}->{record["n_train_after"]}'
        )
        if stats.get('selected_from') == 'failed':
            line += '  (picked from the failed band)'
        elif stats.get('selected_from') == 'truncated':
            line += '  (picked: the last frames before an MD stopped early)'
        if stats.get('truncated_runs') and stats.get('selected_from') != 'truncated':
            line += f'  (MD stopped early: {", ".join(stats["truncated_runs"])})'
        if record.get('calibration_pearson') is not None:
            line += f'  calibration r={record["calibration_pearson"]:.2f}'
        if stats['converged']:
            line += '  converged'
        self.report(line)

    def _attach_results(self, status: str) -> None:
        """Attach ``frames``, ``models`` and ``iterations`` (also on the failure exits)."""
        self.ctx.status = status
        models = self.ctx.models or self.ctx.last_models
        state = {
            'records': self.ctx.records,
            'converged': bool(self.ctx.converged),
            'status': self.ctx.status,
            'stage': self.ctx.stage,
            'n_stages': len(self.ctx.stages),
            'stage_iterations': self.ctx.stage_iterations,
            'frames_uuid': self.ctx.frames.uuid,
            'n_frames_final': self.ctx.frames.n_frames,
            'models_training_set': self.ctx.models_training_set if models else None,
            'f_lo': self.inputs.selection.f_lo.value,
            'f_hi': self.inputs.selection.f_hi.value,
            'trust_levels': self.inputs.selection.trust_levels.value,
            'trust': self.ctx.trust,
            'conv_accuracy': self.inputs.conv_accuracy.value,
        }
        continuation = self.inputs.get('continuation', {}) or {}
        kwargs = dict(self.ctx.statistics)
        if 'iterations' in continuation:
            kwargs['previous'] = continuation['iterations']
        iterations = collect_iterations(state=orm.Dict(state), metadata={'call_link_label': 'iterations'}, **kwargs)
        self.out('frames', self.ctx.frames)
        if models:
            self.out('models', models)
        self.out('iterations', iterations)

    def results(self):
        """Attach the outputs and report how the loop ended."""
        if self.ctx.converged:
            self.ctx.status = 'converged'
        self._attach_results(self.ctx.status)
        if self.ctx.converged:
            self.report(
                f'converged after iteration {self.ctx.iteration}: {self.ctx.frames.n_frames} frames in the training set'
            )
        else:
            self.report(
                f'not converged after iteration {self.ctx.iteration} (max_iterations '
                f'{self.inputs.max_iterations.value}): {self.ctx.frames.n_frames} frames; continue with '
                'ActiveLearningWorkChain.get_builder_continuation(node, max_iterations=...)'
            )
