"""Mean-squared displacement, self-diffusion coefficients and the Yeh-Hummer finite-size correction."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import fft as sp_fft

from ._common import ANGSTROM2_PER_FS_TO_M2_PER_S, BOLTZMANN_J_PER_K, AnalysisResult

__all__ = (
    'YEH_HUMMER_XI',
    'DiffusionResult',
    'diffusion_coefficient',
    'local_loglog_slope',
    'msd',
    'yeh_hummer_correction',
)

#: Madelung-like constant of the cubic lattice in the Yeh-Hummer correction (J. Phys. Chem. B 108, 15873).
YEH_HUMMER_XI = 2.837297

_FFT_BATCH_BYTES = 32 * 2**20  # bound on the FFT work arrays of one particle batch


def msd(positions, per_particle: bool = False) -> np.ndarray:
    """Mean-squared displacement for every lag, by the FFT (fast correlation) algorithm.

    ``MSD(m) = 1/(T-m) sum_{k=0}^{T-1-m} |r(k+m) - r(k)|^2`` for m = 0 .. T-1, averaged over all time
    origins, computed in O(T log T) as ``S1(m) - 2 S2(m)`` where S2 is the position autocorrelation
    obtained by FFT and S1 a running sum of squared positions (Calandrini et al., Collection SFN 12,
    201 (2011), the nMoldyn algorithm; same as ``tidynamics.msd`` and MDAnalysis ``EinsteinMSD(fft=True)``).
    Particles are processed in batches; when averaging, the power spectra are summed before the single
    inverse FFT, so the cost is one forward FFT per particle and coordinate.

    :param positions: (T, N, 3) unwrapped positions in Å (any trailing dimension d of 1-3 works:
        the MSD sums over it). Float32 input is promoted to float64.
    :param per_particle: return the (T, N) MSD of each particle instead of the average.
    :returns: (T,) MSD in Å^2 averaged over the N particles, or (T, N) if ``per_particle``.
        ``MSD[0] = 0`` exactly.
    :raises ValueError: not a (T, N, d) array, or T == 0.
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 3 or x.shape[0] == 0 or not 1 <= x.shape[2] <= 3:
        raise ValueError(f'positions must have shape (T, N, d) with T >= 1 and d in 1..3, got {x.shape}')
    n_frames, n_particles, _ = x.shape
    if n_particles == 0:
        raise ValueError('positions has no particles (N == 0)')
    # the MSD is invariant to a constant shift: centring each particle's path avoids cancellation
    x = x - x.mean(axis=0)
    origins = (n_frames - np.arange(n_frames)).astype(float)  # number of time origins per lag
    n_fft = sp_fft.next_fast_len(2 * n_frames, real=True)
    batch = max(1, _FFT_BATCH_BYTES // (n_fft * x.shape[2] * 8 * 2))

    squared = np.einsum('tnd,tnd->tn', x, x)  # (T, N)
    if not per_particle:
        squared = squared.mean(axis=1, keepdims=True)
        power = np.zeros(n_fft // 2 + 1)
    else:
        autocorrelation = np.empty((n_frames, n_particles))
    for start in range(0, n_particles, batch):
        spectrum = sp_fft.rfft(x[:, start : start + batch], n=n_fft, axis=0)
        block_power = (spectrum.real**2 + spectrum.imag**2).sum(axis=2)
        del spectrum
        if per_particle:
            autocorrelation[:, start : start + batch] = sp_fft.irfft(block_power, n=n_fft, axis=0)[:n_frames]
        else:
            power += block_power.sum(axis=1)
    del x
    if not per_particle:
        autocorrelation = sp_fft.irfft(power, n=n_fft)[:n_frames, None] / n_particles

    # S1(m) = (sum_{k<T-m} D[k] + sum_{k>=m} D[k]) / (T - m), from the cumulative sum of D = |x|^2
    cumulative = np.cumsum(squared, axis=0, out=squared)
    result = cumulative[::-1] + cumulative[-1]
    result[1:] -= cumulative[:-1]
    del cumulative, squared
    autocorrelation *= 2.0
    result -= autocorrelation
    result /= origins[:, None]
    result[0] = 0.0
    return result if per_particle else result[:, 0]


def local_loglog_slope(msd_values, timestep_fs: float, points_per_decade: int = 10):
    """Local slope ``beta = d ln MSD / d ln t`` on a logarithmic grid of lags.

    The grid holds the integer lags ``round(10**(k / points_per_decade))`` (duplicates removed) from 1
    to T-1; beta is the finite difference of ``ln MSD`` against ``ln t`` between consecutive grid
    points. beta = 2 in the ballistic regime, < 1 in the cage (sub-diffusive) regime and 1 when
    diffusive.

    :param msd_values: (T,) MSD in Å^2.
    :param timestep_fs: time between frames in fs.
    :returns: ``(lags, beta)``: (K,) integer grid lags and (K-1,) slopes between them.
    :raises ValueError: fewer than 3 frames, or a non-positive MSD on the grid.
    """
    values = np.asarray(msd_values, dtype=float)
    if values.ndim != 1 or len(values) < 3:
        raise ValueError('need a (T,) MSD with T >= 3')
    if timestep_fs <= 0:
        raise ValueError(f'timestep_fs must be positive, got {timestep_fs}')
    n_points = max(2, math.ceil(points_per_decade * math.log10(len(values) - 1)) + 1)
    lags = np.unique(np.rint(np.logspace(0.0, math.log10(len(values) - 1), n_points)).astype(np.int64))
    if np.any(values[lags] <= 0):
        raise ValueError('the MSD must be positive at every lag > 0 to take its logarithm')
    beta = np.diff(np.log(values[lags])) / np.diff(np.log(lags * float(timestep_fs)))
    return lags, beta


@dataclasses.dataclass(frozen=True)
class DiffusionResult(AnalysisResult):
    """Self-diffusion coefficient from an Einstein fit of the MSD.

    Attributes:
        D: self-diffusion coefficient in m^2/s (``slope / (2 dim)``).
        D_err: its standard error in m^2/s (see ``D_err_method``).
        D_err_method: ``'particles'`` (standard error of the mean of the per-particle fits, from a
            (T, N) input) or ``'fit'`` (least-squares standard error of the slope, from a (T,) input;
            a lower bound since MSD points at different lags are correlated).
        window_fs: (start, end) lag times of the fit window in fs (inclusive).
        window_indices: (start, end) lag indices of the fit window (inclusive).
        slope: d MSD / dt in Å^2/fs; intercept: in Å^2.
        loglog_slope: least-squares slope of ln MSD against ln t in the window (1 when diffusive).
        automatic_window: whether the window was chosen by the log-log slope rule.
        dim: dimensionality of the MSD (3 for xyz).
        n_particles: number of per-particle MSDs given (1 for a (T,) input).
    """

    D: float
    D_err: float
    D_err_method: str
    window_fs: tuple[float, float]
    window_indices: tuple[int, int]
    slope: float
    intercept: float
    loglog_slope: float
    automatic_window: bool
    dim: int
    n_particles: int


def _linear_fit(t: np.ndarray, y: np.ndarray):
    """Least-squares line through (t, y); y may be (n,) or (n, k). Returns slope, intercept, slope stderr."""
    t_mean = t.mean()
    dt = t - t_mean
    sxx = float(dt @ dt)
    slope = (dt @ (y - y.mean(axis=0))) / sxx
    intercept = y.mean(axis=0) - slope * t_mean
    if y.ndim == 1 and len(t) > 2:
        residual = y - (intercept + slope * t)
        stderr = math.sqrt(float(residual @ residual) / (len(t) - 2) / sxx)
    else:
        stderr = float('nan')
    return slope, intercept, stderr


def _automatic_window(values, timestep_fs, band, max_lag_fraction, min_points):
    max_lag = int(max_lag_fraction * (len(values) - 1))
    if max_lag < min_points:
        raise ValueError(
            f'too few frames ({len(values)}) to choose a fit window automatically: '
            f'need at least {math.ceil(min_points / max_lag_fraction) + 1}'
        )
    lags, beta = local_loglog_slope(values[: max_lag + 1], timestep_fs)
    inside = (beta >= band[0]) & (beta <= band[1])
    best = None  # (log span, start grid index, end grid index)
    k = 0
    while k < len(inside):
        if not inside[k]:
            k += 1
            continue
        end = k
        while end + 1 < len(inside) and inside[end + 1]:
            end += 1
        start_lag, end_lag = lags[k], lags[end + 1]
        span = math.log(end_lag / start_lag)
        if end_lag - start_lag + 1 >= min_points and (best is None or span >= best[0]):
            best = (span, start_lag, end_lag)
        k = end + 1
    if best is None:
        beta_text = ', '.join(f'{b:.2f}' for b in beta)
        raise ValueError(
            f'no diffusive regime found: the local log-log slope of the MSD never stays within '
            f'[{band[0]}, {band[1]}] over {min_points} or more lags up to {max_lag} frames '
            f'(slopes on the log grid: {beta_text}). Run longer, or pass window=(t_start_fs, t_end_fs).'
        )
    return int(best[1]), int(best[2])


def diffusion_coefficient(
    msd,
    timestep_fs: float,
    window: tuple[float, float] | None = None,
    *,
    dim: int = 3,
    slope_band: tuple[float, float] = (0.9, 1.1),
    max_lag_fraction: float = 0.25,
    min_points: int = 5,
) -> DiffusionResult:
    """Self-diffusion coefficient from the Einstein relation ``MSD(t) ~ 2 dim D t``.

    A straight line is fitted (ordinary least squares) to the MSD against lag time in the window;
    ``D = slope / (2 dim)`` (``slope / 6`` in 3D), converted from Å^2/fs to m^2/s (x 1e-5).

    Automatic window (``window=None``): the local log-log slope beta = d ln MSD / d ln t is evaluated
    between consecutive points of a logarithmic lag grid (10 points per decade, see
    :func:`local_loglog_slope`) over lags up to ``max_lag_fraction`` (default a quarter) of the run,
    where enough time origins remain. The window is the run of consecutive grid intervals with beta in
    ``slope_band`` (default 0.9-1.1: the diffusive regime) that spans the largest ratio of lag
    times (the later one on a tie) and holds at least ``min_points`` lags. If no such run exists a
    ``ValueError`` says so: the trajectory did not reach the diffusive regime.

    Error: with per-particle input (T, N), N >= 2, each particle's MSD is fitted in the same window
    and ``D_err`` is the standard error of the mean of those N values (``'particles'``; use molecular
    centres of mass for molecules); with a (T,) input it is the least-squares standard error of the
    slope (``'fit'``), which underestimates the true uncertainty.

    :param msd: (T,) MSD in Å^2 (lag 0 .. T-1) or (T, N) per-particle MSDs (``msd(..., per_particle=True)``).
    :param timestep_fs: time between consecutive frames in fs.
    :param window: optional (t_start, t_end) lag times in fs, inclusive; rounded inwards to frames.
    :param dim: number of Cartesian dimensions summed in the MSD (3 for xyz).
    :returns: :class:`DiffusionResult`.
    :raises ValueError: a window beyond the last lag (longer than the trajectory), a window with
        fewer than 3 points, no diffusive regime found, or malformed input.
    """
    values = np.asarray(msd, dtype=float)
    if values.ndim not in (1, 2) or len(values) < 3:
        raise ValueError(f'msd must have shape (T,) or (T, N) with T >= 3, got {values.shape}')
    if not timestep_fs > 0:
        raise ValueError(f'timestep_fs must be positive, got {timestep_fs}')
    if dim not in (1, 2, 3):
        raise ValueError(f'dim must be 1, 2 or 3, got {dim}')
    per_particle = values if values.ndim == 2 else None
    mean = values.mean(axis=1) if values.ndim == 2 else values
    n_frames = len(mean)
    last_lag_fs = (n_frames - 1) * timestep_fs

    if window is None:
        i0, i1 = _automatic_window(mean, timestep_fs, slope_band, max_lag_fraction, min_points)
    else:
        t0, t1 = (float(w) for w in window)
        if t0 < 0 or t1 <= t0:
            raise ValueError(f'window must be (t_start, t_end) with 0 <= t_start < t_end, got {window}')
        if t1 > last_lag_fs * (1 + 1e-12):
            raise ValueError(
                f'fit window ends at {t1:g} fs but the MSD only reaches a lag of {last_lag_fs:g} fs '
                f'({n_frames} frames x {timestep_fs:g} fs): the window is longer than the trajectory'
            )
        i0 = math.ceil(t0 / timestep_fs - 1e-9)
        i1 = math.floor(t1 / timestep_fs + 1e-9)
        if i1 - i0 + 1 < 3:
            raise ValueError(
                f'fit window {window} fs holds only {max(i1 - i0 + 1, 0)} frames '
                f'(timestep {timestep_fs:g} fs): need at least 3'
            )

    lags = np.arange(i0, i1 + 1)
    t = lags * float(timestep_fs)
    slope, intercept, slope_err = _linear_fit(t, mean[i0 : i1 + 1])
    positive = (lags > 0) & (mean[i0 : i1 + 1] > 0)
    if positive.sum() >= 2:
        loglog, _, _ = _linear_fit(np.log(t[positive]), np.log(mean[i0 : i1 + 1][positive]))
    else:
        loglog = float('nan')

    factor = ANGSTROM2_PER_FS_TO_M2_PER_S / (2 * dim)
    if per_particle is not None and per_particle.shape[1] >= 2:
        slopes, _, _ = _linear_fit(t, per_particle[i0 : i1 + 1])
        d_err = float(np.std(slopes, ddof=1) / math.sqrt(len(slopes))) * factor
        method = 'particles'
    else:
        d_err = slope_err * factor
        method = 'fit'
    return DiffusionResult(
        D=float(slope) * factor,
        D_err=d_err,
        D_err_method=method,
        window_fs=(float(t[0]), float(t[-1])),
        window_indices=(int(i0), int(i1)),
        slope=float(slope),
        intercept=float(intercept),
        loglog_slope=float(loglog),
        automatic_window=window is None,
        dim=dim,
        n_particles=1 if per_particle is None else per_particle.shape[1],
    )


def yeh_hummer_correction(D_pbc: float, temperature_K: float, viscosity_Pa_s: float, box_length_A: float) -> float:
    """Finite-size correction of a self-diffusion coefficient from a cubic periodic box.

    ``D_inf = D_PBC + xi k_B T / (6 pi eta L)`` with xi = 2.837297 (Yeh & Hummer, J. Phys. Chem. B
    108, 15873 (2004); Duenweg & Kremer, J. Chem. Phys. 99, 6983 (1993)).

    :param D_pbc: diffusion coefficient measured in the periodic box, m^2/s.
    :param temperature_K: temperature in K.
    :param viscosity_Pa_s: shear viscosity in Pa s (e.g. ~0.1 Pa s for PYR14TFSI at 298 K).
    :param box_length_A: edge of the cubic box in Å.
    :returns: D extrapolated to infinite box size, m^2/s.
    :raises ValueError: non-positive temperature, viscosity or box length.
    """
    if temperature_K <= 0 or viscosity_Pa_s <= 0 or box_length_A <= 0:
        raise ValueError('temperature_K, viscosity_Pa_s and box_length_A must be positive')
    box_m = box_length_A * 1e-10
    return float(D_pbc + YEH_HUMMER_XI * BOLTZMANN_J_PER_K * temperature_K / (6 * math.pi * viscosity_Pa_s * box_m))
