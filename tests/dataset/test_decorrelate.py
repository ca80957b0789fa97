"""Decorrelated EQ sampling: equilibration cut (pymbar), spacing by the statistical inefficiency, FPS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiida_ilmlff.sampling import (
    detect_equilibration,
    farthest_point_sampling,
    pair_distance_descriptor,
    select_equilibrium_frames,
)

from .conftest import synthetic_energies


def _ar1(n, phi, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for k in range(1, n):
        x[k] = phi * x[k - 1] + rng.normal()
    return x


def test_equilibration_cut_and_inefficiency():
    values = _ar1(2000, 0.8) + 30.0 * np.exp(-np.arange(2000) / 60.0)
    start, g = detect_equilibration(values)
    assert 60 < start < 600
    # AR(1) with phi = 0.8: g = (1 + phi) / (1 - phi) = 9
    assert 5 < g < 14


def test_inefficiency_spacing():
    energies = synthetic_energies(400, transient=30)
    selection = select_equilibrium_frames(400, energies=energies)
    assert selection.observable == 'energy' and selection.method == 'inefficiency'
    assert selection.equilibration_index > 0
    assert selection.spacing == math.ceil(selection.statistical_inefficiency - 1e-9)
    assert selection.indices[0] == selection.equilibration_index
    assert np.all(np.diff(selection.indices) == selection.spacing)
    assert selection.n_frames == 400
    record = selection.to_dict()
    assert record['indices'] == list(selection.indices)

    thinned = select_equilibrium_frames(400, energies=energies, n_max=5)
    assert len(thinned.indices) == 5 and thinned.spacing >= selection.spacing
    assert set(thinned.indices) <= set(selection.indices)


def test_fixed_cut_stride_and_errors():
    energies = synthetic_energies(60)
    selection = select_equilibrium_frames(60, energies=energies, equilibration=10, method='stride', stride=7)
    assert selection.indices == tuple(range(10, 60, 7)) and selection.spacing == 7
    none = select_equilibrium_frames(60, energies=energies, equilibration=None, method='stride', stride=1)
    assert none.equilibration_index == 0 and len(none.indices) == 60
    with pytest.raises(ValueError, match='method'):
        select_equilibrium_frames(60, energies=energies, method='random')
    with pytest.raises(ValueError, match='outside the trajectory'):
        select_equilibrium_frames(60, energies=energies, equilibration=60)
    with pytest.raises(ValueError, match='n_max'):
        select_equilibrium_frames(60, energies=energies, method='fps')
    with pytest.raises(ValueError, match='descriptors'):
        select_equilibrium_frames(60, method='inefficiency')  # no energy, no volume: needs descriptors


def test_observable_fallbacks(pyr14bf4_box):
    volumes = 1000.0 + _ar1(100, 0.5) + 20 * np.exp(-np.arange(100) / 8)
    by_volume = select_equilibrium_frames(100, energies=np.full(100, np.nan), volumes=volumes)
    assert by_volume.observable == 'volume'
    descriptors = np.cumsum(np.random.default_rng(0).normal(size=(100, 5)), axis=0)
    by_structure = select_equilibrium_frames(100, volumes=np.full(100, 1000.0), descriptors=lambda: descriptors)
    assert by_structure.observable == 'descriptor'


def test_descriptor_and_fps(pyr14bf4_box):
    box = pyr14bf4_box()
    elements = sorted(set(box.numbers.tolist()))
    descriptor = pair_distance_descriptor(box, elements, r_max=5.0, n_bins=20)
    n_pairs = len(elements) * (len(elements) + 1) // 2
    assert descriptor.shape == (n_pairs * 20,)
    shuffled = box[np.random.default_rng(0).permutation(len(box))]
    assert np.allclose(pair_distance_descriptor(shuffled, elements, 5.0, 20), descriptor)  # permutation invariant
    expanded = box.copy()
    expanded.set_cell(box.cell * 1.1, scale_atoms=True)
    assert not np.allclose(pair_distance_descriptor(expanded, elements, 5.0, 20), descriptor)

    points = np.array([[0.0], [0.1], [5.0], [10.0], [5.1]])
    assert farthest_point_sampling(points, 3) == [0, 3, 2]
    assert sorted(farthest_point_sampling(points, 10)) == [0, 1, 2, 3, 4]


def test_fps_selection_among_decorrelated_frames():
    energies = synthetic_energies(300, transient=20)
    rng = np.random.default_rng(1)
    descriptors = rng.normal(size=(300, 4))
    selection = select_equilibrium_frames(300, energies=energies, descriptors=descriptors, method='fps', n_max=6)
    base = select_equilibrium_frames(300, energies=energies)
    assert len(selection.indices) == 6 and len(set(selection.indices)) == 6
    assert set(selection.indices) <= set(base.indices)  # picked among the decorrelated frames
    assert selection.spacing >= base.spacing


def test_fps_among_all_frames_for_short_runs():
    energies = synthetic_energies(120, transient=10)
    descriptors = np.random.default_rng(2).normal(size=(120, 3))
    base = select_equilibrium_frames(120, energies=energies)
    picked = select_equilibrium_frames(
        120, energies=energies, descriptors=descriptors, method='fps', n_max=40, fps_pool='all'
    )
    assert len(picked.indices) == 40 > len(base.indices)
    assert min(picked.indices) >= picked.equilibration_index == base.equilibration_index
    assert picked.statistical_inefficiency == pytest.approx(base.statistical_inefficiency)
    with pytest.raises(ValueError, match='fps_pool'):
        select_equilibrium_frames(120, energies=energies, descriptors=descriptors, method='fps', n_max=4, fps_pool='x')
