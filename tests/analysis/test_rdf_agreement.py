"""Known-answer tests of the g(r) agreement measures: first peak, the integrated absolute difference, their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiida_ilmlff.analysis.rdf import NoFirstShellError
from aiida_ilmlff.analysis.rdf_agreement import first_peak, rdf_agreement, rdf_distance

R = np.arange(0.5, 10.0 + 1e-9, 0.01)
HEIGHT, WIDTH = 1.8, 0.2


def _g(r, centre, height=HEIGHT, width=WIDTH):
    """A liquid-like g(r): 1 plus one Gaussian first peak (zero below the peak's tail would add nothing here)."""
    return 1.0 + height * np.exp(-((r - centre) ** 2) / (2 * width**2))


def test_first_peak_of_a_gaussian():
    position, height = first_peak(R, _g(R, 3.013))
    assert position == pytest.approx(3.013, abs=2e-4)
    assert height == pytest.approx(1 + HEIGHT, rel=1e-4)


def test_distance_of_a_shifted_peak_is_the_analytic_one():
    """integral |f(x) - f(x - d)| dx = 2 A sigma sqrt(2 pi) erf(d / (2 sqrt(2) sigma)) for a Gaussian f of height A."""
    shift = 0.1
    expected = 2 * HEIGHT * WIDTH * math.sqrt(2 * math.pi) * math.erf(shift / (2 * math.sqrt(2) * WIDTH))
    assert rdf_distance(R, _g(R, 3.0 + shift), _g(R, 3.0)) == pytest.approx(expected, rel=1e-3)
    assert rdf_distance(R, _g(R, 3.0), _g(R, 3.0)) == 0.0
    # Peaks far apart: twice the area of one peak.
    assert rdf_distance(R, _g(R, 3.0), _g(R, 6.0)) == pytest.approx(2 * HEIGHT * WIDTH * math.sqrt(2 * math.pi), 1e-4)


def test_agreement_of_a_model_against_a_reference_on_another_grid():
    """A model peak 0.04 Å further out and 10 % lower than the reference's, the reference on a coarser, shorter grid."""
    r_reference = np.arange(0.0, 8.0 + 1e-9, 0.02)
    agreement = rdf_agreement(R, _g(R, 3.04, height=0.9 * HEIGHT), r_reference, _g(r_reference, 3.0))
    assert agreement.peak_shift == pytest.approx(0.04, abs=5e-4)
    assert agreement.peak_position == pytest.approx(3.04, abs=5e-4)
    assert agreement.peak_height_ratio == pytest.approx((1 + 0.9 * HEIGHT) / (1 + HEIGHT), rel=1e-3)
    assert agreement.r_max == pytest.approx(8.0, abs=0.011)  # the last model radius inside the reference's range
    same = rdf_agreement(R, _g(R, 3.0), r_reference, _g(r_reference, 3.0))
    assert same.distance < 2e-3 < agreement.distance  # only the interpolation of the coarser grid
    assert set(agreement.to_dict()) >= {'peak_shift', 'peak_height_ratio', 'distance'}


def test_bad_curves_are_refused():
    with pytest.raises(NoFirstShellError, match='no peak'):
        first_peak(R, np.ones_like(R))
    with pytest.raises(ValueError, match='equal length'):
        rdf_distance(R, _g(R, 3.0)[:-1], _g(R, 3.0))
    with pytest.raises(ValueError, match='finite'):
        rdf_distance(R, np.full_like(R, np.nan), _g(R, 3.0))
    with pytest.raises(ValueError, match='increase'):
        rdf_distance(R[::-1], _g(R, 3.0), _g(R, 3.0))
    far = np.arange(20.0, 30.0, 0.01)
    with pytest.raises(ValueError, match='share fewer than 7 radii'):
        rdf_agreement(R, _g(R, 3.0), far, _g(far, 23.0))
