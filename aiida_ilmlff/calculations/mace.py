"""``ilmlff.mace.train``: train (or fine-tune) a MACE model with ``mace_run_train`` (mace-torch 0.3.16).

The job folder gets ``train.xyz``, ``valid.xyz`` (and ``test.xyz``), written from the FramesData inputs with
the MACE keys (``REF_energy`` [eV], ``REF_forces`` [eV/Å], ``REF_stress``, ``config_type`` = origin).
``mace_run_train`` writes the deployable ``mace.model`` (``mace_stagetwo.model`` with SWA), ``logs/`` and
``results/``. Then ``mace_eval_configs`` (the executable beside ``mace_run_train``, same environment)
evaluates that very model file, in the training dtype, on every split; the parser turns those predictions
into the final errors, so the reported metrics are those of the stored model, to full precision, per element.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import typing as t

from aiida import orm
from aiida.common import datastructures

from aiida_ilmlff.calculations.training import (
    SPLIT_FILE,
    STRESS_MODES,
    BaseTrainCalculation,
    Option,
    ParameterSchema,
    stress_decision,
)
from aiida_ilmlff.data import MLFFModelData

__all__ = ('MaceTrainCalculation',)

NAME = 'mace'
EVAL_INPUT = 'eval_input.xyz'
EVAL_OUTPUT = 'eval_output.xyz'
EVAL_LOG = 'eval.log'
FOUNDATION_FILE = 'foundation.model'
#: The E0s step of a fine-tune (:mod:`aiida_ilmlff.runner.mace_e0s`, copied into the job folder) and its record.
E0S_SCRIPT = 'mace_e0s.py'
E0S_RECORD = 'e0s.json'
E0S_LOG = 'e0s.log'

_POSITIVE_INT = (int,)
_NUMBER = (float, int)

#: The keys accepted in ``parameters``; each maps onto the ``mace_run_train`` option of the same name.
SCHEMA = ParameterSchema(
    {
        'model': Option((str,), 'model class', choices=('MACE', 'ScaleShiftMACE')),
        'r_max': Option(
            _NUMBER, 'cutoff radius [Å] (ignored when fine-tuning: the foundation model sets it)', minimum=1.0
        ),
        'num_channels': Option(_POSITIVE_INT, 'channels of the hidden irreps', minimum=1),
        'max_L': Option(_POSITIVE_INT, 'highest irrep order of the messages (0 = invariant)', choices=(0, 1, 2, 3)),
        'max_ell': Option(_POSITIVE_INT, 'highest order of the spherical harmonics', minimum=1),
        'correlation': Option(_POSITIVE_INT, 'correlation order of the product basis', minimum=1),
        'num_interactions': Option(_POSITIVE_INT, 'message-passing layers', minimum=1),
        'num_radial_basis': Option(_POSITIVE_INT, 'radial basis functions', minimum=1),
        'num_cutoff_basis': Option(_POSITIVE_INT, 'cutoff basis functions', minimum=1),
        'radial_MLP': Option((list,), 'hidden layer widths of the radial MLP, e.g. [64, 64, 64]'),
        'E0s': Option(
            (dict, str),
            "isolated-atom energies [eV] as {symbol: energy}; or 'average' (least-squares fit to the "
            "training energies, the default, logged as a warning) or, when fine-tuning, 'foundation' (the foundation "
            "model's own) or 'estimated' (the foundation's E0s corrected by a least-squares fit of its energy errors "
            "on the training frames: mace's choice when the foundation was trained at another level of theory or on "
            'another chemistry)',
        ),
        'loss': Option(
            (str,),
            "loss function: 'stress' (MSE of energy per atom, forces and stress; the protocols' choice), "
            "'weighted'/'ef' (energy and forces), 'huber'/'universal' (Huber terms incl. stress), 'forces_only'",
            choices=('weighted', 'ef', 'forces_only', 'stress', 'huber', 'universal'),
        ),
        'energy_weight': Option(_NUMBER, 'weight of the energy term of the loss', minimum=0.0),
        'forces_weight': Option(_NUMBER, 'weight of the forces term of the loss', minimum=0.0),
        'stress_weight': Option(
            _NUMBER,
            'weight of the stress term [per (eV/Å^3)^2] (losses stress/huber/universal; mace default 1.0); frames '
            'without REF_stress get a stress weight 0 in MACE, so a mixed set adds no fake zero stress',
            minimum=0.0,
        ),
        'train_stress': Option(
            (str,),
            "'on' (the loss as given; a stress weight > 0 with no stress label in `train` is refused), 'auto' (the "
            "stress term only when a frame of `train` has a stress; the protocols' default), 'off' (never); not a "
            'mace_run_train option',
            choices=STRESS_MODES,
        ),
        'config_type_weights': Option((dict,), 'energy weight per config_type (origin), e.g. {"EQ": 1.0, "nEQ": 0.5}'),
        'max_num_epochs': Option(_POSITIVE_INT, 'number of epochs', minimum=1),
        'patience': Option(_POSITIVE_INT, 'epochs without validation improvement before stopping', minimum=1),
        'batch_size': Option(_POSITIVE_INT, 'training batch size [frames]', minimum=1),
        'valid_batch_size': Option(_POSITIVE_INT, 'evaluation batch size [frames]', minimum=1),
        'lr': Option(_NUMBER, 'learning rate', minimum=0.0),
        'weight_decay': Option(_NUMBER, 'weight decay', minimum=0.0),
        'scheduler_patience': Option(_POSITIVE_INT, 'plateau scheduler patience [epochs]', minimum=0),
        'lr_factor': Option(_NUMBER, 'plateau scheduler factor', minimum=0.0),
        'clip_grad': Option(_NUMBER, 'gradient clipping norm', minimum=0.0),
        'ema': Option((bool,), 'exponential moving average of the weights (the saved model uses it)'),
        'ema_decay': Option(_NUMBER, 'EMA decay', minimum=0.0),
        'swa': Option((bool,), 'stage two (SWA): re-weighted loss from epoch start_swa; saves mace_stagetwo.model'),
        'start_swa': Option(_POSITIVE_INT, 'first stage-two epoch', minimum=0),
        'swa_lr': Option(_NUMBER, 'stage-two learning rate', minimum=0.0),
        'swa_energy_weight': Option(_NUMBER, 'stage-two energy weight', minimum=0.0),
        'swa_forces_weight': Option(_NUMBER, 'stage-two forces weight', minimum=0.0),
        'swa_stress_weight': Option(_NUMBER, 'stage-two stress weight (loss stress)', minimum=0.0),
        'eval_interval': Option(_POSITIVE_INT, 'validate every n epochs', minimum=1),
        'default_dtype': Option(
            (str,), 'floating-point precision of training and of the model', choices=('float32', 'float64')
        ),
        'seed': Option((int,), 'random seed (initialisation, shuffling, the valid_fraction split)', minimum=0),
        'device': Option((str,), 'device to train on', choices=('cpu', 'cuda')),
    }
)

#: Options always given to mace_run_train, never taken from ``parameters``.
FIXED_OPTIONS = {
    'name': NAME,
    'work_dir': '.',
    'energy_key': 'REF_energy',
    'forces_key': 'REF_forces',
    'stress_key': 'REF_stress',
    'error_table': 'PerAtomRMSE',
}
_FLAGS = ('ema', 'swa')


def stress_weighted(parameters: t.Mapping) -> bool:
    """Whether MACE ``parameters`` give the stress a weight > 0: loss ``stress``/``huber``/``universal`` and
    ``stress_weight`` > 0 (mace_run_train's default 1.0 when absent)."""
    return (
        parameters.get('loss') in ('stress', 'huber', 'universal') and float(parameters.get('stress_weight', 1.0)) > 0
    )


def _stress_evaluable(splits: t.Mapping) -> bool:
    """Whether ``mace_eval_configs --compute_stress`` can run and is useful: a frame has a stress and every frame is
    fully periodic (the stress needs a volume)."""
    import numpy as np

    frames = list(splits.values())
    if not any(int(f.base.attributes.get('n_stress', 0) or 0) for f in frames):
        return False
    return all(bool(np.all(f.pbcs)) for f in frames)


class MaceTrainCalculation(BaseTrainCalculation):
    """Train a MACE model with ``mace_run_train``; optional fine-tuning of a ``foundation_model``.

    Outputs: ``model`` (MLFFModelData: architecture ``mace``, backend ``torch``, elements, r_cut [Å], dtype,
    sha256, seed), ``metrics`` (Dict of errors per split in meV/atom and meV/Å, per element, the stress error
    ``stress_rmse`` [meV/Å^3] and ``pressure_rmse`` [kbar] over the frames with a stress, ``stress_trained``, plus
    MACE's own table), ``learning_curve`` (ArrayData per epoch). Exit codes: see :class:`BaseTrainCalculation` and
    docs/training.md.
    """

    SCHEMA = SCHEMA

    @classmethod
    def define(cls, spec):
        """Define the ports of the MACE training job."""
        super().define(spec)
        spec.input(
            'foundation_model',
            valid_type=MLFFModelData,
            required=False,
            help='A MACE model to fine-tune (a user-supplied foundation model such as MACE-MP-0, or any MACE '
            'model): passed as `--foundation_model`, with `--multiheads_finetuning=False` (plain fine-tune). '
            'Its elements must cover every element of the frames; it fixes r_max and the architecture.',
        )
        spec.input(
            'settings',
            valid_type=orm.Dict,
            required=False,
            help='Execution settings: `eval_executable` (path of `mace_eval_configs` on the computer; default: '
            'the one beside the training executable), `python_executable` (the Python of the MACE environment, '
            'for the E0s step of a fine-tune; default: `python` beside the training executable).',
        )
        spec.inputs['metadata']['options']['parser_name'].default = 'ilmlff.mace.train'
        spec.output('model', valid_type=MLFFModelData, help='The trained, deployable MACE model.')

    @classmethod
    def validate_extra(cls, inputs: t.Mapping) -> str | None:
        """Foundation-model and E0s checks that need several ports."""
        parameters = inputs['parameters'].get_dict()
        elements = set(inputs['train'].elements)
        for port in ('valid', 'test'):
            if port in inputs:
                elements |= set(inputs[port].elements)
        foundation = inputs.get('foundation_model')
        if foundation is not None:
            if foundation.architecture != 'mace':
                return f'`foundation_model` must be a MACE model, got architecture `{foundation.architecture}`'
            missing = sorted(elements - set(foundation.elements))
            if missing:
                return (
                    f'elements {missing} of the frames are missing from `foundation_model` (it covers '
                    f'{foundation.elements}): fine-tune a model that knows them, or train from scratch'
                )
        e0s = parameters.get('E0s')
        if isinstance(e0s, dict):
            missing = sorted(elements - set(e0s))
            bad = {k: v for k, v in e0s.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
            if bad:
                return f'`E0s` values must be energies in eV, got {bad}'
            if missing:
                return f'`E0s` lacks isolated-atom energies for {missing}: give one per element of the frames'
        elif isinstance(e0s, str) and e0s not in ('average', 'foundation', 'estimated'):
            return f"`E0s` must be a {{symbol: energy}} dict, 'average', 'foundation' or 'estimated', got {e0s!r}"
        elif e0s in ('foundation', 'estimated') and foundation is None:
            return f'`E0s`={e0s!r} needs a `foundation_model`'
        _, problem = stress_decision(
            inputs['train'], stress_weighted(parameters), parameters.get('train_stress'), '`parameters.stress_weight`'
        )
        return problem

    def use_stress(self) -> bool:
        """Whether this job fits the stress term (see :func:`~aiida_ilmlff.calculations.training.stress_decision`)."""
        parameters = self.inputs.parameters.get_dict()
        use, _ = stress_decision(self.inputs.train, stress_weighted(parameters), parameters.get('train_stress'), '')
        return use

    # ------------------------------------------------------------------ submission

    def model_filename(self) -> str:
        """The deployable model file: ``mace_stagetwo.model`` with SWA, else ``mace.model``."""
        return f'{NAME}_stagetwo.model' if self.inputs.parameters.get_dict().get('swa') else f'{NAME}.model'

    def _e0s_argument(self, e0s: t.Any) -> str:
        from ase.data import atomic_numbers

        if isinstance(e0s, dict):
            return json.dumps({atomic_numbers[symbol]: float(energy) for symbol, energy in e0s.items()})
        if e0s is None or e0s == 'average':
            self.logger.warning(
                'no isolated-atom energies (`E0s`) given: MACE fits average atomic energies to the training '
                "set ('average'); give `E0s` computed at the labelling level of theory for transferable models"
            )
            return 'average'
        return str(e0s)

    def build_cmdline(self, splits: t.Mapping) -> list[str]:
        """The ``mace_run_train`` arguments (``--key=value``) for this job."""
        parameters = dict(self.inputs.parameters.get_dict())
        options: dict[str, t.Any] = dict(FIXED_OPTIONS)
        options['seed'] = self.get_seed()
        options['device'] = parameters.pop('device', 'cpu')
        options['default_dtype'] = parameters.pop('default_dtype', 'float64')
        options['train_file'] = 'train.xyz'
        options['valid_file'] = 'valid.xyz'
        if 'test' in splits:
            options['test_file'] = 'test.xyz'
        options['E0s'] = self._e0s_argument(parameters.pop('E0s', None))
        parameters.pop('seed', None)
        parameters.pop('train_stress', None)
        if not self.use_stress():
            # no stress term: the energy-forces loss (or the Huber losses with a zero stress weight)
            if parameters.get('loss') in ('huber', 'universal'):
                parameters.update(stress_weight=0.0, swa_stress_weight=0.0)
            else:
                if parameters.get('loss') == 'stress':
                    parameters['loss'] = 'weighted'
                parameters.pop('stress_weight', None)
                parameters.pop('swa_stress_weight', None)
        if 'foundation_model' in self.inputs:
            options['foundation_model'] = FOUNDATION_FILE
            options['multiheads_finetuning'] = 'False'
            options['E0s'] = 'foundation'  # the E0s step has written the asked E0s into the foundation file
        for key, value in parameters.items():
            if key in _FLAGS:
                continue
            options[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        arguments = [f'--{key}={value}' for key, value in options.items()]
        arguments += [f'--{flag}' for flag in _FLAGS if parameters.get(flag)]
        arguments.append('--save_cpu')
        if 'parent_folder' in self.inputs:
            arguments.append('--restart_latest')
        return arguments

    def _sibling_executable(self, setting: str, name: str) -> str:
        """``settings[setting]``, else ``name`` beside the training executable (same environment), else ``name``."""
        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        if setting in settings:
            return str(settings[setting])
        code = self.inputs.code
        if isinstance(code, orm.InstalledCode):
            return str(pathlib.PurePosixPath(code.filepath_executable).parent / name)
        return name

    def _eval_executable(self) -> str:
        return self._sibling_executable('eval_executable', 'mace_eval_configs')

    def sets_foundation_e0s(self) -> bool:
        """Whether the job writes the E0s into the foundation model before fine-tuning (E0s other than
        ``'foundation'``): mace 0.3.16's plain fine-tune keeps the foundation's E0s whatever ``--E0s`` says
        (:mod:`aiida_ilmlff.runner.mace_e0s`)."""
        return 'foundation_model' in self.inputs and self.inputs.parameters.get_dict().get('E0s') != 'foundation'

    def _e0s_step(self, folder) -> str:
        """Write the E0s script into ``folder``; return the job-script line that runs it (the job stops if it fails)."""
        import importlib.resources

        # a standalone script (torch, mace, ASE; no AiiDA), read as text: the daemon never imports it
        script = importlib.resources.files('aiida_ilmlff.runner').joinpath(E0S_SCRIPT).read_text(encoding='utf8')
        with folder.open(E0S_SCRIPT, 'w') as handle:
            handle.write(script)
        parameters = self.inputs.parameters.get_dict()
        e0s = parameters.get('E0s') or 'average'
        command = [
            self._sibling_executable('python_executable', 'python'),
            E0S_SCRIPT,
            f'--e0s={json.dumps(e0s) if isinstance(e0s, dict) else e0s}',
            '--frames=train.xyz',
            f'--model={FOUNDATION_FILE}',
            f'--record={E0S_RECORD}',
            f'--dtype={parameters.get("default_dtype", "float64")}',
        ]
        return f'{shlex.join(command)} > {E0S_LOG} 2>&1 || exit 1\n'

    def prepare_for_submission(self, folder):
        """Write the split files, the evaluation input and the command lines."""
        splits, record = self.get_splits()
        for name, frames in splits.items():
            frames.export(pathlib.Path(folder.abspath) / f'{name}.xyz', 'extxyz')
        # One evaluation input, the splits in a fixed order (train, valid, test): the parser slices by count.
        with folder.open(EVAL_INPUT, 'w') as handle:
            for name in ('train', 'valid', 'test'):
                if name in splits:
                    handle.write(pathlib.Path(folder.abspath, f'{name}.xyz').read_text())
        record['order'] = [name for name in ('train', 'valid', 'test') if name in splits]
        record['elements'] = self.elements_of(splits)
        record['model_file'] = self.model_filename()
        record['stress_trained'] = self.use_stress()
        record['stress_evaluated'] = evaluate_stress = _stress_evaluable(splits)
        with folder.open(SPLIT_FILE, 'w') as handle:
            handle.write(self.split_json(record))

        parameters = self.inputs.parameters.get_dict()
        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = self.build_cmdline(splits)
        codeinfo.stdout_name = 'mace_train.out'
        codeinfo.stderr_name = 'mace_train.err'

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = []
        calcinfo.remote_copy_list = []
        if 'foundation_model' in self.inputs:
            foundation = self.inputs.foundation_model
            calcinfo.local_copy_list.append((foundation.uuid, foundation.filename, FOUNDATION_FILE))
        if 'parent_folder' in self.inputs:
            parent = self.inputs.parent_folder
            calcinfo.remote_copy_list.append(
                (
                    parent.computer.uuid,
                    str(pathlib.PurePosixPath(parent.get_remote_path()) / 'checkpoints'),
                    'checkpoints',
                )
            )
        evaluate = [
            self._eval_executable(),
            f'--configs={EVAL_INPUT}',
            f'--model={self.model_filename()}',
            f'--output={EVAL_OUTPUT}',
            f'--device={parameters.get("device", "cpu")}',
            f'--default_dtype={parameters.get("default_dtype", "float64")}',
            f'--batch_size={parameters.get("valid_batch_size", parameters.get("batch_size", 10))}',
            *(['--compute_stress'] if evaluate_stress else []),
        ]
        calcinfo.append_text = (
            f'if [ -f {self.model_filename()} ]; then\n    {shlex.join(evaluate)} > {EVAL_LOG} 2>&1\nfi\n'
        )
        if self.sets_foundation_e0s():
            calcinfo.prepend_text = self._e0s_step(folder)
        calcinfo.retrieve_list = [
            self.model_filename(),
            'logs',
            'results',
            'mace_train.out',
            'mace_train.err',
            EVAL_LOG,
            SPLIT_FILE,
            E0S_RECORD,
            E0S_LOG,
        ]
        calcinfo.retrieve_temporary_list = [EVAL_OUTPUT]
        return calcinfo
