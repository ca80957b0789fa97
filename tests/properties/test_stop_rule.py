"""The NPT density stop rule and the per-stage density statistics."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis.npt import DENSITY_CONVERGENCE, density_stop_rule, validate_density_convergence


def stage(mean, error=0.001, fraction=0.9):
    return {'mean': mean, 'error': error, 'equilibrated_fraction': fraction}


def test_change_below_tolerance_converges():
    converged, reason = density_stop_rule([stage(1.200), stage(1.203)])
    assert converged and 'change from stage 1: +0.0030 g/cm^3, threshold 0.0050: converged' in reason


def test_change_above_tolerance_and_error_does_not_converge():
    converged, reason = density_stop_rule([stage(1.150), stage(1.200)])
    assert not converged and reason.endswith('not converged')


def test_change_within_the_statistical_error_converges():
    """A drift smaller than n_sigma combined errors is statistically no drift."""
    stages = [stage(1.20, error=0.01), stage(1.22, error=0.01)]  # 2 sigma = 0.028
    assert density_stop_rule(stages)[0]
    assert not density_stop_rule(stages, {'n_sigma': 1.0})[0]  # 1 sigma = 0.014
    assert not density_stop_rule(stages, {'n_sigma': 0.0, 'tolerance_g_cm3': 0.01})[0]


def test_a_stage_that_still_drifts_does_not_converge():
    converged, reason = density_stop_rule([stage(1.2), stage(1.2, fraction=0.3)])
    assert not converged and 'only 30 % of stage 2 is equilibrated' in reason
    assert density_stop_rule([stage(1.2), stage(1.2, fraction=0.3)], {'min_equilibrated_fraction': 0.25})[0]


def test_minimum_number_of_stages():
    assert not density_stop_rule([stage(1.2)])[0]
    stages = [stage(1.2), stage(1.2)]
    converged, reason = density_stop_rule(stages, {'min_stages': 3})
    assert not converged and 'at least 3 stages' in reason
    assert density_stop_rule([*stages, stage(1.2)], {'min_stages': 3})[0]
    with pytest.raises(ValueError, match='no NPT stage'):
        density_stop_rule([])


def test_only_the_last_two_stages_count():
    assert density_stop_rule([stage(0.9), stage(1.1), stage(1.2), stage(1.201)])[0]
    assert not density_stop_rule([stage(1.2), stage(1.201), stage(1.3)])[0]


def test_validate_density_convergence():
    assert validate_density_convergence({key: default for key, (default, _) in DENSITY_CONVERGENCE.items()}) == []
    errors = validate_density_convergence(
        {'tol': 1, 'n_sigma': -1, 'min_equilibrated_fraction': 1.5, 'fail_if_not_converged': 'yes'}
    )
    assert len(errors) == 4
    assert "unknown keys ['tol']" in errors[0]


def test_npt_stage_density_detects_the_equilibrated_part(aiida_profile):
    """A density relaxing exponentially to 1.25 g/cm^3, then fluctuating: the mean is the plateau's."""
    from aiida import orm

    from aiida_ilmlff.calculations.functions.properties import npt_stage_density

    rng = np.random.default_rng(1)
    time_fs = np.arange(2000) * 5.0
    rho = 1.25 - 0.15 * np.exp(-time_fs / 800.0) + rng.normal(0, 0.004, len(time_fs))
    thermo = orm.ArrayData()
    thermo.set_array('time_fs', time_fs)
    thermo.set_array('density_g_cm3', rho)
    thermo.set_array('volume_A3', 1000.0 * 1.25 / rho)
    result = npt_stage_density(thermo).get_dict()
    assert result['mean'] == pytest.approx(1.25, abs=0.002)
    assert 0 < result['error'] < 0.001
    assert 1000.0 < result['equilibration_time_fs'] < 6000.0
    assert 0.4 < result['equilibrated_fraction'] < 0.9
    assert abs(result['drift_g_cm3_per_ps']) < 0.002
    assert result['mean_volume_A3'] == pytest.approx(1000.0, rel=0.005)


def test_the_density_result_says_when_the_stop_rule_did_not_hold(aiida_profile):
    """Two stages still drifting apart: the stop rule fails, and the density result and its figure say so."""
    from aiida import orm

    from aiida_ilmlff.calculations.functions.properties import npt_stage_density, summarise_density

    rng = np.random.default_rng(2)
    stages, times, densities = {}, [], []
    for k, (start, level) in enumerate([(0.0, 1.10), (5000.0, 1.16)], 1):
        time_fs = start + np.arange(1000) * 5.0
        rho = level + 0.01 * (time_fs - start) / 5000.0 + rng.normal(0, 0.002, len(time_fs))
        thermo = orm.ArrayData()
        thermo.set_array('time_fs', time_fs)
        thermo.set_array('density_g_cm3', rho)
        thermo.set_array('volume_A3', 1000.0 / rho)
        stages[f'stage_{k}'] = npt_stage_density(thermo)
        times.append(time_fs)
        densities.append(rho)
    converged, why = density_stop_rule([stages[key].get_dict() for key in ('stage_1', 'stage_2')])
    assert converged is False and 'drifts' in why
    log = orm.ArrayData()
    log.set_array('time_fs', np.concatenate(times))
    log.set_array('density_g_cm3', np.concatenate(densities))
    summary = summarise_density(log, orm.Bool(converged), **stages)
    assert summary['density']['converged'] is False
    assert summary['figure'].get_content('rb')[:8] == b'\x89PNG\r\n\x1a\n'
