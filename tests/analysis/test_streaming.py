"""Streaming analyses of trajectory files: MSD of centres of mass, RDF, Li+ environment, conformers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from aiida_ilmlff.analysis import (
    TrajectoryWriter,
    WrappedCoordinatesError,
    conformers_from_trajectory,
    density,
    density_from_trajectory,
    li_environment_from_trajectory,
    molecular_centers_of_mass,
    msd,
    msd_from_trajectory,
    rdf,
    rdf_from_trajectory,
)

from .test_conformers import tfsi

L = 16.0
CELL = np.diag([L, L, L])
BF4 = np.array([[0.0, 0, 0], [0.81, 0.81, 0.81], [-0.81, -0.81, 0.81], [-0.81, 0.81, -0.81], [0.81, -0.81, -0.81]])


def li_bf4_system(rng, n_frames=60, n_pairs=6, n_free=4):
    """Li bound to one F of its BF4 (Li-F 1.9 Å) plus free BF4, diffusing rigidly.

    Returns (positions, numbers, masses, mol_id, molecules).
    """
    numbers, masses, mol_id, molecules, bodies = [], [], [], [], []
    mol = 0
    for k in range(n_pairs + n_free):
        numbers += [5, 9, 9, 9, 9]
        masses += [10.81, 19.0, 19.0, 19.0, 19.0]
        mol_id += [mol] * 5
        molecules.append('BF4')
        body = BF4.copy()
        mol += 1
        if k < n_pairs:
            numbers.append(3)
            masses.append(6.94)
            mol_id.append(mol)
            molecules.append('Li')
            direction = BF4[1] / np.linalg.norm(BF4[1])
            body = np.vstack([body, BF4[1] + 1.9 * direction])
            mol += 1
        bodies.append(body)
    n_atoms = len(numbers)
    # molecules on random sites of a 3 x 3 x 3 lattice (spacing 5.3 Å), so that no two overlap
    sites = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing='ij'), axis=-1).reshape(-1, 3) * (L / 3)
    centres = sites[rng.choice(len(sites), len(bodies), replace=False)]
    walk = np.cumsum(rng.normal(scale=0.05, size=(n_frames, len(bodies), 3)), axis=0)
    positions = np.empty((n_frames, n_atoms, 3))
    for t in range(n_frames):
        positions[t] = np.vstack([body + centres[k] + walk[t, k] for k, body in enumerate(bodies)])
    return positions, np.array(numbers), np.array(masses), np.array(mol_id), molecules


def write(path, positions, numbers, masses, mol_id, molecules, dt=10.0, **kwargs):
    with TrajectoryWriter(path, numbers, masses, mol_id, molecules, dtype='float64', **kwargs) as out:
        out.append(np.arange(len(positions)) * dt, positions, CELL)
    return path


@pytest.fixture
def li_bf4(tmp_path, rng):
    system = li_bf4_system(rng)
    return write(tmp_path / 'libf4.h5', *system), system


def test_msd_from_trajectory_matches_in_memory(li_bf4):
    path, (positions, _numbers, masses, mol_id, molecules) = li_bf4
    result = msd_from_trajectory(path, ['BF4', 'Li'], chunk_size=7)
    bf4 = [m for m, name in enumerate(molecules) if name == 'BF4']
    expected = msd(molecular_centers_of_mass(positions, mol_id, masses, bf4))
    np.testing.assert_allclose(result.msd['BF4'], expected, rtol=1e-10, atol=1e-12)
    assert result.msd_per_molecule['Li'].shape == (60, 6)
    assert result.timestep_fs == 10.0
    assert result.lag_fs[-1] == 590.0
    # the chunk size does not matter; strides subsample
    again = msd_from_trajectory(path, {'anions': 'BF4'}, chunk_size=1000)
    np.testing.assert_allclose(again.msd['anions'], expected, rtol=1e-12)
    strided = msd_from_trajectory(path, 'BF4', stride=2)
    assert strided.timestep_fs == 20.0
    np.testing.assert_allclose(strided.msd['BF4'], msd(molecular_centers_of_mass(positions[::2], mol_id, masses, bf4)))
    result.diffusion('BF4', window=(50.0, 140.0))
    drift_free = msd_from_trajectory(path, 'BF4', remove_drift=True)
    assert drift_free.drift_removed


def test_msd_from_trajectory_errors(tmp_path, li_bf4):
    path, (positions, numbers, masses, mol_id, molecules) = li_bf4
    with pytest.raises(ValueError, match="species 'TFSI' is not in the trajectory"):
        msd_from_trajectory(path, 'TFSI')
    # wrapped coordinates written as if unwrapped: detected by the jumps between frames
    wrapped = write(tmp_path / 'wrapped.h5', positions % L, numbers, masses, mol_id, molecules)
    with pytest.raises(WrappedCoordinatesError, match='wrapped'):
        msd_from_trajectory(wrapped, 'BF4', chunk_size=5)
    # a file that says wrapped and has no image flags
    with h5py.File(wrapped, 'r+') as f:
        f.attrs['unwrapped'] = False
    with pytest.raises(WrappedCoordinatesError, match='no image flags'):
        msd_from_trajectory(wrapped, 'BF4')
    # uneven frames
    uneven = tmp_path / 'uneven.h5'
    with TrajectoryWriter(uneven, numbers, masses, mol_id, molecules) as out:
        out.append([0.0, 1.0, 3.0], positions[:3], CELL)
    with pytest.raises(ValueError, match='evenly spaced'):
        msd_from_trajectory(uneven, 'Li')


def test_rdf_from_trajectory_matches_in_memory(li_bf4):
    path, (positions, numbers, _masses, mol_id, _molecules) = li_bf4
    li = np.nonzero(numbers == 3)[0]
    fluorine = np.nonzero(numbers == 9)[0]
    result = rdf_from_trajectory(path, 'Li', 'BF4:F', 7.0, 70, chunk_size=9)
    r, g = rdf(positions[:, li], positions[:, fluorine], CELL, 7.0, 70)
    np.testing.assert_allclose(result.r, r)
    np.testing.assert_allclose(result.g, g, rtol=1e-12)
    # F-F without the F of the same BF4
    same = rdf_from_trajectory(path, 'F', None, 7.0, 70, exclude_intramolecular=True)
    _, g_ff = rdf(positions[:, fluorine], None, CELL, 7.0, 70, mol_id_a=mol_id[fluorine])
    np.testing.assert_allclose(same.g, g_ff, rtol=1e-12)
    assert same.g[(same.r > 1.0) & (same.r < 1.5)].sum() == 0  # intramolecular F-F (1.32 Å) removed
    # centres of mass, default r_max = half the box
    com = rdf_from_trajectory(path, 'BF4:com', 'Li:com', n_bins=40)
    assert com.edges[-1] == pytest.approx(L / 2)
    with pytest.raises(ValueError, match="species 'PYR14'"):
        rdf_from_trajectory(path, 'PYR14:com')


def test_li_environment_from_trajectory(li_bf4):
    path, _ = li_bf4
    given = li_environment_from_trajectory(path, 'Li', 'BF4:F', r_cut=2.5)
    assert given.anion_cn == pytest.approx(1.0)
    assert given.ligand_cn == pytest.approx(1.0)
    assert given.denticity_distribution.tolist() == [1.0]  # every Li-BF4 contact through one F
    assert given.clusters.sizes.tolist() == [2]
    assert given.clusters.compositions == {'1Li1A': 6 * 60}
    np.testing.assert_allclose(given.continuous, 1.0)  # bonds never break
    assert given.lifetime_continuous is not None and not given.lifetime_continuous.decayed
    auto = li_environment_from_trajectory(path, 'Li', 'BF4:F')
    assert auto.r_cut_from_rdf
    assert 1.9 < auto.r_cut < 3.2
    assert auto.anion_cn == pytest.approx(1.0)


def test_conformers_and_density_from_trajectory(tmp_path):
    cis, numbers = tfsi(40.0, [5.0, 5.0, 5.0])
    trans, _ = tfsi(180.0, [10.0, 10.0, 10.0])
    positions = np.stack([np.concatenate([cis, trans])] * 4)
    positions[2:, 15:] = np.stack([tfsi(20.0, [10.0, 10.0, 10.0])[0]] * 2)  # the second turns cis
    masses = np.array([14.0, 32.06, 32.06, 12.0, 12.0] + [16.0] * 4 + [19.0] * 6)
    path = write(
        tmp_path / 'tfsi.h5',
        positions,
        np.tile(numbers, 2),
        np.tile(masses, 2),
        np.repeat([0, 1], 15),
        ['TFSI'] * 2,
    )
    times, fractions = conformers_from_trajectory(path, chunk_size=3)
    assert times.tolist() == [0.0, 10.0, 20.0, 30.0]
    assert fractions.cis_fraction.tolist() == [0.5, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="species 'FSI'"):
        conformers_from_trajectory(path, 'FSI')
    _, series, stats = density_from_trajectory(path)
    assert series == pytest.approx(density(2 * masses.sum(), L**3))
    assert stats.mean == pytest.approx(series[0])


def test_molecules_cut_by_the_cell_give_the_same_centre_of_mass_analyses(tmp_path, rng):
    """A user-supplied or active-learning start has molecules cut by the cell (every atom wrapped in frame 0; the
    trajectory is unwrapped in time from there): centre-of-mass MSD, RDF and the Li environment equal those of the
    whole molecules, while centres of mass taken naively from the cut frame are off."""
    positions, numbers, masses, mol_id, molecules = li_bf4_system(rng)
    positions = positions + np.array([-1.0, 0.3, 0.0])  # the BF4 at the origin sits across the x = 0 face
    shift = _cut_shift(positions[0])
    cut = positions + shift  # a constant per-atom lattice shift: unwrapped in time, molecules cut
    whole_path = write(tmp_path / 'whole.h5', positions, numbers, masses, mol_id, molecules)
    cut_path = write(tmp_path / 'cut.h5', cut, numbers, masses, mol_id, molecules)
    naive = molecular_centers_of_mass(cut[0], mol_id, masses)
    true = molecular_centers_of_mass(positions[0], mol_id, masses)
    assert np.abs(naive - true).max() > 1.0  # the corruption this guards against

    expected, got = msd_from_trajectory(whole_path, 'BF4'), msd_from_trajectory(cut_path, 'BF4')
    np.testing.assert_allclose(got.msd['BF4'], expected.msd['BF4'], atol=1e-9)
    expected_rdf = rdf_from_trajectory(whole_path, 'BF4:com', 'Li:com', 7.5, 30)
    got_rdf = rdf_from_trajectory(cut_path, 'BF4:com', 'Li:com', 7.5, 30)
    np.testing.assert_allclose(got_rdf.g, expected_rdf.g, atol=1e-12)
    expected_li = li_environment_from_trajectory(whole_path, 'Li', 'BF4:F', 2.5)
    got_li = li_environment_from_trajectory(cut_path, 'Li', 'BF4:F', 2.5)
    assert got_li.clusters.compositions == expected_li.clusters.compositions
    assert got_li.anion_cn == expected_li.anion_cn


def _cut_shift(frame):
    fractional = frame / L
    return (np.floor(fractional) * -L)[None]
