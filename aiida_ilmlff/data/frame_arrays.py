"""Ragged arrays of atomic frames: the in-memory form of :class:`~aiida_ilmlff.data.frames.FramesData`.

Nothing here imports AiiDA, so the same container serves the node, the file formats and the compute-node
runners. Frames may differ in their number of atoms: per-atom arrays of all frames are concatenated along
the first axis and ``offsets`` (``n_frames + 1`` integers) delimit them, so atoms of frame ``i`` are rows
``offsets[i]:offsets[i + 1]``.

Units: positions and cells in Å, energy in eV, forces in eV/Å, stress in eV/Å^3 (ASE sign convention:
``stress = (1/V) dE/d(strain)``, positive under tension), velocities in Å/fs, temperature in K.

Missing labels are explicit: a frame without an energy has ``energy[i] = nan``; a frame without forces
(stress, velocities) has all its rows of ``forces`` (``stress[i]``, ``velocities``) set to ``nan``. A frame
is either fully labelled for a quantity or not at all; partially non-finite values are rejected.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing as t
from collections.abc import Mapping, Sequence

import numpy as np

from aiida_ilmlff.common.compositions import composition_keys_of_frames

__all__ = ('ORIGINS', 'PER_FRAME_STRING_KEYS', 'FrameArrays')

#: The allowed values of the per-frame ``origin``: equilibrium MD snapshots, perturbed (non-equilibrium)
#: frames, frames picked by active learning, and frames imported from elsewhere.
ORIGINS = ('EQ', 'nEQ', 'AL', 'import')

#: Per-frame string metadata ('' means "none").
PER_FRAME_STRING_KEYS = ('perturbation', 'source', 'level_of_theory', 'molecules')

#: Optional per-atom float arrays with three columns (``None`` when no frame has them).
PER_ATOM_LABELS = ('forces', 'velocities')

_MAX_Z = 118


def _as_float_array(name: str, value: t.Any) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'`{name}` must be numeric: {exc}') from exc


def _decoded(name: str, value: t.Any, index: int) -> t.Any:
    """``value`` itself, or the object a JSON string ``value`` encodes (``ValueError`` naming the frame if invalid)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f'`{name}` of frame {index} is not valid JSON: {exc}') from exc


def _canonical_json_object(name: str, value: t.Any, index: int) -> str:
    """Return ``value`` (a dict or a JSON string of an object, '' or None for none) as canonical JSON."""
    if value is None or (isinstance(value, str) and value == ''):
        return ''
    value = _decoded(name, value, index)
    if not isinstance(value, Mapping):
        raise ValueError(f'`{name}` of frame {index} must be a dict (JSON object), got {type(value).__name__}')
    try:
        return json.dumps(dict(value), sort_keys=True)
    except TypeError as exc:
        raise ValueError(f'`{name}` of frame {index} is not JSON serializable: {exc}') from exc


def _canonical_json_list(name: str, value: t.Any, index: int) -> str:
    """Return ``value`` (a list of str or a JSON string of one, '' or None for none) as JSON."""
    if value is None or (isinstance(value, str) and value == ''):
        return ''
    value = _decoded(name, value, index)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise ValueError(f'`{name}` of frame {index} must be a list of str (one ion name per molecule)')
    return json.dumps(list(value))


def _normalise_string(key: str, value: t.Any, index: int) -> str:
    if key == 'perturbation':
        return _canonical_json_object(key, value, index)
    if key == 'molecules':
        return _canonical_json_list(key, value, index)
    if value is None:
        return ''
    if not isinstance(value, str):
        raise ValueError(f'`{key}` of frame {index} must be a str, got {type(value).__name__}')
    return value


def _per_frame_values(name: str, value: t.Any, n_frames: int) -> list:
    """Broadcast a scalar to ``n_frames`` values or check the length of a sequence."""
    if not isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return [value] * n_frames
    if name == 'molecules' and all(isinstance(v, str) for v in value):
        if not all(v == '' or v.lstrip().startswith('[') for v in value):
            return [list(value)] * n_frames  # one list of ion names shared by every frame
    values = list(value)
    if len(values) != n_frames:
        raise ValueError(f'`{name}` has {len(values)} values for {n_frames} frames')
    return values


def _frame_is_complete(name: str, finite_per_frame: np.ndarray, all_per_frame: np.ndarray) -> np.ndarray:
    """Per-frame mask from "any finite" / "all finite" reductions, rejecting partially filled frames."""
    partial = finite_per_frame & ~all_per_frame
    if partial.any():
        frames = np.flatnonzero(partial)[:10].tolist()
        raise ValueError(f'`{name}` of frames {frames} are partially non-finite: a frame has all or none')
    return all_per_frame


@dataclasses.dataclass(eq=False)
class FrameArrays:
    """The frames of a data set as concatenated (ragged) numpy arrays; see the module docstring for units.

    ``T`` is the total number of atoms over the ``N`` frames. Build one with :meth:`build` (which
    normalises and validates) rather than with the constructor.
    """

    numbers: np.ndarray  # (T,) int64 atomic numbers
    positions: np.ndarray  # (T, 3) float64 Å
    offsets: np.ndarray  # (N + 1,) int64, offsets[0] = 0, offsets[-1] = T
    cells: np.ndarray  # (N, 3, 3) float64 Å, row vectors
    pbc: np.ndarray  # (N, 3) bool
    origin: np.ndarray  # (N,) str, one of ORIGINS
    iteration: np.ndarray  # (N,) int64, -1 if none
    temperature: np.ndarray  # (N,) float64 K, nan if none
    perturbation: np.ndarray  # (N,) object str, canonical JSON object or ''
    source: np.ndarray  # (N,) object str, uuid or ''
    level_of_theory: np.ndarray  # (N,) object str, fingerprint or ''
    molecules: np.ndarray  # (N,) object str, JSON list of ion names or ''
    energy: np.ndarray | None = None  # (N,) float64 eV, nan if missing
    forces: np.ndarray | None = None  # (T, 3) float64 eV/Å, nan rows if missing
    stress: np.ndarray | None = None  # (N, 3, 3) float64 eV/Å^3, nan if missing
    velocities: np.ndarray | None = None  # (T, 3) float64 Å/fs, nan rows if missing
    mol_id: np.ndarray | None = None  # (T,) int64 molecule index per atom, -1 if unknown

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        numbers: t.Any,
        positions: t.Any,
        cells: t.Any = None,
        pbc: t.Any = True,
        *,
        n_atoms: t.Any = None,
        energy: t.Any = None,
        forces: t.Any = None,
        stress: t.Any = None,
        velocities: t.Any = None,
        mol_id: t.Any = None,
        origin: t.Any = 'import',
        iteration: t.Any = -1,
        temperature: t.Any = math.nan,
        perturbation: t.Any = '',
        source: t.Any = '',
        level_of_theory: t.Any = '',
        molecules: t.Any = '',
    ) -> FrameArrays:
        """Normalise and validate frame arrays given in any of the accepted layouts.

        Per-atom arrays (``positions``, ``forces``, ``velocities``; ``numbers`` and ``mol_id`` without the
        last axis) are accepted as a uniform array ``(N, n, 3)``, as a list of ``N`` arrays ``(n_i, 3)``, or
        concatenated ``(T, 3)`` together with ``n_atoms`` (``N`` atom counts). ``numbers`` may also be a
        single ``(n,)`` array shared by all frames of equal size. ``cells``: ``(3, 3)`` shared or ``(N, 3, 3)``
        (``None``: zero cell, for molecules). ``pbc``: bool, ``(3,)`` or ``(N, 3)``. ``stress``: ``(N, 3, 3)``
        or Voigt ``(N, 6)`` in ASE order (xx, yy, zz, yz, xz, xy). Per-frame metadata: a scalar for all
        frames or a sequence of ``N``; ``perturbation`` entries are dicts or JSON strings of objects,
        ``molecules`` entries lists of ion names.

        :raises ValueError: on a shape mismatch, a non-finite position or cell, an unknown origin, an invalid
            atomic number, a partially labelled frame, or an empty data set.
        """
        positions_list = None
        if isinstance(positions, (list, tuple)):
            positions_list = [_as_float_array('positions', p) for p in positions]
            if any(p.ndim != 2 or p.shape[1:] != (3,) for p in positions_list):
                raise ValueError('each frame of `positions` must have shape (n_atoms, 3)')
            counts = np.array([len(p) for p in positions_list], dtype=np.int64)
            flat_positions = np.concatenate(positions_list) if positions_list else np.zeros((0, 3), dtype=np.float64)
        else:
            positions = _as_float_array('positions', positions)
            if positions.ndim == 3 and positions.shape[2] == 3:
                if n_atoms is not None:
                    raise ValueError('`n_atoms` is only for concatenated (T, 3) positions')
                counts = np.full(positions.shape[0], positions.shape[1], dtype=np.int64)
                flat_positions = positions.reshape(-1, 3)
            elif positions.ndim == 2 and positions.shape[1] == 3:
                if n_atoms is None:
                    raise ValueError('concatenated (T, 3) `positions` need `n_atoms` (atoms per frame)')
                counts = np.asarray(n_atoms, dtype=np.int64).reshape(-1)
                flat_positions = positions
            else:
                raise ValueError(f'`positions` must be (N, n, 3), (T, 3) or a list of (n_i, 3); got {positions.shape}')
        n_frames = len(counts)
        if n_frames == 0:
            raise ValueError('a frame set needs at least one frame')
        if (counts <= 0).any():
            raise ValueError(f'every frame needs at least one atom; frames {np.flatnonzero(counts <= 0)[:10].tolist()}')
        offsets = np.zeros(n_frames + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        total = int(offsets[-1])
        if len(flat_positions) != total:
            raise ValueError(f'`positions` has {len(flat_positions)} rows but `n_atoms` sums to {total}')

        def per_atom(name: str, value: t.Any, width: int | None, dtype: type) -> np.ndarray | None:
            if value is None:
                return None
            shape_tail = () if width is None else (width,)
            if isinstance(value, (list, tuple)) and len(value) == n_frames and np.ndim(value[0]) >= 1:
                frames = [np.asarray(v, dtype=dtype) for v in value]
                for i, (frame, count) in enumerate(zip(frames, counts)):
                    if frame.shape != (count, *shape_tail):
                        raise ValueError(
                            f'`{name}` of frame {i} has shape {frame.shape}, expected {(count, *shape_tail)}'
                        )
                return np.concatenate(frames)
            array = np.asarray(value, dtype=dtype)
            if array.shape == (total, *shape_tail):
                return array
            if array.ndim == 2 + len(shape_tail) and array.shape[0] == n_frames:
                if not (counts == array.shape[1]).all() or array.shape[2:] != shape_tail:
                    raise ValueError(
                        f'`{name}` has shape {array.shape}; frames have {sorted(set(counts.tolist()))} atoms'
                    )
                return array.reshape(total, *shape_tail)
            if name in ('numbers', 'mol_id') and array.ndim == 1 and (counts == len(array)).all():
                return np.tile(array, n_frames)
            raise ValueError(
                f'`{name}` has shape {array.shape}; expected {(total, *shape_tail)} (concatenated), '
                f'{(n_frames, int(counts[0]), *shape_tail)} or a list of per-frame arrays'
            )

        numbers_array = per_atom('numbers', numbers, None, np.int64)
        if numbers_array is None:
            raise ValueError('`numbers` (atomic numbers) are required')
        forces_array = per_atom('forces', forces, 3, np.float64)
        velocities_array = per_atom('velocities', velocities, 3, np.float64)
        mol_id_array = per_atom('mol_id', mol_id, None, np.int64)

        if cells is None:
            cells_array = np.zeros((n_frames, 3, 3), dtype=np.float64)
        else:
            cells_array = _as_float_array('cells', cells)
            if cells_array.shape == (3, 3):
                cells_array = np.broadcast_to(cells_array, (n_frames, 3, 3)).copy()
            elif cells_array.shape != (n_frames, 3, 3):
                raise ValueError(f'`cells` must be (3, 3) or ({n_frames}, 3, 3); got {cells_array.shape}')

        pbc_array = np.asarray(pbc, dtype=bool)
        if pbc_array.shape in ((), (3,)):
            pbc_array = np.broadcast_to(pbc_array, (n_frames, 3)).copy()
        elif pbc_array.shape != (n_frames, 3):
            raise ValueError(f'`pbc` must be a bool, (3,) or ({n_frames}, 3); got {pbc_array.shape}')

        energy_array = None
        if energy is not None:
            energy_array = _as_float_array(
                'energy',
                [math.nan if e is None else e for e in energy] if isinstance(energy, (list, tuple)) else energy,
            ).reshape(-1)
            if energy_array.shape != (n_frames,):
                raise ValueError(f'`energy` has {energy_array.size} values for {n_frames} frames')

        stress_array = None
        if stress is not None:
            stress_array = _as_float_array('stress', stress)
            if stress_array.shape == (n_frames, 6):
                xx, yy, zz, yz, xz, xy = stress_array.T
                stress_array = np.stack(
                    [np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1), np.stack([xz, yz, zz], -1)], 1
                )
            elif stress_array.shape != (n_frames, 3, 3):
                raise ValueError(f'`stress` must be ({n_frames}, 3, 3) or ({n_frames}, 6); got {stress_array.shape}')

        origins = _per_frame_values('origin', origin, n_frames)
        unknown = sorted({str(o) for o in origins if o not in ORIGINS})
        if unknown:
            raise ValueError(f'unknown origin {unknown}: allowed are {list(ORIGINS)}')
        iterations = [(-1 if v is None else v) for v in _per_frame_values('iteration', iteration, n_frames)]
        temperatures = [(math.nan if v is None else v) for v in _per_frame_values('temperature', temperature, n_frames)]
        strings = {}
        for key, value in (
            ('perturbation', perturbation),
            ('source', source),
            ('level_of_theory', level_of_theory),
            ('molecules', molecules),
        ):
            values = _per_frame_values(key, value, n_frames)
            strings[key] = np.array([_normalise_string(key, v, i) for i, v in enumerate(values)], dtype=object)

        try:
            iteration_array = np.array(iterations, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f'`iteration` must be integers: {exc}') from exc
        if not np.array_equal(iteration_array, np.asarray(iterations, dtype=np.float64)):
            raise ValueError('`iteration` must be integers')

        arrays = cls(
            numbers=numbers_array,
            positions=flat_positions,
            offsets=offsets,
            cells=cells_array,
            pbc=pbc_array,
            origin=np.array(origins, dtype=object),
            iteration=iteration_array,
            temperature=_as_float_array('temperature', temperatures),
            energy=energy_array,
            forces=forces_array,
            stress=stress_array,
            velocities=velocities_array,
            mol_id=mol_id_array,
            **strings,
        )
        arrays.validate()
        return arrays

    # ------------------------------------------------------------------ checks and summaries

    @property
    def n_frames(self) -> int:
        """Number of frames ``N``."""
        return len(self.offsets) - 1

    @property
    def n_atoms(self) -> np.ndarray:
        """Atoms per frame, shape ``(N,)`` int64."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.n_frames

    def _reduce_frames(self, per_atom: np.ndarray, how: str) -> np.ndarray:
        """Reduce a per-atom bool array over each frame (``how`` is ``any`` or ``all``)."""
        ufunc = np.logical_or if how == 'any' else np.logical_and
        return ufunc.reduceat(per_atom, self.offsets[:-1]).astype(bool)

    def validate(self) -> None:
        """Check shapes, dtypes and values.

        :raises ValueError: with the name of the offending array and frames.
        """
        n, total = self.n_frames, int(self.offsets[-1]) if len(self.offsets) else 0
        if n < 1:
            raise ValueError('a frame set needs at least one frame')
        if self.offsets[0] != 0 or (np.diff(self.offsets) <= 0).any():
            raise ValueError('`offsets` must start at 0 and increase strictly')
        expected = {
            'numbers': (total,),
            'positions': (total, 3),
            'cells': (n, 3, 3),
            'pbc': (n, 3),
            'origin': (n,),
            'iteration': (n,),
            'temperature': (n,),
            'energy': (n,),
            'forces': (total, 3),
            'stress': (n, 3, 3),
            'velocities': (total, 3),
            'mol_id': (total,),
            **{key: (n,) for key in PER_FRAME_STRING_KEYS},
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f'`{name}` has shape {value.shape}, expected {shape}')
        if ((self.numbers < 1) | (self.numbers > _MAX_Z)).any():
            bad = sorted(set(self.numbers[(self.numbers < 1) | (self.numbers > _MAX_Z)].tolist()))[:10]
            raise ValueError(f'invalid atomic numbers {bad}')
        for name in ('positions', 'cells'):
            finite = np.isfinite(getattr(self, name))
            if not finite.all():
                rows = np.flatnonzero(~finite.reshape(len(finite), -1).all(axis=1))
                frames = rows if name == 'cells' else np.searchsorted(self.offsets, rows, side='right') - 1
                raise ValueError(f'non-finite `{name}` in frames {sorted(set(frames.tolist()))[:10]}')
        if self.energy is not None and np.isinf(self.energy).any():
            raise ValueError(f'infinite `energy` in frames {np.flatnonzero(np.isinf(self.energy))[:10].tolist()}')
        for name in PER_ATOM_LABELS:
            value = getattr(self, name)
            if value is not None:
                if np.isinf(value).any():
                    raise ValueError(f'infinite `{name}` values')
                finite = np.isfinite(value).all(axis=1)
                _frame_is_complete(name, self._reduce_frames(finite, 'any'), self._reduce_frames(finite, 'all'))
        if self.stress is not None:
            if np.isinf(self.stress).any():
                raise ValueError('infinite `stress` values')
            finite = np.isfinite(self.stress).reshape(n, 9)
            _frame_is_complete('stress', finite.any(axis=1), finite.all(axis=1))
        unknown = sorted(set(self.origin.tolist()) - set(ORIGINS))
        if unknown:
            raise ValueError(f'unknown origin {unknown}: allowed are {list(ORIGINS)}')
        if (self.iteration < -1).any():
            raise ValueError('`iteration` must be >= 0, or -1 for none')
        if (np.isinf(self.temperature) | (self.temperature < 0)).any():
            raise ValueError('`temperature` must be finite and >= 0 K, or nan for none')
        if self.mol_id is not None and (self.mol_id < -1).any():
            raise ValueError('`mol_id` must be >= 0, or -1 for unknown')

    def mask(self, name: str) -> np.ndarray:
        """Per-frame bool mask ``(N,)``: which frames have ``name`` (energy, forces, stress, velocities)."""
        value = getattr(self, name)
        if value is None:
            return np.zeros(self.n_frames, dtype=bool)
        if name == 'energy':
            return np.isfinite(value)
        if name == 'stress':
            return np.isfinite(value).reshape(self.n_frames, 9).all(axis=1)
        if name in PER_ATOM_LABELS:
            return self._reduce_frames(np.isfinite(value).all(axis=1), 'all')
        raise ValueError(f'no mask for `{name}`')

    def mol_id_mask(self) -> np.ndarray:
        """Per-frame bool mask ``(N,)``: which frames have molecule indices (not all -1)."""
        if self.mol_id is None:
            return np.zeros(self.n_frames, dtype=bool)
        return self._reduce_frames(self.mol_id >= 0, 'any')

    def summary(self) -> dict[str, t.Any]:
        """The queryable summary (JSON-serialisable) stored as attributes of ``FramesData``."""
        from ase.data import chemical_symbols

        labelled = self.mask('energy') & self.mask('forces')
        stress = self.mask('stress')
        origin_counts = {o: int((self.origin == o).sum()) for o in ORIGINS if (self.origin == o).any()}
        return {
            'n_frames': self.n_frames,
            'n_atoms': sorted(set(self.n_atoms.tolist())),
            'n_atoms_total': int(self.offsets[-1]),
            'elements': sorted(chemical_symbols[z] for z in np.unique(self.numbers).tolist()),
            'origin_counts': origin_counts,
            'labelled': bool(labelled.all()),
            'n_labelled': int(labelled.sum()),
            'has_stress': bool(stress.any()),
            'n_stress': int(stress.sum()),
            'level_of_theory': sorted({lot for lot in self.level_of_theory.tolist() if lot}),
            'compositions': sorted({key for key in self.composition_keys() if key}),
        }

    def composition_keys(self) -> list[str]:
        """Per frame: its composition key (:func:`aiida_ilmlff.common.composition_key`), '' if its molecules are
        not known."""
        return composition_keys_of_frames(self.molecules.tolist())

    # ------------------------------------------------------------------ transforms

    def atom_slice(self, i: int) -> slice:
        """Rows of the per-atom arrays that belong to frame ``i``."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def select(self, indices: t.Any) -> FrameArrays:
        """A new ``FrameArrays`` with frames ``indices`` (ints, negative allowed, repeats allowed, or a bool mask).

        :raises IndexError: for an out-of-range index. :raises ValueError: if the selection is empty.
        """
        if not isinstance(indices, slice):
            indices = np.asarray(indices)
            if indices.size == 0:
                raise ValueError('the selection is empty: a frame set needs at least one frame')
            if indices.dtype.kind not in 'iub':
                raise IndexError(f'frame indices must be integers or a bool mask, got dtype {indices.dtype}')
        index = np.atleast_1d(np.arange(self.n_frames)[indices]).astype(np.int64)
        if index.size == 0:
            raise ValueError('the selection is empty: a frame set needs at least one frame')
        counts = self.n_atoms[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        atoms = np.repeat(self.offsets[index] - offsets[:-1], counts) + np.arange(offsets[-1])
        fields = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == 'offsets' or value is None:
                continue
            per_atom = field.name in ('numbers', 'positions', 'forces', 'velocities', 'mol_id')
            fields[field.name] = value[atoms] if per_atom else value[index]
        return type(self)(offsets=offsets, **fields)

    @classmethod
    def concatenate(cls, parts: Sequence[FrameArrays]) -> FrameArrays:
        """Join frame sets in order; optional arrays absent from some parts are filled as missing.

        :raises ValueError: if ``parts`` is empty.
        """
        if not parts:
            raise ValueError('nothing to concatenate')
        fields = {}
        for field in dataclasses.fields(cls):
            name = field.name
            if name == 'offsets':
                continue
            values = [getattr(p, name) for p in parts]
            if all(v is None for v in values):
                fields[name] = None
                continue
            filled = []
            for part, value in zip(parts, values):
                if value is None:
                    per_atom = name in ('forces', 'velocities', 'mol_id')
                    length = int(part.offsets[-1]) if per_atom else part.n_frames
                    shape = {'forces': (length, 3), 'velocities': (length, 3), 'stress': (length, 3, 3)}.get(
                        name, (length,)
                    )
                    value = np.full(shape, -1, dtype=np.int64) if name == 'mol_id' else np.full(shape, np.nan)
                filled.append(value)
            fields[name] = np.concatenate(filled)
        offsets = np.concatenate([[0], np.cumsum(np.concatenate([p.n_atoms for p in parts]))]).astype(np.int64)
        return cls(offsets=offsets, **fields)

    def with_labels(
        self,
        energy: t.Any,
        forces: t.Any,
        stress: t.Any = None,
        *,
        level_of_theory: t.Any,
    ) -> FrameArrays:
        """A copy with new labels; ``nan`` entries mark frames left unlabelled.

        :param energy: ``(N,)`` eV. :param forces: ``(T, 3)``, ``(N, n, 3)`` or list of ``(n_i, 3)``, eV/Å.
        :param stress: ``(N, 3, 3)`` or ``(N, 6)`` eV/Å^3, or ``None`` to drop stress.
        :param level_of_theory: fingerprint for all frames, or ``N`` fingerprints; set on frames that get an
            energy, '' elsewhere.
        :raises ValueError: as :meth:`build`.
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.pop('offsets')
        for key in ('energy', 'forces', 'stress', 'level_of_theory'):
            fields.pop(key)
        new = type(self).build(
            n_atoms=self.n_atoms,
            energy=energy,
            forces=forces,
            stress=stress,
            level_of_theory=level_of_theory,
            **fields,
        )
        new.level_of_theory = np.where(new.mask('energy'), new.level_of_theory, '').astype(object)
        return new

    # ------------------------------------------------------------------ ASE

    @classmethod
    def from_ase(cls, images: t.Iterable, **overrides: t.Any) -> FrameArrays:
        """Read a sequence of :class:`ase.Atoms` (see :meth:`FramesData.from_ase` for the conventions).

        ``overrides`` (``origin``, ``iteration``, ``temperature``, ``perturbation``, ``source``,
        ``level_of_theory``), when not ``None``, replace the per-frame values read from ``atoms.info``.
        """
        from ase import units
        from ase.stress import voigt_6_to_full_3x3_stress

        images = list(images)
        if not images:
            raise ValueError('a frame set needs at least one frame')
        n = len(images)
        total = sum(len(a) for a in images)
        has = {
            'energy': np.zeros(n, bool),
            'forces': np.zeros(n, bool),
            'stress': np.zeros(n, bool),
            'velocities': np.zeros(n, bool),
            'mol_id': np.zeros(n, bool),
        }
        energy = np.full(n, np.nan)
        stress = np.full((n, 3, 3), np.nan)
        forces = np.full((total, 3), np.nan)
        velocities = np.full((total, 3), np.nan)
        mol_id = np.full(total, -1, dtype=np.int64)
        positions, numbers, cells, pbc = [], [], np.zeros((n, 3, 3)), np.zeros((n, 3), bool)
        metadata: dict[str, list] = {key: [] for key in ('origin', 'iteration', 'temperature', *PER_FRAME_STRING_KEYS)}
        defaults = {'origin': 'import', 'iteration': -1, 'temperature': math.nan}
        start = 0
        for i, atoms in enumerate(images):
            count = len(atoms)
            rows = slice(start, start + count)
            start += count
            positions.append(atoms.positions)
            numbers.append(atoms.numbers)
            cells[i] = atoms.cell.array
            pbc[i] = atoms.pbc
            results = getattr(atoms.calc, 'results', None) or {}
            if results and hasattr(atoms.calc, 'check_state'):
                changed = atoms.calc.check_state(atoms)
                if changed:
                    raise ValueError(
                        f'frame {i}: the calculator results are stale (the atoms changed since: {changed}); '
                        'attach a SinglePointCalculator to the final atoms'
                    )
            if results.get('energy') is not None:
                energy[i] = float(results['energy'])
                has['energy'][i] = True
            if results.get('forces') is not None:
                forces[rows] = results['forces']
                has['forces'][i] = True
            if results.get('stress') is not None:
                value = np.asarray(results['stress'], dtype=float)
                stress[i] = voigt_6_to_full_3x3_stress(value) if value.shape == (6,) else value
                has['stress'][i] = True
            if 'momenta' in atoms.arrays:
                velocities[rows] = atoms.get_velocities() * units.fs
                has['velocities'][i] = True
            if 'mol_id' in atoms.arrays:
                mol_id[rows] = atoms.arrays['mol_id']
                has['mol_id'][i] = True
            for key, values in metadata.items():
                value = overrides.get(key)
                if value is None:
                    value = atoms.info.get(key, defaults.get(key, ''))
                values.append(value)
        return cls.build(
            numbers,
            positions,
            cells,
            pbc,
            energy=energy if has['energy'].any() else None,
            forces=forces if has['forces'].any() else None,
            stress=stress if has['stress'].any() else None,
            velocities=velocities if has['velocities'].any() else None,
            mol_id=mol_id if has['mol_id'].any() else None,
            **metadata,
        )

    def to_ase(self, i: int):
        """Frame ``i`` as :class:`ase.Atoms`: labels in a ``SinglePointCalculator``, metadata in ``info``.

        ``info`` gets ``origin`` always and ``iteration``, ``temperature``, ``perturbation`` (dict),
        ``source``, ``level_of_theory`` and ``molecules`` (list of str) when set; ``arrays['mol_id']`` when
        known; velocities as ASE momenta.
        """
        from ase import Atoms, units
        from ase.calculators.singlepoint import SinglePointCalculator

        rows = self.atom_slice(i)
        atoms = Atoms(numbers=self.numbers[rows], positions=self.positions[rows], cell=self.cells[i], pbc=self.pbc[i])
        if self.velocities is not None and np.isfinite(self.velocities[rows]).all():
            atoms.set_velocities(self.velocities[rows] / units.fs)
        if self.mol_id is not None and (self.mol_id[rows] >= 0).any():
            atoms.arrays['mol_id'] = self.mol_id[rows].copy()
        atoms.info['origin'] = str(self.origin[i])
        if self.iteration[i] != -1:
            atoms.info['iteration'] = int(self.iteration[i])
        if not math.isnan(self.temperature[i]):
            atoms.info['temperature'] = float(self.temperature[i])
        for key in PER_FRAME_STRING_KEYS:
            value = getattr(self, key)[i]
            if value:
                atoms.info[key] = json.loads(value) if key in ('perturbation', 'molecules') else value
        results = {}
        if self.energy is not None and np.isfinite(self.energy[i]):
            results['energy'] = float(self.energy[i])
        if self.forces is not None and np.isfinite(self.forces[rows]).all():
            results['forces'] = self.forces[rows].copy()
        if self.stress is not None and np.isfinite(self.stress[i]).all():
            results['stress'] = self.stress[i].copy()
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms
