"""Label distributions of a data set per frame origin (EQ, nEQ, ...): energy per atom and largest force. No AiiDA.

Works on the ragged arrays of :class:`~aiida_ilmlff.data.frame_arrays.FrameArrays` (``offsets`` delimit the
atoms of each frame). Energies in eV, forces in eV/Å.
"""

from __future__ import annotations

import json
import typing as t

import numpy as np

__all__ = ('PERCENTILES', 'distribution', 'frame_observables', 'generators_by_origin', 'label_summary')

#: Percentiles reported by :func:`distribution`.
PERCENTILES = (5, 25, 50, 75, 95)


def distribution(values: t.Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``mean``, ``std`` (ddof 0), ``min``, ``max`` and ``p5``..``p95`` of the finite ``values``.

    Statistics are ``None`` when no value is finite.
    """
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    result: dict[str, float | int | None] = {'n': int(array.size)}
    if array.size == 0:
        result.update({key: None for key in ('mean', 'std', 'min', 'max', *(f'p{p}' for p in PERCENTILES))})
        return result
    result.update(
        {'mean': float(array.mean()), 'std': float(array.std()), 'min': float(array.min()), 'max': float(array.max())}
    )
    for p, value in zip(PERCENTILES, np.percentile(array, PERCENTILES)):
        result[f'p{p}'] = float(value)
    return result


def frame_observables(
    offsets: np.ndarray, energy: np.ndarray | None, forces: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(energy_per_atom, max_force)`` per frame, ``(N,)`` each, ``nan`` where a frame has no label.

    :param offsets: ``(N + 1,)`` atom offsets. :param energy: ``(N,)`` eV or ``None``.
    :param forces: ``(T, 3)`` eV/Å or ``None``. ``max_force`` is the largest atomic force norm of the frame.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    n_frames = len(counts)
    per_atom = np.full(n_frames, np.nan) if energy is None else np.asarray(energy, dtype=np.float64) / counts
    if forces is None:
        return per_atom, np.full(n_frames, np.nan)
    norms = np.linalg.norm(np.asarray(forces, dtype=np.float64), axis=1)
    norms = np.where(np.isfinite(norms), norms, -np.inf)
    max_force = np.maximum.reduceat(norms, offsets[:-1])
    return per_atom, np.where(np.isfinite(max_force), max_force, np.nan)


def label_summary(origins: t.Sequence[str], energy_per_atom: np.ndarray, max_force: np.ndarray) -> dict[str, t.Any]:
    """Counts and label distributions per origin.

    :returns: ``{'n_frames', 'counts': {origin: n}, 'energy_per_atom': {origin: distribution},
        'max_force': {origin: distribution}, 'units': {...}}`` with an ``all`` entry in both distributions.
    """
    origins = np.asarray(origins, dtype=str)
    names = [o for o in dict.fromkeys(origins.tolist())]
    summary: dict[str, t.Any] = {
        'n_frames': len(origins),
        'counts': {o: int((origins == o).sum()) for o in names},
        'energy_per_atom': {},
        'max_force': {},
        'units': {'energy_per_atom': 'eV/atom', 'max_force': 'eV/Angstrom'},
    }
    for origin in [*names, 'all']:
        mask = np.ones(len(origins), bool) if origin == 'all' else origins == origin
        summary['energy_per_atom'][origin] = distribution(np.asarray(energy_per_atom)[mask])
        summary['max_force'][origin] = distribution(np.asarray(max_force)[mask])
    return summary


def generators_by_origin(origins: t.Sequence[str], perturbations: t.Sequence[str]) -> dict[str, dict[str, int]]:
    """origin -> perturbation generator -> number of frames (``'none'`` for frames without a perturbation record).

    :param perturbations: the JSON ``perturbation`` record of every frame (``''`` for none).
    """
    generators: dict[str, dict[str, int]] = {}
    for origin, text in zip(origins, perturbations):
        name = json.loads(text).get('generator', 'none') if text else 'none'
        generators.setdefault(origin, {})
        generators[origin][name] = generators[origin].get(name, 0) + 1
    return generators
