"""Parser of ``ilmlff.evaluate``, and the error metrics every training parser shares (numpy only).

Conventions (those of mace-torch's ``PerAtomRMSE`` table and of ``dp test``): the energy error of a frame is
``(E_pred - E_ref) / n_atoms``, its RMSE is taken over frames [meV/atom]; the force RMSE is taken over every
Cartesian component of every atom [meV/Å]; per element, over the components of the atoms of that element.
"""

from __future__ import annotations

import io
import json
import pathlib
import typing as t

import numpy as np
from aiida import orm
from aiida.common import exceptions
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_ilmlff.common.plain import finite_or_none

__all__ = ('EvaluateParser', 'committee_force_deviation', 'error_metrics', 'finite_or_none', 'parity_png')


def error_metrics(
    energy_predicted: np.ndarray,
    energy_reference: np.ndarray,
    n_atoms: np.ndarray,
    forces_predicted: np.ndarray,
    forces_reference: np.ndarray,
    numbers: np.ndarray,
) -> dict[str, t.Any]:
    """Energy and force errors of predictions against reference labels.

    :param energy_predicted: (N,) eV. :param energy_reference: (N,) eV; ``nan`` frames are skipped.
    :param n_atoms: (N,) atoms per frame.
    :param forces_predicted: (T, 3) eV/Å, frames concatenated. :param forces_reference: (T, 3) eV/Å; rows
        with ``nan`` are skipped.
    :param numbers: (T,) atomic numbers.
    :returns: ``n_frames``, ``n_atoms`` (counted), ``energy_rmse`` and ``energy_mae`` [meV/atom],
        ``force_rmse`` and ``force_mae`` [meV/Å], ``force_rmse_per_element`` {symbol: meV/Å}.
    """
    from ase.data import chemical_symbols

    energy_predicted = np.asarray(energy_predicted, dtype=float)
    energy_reference = np.asarray(energy_reference, dtype=float)
    n_atoms = np.asarray(n_atoms)
    de = (energy_predicted - energy_reference) / n_atoms
    de = de[np.isfinite(energy_reference)]
    df = np.asarray(forces_predicted, dtype=float) - np.asarray(forces_reference, dtype=float)
    rows = np.isfinite(np.asarray(forces_reference, dtype=float)).all(axis=1)
    df, numbers = df[rows], np.asarray(numbers)[rows]
    per_element = {
        chemical_symbols[int(z)]: float(np.sqrt(np.mean(df[numbers == z] ** 2)) * 1000.0) for z in np.unique(numbers)
    }
    return {
        'n_frames': int(de.size),
        'n_atoms': int(rows.sum()),
        'energy_rmse': float(np.sqrt(np.mean(de**2)) * 1000.0) if de.size else None,
        'energy_mae': float(np.mean(np.abs(de)) * 1000.0) if de.size else None,
        'force_rmse': float(np.sqrt(np.mean(df**2)) * 1000.0) if df.size else None,
        'force_mae': float(np.mean(np.abs(df)) * 1000.0) if df.size else None,
        'force_rmse_per_element': per_element,
    }


#: Units of the keys of :func:`error_metrics`, stored beside them in the metrics Dicts.
ERROR_UNITS = {'energy_rmse': 'meV/atom', 'energy_mae': 'meV/atom', 'force_rmse': 'meV/Å', 'force_mae': 'meV/Å'}


def committee_force_deviation(forces: np.ndarray, n_atoms: np.ndarray) -> np.ndarray:
    """The dpgen model deviation of forces, per frame: max over atoms i of sqrt(<|F_i - <F_i>|^2>).

    :param forces: (M, T, 3) eV/Å, M models, frames concatenated. :param n_atoms: (N,) atoms per frame.
    :returns: (N,) eV/Å (zeros when M == 1).
    """
    forces = np.asarray(forces, dtype=float)
    per_atom = np.sqrt(np.mean(np.sum((forces - forces.mean(axis=0)) ** 2, axis=-1), axis=0))
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    return np.array([per_atom[offsets[i] : offsets[i + 1]].max() for i in range(len(n_atoms))])


def parity_png(
    energy_reference: np.ndarray,
    energy_predicted: np.ndarray,
    forces_reference: np.ndarray,
    forces_predicted: np.ndarray,
    title: str = '',
) -> bytes:
    """A two-panel parity plot (energy per atom [eV/atom], force components [eV/Å]) as PNG bytes."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=100)
    panels = (
        (energy_reference, energy_predicted, 'energy [eV/atom]'),
        (np.ravel(forces_reference), np.ravel(forces_predicted), 'force component [eV/Å]'),
    )
    for k, (reference, predicted, label) in enumerate(panels):
        axes = figure.add_subplot(1, 2, k + 1)
        axes.scatter(reference, predicted, s=4, alpha=0.6)
        if np.size(reference):
            low = float(min(np.min(reference), np.min(predicted)))
            high = float(max(np.max(reference), np.max(predicted)))
            axes.plot([low, high], [low, high], color='k', lw=0.8)
        axes.set_xlabel(f'reference {label}')
        axes.set_ylabel(f'predicted {label}')
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()


def _tail(retrieved, name: str, lines: int = 5) -> str:
    try:
        text = retrieved.base.repository.get_object_content(name)
    except (FileNotFoundError, OSError):
        return ''
    return ' | '.join(line for line in text.strip().splitlines()[-lines:] if line.strip())


class EvaluateParser(Parser):
    """Turn ``predictions.npz`` of the runner into the ``ilmlff.evaluate`` outputs."""

    def parse(self, **kwargs):
        """Parse the predictions; see :class:`~aiida_ilmlff.calculations.evaluate.EvaluateCalculation`."""
        from aiida_ilmlff.calculations.evaluate import OUTPUT_FILE, STDERR, SUMMARY_FILE

        try:
            retrieved = self.retrieved
        except exceptions.NotExistent:
            return self.exit_codes.ERROR_NO_RETRIEVED_FOLDER
        temporary = kwargs.get('retrieved_temporary_folder')
        path = pathlib.Path(temporary) / OUTPUT_FILE if temporary else None
        if path is None or not path.is_file():
            if self.node.exit_status == self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status:
                return self.exit_codes.ERROR_OUT_OF_WALLTIME
            detail = _tail(retrieved, STDERR) or 'no error message'
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(detail=detail)

        with np.load(path, allow_pickle=False) as data:
            energy, forces = data['energy'], data['forces']
            n_atoms, numbers, keys = data['n_atoms'], data['numbers'], [str(k) for k in data['model_keys']]
        frames = self.node.inputs.frames
        models = self.node.inputs.models
        if (
            sorted(keys) != sorted(models)
            or energy.shape != (len(keys), frames.n_frames)
            or not np.array_equal(n_atoms, frames.n_atoms_per_frame)
            or not np.array_equal(numbers, frames.numbers)
        ):
            return self.exit_codes.ERROR_INCONSISTENT_OUTPUT.format(
                detail=f'models {keys}, energy shape {energy.shape}, {int(n_atoms.sum())} atoms for '
                f'{frames.n_frames} frames / {int(frames.n_atoms_per_frame.sum())} atoms'
            )

        predictions = orm.ArrayData()
        predictions.set_array('energy', energy)
        predictions.set_array('forces', forces)
        predictions.set_array('n_atoms', n_atoms)
        predictions.set_array('numbers', numbers)
        predictions.base.attributes.set('model_keys', keys)
        metrics: dict[str, t.Any] = {
            'n_frames': int(frames.n_frames),
            'n_atoms': int(n_atoms.sum()),
            'n_models': len(keys),
            'units': {**ERROR_UNITS, 'force_deviation': 'eV/Å', 'energy_deviation': 'eV/atom'},
            'models': {},
        }
        try:
            summary = json.loads(retrieved.base.repository.get_object_content(SUMMARY_FILE))
        except (FileNotFoundError, OSError, json.JSONDecodeError):
            summary = {'models': {}}

        mean_energy, mean_forces = energy.mean(axis=0), forces.mean(axis=0)
        if len(keys) > 1:
            deviation = committee_force_deviation(forces, n_atoms)
            energy_deviation = energy.std(axis=0) / n_atoms
            predictions.set_array('force_deviation_max', deviation)
            predictions.set_array('energy_deviation_per_atom', energy_deviation)
            metrics['force_deviation'] = {
                'max': float(deviation.max()),
                'mean': float(deviation.mean()),
                'median': float(np.median(deviation)),
            }

        reference_energy, reference_forces = frames.energies, frames.forces
        labelled = reference_energy is not None and reference_forces is not None
        for i, key in enumerate(keys):
            entry: dict[str, t.Any] = {
                'uuid': models[key].uuid,
                'sha256': models[key].sha256,
                'architecture': models[key].architecture,
            }
            entry.update(summary.get('models', {}).get(key, {}))
            if labelled:
                entry['errors'] = error_metrics(
                    energy[i], reference_energy, n_atoms, forces[i], reference_forces, numbers
                )
            metrics['models'][key] = entry
        if labelled:
            metrics['committee_mean'] = error_metrics(
                mean_energy, reference_energy, n_atoms, mean_forces, reference_forces, numbers
            )

        self.out('predictions', predictions)

        bad = [key for i, key in enumerate(keys) if not (np.isfinite(energy[i]).all() and np.isfinite(forces[i]).all())]
        if labelled and not bad:
            energy_mask = np.isfinite(reference_energy)
            force_mask = np.isfinite(reference_forces).all(axis=1)
            parity = orm.ArrayData()
            parity.set_array('energy_per_atom_reference', (reference_energy / n_atoms)[energy_mask])
            parity.set_array('energy_per_atom_predicted', (mean_energy / n_atoms)[energy_mask])
            parity.set_array('forces_reference', reference_forces[force_mask])
            parity.set_array('forces_predicted', mean_forces[force_mask])
            parity.set_array('numbers', numbers[force_mask])
            parity.base.attributes.set('predicted', 'committee mean' if len(keys) > 1 else keys[0])
            self.out('parity', parity)
            parameters = self.node.inputs.parameters.get_dict() if 'parameters' in self.node.inputs else {}
            if parameters.get('plot', True):
                png = parity_png(
                    parity.get_array('energy_per_atom_reference'),
                    parity.get_array('energy_per_atom_predicted'),
                    parity.get_array('forces_reference'),
                    parity.get_array('forces_predicted'),
                    title=f'{len(keys)} model(s) on {frames.n_frames} frames',
                )
                self.out('parity_plot', orm.SinglefileData(io.BytesIO(png), filename='parity.png'))
        self.out('metrics', orm.Dict(finite_or_none(metrics)))
        if bad:
            return self.exit_codes.ERROR_NON_FINITE_PREDICTION.format(detail=f'models {bad}')
        return ExitCode(0)
