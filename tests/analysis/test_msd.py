"""MSD (FFT algorithm), diffusion coefficients and the Yeh-Hummer correction."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from aiida_ilmlff.analysis import (
    YEH_HUMMER_XI,
    block_diffusion_error,
    classify_msd,
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


# ------------------------------------------------------------------------------------------- regime and block error


def ou_msd(t, d_true_A2_fs, tau_fs):
    """MSD of an Ornstein-Uhlenbeck (Langevin) particle: ballistic (slope 2) below tau, diffusive far above."""
    return 6 * d_true_A2_fs * (t - tau_fs * (1 - np.exp(-t / tau_fs)))


def test_a_random_walk_is_diffusive(rng):
    positions = np.cumsum(rng.normal(scale=0.1, size=(2000, 50, 3)), axis=0)
    regime = classify_msd(msd(positions), 10.0)
    assert regime.regime == 'diffusive' and regime.diffusive
    assert 0.9 <= regime.loglog_slope <= 1.1 and regime.time_needed_fs is None
    assert regime.max_lag_fs == pytest.approx(int(0.25 * 1999) * 10.0)


def test_a_short_langevin_run_is_ballistic_and_says_how_long_it_needs():
    """Only the inertial part (t < tau) of an OU MSD: no D; the MSD reached and the time needed are stated."""
    t = np.arange(400) * 1.0  # fs; tau = 1 ps: the whole run is ballistic
    curve = ou_msd(t, 1e-4, 1000.0)
    regime = classify_msd(curve, 1.0)
    assert regime.regime == 'ballistic' and not regime.diffusive
    assert regime.loglog_slope > 1.8
    assert regime.msd_reached == pytest.approx(curve[99])
    # extrapolated with slope 1 (a lower bound) to 100 Å^2 within a quarter of the run
    expected = 99.0 * (100.0 / curve[99]) / 0.25
    assert regime.time_needed_fs == pytest.approx(expected)
    with pytest.raises(ValueError, match='no diffusive regime'):
        diffusion_coefficient(curve, 1.0)


def test_a_caged_msd_is_sub_diffusive():
    """A plateau (particle in a cage, no escape within the run): slope well below 0.9."""
    t = np.arange(4000) * 2.0
    curve = 3.0 * (1 - np.exp(-((t / 50.0) ** 2))) + 1e-4 * t  # ballistic start, cage of ~1.7 Å, slow escape
    regime = classify_msd(curve, 2.0)
    assert regime.regime == 'sub-diffusive' and regime.loglog_slope < 0.9
    assert regime.time_needed_fs > len(t) * 2.0
    # an explicit window is judged too: the caged part is not diffusive, the late (linear) part of an OU MSD is
    assert classify_msd(curve, 2.0, window=(1000.0, 4000.0)).regime == 'sub-diffusive'
    late = classify_msd(ou_msd(np.arange(20000) * 2.0, 1e-4, 200.0), 2.0, window=(10000.0, 30000.0))
    assert late.regime == 'diffusive'


def test_the_ballistic_to_cage_crossover_is_not_taken_for_diffusion():
    """MSD = t^2 / (1 + (t / tau)^1.7): the local slope falls from 2 to 0.3 and passes 1 within a few lags; a
    window must span a factor 2 in time inside the band, which a crossover does not."""
    t = np.arange(20000) * 1.0
    curve = t**2 / (1 + (t / 30.0) ** 1.7)
    assert classify_msd(curve, 1.0).regime == 'sub-diffusive'
    found = diffusion_coefficient(curve, 1.0, min_span=1.0)  # the old rule takes the crossover for diffusion
    assert found.window_fs[1] / found.window_fs[0] < 2.0


def test_classify_msd_errors():
    with pytest.raises(ValueError, match='slope_band'):
        classify_msd(np.arange(100.0), 1.0, slope_band=(1.1, 0.9))
    with pytest.raises(ValueError, match='longer than the trajectory'):
        classify_msd(np.arange(100.0), 1.0, window=(10.0, 500.0))
    short = classify_msd(np.arange(10.0) ** 2, 1.0)  # too short for a window: judged on all lags, not diffusive
    assert short.regime == 'ballistic' and short.max_lag_fs == 9.0 and short.window_indices == (3, 9)


def _coverage(n_seeds, shared_fraction, n_frames=1200, n_particles=10, dt_fs=10.0, sigma=0.1):
    """Fraction of seeds whose reported 1-sigma interval covers the true D: block error and molecule error."""
    d_true = (sigma**2 / (2 * dt_fs)) * 1e-5  # m^2/s: per-axis step variance sigma^2 per dt
    covered_blocks = covered_molecules = 0
    for seed in range(n_seeds):
        rng = np.random.default_rng(1000 + seed)
        own = rng.normal(scale=sigma * math.sqrt(1 - shared_fraction), size=(n_frames, n_particles, 3))
        shared = rng.normal(scale=sigma * math.sqrt(shared_fraction), size=(n_frames, 1, 3))
        positions = np.cumsum(own + shared, axis=0)
        fit = diffusion_coefficient(msd(positions, per_particle=True), dt_fs)
        blocks = block_diffusion_error(positions, dt_fs, fit.window_indices, 5)
        covered_blocks += abs(fit.D - d_true) <= blocks.D_err
        covered_molecules += abs(fit.D - d_true) <= fit.D_err
    return covered_blocks / n_seeds, covered_molecules / n_seeds


def test_block_error_of_d_covers_the_true_d_at_the_stated_rate():
    """Known answer (issue 16): over many seeds of random walks with known D, the block error (1 sigma) covers the
    true D in about 68 % of the runs (accepted: 55-85 %; measured 74-79 % for 300 seeds: the whole-run D scatters a
    little less than one block's, so the error is slightly conservative). With motion shared by all
    molecules (collective fluctuations, as in a liquid), the scatter over molecules covers far less often, the block
    error still at the stated rate."""
    blocks, molecules = _coverage(300, 0.0)
    assert 0.55 <= blocks <= 0.85, blocks
    assert 0.5 <= molecules <= 0.85, molecules  # independent walkers: molecules are independent samples too
    blocks, molecules = _coverage(300, 0.8)
    assert 0.55 <= blocks <= 0.85, blocks
    assert molecules < 0.4, molecules


def test_block_error_needs_two_blocks_holding_the_window(rng):
    positions = np.cumsum(rng.normal(size=(100, 4, 3)), axis=0)
    result = block_diffusion_error(positions, 1.0, (2, 20), 10)
    assert result.n_blocks == 4 and len(result.D_blocks) == 4 and result.block_length_fs == 25.0
    with pytest.raises(ValueError, match='fewer than 2 independent blocks'):
        block_diffusion_error(positions, 1.0, (10, 60), 5)
    with pytest.raises(ValueError, match='at least 2'):
        block_diffusion_error(positions, 1.0, (2, 20), 1)
