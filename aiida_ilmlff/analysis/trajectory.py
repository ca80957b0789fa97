"""The project's HDF5 trajectory format: schema, writer and streaming reader.

Schema (``format = 'ilmlff-trajectory'``, ``format_version = 1``); T frames, N atoms, M molecules:

=========================  ==================  ===========  ===============================================
path                       shape               dtype        content
=========================  ==================  ===========  ===============================================
``/time``                  (T,)                float64      simulation time in fs, strictly increasing
``/positions``             (T, N, 3)           f32 or f64   Cartesian positions in Å, **unwrapped**
``/cell``                  (T, 3, 3)           float64      cell in Å, rows are the lattice vectors a, b, c
``/velocities`` (opt.)     (T, N, 3)           f32 or f64   velocities in Å/fs
``/energy`` (opt.)         (T,)                float64      potential energy in eV
``/image`` (opt.)          (T, N, 3)           int32        image flags, only when ``unwrapped`` is false
``/observables/<name>``    (T,)                float64      optional per-frame scalars (attr ``units``)
``/numbers``               (N,)                int32        atomic numbers
``/masses``                (N,)                float64      masses in amu
``/mol_id``                (N,)                int64        molecule of each atom, 0 .. M-1 (all used)
``/molecules`` (opt.)      (M,)                str (utf-8)  species name of each molecule (e.g. ``'TFSI'``)
=========================  ==================  ===========  ===============================================

Root attributes: ``format``, ``format_version``, ``n_frames`` (frames committed: readers ignore
anything beyond, which makes a crash between two datasets' writes harmless), ``unwrapped`` (bool),
``length_unit = 'angstrom'``, ``time_unit = 'fs'``, ``energy_unit = 'eV'``, ``mass_unit = 'amu'``,
``velocity_unit = 'angstrom/fs'``, plus free metadata (``meta_<key>``). Every dataset carries a
``units`` attribute. Per-frame datasets are chunked along T and resizable, so frames are appended
while the MD runs; all systems are periodic in 3D. Unwrapped positions are ``wrapped + image @ cell``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator, Mapping, Sequence

import h5py
import numpy as np

from ._common import WrappedCoordinatesError
from .geometry import cell_volume, validate_cell
from .molecules import species_groups

__all__ = (
    'FORMAT',
    'FORMAT_VERSION',
    'Frames',
    'TrajectoryReader',
    'TrajectoryWriter',
    'chemical_symbols',
)

FORMAT = 'ilmlff-trajectory'
FORMAT_VERSION = 1

#: Element symbols indexed by atomic number (index 0 is a placeholder).
chemical_symbols = (
    'X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr '
    'Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb '
    'Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf '
    'Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og'
).split()

_UNITS = {
    'time': 'fs',
    'positions': 'angstrom',
    'cell': 'angstrom',
    'velocities': 'angstrom/fs',
    'energy': 'eV',
    'image': '1',
    'numbers': '1',
    'masses': 'amu',
    'mol_id': '1',
}
_PER_FRAME = ('time', 'positions', 'cell', 'velocities', 'energy', 'image')
_CHUNK_BYTES = 2**20  # one HDF5 chunk of positions: about 1 MiB
_READ_CHUNK_BYTES = 64 * 2**20  # default streaming chunk: about 64 MiB of float64 positions
_STR = h5py.string_dtype('utf-8')


@dataclasses.dataclass
class Frames:
    """A block of frames read from a trajectory (fields not requested are None).

    Attributes:
        indices: (T,) frame indices in the file.
        time: (T,) fs.
        positions: (T, N, 3) float64 Å, unwrapped when the file is (or has image flags).
        cell: (T, 3, 3) Å.
        velocities: (T, N, 3) Å/fs; energy: (T,) eV; observables: ``{name: (T,)}``.
    A :class:`TrajectoryReader` indexed with an int returns the same with the frame axis removed.
    """

    indices: np.ndarray
    time: np.ndarray
    positions: np.ndarray | None = None
    cell: np.ndarray | None = None
    velocities: np.ndarray | None = None
    energy: np.ndarray | None = None
    observables: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(np.size(self.indices))


def _check_static(numbers, masses, mol_id, molecules):
    numbers = np.asarray(numbers, dtype=np.int32)
    if numbers.ndim != 1 or len(numbers) == 0:
        raise ValueError('numbers must be a non-empty (N,) array of atomic numbers')
    if np.any(numbers < 1) or np.any(numbers >= len(chemical_symbols)):
        raise ValueError('numbers must be atomic numbers between 1 and 118')
    n_atoms = len(numbers)
    masses = np.asarray(masses, dtype=float)
    if masses.shape != (n_atoms,) or np.any(masses <= 0):
        raise ValueError(f'masses must be a (N,) = ({n_atoms},) array of positive masses in amu')
    mol_id = np.arange(n_atoms) if mol_id is None else np.asarray(mol_id)
    if mol_id.shape != (n_atoms,) or not np.issubdtype(mol_id.dtype, np.integer):
        raise ValueError(f'mol_id must be a (N,) = ({n_atoms},) integer array')
    n_molecules = int(mol_id.max()) + 1
    if mol_id.min() < 0 or len(np.unique(mol_id)) != n_molecules:
        raise ValueError('mol_id must number the molecules 0 .. M-1, each used at least once')
    if molecules is not None:
        molecules = [str(name) for name in molecules]
        if len(molecules) != n_molecules:
            raise ValueError(f'molecules must name each of the {n_molecules} molecules, got {len(molecules)} names')
    return numbers, masses, mol_id.astype(np.int64), molecules


class TrajectoryWriter:
    """Writes (appends) frames to an ilmlff HDF5 trajectory; see the module docstring for the schema.

    Use as a context manager; :meth:`append` takes one frame or a block. The file is flushed every
    ``flush_every`` frames and on :meth:`close`; ``n_frames`` is committed after each append, so a
    crash leaves a file that :meth:`resume` (or a reader) trims back to the last whole frame.

    :param path: file to create; an existing file is an error unless ``overwrite`` (use
        :meth:`resume` to append to it after a restart).
    :param numbers: (N,) atomic numbers.
    :param masses: (N,) masses in amu.
    :param mol_id: (N,) molecule index of each atom, numbering molecules 0 .. M-1 (default: one per atom).
    :param molecules: optional (M,) species name of each molecule (``atoms.info['molecules']``).
    :param dtype: storage type of positions and velocities, ``'float32'`` (default; 1e-7 relative)
        or ``'float64'``.
    :param velocities: store velocities (Å/fs).
    :param energy: store the potential energy (eV).
    :param observables: per-frame scalars to store, name -> units (e.g. ``{'temperature': 'K'}``).
    :param unwrapped: whether the positions given are unwrapped (default). If false, every append
        needs ``image`` flags.
    :param compression: optional h5py compression (``'gzip'``, ``'lzf'``) of per-frame data.
    :param flush_every: frames between flushes to disk.
    :param metadata: scalars or strings to store as root attributes ``meta_<key>`` (e.g. timestep,
        thermostat, model sha256).
    """

    def __init__(
        self,
        path,
        numbers,
        masses,
        mol_id=None,
        molecules: Sequence[str] | None = None,
        *,
        dtype: str = 'float32',
        velocities: bool = False,
        energy: bool = True,
        observables: Mapping[str, str] | None = None,
        unwrapped: bool = True,
        compression: str | None = None,
        flush_every: int = 100,
        metadata: Mapping[str, object] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = pathlib.Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f'{self.path} exists: use TrajectoryWriter.resume() to append to it, or overwrite=True'
            )
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        numbers, masses, mol_id, molecules = _check_static(numbers, masses, mol_id, molecules)
        n_atoms = len(numbers)
        itemsize = np.dtype(dtype).itemsize
        frames_per_chunk = int(max(1, min(4096, _CHUNK_BYTES // (n_atoms * 3 * itemsize))))
        self._file = h5py.File(self.path, 'w')
        f = self._file
        f.attrs.update(
            {
                'format': FORMAT,
                'format_version': FORMAT_VERSION,
                'n_frames': 0,
                'unwrapped': bool(unwrapped),
                'length_unit': 'angstrom',
                'time_unit': 'fs',
                'energy_unit': 'eV',
                'mass_unit': 'amu',
                'velocity_unit': 'angstrom/fs',
            }
        )
        for key, value in (metadata or {}).items():
            f.attrs[f'meta_{key}'] = value
        for name, data in (('numbers', numbers), ('masses', masses), ('mol_id', mol_id)):
            f.create_dataset(name, data=data).attrs['units'] = _UNITS[name]
        if molecules is not None:
            f.create_dataset('molecules', data=np.array(molecules, dtype=object), dtype=_STR)

        def per_frame(name, shape, dt, chunk):
            dataset = f.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dt,
                chunks=(chunk, *shape),
                compression=compression,
            )
            dataset.attrs['units'] = _UNITS.get(name, '')
            return dataset

        big = max(frames_per_chunk, 1024)
        per_frame('time', (), np.float64, big)
        per_frame('positions', (n_atoms, 3), dtype, frames_per_chunk)
        per_frame('cell', (3, 3), np.float64, big)
        if velocities:
            per_frame('velocities', (n_atoms, 3), dtype, frames_per_chunk)
        if energy:
            per_frame('energy', (), np.float64, big)
        if not unwrapped:
            per_frame('image', (n_atoms, 3), np.int32, frames_per_chunk)
        group = f.create_group('observables')
        for name, units in (observables or {}).items():
            dataset = group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(big,))
            dataset.attrs['units'] = str(units)
        self._setup(flush_every)

    # -- opening ------------------------------------------------------------------------------------

    def _setup(self, flush_every: int) -> None:
        f = self._file
        self.n_atoms = int(f['numbers'].shape[0])
        self.unwrapped = bool(f.attrs['unwrapped'])
        self.flush_every = max(1, int(flush_every))
        self._since_flush = 0
        self._n_frames = int(f.attrs['n_frames'])
        self._last_time = float(f['time'][self._n_frames - 1]) if self._n_frames else -np.inf

    @classmethod
    def resume(cls, path, *, truncate_after_fs: float | None = None, flush_every: int = 100) -> TrajectoryWriter:
        """Open an existing trajectory to append frames (e.g. after an MD restart).

        Frames beyond the committed ``n_frames`` (a crash mid-write) are dropped, and with
        ``truncate_after_fs`` so are frames later than that time (those the restarted run will
        write again from its checkpoint).

        :raises ValueError: not an ilmlff trajectory, or a newer format version.
        """
        self = cls.__new__(cls)
        self.path = pathlib.Path(path)
        self._file = h5py.File(self.path, 'r+')
        try:
            _check_format(self._file, self.path)
            n_frames = _committed_frames(self._file)
            if truncate_after_fs is not None:
                times = self._file['time'][:n_frames]
                n_frames = int(np.searchsorted(times, truncate_after_fs, side='right'))
            for dataset in _per_frame_datasets(self._file):
                if dataset.shape[0] != n_frames:
                    dataset.resize(n_frames, axis=0)
            self._file.attrs['n_frames'] = n_frames
            self._file.flush()
            self._setup(flush_every)
        except BaseException:
            self._file.close()
            raise
        return self

    @classmethod
    def from_atoms(cls, path, atoms, **kwargs) -> TrajectoryWriter:
        """A writer for an ASE ``Atoms`` (numbers, masses, ``arrays['mol_id']``, ``info['molecules']``)."""
        mol_id = atoms.arrays.get('mol_id') if hasattr(atoms, 'arrays') else None
        molecules = atoms.info.get('molecules') if hasattr(atoms, 'info') else None
        return cls(path, atoms.get_atomic_numbers(), atoms.get_masses(), mol_id, molecules, **kwargs)

    # -- writing ------------------------------------------------------------------------------------

    @property
    def n_frames(self) -> int:
        """Frames committed so far."""
        return self._n_frames

    def append(self, time_fs, positions, cell, *, velocities=None, energy=None, image=None, observables=None) -> None:
        """Append one frame or a block of frames.

        :param time_fs: scalar or (T,) times in fs, strictly increasing and after the last frame.
        :param positions: (N, 3) or (T, N, 3) positions in Å (unwrapped unless the file says otherwise).
        :param cell: (3, 3) or (T, 3, 3) in Å; a single cell is repeated over a block.
        :param velocities: (N, 3) or (T, N, 3) in Å/fs (needed if the file stores velocities;
            ASE velocities are in Å / ase.units.fs: multiply by ``ase.units.fs``).
        :param energy: scalar or (T,) potential energy in eV (NaN stored if omitted).
        :param image: (N, 3) or (T, N, 3) integer image flags; required iff the file is not unwrapped.
        :param observables: ``{name: scalar or (T,)}`` for the declared observables (NaN if omitted).
        :raises ValueError: shapes, non-finite positions, non-increasing time, undeclared fields.
        """
        f = self._file
        if not f.id.valid:
            raise ValueError('the trajectory writer is closed')
        times = np.atleast_1d(np.asarray(time_fs, dtype=float))
        n_new = len(times)
        positions = np.asarray(positions, dtype=float)
        if positions.ndim == 2:
            positions = positions[None]
        if positions.shape != (n_new, self.n_atoms, 3):
            raise ValueError(f'positions must have shape ({n_new}, {self.n_atoms}, 3), got {positions.shape}')
        if not np.all(np.isfinite(positions)):
            raise ValueError('positions contain non-finite values')
        if times.ndim != 1 or np.any(np.diff(times) <= 0) or times[0] <= self._last_time:
            raise ValueError(
                f'time must increase strictly (last written {self._last_time} fs, got {times.tolist()[:3]}...)'
            )
        cell = validate_cell(cell, n_frames=n_new)
        if cell.ndim == 2:
            cell = np.broadcast_to(cell, (n_new, 3, 3))
        data = {'time': times, 'positions': positions, 'cell': cell}
        if 'velocities' in f:
            if velocities is None:
                raise ValueError('this trajectory stores velocities: pass velocities=')
            velocities = np.asarray(velocities, dtype=float).reshape(n_new, self.n_atoms, 3)
            data['velocities'] = velocities
        elif velocities is not None:
            raise ValueError('this trajectory was created without velocities (velocities=True)')
        if 'energy' in f:
            data['energy'] = (
                np.full(n_new, np.nan) if energy is None else np.broadcast_to(np.asarray(energy, dtype=float), (n_new,))
            )
        elif energy is not None:
            raise ValueError('this trajectory was created without energy (energy=True)')
        if 'image' in f:
            if image is None:
                raise ValueError('this trajectory stores wrapped positions: pass image= flags with each frame')
            data['image'] = np.asarray(image).reshape(n_new, self.n_atoms, 3).astype(np.int32)
        elif image is not None:
            raise ValueError('this trajectory stores unwrapped positions: image flags are not expected')
        extra = dict(observables or {})
        unknown = set(extra) - set(f['observables'])
        if unknown:
            raise ValueError(f'undeclared observables {sorted(unknown)}: declare them in observables= at creation')

        start = self._n_frames
        for name, values in data.items():
            dataset = f[name]
            dataset.resize(start + n_new, axis=0)
            dataset[start:] = values
        for name, dataset in f['observables'].items():
            value = extra.get(name, np.nan)
            dataset.resize(start + n_new, axis=0)
            dataset[start:] = np.broadcast_to(np.asarray(value, dtype=float), (n_new,))
        self._n_frames = start + n_new
        f.attrs['n_frames'] = self._n_frames
        self._last_time = float(times[-1])
        self._since_flush += n_new
        if self._since_flush >= self.flush_every:
            self.flush()

    def append_atoms(self, atoms, time_fs: float, *, energy=None, observables=None) -> None:
        """Append an ASE ``Atoms`` frame: (unwrapped) positions, cell and, if stored, velocities in Å/fs."""
        velocities = None
        if 'velocities' in self._file:
            ase_fs = 0.09822694788464063  # ase.units.fs: one fs in ASE time units (CODATA 2014)
            velocities = atoms.get_velocities() * ase_fs
        self.append(
            time_fs,
            atoms.get_positions(),
            np.asarray(atoms.get_cell()),
            velocities=velocities,
            energy=energy,
            observables=observables,
        )

    def flush(self) -> None:
        """Write buffered data to disk."""
        if self._file.id.valid:
            self._file.flush()
        self._since_flush = 0

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_format(f: h5py.File, path) -> None:
    if f.attrs.get('format') != FORMAT:
        raise ValueError(f'{path} is not an {FORMAT} file (root attribute format = {f.attrs.get("format")!r})')
    version = int(f.attrs.get('format_version', 0))
    if version > FORMAT_VERSION:
        raise ValueError(f'{path} has format version {version}; this aiida-ilmlff reads up to {FORMAT_VERSION}')


def _committed_frames(f: h5py.File) -> int:
    lengths = [dataset.shape[0] for dataset in _per_frame_datasets(f)]
    return int(min([int(f.attrs.get('n_frames', min(lengths))), *lengths]))


def _per_frame_datasets(f: h5py.File):
    datasets = [f[name] for name in _PER_FRAME if name in f]
    if 'observables' in f:
        datasets.extend(f['observables'].values())
    return datasets


class TrajectoryReader:
    """Reads an ilmlff HDF5 trajectory by blocks of frames, never all at once unless asked.

    ``len(reader)`` is the number of committed frames; ``reader[i]`` is one frame (arrays without the
    frame axis) and ``reader[a:b:s]`` a :class:`Frames` block; :meth:`iter_chunks` streams.

    :param path: the HDF5 file.
    :raises ValueError: not an ilmlff trajectory or a newer format version.
    """

    def __init__(self, path) -> None:
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'no trajectory file at {self.path}')
        self._file = h5py.File(self.path, 'r')
        try:
            _check_format(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        f = self._file
        self.n_frames = _committed_frames(f)
        self.numbers = f['numbers'][()]
        self.masses = f['masses'][()]
        self.mol_id = f['mol_id'][()]
        self.n_atoms = len(self.numbers)
        self.n_molecules = int(self.mol_id.max()) + 1
        self.molecules = (
            tuple(name.decode() if isinstance(name, bytes) else str(name) for name in f['molecules'][()])
            if 'molecules' in f
            else None
        )
        self.unwrapped = bool(f.attrs['unwrapped'])
        self.has_image = 'image' in f
        self.has_velocities = 'velocities' in f
        self.has_energy = 'energy' in f
        self.dtype = f['positions'].dtype
        self.observable_names = tuple(f['observables']) if 'observables' in f else ()
        self.metadata = {key[5:]: _attr(value) for key, value in f.attrs.items() if key.startswith('meta_')}
        self._time = f['time'][: self.n_frames]

    # -- context and basics -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> TrajectoryReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_frames

    @property
    def time(self) -> np.ndarray:
        """(T,) times in fs."""
        return self._time

    @property
    def symbols(self) -> list[str]:
        """(N,) element symbols."""
        return [chemical_symbols[z] for z in self.numbers]

    def timestep_fs(self, stride: int = 1, start: int = 0, stop: int | None = None) -> float:
        """Time between frames ``start, start + stride, ...`` in fs; ``ValueError`` if uneven (1e-6)."""
        times = self._time[slice(start, stop, stride)]
        if len(times) < 2:
            raise ValueError('need at least two frames to define a timestep')
        steps = np.diff(times)
        if not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
            raise ValueError(
                f'frames of {self.path} are not evenly spaced in time (steps {steps.min():g} to '
                f'{steps.max():g} fs): MSD and correlation functions need a uniform timestep'
            )
        return float(steps[0])

    def cells(self, start: int = 0, stop: int | None = None, stride: int = 1) -> np.ndarray:
        """(T, 3, 3) cells in Å."""
        return self._file['cell'][self.frame_range(start, stop, stride)]

    def volumes(self, start: int = 0, stop: int | None = None, stride: int = 1) -> np.ndarray:
        """(T,) cell volumes in Å^3."""
        return np.atleast_1d(cell_volume(self.cells(start, stop, stride)))

    def observable(self, name: str, start: int = 0, stop: int | None = None, stride: int = 1) -> np.ndarray:
        """(T,) values of a per-frame observable; ``KeyError`` naming the stored ones if absent."""
        if name not in self.observable_names:
            raise KeyError(f'observable {name!r} not in {self.path} (stored: {list(self.observable_names)})')
        return self._file['observables'][name][self.frame_range(start, stop, stride)]

    def frame_range(self, start: int = 0, stop: int | None = None, stride: int = 1) -> slice:
        """The frames ``start:stop:stride`` as a normalised slice (``start``, ``stop`` within the file)."""
        start, stop, stride = slice(start, stop, stride).indices(self.n_frames)
        if stride < 1:
            raise ValueError('stride must be >= 1')
        return slice(start, stop, stride)

    # -- reading frames -----------------------------------------------------------------------------

    def read(
        self,
        start: int = 0,
        stop: int | None = None,
        stride: int = 1,
        fields: Sequence[str] = ('positions', 'cell'),
    ) -> Frames:
        """Read frames ``start:stop:stride`` (all of them in memory: prefer :meth:`iter_chunks`).

        :param fields: any of ``'positions'``, ``'cell'``, ``'velocities'``, ``'energy'``,
            ``'observables'``; time and indices always come.
        :raises ValueError: an unknown or absent field.
        """
        window = self.frame_range(start, stop, stride)
        return self._read(window, fields)

    def _read(self, window: slice, fields) -> Frames:
        f = self._file
        unknown = set(fields) - {'positions', 'cell', 'velocities', 'energy', 'observables'}
        if unknown:
            raise ValueError(f'unknown fields {sorted(unknown)}')
        indices = np.arange(window.start, window.stop, window.step)
        frames = Frames(indices=indices, time=self._time[window])
        cell = None
        if 'cell' in fields or ('positions' in fields and self.has_image):
            cell = f['cell'][window]
        if 'positions' in fields:
            positions = f['positions'][window].astype(np.float64, copy=False)
            if self.has_image:
                positions = positions + np.einsum('tni,tij->tnj', f['image'][window].astype(float), cell)
            frames.positions = positions
        if 'cell' in fields:
            frames.cell = cell
        if 'velocities' in fields:
            if not self.has_velocities:
                raise ValueError(f'{self.path} stores no velocities')
            frames.velocities = f['velocities'][window].astype(np.float64, copy=False)
        if 'energy' in fields:
            if not self.has_energy:
                raise ValueError(f'{self.path} stores no energy')
            frames.energy = f['energy'][window]
        if 'observables' in fields:
            frames.observables = {name: f['observables'][name][window] for name in self.observable_names}
        return frames

    def __getitem__(self, key) -> Frames:
        fields = (
            ('positions', 'cell')
            + (('velocities',) if self.has_velocities else ())
            + (('energy',) if self.has_energy else ())
            + ('observables',)
        )
        if isinstance(key, slice):
            return self._read(self.frame_range(key.start, key.stop, key.step or 1), fields)
        index = int(key)
        if index < 0:
            index += self.n_frames
        if not 0 <= index < self.n_frames:
            raise IndexError(f'frame {key} out of range for {self.n_frames} frames')
        frames = self._read(slice(index, index + 1, 1), fields)
        for name in ('indices', 'time', 'positions', 'cell', 'velocities', 'energy'):
            value = getattr(frames, name)
            if value is not None:
                setattr(frames, name, value[0])
        frames.observables = {name: value[0] for name, value in frames.observables.items()}
        return frames

    def default_chunk_size(self) -> int:
        """Frames per chunk so that one chunk of float64 positions is about 64 MiB."""
        return int(max(1, _READ_CHUNK_BYTES // (self.n_atoms * 3 * 8)))

    def iter_chunks(
        self,
        chunk_size: int | None = None,
        stride: int = 1,
        start: int = 0,
        stop: int | None = None,
        fields: Sequence[str] = ('positions', 'cell'),
    ) -> Iterator[Frames]:
        """Yield :class:`Frames` blocks of at most ``chunk_size`` frames covering ``start:stop:stride``.

        Memory is bounded by one block (default :meth:`default_chunk_size`).
        """
        window = self.frame_range(start, stop, stride)
        chunk_size = self.default_chunk_size() if chunk_size is None else int(chunk_size)
        if chunk_size < 1:
            raise ValueError('chunk_size must be >= 1')
        first = window.start
        span = chunk_size * window.step
        while first < window.stop:
            last = min(first + span, window.stop)
            yield self._read(slice(first, last, window.step), fields)
            first = last

    # -- selections ---------------------------------------------------------------------------------

    def species_groups(self) -> dict[str, np.ndarray]:
        """``{species: molecule ids}``; ``ValueError`` if the file names no species."""
        if self.molecules is None:
            raise ValueError(f'{self.path} has no /molecules dataset: species cannot be selected by name')
        return species_groups(self.molecules)

    def select_molecules(self, selection) -> np.ndarray:
        """Molecule ids of a species name (``'TFSI'``) or an explicit id array.

        :raises ValueError: a species absent from the trajectory, or ids out of range.
        """
        if isinstance(selection, str):
            groups = self.species_groups()
            if selection not in groups:
                raise ValueError(
                    f'species {selection!r} is not in the trajectory {self.path.name} (species: {sorted(groups)})'
                )
            return groups[selection]
        ids = np.asarray(selection, dtype=np.int64).ravel()
        if len(ids) == 0 or ids.min() < 0 or ids.max() >= self.n_molecules:
            raise ValueError(f'molecule ids must be a non-empty selection of 0 .. {self.n_molecules - 1}')
        return ids

    def select_atoms(self, selection) -> np.ndarray:
        """Atom indices of a selection.

        Selections: an index array; ``'TFSI'`` (all atoms of a species); ``'Li'`` (an element symbol,
        when no species has that name); ``'TFSI:O'`` (element O within TFSI molecules); ``'TFSI:*'``.

        :raises ValueError: a species or element absent from the trajectory (named in the message).
        """
        if not isinstance(selection, str):
            atoms = np.asarray(selection, dtype=np.int64).ravel()
            if len(atoms) == 0 or atoms.min() < 0 or atoms.max() >= self.n_atoms:
                raise ValueError(f'atom indices must be a non-empty selection of 0 .. {self.n_atoms - 1}')
            return atoms
        species, _, element = selection.partition(':')
        species_known = self.molecules is not None and species in set(self.molecules)
        if element:
            mask = np.isin(self.mol_id, self.select_molecules(species))
            if element != '*':
                mask &= self.numbers == self._atomic_number(element, selection)
        elif species_known:
            mask = np.isin(self.mol_id, self.select_molecules(species))
        elif species in chemical_symbols[1:]:
            mask = self.numbers == self._atomic_number(species, selection)
        else:
            known = sorted(set(self.molecules or ()))
            raise ValueError(
                f'selection {selection!r} names no species (trajectory species: {known}) and no element symbol'
            )
        atoms = np.nonzero(mask)[0]
        if len(atoms) == 0:
            raise ValueError(f'selection {selection!r} matches no atom in {self.path.name}')
        return atoms

    def _atomic_number(self, symbol: str, selection: str) -> int:
        if symbol not in chemical_symbols[1:]:
            raise ValueError(f'{symbol!r} in selection {selection!r} is not an element symbol')
        return chemical_symbols.index(symbol)

    def require_unwrapped(self) -> None:
        """Raise :class:`WrappedCoordinatesError` if the file holds wrapped positions without image flags."""
        if not self.unwrapped and not self.has_image:
            raise WrappedCoordinatesError(
                f'{self.path} stores wrapped positions and no image flags: unwrapped coordinates are needed '
                '(write them with TrajectoryWriter(unwrapped=True) or store image flags)'
            )


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
