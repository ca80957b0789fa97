"""Calcfunctions of ``ilmlff.active_learning``: classify explored frames, select candidates, calibrate, summarise.

Node <-> plain-data wrappers only: the DP-GEN classification, the trust levels and selection defaults, the
picking filters and the calibration maths live in :mod:`aiida_ilmlff.sampling.selection` (pure numpy), the
calibration plot in :mod:`aiida_ilmlff.analysis.figures`.
"""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase.geometry import wrap_positions

from aiida_ilmlff.analysis.figures import calibration_png
from aiida_ilmlff.common.geometry import min_pair_distance
from aiida_ilmlff.common.plain import finite_or_none
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.trajectory import MDTrajectoryData
from aiida_ilmlff.sampling.selection import (
    ACCURATE,
    F_HI,
    F_LO,
    SELECTION_DEFAULTS,
    adaptive_lower_level,
    align_on_time,
    classify,
    committee_force_errors,
    correlation,
    last_frames,
    lowest_failed,
    select_indices,
    selection_statistics,
)

__all__ = (
    'calibrate_committee',
    'collect_iterations',
    'select_candidates',
)

#: Attributes of an exploration trajectory reported per run in the selection statistics.
RUN_ATTRIBUTES = ('temperature_K', 'pressure_bar', 'ensemble')


# --------------------------------------------------------------------------------------------- calcfunctions


def _aligned_deviation(trajectory_time: np.ndarray, deviation: orm.ArrayData) -> np.ndarray:
    """``max_devi_f`` for every trajectory frame, matched on time [fs] (nan where the MD wrote no row)."""
    return align_on_time(trajectory_time, deviation.get_array('time_fs'), deviation.get_array('max_devi_f'))


@calcfunction
def select_candidates(settings: orm.Dict, **explorations: orm.Data) -> dict[str, orm.Data]:
    """Classify the explored frames by committee deviation and pick the frames to label (DP-GEN semantics).

    :param settings: ``Dict`` with the keys of :data:`SELECTION_DEFAULTS`: ``f_lo``, ``f_hi`` [eV/Å],
        ``adaptive_lo_rate`` (fraction in (0, 1) or ``None``), ``fallback_to_failed`` (bool: with no frame
        between the levels and the accurate ratio below ``conv_accuracy``, pick the failed frames of lowest
        deviation instead), ``task_max``, ``min_distance`` [Å],
        ``duplicate_rmsd`` [Å], ``seed``, ``iteration`` (stored on the selected frames), ``conv_accuracy``,
        ``truncated_runs`` (keys of the runs whose MD stopped early: the committee has then not converged, and
        with ``fallback_to_failed`` and neither a candidate nor a failed frame, the last frames of those runs
        are picked, band ``truncated``).
    :param explorations: ``trajectory_<key>`` (``MDTrajectoryData``) and ``deviation_<key>`` (``ArrayData``
        with ``time_fs`` and ``max_devi_f``, the ``deviation`` output of ``ilmlff.md``), one pair per MD run.
    :returns: ``statistics`` (Dict: counts and ratios of accurate / candidate / failed frames, per run too,
        the trust levels used, the selection filters' counts, ``selected_from`` (``candidate``, ``failed``,
        ``truncated`` or ``None``), ``truncated_runs``, ``converged`` = accurate ratio >= ``conv_accuracy`` and
        no run truncated), ``deviations`` (ArrayData:
        ``max_devi_f`` (N,) eV/Å, ``run`` (N,) run index in sorted key order, ``frame`` (N,), ``class`` (N,)
        0/1/2, ``selected`` (N,) bool) and, when a frame was
        picked, ``selected`` (FramesData, origin ``AL``, ``iteration`` set, ``perturbation`` JSON with the
        deviation, its class, run key and frame, ``source`` = trajectory uuid, ``temperature`` = the run's target).
    :raises ValueError: for a trajectory without its deviation (or the reverse), no run at all, or a truncated
        run that is not one of the runs.
    """
    options = {**SELECTION_DEFAULTS, **settings.get_dict()}
    keys = sorted(name[len('trajectory_') :] for name in explorations if name.startswith('trajectory_'))
    deviation_keys = sorted(name[len('deviation_') :] for name in explorations if name.startswith('deviation_'))
    if keys != deviation_keys:
        raise ValueError(f'every trajectory needs its deviation: trajectories {keys}, deviations {deviation_keys}')
    if not keys:
        raise ValueError('no exploration run to select from')
    truncated = sorted(options.get('truncated_runs') or [])
    if set(truncated) - set(keys):
        raise ValueError(f'truncated runs {sorted(set(truncated) - set(keys))} are not among the runs {keys}')
    f_lo, f_hi = float(options['f_lo']), float(options['f_hi'])

    runs = []
    for run, key in enumerate(keys):
        trajectory = explorations[f'trajectory_{key}']
        if not isinstance(trajectory, MDTrajectoryData):
            raise ValueError(f'`trajectory_{key}` is a {type(trajectory).__name__}, not an MDTrajectoryData')
        with trajectory.open_reader() as reader:
            time = np.asarray(reader.time, dtype=float)
        deviation = _aligned_deviation(time, explorations[f'deviation_{key}'])
        runs.append({'key': key, 'node': trajectory, 'deviation': deviation, 'run': run})

    deviation_all = np.concatenate([r['deviation'] for r in runs])
    run_all = np.concatenate([np.full(len(r['deviation']), r['run']) for r in runs]).astype(np.int64)
    frame_all = np.concatenate([np.arange(len(r['deviation'])) for r in runs]).astype(np.int64)
    classes = classify(deviation_all, f_lo, f_hi)
    rate = options.get('adaptive_lo_rate')
    f_lo_used = adaptive_lower_level(deviation_all, f_lo, f_hi, float(rate)) if rate else f_lo
    selectable = np.flatnonzero(np.isfinite(deviation_all) & (deviation_all >= f_lo_used) & (deviation_all < f_hi))
    band = 'candidate'
    converged = bool(len(classes) and np.mean(classes == ACCURATE) >= float(options['conv_accuracy']) and not truncated)
    if selectable.size == 0 and options.get('fallback_to_failed') and not converged:
        # Nothing between the levels: the failed frames nearest to them (a few times task_max, for the filters).
        selectable = lowest_failed(deviation_all, f_hi, 5 * int(options['task_max']))
        band = 'failed'
        if selectable.size == 0 and truncated:
            # Every saved frame accurate but an MD broke: the frames just before it broke.
            selectable = last_frames(run_all, [keys.index(key) for key in truncated], 5 * int(options['task_max']))
            band = 'truncated'

    # Positions of the selectable frames, read once per run (only those frames).
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    static: dict[int, dict] = {}
    for r in runs:
        wanted = frame_all[selectable][run_all[selectable] == r['run']]
        if wanted.size == 0:
            continue
        with r['node'].open_reader() as reader:
            static[r['run']] = {
                'numbers': np.asarray(reader.numbers),
                'mol_id': np.asarray(reader.mol_id),
                'molecules': list(reader.molecules) if reader.molecules else None,
            }
            for frame in wanted:
                block = reader[int(frame)]
                cache[int(np.flatnonzero((run_all == r['run']) & (frame_all == frame))[0])] = (
                    np.asarray(block.positions, dtype=float),
                    np.asarray(block.cell, dtype=float),
                )

    min_distance = float(options.get('min_distance') or 0.0)
    squeezed = [int(i) for i in selectable if min_pair_distance(*cache[int(i)])[0] < min_distance]
    passing = [int(i) for i in selectable if int(i) not in set(squeezed)]
    picked, duplicates = select_indices(
        passing,
        int(options['task_max']),
        int(options['seed']),
        positions=lambda i: cache[i][0],
        cell=lambda i: cache[i][1],
        group=lambda i: int(run_all[i]),
        duplicate_rmsd=float(options.get('duplicate_rmsd') or 0.0),
        shuffle=band == 'candidate',
    )
    picked = sorted(picked)

    n = len(deviation_all)
    statistics = selection_statistics(
        deviation_all,
        run_all,
        classes,
        picked,
        [(r['key'], {k: r['node'].base.attributes.get(k, None) for k in RUN_ATTRIBUTES}) for r in runs],
        options,
        f_lo_used=f_lo_used,
        n_selectable=int(selectable.size),
        n_rejected_min_distance=len(squeezed),
        n_rejected_duplicate=len(duplicates),
        selected_from=band,
        truncated=truncated,
    )
    selected_mask = np.zeros(n, dtype=bool)
    selected_mask[picked] = True
    deviations = orm.ArrayData()
    for name, value in (
        ('max_devi_f', deviation_all),
        ('run', run_all),
        ('frame', frame_all),
        ('class', classes),
        ('selected', selected_mask),
    ):
        deviations.set_array(name, value)
    deviations.base.attributes.set('runs', keys)
    outputs: dict[str, orm.Data] = {'statistics': orm.Dict(statistics), 'deviations': deviations}
    if picked:
        outputs['selected'] = _selected_frames(
            picked, runs, run_all, frame_all, deviation_all, cache, static, {**options, 'band': band}
        )
    return outputs


def _selected_frames(picked, runs, run_all, frame_all, deviation_all, cache, static, options) -> FramesData:
    """The picked frames as a FramesData (positions wrapped into the cell), origin ``AL``."""
    numbers, positions, cells, mol_ids, molecules, perturbation, source, temperature = [], [], [], [], [], [], [], []
    for index in picked:
        run = int(run_all[index])
        r = runs[run]
        pos, cell = cache[index]
        positions.append(wrap_positions(pos, cell, pbc=True, eps=0.0))
        cells.append(cell)
        numbers.append(static[run]['numbers'])
        mol_ids.append(static[run]['mol_id'])
        molecules.append(json.dumps(static[run]['molecules']) if static[run]['molecules'] else '')
        perturbation.append(
            json.dumps(
                {
                    'generator': 'active_learning',
                    'iteration': int(options['iteration']),
                    'run': r['key'],
                    'frame': int(frame_all[index]),
                    'max_devi_f': float(deviation_all[index]),
                    'class': options['band'],
                }
            )
        )
        source.append(r['node'].uuid)
        value = r['node'].base.attributes.get('temperature_K', None)
        temperature.append(float('nan') if value is None else float(value))
    return FramesData.from_arrays(
        numbers,
        positions,
        np.asarray(cells),
        True,
        mol_id=mol_ids,
        origin='AL',
        iteration=int(options['iteration']),
        temperature=temperature,
        perturbation=perturbation,
        source=source,
        molecules=[json.loads(m) if m else '' for m in molecules],
    )


@calcfunction
def calibrate_committee(frames: FramesData, predictions: orm.ArrayData, settings: orm.Dict) -> dict[str, orm.Data]:
    """How well the committee deviation predicts the true force error, on freshly labelled frames.

    :param frames: the labelled candidates (reference forces [eV/Å]; ``perturbation`` JSON with the MD
        ``max_devi_f`` when they come from :func:`select_candidates`).
    :param predictions: the ``predictions`` output of ``ilmlff.evaluate`` for the committee on ``frames``
        (``forces`` (M, T, 3) eV/Å, ``n_atoms`` (N,)).
    :param settings: ``Dict`` with ``iteration``, ``f_lo`` and ``f_hi`` [eV/Å] (for the plot).
    :returns: ``calibration`` (Dict: ``n_frames``, Pearson and Spearman correlation of the committee
        deviation with the max force error (and with the RMS force error), mean ratio error/deviation),
        ``calibration_data`` (ArrayData, all (N,) eV/Å: ``deviation`` recomputed on the labelled frames,
        ``deviation_md`` from the exploration (nan if unknown), ``force_error_max`` = max over atoms of
        ``|<F_committee> - F_ref|``, ``force_error_rms``) and ``calibration_plot`` (PNG SinglefileData).
    :raises ValueError: if the predictions do not match the frames.
    """
    options = settings.get_dict()
    forces = np.asarray(predictions.get_array('forces'), dtype=float)
    n_atoms = np.asarray(predictions.get_array('n_atoms'), dtype=int)
    reference = np.asarray(frames.forces, dtype=float)
    if forces.shape[1:] != reference.shape or not np.array_equal(n_atoms, frames.n_atoms_per_frame):
        raise ValueError(f'predictions {forces.shape} do not match the {frames.n_frames} frames {reference.shape}')
    deviation, error_max, error_rms = committee_force_errors(forces, reference, n_atoms)
    deviation_md = []
    for i in range(len(n_atoms)):
        try:
            deviation_md.append(float(json.loads(frames.perturbations[i] or '{}').get('max_devi_f', np.nan)))
        except (ValueError, AttributeError):
            deviation_md.append(np.nan)
    deviation_md = np.asarray(deviation_md)
    with np.errstate(divide='ignore', invalid='ignore'):
        ratio = error_max / deviation
    result = {
        'iteration': options.get('iteration'),
        'n_frames': len(n_atoms),
        'n_models': int(forces.shape[0]),
        'deviation_vs_max_error': correlation(deviation, error_max),
        'deviation_vs_rms_error': correlation(deviation, error_rms),
        'md_deviation_vs_max_error': correlation(deviation_md, error_max),
        'mean_error_over_deviation': float(np.nanmean(ratio[np.isfinite(ratio)])) if np.isfinite(ratio).any() else None,
        'mean_deviation': float(deviation.mean()) if deviation.size else None,
        'mean_force_error_max': float(error_max.mean()) if error_max.size else None,
        'units': 'eV/Å',
    }
    data = orm.ArrayData()
    for name, value in (
        ('deviation', deviation),
        ('deviation_md', deviation_md),
        ('force_error_max', error_max),
        ('force_error_rms', error_rms),
    ):
        data.set_array(name, value)
    pearson = result['deviation_vs_max_error']['pearson']
    title = f'iteration {options.get("iteration")}: {len(n_atoms)} frames, Pearson r = ' + (
        f'{pearson:.2f}' if pearson is not None else 'n/a'
    )
    png = calibration_png(
        deviation, error_max, float(options.get('f_lo', F_LO)), float(options.get('f_hi', F_HI)), title
    )
    plot = orm.SinglefileData(io.BytesIO(png), filename=f'calibration_iter_{int(options.get("iteration", 0)):03d}.png')
    return {'calibration': orm.Dict(finite_or_none(result)), 'calibration_data': data, 'calibration_plot': plot}


@calcfunction
def collect_iterations(state: orm.Dict, previous: orm.Dict | None = None, **statistics: orm.Dict) -> orm.Dict:
    """The ``iterations`` output of ``ilmlff.active_learning``: one record per iteration, and the loop state.

    :param state: ``Dict`` set by the work chain: ``records`` (iteration (str) -> labelling, training-set and
        calibration numbers of that iteration), ``converged``, ``status``, ``stage``, ``n_stages``,
        ``stage_iterations``, ``frames_uuid`` (final training set), ``models_training_set`` (uuid of the frames the
        final models were trained on), ``n_frames_final``.
    :param previous: the ``iterations`` output of a previous run that this one continues (its records first).
    :param statistics: ``iter_<NNN>`` -> the ``statistics`` Dict of :func:`select_candidates` of that iteration.
    :returns: ``Dict`` with ``n_iterations``, ``converged``, ``status``, ``iterations`` (list of records sorted
        by iteration: counts and ratios of accurate / candidate / failed frames, selected, labelled,
        label failures, training-set sizes, calibration correlation) and the state keys.
    """
    values = state.get_dict()
    records = {int(r['iteration']): r for r in (previous.get_dict().get('iterations', []) if previous else [])}
    extra = values.pop('records', {})
    keys = (
        'n_frames',
        'n_runs',
        'n_accurate',
        'n_candidate',
        'n_failed',
        'ratio_accurate',
        'ratio_candidate',
        'ratio_failed',
        'f_lo',
        'f_hi',
        'f_lo_used',
        'n_selected',
        'n_rejected_min_distance',
        'n_rejected_duplicate',
        'selected_from',
        'truncated_runs',
        'converged',
    )
    for node in statistics.values():
        stats = node.get_dict()
        iteration = int(stats['iteration'])
        record = {'iteration': iteration, **{key: stats.get(key) for key in keys}}
        record.update(extra.get(str(iteration), {}))
        records[iteration] = record
    ordered = [records[k] for k in sorted(records)]
    return orm.Dict({**values, 'n_iterations': max(records) if records else 0, 'iterations': ordered})
