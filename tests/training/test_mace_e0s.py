"""The E0s fit of a fine-tune (:mod:`aiida_ilmlff.runner.mace_e0s`), with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.runner.mace_e0s import fit_e0s


def test_fit_e0s_recovers_per_element_energies():
    """Frames of different compositions determine every element's energy."""
    counts = np.array([[2, 1], [1, 3], [4, 4], [0, 2]])
    e0s = np.array([-13.6, -75.0])
    assert fit_e0s(counts, counts @ e0s) == pytest.approx(e0s)


def test_fit_e0s_one_composition_gives_the_minimal_norm_answer():
    """Frames of one composition fix only the sum: the minimal-norm answer, which reproduces their energies."""
    counts = np.array([[9, 4], [9, 4], [9, 4]])
    target = np.array([-100.0, -100.2, -99.8])
    solution = fit_e0s(counts, target)
    assert counts @ solution == pytest.approx(np.full(3, -100.0))
    assert solution == pytest.approx(-100.0 * np.array([9, 4]) / (81 + 16))
