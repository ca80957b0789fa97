"""Parser of ``ilmlff.deepmd.train``: ``lcurve.out``, the ``dp test`` errors per split, the model node.

Reads only retrieved files: ``train.log`` / ``freeze.log`` / ``compress.log`` / ``test.log`` (the
``-l`` logs of each ``dp`` command), their ``.err`` files, ``lcurve.out``, ``ilmlff_split.json`` (type map,
systems and their atom symbols) and, from the temporary retrieved folder, the ``dp test`` detail files
``detail.e.out`` (total energies), ``detail.f.out`` (force components) and, for the systems written with
``virial.npy``, ``detail.v.out`` (virials [eV]) of one ``dp test`` over every split, written to full precision;
their rows follow the order of the ``# testing system :`` lines of ``test.log``. The stress error is computed from
the virials as ``stress = -virial / volume`` (the volumes of the written frames are in ``ilmlff_split.json``).
"""

from __future__ import annotations

import pathlib
import re
import tempfile

import numpy as np
from aiida import orm
from aiida.engine import ExitCode

from aiida_ilmlff.parsers.evaluate import ERROR_UNITS, error_metrics, finite_or_none
from aiida_ilmlff.parsers.training import STRESS_UNITS, TrainParser, last_error, stress_metrics

__all__ = ('DeepmdTrainParser', 'parse_lcurve')

_SYSTEM = re.compile(r'# testing system : (\S+)')
_WALL = re.compile(r'wall time: ([\d.]+) s')
_NAN = re.compile(r'NaN detected at batch\s+(\d+)')


def parse_lcurve(text: str) -> dict[str, np.ndarray]:
    """The columns of ``lcurve.out`` by header name (``step``, ``rmse_val``, ``rmse_trn``, ``rmse_e_val``...).

    DeePMD's TensorFlow backend prints ``rmse_e_*`` per atom [eV/atom] and ``rmse_f_*`` in eV/Å.
    """
    header: list[str] = []
    rows = []
    for line in text.splitlines():
        if line.startswith('#'):
            names = line[1:].split()
            if names and names[0] == 'step':
                header = names
            continue
        if line.strip():
            rows.append([float(x) for x in line.split()])
    table = np.array(rows, dtype=float).reshape(-1, len(header) or 1)
    return {name: table[:, k] for k, name in enumerate(header)}


#: dp writes its own errors as 'ERROR' lines besides Python tracebacks.
ERROR_MARKERS = ('ERROR',)


class DeepmdTrainParser(TrainParser):
    """Parse a ``dp --tf`` train/freeze/test job (see ``aiida_ilmlff.calculations.deepmd.DeepmdTrainCalculation``)."""

    def parse(self, **kwargs):
        """Parse the retrieved files into ``learning_curve``, ``metrics`` and ``model``."""
        from aiida_ilmlff.calculations.deepmd import LCURVE

        context = self._context()
        if isinstance(context, ExitCode):
            return context
        walltime, split, parameters = context

        log = self._read('train.log')
        if log is None:
            if walltime:
                return self.exit_codes.ERROR_OUT_OF_WALLTIME
            detail = last_error(self._read('train.err'), ERROR_MARKERS)
            if detail != 'no error message':
                return self.exit_codes.ERROR_TRAINING_FAILED.format(detail=detail)
            return self.exit_codes.ERROR_MISSING_LOG.format(filename='train.log')

        lcurve_text = self._read(LCURVE)
        curve = parse_lcurve(lcurve_text) if lcurve_text else None
        if curve:
            learning_curve = orm.ArrayData()
            for key, value in curve.items():
                learning_curve.set_array(key, value)
            learning_curve.base.attributes.set(
                'units',
                {
                    'rmse_e_*': 'eV/atom',
                    'rmse_f_*': 'eV/Å',
                    'rmse_v_*': 'eV/atom (virial per atom)',
                    'rmse_val/rmse_trn': 'DeePMD loss',
                    'lr': '1',
                },
            )
            self.out('learning_curve', learning_curve)
            trn = [name for name in curve if name.endswith('_trn') or name.endswith('_val')]
            trn = [name for name in trn if name.startswith(('rmse_trn', 'rmse_val', 'rmse_e_', 'rmse_f_'))]
            for row, step in enumerate(curve.get('step', [])):
                if not all(np.isfinite(curve[name][row]) for name in trn):
                    return self.exit_codes.ERROR_NAN_LOSS.format(
                        detail=f'first at step {int(step)}, start_lr {float(parameters.get("start_lr", 1e-3)):g}'
                    )
        start_lr = float(parameters.get('start_lr', 1e-3))
        nan = _NAN.search(log) or _NAN.search(self._read('train.err') or '')
        if nan:  # deepmd-kit 3 stops itself on a NaN loss: RuntimeError('NaN detected at batch N: ...')
            return self.exit_codes.ERROR_NAN_LOSS.format(
                detail=f'deepmd-kit stopped at batch {nan.group(1)}, start_lr {start_lr:g}'
            )
        if walltime:
            return self.exit_codes.ERROR_OUT_OF_WALLTIME
        if 'finished training' not in log:
            return self.exit_codes.ERROR_TRAINING_FAILED.format(
                detail=last_error(self._read('train.err') or log, ERROR_MARKERS)
            )
        if not curve:
            return self.exit_codes.ERROR_MISSING_LEARNING_CURVE.format(filename=LCURVE)

        model_file = split.get('model_file', 'frozen_model.pb')
        names = self.retrieved.base.repository.list_object_names()
        if model_file not in names:
            if parameters.get('compress') and 'frozen_model.pb' in names:
                return self.exit_codes.ERROR_COMPRESSION_FAILED.format(
                    detail=last_error(self._read('compress.err'), ERROR_MARKERS)
                )
            return self.exit_codes.ERROR_MISSING_MODEL.format(filename=model_file)

        temporary = kwargs.get('retrieved_temporary_folder')
        try:
            errors = self._split_errors(split, pathlib.Path(temporary) if temporary else None)
        except (OSError, ValueError, KeyError) as exception:
            detail = f'dp test: {exception}; {last_error(self._read("test.err"), ERROR_MARKERS)}'
            return self.exit_codes.ERROR_MISSING_EVALUATION.format(detail=detail)

        wall = _WALL.search(log)
        steps = int(curve['step'][-1]) if 'step' in curve and len(curve['step']) else None
        metrics = {
            **errors,
            'units': {**ERROR_UNITS, **STRESS_UNITS},
            'stress_trained': bool(split.get('stress_trained', False)),
            'evaluated_with': f'dp --tf test on {model_file}',
            'n_steps': steps,
            'training_seconds': float(wall.group(1)) if wall else None,
            'sel': split.get('sel'),
            'split': {
                k: split[k] for k in ('n_frames', 'valid_fraction', 'train_indices', 'valid_indices') if k in split
            },
        }
        self.out('metrics', orm.Dict(finite_or_none(metrics)))
        self.out('model', self._model_node(model_file, split, parameters))
        return ExitCode(0)

    def _split_errors(self, split: dict, temporary: pathlib.Path | None) -> dict[str, dict]:
        """Errors of every split from the one ``dp test`` over ``data/``; rows are mapped to systems (and so to
        splits) by the order of the ``# testing system :`` lines of ``test.log``."""
        from ase.data import atomic_numbers

        if temporary is None:
            raise OSError('no temporary retrieved folder')
        energy = np.loadtxt(temporary / 'detail.e.out', ndmin=2)
        forces = np.loadtxt(temporary / 'detail.f.out', ndmin=2)
        order = _SYSTEM.findall(self._read('test.log') or '')
        written = [system for name in split['order'] for system in split['systems'][name]]
        if sorted(order) != sorted(written):
            raise ValueError(f'tested systems {order} differ from the written ones {written}')
        split_of = {system: name for name in split['order'] for system in split['systems'][name]}
        rows: dict[str, dict[str, list]] = {name: {'e': [], 'f': [], 'n': [], 'z': []} for name in split['order']}
        e_row = f_row = 0
        for system in order:
            z = np.array([atomic_numbers[s] for s in split['symbols'][system]])
            n_frames = int(split['frames_per_system'][system])
            part = rows[split_of[system]]
            part['e'].append(energy[e_row : e_row + n_frames])
            part['f'].append(forces[f_row : f_row + n_frames * len(z)])
            part['n'] += [len(z)] * n_frames
            part['z'].append(np.tile(z, n_frames))
            e_row += n_frames
            f_row += n_frames * len(z)
        if e_row != len(energy) or f_row != len(forces):
            raise ValueError(f'{len(energy)} energies / {len(forces)} force rows do not match the systems')
        errors = {}
        for name, part in rows.items():
            e, f = np.concatenate(part['e']), np.concatenate(part['f'])
            errors[name] = error_metrics(
                e[:, 1], e[:, 0], np.array(part['n']), f[:, 3:6], f[:, 0:3], np.concatenate(part['z'])
            )
        volumes = split.get('volumes') or {}
        if volumes:
            for name, values in self._stress_errors(order, split, split_of, volumes, temporary).items():
                errors[name].update(values)
        return errors

    @staticmethod
    def _stress_errors(order, split, split_of, volumes, temporary: pathlib.Path) -> dict[str, dict]:
        """Stress errors per split from ``detail.v.out`` (columns: 9 reference then 9 predicted virial components
        [eV]; rows: the frames of the tested systems in test order; deepmd-kit 3.2.0 writes every system, those
        without ``virial.npy`` with a zero reference, which are skipped here); ``stress = -virial / volume``."""
        path = temporary / 'detail.v.out'
        if not path.is_file():
            return {}
        virial = np.loadtxt(path, ndmin=2)
        counts = {system: int(split['frames_per_system'][system]) for system in order}
        if len(virial) == sum(counts.values()):
            tested = order  # every system has rows
        elif len(virial) == sum(counts[system] for system in order if system in volumes):
            tested = [system for system in order if system in volumes]
        else:  # not a layout this parser knows: no stress errors rather than wrong ones
            return {}
        reference: dict[str, list] = {name: [] for name in split['order']}
        predicted: dict[str, list] = {name: [] for name in split['order']}
        row = 0
        for system in tested:
            block = virial[row : row + counts[system]]
            row += counts[system]
            if system not in volumes:
                continue
            volume = np.asarray(volumes[system], dtype=float)[:, None]
            reference[split_of[system]].append(-block[:, :9] / volume)
            predicted[split_of[system]].append(-block[:, 9:18] / volume)
        return {
            name: stress_metrics(np.concatenate(predicted[name]), np.concatenate(reference[name]))
            for name in split['order']
            if reference[name]
        }

    def _model_node(self, model_file: str, split: dict, parameters: dict):
        from aiida_ilmlff.data import MLFFModelData

        type_map = split['type_map']
        with tempfile.TemporaryDirectory(prefix='ilmlff-deepmd-') as tmpdir:
            path = pathlib.Path(tmpdir) / model_file
            path.write_bytes(self.retrieved.base.repository.get_object_content(model_file, mode='rb'))
            return MLFFModelData.from_file(
                path,
                'deepmd',
                elements=type_map,
                type_map=type_map,
                r_cut=float(parameters.get('rcut', 6.0)),
                dtype=parameters.get('precision', 'float64'),
                seed=int(parameters.get('seed', 0)),
                inspect=False,
            )
