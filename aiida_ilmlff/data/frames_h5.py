"""The HDF5 layout of a frame set (one file; h5py; nothing pickled). No AiiDA.

Layout (format ``ilmlff.frames``, version 1); ``N`` frames, ``T`` atoms in all::

    /                  attrs: format, version, n_frames, n_atoms_total
    /offsets           (N+1,) int64     atoms of frame i are rows offsets[i]:offsets[i+1]
    /numbers           (T,)   uint8     atomic numbers
    /positions         (T,3)  float64   Å
    /cells             (N,3,3) float64  Å, row vectors
    /pbc               (N,3)  bool
    /energy            (N,)   float64   eV, nan if missing              (optional)
    /forces            (T,3)  float64   eV/Å, nan rows if missing       (optional)
    /stress            (N,3,3) float64  eV/Å^3, ASE sign, nan if missing (optional)
    /velocities        (T,3)  float64   Å/fs, nan rows if missing        (optional)
    /mol_id            (T,)   int16/int32, -1 if unknown                 (optional)
    /masks/{energy,forces,stress,velocities}  (N,) bool  which frames have the label
    /meta/origin, iteration (int64), temperature (float64, K)
    /meta/{origin,perturbation,source,level_of_theory,molecules}/values (vlen str) + /codes (int32)

Every array dataset carries a ``units`` attribute. String columns are stored as categories (unique values
plus one code per frame), so repeated fingerprints and origins cost four bytes a frame.
The file is written deterministically (no object timestamps, default HDF5 format version), so equal
frames give equal bytes and an equal ``sha256`` attribute.
"""

from __future__ import annotations

import typing as t

import h5py
import numpy as np

from .frame_arrays import PER_FRAME_STRING_KEYS, FrameArrays

__all__ = ('FORMAT', 'VERSION', 'read_arrays', 'read_field', 'read_frame_rows', 'read_masks', 'write_arrays')

FORMAT = 'ilmlff.frames'
VERSION = 1

UNITS = {
    'offsets': '',
    'numbers': '',
    'positions': 'angstrom',
    'cells': 'angstrom',
    'pbc': '',
    'energy': 'eV',
    'forces': 'eV/angstrom',
    'stress': 'eV/angstrom^3',
    'velocities': 'angstrom/fs',
    'mol_id': '',
}
OPTIONAL = ('energy', 'forces', 'stress', 'velocities', 'mol_id')
MASKED = ('energy', 'forces', 'stress', 'velocities')
CATEGORICAL = ('origin', *PER_FRAME_STRING_KEYS)
PER_ATOM = ('numbers', 'positions', 'forces', 'velocities', 'mol_id')


def _smallest_signed(values: np.ndarray) -> np.dtype:
    if values.size == 0:
        return np.dtype(np.int16)
    low, high = int(values.min()), int(values.max())
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def write_arrays(target: t.Any, arrays: FrameArrays) -> None:
    """Write ``arrays`` to ``target`` (a path or a writable binary file object) in the layout above."""
    string_dtype = h5py.string_dtype('utf-8')
    with h5py.File(target, 'w') as h5:
        h5.attrs['format'] = FORMAT
        h5.attrs['version'] = VERSION
        h5.attrs['n_frames'] = arrays.n_frames
        h5.attrs['n_atoms_total'] = int(arrays.offsets[-1])

        def put(name: str, value: np.ndarray, dtype: t.Any = None) -> None:
            dataset = h5.create_dataset(
                name, data=value if dtype is None else value.astype(dtype, copy=False), track_times=False
            )
            dataset.attrs['units'] = UNITS[name]

        put('offsets', arrays.offsets, np.int64)
        put('numbers', arrays.numbers, np.uint8)
        put('positions', arrays.positions, np.float64)
        put('cells', arrays.cells, np.float64)
        put('pbc', arrays.pbc, bool)
        for name in OPTIONAL:
            value = getattr(arrays, name)
            if value is None:
                continue
            put(name, value, _smallest_signed(value) if name == 'mol_id' else np.float64)
        masks = h5.create_group('masks')
        for name in MASKED:
            masks.create_dataset(name, data=arrays.mask(name), track_times=False)
        meta = h5.create_group('meta')
        meta.create_dataset('iteration', data=arrays.iteration.astype(np.int64), track_times=False)
        meta.create_dataset('temperature', data=arrays.temperature.astype(np.float64), track_times=False).attrs[
            'units'
        ] = 'K'
        for name in CATEGORICAL:
            values, codes = np.unique(np.asarray(getattr(arrays, name), dtype=str), return_inverse=True)
            group = meta.create_group(name)
            group.create_dataset('values', data=values.astype(object), dtype=string_dtype, track_times=False)
            group.create_dataset('codes', data=codes.astype(np.int32), track_times=False)


def _check(h5: h5py.File) -> None:
    if h5.attrs.get('format') != FORMAT:
        raise ValueError(f'not an {FORMAT} file (format attribute {h5.attrs.get("format")!r})')
    version = int(h5.attrs.get('version', -1))
    if version > VERSION:
        raise ValueError(f'{FORMAT} file version {version} is newer than this plugin reads ({VERSION})')


def _read_categorical(h5: h5py.File, name: str) -> np.ndarray:
    group = h5['meta'][name]
    values = np.array([v.decode('utf-8') if isinstance(v, bytes) else v for v in group['values'][()]], dtype=object)
    return values[group['codes'][()]] if len(values) else np.full(len(group['codes']), '', dtype=object)


def read_arrays(source: t.Any) -> FrameArrays:
    """Read every array of the file ``source`` (a path or a readable, seekable binary file object).

    :raises ValueError: if the file is not a frame-set file or is newer than this reader.
    """
    with h5py.File(source, 'r') as h5:
        _check(h5)
        fields: dict[str, t.Any] = {}
        for name in ('offsets', 'numbers', 'positions', 'cells', 'pbc', *OPTIONAL):
            fields[name] = h5[name][()] if name in h5 else None
        fields['numbers'] = fields['numbers'].astype(np.int64)
        if fields['mol_id'] is not None:
            fields['mol_id'] = fields['mol_id'].astype(np.int64)
        fields['pbc'] = fields['pbc'].astype(bool)
        fields['iteration'] = h5['meta']['iteration'][()]
        fields['temperature'] = h5['meta']['temperature'][()]
        for name in CATEGORICAL:
            fields[name] = _read_categorical(h5, name)
    return FrameArrays(**fields)


def read_masks(source: t.Any) -> dict[str, np.ndarray]:
    """Per-frame label masks ``{'energy', 'forces', 'stress', 'velocities'}`` -> ``(N,)`` bool, cheaply."""
    with h5py.File(source, 'r') as h5:
        _check(h5)
        return {name: h5['masks'][name][()].astype(bool) for name in MASKED}


def read_field(source: t.Any, name: str) -> np.ndarray | None:
    """One array (``positions``, ``energy``, ``origin``, ``iteration``...) of the file; ``None`` if absent."""
    with h5py.File(source, 'r') as h5:
        _check(h5)
        if name in CATEGORICAL:
            return _read_categorical(h5, name)
        if name in ('iteration', 'temperature'):
            return h5['meta'][name][()]
        if name not in h5:
            return None
        value = h5[name][()]
        if name in ('numbers', 'mol_id'):
            value = value.astype(np.int64)
        return value.astype(bool) if name == 'pbc' else value


def read_frame_rows(source: t.Any, name: str, start: int, stop: int) -> np.ndarray | None:
    """Rows ``start:stop`` of one array (a partial read; per-atom or per-frame); ``None`` if absent."""
    with h5py.File(source, 'r') as h5:
        _check(h5)
        if name not in h5:
            return None
        value = h5[name][start:stop]
        if name in ('numbers', 'mol_id'):
            value = value.astype(np.int64)
        return value.astype(bool) if name == 'pbc' else value
