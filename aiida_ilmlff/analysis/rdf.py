"""Radial distribution functions, coordination numbers and the first minimum of g(r)."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.integrate import cumulative_trapezoid
from scipy.signal import find_peaks, savgol_filter

from ._common import AnalysisResult
from .geometry import cell_volume, pairs_within, validate_cell

__all__ = (
    'NoFirstShellError',
    'RDFAccumulator',
    'RDFResult',
    'coordination_number',
    'first_minimum',
    'rdf',
    'running_coordination_number',
)


@dataclasses.dataclass(frozen=True)
class RDFResult(AnalysisResult):
    """An accumulated radial distribution function.

    Attributes:
        r: (n_bins,) bin centres in Å.
        g: (n_bins,) g(r).
        edges: (n_bins + 1,) bin edges in Å.
        counts: (n_bins,) ordered pair counts summed over frames.
        n_frames: frames accumulated.
        n_a, n_b: sizes of the two selections.
        n_pairs: ordered a-b pairs counted per frame (self and excluded pairs removed).
        mean_volume: mean cell volume in Å^3.
        number_density_b: ``n_pairs / n_a / mean_volume`` in Å^-3: the density of b seen from an a
            (``n_b / V`` for distinct groups, ``(n_a - 1) / V`` for a group with itself), the
            ``rho`` of :func:`coordination_number`.
    """

    r: np.ndarray
    g: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    n_frames: int
    n_a: int
    n_b: int
    n_pairs: float
    mean_volume: float
    number_density_b: float

    def coordination_number(self, r_cut: float) -> float:
        """Mean number of b within ``r_cut`` of an a (see :func:`coordination_number`)."""
        return coordination_number(self.r, self.g, self.number_density_b, r_cut)


class RDFAccumulator:
    """Accumulates pair-distance histograms frame by frame (the streaming form of :func:`rdf`).

    Normalisation (as MDAnalysis ``InterRDF``): ``g(r_k) = counts_k / (n_frames * n_pairs / <V> *
    4/3 pi (r_{k+1}^3 - r_k^3))`` with ``<V>`` the mean cell volume, ``n_pairs = n_a n_b`` minus the
    excluded ordered pairs (self pairs when a is b, same-molecule pairs when ``mol_id`` are given).
    Bins are ``numpy.histogram`` bins over [0, r_max] (the last one closed).

    :param r_max: largest distance in Å; must not exceed half the smallest perpendicular width of
        any cell added.
    :param n_bins: number of bins.
    :param same: whether a and b are the same group (self pairs excluded, each pair counted in both
        orders).
    :param mol_id_a, mol_id_b: optional (N_a,), (N_b,) molecule ids: pairs with equal ids are excluded
        (intramolecular pairs of an atom-atom RDF). With ``same`` only ``mol_id_a`` is used.
    """

    def __init__(self, r_max: float, n_bins: int, *, same: bool = False, mol_id_a=None, mol_id_b=None) -> None:
        if not r_max > 0:
            raise ValueError(f'r_max must be positive, got {r_max}')
        if int(n_bins) < 1:
            raise ValueError(f'n_bins must be >= 1, got {n_bins}')
        self.r_max = float(r_max)
        self.n_bins = int(n_bins)
        self.same = bool(same)
        self.edges = np.linspace(0.0, self.r_max, self.n_bins + 1)
        self.counts = np.zeros(self.n_bins, dtype=np.int64)
        self.volume_sum = 0.0
        self.n_frames = 0
        self.n_a: int | None = None
        self.n_b: int | None = None
        self.mol_id_a = None if mol_id_a is None else np.asarray(mol_id_a)
        self.mol_id_b = self.mol_id_a if same else (None if mol_id_b is None else np.asarray(mol_id_b))
        if (self.mol_id_a is None) != (self.mol_id_b is None):
            raise ValueError('give both mol_id_a and mol_id_b (or neither) for an a != b RDF')

    def _check_sizes(self, n_a: int, n_b: int) -> None:
        if self.n_a is None:
            self.n_a, self.n_b = n_a, n_b
            if self.mol_id_a is not None and (len(self.mol_id_a) != n_a or len(self.mol_id_b) != n_b):
                raise ValueError('mol_id arrays must have one entry per atom of each selection')
        elif (self.n_a, self.n_b) != (n_a, n_b):
            raise ValueError('the number of atoms in a selection changed between frames')

    def add_frame(self, positions_a, positions_b, cell) -> None:
        """Add one frame: (N_a, 3), (N_b, 3) positions in Å (b ignored when ``same``), (3, 3) cell."""
        a = np.asarray(positions_a, dtype=float)
        b = a if self.same else np.asarray(positions_b, dtype=float)
        self._check_sizes(len(a), len(b))
        i, j, d = pairs_within(a, b, cell, self.r_max, same=self.same)
        if self.mol_id_a is not None:
            keep = self.mol_id_a[i] != self.mol_id_b[j]
            d = d[keep]
        counts, _ = np.histogram(d, bins=self.n_bins, range=(0.0, self.r_max))
        self.counts += counts * 2 if self.same else counts
        self.volume_sum += cell_volume(cell)
        self.n_frames += 1

    def add_frames(self, positions_a, positions_b, cell) -> None:
        """Add (T, N_a, 3) and (T, N_b, 3) frames with a (3, 3) or (T, 3, 3) cell."""
        a = np.asarray(positions_a, dtype=float)
        cell = validate_cell(cell, n_frames=len(a))
        for t in range(len(a)):
            self.add_frame(a[t], None if self.same else positions_b[t], cell[t] if cell.ndim == 3 else cell)

    @property
    def n_pairs(self) -> float:
        """Ordered a-b pairs per frame after removing self and excluded pairs."""
        n_a, n_b = self.n_a or 0, self.n_b or 0
        if self.mol_id_a is not None:
            ids_a, counts_a = np.unique(self.mol_id_a, return_counts=True)
            ids_b, counts_b = np.unique(self.mol_id_b, return_counts=True)
            _, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=True, return_indices=True)
            return float(n_a * n_b - np.sum(counts_a[ia] * counts_b[ib]))
        return float(n_a * (n_a - 1)) if self.same else float(n_a * n_b)

    def result(self) -> RDFResult:
        """The normalised g(r) of the frames added so far; raises ``ValueError`` if none or no pairs."""
        if self.n_frames == 0:
            raise ValueError('no frames were added to the RDF')
        n_pairs = self.n_pairs
        if n_pairs <= 0:
            raise ValueError('the selections have no pair to count (after exclusions)')
        mean_volume = self.volume_sum / self.n_frames
        shells = 4.0 / 3.0 * np.pi * np.diff(self.edges**3)
        g = self.counts / (self.n_frames * n_pairs / mean_volume * shells)
        return RDFResult(
            r=0.5 * (self.edges[1:] + self.edges[:-1]),
            g=g,
            edges=self.edges.copy(),
            counts=self.counts.copy(),
            n_frames=self.n_frames,
            n_a=int(self.n_a),
            n_b=int(self.n_b),
            n_pairs=n_pairs,
            mean_volume=float(mean_volume),
            number_density_b=float(n_pairs / self.n_a / mean_volume),
        )


def _is_same(a: np.ndarray, b) -> bool:
    if b is None or b is a:
        return True
    b = np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b)


def rdf(
    positions_a,
    positions_b,
    cell,
    r_max: float,
    n_bins: int,
    *,
    mol_id_a=None,
    mol_id_b=None,
    return_result: bool = False,
):
    """Radial distribution function g_ab(r), averaged over frames.

    Pair distances under the minimum-image convention (exact for orthorhombic and triclinic cells
    within ``r_max``), found with a periodic k-d tree; normalisation as MDAnalysis ``InterRDF``
    (see :class:`RDFAccumulator`): ``g(r) = <n_ab(r)> / (n_pairs / <V> * 4 pi r^2 dr)``, so an ideal
    gas gives g = 1 (Allen & Tildesley, Computer Simulation of Liquids, 2nd ed., section 8.2).

    a == b (``positions_b`` is None, the same object, or an equal array) excludes self pairs and
    normalises by ``N_a (N_a - 1)``; mol_id arrays exclude pairs within a molecule (intramolecular
    pairs of an atom-atom RDF), removing them from the normalisation too. Overlapping but different
    selections (e.g. all atoms vs O) count the atom with itself at r = 0: use disjoint groups.

    :param positions_a: (N_a, 3) one frame or (T, N_a, 3) frames, Å.
    :param positions_b: (N_b, 3) or (T, N_b, 3), Å; None for a == b.
    :param cell: (3, 3) or (T, 3, 3) in Å (rows are lattice vectors).
    :param r_max: largest distance in Å, at most half the smallest perpendicular cell width.
    :param n_bins: number of bins on [0, r_max].
    :param mol_id_a, mol_id_b: optional molecule ids per atom of a and b (only ``mol_id_a`` when a == b).
    :param return_result: return the full :class:`RDFResult` instead of ``(r, g)``.
    :returns: ``(r, g)``: (n_bins,) bin centres in Å and g(r); or an :class:`RDFResult`.
    :raises ValueError: ``r_max`` larger than half the smallest perpendicular width, bad shapes.
    """
    a = np.asarray(positions_a, dtype=float)
    same = _is_same(a, positions_b)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f'positions_a must have shape (N, 3) or (T, N, 3), got {np.shape(positions_a)}')
    b = None
    if not same:
        b = np.asarray(positions_b, dtype=float)
        b = b[None] if b.ndim == 2 else b
        if b.ndim != 3 or b.shape[2] != 3 or len(b) != len(a):
            raise ValueError('positions_b must have shape (N_b, 3) or (T, N_b, 3) with the frames of positions_a')
    accumulator = RDFAccumulator(r_max, n_bins, same=same, mol_id_a=mol_id_a, mol_id_b=mol_id_b)
    accumulator.add_frames(a, b, cell)
    result = accumulator.result()
    return result if return_result else (result.r, result.g)


def running_coordination_number(r, g, number_density_b: float) -> np.ndarray:
    """Running coordination number ``n(r) = 4 pi rho int_0^r g(s) s^2 ds``.

    Trapezoidal rule on the given grid, starting from (r = 0, integrand = 0).

    :param r: (K,) increasing radii in Å (e.g. bin centres).
    :param g: (K,) g(r).
    :param number_density_b: number density of b in Å^-3 (:attr:`RDFResult.number_density_b`).
    :returns: (K,) n(r).
    """
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if r.shape != g.shape or r.ndim != 1:
        raise ValueError('r and g must be 1-D arrays of the same length')
    if np.any(np.diff(r) <= 0) or r[0] < 0:
        raise ValueError('r must be non-negative and strictly increasing')
    grid = np.concatenate([[0.0], r]) if r[0] > 0 else r
    integrand = 4.0 * np.pi * number_density_b * np.concatenate([[0.0], g * r**2] if r[0] > 0 else [g * r**2])
    running = cumulative_trapezoid(integrand, grid, initial=0.0)
    return running[1:] if r[0] > 0 else running


def coordination_number(r, g, number_density_b: float, r_cut: float) -> float:
    """Coordination number ``CN = 4 pi rho int_0^r_cut g(r) r^2 dr``.

    Trapezoidal rule on the grid (from r = 0), the integrand interpolated linearly at ``r_cut``.

    :param r: (K,) radii in Å; ``g``: (K,) g(r); ``number_density_b``: Å^-3; ``r_cut``: Å.
    :returns: the mean number of b within ``r_cut`` of an a.
    :raises ValueError: ``r_cut`` outside [0, r[-1]].
    """
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if not 0 <= r_cut <= r[-1]:
        raise ValueError(f'r_cut = {r_cut} Å is outside the RDF range [0, {r[-1]}] Å')
    inside = r < r_cut
    grid = np.concatenate([[0.0], r[inside], [r_cut]])
    values = np.concatenate([[0.0], g[inside] * r[inside] ** 2, [np.interp(r_cut, r, g) * r_cut**2]])
    return float(4.0 * np.pi * number_density_b * np.trapezoid(values, grid))


class NoFirstShellError(ValueError):
    """g(r) has no first peak, or no minimum after it, within its range: no first shell to count (too short a run,
    too small a box, or a pair that is not in contact)."""


def first_minimum(
    r, g, *, smooth_width_A: float = 0.3, peak_threshold: float = 1.0, min_prominence: float = 0.05
) -> float:
    """Position of the first minimum of g(r) after its first peak, in Å.

    Rule: g is smoothed with a Savitzky-Golay filter (polynomial order 2, window the odd number of
    bins closest to ``smooth_width_A``, at least 5 bins). Peaks and troughs of the smoothed curve
    count only with a topographic prominence of at least ``min_prominence`` (in units of g;
    ``scipy.signal.find_peaks``), which ignores noise wiggles. The first peak is the first such
    maximum above ``peak_threshold`` (default 1; else the highest one); the first minimum is the
    first such trough after it, refined by a least-squares parabola through the unsmoothed g within
    ``smooth_width_A`` of it (kept if its vertex falls in that range).

    :param r: (K,) evenly spaced radii in Å; ``g``: (K,) g(r).
    :returns: r of the first minimum in Å.
    :raises NoFirstShellError: (a ``ValueError``) no peak, or no minimum after the first peak within the range.
    :raises ValueError: ``r`` and ``g`` not 1-D arrays of one length >= 7.
    """
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if r.shape != g.shape or r.ndim != 1 or len(r) < 7:
        raise ValueError('r and g must be 1-D arrays of equal length >= 7')
    dr = float(r[1] - r[0])
    window = max(5, round(smooth_width_A / dr) | 1)
    window = min(window, len(r) if len(r) % 2 else len(r) - 1)
    smooth = savgol_filter(g, window, 2)
    maxima, _ = find_peaks(smooth, prominence=min_prominence)
    if not len(maxima):
        raise NoFirstShellError('g(r) has no peak in the given range')
    high = maxima[smooth[maxima] > peak_threshold]
    peak = int(high[0]) if len(high) else int(maxima[np.argmax(smooth[maxima])])
    minima, _ = find_peaks(-smooth, prominence=min_prominence)
    minima = minima[minima > peak]
    if not len(minima):
        raise NoFirstShellError(f'g(r) has no minimum after its first peak at {r[peak]:.3f} Å: extend r_max')
    k = int(minima[0])
    # refine: least-squares parabola through the raw g within +-smooth_width_A of the smoothed minimum
    half = max(2, round(smooth_width_A / dr))
    lo, hi = max(peak + 1, k - half), min(len(r), k + half + 1)
    c2, c1, _ = np.polyfit(r[lo:hi] - r[k], g[lo:hi], 2)
    if c2 > 0 and abs(-c1 / (2 * c2)) <= half * dr:
        return float(r[k] - c1 / (2 * c2))
    return float(r[k])
