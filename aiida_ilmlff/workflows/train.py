"""Training work chains: one model with automatic restarts, and a committee of models (``ilmlff.train``).

``MaceTrainBaseWorkChain`` (``ilmlff.mace.train.base``) and ``DeepmdTrainBaseWorkChain``
(``ilmlff.deepmd.train.base``) run one training CalcJob as a ``BaseRestartWorkChain`` with two handlers:

- NaN or infinite loss (CalcJob exit 410): restart from scratch with the learning rate halved (MACE ``lr``,
  DeePMD ``start_lr``); when the loss is still not finite after ``max_iterations`` runs the work chain exits
  with 410 ``ERROR_NAN_LOSS``;
- out of walltime (CalcJob exit 400): restart from the last checkpoint (``parent_folder`` = the interrupted
  job's remote folder; MACE ``--restart_latest``, DeePMD ``--restart model.ckpt``).

``TrainWorkChain`` (``ilmlff.train``) trains a committee of ``committee_size`` models (default 4) of one
architecture that differ only by their seed, all on the same train/valid split (split once by a
calcfunction when only ``valid_fraction`` is given), and returns them in the ``models`` namespace with the
errors of each member and their spread in ``metrics``.
"""

from __future__ import annotations

import typing as t

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import (
    BaseRestartWorkChain,
    ProcessHandlerReport,
    ToContext,
    WorkChain,
    append_,
    calcfunction,
    if_,
    process_handler,
    while_,
)

from aiida_ilmlff.calculations.deepmd import DeepmdTrainCalculation
from aiida_ilmlff.calculations.mace import MaceTrainCalculation
from aiida_ilmlff.calculations.training import split_indices
from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.workflows.protocols import ProtocolMixin

__all__ = ('DeepmdTrainBaseWorkChain', 'MaceTrainBaseWorkChain', 'TrainWorkChain', 'split_frames')

ARCHITECTURES = ('mace', 'deepmd')


@calcfunction
def split_frames(frames: FramesData, valid_fraction: orm.Float, seed: orm.Int) -> dict[str, FramesData]:
    """Seeded random split of ``frames`` into ``train`` and ``valid`` FramesData (see ``split_indices``)."""
    train_indices, valid_indices = split_indices(frames.n_frames, valid_fraction.value, seed.value)
    return {'train': frames.select(train_indices), 'valid': frames.select(valid_indices)}


class _TrainBaseWorkChain(BaseRestartWorkChain):
    """Restart logic shared by the MACE and DeePMD base work chains (not a plugin itself)."""

    _namespace: t.ClassVar[str] = ''
    _lr_key: t.ClassVar[str] = ''
    _lr_default: t.ClassVar[float] = 0.0

    @classmethod
    def define(cls, spec):
        """Expose the CalcJob inputs under the architecture's namespace; add the NaN exit code."""
        super().define(spec)
        spec.expose_inputs(cls._process_class, namespace=cls._namespace)
        spec.expose_outputs(cls._process_class)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.exit_code(
            410,
            'ERROR_NAN_LOSS',
            message='The loss was NaN or infinite in every run, even with the learning rate halved each time.',
        )

    def setup(self):
        """Take the CalcJob inputs from the exposed namespace."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(self._process_class, self._namespace))

    def inspect_process(self):
        """As the base class; a NaN loss that outlives ``max_iterations`` gets its own exit code (410)."""
        exit_code = super().inspect_process()
        node = self.ctx.children[self.ctx.iteration - 1]
        nan = self._process_class.exit_codes.ERROR_NAN_LOSS.status
        if exit_code is not None and exit_code.status == 401 and node.exit_status == nan:
            self.report(f'the loss is still not finite after {self.ctx.iteration} runs: giving up')
            return self.exit_codes.ERROR_NAN_LOSS
        return exit_code

    @process_handler(priority=500, exit_codes=[MaceTrainCalculation.exit_codes.ERROR_NAN_LOSS])
    def handle_nan_loss(self, node):
        """NaN or infinite loss: halve the learning rate and start the training again from scratch."""
        parameters = self.ctx.inputs.parameters.get_dict()
        old = float(parameters.get(self._lr_key, self._lr_default))
        parameters[self._lr_key] = old / 2.0
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.ctx.inputs.pop('parent_folder', None)
        self.report(
            f'{node.process_label}<{node.pk}> ended with a NaN/inf loss ({node.exit_message}): '
            f'restarting from scratch with {self._lr_key} {old:g} -> {old / 2.0:g}'
        )
        return ProcessHandlerReport(True)

    @process_handler(priority=400, exit_codes=[MaceTrainCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_out_of_walltime(self, node):
        """Out of walltime: continue from the last checkpoint of the interrupted job."""
        if 'remote_folder' not in node.outputs:
            self.report(f'{node.process_label}<{node.pk}> ran out of walltime and left no remote folder: restarting')
            self.ctx.inputs.pop('parent_folder', None)
            return ProcessHandlerReport(True)
        self.ctx.inputs.parent_folder = node.outputs.remote_folder
        self.report(
            f'{node.process_label}<{node.pk}> ran out of walltime: restarting from its last checkpoint '
            f'(parent_folder = RemoteData<{node.outputs.remote_folder.pk}>)'
        )
        return ProcessHandlerReport(True)


class MaceTrainBaseWorkChain(_TrainBaseWorkChain):
    """Train one MACE model (``ilmlff.mace.train``) with restarts on NaN loss and walltime."""

    _process_class = MaceTrainCalculation
    _namespace = 'mace'
    _lr_key = 'lr'
    _lr_default = 0.01


class DeepmdTrainBaseWorkChain(_TrainBaseWorkChain):
    """Train one DeePMD model (``ilmlff.deepmd.train``) with restarts on NaN loss and walltime."""

    _process_class = DeepmdTrainCalculation
    _namespace = 'deepmd'
    _lr_key = 'start_lr'
    _lr_default = 1.0e-3


_BASE = {'mace': MaceTrainBaseWorkChain, 'deepmd': DeepmdTrainBaseWorkChain}
_CALC = {'mace': MaceTrainCalculation, 'deepmd': DeepmdTrainCalculation}
_SPLIT_PORTS = ('train', 'valid', 'test', 'valid_fraction')


def validate_inputs(inputs: t.Mapping, _) -> str | None:
    """Exactly one architecture namespace; seeds consistent with the committee size; enough frames."""
    given = [name for name in ARCHITECTURES if inputs.get(name)]
    if len(given) != 1:
        return f'give exactly one of the namespaces `mace` or `deepmd` (got {given or "none"})'
    size = inputs['committee_size'].value if 'committee_size' in inputs else 4
    if size < 1:
        return f'`committee_size` must be at least 1, got {size}'
    seeds = inputs.get('seeds')
    if seeds is not None:
        values = seeds.get_list()
        if len(values) != size or len(set(values)) != len(values) or not all(isinstance(s, int) for s in values):
            return f'`seeds` must be {size} distinct integers (one per committee member), got {values}'
    if 'valid' not in inputs and 'train' in inputs:
        fraction = inputs['valid_fraction'].value if 'valid_fraction' in inputs else 0.1
        try:
            split_indices(inputs['train'].n_frames, fraction, 0)
        except ValueError as exception:
            return str(exception)
    architecture = given[0]
    calc_inputs = dict(inputs[architecture].get(architecture, {}))
    calc_inputs.update({name: inputs[name] for name in ('train', 'valid', 'test', 'valid_fraction') if name in inputs})
    return _CALC[architecture]._validate_inputs(calc_inputs, None)


class TrainWorkChain(ProtocolMixin, WorkChain):
    """A committee of MLFF models of one architecture, differing only by their seed (``ilmlff.train``).

    Inputs: the frames (``train``, optional ``valid``/``test`` or ``valid_fraction``), ``committee_size``
    (default 4), optional ``seeds`` (default: the member's parameters ``seed`` + k), and exactly one of the
    namespaces ``mace`` or ``deepmd`` (the inputs of the base work chain, without the frames).
    Outputs: ``models`` (``model_0`` ... MLFFModelData), ``metrics`` (Dict: each member's errors and, over the
    committee, the mean and standard deviation of each error), ``split`` (``train``/``valid`` FramesData when
    the work chain made the split).
    """

    _protocol_file = 'train/committee.yaml'

    @classmethod
    def define(cls, spec):
        """Define the committee work chain."""
        super().define(spec)
        spec.input('train', valid_type=FramesData, help='Labelled training frames, shared by every member.')
        spec.input('valid', valid_type=FramesData, required=False, help='Labelled validation frames (shared).')
        spec.input('test', valid_type=FramesData, required=False, help='Labelled test frames (shared).')
        spec.input(
            'valid_fraction',
            valid_type=orm.Float,
            required=False,
            help='Without `valid`: the fraction of `train` split off once (calcfunction) for every member (0.1).',
        )
        spec.input('split_seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seed of the train/valid split.')
        spec.input(
            'committee_size',
            valid_type=orm.Int,
            default=lambda: orm.Int(4),
            help='Number of models in the committee.',
        )
        spec.input(
            'seeds',
            valid_type=orm.List,
            required=False,
            help='One distinct integer seed per member (default: parameters seed + 0, 1, 2, ...).',
        )
        for name, base in _BASE.items():
            spec.expose_inputs(
                base,
                namespace=name,
                exclude=tuple(f'{name}.{port}' for port in _SPLIT_PORTS),
                namespace_options={
                    'required': False,
                    'populate_defaults': False,
                    'help': f'Inputs of the {base.__name__} run for each member (frames excluded).',
                },
            )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.setup,
            if_(cls.should_split)(cls.split),
            cls.run_committee,
            cls.inspect_committee,
        )
        spec.output_namespace('models', valid_type=MLFFModelData, dynamic=True, help='The committee models.')
        spec.output('metrics', valid_type=orm.Dict, help='Errors of each member and their committee statistics.')
        spec.output_namespace('split', valid_type=FramesData, dynamic=True, required=False, help='The split made.')
        spec.exit_code(
            401, 'ERROR_COMMITTEE_INCOMPLETE', message='Members {members} failed; the others are in the outputs.'
        )
        spec.exit_code(402, 'ERROR_COMMITTEE_FAILED', message='Every committee member failed.')
        spec.exit_code(410, 'ERROR_NAN_LOSS', message='Members {members} kept a NaN/inf loss after lr halving.')

    def setup(self):
        """Pick the architecture and the frames of each split."""
        self.ctx.architecture = next(name for name in ARCHITECTURES if self.inputs.get(name))
        self.ctx.frames = {name: self.inputs[name] for name in ('train', 'valid', 'test') if name in self.inputs}

    def should_split(self):
        """Whether the work chain must split off the validation frames."""
        return 'valid' not in self.inputs

    def split(self):
        """Split ``train`` once, so that every member sees the same frames."""
        fraction = self.inputs.valid_fraction if 'valid_fraction' in self.inputs else orm.Float(0.1)
        result = split_frames(self.inputs.train, fraction, self.inputs.split_seed)
        self.ctx.frames.update(train=result['train'], valid=result['valid'])
        self.out('split', {'train': result['train'], 'valid': result['valid']})

    def _seeds(self, parameters: dict) -> list[int]:
        if 'seeds' in self.inputs:
            return [int(s) for s in self.inputs.seeds.get_list()]
        base = int(parameters.get('seed', 0))
        return [base + k for k in range(self.inputs.committee_size.value)]

    def run_committee(self):
        """Submit one base work chain per member, with its own seed."""
        architecture = self.ctx.architecture
        base = _BASE[architecture]
        for k, seed in enumerate(self._seeds(self.inputs[architecture][architecture].parameters.get_dict())):
            inputs = AttributeDict(self.exposed_inputs(base, namespace=architecture))
            calc_inputs = AttributeDict(inputs[architecture])
            calc_inputs.update(self.ctx.frames)
            parameters = calc_inputs.parameters.get_dict()
            parameters['seed'] = seed
            calc_inputs.parameters = orm.Dict(parameters)
            inputs[architecture] = calc_inputs
            inputs.metadata = {'call_link_label': f'member_{k}'}
            node = self.submit(base, **inputs)
            self.report(f'committee member {k}: {base.__name__}<{node.pk}> with seed {seed}')
            self.to_context(members=append_(node))
        return ToContext()

    def inspect_committee(self):
        """Collect the models and metrics; report and flag failed members."""
        failed, nan = [], []
        models, member_metrics = {}, {}
        for k, node in enumerate(self.ctx.members):
            if node.is_finished_ok:
                models[f'model_{k}'] = node.outputs.model
                member_metrics[f'model_{k}'] = node.outputs.metrics
            else:
                failed.append(k)
                if node.exit_status == _BASE[self.ctx.architecture].exit_codes.ERROR_NAN_LOSS.status:
                    nan.append(k)
                self.report(f'committee member {k} <{node.pk}> failed: exit {node.exit_status} {node.exit_message}')
        if not models:
            return self.exit_codes.ERROR_COMMITTEE_FAILED
        self.out('models', models)
        self.out('metrics', committee_metrics(**member_metrics))
        if nan:
            return self.exit_codes.ERROR_NAN_LOSS.format(members=nan)
        if failed:
            return self.exit_codes.ERROR_COMMITTEE_INCOMPLETE.format(members=failed)
        return None

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        train_frames: FramesData,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        architecture: str = 'mace',
        valid: FramesData | None = None,
        test: FramesData | None = None,
        committee_size: int | None = None,
        options: t.Mapping | None = None,
    ):
        """A builder for a committee of ``architecture`` models from the protocols of train/committee.yaml.

        :param code: the training code (``mace-train`` for MACE, ``dp`` for DeePMD).
        :param train_frames: labelled FramesData. :param valid: / :param test: optional FramesData.
        :param protocol: ``fast``, ``balanced`` or ``stringent``; the member hyperparameters come from the same
            protocol of the architecture's CalcJob (train/mace.yaml, train/deepmd.yaml).
        :param overrides: ``{'committee_size': ..., 'max_iterations': ..., 'parameters': {...}, ...}`` merged
            over the protocol; ``parameters`` go to every member.
        :param committee_size: overrides the protocol's committee size.
        :param options: ``metadata.options`` of the training jobs.
        :raises ValueError: for an unknown protocol or architecture.
        """
        if architecture not in ARCHITECTURES:
            raise ValueError(f'`architecture` must be one of {list(ARCHITECTURES)}, got {architecture!r}')
        overrides = dict(overrides or {})
        inputs = cls.get_protocol_inputs(protocol, {k: v for k, v in overrides.items() if k != 'parameters'})
        calc_overrides = {'parameters': overrides['parameters']} if 'parameters' in overrides else None
        calc_builder = _CALC[architecture].get_builder_from_protocol(
            code, train_frames, protocol, calc_overrides, valid=valid, test=test, options=options
        )
        builder = cls.get_builder()
        builder.train = train_frames
        if valid is not None:
            builder.valid = valid
        else:
            builder.valid_fraction = orm.Float(inputs.get('valid_fraction', 0.1))
        if test is not None:
            builder.test = test
        builder.committee_size = orm.Int(committee_size or inputs.get('committee_size', 4))
        namespace = builder[architecture]
        namespace.max_iterations = orm.Int(inputs.get('max_iterations', 5))
        calc = namespace[architecture]
        calc.code = calc_builder.code
        calc.parameters = calc_builder.parameters
        calc.metadata.options = dict(calc_builder.metadata.options)
        return builder


@calcfunction
def committee_metrics(**members: orm.Dict) -> orm.Dict:
    """Errors of each committee member (its ``metrics`` output, by model key) and, per split and error, the
    mean and standard deviation over the members (``committee``); units as in the members' metrics."""
    values = {key: node.get_dict() for key, node in members.items()}
    statistics: dict[str, dict] = {}
    for split in ('train', 'valid', 'test'):
        for error in ('energy_rmse', 'force_rmse', 'energy_mae', 'force_mae'):
            numbers = [m[split][error] for m in values.values() if m.get(split, {}).get(error) is not None]
            if numbers:
                statistics.setdefault(split, {})[error] = {
                    'mean': float(np.mean(numbers)),
                    'std': float(np.std(numbers)),
                    'n': len(numbers),
                }
    summary = {
        key: {split: m[split] for split in ('train', 'valid', 'test') if split in m} for key, m in values.items()
    }
    return orm.Dict({'members': summary, 'committee': statistics, 'units': next(iter(values.values())).get('units')})
