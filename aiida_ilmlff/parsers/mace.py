"""Parser of ``ilmlff.mace.train``: learning curve, final errors per split and the model node.

Reads only the retrieved files: ``logs/mace_run-<seed>.log`` (completion, timing, MACE's own error table),
``results/mace_run-<seed>_train.txt`` (JSON lines: ``opt`` per batch, ``eval`` per validation), the model
file, ``ilmlff_split.json`` and, from the temporary retrieved folder, ``eval_output.xyz`` written by
``mace_eval_configs`` with the saved model (``MACE_energy``, ``MACE_forces`` beside ``REF_*``).
"""

from __future__ import annotations

import datetime
import json
import math
import pathlib
import re
import tempfile
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from aiida_ilmlff.parsers.evaluate import ERROR_UNITS, error_metrics, finite_or_none
from aiida_ilmlff.parsers.training import STRESS_UNITS, TrainParser, last_error, stress_metrics

__all__ = ('MaceTrainParser', 'parse_error_table', 'parse_results_lines')

_TIME = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)')


def parse_results_lines(text: str) -> dict[str, np.ndarray]:
    """Learning curve from MACE's results JSON lines.

    :returns: ``epoch`` (E,) with ``train_loss`` (E,) the mean batch loss of each epoch, and ``eval_epoch``
        (V,) with ``valid_loss``, ``valid_energy_rmse`` [meV/atom], ``valid_force_rmse`` [meV/Å] (V,) and, when
        MACE computes the stress (loss ``stress``...), ``valid_stress_rmse`` [meV/Å^3] (MACE's own number: frames
        without a stress count with a zero reference there); the initial evaluation (before training) has epoch
        -1. Non-finite losses are kept as nan/inf.
    """
    train: dict[int, list[float]] = {}
    evaluations = []
    for line in text.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        epoch = record.get('epoch')
        epoch = -1 if epoch is None else int(epoch)
        if record.get('mode') == 'opt':
            train.setdefault(epoch, []).append(float(record['loss']))
        elif record.get('mode') == 'eval':
            evaluations.append(
                (
                    epoch,
                    float(record.get('loss', math.nan)),
                    float(record.get('rmse_e_per_atom', math.nan)) * 1000.0,
                    float(record.get('rmse_f', math.nan)) * 1000.0,
                    float(record['rmse_stress']) * 1000.0 if record.get('rmse_stress') is not None else math.nan,
                )
            )
    epochs = sorted(train)
    curve = {
        'epoch': np.array(epochs, dtype=int),
        'train_loss': np.array([np.mean(train[e]) for e in epochs], dtype=float),
    }
    table = np.array(evaluations, dtype=float).reshape(-1, 5)
    curve['eval_epoch'] = table[:, 0].astype(int)
    curve['valid_loss'] = table[:, 1]
    curve['valid_energy_rmse'] = table[:, 2]
    curve['valid_force_rmse'] = table[:, 3]
    if np.isfinite(table[:, 4]).any():
        curve['valid_stress_rmse'] = table[:, 4]
    return curve


def parse_error_table(log: str) -> dict[str, dict[str, float]]:
    """MACE's final ``PerAtomRMSE`` (or, with a stress loss, ``PerAtomRMSEstressvirials``) tables, printed to
    0.1 meV, as ``{row: {energy_rmse, force_rmse, relative_force_rmse_percent[, stress_rmse]}}`` (stress in
    meV/Å^3)."""
    rows: dict[str, dict[str, float]] = {}
    number = r'\s*([-\d.naife]+)\s*\|'
    pattern = re.compile(r'\|\s*(\S+)\s*\|' + number * 3 + f'(?:{number})?')
    names = ('energy_rmse', 'force_rmse', 'relative_force_rmse_percent', 'stress_rmse')
    for line in log.splitlines():
        match = pattern.search(line)
        if match and match.group(1) != 'config_type':
            try:
                values = [float(match.group(k)) for k in (2, 3, 4, 5) if match.group(k) is not None]
            except ValueError:
                continue
            rows[match.group(1)] = dict(zip(names, values))
    return rows


def _timestamp(log: str, marker: str) -> datetime.datetime | None:
    for line in log.splitlines():
        if marker in line:
            match = _TIME.match(line)
            if match:
                return datetime.datetime.strptime(match.group(1), '%Y-%m-%d %H:%M:%S.%f')
    return None


class MaceTrainParser(TrainParser):
    """Parse a ``mace_run_train`` job; see :class:`~aiida_ilmlff.calculations.mace.MaceTrainCalculation`."""

    def _find(self, folder: str, suffix: str) -> str | None:
        try:
            names = self.retrieved.base.repository.list_object_names(folder)
        except (FileNotFoundError, OSError):
            return None
        for name in sorted(names):
            if name.endswith(suffix) and not name.endswith('_debug.log'):
                return f'{folder}/{name}'
        return None

    def parse(self, **kwargs):
        """Parse the retrieved files into ``learning_curve``, ``metrics`` and ``model``."""
        from aiida_ilmlff.calculations.mace import E0S_LOG, E0S_RECORD, EVAL_LOG, EVAL_OUTPUT

        context = self._context()
        if isinstance(context, ExitCode):
            return context
        walltime, split, parameters = context
        stderr = self._read('mace_train.err') or ''
        # a fine-tune's E0s step (aiida_ilmlff.runner.mace_e0s) runs first; the job stops if it fails
        e0s_log, e0s_record = self._read(E0S_LOG), self._read(E0S_RECORD)
        if e0s_log is not None and e0s_record is None:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                detail=f'the E0s step before fine-tuning failed: {last_error(e0s_log) or "no output"}'
            )

        log_name = self._find('logs', '.log')
        log = self._read(log_name) if log_name else None
        if log is None:
            if walltime:
                return self.exit_codes.ERROR_OUT_OF_WALLTIME
            if stderr.strip():
                return self.exit_codes.ERROR_TRAINING_FAILED.format(detail=last_error(stderr))
            return self.exit_codes.ERROR_MISSING_LOG.format(filename='logs/mace_run-<seed>.log')

        results_name = self._find('results', '_train.txt')
        results = self._read(results_name) if results_name else None
        curve = parse_results_lines(results) if results else None
        if curve is not None:
            learning_curve = orm.ArrayData()
            for key, value in curve.items():
                learning_curve.set_array(key, value)
            learning_curve.base.attributes.set(
                'units',
                {
                    'loss': 'MACE loss',
                    'valid_energy_rmse': 'meV/atom',
                    'valid_force_rmse': 'meV/Å',
                    'valid_stress_rmse': 'meV/Å^3',
                },
            )
            self.out('learning_curve', learning_curve)
            bad = [int(e) for e, loss in zip(curve['epoch'], curve['train_loss']) if not np.isfinite(loss)] + [
                int(e) for e, loss in zip(curve['eval_epoch'], curve['valid_loss']) if not np.isfinite(loss)
            ]
            if bad:
                return self.exit_codes.ERROR_NAN_LOSS.format(
                    detail=f'first at epoch {min(bad)}, learning rate {float(parameters.get("lr", 0.01)):g}'
                )
        if walltime:
            return self.exit_codes.ERROR_OUT_OF_WALLTIME
        lines = log.strip().splitlines()
        if not lines or 'Done' not in lines[-1]:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(detail=last_error(stderr or log))
        if curve is None:
            return self.exit_codes.ERROR_MISSING_LEARNING_CURVE.format(filename='results/mace_run-<seed>_train.txt')

        model_file = split.get('model_file', 'mace.model')
        if model_file not in self.retrieved.base.repository.list_object_names():
            return self.exit_codes.ERROR_MISSING_MODEL.format(filename=model_file)

        temporary = kwargs.get('retrieved_temporary_folder')
        eval_path = pathlib.Path(temporary) / EVAL_OUTPUT if temporary else None
        if eval_path is None or not eval_path.is_file():
            return self.exit_codes.ERROR_MISSING_EVALUATION.format(
                detail=f'{EVAL_OUTPUT} not found; {EVAL_LOG}: {last_error(self._read(EVAL_LOG) or "")}'
            )
        try:
            errors = self._split_errors(eval_path, split)
        except (KeyError, ValueError) as exception:
            return self.exit_codes.ERROR_MISSING_EVALUATION.format(detail=f'{EVAL_OUTPUT}: {exception}')

        start, end = _timestamp(log, 'Started training'), _timestamp(log, 'Training complete')
        n_epochs = len(curve['epoch'])
        training_seconds = (end - start).total_seconds() if start and end else None
        metrics: dict[str, t.Any] = {
            **errors,
            'units': {**ERROR_UNITS, **STRESS_UNITS},
            'stress_trained': bool(split.get('stress_trained', False)),
            'evaluated_with': f'mace_eval_configs on {model_file} ({parameters.get("default_dtype", "float64")})',
            'reported_by_mace': parse_error_table(log),
            'n_epochs': n_epochs,
            'training_seconds': training_seconds,
            'seconds_per_epoch': training_seconds / n_epochs if training_seconds and n_epochs else None,
            'split': {k: v for k, v in split.items() if k not in ('model_file', 'stress_trained', 'stress_evaluated')},
        }
        if e0s_record is not None:  # the E0s written into the foundation model before fine-tuning [eV]
            metrics['foundation_e0s'] = json.loads(e0s_record)
        self.out('metrics', orm.Dict(finite_or_none(metrics)))
        self.out('model', self._model_node(model_file, split, parameters))
        return ExitCode(0)

    def _split_errors(self, path: pathlib.Path, split: dict) -> dict[str, dict]:
        """Errors of every split from the evaluated frames (train, valid, test in that order)."""
        from ase.io import read

        frames = read(str(path), index=':')
        counts = split['n_frames']
        order = split.get('order', [name for name in ('train', 'valid', 'test') if name in counts])
        if len(frames) != sum(counts[name] for name in order):
            raise ValueError(f'{len(frames)} frames evaluated, {sum(counts.values())} expected')
        errors, start = {}, 0
        for name in order:
            part = frames[start : start + counts[name]]
            start += counts[name]
            errors[name] = error_metrics(
                np.array([atoms.info['MACE_energy'] for atoms in part]),
                np.array([atoms.info['REF_energy'] for atoms in part]),
                np.array([len(atoms) for atoms in part]),
                np.concatenate([atoms.arrays['MACE_forces'] for atoms in part]),
                np.concatenate([atoms.arrays['REF_forces'] for atoms in part]),
                np.concatenate([atoms.numbers for atoms in part]),
            )
            if split.get('stress_evaluated'):
                nan = np.full(9, np.nan)
                errors[name].update(
                    stress_metrics(
                        np.array([np.reshape(atoms.info['MACE_stress'], 9) for atoms in part]),
                        np.array([np.reshape(atoms.info.get('REF_stress', nan), 9) for atoms in part]),
                    )
                )
        return errors

    def _model_node(self, model_file: str, split: dict, parameters: dict):
        from ase.data import atomic_numbers

        from aiida_ilmlff.data import MLFFModelData

        elements = split['elements']
        inputs = self.node.inputs
        r_cut = inputs.foundation_model.r_cut if 'foundation_model' in inputs else parameters.get('r_max', 5.0)
        with tempfile.TemporaryDirectory(prefix='ilmlff-mace-') as tmpdir:
            path = pathlib.Path(tmpdir) / model_file
            path.write_bytes(self.retrieved.base.repository.get_object_content(model_file, mode='rb'))
            node = MLFFModelData.from_file(
                path,
                'mace',
                elements=elements,
                type_map=sorted(elements, key=lambda s: atomic_numbers[s]),
                r_cut=float(r_cut),
                dtype=parameters.get('default_dtype', 'float64'),
                seed=int(parameters.get('seed', 0)),
                inspect=False,
            )
        return node
