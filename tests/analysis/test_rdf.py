"""RDF against MDAnalysis InterRDF and known answers; coordination numbers; first minimum; pairs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from aiida_ilmlff.analysis import (
    coordination_number,
    first_minimum,
    minimum_image,
    pairs_within,
    rdf,
    running_coordination_number,
)

ORTHORHOMBIC = np.diag([21.0, 23.0, 22.0])
TRICLINIC = np.array([[21.0, 0.0, 0.0], [5.0, 22.0, 0.0], [-3.0, 4.0, 23.0]])


def interrdf(universe, a, b, r_max, n_bins, **kwargs):
    from MDAnalysis.analysis.rdf import InterRDF

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        result = InterRDF(universe.atoms[a], universe.atoms[b], nbins=n_bins, range=(0.0, r_max), **kwargs).run()
    return result.results.bins, result.results.rdf


def assert_no_distance_near_a_bin_edge(positions, cell, r_max, n_bins, tolerance=2e-6):
    """MDAnalysis computes triclinic minimum images in single precision (distances off by ~5e-7 Å):
    a pair that close to a bin edge may land in the neighbouring bin there. Make sure none is."""
    width = r_max / n_bins
    for frame in positions:
        _, _, d = pairs_within(frame, None, cell, r_max, same=True)
        assert np.min(np.abs(d / width - np.rint(d / width))) * width > tolerance


@pytest.mark.parametrize('cell', [ORTHORHOMBIC, TRICLINIC], ids=['orthorhombic', 'triclinic'])
def test_rdf_matches_mdanalysis(rng, mda_universe, cell):
    positions = (rng.random((3, 240, 3)) @ cell + rng.normal(scale=8.0, size=(1, 1, 3))).astype(np.float32)
    universe, cell_used = mda_universe(positions, cell)
    positions = positions.astype(np.float64)
    r_max, n_bins = 9.5, 81
    if cell is TRICLINIC:
        assert_no_distance_near_a_bin_edge(positions, cell_used, r_max, n_bins)

    # a with itself: MDAnalysis needs exclusion_block=(1, 1) to drop self pairs
    bins, reference = interrdf(universe, slice(None), slice(None), r_max, n_bins, exclusion_block=(1, 1))
    r, g = rdf(positions, None, cell_used, r_max, n_bins)
    np.testing.assert_allclose(r, bins, rtol=1e-12)
    np.testing.assert_allclose(g, reference, rtol=1e-6)

    # two distinct groups
    _, reference = interrdf(universe, slice(0, 90), slice(90, None), r_max, n_bins)
    _, g = rdf(positions[:, :90], positions[:, 90:], cell_used, r_max, n_bins)
    np.testing.assert_allclose(g, reference, rtol=1e-6)

    # intramolecular exclusion: molecules of 3 atoms are MDAnalysis exclusion blocks
    mol_id = np.arange(240) // 3
    _, reference = interrdf(universe, slice(None), slice(None), r_max, n_bins, exclusion_block=(3, 3))
    _, g = rdf(positions, positions, cell_used, r_max, n_bins, mol_id_a=mol_id)
    np.testing.assert_allclose(g, reference, rtol=1e-6)


def test_ideal_gas_rdf_is_one(rng):
    cell = np.diag([30.0, 30.0, 30.0])
    positions = rng.random((40, 500, 3)) * 30.0
    result = rdf(positions, None, cell, 14.0, 28, return_result=True)
    assert result.n_frames == 40
    assert result.n_pairs == 500 * 499
    # relative noise per bin ~ 1 / sqrt(counts): compare with 5 sigma
    sigma = 1 / np.sqrt(result.counts / 2)
    assert np.all(np.abs(result.g[2:] - 1) < 5 * sigma[2:])
    assert abs(np.average(result.g, weights=result.counts) - 1) < 0.01
    # distinct groups of an ideal gas, in a triclinic cell
    positions = rng.random((40, 400, 3)) @ TRICLINIC
    _r, g = rdf(positions[:, :150], positions[:, 150:], TRICLINIC, 10.0, 10)
    assert np.all(np.abs(g[3:] - 1) < 0.05)


def test_rdf_pair_counts_by_hand():
    cell = np.diag([10.0, 10.0, 10.0])
    # two atoms 1.5 Å apart through the boundary, one far away
    positions = np.array([[0.2, 5.0, 5.0], [8.7, 5.0, 5.0], [5.0, 1.0, 1.0]])
    result = rdf(positions, None, cell, 5.0, 10, return_result=True)
    # only atoms 0 and 1 are within 5 Å (1.5 Å through the boundary): one pair, counted in both orders
    assert result.counts.sum() == 2
    assert result.counts[3] == 2
    assert result.g[3] == pytest.approx(2 / (6 / 1000.0 * 4 / 3 * np.pi * (2.0**3 - 1.5**3)))
    assert result.number_density_b == pytest.approx(2 / 1000.0)


def test_rdf_errors(rng):
    positions = rng.random((2, 20, 3)) * 10
    with pytest.raises(ValueError, match='half the smallest perpendicular'):
        rdf(positions, None, np.diag([10.0, 10.0, 10.0]), 5.5, 10)
    with pytest.raises(ValueError, match='half the smallest perpendicular'):
        rdf(positions, None, TRICLINIC * 0.5, 5.5, 10)  # widths shorter than the edge lengths
    with pytest.raises(ValueError, match='frames'):
        rdf(positions, positions[:1, :5], np.diag([10.0] * 3), 4.0, 10)
    with pytest.raises(ValueError, match='cell'):
        rdf(positions, None, np.eye(2), 4.0, 10)


@pytest.mark.parametrize('cell', [ORTHORHOMBIC, TRICLINIC], ids=['orthorhombic', 'triclinic'])
def test_pairs_within_matches_brute_force(rng, cell):
    a = rng.random((60, 3)) @ cell + 50.0  # far outside the cell: wrapping is handled
    b = rng.random((70, 3)) @ cell - 30.0
    r_max = 8.0
    diff = minimum_image(a[:, None, :] - b[None, :, :], cell)
    distance = np.linalg.norm(diff, axis=-1)
    expected = sorted(zip(*np.nonzero(distance <= r_max)))
    i, j, d = pairs_within(a, b, cell, r_max)
    assert sorted(zip(i.tolist(), j.tolist())) == [tuple(map(int, p)) for p in expected]
    np.testing.assert_allclose(d, distance[i, j], rtol=1e-12)
    i, j, d = pairs_within(a, None, cell, r_max, same=True)
    self_distance = np.linalg.norm(minimum_image(a[:, None] - a[None], cell), axis=-1)
    assert np.all(i < j)
    assert len(i) == np.count_nonzero(np.triu(self_distance <= r_max, k=1))


def test_minimum_image_triclinic_is_shortest(rng):
    vectors = rng.normal(scale=30.0, size=(200, 3))
    reduced = minimum_image(vectors, TRICLINIC)
    shifts = np.array(np.meshgrid(*[np.arange(-3, 4)] * 3)).reshape(3, -1).T @ TRICLINIC
    lengths = np.linalg.norm(reduced[:, None] + shifts[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(reduced, axis=1), lengths.min(axis=1), rtol=1e-12)


def test_coordination_number_of_an_ideal_gas():
    r = np.arange(0.025, 8.0, 0.05)
    g = np.ones_like(r)
    density = 0.05
    assert coordination_number(r, g, density, 5.0) == pytest.approx(4 / 3 * np.pi * 125 * density, rel=1e-3)
    running = running_coordination_number(r, g, density)
    np.testing.assert_allclose(running[-1], 4 / 3 * np.pi * r[-1] ** 3 * density, rtol=1e-3)
    with pytest.raises(ValueError, match='outside'):
        coordination_number(r, g, density, 9.0)


def test_coordination_number_counts_neighbours(rng):
    """On a simple cubic lattice (a = 2 Å) every atom has 6 neighbours within 2.5 Å."""
    grid = np.stack(np.meshgrid(*[np.arange(8) * 2.0] * 3, indexing='ij'), axis=-1).reshape(-1, 3)
    cell = np.diag([16.0] * 3)
    result = rdf(grid + rng.normal(scale=0.01, size=grid.shape), None, cell, 7.9, 790, return_result=True)
    assert result.coordination_number(2.5) == pytest.approx(6.0, abs=0.05)


def test_first_minimum_of_a_model_liquid():
    r = np.arange(0.0125, 10.0, 0.025)
    # a damped oscillation about 1 with a core: peaks near 2.4 Å, first minimum near 3.4 Å
    g = np.where(r > 1.5, 1 + 1.2 * np.exp(-(r - 1.5)) * np.cos(np.pi * (r - 2.4) / 1.05), 0.0)
    dense = np.linspace(2.5, 4.5, 200001)
    model = 1 + 1.2 * np.exp(-(dense - 1.5)) * np.cos(np.pi * (dense - 2.4) / 1.05)
    expected = dense[np.argmin(model)]
    noisy = g + np.random.default_rng(0).normal(scale=0.01, size=len(g))
    assert first_minimum(r, noisy) == pytest.approx(expected, abs=0.05)
    with pytest.raises(ValueError, match='no minimum'):
        first_minimum(r[r < 3.0], g[r < 3.0])
