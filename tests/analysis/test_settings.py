"""Validation of the ``analysis`` settings of ``ilmlff.properties``: bad values fail before submission."""

from __future__ import annotations

import pytest

from aiida_ilmlff.analysis.settings import ANALYSIS_SETTINGS, validate_analysis_settings, viscosity_Pa_s

SPECIES = ['PYR14', 'PYR14', 'BF4', 'BF4']
ELEMENTS = {'B', 'C', 'F', 'H', 'N'}


def errors(**settings):
    return validate_analysis_settings(settings, SPECIES, ELEMENTS, production_ps=10.0)


def test_defaults_are_valid():
    assert errors() == []
    assert ANALYSIS_SETTINGS['msd_slope_band'][0] == [0.9, 1.1]
    assert ANALYSIS_SETTINGS['msd_blocks'][0] == 5


@pytest.mark.parametrize('key', ['viscosity_mPa_s', 'viscosity_Pa_s'])
@pytest.mark.parametrize('value', [-1.0, 0.0, 'thick', float('nan')])
def test_a_negative_or_zero_viscosity_is_refused(key, value):
    (message,) = errors(**{key: value})
    assert f'`analysis.{key}` must be a positive number' in message and 'Yeh-Hummer' in message


def test_viscosity_in_mpa_s_or_pa_s_but_not_both():
    assert viscosity_Pa_s({'viscosity_mPa_s': 85.0}) == pytest.approx(0.085)
    assert viscosity_Pa_s({'viscosity_Pa_s': 0.085}) == pytest.approx(0.085)
    assert viscosity_Pa_s({}) is None
    assert errors(viscosity_mPa_s=85.0) == []
    (message,) = errors(viscosity_mPa_s=85.0, viscosity_Pa_s=0.085)
    assert 'not both' in message


@pytest.mark.parametrize(
    ('settings', 'match'),
    [
        ({'msd_slope_band': [1.1, 0.9]}, '`analysis.msd_slope_band` must be [low, high]'),
        ({'msd_slope_band': [0.9]}, '`analysis.msd_slope_band`'),
        ({'msd_blocks': 1}, '`analysis.msd_blocks` must be an integer >= 2'),
        ({'msd_blocks': 2.5}, '`analysis.msd_blocks`'),
        ({'msd_target_A2': -5}, '`analysis.msd_target_A2` must be a positive number'),
    ],
)
def test_bad_msd_settings(settings, match):
    (message,) = errors(**settings)
    assert match in message
