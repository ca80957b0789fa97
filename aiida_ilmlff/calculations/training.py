"""What the MLFF training CalcJobs (``ilmlff.mace.train``, ``ilmlff.deepmd.train``) share.

Inputs: the ``train`` frames, optional ``valid`` and ``test`` frames or a ``valid_fraction`` of ``train``
split off in ``prepare_for_submission`` (the one stratified split,
:func:`aiida_ilmlff.sampling.split.train_valid_indices`, seeded by the training seed, recorded in the ``metrics``
output), a ``parameters`` Dict
checked against a per-code schema (:class:`ParameterSchema`), an optional ``parent_folder`` to continue
from the checkpoints of an interrupted run, and the exit codes every trainer uses. Nothing here imports
torch, mace, deepmd or tensorflow.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t

from aiida import orm
from aiida.engine import CalcJob

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.sampling.split import train_valid_indices

__all__ = ('SPLIT_FILE', 'STRESS_MODES', 'BaseTrainCalculation', 'Option', 'ParameterSchema', 'stress_decision')

#: JSON file written beside the inputs: the frame counts and, for a ``valid_fraction`` split, the indices.
SPLIT_FILE = 'ilmlff_split.json'
MIN_FRAMES = 2

#: Values of the ``train_stress`` parameter of both training CalcJobs: ``on`` (the loss settings as given; a stress
#: or virial weight > 0 with no stress label in ``train`` is refused before submission), ``auto`` (as given when
#: at least one frame of ``train`` has a stress, else the stress/virial term is dropped: the protocols' default) and
#: ``off`` (the stress/virial term is always dropped). Absent means ``on``.
STRESS_MODES = ('auto', 'on', 'off')


def stress_decision(train: FramesData, weighted: bool, mode: str | None, weight_name: str) -> tuple[bool, str | None]:
    """Whether a training job fits the stress (virial) term, or why its inputs are refused.

    :param train: the ``train`` frames (their ``n_stress`` attribute: frames with a stress label).
    :param weighted: whether the loss settings give the stress (virial) term a weight > 0.
    :param mode: ``train_stress`` (:data:`STRESS_MODES`; ``None`` means ``on``).
    :param weight_name: the parameter(s) that weigh the term, named in the error message.
    :returns: ``(use_stress, error)``: ``error`` is a message for the validator or ``None``. Frames without a
        stress in a mixed set never contribute to the term (MACE weighs them 0, DeePMD's ``find_virial`` is 0 for
        the systems written without ``virial.npy``).
    """
    mode = mode or 'on'
    has_stress = int(train.base.attributes.get('n_stress', 0) or 0) > 0
    if mode == 'off' or not weighted:
        return False, None
    if has_stress:
        return True, None
    if mode == 'auto':
        return False, None
    return False, (
        f'{weight_name} > 0 but no frame of `train` has a stress label ({train.n_frames} frames, n_stress 0): label '
        'the frames with `compute_stress` (ilmlff.label), set the stress/virial weight to 0, or set `train_stress` '
        "to 'auto' (train the stress only where the data have it)"
    )


@dataclasses.dataclass(frozen=True)
class Option:
    """One accepted key of a training ``parameters`` Dict.

    :param types: accepted Python types (``bool`` is never accepted for ``int``/``float``).
    :param help: one line for the docs and the error messages.
    :param choices: allowed values, or ``None``.
    :param minimum: smallest allowed value for numbers (inclusive), or ``None``.
    """

    types: tuple[type, ...]
    help: str
    choices: tuple | None = None
    minimum: float | None = None

    def check(self, name: str, value: t.Any) -> str | None:
        """Return an error message for ``value``, or ``None`` when it is acceptable."""
        numeric = set(self.types) & {int, float}
        if isinstance(value, bool) and bool not in self.types:
            return f'`{name}` must be {self._type_names()}, got a bool'
        if not isinstance(value, self.types):
            if numeric and float in self.types and isinstance(value, int):
                pass
            else:
                return f'`{name}` must be {self._type_names()}, got {type(value).__name__} {value!r}'
        if self.choices is not None and value not in self.choices:
            return f'`{name}` must be one of {list(self.choices)}, got {value!r}'
        if self.minimum is not None and isinstance(value, (int, float)) and value < self.minimum:
            return f'`{name}` must be >= {self.minimum}, got {value!r}'
        return None

    def _type_names(self) -> str:
        return ' or '.join(tp.__name__ for tp in self.types)


class ParameterSchema(dict):
    """Mapping ``name -> Option`` that validates a parameters dictionary."""

    def validate(self, parameters: t.Mapping, what: str) -> str | None:
        """Return one message listing every unknown key and bad value, or ``None`` when all is well."""
        errors = []
        unknown = sorted(set(parameters) - set(self))
        if unknown:
            errors.append(f'unknown {what} parameter(s) {unknown}; accepted: {sorted(self)}')
        for name, value in parameters.items():
            if name in self:
                message = self[name].check(name, value)
                if message:
                    errors.append(message)
        return '; '.join(errors) if errors else None

    def describe(self) -> str:
        """Markdown table of the accepted keys (used in the docs)."""
        rows = ['| key | type | meaning |', '|---|---|---|']
        for name, option in sorted(self.items()):
            kinds = '/'.join(tp.__name__ for tp in option.types)
            rows.append(f'| `{name}` | {kinds} | {option.help} |')
        return '\n'.join(rows)


def _frames_problem(port: str, frames: FramesData) -> str | None:
    if frames.n_frames < MIN_FRAMES:
        return f'`{port}` has {frames.n_frames} frame(s): a split needs at least {MIN_FRAMES}'
    if not frames.base.attributes.get('labelled', False):
        return (
            f'`{port}` is not fully labelled ({frames.base.attributes.get("n_labelled", 0)} of '
            f'{frames.n_frames} frames have energy and forces): label it first (ilmlff.label)'
        )
    return None


def _frames_validator(port: str) -> t.Callable:
    """Port validator for ``port``: at least 2 frames, every frame labelled with energy and forces."""

    def validator(value: FramesData | None, _) -> str | None:
        return None if value is None else _frames_problem(port, value)

    return validator


def validate_valid_fraction(value: orm.Float | None, _) -> str | None:
    """Port validator: ``0 < valid_fraction < 1``."""
    if value is not None and not 0.0 < value.value < 1.0:
        return f'`valid_fraction` must be between 0 and 1 (exclusive), got {value.value}'
    return None


class BaseTrainCalculation(CalcJob):
    """Common inputs, validation, split and exit codes of the MLFF training CalcJobs (not a plugin itself).

    Subclasses define :attr:`SCHEMA` (their parameters), :attr:`SEED_KEY` and implement
    ``prepare_for_submission``, calling :meth:`get_splits` to obtain the frames of each split.
    """

    SCHEMA: t.ClassVar[ParameterSchema] = ParameterSchema()
    SEED_KEY: t.ClassVar[str] = 'seed'
    _DEFAULT_SEED = 0

    @classmethod
    def define(cls, spec):
        """Define the shared ports and exit codes."""
        super().define(spec)
        spec.input(
            'train',
            valid_type=FramesData,
            validator=_frames_validator('train'),
            help='Labelled training frames (energy [eV] and forces [eV/Å] on every frame; >= 2 frames).',
        )
        spec.input(
            'valid',
            valid_type=FramesData,
            required=False,
            validator=_frames_validator('valid'),
            help='Labelled validation frames (>= 2). When omitted, `valid_fraction` of `train` is split off.',
        )
        spec.input(
            'test',
            valid_type=FramesData,
            required=False,
            validator=_frames_validator('test'),
            help='Labelled test frames (>= 2), never used for training; their errors are reported.',
        )
        spec.input(
            'valid_fraction',
            valid_type=orm.Float,
            required=False,
            validator=validate_valid_fraction,
            help='Fraction of `train` held out for validation when `valid` is not given (default 0.1); the '
            'split is stratified by origin, seeded by the `seed` parameter and recorded in the `metrics` output.',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=cls._validate_parameters,
            help='Training hyperparameters; the accepted keys and their meaning are listed in docs/training.md.',
        )
        spec.input(
            'parent_folder',
            valid_type=orm.RemoteData,
            required=False,
            help='Remote folder of an interrupted run of the same training (same parameters and seed): its '
            'checkpoints are copied and training continues from the latest one.',
        )
        spec.inputs.validator = cls._validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {
            'num_machines': 1,
            'num_mpiprocs_per_machine': 1,
        }
        spec.inputs['metadata']['options']['withmpi'].default = False

        spec.output('metrics', valid_type=orm.Dict, help='Final errors per split (see docs/training.md).')
        spec.output('learning_curve', valid_type=orm.ArrayData, help='Losses and errors during training.')
        spec.default_output_node = 'metrics'

        spec.exit_code(
            300, 'ERROR_NO_RETRIEVED_FOLDER', message='The retrieved folder is missing.', invalidates_cache=True
        )
        spec.exit_code(
            310, 'ERROR_MISSING_LOG', message='The training log `{filename}` is missing.', invalidates_cache=True
        )
        spec.exit_code(311, 'ERROR_MISSING_LEARNING_CURVE', message='The learning-curve file `{filename}` is missing.')
        spec.exit_code(312, 'ERROR_MISSING_MODEL', message='Training ended but the model file `{filename}` is missing.')
        spec.exit_code(
            313, 'ERROR_MISSING_EVALUATION', message='The evaluation of the trained model is missing: {detail}'
        )
        spec.exit_code(320, 'ERROR_TRAINING_FAILED', message='Training failed: {detail}')
        spec.exit_code(400, 'ERROR_OUT_OF_WALLTIME', message='Training was stopped by the walltime limit.')
        spec.exit_code(
            410,
            'ERROR_NAN_LOSS',
            message='The loss became NaN or infinite ({detail}): lower the learning rate.',
        )

    # ------------------------------------------------------------------ validation

    @classmethod
    def _validate_parameters(cls, value: orm.Dict | None, _) -> str | None:
        if value is None:
            return None
        return cls.SCHEMA.validate(value.get_dict(), cls.__name__)

    @classmethod
    def _validate_inputs(cls, inputs: t.Mapping, _) -> str | None:
        """Cross-port checks: the split sizes; subclasses add theirs through :meth:`validate_extra`."""
        train = inputs.get('train')
        parameters = inputs.get('parameters')
        if train is None or parameters is None:
            return None
        if 'valid' not in inputs:
            fraction = inputs['valid_fraction'].value if 'valid_fraction' in inputs else 0.1
            try:
                train_valid_indices(train.origins, fraction, 0, min_frames=MIN_FRAMES)
            except ValueError as exception:
                return str(exception)
        elif 'valid_fraction' in inputs:
            return 'give either `valid` or `valid_fraction`, not both'
        parent, code = inputs.get('parent_folder'), inputs.get('code')
        if parent is not None and code is not None and code.computer is not None:
            if parent.computer.uuid != code.computer.uuid:
                return (
                    f'`parent_folder` is on computer `{parent.computer.label}` but the code runs on '
                    f'`{code.computer.label}`: checkpoints can only be continued on the same computer'
                )
        return cls.validate_extra(inputs)

    @classmethod
    def validate_extra(cls, inputs: t.Mapping) -> str | None:
        """Architecture-specific cross-port checks (override)."""
        return None

    # ------------------------------------------------------------------ helpers for prepare_for_submission

    def get_seed(self) -> int:
        """The training seed (parameters ``seed``, default 0)."""
        return int(self.inputs.parameters.get_dict().get(self.SEED_KEY, self._DEFAULT_SEED))

    def get_splits(self) -> tuple[dict[str, FramesData], dict]:
        """Frames of each split (``train``, ``valid`` and ``test`` when given) and the split record.

        With ``valid_fraction`` the held-out frames are selected (unstored, written only to the job folder);
        the record holds their indices in ``train``, so the split can be rebuilt from the inputs.
        """
        record: dict[str, t.Any] = {}
        if 'valid' in self.inputs:
            splits = {'train': self.inputs.train, 'valid': self.inputs.valid}
        else:
            fraction = self.inputs.valid_fraction.value if 'valid_fraction' in self.inputs else 0.1
            train_indices, valid_indices = train_valid_indices(
                self.inputs.train.origins, fraction, self.get_seed(), min_frames=MIN_FRAMES
            )
            splits = {
                'train': self.inputs.train.select(train_indices),
                'valid': self.inputs.train.select(valid_indices),
            }
            record.update(valid_fraction=fraction, train_indices=train_indices, valid_indices=valid_indices)
        if 'test' in self.inputs:
            splits['test'] = self.inputs.test
        record['n_frames'] = {name: int(frames.n_frames) for name, frames in splits.items()}
        return splits, record

    @staticmethod
    def elements_of(splits: t.Mapping[str, FramesData]) -> list[str]:
        """Sorted union of the elements of every split."""
        return sorted(set().union(*(frames.elements for frames in splits.values())))

    @staticmethod
    def split_json(record: dict) -> str:
        """The split record as JSON text."""
        return json.dumps(record, indent=1)
