"""Residence correlation functions against their definitions and a signal with a known lifetime."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis import bound_fraction, normalised_intermittent, residence_correlation, residence_time


def brute_force(h: np.ndarray, kind: str) -> np.ndarray:
    n_frames = len(h)
    out = np.zeros(n_frames)
    for lag in range(n_frames):
        total = 0.0
        for t0 in range(n_frames - lag):
            if kind == 'intermittent':
                total += np.sum(h[t0] & h[t0 + lag])
            else:
                total += np.sum(np.all(h[t0 : t0 + lag + 1], axis=0))
        out[lag] = total / (n_frames - lag)
    return out / h.mean(axis=0).sum()


@pytest.mark.parametrize('kind', ['continuous', 'intermittent'])
def test_correlation_matches_definition(rng, kind):
    h = rng.random((40, 2, 3)) < 0.6
    h[:, 1, 2] = False  # a pair never bound is ignored
    expected = brute_force(h.reshape(40, -1), kind)
    np.testing.assert_allclose(residence_correlation(h, kind), expected, rtol=1e-12)
    assert residence_correlation(h, kind)[0] == pytest.approx(1.0)


def markov(rng, n_frames, n_pairs, p_break, p_form):
    state = rng.random(n_pairs) < p_form / (p_break + p_form)
    u = rng.random((n_frames, n_pairs))
    h = np.empty((n_frames, n_pairs), dtype=bool)
    for t in range(n_frames):
        state = np.where(state, u[t] >= p_break, u[t] < p_form)
        h[t] = state
    return h


def test_known_lifetime_of_a_two_state_process(rng):
    """Bonds break with probability p per frame: C_C(t) = (1 - p)^t, lifetime -dt / ln(1 - p)."""
    p_break, p_form, dt = 0.05, 0.02, 2.0
    h = markov(rng, 20000, 50, p_break, p_form)
    lags = np.arange(60)
    continuous = residence_correlation(h, 'continuous')
    np.testing.assert_allclose(continuous[lags], (1 - p_break) ** lags, atol=0.01)
    expected_tau = -dt / np.log(1 - p_break)
    assert residence_time(continuous, dt).tau_fs == pytest.approx(expected_tau, rel=0.05)
    fit = residence_time(continuous, dt, 'exp')
    assert fit.tau_fs == pytest.approx(expected_tau, rel=0.05)
    assert fit.amplitude == pytest.approx(1.0, abs=0.02)
    # intermittent: C_I(t) = pi + (1 - pi) (1 - p - q)^t with pi the bound fraction
    bound = p_form / (p_break + p_form)
    intermittent = residence_correlation(h, 'intermittent')
    np.testing.assert_allclose(intermittent[lags], bound + (1 - bound) * (1 - p_break - p_form) ** lags, atol=0.01)


def test_tolerance_ignores_short_breaks():
    h = np.array([1, 1, 1, 0, 1, 1, 1, 0, 0, 1], dtype=bool)[:, None]
    strict = residence_correlation(h, 'continuous')
    tolerant = residence_correlation(h, 'continuous', tolerance=1)
    assert strict[3] == 0.0  # no run is 4 frames long
    assert tolerant[6] > 0.0  # frames 0-6 become one run of 7
    with pytest.raises(ValueError, match='tolerance'):
        residence_correlation(h, 'intermittent', tolerance=1)


def test_residence_errors():
    with pytest.raises(ValueError, match='no contact'):
        residence_correlation(np.zeros((10, 3), dtype=bool))
    with pytest.raises(ValueError, match='kind'):
        residence_correlation(np.ones((10, 3), dtype=bool), 'sticky')
    with pytest.raises(ValueError, match='method'):
        residence_time(np.linspace(1, 0, 10), 1.0, 'kww')


def test_intermittent_lifetime_does_not_grow_with_the_run_length():
    """Known answer (issue 16): on a two-state Markov contact series the intermittent lifetime of runs of length T
    and 4T agree within 10 % (8 % at worst over 20 seed pairs when written), and both match -dt / ln(1 - p - q);
    the old integral of C_I (which levels off at <h>, not 0) grows with the run."""
    p_break, p_form, dt = 0.05, 0.02, 2.0
    expected_tau = -dt / np.log(1 - p_break - p_form)
    taus, raw = [], []
    for n_frames, seed in ((4000, 11), (16000, 12)):
        h = markov(np.random.default_rng(seed), n_frames, 40, p_break, p_form)
        intermittent = residence_correlation(h, 'intermittent')
        h_mean = bound_fraction(h)
        assert h_mean == pytest.approx(p_form / (p_break + p_form), abs=0.03)
        normalised = normalised_intermittent(intermittent, h_mean)
        assert normalised[0] == pytest.approx(1.0)
        lifetime = residence_time(normalised, dt, 'integral_tail')
        assert lifetime.decayed and lifetime.method == 'integral_tail'
        taus.append(lifetime.tau_fs)
        raw.append(residence_time(intermittent, dt).tau_fs)
    assert taus[1] == pytest.approx(taus[0], rel=0.10)
    assert taus[0] == pytest.approx(expected_tau, rel=0.10) and taus[1] == pytest.approx(expected_tau, rel=0.10)
    assert raw[1] > 2.5 * raw[0]  # the plateau <h> integrated over the run: proportional to its length


def test_normalised_intermittent_errors():
    with pytest.raises(ValueError, match='never break'):
        normalised_intermittent(np.ones(5), 1.0)
    with pytest.raises(ValueError, match='no contact'):
        bound_fraction(np.zeros((5, 2), dtype=bool))


def test_integral_with_exponential_tail():
    """Exact for an exponential cut at C = 0.05; the plain integral there misses 5 %; not decayed: plain integral."""
    t = np.arange(400) * 2.0
    c = np.exp(-t / 30.0)
    assert residence_time(c, 2.0, 'integral_tail').tau_fs == pytest.approx(30.0, rel=0.01)
    assert residence_time(c, 2.0, 'integral', t_max_fs=90.0).tau_fs == pytest.approx(30.0 * 0.95, rel=0.01)
    slow = residence_time(np.exp(-t / 3000.0), 2.0, 'integral_tail')
    assert not slow.decayed and slow.method == 'integral_tail'
    with pytest.raises(ValueError, match="'integral_tail'"):
        residence_time(c, 2.0, 'median')
