"""Parser of ``ilmlff.evaluate``, and the error metrics every training parser shares (numpy only).

Conventions (those of mace-torch's ``PerAtomRMSE`` table and of ``dp test``): the energy error of a frame is
``(E_pred - E_ref) / n_atoms``, its RMSE is taken over frames [meV/atom]; the force RMSE is taken over every
Cartesian component of every atom [meV/Å]; per element, over the components of the atoms of that element. The
evaluation adds (:func:`detailed_errors`) the relative force error (force RMSE / RMS of the reference force
components), errors per element and per origin, the pressure error ``P = -trace(stress)/3`` in kbar over the frames
with a reference stress, and the energy RMSE after per-element offsets fitted by least squares
(:func:`aligned_energy_errors`), the only energy error that compares models labelled at different references.
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

__all__ = (
    'DETAILED_UNITS',
    'KBAR_PER_EV_A3',
    'EvaluateParser',
    'aligned_energy_errors',
    'committee_force_deviation',
    'detailed_errors',
    'error_metrics',
    'finite_or_none',
    'parity_png',
    'pressure_errors',
)


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

#: kbar per eV/Å^3: 1 eV/Å^3 = 160.21766 GPa (ASE's CODATA 2014 constants: ``10 / ase.units.GPa``).
KBAR_PER_EV_A3 = 1602.1766208

#: Units of the keys of :func:`detailed_errors` beyond those of :data:`ERROR_UNITS`.
DETAILED_UNITS = {
    'force_rms_reference': 'meV/Å',
    'force_rmse_relative': 'force RMSE / RMS of the reference forces (dimensionless)',
    'pressure_rmse_kbar': 'kbar',
    'pressure_mae_kbar': 'kbar',
    'stress_rmse_kbar': 'kbar',
    'energy_rmse_aligned_meV_per_atom': 'meV/atom',
    'energy_mae_aligned_meV_per_atom': 'meV/atom',
    'energy_offsets_eV': 'eV per atom of the element',
}


def _force_errors(delta: np.ndarray, reference: np.ndarray) -> dict[str, t.Any]:
    """Force RMSE/MAE [meV/Å], RMS of the reference components [meV/Å] and their ratio, over ``(T, 3)`` rows."""
    if not delta.size:
        return {'force_rmse': None, 'force_mae': None, 'force_rms_reference': None, 'force_rmse_relative': None}
    rmse = float(np.sqrt(np.mean(delta**2)))
    rms = float(np.sqrt(np.mean(reference**2)))
    return {
        'force_rmse': rmse * 1000.0,
        'force_mae': float(np.mean(np.abs(delta))) * 1000.0,
        'force_rms_reference': rms * 1000.0,
        'force_rmse_relative': rmse / rms if rms > 0 else None,
    }


def pressure_errors(stress_predicted: t.Any, stress_reference: t.Any) -> dict[str, t.Any]:
    """Pressure and stress errors over the frames whose reference and predicted stress are finite.

    :param stress_predicted: ``(N, 3, 3)`` (or ``(N, 9)``) eV/Å^3, ASE's sign (positive under tension).
    :param stress_reference: the same shape and sign; ``nan`` rows (no stress label, non-periodic frame) are left
        out and ``n_stress_frames`` says how many were used.
    :returns: ``n_stress_frames``, ``pressure_rmse_kbar`` and ``pressure_mae_kbar`` of ``P = -trace(stress)/3``,
        ``stress_rmse_kbar`` and ``stress_mae_kbar`` over the 9 components (1 eV/Å^3 = 1602.1766 kbar); ``None``
        without such frames. The one home of these errors: the training parsers report them in their own units
        (:func:`aiida_ilmlff.parsers.training.stress_metrics`).
    """
    predicted = np.asarray(stress_predicted, dtype=float).reshape(-1, 9)
    reference = np.asarray(stress_reference, dtype=float).reshape(-1, 9)
    rows = np.isfinite(reference).all(axis=1) & np.isfinite(predicted).all(axis=1)
    result: dict[str, t.Any] = {'n_stress_frames': int(rows.sum())}
    if not rows.any():
        return {
            **result,
            'pressure_rmse_kbar': None,
            'pressure_mae_kbar': None,
            'stress_rmse_kbar': None,
            'stress_mae_kbar': None,
        }
    delta = predicted[rows] - reference[rows]
    pressure = -(delta[:, 0] + delta[:, 4] + delta[:, 8]) / 3.0 * KBAR_PER_EV_A3
    return {
        **result,
        'pressure_rmse_kbar': float(np.sqrt(np.mean(pressure**2))),
        'pressure_mae_kbar': float(np.mean(np.abs(pressure))),
        'stress_rmse_kbar': float(np.sqrt(np.mean(delta**2)) * KBAR_PER_EV_A3),
        'stress_mae_kbar': float(np.mean(np.abs(delta)) * KBAR_PER_EV_A3),
    }


def aligned_energy_errors(
    energy_predicted: t.Any, energy_reference: t.Any, n_atoms: t.Any, counts: t.Any, elements: t.Sequence[str]
) -> dict[str, t.Any]:
    """Energy errors after per-element offsets fitted by least squares: ``E_ref - E_pred ~ sum_e n_e mu_e``.

    Two levels of theory (or a foundation model and the labels) differ by reference energies per element (e.g.
    VASP PBE+U against CP2K GTH pseudopotentials); an energy RMSE across them is meaningful only once those are
    taken out. The offsets ``mu`` are the least-squares (minimum-norm) solution over the frames with a finite
    reference; the residual ``E_pred + n . mu - E_ref`` per atom gives the aligned RMSE. The residual is unique
    whenever the fit is determined, even if the offsets are not (frames of one composition fix only ``n . mu``).

    :param energy_predicted, energy_reference: ``(N,)`` eV. :param n_atoms: ``(N,)``.
    :param counts: ``(N, E)`` atoms of each element per frame. :param elements: the ``E`` element symbols.
    :returns: ``energy_alignment`` (``'fitted'`` or the reason it is not), ``energy_rmse_aligned_meV_per_atom`` and
        ``energy_mae_aligned_meV_per_atom`` (``None`` when the fit is not determined: no more frames than the rank
        of the element counts, so the residual is 0 by construction), ``energy_offsets_eV`` {element: eV} and
        ``energy_offsets_unique`` (the counts have full column rank).
    """
    predicted = np.asarray(energy_predicted, dtype=float)
    reference = np.asarray(energy_reference, dtype=float)
    n_atoms = np.asarray(n_atoms, dtype=float)
    counts = np.asarray(counts, dtype=float).reshape(len(predicted), len(elements))
    rows = np.isfinite(reference) & np.isfinite(predicted)
    matrix, target = counts[rows], (reference - predicted)[rows]
    rank = int(np.linalg.matrix_rank(matrix)) if rows.any() else 0
    empty = {'energy_rmse_aligned_meV_per_atom': None, 'energy_mae_aligned_meV_per_atom': None}
    if rows.sum() <= rank:
        return {
            **empty,
            'energy_alignment': f'not determined: {int(rows.sum())} frames for {rank} independent element counts '
            '(the aligned residual would be 0 by construction); compare forces only',
            'energy_offsets_eV': None,
            'energy_offsets_unique': False,
        }
    offsets, *_ = np.linalg.lstsq(matrix, target, rcond=None)
    residual = (predicted[rows] + matrix @ offsets - reference[rows]) / n_atoms[rows] * 1000.0
    return {
        'energy_alignment': 'fitted',
        'energy_rmse_aligned_meV_per_atom': float(np.sqrt(np.mean(residual**2))),
        'energy_mae_aligned_meV_per_atom': float(np.mean(np.abs(residual))),
        'energy_offsets_eV': {element: float(value) for element, value in zip(elements, offsets, strict=True)},
        'energy_offsets_unique': rank == len(elements),
    }


def detailed_errors(
    energy_predicted: t.Any,
    energy_reference: t.Any,
    n_atoms: t.Any,
    forces_predicted: t.Any,
    forces_reference: t.Any,
    numbers: t.Any,
    *,
    origins: t.Sequence[str] | None = None,
    stress_predicted: t.Any = None,
    stress_reference: t.Any = None,
) -> dict[str, t.Any]:
    """The errors of a model on a frame set, as the evaluation stores them.

    :func:`error_metrics` (raw energy RMSE/MAE [meV/atom], force RMSE/MAE [meV/Å], force RMSE per element) plus:
    ``force_rms_reference`` [meV/Å] and ``force_rmse_relative`` (force RMSE / RMS of the reference force components:
    a relative error comparable across systems and temperatures); ``per_element`` {symbol: ``n_atoms``,
    ``force_rmse``, ``force_mae``, ``force_rms_reference``, ``force_rmse_relative``}; the pressure errors of
    :func:`pressure_errors` (when stresses are given); the aligned energy errors of :func:`aligned_energy_errors`;
    and ``per_origin`` {origin (EQ, nEQ, AL, import): the same keys over that origin's frames, without
    ``per_element``/``per_origin``}.

    :param energy_predicted, energy_reference: ``(N,)`` eV (``nan`` reference frames skipped).
    :param n_atoms: ``(N,)``. :param forces_predicted, forces_reference: ``(T, 3)`` eV/Å, frames concatenated
        (``nan`` reference rows skipped). :param numbers: ``(T,)`` atomic numbers. :param origins: ``(N,)`` origin
        per frame. :param stress_predicted, stress_reference: ``(N, 3, 3)`` eV/Å^3 (ASE sign) or ``None``.
    """
    from ase.data import chemical_symbols

    energy_predicted = np.asarray(energy_predicted, dtype=float)
    energy_reference = np.asarray(energy_reference, dtype=float)
    n_atoms = np.asarray(n_atoms, dtype=int)
    forces_predicted = np.asarray(forces_predicted, dtype=float).reshape(-1, 3)
    forces_reference = np.asarray(forces_reference, dtype=float).reshape(-1, 3)
    numbers = np.asarray(numbers, dtype=int)
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    frame_of_atom = np.repeat(np.arange(len(n_atoms)), n_atoms)
    present = np.unique(numbers)
    elements = [chemical_symbols[int(z)] for z in present]
    counts = np.array(
        [[np.sum(numbers[offsets[i] : offsets[i + 1]] == z) for z in present] for i in range(len(n_atoms))]
    )

    def block(frames: np.ndarray, with_elements: bool) -> dict[str, t.Any]:
        atoms = np.isin(frame_of_atom, frames)
        result = error_metrics(
            energy_predicted[frames],
            energy_reference[frames],
            n_atoms[frames],
            forces_predicted[atoms],
            forces_reference[atoms],
            numbers[atoms],
        )
        rows = atoms & np.isfinite(forces_reference).all(axis=1)
        delta = forces_predicted[rows] - forces_reference[rows]
        result.update(_force_errors(delta, forces_reference[rows]))
        if with_elements:
            result['per_element'] = {}
            for z, symbol in zip(present, elements, strict=True):
                mask = numbers[rows] == z
                result['per_element'][symbol] = {
                    'n_atoms': int(mask.sum()),
                    **_force_errors(delta[mask], forces_reference[rows][mask]),
                }
        if stress_predicted is not None and stress_reference is not None:
            result.update(
                pressure_errors(
                    np.asarray(stress_predicted, dtype=float).reshape(-1, 9)[frames],
                    np.asarray(stress_reference, dtype=float).reshape(-1, 9)[frames],
                )
            )
        else:
            result.update(pressure_errors(np.zeros((0, 9)), np.zeros((0, 9))))
        result.update(
            aligned_energy_errors(
                energy_predicted[frames], energy_reference[frames], n_atoms[frames], counts[frames], elements
            )
        )
        return result

    everything = block(np.arange(len(n_atoms)), True)
    if origins is not None:
        origins = np.asarray(origins, dtype=str)
        everything['per_origin'] = {
            origin: block(np.flatnonzero(origins == origin), False) for origin in sorted(set(origins.tolist()))
        }
    return everything


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
    numbers: np.ndarray | None = None,
) -> bytes:
    """A two-panel parity plot (energy per atom [eV/atom], force components [eV/Å]) as PNG bytes.

    :param forces_reference: (n, 3) reference forces of n atoms; ``forces_predicted`` the same shape.
    :param numbers: (n,) atomic numbers of those atoms: the force panel then has one colour per element, with the
        element's force RMSE [eV/Å] in the legend (the elements a model gets wrong show at a glance).
    """
    import matplotlib

    matplotlib.use('Agg')
    from ase.data import chemical_symbols
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=100)
    forces_reference = np.asarray(forces_reference, dtype=float).reshape(-1, 3)
    forces_predicted = np.asarray(forces_predicted, dtype=float).reshape(-1, 3)
    panels = (
        (energy_reference, energy_predicted, 'energy [eV/atom]'),
        (np.ravel(forces_reference), np.ravel(forces_predicted), 'force component [eV/Å]'),
    )
    for k, (reference, predicted, label) in enumerate(panels):
        axes = figure.add_subplot(1, 2, k + 1)
        if k == 1 and numbers is not None and len(numbers) == len(forces_reference):
            numbers = np.asarray(numbers)
            for z in np.unique(numbers):
                mask = numbers == z
                rmse = float(np.sqrt(np.mean((forces_predicted[mask] - forces_reference[mask]) ** 2)))
                axes.scatter(
                    np.ravel(forces_reference[mask]),
                    np.ravel(forces_predicted[mask]),
                    s=4,
                    alpha=0.6,
                    label=f'{chemical_symbols[int(z)]} (RMSE {rmse:.3g})',
                )
            axes.legend(fontsize=7, markerscale=2, loc='upper left')
        else:
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
            # Runners before the stress was evaluated wrote no `stress` array.
            stress = data['stress'] if 'stress' in data.files else None
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
        if stress is not None:
            predictions.set_array('stress', stress)
        predictions.base.attributes.set('model_keys', keys)
        metrics: dict[str, t.Any] = {
            'n_frames': int(frames.n_frames),
            'n_atoms': int(n_atoms.sum()),
            'n_models': len(keys),
            'units': {**ERROR_UNITS, **DETAILED_UNITS, 'force_deviation': 'eV/Å', 'energy_deviation': 'eV/atom'},
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
        reference_stress = frames.stresses
        origins = frames.origins
        if labelled:
            has_stress = reference_stress is not None and np.isfinite(reference_stress).all(axis=(1, 2))
            metrics['n_frames_with_reference_stress'] = int(np.sum(has_stress)) if reference_stress is not None else 0

        def errors(e_pred, f_pred, s_pred):
            return detailed_errors(
                e_pred,
                reference_energy,
                n_atoms,
                f_pred,
                reference_forces,
                numbers,
                origins=origins,
                stress_predicted=s_pred,
                stress_reference=reference_stress,
            )

        for i, key in enumerate(keys):
            entry: dict[str, t.Any] = {
                'uuid': models[key].uuid,
                'sha256': models[key].sha256,
                'architecture': models[key].architecture,
            }
            entry.update(summary.get('models', {}).get(key, {}))
            if labelled:
                entry['errors'] = errors(energy[i], forces[i], stress[i] if stress is not None else None)
            metrics['models'][key] = entry
        if labelled:
            metrics['committee_mean'] = errors(
                mean_energy, mean_forces, stress.mean(axis=0) if stress is not None else None
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
                    numbers=parity.get_array('numbers'),
                )
                self.out('parity_plot', orm.SinglefileData(io.BytesIO(png), filename='parity.png'))
        self.out('metrics', orm.Dict(finite_or_none(metrics)))
        if bad:
            return self.exit_codes.ERROR_NON_FINITE_PREDICTION.format(detail=f'models {bad}')
        return ExitCode(0)
