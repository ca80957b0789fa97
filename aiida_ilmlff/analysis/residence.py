"""Residence-time correlation functions of contacts (e.g. Li+-anion) and their lifetimes.

A contact series h_p(t) in {0, 1} (pair p bound at frame t) gives

- the intermittent function ``C_I(tau) = <h(0) h(tau)> / <h>`` (Rapaport, Mol. Phys. 50, 1151 (1983)),
  which lets a pair break and re-form;
- the continuous function ``C_C(tau) = <h(0) H(0, tau)> / <h>``, with H = 1 only if the pair stays
  bound at every frame from 0 to tau (Impey, Madden & McDonald, J. Phys. Chem. 87, 5071 (1983)).
  Breaks of at most ``tolerance`` frames may be ignored (IMM's t*).

Both average over all pairs and all time origins (``T - tau`` of them for lag tau); C(0) = 1.
In a finite system C_I decays to the bound fraction <h>, not to 0: integrated as it is, its lifetime grows with
the length of the run. The intermittent lifetime is therefore taken from
``(C_I(tau) - <h>) / (1 - <h>)`` (:func:`normalised_intermittent`), which decays to 0 (Luzar & Chandler,
Nature 379, 55 (1996); Luzar, J. Chem. Phys. 113, 10663 (2000): the fluctuation ``delta h = h - <h>``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import fft as sp_fft
from scipy.optimize import curve_fit

from ._common import AnalysisResult

__all__ = ('ResidenceTime', 'bound_fraction', 'normalised_intermittent', 'residence_correlation', 'residence_time')

_FFT_BATCH_BYTES = 32 * 2**20


def _runs(columns: np.ndarray, value: bool):
    """Start, end (exclusive) and column of every run of ``value`` in each column of a (T, P) bool array."""
    n_frames = columns.shape[0]
    padded = np.zeros((columns.shape[1], n_frames + 2), dtype=np.int8)
    padded[:, 1:-1] = columns.T == value
    step = np.diff(padded, axis=1)
    column, start = np.nonzero(step == 1)
    _, end = np.nonzero(step == -1)
    return start, end, column


def _fill_short_breaks(h: np.ndarray, tolerance: int) -> np.ndarray:
    start, end, column = _runs(h, False)
    n_frames = h.shape[0]
    interior = (start > 0) & (end < n_frames) & (end - start <= tolerance)
    filled = h.copy()
    for s, e, c in zip(start[interior], end[interior], column[interior]):
        filled[s:e, c] = True
    return filled


def residence_correlation(contacts, kind: str = 'continuous', *, tolerance: int = 0) -> np.ndarray:
    """Continuous or intermittent residence correlation function of a contact series.

    :param contacts: (T, ...) boolean contacts, e.g. (T, n_li, n_anion); all axes after the first
        are pairs.
    :param kind: ``'continuous'`` (IMM) or ``'intermittent'`` (Rapaport).
    :param tolerance: continuous only: breaks of at most this many frames are ignored.
    :returns: (T,) C(tau) for lags 0 .. T-1 (in frames), C(0) = 1.
    :raises ValueError: unknown kind, fewer than 2 frames, or no contact at all.
    """
    h = np.asarray(contacts, dtype=bool)
    if h.ndim < 1 or len(h) < 2:
        raise ValueError('contacts must have at least 2 frames along the first axis')
    h = h.reshape(len(h), -1)
    h = h[:, h.any(axis=0)]  # pairs never bound contribute nothing
    if h.shape[1] == 0:
        raise ValueError('no contact is ever formed: the correlation function is undefined')
    n_frames = len(h)
    origins = (n_frames - np.arange(n_frames)).astype(float)
    total = float(h.sum())
    if kind == 'continuous':
        if tolerance:
            h = _fill_short_breaks(h, int(tolerance))
            total = float(h.sum())
        start, end, _ = _runs(h, True)
        histogram = np.bincount(end - start, minlength=n_frames + 1).astype(float)  # runs of each length L
        lengths = np.arange(n_frames + 1, dtype=float)
        # numerator(tau) = sum over runs of max(L - tau, 0) = sum_{L > tau} (L n_L) - tau sum_{L > tau} n_L
        weighted_tail = np.cumsum((lengths * histogram)[::-1])[::-1]
        count_tail = np.cumsum(histogram[::-1])[::-1]
        tau = np.arange(n_frames)
        numerator = weighted_tail[tau + 1] - tau * count_tail[tau + 1]
    elif kind == 'intermittent':
        if tolerance:
            raise ValueError('tolerance only applies to the continuous correlation function')
        n_fft = sp_fft.next_fast_len(2 * n_frames, real=True)
        batch = max(1, _FFT_BATCH_BYTES // (n_fft * 16))
        power = np.zeros(n_fft // 2 + 1)
        for first in range(0, h.shape[1], batch):
            spectrum = sp_fft.rfft(h[:, first : first + batch].astype(float), n=n_fft, axis=0)
            power += (spectrum.real**2 + spectrum.imag**2).sum(axis=1)
        numerator = np.rint(sp_fft.irfft(power, n=n_fft)[:n_frames])  # integer products of 0/1 series
    else:
        raise ValueError(f"kind must be 'continuous' or 'intermittent', got {kind!r}")
    return numerator * n_frames / (origins * total)


def bound_fraction(contacts) -> float:
    """<h>: the mean of a contact series over frames and over the pairs that are ever bound.

    These are the pairs :func:`residence_correlation` keeps, so ``<h>`` is the long-time limit of its
    intermittent function.

    :param contacts: (T, ...) boolean contacts (all axes after the first are pairs).
    :raises ValueError: no contact at all.
    """
    h = np.asarray(contacts, dtype=bool)
    h = h.reshape(len(h), -1)
    h = h[:, h.any(axis=0)]
    if h.size == 0:
        raise ValueError('no contact is ever formed: the bound fraction is undefined')
    return float(h.mean())


def normalised_intermittent(correlation, h_mean: float) -> np.ndarray:
    """``(C_I(tau) - <h>) / (1 - <h>)``: the intermittent function with its finite-system plateau removed.

    It is 1 at tau = 0 and decays to 0, so its integral (:func:`residence_time`) does not grow with the run
    length (Luzar, J. Chem. Phys. 113, 10663 (2000)).

    :param correlation: (T,) C_I from :func:`residence_correlation` (``kind='intermittent'``).
    :param h_mean: the bound fraction <h> (:func:`bound_fraction` of the same contacts).
    :returns: (T,) array.
    :raises ValueError: ``h_mean`` not in (0, 1): pairs always bound have no lifetime within the run.
    """
    if not 0 < h_mean < 1:
        raise ValueError(f'the bound fraction <h> must be within (0, 1), got {h_mean}: pairs never break in this run')
    return (np.asarray(correlation, dtype=float) - h_mean) / (1.0 - h_mean)


@dataclasses.dataclass(frozen=True)
class ResidenceTime(AnalysisResult):
    """A lifetime from a residence correlation function.

    Attributes:
        tau_fs: lifetime in fs.
        method: ``'integral'``, ``'exp'`` or ``'integral_tail'``.
        t_max_fs: end of the integration / fit range in fs.
        amplitude: fitted amplitude A (``'exp'``; 1.0 for ``'integral'``).
        decayed: whether C fell below 0.05 within the range (else the integral underestimates tau).
    """

    tau_fs: float
    method: str
    t_max_fs: float
    amplitude: float
    decayed: bool


def residence_time(
    correlation, timestep_fs: float, method: str = 'integral', *, t_max_fs: float | None = None
) -> ResidenceTime:
    """Lifetime of a residence correlation function C(t) (from :func:`residence_correlation`).

    ``'integral'``: ``tau = int_0^t_end C(t) dt`` (trapezoid), ``t_end`` the first lag where C <= 0, or
    ``t_max_fs``, or the last lag; exact for C = exp(-t / tau) that has decayed.
    ``'exp'``: least-squares fit of ``C(t) = A exp(-t / tau)`` over lags up to the first where C < 0.05
    (or ``t_max_fs``), where the estimate is not yet noise.
    ``'integral_tail'``: the integral up to the first lag where C < 0.05 plus the exponential tail beyond it,
    ``C(t_end) tau_exp`` (``tau_exp`` from ``'exp'``); for functions estimated with noise at long lags, such as the
    normalised intermittent function (:func:`normalised_intermittent`), whose first zero depends on the noise. If
    C never drops below 0.05 it is the plain integral, with ``decayed`` false.

    :param correlation: (T,) C(t) at lags 0 .. T-1 frames.
    :param timestep_fs: time between frames in fs.
    :returns: :class:`ResidenceTime`.
    :raises ValueError: bad method, fewer than 3 points in range, or a failed fit.
    """
    c = np.asarray(correlation, dtype=float)
    if c.ndim != 1 or len(c) < 3:
        raise ValueError('correlation must be a (T,) array with T >= 3')
    if not timestep_fs > 0:
        raise ValueError('timestep_fs must be positive')
    t = np.arange(len(c)) * float(timestep_fs)
    last = len(c) - 1 if t_max_fs is None else min(len(c) - 1, math.floor(t_max_fs / timestep_fs + 1e-9))
    if method == 'integral':
        nonpositive = np.nonzero(c[: last + 1] <= 0)[0]
        end = int(nonpositive[0]) if len(nonpositive) else last
        if end < 2:
            raise ValueError('C(t) falls to zero within two frames: sample contacts more often')
        tau = float(np.trapezoid(c[: end + 1], t[: end + 1]))
        return ResidenceTime(tau, 'integral', float(t[end]), 1.0, bool(c[end] < 0.05))
    if method == 'exp':
        below = np.nonzero(c[: last + 1] < 0.05)[0]
        end = int(below[0]) if len(below) else last
        if end < 2:
            raise ValueError('fewer than 3 points before C(t) drops below 0.05: sample contacts more often')
        guess = max(float(np.trapezoid(c[: end + 1], t[: end + 1])), timestep_fs)
        try:
            (amplitude, tau), _ = curve_fit(
                lambda x, a, k: a * np.exp(-x / k), t[: end + 1], c[: end + 1], p0=(1.0, guess), maxfev=10000
            )
        except RuntimeError as exc:
            raise ValueError(f'exponential fit of C(t) failed: {exc}') from exc
        return ResidenceTime(float(tau), 'exp', float(t[end]), float(amplitude), bool(len(below) > 0))
    if method == 'integral_tail':
        below = np.nonzero(c[: last + 1] < 0.05)[0]
        if not len(below):
            plain = residence_time(c, timestep_fs, 'integral', t_max_fs=t_max_fs)
            return dataclasses.replace(plain, method='integral_tail')
        end = int(below[0])
        fit = residence_time(c, timestep_fs, 'exp', t_max_fs=t_max_fs)
        tau = float(np.trapezoid(c[: end + 1], t[: end + 1])) + max(float(c[end]), 0.0) * fit.tau_fs
        return ResidenceTime(tau, 'integral_tail', float(t[end]), 1.0, True)
    raise ValueError(f"method must be 'integral', 'exp' or 'integral_tail', got {method!r}")
