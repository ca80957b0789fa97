"""Density and time-series statistics (pymbar equilibration detection, statistical inefficiency)."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis import block_average, density, density_statistics, timeseries_statistics


def test_density_of_water():
    # one H2O (18.015 amu) per 29.915 Å^3 is 1.000 g/cm^3
    assert density(18.015, 29.915) == pytest.approx(1.0, rel=1e-3)
    assert density([15.999, 1.008, 1.008], 29.915) == pytest.approx(1.0, rel=1e-3)
    series = density(18.015 * 10, np.array([299.15, 310.0]))
    assert series.shape == (2,)
    assert series[0] == pytest.approx(1.0, rel=1e-3)


def test_density_of_pyr14bf4_pairs():
    # DESIGN: one PYR14BF4 pair (C9H20N+ BF4-, 229.07 amu) occupies ~317 Å^3 in the liquid: ~1.2 g/cm^3
    assert density(229.07, 317.0) == pytest.approx(1.2, abs=0.01)


def test_density_errors():
    with pytest.raises(ValueError, match='positive'):
        density(10.0, 0.0)
    with pytest.raises(ValueError, match='non-negative'):
        density(-1.0, 10.0)


def ar1(rng, n, tau, sigma=1.0):
    """Gaussian AR(1) series with correlation time tau (samples): statistical inefficiency (1+a)/(1-a)."""
    a = np.exp(-1.0 / tau)
    noise = rng.normal(scale=sigma * np.sqrt(1 - a * a), size=n)
    out = np.empty(n)
    out[0] = rng.normal(scale=sigma)
    for t in range(1, n):
        out[t] = a * out[t - 1] + noise[t]
    return out


def test_statistics_detect_equilibration_and_inefficiency(rng):
    tau = 5.0
    production = ar1(rng, 5000, tau, sigma=0.01) + 1.20
    equilibration = 1.20 + 0.1 * np.exp(-np.arange(300) / 60.0) + ar1(rng, 300, tau, sigma=0.01)
    series = np.concatenate([equilibration, production])
    stats = timeseries_statistics(series, times=np.arange(len(series)) * 100.0)
    assert 150 <= stats.equilibration_index <= 1500  # the drift has decayed below the noise by ~300
    assert stats.equilibration_time == stats.equilibration_index * 100.0
    expected_g = (1 + np.exp(-1 / tau)) / (1 - np.exp(-1 / tau))
    assert stats.statistical_inefficiency == pytest.approx(expected_g, rel=0.25)
    assert stats.mean == pytest.approx(1.20, abs=4 * stats.error)
    assert stats.error == pytest.approx(0.01 * np.sqrt(expected_g / stats.n_samples), rel=0.25)
    assert stats.block_error == pytest.approx(stats.error, rel=0.5)
    assert stats.n_total == 5300
    # no equilibration discarded when told so
    assert timeseries_statistics(series, equilibration=None).equilibration_index == 0


def test_density_statistics_and_constant_series():
    stats = density_statistics(18.015 * 100, np.full(50, 2991.5))
    assert stats.mean == pytest.approx(1.0, rel=1e-3)
    assert stats.error < 1e-12
    assert stats.equilibration_index == 0
    with pytest.raises(ValueError, match='at least 2'):
        timeseries_statistics([1.0])


def test_block_average():
    values = np.repeat(np.arange(10.0), 100)
    assert block_average(values, 10) == pytest.approx(np.std(np.arange(10.0), ddof=1) / np.sqrt(10))
    assert np.isnan(block_average(values[:15], 10))
