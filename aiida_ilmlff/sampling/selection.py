"""DP-GEN-style selection of explored frames by committee deviation: trust levels, classes, picking, calibration.

Pure numpy (no AiiDA): the ``ilmlff.active_learning`` work chain and its calcfunctions
(:mod:`aiida_ilmlff.calculations.functions.active_learning`) call these. The semantics are those of DP-GEN /
dpgen2. For every frame saved by the exploration MD, the committee deviation ``max_devi_f`` [eV/Å] (the
largest, over atoms, of the root mean square deviation of the committee forces from their mean) puts the
frame in one of three classes:

- *accurate*: ``max_devi_f < f_lo``: the committee agrees, nothing to learn;
- *candidate*: ``f_lo <= max_devi_f < f_hi``: worth labelling;
- *failed*: ``max_devi_f >= f_hi``: so far off that the configuration is probably unphysical.

At most ``task_max`` candidates are kept per iteration, picked at random (seeded) after two filters: a
minimum interatomic distance (squeezed frames that DFT would reject) and near-duplicates (an RMSD below
``duplicate_rmsd`` from an already picked frame of the same atoms). With ``adaptive_lo_rate`` the lower
level used for the *selection* drops to the deviation quantile that makes that fraction of the non-failed
frames candidates (never above ``f_lo``); accuracy and convergence always use ``f_lo``. With
``fallback_to_failed``, when no frame lies between the levels and the accurate ratio is below ``conv_accuracy``
(a first model far from the trust levels: every explored frame failed), the failed frames of *lowest*
deviation are picked instead (:func:`lowest_failed`, same filters), in deviation order: the configurations
closest to what the committee still handles, rather than the far end of a trajectory that left it.

:data:`SELECTION_DEFAULTS` is the one place of the selection defaults (trust levels ``F_LO`` = 0.05 and
``F_HI`` = 0.15 eV/Å, DP-GEN's examples).
"""

from __future__ import annotations

import typing as t

import numpy as np

from aiida_ilmlff.common.geometry import minimum_image

__all__ = (
    'ACCURATE',
    'CANDIDATE',
    'CLASS_NAMES',
    'FAILED',
    'F_HI',
    'F_LO',
    'SELECTION_DEFAULTS',
    'adaptive_lower_level',
    'align_on_time',
    'classify',
    'committee_force_errors',
    'correlation',
    'last_frames',
    'lowest_failed',
    'minimum_image_rmsd',
    'relative_trust_levels',
    'select_indices',
    'selection_statistics',
)

#: Lower trust level [eV/Å]: below it the committee agrees (DP-GEN's example value).
F_LO = 0.05
#: Upper trust level [eV/Å]: at or above it a frame is failed (DP-GEN's example value).
F_HI = 0.15

#: Defaults of the selection settings (units: eV/Å, Å): the ``selection`` inputs of ``ilmlff.active_learning``
#: and the ``settings`` Dict of its ``select_candidates`` calcfunction.
SELECTION_DEFAULTS: dict[str, t.Any] = {
    'f_lo': F_LO,
    'f_hi': F_HI,
    'adaptive_lo_rate': None,
    'fallback_to_failed': True,
    'task_max': 10,
    'min_distance': 0.7,
    'duplicate_rmsd': 0.02,
    'seed': 0,
    'iteration': 0,
    'conv_accuracy': 0.9,
    'truncated_runs': [],
}

#: Frame classes returned by :func:`classify`.
ACCURATE, CANDIDATE, FAILED = 0, 1, 2
#: Name of each class, in class order.
CLASS_NAMES = ('accurate', 'candidate', 'failed')


def classify(deviation: np.ndarray, f_lo: float, f_hi: float) -> np.ndarray:
    """Class per frame: 0 accurate (``d < f_lo``), 1 candidate (``f_lo <= d < f_hi``), 2 failed (``d >= f_hi``).

    Non-finite deviations count as failed. :param deviation: ``(N,)`` max force deviation [eV/Å].
    :returns: ``(N,)`` int64 classes.
    """
    deviation = np.asarray(deviation, dtype=float)
    classes = np.full(deviation.shape, FAILED, dtype=np.int64)
    finite = np.isfinite(deviation)
    classes[finite & (deviation < f_hi)] = CANDIDATE
    classes[finite & (deviation < f_lo)] = ACCURATE
    return classes


def adaptive_lower_level(deviation: np.ndarray, f_lo: float, f_hi: float, rate: float) -> float:
    """The lower trust level [eV/Å] that makes a fraction ``rate`` of the non-failed frames candidates, at most
    ``f_lo`` (dpgen2's adaptive lower trust level).

    :param deviation: ``(N,)`` max force deviation [eV/Å]. :param rate: fraction in (0, 1).
    :returns: ``f_lo`` when no frame is below ``f_hi``.
    """
    deviation = np.asarray(deviation, dtype=float)
    below = deviation[np.isfinite(deviation) & (deviation < f_hi)]
    if below.size == 0:
        return float(f_lo)
    return float(min(f_lo, np.quantile(below, 1.0 - rate)))


def relative_trust_levels(f_lo: float, f_hi: float, force_rmse: float) -> tuple[float, float]:
    """Trust levels [eV/Å] given in units of a committee's measured force error.

    ``trust_levels: relative`` of ``ilmlff.active_learning``: ``f_lo`` and ``f_hi`` are multiples of the mean
    validation force RMSE of the first committee of the run, so that one protocol fits a tiny first model
    (RMSE ~0.2 eV/Å, where DP-GEN's 0.05 / 0.15 eV/Å fail every frame) and a production one (~0.03 eV/Å).

    :param f_lo: lower level, a multiple of ``force_rmse``. :param f_hi: upper level, idem.
    :param force_rmse: the committee's validation force RMSE [eV/Å].
    :returns: ``(f_lo, f_hi)`` [eV/Å].
    :raises ValueError: for a force RMSE that is not a positive finite number.
    """
    if not (np.isfinite(force_rmse) and force_rmse > 0):
        raise ValueError(f'relative trust levels need a positive, finite committee force RMSE, got {force_rmse}')
    return float(f_lo * force_rmse), float(f_hi * force_rmse)


def lowest_failed(deviation: np.ndarray, f_hi: float, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` failed frames (finite ``d >= f_hi``), lowest deviation first.

    The fallback pool of the selection when no frame lies between the trust levels.
    :param deviation: ``(N,)`` max force deviation [eV/Å]. :returns: ``(<= limit,)`` int64 indices.
    """
    deviation = np.asarray(deviation, dtype=float)
    failed = np.flatnonzero(np.isfinite(deviation) & (deviation >= f_hi))
    order = np.argsort(deviation[failed], kind='stable')
    return failed[order][: max(int(limit), 0)].astype(np.int64)


def last_frames(run: np.ndarray, runs: t.Iterable[int], limit: int) -> np.ndarray:
    """Indices of the last ``limit`` frames of each of ``runs``, the latest first, the runs interleaved.

    The fallback pool of the selection when an exploration MD stopped early (a guard trip) and no explored frame
    is a candidate or failed: the frames the committee still handled just before the MD broke are the nearest
    to what it cannot yet describe.
    :param run: ``(N,)`` run index of every explored frame (frames of a run in time order).
    :param runs: the indices of the runs that stopped early. :returns: ``(<= limit * len(runs),)`` int64 indices.
    """
    run = np.asarray(run)
    tails = [np.flatnonzero(run == index)[::-1][: max(int(limit), 0)] for index in sorted(set(runs))]
    picked = [tail[k] for k in range(max((len(tail) for tail in tails), default=0)) for tail in tails if k < len(tail)]
    return np.asarray(picked, dtype=np.int64)


def minimum_image_rmsd(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> float:
    """RMSD [Å] between two ``(n, 3)`` frames of the same atoms (same order), each displacement taken under the
    minimum image of the ``(3, 3)`` cell [Å] (no image for a singular cell)."""
    delta = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    cell = np.asarray(cell, dtype=float)
    if abs(np.linalg.det(cell)) > 1e-9:
        delta = minimum_image(delta, cell)
    return float(np.sqrt((delta**2).sum(-1).mean()))


def select_indices(
    candidates: t.Sequence[int],
    task_max: int,
    seed: int,
    positions: t.Callable[[int], np.ndarray],
    cell: t.Callable[[int], np.ndarray],
    group: t.Callable[[int], t.Hashable],
    duplicate_rmsd: float,
    shuffle: bool = True,
) -> tuple[list[int], list[int]]:
    """Pick at most ``task_max`` of ``candidates`` in a seeded random order (``shuffle``) or in the order given,
    skipping near-duplicates.

    A candidate is a near-duplicate when its RMSD (:func:`minimum_image_rmsd`) from an already picked frame of
    the same ``group`` (same trajectory atoms) is below ``duplicate_rmsd`` [Å].

    :returns: ``(picked, duplicates)`` lists of candidate values; ``picked`` in the order picked.
    """
    if shuffle:
        rng = np.random.default_rng(int(seed))
        order = [candidates[i] for i in rng.permutation(len(candidates))]
    else:
        order = list(candidates)
    picked: list[int] = []
    duplicates: list[int] = []
    for index in order:
        if len(picked) >= task_max:
            break
        if duplicate_rmsd > 0:
            same = [p for p in picked if group(p) == group(index)]
            if any(minimum_image_rmsd(positions(index), positions(p), cell(index)) < duplicate_rmsd for p in same):
                duplicates.append(index)
                continue
        picked.append(index)
    return picked, duplicates


def correlation(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Pearson and Spearman correlation of ``x`` and ``y`` (``None`` with fewer than 3 points or no spread)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {'pearson': None, 'spearman': None}

    def ranks(values):
        order = np.argsort(values, kind='stable')
        result = np.empty(len(values))
        result[order] = np.arange(len(values))
        return result

    return {
        'pearson': float(np.corrcoef(x, y)[0, 1]),
        'spearman': float(np.corrcoef(ranks(x), ranks(y))[0, 1]),
    }


def committee_force_errors(
    forces: np.ndarray, reference: np.ndarray, n_atoms: t.Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame committee deviation and force errors of the committee mean against reference forces.

    :param forces: ``(M, T, 3)`` forces [eV/Å] of the M committee members on the T atoms of all frames.
    :param reference: ``(T, 3)`` reference forces [eV/Å]. :param n_atoms: atoms per frame (sums to T).
    :returns: ``(deviation, error_max, error_rms)``, each ``(N,)`` eV/Å: the max over atoms of the RMS deviation
        of the members from their mean (``max_devi_f``), the max over atoms of ``|<F> - F_ref|`` and the RMS
        over the frame's force components of ``<F> - F_ref``.
    """
    forces = np.asarray(forces, dtype=float)
    reference = np.asarray(reference, dtype=float)
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    mean = forces.mean(axis=0)
    per_atom_devi = np.sqrt(np.mean(np.sum((forces - mean) ** 2, axis=-1), axis=0))
    per_atom_error = np.linalg.norm(mean - reference, axis=-1)
    deviation, error_max, error_rms = [], [], []
    for i in range(len(n_atoms)):
        window = slice(offsets[i], offsets[i + 1])
        deviation.append(per_atom_devi[window].max())
        error_max.append(per_atom_error[window].max())
        error_rms.append(np.sqrt(np.mean((mean[window] - reference[window]) ** 2)))
    return np.asarray(deviation), np.asarray(error_max), np.asarray(error_rms)


def align_on_time(target_time: np.ndarray, time: np.ndarray, values: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    """``values`` (recorded at ``time`` [fs], sorted) at each ``target_time`` [fs]; nan where no row is within
    ``tolerance`` [fs] (e.g. the committee deviation of every saved MD frame, from the deviation log)."""
    time = np.asarray(time, dtype=float)
    values = np.asarray(values, dtype=float)
    result = np.full(len(target_time), np.nan)
    if len(time) == 0:
        return result
    position = np.clip(np.searchsorted(time, target_time), 0, len(time) - 1)
    for k, (p, target) in enumerate(zip(position, target_time)):
        for q in (p - 1, p):
            if 0 <= q < len(time) and abs(time[q] - target) < tolerance:
                result[k] = values[q]
    return result


def selection_statistics(
    deviation: np.ndarray,
    run: np.ndarray,
    classes: np.ndarray,
    picked: t.Sequence[int],
    runs: t.Sequence[tuple[str, t.Mapping[str, t.Any]]],
    options: t.Mapping[str, t.Any],
    *,
    f_lo_used: float,
    n_selectable: int,
    n_rejected_min_distance: int,
    n_rejected_duplicate: int,
    selected_from: str | None = None,
    truncated: t.Sequence[str] = (),
) -> dict[str, t.Any]:
    """The ``statistics`` of one selection: counts and ratios of accurate / candidate / failed frames, overall and
    per run, the trust levels used, the filters' counts and whether the committee has converged.

    A committee whose exploration MD stopped early (``truncated``: a guard trip) has not converged whatever its
    accurate ratio: the frames it saved are the ones it handled, not the configurations it met.

    :param deviation: ``(N,)`` max force deviation [eV/Å] of every explored frame. :param run: ``(N,)`` run index.
    :param classes: ``(N,)`` :func:`classify` classes. :param picked: indices of the selected frames.
    :param runs: ``(key, {temperature_K, pressure_bar, ensemble})`` per run, in run-index order.
    :param options: the selection settings (:data:`SELECTION_DEFAULTS` keys).
    :param selected_from: the band the picked frames came from: ``'candidate'``, ``'failed'`` (the fallback),
        ``'truncated'`` (the last frames of runs that stopped early) or ``None`` (nothing picked).
    :param truncated: the keys of the runs that stopped before their last step.
    :returns: the dict (``converged``: accurate ratio >= ``conv_accuracy`` and no run truncated;
        ``truncated_runs``).
    """
    n = len(deviation)
    counts = {name: int(np.sum(classes == value)) for name, value in (('accurate', 0), ('candidate', 1), ('failed', 2))}
    per_run = {}
    for index, (key, attributes) in enumerate(runs):
        mask = run == index
        values = deviation[mask]
        per_run[key] = {
            'n_frames': int(mask.sum()),
            **{f'n_{name}': int(np.sum(classes[mask] == value)) for name, value in (('accurate', 0), ('candidate', 1))},
            'n_failed': int(np.sum(classes[mask] == FAILED)),
            'n_selected': int(np.sum(np.isin(np.flatnonzero(mask), picked))),
            'temperature_K': attributes.get('temperature_K'),
            'pressure_bar': attributes.get('pressure_bar'),
            'ensemble': attributes.get('ensemble'),
            'truncated': key in truncated,
            'max_devi_f_max': float(np.nanmax(values)) if np.isfinite(values).any() else None,
        }
    finite = deviation[np.isfinite(deviation)]
    ratio = {name: (count / n if n else 0.0) for name, count in counts.items()}
    return {
        'iteration': int(options['iteration']),
        'n_frames': n,
        'n_runs': len(runs),
        **{f'n_{name}': count for name, count in counts.items()},
        **{f'ratio_{name}': value for name, value in ratio.items()},
        'f_lo': float(options['f_lo']),
        'f_hi': float(options['f_hi']),
        'f_lo_used': f_lo_used,
        'adaptive_lo_rate': options.get('adaptive_lo_rate'),
        'fallback_to_failed': bool(options.get('fallback_to_failed')),
        'selected_from': selected_from if picked else None,
        'n_selectable': int(n_selectable),
        'n_rejected_min_distance': int(n_rejected_min_distance),
        'n_rejected_duplicate': int(n_rejected_duplicate),
        'n_selected': len(picked),
        'task_max': int(options['task_max']),
        'conv_accuracy': float(options['conv_accuracy']),
        'truncated_runs': sorted(truncated),
        'converged': bool(n > 0 and ratio['accurate'] >= float(options['conv_accuracy']) and not truncated),
        'max_devi_f_quantiles': {
            q: (float(np.quantile(finite, float(q))) if finite.size else None) for q in ('0.5', '0.9', '0.99')
        },
        'runs': per_run,
        'units': {'f_lo': 'eV/Å', 'f_hi': 'eV/Å', 'max_devi_f': 'eV/Å', 'min_distance': 'Å'},
    }
