"""How far a model's g(r) is from a reference g(r): first-peak position and height, and one distance between curves.

The measures of a model's liquid structure against its reference (an AIMD at the same state point) that practitioners
read first: where the first peak of each site-site g(r) sits and how high it is, and one number for the whole curve.
The distance is the mean absolute error of the curves integrated over r (Fu et al., "Forces are not enough:
benchmark and critical evaluation for machine learning force fields with molecular simulations", TMLR 2023,
arXiv 2210.07237, Eq. 2: ``RDF MAE = integral |g_model(r) - g_reference(r)| dr``), in Å (g is dimensionless).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._common import AnalysisResult
from .rdf import NoFirstShellError

__all__ = ('RDFAgreement', 'first_peak', 'rdf_agreement', 'rdf_distance')


def _curve(r, g) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(r, dtype=float)
    g = np.asarray(g, dtype=float)
    if r.ndim != 1 or r.shape != g.shape or len(r) < 7:
        raise ValueError('r and g must be 1-D arrays of equal length >= 7')
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(g))):
        raise ValueError('r and g must be finite')
    if np.any(np.diff(r) <= 0):
        raise ValueError('r must increase')
    return r, g


def first_peak(r, g, *, peak_threshold: float = 1.0, min_prominence: float = 0.05) -> tuple[float, float]:
    """Position (Å) and height of the first peak of g(r): the first maximum above ``peak_threshold`` (else the highest).

    Maxima count with a topographic prominence of at least ``min_prominence`` (``scipy.signal.find_peaks``, as
    :func:`~aiida_ilmlff.analysis.rdf.first_minimum`), refined by the parabola through the peak bin and its two
    neighbours.

    :param r: (K,) increasing radii in Å; ``g``: (K,) g(r).
    :returns: ``(r_peak, g_peak)``.
    :raises NoFirstShellError: g(r) has no peak in its range.
    :raises ValueError: not 1-D finite arrays of one length >= 7, or ``r`` not increasing.
    """
    from scipy.signal import find_peaks

    r, g = _curve(r, g)
    maxima, _ = find_peaks(g, prominence=min_prominence)
    if not len(maxima):
        raise NoFirstShellError('g(r) has no peak in the given range')
    high = maxima[g[maxima] > peak_threshold]
    k = int(high[0]) if len(high) else int(maxima[np.argmax(g[maxima])])
    c2, c1, c0 = np.polyfit(r[k - 1 : k + 2] - r[k], g[k - 1 : k + 2], 2)
    if c2 < 0:
        shift = -c1 / (2 * c2)
        if abs(shift) <= max(r[k + 1] - r[k], r[k] - r[k - 1]):
            return float(r[k] + shift), float(c0 - c1 * c1 / (4 * c2))
    return float(r[k]), float(g[k])


def rdf_distance(r, g_model, g_reference) -> float:
    """The integrated absolute difference of two g(r) on one grid, in Å (Fu et al. 2023, Eq. 2; module docstring).

    0 for identical curves; a curve shifted far from a peak of area A differs by 2A.

    :param r: (K,) increasing radii in Å shared by both curves; ``g_model``, ``g_reference``: (K,).
    :raises ValueError: arrays of different shapes, not finite, or ``r`` not increasing.
    """
    r, g_model = _curve(r, g_model)
    _, g_reference = _curve(r, g_reference)
    return float(np.trapezoid(np.abs(g_model - g_reference), r))


@dataclasses.dataclass(frozen=True)
class RDFAgreement(AnalysisResult):
    """A model's g(r) against the reference's for one site pair.

    Attributes:
        peak_position, reference_peak_position: first-peak positions, Å.
        peak_shift: model minus reference position, Å.
        peak_height, reference_peak_height: first-peak heights of g.
        peak_height_ratio: model over reference height (1: equal).
        distance: :func:`rdf_distance` over the common range, Å.
        r_max: the upper end of that range, Å.
    """

    peak_position: float
    reference_peak_position: float
    peak_shift: float
    peak_height: float
    reference_peak_height: float
    peak_height_ratio: float
    distance: float
    r_max: float


def rdf_agreement(r, g_model, r_reference, g_reference) -> RDFAgreement:
    """First-peak position and height of a model's g(r) against a reference g(r), and their distance.

    The curves may come from different runs with different grids: the reference is interpolated linearly onto the
    model's radii within the range both cover before the distance is taken.

    :param r: (K,) increasing radii of the model's g(r) in Å; ``g_model``: (K,).
    :param r_reference: (M,) increasing radii of the reference g(r) in Å; ``g_reference``: (M,).
    :raises NoFirstShellError: either g(r) has no peak.
    :raises ValueError: malformed curves, or fewer than 7 model radii inside the common range.
    """
    r, g_model = _curve(r, g_model)
    r_reference, g_reference = _curve(r_reference, g_reference)
    position, height = first_peak(r, g_model)
    reference_position, reference_height = first_peak(r_reference, g_reference)
    inside = (r >= r_reference[0]) & (r <= r_reference[-1])
    if inside.sum() < 7:
        raise ValueError(
            f'the model g(r) ({r[0]:.2f}-{r[-1]:.2f} Å) and the reference g(r) ({r_reference[0]:.2f}-'
            f'{r_reference[-1]:.2f} Å) share fewer than 7 radii'
        )
    common = r[inside]
    distance = rdf_distance(common, g_model[inside], np.interp(common, r_reference, g_reference))
    return RDFAgreement(
        peak_position=position,
        reference_peak_position=reference_position,
        peak_shift=position - reference_position,
        peak_height=height,
        reference_peak_height=reference_height,
        peak_height_ratio=height / reference_height,
        distance=distance,
        r_max=float(common[-1]),
    )
