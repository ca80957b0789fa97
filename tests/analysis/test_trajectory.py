"""The HDF5 trajectory format: writer, resumable append, reader, chunked streaming, selections."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from aiida_ilmlff.analysis import FORMAT, FORMAT_VERSION, TrajectoryReader, TrajectoryWriter

# three molecules: a Li, a BF4 (B + 4 F), a Li
NUMBERS = np.array([3, 5, 9, 9, 9, 9, 3])
MASSES = np.array([6.94, 10.81, 19.0, 19.0, 19.0, 19.0, 6.94])
MOL_ID = np.array([0, 1, 1, 1, 1, 1, 2])
MOLECULES = ['Li', 'BF4', 'Li']
CELL = np.diag([15.0, 15.0, 15.0])


def frames(rng, n_frames):
    return np.cumsum(rng.normal(scale=0.1, size=(n_frames, 7, 3)), axis=0) + rng.random((1, 7, 3)) * 15


def writer(path, **kwargs):
    return TrajectoryWriter(path, NUMBERS, MASSES, MOL_ID, MOLECULES, **kwargs)


def test_round_trip_and_schema(tmp_path, rng):
    path = tmp_path / 'md.h5'
    positions = frames(rng, 25)
    velocities = rng.normal(size=(25, 7, 3))
    options = {'velocities': True, 'observables': {'temperature': 'K'}, 'metadata': {'timestep_fs': 0.5}}
    with writer(path, **options) as out:
        for t in range(20):  # frame by frame, as an MD runner does
            out.append(
                t * 10.0,
                positions[t],
                CELL,
                velocities=velocities[t],
                energy=-t,
                observables={'temperature': 300 + t},
            )
        out.append(np.arange(20, 25) * 10.0, positions[20:], CELL, velocities=velocities[20:])  # a block
        assert out.n_frames == 25

    with h5py.File(path) as f:
        assert f.attrs['format'] == FORMAT
        assert f.attrs['format_version'] == FORMAT_VERSION
        assert bool(f.attrs['unwrapped']) is True
        assert f['positions'].dtype == np.float32
        assert f['positions'].maxshape == (None, 7, 3)
        assert f['positions'].chunks[1:] == (7, 3)
        assert f['positions'].attrs['units'] == 'angstrom'
        assert f['time'].attrs['units'] == 'fs'
        assert f['cell'].shape == (25, 3, 3)
        assert f['observables/temperature'].attrs['units'] == 'K'

    with TrajectoryReader(path) as reader:
        assert len(reader) == 25
        assert reader.n_molecules == 3
        assert reader.molecules == ('Li', 'BF4', 'Li')
        assert reader.symbols[:3] == ['Li', 'B', 'F']
        assert reader.metadata == {'timestep_fs': 0.5}
        assert reader.timestep_fs() == 10.0
        assert reader.timestep_fs(stride=3) == 30.0
        block = reader.read(fields=('positions', 'cell', 'velocities', 'energy', 'observables'))
        np.testing.assert_allclose(block.positions, positions, rtol=1e-6)
        np.testing.assert_allclose(block.velocities, velocities, rtol=1e-6)
        np.testing.assert_allclose(block.energy[:20], -np.arange(20))
        assert np.isnan(block.energy[20:]).all()
        np.testing.assert_allclose(block.observables['temperature'][:20], 300 + np.arange(20))
        one = reader[-1]
        assert one.positions.shape == (7, 3)
        assert one.time == 240.0
        assert len(reader[2:10:3]) == 3
        np.testing.assert_allclose(reader.volumes(), np.full(25, 15.0**3))
        # chunks cover exactly start:stop:stride
        chunks = list(reader.iter_chunks(chunk_size=4, stride=3, start=1, stop=23))
        indices = np.concatenate([chunk.indices for chunk in chunks])
        assert indices.tolist() == list(range(1, 23, 3))
        np.testing.assert_allclose(np.concatenate([c.positions for c in chunks]), block.positions[1:23:3])
        assert max(len(chunk) for chunk in chunks) == 4


def test_float64_storage_is_exact(tmp_path, rng):
    positions = frames(rng, 3)
    with writer(tmp_path / 'a.h5', dtype='float64', energy=False) as out:
        out.append([0.0, 1.0, 2.0], positions, CELL)
    with TrajectoryReader(tmp_path / 'a.h5') as reader:
        np.testing.assert_array_equal(reader.read().positions, positions)
        assert not reader.has_energy


def test_resume_after_restart_truncates_later_frames(tmp_path, rng):
    path = tmp_path / 'md.h5'
    positions = frames(rng, 15)
    with writer(path) as out:
        out.append(np.arange(10) * 10.0, positions[:10], CELL)
    # the run restarts from its checkpoint at 50 fs: frames after 50 fs will be written again
    with TrajectoryWriter.resume(path, truncate_after_fs=50.0) as out:
        assert out.n_frames == 6
        with pytest.raises(ValueError, match='increase strictly'):
            out.append(50.0, positions[5], CELL)
        out.append(np.arange(6, 15) * 10.0, positions[6:], CELL)
    with TrajectoryReader(path) as reader:
        assert reader.time.tolist() == list(np.arange(15) * 10.0)
        np.testing.assert_allclose(reader.read().positions, positions, rtol=1e-6)


def test_uncommitted_frames_are_ignored_and_trimmed(tmp_path, rng):
    path = tmp_path / 'md.h5'
    with writer(path) as out:
        out.append(np.arange(4) * 1.0, frames(rng, 4), CELL)
    with h5py.File(path, 'r+') as f:  # a crash after growing positions, before the commit
        f['positions'].resize(5, axis=0)
        f['time'].resize(5, axis=0)
    with TrajectoryReader(path) as reader:
        assert len(reader) == 4
    with TrajectoryWriter.resume(path) as out:
        assert out.n_frames == 4
    with h5py.File(path) as f:
        assert f['positions'].shape[0] == 4


def test_image_flags_give_unwrapped_positions(tmp_path, rng):
    unwrapped = frames(rng, 6) + 40.0
    image = np.floor(unwrapped / 15.0).astype(int)
    wrapped = unwrapped - image * 15.0
    with writer(tmp_path / 'w.h5', unwrapped=False) as out:
        with pytest.raises(ValueError, match='image'):
            out.append(0.0, wrapped[0], CELL)
        out.append(np.arange(6.0), wrapped, CELL, image=image)
    with TrajectoryReader(tmp_path / 'w.h5') as reader:
        assert not reader.unwrapped and reader.has_image
        np.testing.assert_allclose(reader.read().positions, unwrapped, rtol=1e-6)
        reader.require_unwrapped()


def test_writer_errors(tmp_path, rng):
    path = tmp_path / 'md.h5'
    writer(path).close()
    with pytest.raises(FileExistsError, match='resume'):
        writer(path)
    with writer(path, overwrite=True) as out:
        with pytest.raises(ValueError, match='shape'):
            out.append(0.0, np.zeros((6, 3)), CELL)
        with pytest.raises(ValueError, match='undeclared observables'):
            out.append(0.0, np.zeros((7, 3)), CELL, observables={'pressure': 1.0})
        with pytest.raises(ValueError, match='without velocities'):
            out.append(0.0, np.zeros((7, 3)), CELL, velocities=np.zeros((7, 3)))
        with pytest.raises(ValueError, match='non-finite'):
            out.append(0.0, np.full((7, 3), np.nan), CELL)
    with pytest.raises(ValueError, match='mol_id'):
        TrajectoryWriter(tmp_path / 'x.h5', NUMBERS, MASSES, [0, 1, 1, 1, 1, 1, 3])
    with pytest.raises(ValueError, match='molecules'):
        TrajectoryWriter(tmp_path / 'y.h5', NUMBERS, MASSES, MOL_ID, ['Li', 'BF4'])
    with h5py.File(tmp_path / 'other.h5', 'w') as f:
        f['x'] = 1
    with pytest.raises(ValueError, match='not an ilmlff-trajectory'):
        TrajectoryReader(tmp_path / 'other.h5')


def test_selections(tmp_path, rng):
    path = tmp_path / 'md.h5'
    with writer(path) as out:
        out.append([0.0, 1.0, 3.0], frames(rng, 3), CELL)
    with TrajectoryReader(path) as reader:
        assert reader.select_atoms('Li').tolist() == [0, 6]
        assert reader.select_atoms('BF4:F').tolist() == [2, 3, 4, 5]
        assert reader.select_atoms('BF4').tolist() == [1, 2, 3, 4, 5]
        assert reader.select_atoms('F').tolist() == [2, 3, 4, 5]
        assert reader.select_molecules('Li').tolist() == [0, 2]
        assert set(reader.species_groups()) == {'Li', 'BF4'}
        with pytest.raises(ValueError, match="species 'TFSI' is not in the trajectory"):
            reader.select_molecules('TFSI')
        with pytest.raises(ValueError, match="species 'TFSI' is not in the trajectory"):
            reader.select_atoms('TFSI:O')
        with pytest.raises(ValueError, match='matches no atom'):
            reader.select_atoms('O')
        with pytest.raises(ValueError, match='no species'):
            reader.select_atoms('Water')
        with pytest.raises(ValueError, match='not evenly spaced'):
            reader.timestep_fs()
        with pytest.raises(KeyError, match='observable'):
            reader.observable('temperature')


def test_ase_atoms_helpers(tmp_path):
    ase = pytest.importorskip('ase')
    from ase import units

    atoms = ase.Atoms('LiF', positions=[[0, 0, 0], [1.6, 0, 0]], cell=np.eye(3) * 10, pbc=True)
    atoms.arrays['mol_id'] = np.array([0, 1])
    atoms.info['molecules'] = ['Li', 'F']
    atoms.set_velocities([[0.1 / units.fs, 0, 0], [0, 0, 0]])  # 0.1 Å/fs
    with TrajectoryWriter.from_atoms(tmp_path / 'ase.h5', atoms, velocities=True, energy=False) as out:
        out.append_atoms(atoms, 0.0)
    with TrajectoryReader(tmp_path / 'ase.h5') as reader:
        frame = reader[0]
        assert reader.molecules == ('Li', 'F')
        np.testing.assert_allclose(frame.velocities[0], [0.1, 0, 0], rtol=1e-6)
        np.testing.assert_allclose(frame.positions[1], [1.6, 0, 0], rtol=1e-6)
