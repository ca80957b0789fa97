"""Training work chains: one model with automatic restarts, and a committee of models (``ilmlff.train``).

``MaceTrainBaseWorkChain`` (``ilmlff.mace.train.base``) and ``DeepmdTrainBaseWorkChain``
(``ilmlff.deepmd.train.base``) run one training CalcJob as a ``BaseRestartWorkChain`` with three handlers:

- NaN or infinite loss (CalcJob exit 410): restart from scratch with the learning rate halved (MACE ``lr``,
  DeePMD ``start_lr``); when the loss is still not finite after ``max_iterations`` runs the work chain exits
  with 410 ``ERROR_NAN_LOSS``;
- out of walltime (CalcJob exit 400): restart from the last checkpoint (``parent_folder`` = the interrupted
  job's remote folder; MACE ``--restart_latest``, DeePMD ``--restart model.ckpt``);
- a job cancelled from outside (``scancel``; :mod:`~aiida_ilmlff.workflows.cancelled`): trained again from the
  start with ``resubmit_cancelled`` (the protocols' default), otherwise exit code 403 ``ERROR_JOB_CANCELLED``.

``TrainWorkChain`` (``ilmlff.train``) trains a committee of ``committee_size`` models (at least 2, default 4)
of one ``architecture`` that differ only by their seed, all on the same train/valid split (the one stratified
split of :mod:`aiida_ilmlff.sampling.split`, made once by the ``split_frames`` calcfunction when only
``valid_fraction`` is given). Every member runs the architecture's base work chain with the inputs of the
``member`` namespace (those of ``ilmlff.mace.train.base`` or ``ilmlff.deepmd.train.base``, frames excluded).
The models come back in ``models`` with the errors of each member and their spread in ``metrics``.

The protocols live here (``train/mace.yaml``, ``train/deepmd.yaml``, ``train/committee.yaml``), not on the
CalcJobs; each work chain can give them as plain values (``get_plain_protocol_inputs``).
"""

from __future__ import annotations

import functools
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
from plumpy.ports import PortNamespace

from aiida_ilmlff.calculations.deepmd import DeepmdTrainCalculation
from aiida_ilmlff.calculations.functions.frames import split_frames
from aiida_ilmlff.calculations.mace import MaceTrainCalculation
from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.sampling.split import train_valid_indices
from aiida_ilmlff.workflows.cancelled import CancelledJobMixin
from aiida_ilmlff.workflows.protocols import ProtocolMixin, UnknownOverrideError, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import check_code_plugin
from aiida_ilmlff.workflows.protocols.gpu import apply_gpu
from aiida_ilmlff.workflows.protocols.monitors import check_monitors, monitors_to_nodes
from aiida_ilmlff.workflows.protocols.plain import is_set_by_parent, to_plain

__all__ = (
    'ARCHITECTURES',
    'MIN_COMMITTEE_SIZE',
    'DeepmdTrainBaseWorkChain',
    'MaceTrainBaseWorkChain',
    'TrainWorkChain',
)

ARCHITECTURES = ('mace', 'deepmd')
#: The smallest committee: the force deviation between members is the uncertainty of active learning and of
#: the committee metrics, and one model has none.
MIN_COMMITTEE_SIZE = 2
#: Frames per split of a training job (see ``BaseTrainCalculation``).
MIN_SPLIT_FRAMES = 2


def _load_code(code: t.Any) -> t.Any:
    return orm.load_code(code) if isinstance(code, (str, int)) else code


class _TrainBaseWorkChain(ProtocolMixin, CancelledJobMixin, BaseRestartWorkChain):
    """Restart logic and protocols shared by the MACE and DeePMD base work chains (not a plugin itself)."""

    _namespace: t.ClassVar[str] = ''
    _plugin: t.ClassVar[str] = ''
    _lr_key: t.ClassVar[str] = ''
    _lr_default: t.ClassVar[float] = 0.0
    #: Where the CalcJob takes its device (``gpu`` option), or ``None``.
    _gpu_device: t.ClassVar[tuple[str, str] | None] = None

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

    # ------------------------------------------------------------------ protocols

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        options: t.Mapping | None = None,
        seed: int | None = None,
    ) -> dict:
        """The protocol inputs as plain values: ``max_iterations``, ``resubmit_cancelled`` and the CalcJob namespace
        (``parameters``, ``valid_fraction``, ``metadata.options``), without code and frames.

        :param overrides: nested like the inputs, e.g. ``{'mace': {'parameters': {'lr': 5e-3}}}``.
        :param options: merged into ``metadata.options``. :param seed: the training seed (parameters ``seed``).
        The meta input ``gpu`` (``overrides={'gpu': {'gres': 'gpu:1'}}``, see
        :mod:`aiida_ilmlff.workflows.protocols.gpu`) is applied to the CalcJob namespace and removed.
        :raises ValueError: an unknown protocol or override key, a bad ``gpu`` option.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        calc = inputs.setdefault(cls._namespace, {})
        apply_gpu(calc, inputs.pop('gpu', None), cls._gpu_device)
        if options:
            calc['metadata'] = recursive_merge(calc.get('metadata') or {}, {'options': dict(options)})
        if seed is not None:
            calc.setdefault('parameters', {})[cls._process_class.SEED_KEY] = int(seed)
        return inputs

    @classmethod
    def check_plain_inputs(cls, values: t.Mapping, where: str = '') -> str | None:
        """Plain-value checks of the inputs (the code's plugin, the parameters schema); ``None`` when fine.

        :param where: the namespace of ``values`` in a parent (e.g. ``member``), prefixed to the input names.
        """
        values = to_plain(values)
        calc = values.get(cls._namespace) or {}
        prefix = f'{where}.{cls._namespace}' if where else cls._namespace
        message = check_code_plugin(calc.get('code'), cls._plugin, f'{prefix}.code')
        if message:
            return message
        parameters = calc.get('parameters')
        if parameters is not None:
            message = cls._process_class.SCHEMA.validate(parameters, cls._process_class.__name__)
            if message:
                return f'`{prefix}.parameters`: {message}'
        return check_monitors(calc.get('monitors'), f'{prefix}.monitors')

    @classmethod
    def plain_inputs_to_nodes(cls, code: orm.AbstractCode, inputs: t.Mapping) -> dict:
        """The plain inputs of :meth:`get_plain_protocol_inputs` as nodes (no frames), with ``code`` set.

        :raises ValueError: a code of another plugin (the message names the key) or a bad parameter.
        """
        calc = dict(inputs.get(cls._namespace) or {})
        message = cls.check_plain_inputs({cls._namespace: {**calc, 'code': code}})
        if message:
            raise ValueError(message)
        namespace: dict[str, t.Any] = {'code': code, 'parameters': orm.Dict(dict(calc.get('parameters') or {}))}
        if calc.get('valid_fraction') is not None:
            namespace['valid_fraction'] = orm.Float(calc['valid_fraction'])
        if calc.get('metadata'):
            namespace['metadata'] = dict(calc['metadata'])
        monitors = monitors_to_nodes(calc.get('monitors'), f'{cls._namespace}.monitors')
        if monitors:
            namespace['monitors'] = monitors
        nodes: dict[str, t.Any] = {cls._namespace: namespace}
        if inputs.get('max_iterations') is not None:
            nodes['max_iterations'] = orm.Int(inputs['max_iterations'])
        if inputs.get('resubmit_cancelled') is not None:
            nodes['resubmit_cancelled'] = orm.Bool(inputs['resubmit_cancelled'])
        return nodes

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode | str,
        train_frames: FramesData,
        *,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        valid: FramesData | None = None,
        test: FramesData | None = None,
        seed: int | None = None,
        **kwargs: t.Any,
    ):
        """A builder training one model on ``train_frames`` with the hyperparameters of ``protocol``.

        :param code: the training code (``mace-train`` for MACE, ``dp`` for DeePMD) or its label.
        :param train_frames: labelled FramesData.
        :param protocol: ``fast`` (tiny, minutes on 2 cores), ``balanced`` or ``stringent``.
        :param overrides: nested like the inputs, e.g. ``{'mace': {'parameters': {'lr': 5e-3}}}``.
        :param options: ``metadata.options`` of the training jobs.
        :param valid: optional validation FramesData (else the protocol's ``valid_fraction`` of ``train_frames``).
        :param test: optional test FramesData. :param seed: training seed (overrides the protocol's).
        :raises ValueError: an unknown protocol or override key, a code of another plugin.
        """
        inputs = cls.get_plain_protocol_inputs(protocol, overrides, options=options, seed=seed)
        if valid is not None:
            inputs[cls._namespace].pop('valid_fraction', None)
        nodes = cls.plain_inputs_to_nodes(_load_code(code), inputs)
        calc = nodes[cls._namespace]
        calc['train'] = train_frames
        if valid is not None:
            calc['valid'] = valid
        if test is not None:
            calc['test'] = test
        calc.update(cls._extra_calc_inputs(**kwargs))
        builder = cls.get_builder()
        builder[cls._namespace] = calc
        if 'max_iterations' in nodes:
            builder.max_iterations = nodes['max_iterations']
        if 'resubmit_cancelled' in nodes:
            builder.resubmit_cancelled = nodes['resubmit_cancelled']
        return builder

    @classmethod
    def _extra_calc_inputs(cls, **kwargs: t.Any) -> dict:
        if kwargs:
            raise ValueError(f'{cls.__name__}.get_builder_from_protocol: unexpected argument(s) {sorted(kwargs)}')
        return {}

    # ------------------------------------------------------------------ outline

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
    """Train one MACE model (``ilmlff.mace.train``) with restarts on NaN loss and walltime (``train/mace.yaml``)."""

    _process_class = MaceTrainCalculation
    _protocol_file = 'train/mace.yaml'
    _namespace = 'mace'
    _plugin = 'ilmlff.mace.train'
    _lr_key = 'lr'
    _lr_default = 0.01
    _gpu_device = ('parameters', 'device')

    @classmethod
    def _extra_calc_inputs(cls, *, foundation_model: MLFFModelData | None = None, **kwargs: t.Any) -> dict:
        """``foundation_model=``: a MACE model to fine-tune."""
        extra = super()._extra_calc_inputs(**kwargs)
        if foundation_model is not None:
            extra['foundation_model'] = foundation_model
        return extra


class DeepmdTrainBaseWorkChain(_TrainBaseWorkChain):
    """Train one DeePMD model (``ilmlff.deepmd.train``) with restarts on NaN loss and walltime (train/deepmd.yaml)."""

    _process_class = DeepmdTrainCalculation
    _protocol_file = 'train/deepmd.yaml'
    _namespace = 'deepmd'
    _plugin = 'ilmlff.deepmd.train'
    _lr_key = 'start_lr'
    _lr_default = 1.0e-3


_BASE = {'mace': MaceTrainBaseWorkChain, 'deepmd': DeepmdTrainBaseWorkChain}
_FRAME_PORTS = ('train', 'valid', 'test', 'valid_fraction')


@functools.cache
def _member_namespace(architecture: str) -> PortNamespace:
    """The ports of one member: the base work chain's inputs without the frames (set by the committee)."""
    base = _BASE[architecture]
    namespace = PortNamespace('member')
    namespace.absorb(base.spec().inputs, exclude=tuple(f'{base._namespace}.{port}' for port in _FRAME_PORTS))
    return namespace


def check_inputs(values: t.Mapping, context: t.Mapping | None = None) -> str | None:
    """Checks of the committee inputs as plain values (nodes for the frames and codes); ``None`` when fine.

    A committee of at least :data:`MIN_COMMITTEE_SIZE`; seeds consistent with its size; ``member`` holds the
    inputs of the ``architecture``'s base work chain (its code of the right plugin, parameters in the schema);
    enough frames for the split; then the training CalcJob's own cross-checks with the frames.

    :param context: what a parent sets at run time: ``architecture``, ``train`` (a FramesData, or
        :data:`~aiida_ilmlff.workflows.protocols.plain.SET_BY_PARENT`).
    """
    plain = {**to_plain(values), **(context or {})}
    architecture = plain.get('architecture', 'mace')
    if architecture not in ARCHITECTURES:
        return f'`architecture` must be one of {list(ARCHITECTURES)}, got {architecture!r}'
    size = plain.get('committee_size', 4)
    if size < MIN_COMMITTEE_SIZE:
        return (
            f'`committee_size` is {size}: a committee needs at least {MIN_COMMITTEE_SIZE} models (their spread is '
            'the uncertainty it reports); train a single model with ilmlff.mace.train.base / ilmlff.deepmd.train.base'
        )
    seeds = plain.get('seeds')
    if seeds is not None:
        if len(seeds) != size or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
            return f'`seeds` must be {size} distinct integers (one per committee member), got {seeds}'
    base = _BASE[architecture]
    member = values.get('member') or {}
    if base._namespace not in member:
        other = [name for name in ARCHITECTURES if name != architecture and name in member]
        hint = f' (it holds `{other[0]}` inputs: set `architecture` to `{other[0]}`)' if other else ''
        return f'`member.{base._namespace}`: give the inputs of {base.__name__} for every member{hint}'
    message = _member_namespace(architecture).validate(member)
    if message is not None:
        return str(message)
    message = base.check_plain_inputs(member, 'member')
    if message:
        return message
    train = plain.get('train')
    if train is None or is_set_by_parent(train):
        return None
    valid_fraction = plain.get('valid_fraction', 0.1)
    if 'valid' not in plain:
        try:
            train_valid_indices(train.origins, valid_fraction, 0, min_frames=MIN_SPLIT_FRAMES)
        except ValueError as exception:
            return str(exception)
    calc_inputs = dict(member[base._namespace])
    calc_inputs.update({name: values[name] for name in ('train', 'valid', 'test') if name in values})
    if 'valid' not in calc_inputs:
        calc_inputs['valid_fraction'] = orm.Float(valid_fraction)
    return base._process_class._validate_inputs(calc_inputs, None)


def validate_inputs(inputs: t.Mapping, _: t.Any = None) -> str | None:
    """Port validator of ``ilmlff.train``: :func:`check_inputs`."""
    return check_inputs(inputs)


def validate_committee_size(value: orm.Int | None, _: t.Any = None) -> str | None:
    """Port validator: at least :data:`MIN_COMMITTEE_SIZE` members."""
    if value is not None and value.value < MIN_COMMITTEE_SIZE:
        return (
            f'`committee_size` is {value.value}: a committee needs at least {MIN_COMMITTEE_SIZE} models (their '
            'spread is the uncertainty it reports)'
        )
    return None


class TrainWorkChain(ProtocolMixin, WorkChain):
    """A committee of MLFF models of one architecture, differing only by their seed (``ilmlff.train``).

    Inputs: the frames (``train``, optional ``valid``/``test`` or ``valid_fraction``), ``committee_size``
    (>= 2, default 4), optional ``seeds`` (default: the member's parameters ``seed`` + k), ``architecture``
    (``mace`` or ``deepmd``) and ``member``: the inputs of that architecture's base work chain
    (``ilmlff.mace.train.base`` / ``ilmlff.deepmd.train.base``) without the frames, e.g.
    ``member.mace.parameters`` or ``member.deepmd.parameters``.
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
            help='Without `valid`: the fraction of `train` split off once (stratified by origin, calcfunction '
            'split_frames) for every member (default 0.1).',
        )
        spec.input('split_seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seed of the train/valid split.')
        spec.input(
            'committee_size',
            valid_type=orm.Int,
            default=lambda: orm.Int(4),
            validator=validate_committee_size,
            help=f'Number of models in the committee (at least {MIN_COMMITTEE_SIZE}).',
        )
        spec.input(
            'seeds',
            valid_type=orm.List,
            required=False,
            help='One distinct integer seed per member (default: parameters seed + 0, 1, 2, ...).',
        )
        spec.input(
            'architecture',
            valid_type=orm.Str,
            default=lambda: orm.Str('mace'),
            help=f'The architecture of every member: one of {list(ARCHITECTURES)}.',
        )
        spec.input_namespace(
            'member',
            dynamic=True,
            populate_defaults=False,
            help='Inputs of the base work chain run for each member (ilmlff.mace.train.base for `mace`, '
            'ilmlff.deepmd.train.base for `deepmd`), frames excluded: `max_iterations` and `mace.{code, '
            'parameters, metadata, ...}` or `deepmd.{...}`. Checked against that work chain by the input validator.',
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
            401,
            'ERROR_SUB_PROCESS_FAILED_MEMBER',
            message='Members {members} failed; the others are in the outputs.',
        )
        spec.exit_code(402, 'ERROR_SUB_PROCESS_FAILED_ALL_MEMBERS', message='Every committee member failed.')
        spec.exit_code(410, 'ERROR_NAN_LOSS', message='Members {members} kept a NaN/inf loss after lr halving.')

    # ------------------------------------------------------------------ protocols

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        architecture: str = 'mace',
        options: t.Mapping | None = None,
        committee_size: int | None = None,
    ) -> dict:
        """The committee's protocol inputs as plain values (no frames, no code).

        ``member`` holds the plain inputs of the architecture's base work chain for the same protocol
        (:meth:`_TrainBaseWorkChain.get_plain_protocol_inputs`), with ``overrides['member']`` merged there (and
        checked there; an unknown key is reported with its full path, ``member....``).

        :raises ValueError: an unknown protocol, architecture or override key; a committee of fewer than 2.
        """
        if architecture not in ARCHITECTURES:
            raise ValueError(f'`architecture` must be one of {list(ARCHITECTURES)}, got {architecture!r}')
        overrides = dict(overrides or {})
        member_overrides = overrides.pop('member', None)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        try:
            member = _BASE[architecture].get_plain_protocol_inputs(protocol, member_overrides, options=options)
        except UnknownOverrideError as exception:
            raise exception.prefixed('member') from None
        member[_BASE[architecture]._namespace].pop('valid_fraction', None)  # the committee splits once
        inputs['member'] = member
        inputs['architecture'] = architecture
        if committee_size is not None:
            inputs['committee_size'] = int(committee_size)
        if int(inputs['committee_size']) < MIN_COMMITTEE_SIZE:
            raise ValueError(validate_committee_size(orm.Int(int(inputs['committee_size']))))
        return inputs

    @classmethod
    def plain_inputs_to_nodes(cls, code: orm.AbstractCode, inputs: t.Mapping) -> dict:
        """The plain inputs of :meth:`get_plain_protocol_inputs` as nodes (no frames), with the members' code.

        :raises ValueError: a code of another plugin than the architecture's (the message names the key).
        """
        architecture = inputs['architecture']
        nodes = {
            'architecture': orm.Str(architecture),
            'committee_size': orm.Int(inputs['committee_size']),
            'split_seed': orm.Int(inputs.get('split_seed', 0)),
            'valid_fraction': orm.Float(inputs.get('valid_fraction', 0.1)),
        }
        try:
            nodes['member'] = _BASE[architecture].plain_inputs_to_nodes(code, inputs['member'])
        except ValueError as exception:
            raise ValueError(str(exception).replace('`', '`member.', 1)) from None
        return nodes

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode | str,
        train_frames: FramesData,
        *,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        architecture: str = 'mace',
        valid: FramesData | None = None,
        test: FramesData | None = None,
        committee_size: int | None = None,
    ):
        """A builder for a committee of ``architecture`` models (protocols of train/committee.yaml and the
        member protocol of the same name, train/mace.yaml or train/deepmd.yaml).

        :param code: the training code (``mace-train``, plugin ``ilmlff.mace.train``, for MACE; ``dp``, plugin
            ``ilmlff.deepmd.train``, for DeePMD) or its label.
        :param train_frames: labelled FramesData. :param valid: / :param test: optional FramesData.
        :param protocol: ``fast``, ``balanced`` or ``stringent``.
        :param overrides: ``{'committee_size': ..., 'valid_fraction': ..., 'member': {'max_iterations': ...,
            'mace': {'parameters': {...}}}}`` merged over the protocol; ``member`` goes to every member.
        :param options: ``metadata.options`` of the training jobs.
        :param architecture: ``mace`` or ``deepmd``. :param committee_size: overrides the protocol's (>= 2).
        :raises ValueError: an unknown protocol, architecture or override key, a code of another plugin, a
            committee of fewer than 2.
        """
        inputs = cls.get_plain_protocol_inputs(
            protocol, overrides, architecture=architecture, options=options, committee_size=committee_size
        )
        builder = cls.get_builder()
        for key, value in cls.plain_inputs_to_nodes(_load_code(code), inputs).items():
            builder[key] = value
        builder.train = train_frames
        if valid is not None:
            builder.valid = valid
            builder.pop('valid_fraction', None)
        if test is not None:
            builder.test = test
        return builder

    # ------------------------------------------------------------------ outline

    def setup(self):
        """Pick the architecture and the frames of each split."""
        self.ctx.architecture = self.inputs.architecture.value
        self.ctx.frames = {name: self.inputs[name] for name in ('train', 'valid', 'test') if name in self.inputs}

    def should_split(self):
        """Whether the work chain must split off the validation frames."""
        return 'valid' not in self.inputs

    def split(self):
        """Split ``train`` once (stratified by origin), so that every member sees the same frames."""
        fraction = self.inputs.valid_fraction.value if 'valid_fraction' in self.inputs else 0.1
        result = split_frames(
            self.inputs.train,
            orm.List([1.0 - fraction, fraction]),
            self.inputs.split_seed,
            orm.Bool(True),
            metadata={'call_link_label': 'split_frames'},
        )
        self.ctx.frames.update(train=result['train'], valid=result['valid'])
        self.out('split', {'train': result['train'], 'valid': result['valid']})

    def _seeds(self, parameters: dict) -> list[int]:
        if 'seeds' in self.inputs:
            return [int(s) for s in self.inputs.seeds.get_list()]
        base = int(parameters.get('seed', 0))
        return [base + k for k in range(self.inputs.committee_size.value)]

    @staticmethod
    def _as_dict(value: t.Any) -> t.Any:
        if isinstance(value, t.Mapping):
            return {key: TrainWorkChain._as_dict(item) for key, item in value.items()}
        return value

    def run_committee(self):
        """Submit one base work chain per member, with its own seed."""
        base = _BASE[self.ctx.architecture]
        member = self._as_dict(self.inputs.member)
        for k, seed in enumerate(self._seeds(member[base._namespace]['parameters'].get_dict())):
            inputs = AttributeDict(self._as_dict(member))
            calc_inputs = AttributeDict(inputs[base._namespace])
            calc_inputs.update(self.ctx.frames)
            parameters = calc_inputs.parameters.get_dict()
            parameters['seed'] = seed
            calc_inputs.parameters = orm.Dict(parameters)
            inputs[base._namespace] = calc_inputs
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
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_ALL_MEMBERS
        self.out('models', models)
        self.out('metrics', committee_metrics(**member_metrics))
        if nan:
            return self.exit_codes.ERROR_NAN_LOSS.format(members=nan)
        if failed:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_MEMBER.format(members=failed)
        return None


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
