"""Mean-squared displacement, self-diffusion coefficients and the Yeh-Hummer finite-size correction."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import fft as sp_fft

from ._common import ANGSTROM2_PER_FS_TO_M2_PER_S, BOLTZMANN_J_PER_K, AnalysisResult

__all__ = (
    'DIFFUSIVE_SLOPE_BAND',
    'MSD_TARGET_A2',
    'YEH_HUMMER_XI',
    'BlockError',
    'DiffusionResult',
    'MSDRegime',
    'block_diffusion_error',
    'classify_msd',
    'diffusion_coefficient',
    'local_loglog_slope',
    'msd',
    'yeh_hummer_correction',
)

#: Band of the log-log slope d ln MSD / d ln t taken as diffusive (Einstein regime, slope 1). +-0.1 follows the
#: beta criterion of Maginn et al., "Best Practices for Computing Transport Properties 1. Self-Diffusivity and
#: Viscosity from Equilibrium Molecular Dynamics", LiveCoMS 1, 6324 (2019), section 5.1 (beta ~ 1 over the fit);
#: del Popolo & Voth, J. Phys. Chem. B 108, 1744 (2004) used the same test for ionic liquids.
DIFFUSIVE_SLOPE_BAND = (0.9, 1.1)
#: MSD (Å^2) a species should reach before its D is trusted: about the square of an ion-pair diameter (~10 Å), i.e.
#: each ion has left its first solvation cage (Maginn et al. 2019: molecules must move at least their own size).
#: Used only to estimate how long a non-diffusive run would need.
MSD_TARGET_A2 = 100.0

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


def _automatic_window(values, timestep_fs, band, max_lag_fraction, min_points, min_span=2.0):
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
        long_enough = end_lag - start_lag + 1 >= min_points and span >= math.log(min_span) - 1e-12
        if long_enough and (best is None or span >= best[0]):
            best = (span, start_lag, end_lag)
        k = end + 1
    if best is None:
        beta_text = ', '.join(f'{b:.2f}' for b in beta)
        raise ValueError(
            f'no diffusive regime found: the local log-log slope of the MSD never stays within '
            f'[{band[0]}, {band[1]}] over {min_points} or more lags and a factor {min_span:g} in lag time up to '
            f'{max_lag} frames '
            f'(slopes on the log grid: {beta_text}). Run longer, or pass window=(t_start_fs, t_end_fs).'
        )
    return int(best[1]), int(best[2])


def diffusion_coefficient(
    msd,
    timestep_fs: float,
    window: tuple[float, float] | None = None,
    *,
    dim: int = 3,
    slope_band: tuple[float, float] = DIFFUSIVE_SLOPE_BAND,
    max_lag_fraction: float = 0.25,
    min_points: int = 5,
    min_span: float = 2.0,
) -> DiffusionResult:
    """Self-diffusion coefficient from the Einstein relation ``MSD(t) ~ 2 dim D t``.

    A straight line is fitted (ordinary least squares) to the MSD against lag time in the window;
    ``D = slope / (2 dim)`` (``slope / 6`` in 3D), converted from Å^2/fs to m^2/s (x 1e-5).

    Automatic window (``window=None``): the local log-log slope beta = d ln MSD / d ln t is evaluated
    between consecutive points of a logarithmic lag grid (10 points per decade, see
    :func:`local_loglog_slope`) over lags up to ``max_lag_fraction`` (default a quarter) of the run,
    where enough time origins remain. The window is the run of consecutive grid intervals with beta in
    ``slope_band`` (default 0.9-1.1: the diffusive regime, :data:`DIFFUSIVE_SLOPE_BAND`) that spans the largest
    ratio of lag times (the later one on a tie), holds at least ``min_points`` lags and spans at least a factor
    ``min_span`` (default 2) in lag time, so that the crossover from the ballistic (slope 2) to the caged (slope
    < 1) regime, which passes through slope 1 within a few lags, is not taken for diffusion. If no such run exists a
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

    if window is None:
        i0, i1 = _automatic_window(mean, timestep_fs, slope_band, max_lag_fraction, min_points, min_span)
    else:
        i0, i1 = _window_indices(window, timestep_fs, n_frames)

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


def _window_indices(window, timestep_fs: float, n_frames: int) -> tuple[int, int]:
    """Inclusive lag indices of a (t_start, t_end) window in fs; errors as :func:`diffusion_coefficient`."""
    last_lag_fs = (n_frames - 1) * timestep_fs
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
    return i0, i1


def _loglog_fit(values: np.ndarray, timestep_fs: float, i0: int, i1: int) -> float:
    """Least-squares slope of ln MSD against ln t over lags i0..i1 (lags with MSD > 0 only); NaN if < 2 points."""
    lags = np.arange(max(i0, 1), i1 + 1)
    keep = values[lags] > 0
    if keep.sum() < 2:
        return float('nan')
    slope, _, _ = _linear_fit(np.log(lags[keep] * float(timestep_fs)), np.log(values[lags][keep]))
    return float(slope)


@dataclasses.dataclass(frozen=True)
class MSDRegime(AnalysisResult):
    """Whether an MSD is diffusive, and if not how far it got.

    Attributes:
        regime: ``'diffusive'`` (log-log slope within ``slope_band`` over the window), ``'sub-diffusive'`` (below
            it: caged motion) or ``'ballistic'`` (above it: inertial motion, the crossover not yet passed).
        loglog_slope: least-squares slope of ln MSD vs ln t over ``window_fs``.
        window_indices, window_fs: the fit window (diffusive, automatic or given) or, when no diffusive window
            exists, the tail of the considered lags (the last factor 3 in lag time) the regime was judged on.
        slope_band: the band of the log-log slope taken as diffusive.
        msd_reached: the MSD (Å^2) at the longest lag considered (the end of a given window, else
            ``max_lag_fraction`` of the run).
        max_lag_fs: that longest lag in fs.
        msd_target: MSD (Å^2) a species should reach before its D is trusted (:data:`MSD_TARGET_A2`).
        time_needed_fs: non-diffusive only: estimated length of run (fs, after the discarded start) whose MSD
            reaches ``msd_target`` within ``max_lag_fraction`` of the run, extrapolating ``MSD ~ t^beta`` from
            the longest lag with beta the tail slope clipped to [0.5, 1] (beta = 1 for a ballistic tail: a lower
            bound, since the cage regime comes first). ``None`` when diffusive or the target is already reached.
    """

    regime: str
    loglog_slope: float
    window_indices: tuple[int, int]
    window_fs: tuple[float, float]
    slope_band: tuple[float, float]
    msd_reached: float
    max_lag_fs: float
    msd_target: float
    time_needed_fs: float | None

    @property
    def diffusive(self) -> bool:
        """Whether the regime is diffusive."""
        return self.regime == 'diffusive'


def classify_msd(
    msd_values,
    timestep_fs: float,
    window: tuple[float, float] | None = None,
    *,
    slope_band: tuple[float, float] = DIFFUSIVE_SLOPE_BAND,
    max_lag_fraction: float = 0.25,
    min_points: int = 5,
    min_span: float = 2.0,
    msd_target_A2: float = MSD_TARGET_A2,
) -> MSDRegime:
    """Diffusive, sub-diffusive or ballistic: the regime of an MSD over its fit window.

    Given ``window``: the least-squares slope of ln MSD vs ln t over it must lie in ``slope_band``.
    Automatic (``window=None``): diffusive when :func:`diffusion_coefficient`'s window rule finds a window (local
    log-log slope within the band over at least ``min_points`` lags and a factor ``min_span`` in lag time, up to
    ``max_lag_fraction`` of the run); otherwise the regime is judged on the slope over the last factor 3 of lags
    up to that limit: above 1 ``'ballistic'``, otherwise ``'sub-diffusive'``. A run too short to hold
    ``min_points`` lags within ``max_lag_fraction`` is judged on its last factor 3 of all lags, and never diffusive.
    Criterion: Maginn et al., LiveCoMS 1, 6324 (2019), see :data:`DIFFUSIVE_SLOPE_BAND`.

    :param msd_values: (T,) MSD in Å^2 at lags 0 .. T-1 (the mean over molecules).
    :param timestep_fs: time between frames in fs.
    :param window: optional (t_start, t_end) lag window in fs.
    :returns: :class:`MSDRegime`.
    :raises ValueError: malformed input or a window longer than the run.
    """
    values = np.asarray(msd_values, dtype=float)
    if values.ndim != 1 or len(values) < 3:
        raise ValueError(f'msd must have shape (T,) with T >= 3, got {values.shape}')
    if not timestep_fs > 0:
        raise ValueError(f'timestep_fs must be positive, got {timestep_fs}')
    band = (float(slope_band[0]), float(slope_band[1]))
    if not 0 < band[0] < 1 < band[1]:
        raise ValueError(f'slope_band must be (low, high) with 0 < low < 1 < high, got {slope_band}')
    if window is not None:
        i0, i1 = _window_indices(window, timestep_fs, len(values))
        slope = _loglog_fit(values, timestep_fs, i0, i1)
        inside = math.isfinite(slope) and band[0] <= slope <= band[1]
        max_lag = i1
    else:
        max_lag = int(max_lag_fraction * (len(values) - 1))
        if max_lag < min_points:  # too short a run to look for a window: judged on all its lags, never diffusive
            max_lag = len(values) - 1
            i0, i1 = max(1, max_lag // 3), max_lag
            inside = False
        else:
            try:
                i0, i1 = _automatic_window(values, timestep_fs, band, max_lag_fraction, min_points, min_span)
                inside = True
            except ValueError as exc:
                if 'no diffusive regime' not in str(exc):
                    raise
                i0, i1 = max(1, max_lag // 3), max_lag
                inside = False
        slope = _loglog_fit(values, timestep_fs, i0, i1)
    if inside:
        regime = 'diffusive'
    elif math.isfinite(slope) and slope > 1.0:  # above the band, or (automatic window) noisy slopes above 1
        regime = 'ballistic'
    else:
        regime = 'sub-diffusive'
    reached = float(values[max_lag])
    time_needed = None
    if regime != 'diffusive' and reached < msd_target_A2:
        beta = 1.0 if not math.isfinite(slope) else min(max(slope, 0.5), 1.0)
        lag_needed = max_lag * timestep_fs * (msd_target_A2 / max(reached, 1e-12)) ** (1.0 / beta)
        fraction = 1.0 if window is not None else max_lag_fraction
        time_needed = float(lag_needed / fraction)
    return MSDRegime(
        regime=regime,
        loglog_slope=float(slope),
        window_indices=(int(i0), int(i1)),
        window_fs=(float(i0 * timestep_fs), float(i1 * timestep_fs)),
        slope_band=band,
        msd_reached=reached,
        max_lag_fs=float(max_lag * timestep_fs),
        msd_target=float(msd_target_A2),
        time_needed_fs=time_needed,
    )


@dataclasses.dataclass(frozen=True)
class BlockError(AnalysisResult):
    """The error of D from independent time blocks.

    Attributes:
        D_err: standard error of the mean of the block values, m^2/s.
        D_blocks: (B,) D of each block in m^2/s.
        n_blocks: B, the number of blocks used.
        block_length_fs: length of each block in fs.
        method: ``'blocks'``.
    """

    D_err: float
    D_blocks: np.ndarray
    n_blocks: int
    block_length_fs: float
    method: str = 'blocks'


def block_diffusion_error(
    positions, timestep_fs: float, window_indices: tuple[int, int], n_blocks: int = 5, *, dim: int = 3
) -> BlockError:
    """Standard error of D from B contiguous, non-overlapping time blocks of the run (block averaging).

    The (T, N, d) unwrapped positions (molecular centres of mass) are cut into B blocks of ``T // B`` frames;
    each block's MSD (averaged over the N particles) is fitted over the same lag window as the whole run, giving
    B estimates D_b; the error is ``std(D_b, ddof=1) / sqrt(B)``. Blocks much longer than the correlation time
    of the displacements are independent, so unlike the scatter over molecules of one run this error includes
    the slow collective fluctuations of a liquid (Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989);
    Maginn et al., LiveCoMS 1, 6324 (2019), section 6: independent segments or runs). B is lowered (to at
    least 2) until every block holds the whole fit window.

    :param positions: (T, N, d) unwrapped positions in Å (d = ``dim``).
    :param timestep_fs: time between frames in fs.
    :param window_indices: (i0, i1) inclusive lag indices of the fit window.
    :param n_blocks: the number of blocks wanted (>= 2).
    :returns: :class:`BlockError`.
    :raises ValueError: fewer than 2 blocks can hold the fit window (run longer or use a shorter window).
    """
    x = np.asarray(positions, dtype=float)
    if x.ndim != 3 or x.shape[2] != dim:
        raise ValueError(f'positions must have shape (T, N, {dim}), got {x.shape}')
    if n_blocks < 2:
        raise ValueError(f'n_blocks must be at least 2, got {n_blocks}')
    i0, i1 = (int(i) for i in window_indices)
    n_frames = x.shape[0]
    blocks = min(int(n_blocks), n_frames // (i1 + 1))
    if blocks < 2:
        raise ValueError(
            f'the fit window ends at lag {i1} (frames): fewer than 2 independent blocks of the {n_frames}-frame run '
            'hold it; run at least twice as long as the window'
        )
    length = n_frames // blocks
    t = np.arange(i0, i1 + 1) * float(timestep_fs)
    factor = ANGSTROM2_PER_FS_TO_M2_PER_S / (2 * dim)
    values = []
    for b in range(blocks):
        curve = msd(x[b * length : (b + 1) * length])
        slope, _, _ = _linear_fit(t, curve[i0 : i1 + 1])
        values.append(float(slope) * factor)
    values = np.asarray(values)
    return BlockError(
        D_err=float(np.std(values, ddof=1) / math.sqrt(blocks)),
        D_blocks=values,
        n_blocks=blocks,
        block_length_fs=float(length * timestep_fs),
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
