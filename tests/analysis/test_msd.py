"""MSD (FFT algorithm), diffusion coefficients and the Yeh-Hummer correction."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from aiida_ilmlff.analysis import (
    YEH_HUMMER_XI,
    diffusion_coefficient,
    local_loglog_slope,
    msd,
    yeh_hummer_correction,
)


def brute_force_msd(positions: np.ndarray) -> np.ndarray:
    """The definition: average over time origins of |r(t0 + m) - r(t0)|^2, per particle."""
    n_frames = len(positions)
    out = np.zeros((n_frames, positions.shape[1]))
    for lag in range(1, n_frames):
        out[lag] = np.mean(np.sum((positions[lag:] - positions[:-lag]) ** 2, axis=-1), axis=0)
    return out


def test_msd_matches_definition(rng):
    positions = np.cumsum(rng.normal(size=(64, 5, 3)), axis=0) + 100.0
    reference = brute_force_msd(positions)
    np.testing.assert_allclose(msd(positions, per_particle=True), reference, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(msd(positions), reference.mean(axis=1), rtol=1e-10, atol=1e-9)
    assert msd(positions)[0] == 0.0


def test_msd_matches_mdanalysis_einstein_fft(rng, mda_universe):
    from MDAnalysis.analysis.msd import EinsteinMSD

    positions = (np.cumsum(rng.normal(scale=0.3, size=(400, 30, 3)), axis=0) + 20.0).astype(np.float32)
    universe, _ = mda_universe(positions, np.diag([40.0, 40.0, 40.0]))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        reference = EinsteinMSD(universe, select='all', msd_type='xyz', fft=True).run()
    ours = msd(positions)
    np.testing.assert_allclose(ours[1:], reference.results.timeseries[1:], rtol=1e-6)
    np.testing.assert_allclose(msd(positions, per_particle=True)[1:], reference.results.msds_by_particle[1:], rtol=1e-6)


def test_msd_accepts_float32_and_one_frame(rng):
    positions = rng.normal(size=(10, 4, 3)).astype(np.float32)
    assert msd(positions).dtype == np.float64
    assert msd(positions[:1]).tolist() == [0.0]


@pytest.mark.parametrize('shape', [(10, 3), (0, 4, 3), (10, 4, 5), (10, 0, 3)])
def test_msd_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match='positions'):
        msd(np.zeros(shape))


def test_random_walk_diffusion_within_two_percent(rng):
    """Gaussian steps of variance 2 D dt per axis: MSD = 6 D t exactly on average."""
    d_true = 2.0e-9  # m^2/s, a typical small-ion value
    dt_fs = 10.0
    sigma = math.sqrt(2 * d_true / 1e-5 * dt_fs)  # Å, per axis and step
    positions = np.cumsum(rng.normal(scale=sigma, size=(500, 4000, 3)), axis=0)
    curve = msd(positions, per_particle=True)
    result = diffusion_coefficient(curve, dt_fs)
    assert result.automatic_window
    assert abs(result.D / d_true - 1) < 0.02
    assert abs(result.loglog_slope - 1) < 0.05
    assert result.D_err_method == 'particles'
    assert 0 < result.D_err < 0.02 * d_true
    assert abs(result.D - d_true) < 4 * result.D_err
    # the averaged curve alone gives the same D, with the least-squares error
    mean_only = diffusion_coefficient(curve.mean(axis=1), dt_fs, window=result.window_fs)
    assert mean_only.D == pytest.approx(result.D, rel=1e-12)
    assert mean_only.D_err_method == 'fit'


def test_automatic_window_skips_the_ballistic_regime():
    """Ornstein-Uhlenbeck (Langevin) MSD: ballistic below tau, diffusive far above it."""
    d_true, tau = 1.0e-9, 200.0  # m^2/s, fs
    t = np.arange(20000) * 2.0
    curve = 6 * d_true / 1e-5 * (t - tau * (1 - np.exp(-t / tau)))
    result = diffusion_coefficient(curve, 2.0)
    assert result.window_fs[0] > 2 * tau
    assert result.D == pytest.approx(d_true, rel=0.02)
    _lags, beta = local_loglog_slope(curve, 2.0)
    assert beta[0] == pytest.approx(2.0, abs=0.01)
    assert beta[-1] == pytest.approx(1.0, abs=0.02)


def test_explicit_window_is_reported_in_fs_and_indices():
    curve = 6.0 * np.arange(101, dtype=float) + 1.0
    result = diffusion_coefficient(curve, 5.0, window=(50.0, 250.0))
    assert result.window_indices == (10, 50)
    assert result.window_fs == (50.0, 250.0)
    assert result.slope == pytest.approx(6.0 / 5.0)
    assert result.intercept == pytest.approx(1.0)
    assert result.D == pytest.approx(6.0 / 5.0 / 6 * 1e-5)
    assert set(result.to_dict()) >= {'D', 'D_err', 'window_fs', 'loglog_slope'}


def test_window_longer_than_trajectory_raises():
    curve = np.arange(100, dtype=float)
    with pytest.raises(ValueError, match='longer than the trajectory'):
        diffusion_coefficient(curve, 2.0, window=(10.0, 500.0))


def test_window_with_too_few_points_raises():
    curve = np.arange(100, dtype=float)
    with pytest.raises(ValueError, match='need at least 3'):
        diffusion_coefficient(curve, 2.0, window=(10.0, 13.0))
    with pytest.raises(ValueError, match='t_start < t_end'):
        diffusion_coefficient(curve, 2.0, window=(20.0, 10.0))


def test_no_diffusive_regime_raises():
    t = np.arange(1000, dtype=float)
    with pytest.raises(ValueError, match='no diffusive regime'):
        diffusion_coefficient(t**0.5, 1.0)
    with pytest.raises(ValueError, match='too few frames'):
        diffusion_coefficient(t[:6], 1.0)


def test_yeh_hummer_correction():
    temperature, viscosity, box = 300.0, 8.9e-4, 30.0  # water-like, 30 Å box
    expected = YEH_HUMMER_XI * 1.380649e-23 * temperature / (6 * math.pi * viscosity * box * 1e-10)
    assert expected == pytest.approx(2.34e-10, rel=0.01)
    assert yeh_hummer_correction(2.0e-9, temperature, viscosity, box) == pytest.approx(2.0e-9 + expected)
    with pytest.raises(ValueError, match='positive'):
        yeh_hummer_correction(1e-9, 300.0, 0.0, 30.0)
