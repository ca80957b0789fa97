"""Mass density and the statistics of equilibrium time series (mean, error, equilibration)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math

import numpy as np

from aiida_ilmlff.common.units import AMU_A3_TO_G_CM3

from ._common import AnalysisResult

__all__ = (
    'TimeSeriesStatistics',
    'block_average',
    'density',
    'density_statistics',
    'timeseries_statistics',
)


def density(masses_amu, volumes_A3):
    """Mass density in g/cm^3: ``rho = M / V * AMU_A3_TO_G_CM3`` (:mod:`aiida_ilmlff.common.units`).

    :param masses_amu: total mass in amu (scalar) or per-atom masses (N,) in amu (summed).
    :param volumes_A3: cell volume in Å^3, scalar or a (T,) time series.
    :returns: float for a scalar volume, else (T,) array, in g/cm^3.
    :raises ValueError: negative mass or non-positive volume.
    """
    masses = np.asarray(masses_amu, dtype=float)
    if np.any(masses < 0):
        raise ValueError('masses must be non-negative')
    total = float(masses.sum())
    volumes = np.asarray(volumes_A3, dtype=float)
    if np.any(volumes <= 0):
        raise ValueError('volumes must be positive')
    rho = total * AMU_A3_TO_G_CM3 / volumes
    return float(rho) if rho.ndim == 0 else rho


@dataclasses.dataclass(frozen=True)
class TimeSeriesStatistics(AnalysisResult):
    """Mean and statistical error of an equilibrium time series.

    Attributes:
        mean: mean over the production part (from ``equilibration_index``).
        error: standard error of the mean, ``std / sqrt(n_effective)``.
        std: sample standard deviation (ddof=1) of the production part.
        block_error: standard error from ``n_blocks`` block averages (a cross-check; nan if too short).
        statistical_inefficiency: g = 1 + 2 tau_int (pymbar), in samples.
        n_samples: samples in the production part; n_effective: ``n_samples / g``.
        equilibration_index: first sample of the production part; equilibration_time: its time (or None).
        n_total: samples given.
    """

    mean: float
    error: float
    std: float
    block_error: float
    statistical_inefficiency: float
    n_samples: int
    n_effective: float
    equilibration_index: int
    equilibration_time: float | None
    n_total: int


@contextlib.contextmanager
def _quiet_pymbar():
    """pymbar logs a long warning (and a JAX notice) at import time: silence its loggers meanwhile."""
    logger = logging.getLogger('pymbar')
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _pymbar_timeseries():
    with _quiet_pymbar():
        from pymbar import timeseries

    return timeseries


def block_average(values, n_blocks: int = 10) -> float:
    """Standard error of the mean from ``n_blocks`` contiguous block averages (Flyvbjerg & Petersen 1989).

    :param values: (T,) series; the last ``T mod n_blocks`` samples are dropped.
    :returns: ``std(block means, ddof=1) / sqrt(n_blocks)``; nan if T < 2 n_blocks or n_blocks < 2.
    """
    values = np.asarray(values, dtype=float)
    if n_blocks < 2 or len(values) < 2 * n_blocks:
        return float('nan')
    size = len(values) // n_blocks
    means = values[: size * n_blocks].reshape(n_blocks, size).mean(axis=1)
    return float(np.std(means, ddof=1) / math.sqrt(n_blocks))


def timeseries_statistics(
    values, times=None, *, equilibration: str | int | None = 'detect', n_blocks: int = 10
) -> TimeSeriesStatistics:
    """Mean and error of a correlated time series, optionally discarding an equilibration part.

    Equilibration (``'detect'``): ``pymbar.timeseries.detect_equilibration`` picks the start that
    maximises the number of uncorrelated samples (Chodera, J. Chem. Theory Comput. 12, 1799 (2016));
    it scans every ``max(1, T // 200)``-th start to stay O(T) fast. An int gives the start index; None
    keeps all samples. Error: ``std / sqrt(N / g)`` with g the statistical inefficiency
    (``pymbar.timeseries.statistical_inefficiency``); a block-average error is reported beside it.

    :param values: (T,) samples, T >= 2.
    :param times: optional (T,) times (any unit) to report the equilibration time.
    :returns: :class:`TimeSeriesStatistics`.
    :raises ValueError: fewer than 2 samples, non-finite values, or a bad equilibration index.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError('need a (T,) series with at least 2 samples')
    if not np.all(np.isfinite(values)):
        raise ValueError('the series contains non-finite values')
    timeseries = _pymbar_timeseries()
    if equilibration == 'detect':
        if np.ptp(values) == 0:
            start = 0
        else:
            start, _, _ = timeseries.detect_equilibration(values, fast=True, nskip=max(1, len(values) // 200))
        start = int(start)
    elif equilibration is None:
        start = 0
    else:
        start = int(equilibration)
        if not 0 <= start < len(values) - 1:
            raise ValueError(f'equilibration index {start} outside [0, {len(values) - 2}]')
    production = values[start:]
    if np.ptp(production) == 0:
        inefficiency = 1.0
    else:
        with _quiet_pymbar():
            inefficiency = float(timeseries.statistical_inefficiency(production, fast=False))
    std = float(np.std(production, ddof=1)) if len(production) > 1 else 0.0
    n_effective = len(production) / inefficiency
    return TimeSeriesStatistics(
        mean=float(production.mean()),
        error=std / math.sqrt(n_effective),
        std=std,
        block_error=block_average(production, n_blocks),
        statistical_inefficiency=inefficiency,
        n_samples=len(production),
        n_effective=float(n_effective),
        equilibration_index=start,
        equilibration_time=None if times is None else float(np.asarray(times)[start]),
        n_total=len(values),
    )


def density_statistics(masses_amu, volumes_A3, times=None, **kwargs) -> TimeSeriesStatistics:
    """Statistics (:func:`timeseries_statistics`) of ``density(masses_amu, volumes_A3)`` in g/cm^3."""
    return timeseries_statistics(density(masses_amu, np.atleast_1d(volumes_A3)), times, **kwargs)
