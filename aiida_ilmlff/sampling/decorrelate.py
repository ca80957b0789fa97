"""Decorrelated sampling of equilibrium (EQ) frames from an MD trajectory. Pure numpy, no AiiDA.

Two steps, both recorded (:class:`Selection`):

1. **Equilibration cut.** ``pymbar.timeseries.detect_equilibration`` (Chodera, J. Chem. Theory Comput. 12,
   1799 (2016)), through :func:`aiida_ilmlff.analysis.timeseries_statistics`, on a per-frame observable:
   the start ``t0`` that maximises the number of uncorrelated samples of ``[t0, T)`` is taken as the end of
   equilibration. The observable is the potential energy when every frame has one, else the cell volume
   when it varies (NPT), else the structural drift: the distance of each frame's descriptor
   (:func:`pair_distance_descriptor`) from the mean descriptor of the second half of the trajectory.
2. **Spacing.** ``method='inefficiency'``: frames ``t0, t0 + s, t0 + 2s, ...`` with ``s = ceil(g)``, ``g`` the
   statistical inefficiency (``1 + 2 tau``, in frames) of the observable after the cut, so consecutive picks
   are about uncorrelated; ``n_max`` thins them further (evenly). ``method='fps'``: farthest-point sampling
   (greedy max-min, Euclidean) on the descriptors of those decorrelated frames, for the ``n_max`` most
   diverse of them (``fps_pool='all'``: among all frames after the cut, for runs too short to hold
   ``n_max`` decorrelated frames). ``method='stride'``: every ``stride``-th frame after the cut (no statistics).

The descriptor is cheap and permutation invariant: for every element pair, the histogram of interatomic
distances (minimum image, all periodic images up to ``r_max``) in ``n_bins`` bins, divided by the number of
atoms of the first element, concatenated over the sorted element pairs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing as t

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

__all__ = (
    'FPS_POOLS',
    'METHODS',
    'OBSERVABLES',
    'Selection',
    'detect_equilibration',
    'farthest_point_sampling',
    'pair_distance_descriptor',
    'select_equilibrium_frames',
)

METHODS = ('inefficiency', 'fps', 'stride')
FPS_POOLS = ('decorrelated', 'all')
OBSERVABLES = ('auto', 'energy', 'volume', 'descriptor')


@dataclasses.dataclass(frozen=True)
class Selection:
    """Frames chosen from a trajectory and how.

    Attributes:
        indices: selected frame indices (ascending for ``inefficiency``/``stride``, pick order for ``fps``).
        equilibration_index: first frame after the equilibration cut (``t0``).
        statistical_inefficiency: ``g`` of the observable over ``[t0, T)``, in frames (1 if constant).
        spacing: stride in frames between picks (``inefficiency``/``stride``); for ``fps`` the smallest index gap
            between picked frames.
        method, observable: what was used. n_frames: frames in the trajectory. n_uncorrelated: ``(T - t0) / g``.
    """

    indices: tuple[int, ...]
    equilibration_index: int
    statistical_inefficiency: float
    spacing: int
    method: str
    observable: str
    n_frames: int
    n_uncorrelated: float

    def to_dict(self) -> dict[str, t.Any]:
        """JSON-ready form."""
        return {
            'indices': [int(i) for i in self.indices],
            'equilibration_index': int(self.equilibration_index),
            'statistical_inefficiency': float(self.statistical_inefficiency),
            'spacing': int(self.spacing),
            'method': self.method,
            'observable': self.observable,
            'n_frames': int(self.n_frames),
            'n_uncorrelated': float(self.n_uncorrelated),
        }


def pair_distance_descriptor(
    atoms: Atoms, elements: t.Sequence[int], r_max: float = 6.0, n_bins: int = 24
) -> np.ndarray:
    """Per-element-pair histograms of interatomic distances of one frame, ``(n_pairs * n_bins,)``.

    :param elements: atomic numbers defining the pairs (use the same list for every frame compared).
    :param r_max: Å, largest distance counted. :param n_bins: bins per pair over ``(0, r_max]``.
    """
    elements = sorted(int(z) for z in set(elements))
    pairs = list(itertools.combinations_with_replacement(elements, 2))
    descriptor = np.zeros((len(pairs), n_bins))
    if len(atoms) > 1:
        i, j, d = neighbor_list('ijd', atoms, float(r_max), self_interaction=False)
        keep = i < j
        i, j, d = i[keep], j[keep], d[keep]
        numbers = atoms.numbers
        lookup = {pair: k for k, pair in enumerate(pairs)}
        a, b = np.minimum(numbers[i], numbers[j]), np.maximum(numbers[i], numbers[j])
        bins = np.minimum((d / r_max * n_bins).astype(int), n_bins - 1)
        counts = {z: max(int(np.count_nonzero(numbers == z)), 1) for z in elements}
        for (za, zb), k in lookup.items():
            mask = (a == za) & (b == zb)
            if mask.any():
                descriptor[k] = np.bincount(bins[mask], minlength=n_bins) / counts[za]
    return descriptor.ravel()


def farthest_point_sampling(points: np.ndarray, n: int, first: int = 0) -> list[int]:
    """Greedy max-min selection of ``n`` rows of ``points`` ``(N, D)``, starting from row ``first``.

    :returns: row indices in pick order (at most ``N``).
    """
    points = np.asarray(points, dtype=np.float64)
    total = len(points)
    n = min(int(n), total)
    if n <= 0:
        return []
    chosen = [int(first)]
    distance = np.linalg.norm(points - points[first], axis=1)
    while len(chosen) < n:
        k = int(np.argmax(distance))
        if distance[k] <= 0:
            remaining = [i for i in range(total) if i not in set(chosen)]
            chosen.extend(remaining[: n - len(chosen)])
            break
        chosen.append(k)
        distance = np.minimum(distance, np.linalg.norm(points - points[k], axis=1))
    return chosen


def detect_equilibration(values: t.Sequence[float]) -> tuple[int, float]:
    """``(t0, g)``: equilibration index and statistical inefficiency (frames) of the series after ``t0``.

    Uses :func:`aiida_ilmlff.analysis.timeseries_statistics` (pymbar's ``detect_equilibration`` and
    ``statistical_inefficiency``).

    :raises ValueError: for fewer than 2 values or non-finite values.
    """
    from aiida_ilmlff.analysis import timeseries_statistics

    statistics = timeseries_statistics(np.asarray(values, dtype=np.float64), equilibration='detect')
    return int(statistics.equilibration_index), float(max(statistics.statistical_inefficiency, 1.0))


def _observable(
    energies: np.ndarray | None, volumes: np.ndarray | None, descriptors: t.Callable[[], np.ndarray], choice: str
) -> tuple[np.ndarray, str]:
    if choice not in OBSERVABLES:
        raise ValueError(f'observable must be one of {OBSERVABLES}, got {choice!r}')
    has_energy = energies is not None and np.isfinite(energies).all()
    if choice == 'energy' or (choice == 'auto' and has_energy):
        if not has_energy:
            raise ValueError('observable `energy` needs a potential energy on every frame')
        return np.asarray(energies, dtype=np.float64), 'energy'
    varies = volumes is not None and np.ptp(volumes) > 1e-9 * max(float(np.abs(volumes).max()), 1.0)
    if choice == 'volume' or (choice == 'auto' and varies):
        if volumes is None:
            raise ValueError('observable `volume` needs cells')
        return np.asarray(volumes, dtype=np.float64), 'volume'
    matrix = descriptors()
    reference = matrix[len(matrix) // 2 :].mean(axis=0)
    return np.linalg.norm(matrix - reference, axis=1), 'descriptor'


def select_equilibrium_frames(
    n_frames: int,
    *,
    energies: t.Sequence[float] | None = None,
    volumes: t.Sequence[float] | None = None,
    descriptors: np.ndarray | t.Callable[[], np.ndarray] | None = None,
    method: str = 'inefficiency',
    n_max: int | None = None,
    equilibration: str | int | None = 'detect',
    observable: str = 'auto',
    stride: int = 1,
    fps_pool: str = 'decorrelated',
) -> Selection:
    """Choose decorrelated equilibrium frames of a trajectory of ``n_frames`` frames (see the module docstring).

    :param energies: ``(T,)`` potential energies [eV] (``nan`` where unknown).
    :param volumes: ``(T,)`` cell volumes [Å^3].
    :param descriptors: ``(T, D)`` descriptors, or a callable returning them (computed only when needed: for
        ``fps`` or the ``descriptor`` observable).
    :param method: ``inefficiency``, ``fps`` or ``stride``.
    :param n_max: most frames to return (``None``: all that the method gives; required for ``fps``).
    :param equilibration: ``'detect'``, a frame index, or ``None`` (no cut).
    :param observable: ``auto``, ``energy``, ``volume`` or ``descriptor`` (for the cut and ``g``).
    :param stride: frames between picks for ``method='stride'``.
    :param fps_pool: ``fps`` picks among the frames spaced by ``ceil(g)`` (``'decorrelated'``) or among all
        frames after the cut (``'all'``: for runs shorter than ``n_max * g``, where too few decorrelated
        frames exist; the picks are then the most diverse, not guaranteed uncorrelated).
    :raises ValueError: for an unknown method/observable, fewer than 2 frames with ``'detect'``, an
        equilibration index outside the trajectory, ``fps`` without ``n_max`` or descriptors.
    """
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    if n_frames < 1:
        raise ValueError('the trajectory has no frames')
    if n_max is not None and n_max < 1:
        raise ValueError(f'n_max must be >= 1, got {n_max}')
    cache: dict[str, np.ndarray] = {}

    def get_descriptors() -> np.ndarray:
        if 'd' not in cache:
            if descriptors is None:
                raise ValueError('this selection needs frame descriptors')
            cache['d'] = np.asarray(descriptors() if callable(descriptors) else descriptors, dtype=np.float64)
        return cache['d']

    energies_array = None if energies is None else np.asarray(energies, dtype=np.float64)
    volumes_array = None if volumes is None else np.asarray(volumes, dtype=np.float64)
    if n_frames >= 2:
        values, observable_used = _observable(energies_array, volumes_array, get_descriptors, observable)
    else:
        values, observable_used = np.zeros(1), observable
    if equilibration == 'detect':
        if n_frames < 2:
            raise ValueError('equilibration detection needs at least 2 frames')
        start, inefficiency = detect_equilibration(values)
    else:
        start = 0 if equilibration is None else int(equilibration)
        if not 0 <= start < n_frames:
            raise ValueError(f'equilibration index {start} outside the trajectory of {n_frames} frames')
        inefficiency = detect_equilibration(values[start:])[1] if n_frames - start >= 3 else 1.0
    available = n_frames - start
    if method == 'fps':
        if n_max is None:
            raise ValueError('farthest-point sampling needs n_max (the number of frames to pick)')
        if fps_pool not in FPS_POOLS:
            raise ValueError(f'fps_pool must be one of {FPS_POOLS}, got {fps_pool!r}')
        step = max(1, math.ceil(inefficiency - 1e-9)) if fps_pool == 'decorrelated' else 1
        candidates = np.arange(start, n_frames, step)
        matrix = get_descriptors()[candidates]
        picked = [int(candidates[k]) for k in farthest_point_sampling(matrix, n_max)]
        ordered = sorted(picked)
        spacing = int(np.diff(ordered).min()) if len(ordered) > 1 else available
        indices = tuple(picked)
    else:
        spacing = math.ceil(inefficiency - 1e-9) if method == 'inefficiency' else int(stride)
        if spacing < 1:
            raise ValueError(f'stride must be >= 1, got {stride}')
        candidates = np.arange(start, n_frames, spacing)
        if n_max is not None and len(candidates) > n_max:
            # Thin evenly: keep n_max of the candidates, first and last included.
            keep = np.unique(np.round(np.linspace(0, len(candidates) - 1, n_max)).astype(int))
            candidates = candidates[keep]
            if len(candidates) > 1:
                spacing = int(np.diff(candidates).min())
        indices = tuple(int(i) for i in candidates)
    return Selection(
        indices=indices,
        equilibration_index=int(start),
        statistical_inefficiency=float(inefficiency),
        spacing=int(spacing),
        method=method,
        observable=observable_used,
        n_frames=int(n_frames),
        n_uncorrelated=float(available / inefficiency),
    )
