"""``FramesData`` (entry point ``ilmlff.frames``): a set of atomic frames with labels and per-frame origin.

The frames live in one HDF5 file (``frames.h5``, layout in :mod:`aiida_ilmlff.data.frames_h5`) in the
node's repository; a queryable summary lives in the attributes. Arrays load lazily from the repository and
are cached on the instance. Units and the missing-label convention are those of
:mod:`aiida_ilmlff.data.frame_arrays`: positions and cells in Å, energy in eV, forces in eV/Å, stress in
eV/Å^3 (ASE sign), velocities in Å/fs, temperature in K; ``nan`` marks a missing label.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import shutil
import tempfile
import typing as t

import numpy as np
from aiida import orm
from aiida.common.exceptions import ValidationError

from aiida_ilmlff.common.hashing import sha256_file

from . import frames_formats, frames_h5
from .box_atoms import box_atoms
from .frame_arrays import ORIGINS, FrameArrays

if t.TYPE_CHECKING:
    from ase import Atoms

__all__ = ('FORMATS', 'ORIGINS', 'FramesData')

#: File formats understood by :meth:`FramesData.export` and :meth:`FramesData.from_file`.
FORMATS = ('extxyz', 'deepmd')
#: Keyword-only arguments of :meth:`FrameArrays.build` (the others of :meth:`FramesData.from_arrays` go to the node).
_BUILD_KEYWORDS = frozenset(
    name
    for name, parameter in inspect.signature(FrameArrays.build).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)

_SUMMARY_KEYS = (
    'n_frames',
    'n_atoms',
    'n_atoms_total',
    'elements',
    'origin_counts',
    'labelled',
    'n_labelled',
    'has_stress',
    'n_stress',
    'level_of_theory',
    'compositions',
)


class FramesData(orm.Data):
    """N atomic frames (ragged: frames may differ in atom count) with optional labels and per-frame metadata.

    Per frame: atomic numbers, positions [Å], cell [Å] (3x3, row vectors), pbc; optional energy [eV],
    forces [eV/Å], stress [eV/Å^3, ASE sign] and velocities [Å/fs]; metadata ``origin`` (one of
    :data:`ORIGINS`), ``iteration`` (-1 if none), ``temperature`` [K] (nan if none), ``perturbation`` (JSON
    object: the generator and its parameters), ``source`` (uuid of the source node), ``level_of_theory``
    (fingerprint, '' if unlabelled) and ``molecules`` (JSON list of ion names); per atom ``mol_id``
    (molecule index, -1 unknown).

    Create one with :meth:`from_ase`, :meth:`from_arrays`, :meth:`from_structure` or :meth:`from_file`.
    Summary attributes (for ``QueryBuilder``): ``n_frames``, ``n_atoms`` (sorted unique atoms per frame),
    ``n_atoms_total``, ``elements``, ``origin_counts``, ``labelled`` (every frame has energy and forces),
    ``n_labelled``, ``has_stress`` (any frame has a stress), ``n_stress``, ``compositions`` (sorted unique composition
    keys of the frames whose molecules are known, :func:`aiida_ilmlff.common.composition_key`, e.g.
    ``'Li:1 PYR14:2 TFSI:3'``), ``level_of_theory`` (sorted unique
    non-empty fingerprints), ``sha256`` (of the file), ``filename``, ``format_version``.
    """

    FILENAME = 'frames.h5'

    # ------------------------------------------------------------------ construction

    @classmethod
    def _from_frame_arrays(cls, arrays: FrameArrays, *, validate: bool = True, **kwargs: t.Any) -> FramesData:
        """Write ``arrays`` into a new unstored node (validated first, unless fresh from ``FrameArrays.build``)."""
        if validate:
            arrays.validate()
        node = cls(**kwargs)
        with tempfile.TemporaryDirectory(prefix='ilmlff-frames-') as tmpdir:
            path = pathlib.Path(tmpdir) / cls.FILENAME
            frames_h5.write_arrays(path, arrays)
            sha256 = sha256_file(path)
            node.base.repository.put_object_from_file(str(path), cls.FILENAME)
        node.base.attributes.set_many(
            {**arrays.summary(), 'sha256': sha256, 'filename': cls.FILENAME, 'format_version': frames_h5.VERSION}
        )
        node._frames_cache = {'arrays': arrays}
        return node

    @classmethod
    def from_arrays(
        cls, numbers: t.Any, positions: t.Any, cells: t.Any = None, pbc: t.Any = True, **kwargs: t.Any
    ) -> FramesData:
        """A new unstored node from numpy arrays (the fast path).

        :param numbers, positions, cells, pbc: and the keyword arguments ``n_atoms``, ``energy``, ``forces``,
            ``stress``, ``velocities``, ``mol_id``, ``origin``, ``iteration``, ``temperature``, ``perturbation``,
            ``source``, ``level_of_theory``, ``molecules``: as :meth:`FrameArrays.build
            <aiida_ilmlff.data.frame_arrays.FrameArrays.build>` (shapes and units there: positions in Å, energy
            in eV, forces in eV/Å, stress in eV/Å^3, velocities in Å/fs, temperature in K).
        :param kwargs: the other keywords are passed to :class:`aiida.orm.Data` (``label``, ``description``).
        :raises ValueError: on shape mismatches, non-finite positions or cells, unknown origins.
        """
        build = {key: kwargs.pop(key) for key in list(kwargs) if key in _BUILD_KEYWORDS}
        arrays = FrameArrays.build(numbers, positions, cells, pbc, **build)
        return cls._from_frame_arrays(arrays, validate=False, **kwargs)

    @classmethod
    def from_ase(
        cls,
        images: Atoms | t.Iterable[Atoms],
        origin: str | None = None,
        *,
        iteration: int | None = None,
        temperature: float | None = None,
        perturbation: dict | str | None = None,
        source: str | None = None,
        level_of_theory: str | None = None,
        **kwargs: t.Any,
    ) -> FramesData:
        """A new unstored node from :class:`ase.Atoms` (one or a sequence).

        Labels are read from ``atoms.calc.results`` (``energy``, ``forces``, ``stress`` as 3x3 or Voigt 6, e.g.
        a ``SinglePointCalculator``) when present; nothing is computed. Metadata come from ``atoms.info`` keys
        ``origin``, ``iteration``, ``temperature``, ``perturbation`` (dict or JSON string), ``source``,
        ``level_of_theory``, ``molecules``; molecule indices from ``atoms.arrays['mol_id']``; velocities from
        ASE momenta. An argument given here (not ``None``) overrides ``atoms.info`` for every frame.

        :raises ValueError: as :meth:`from_arrays`.
        """
        from ase import Atoms

        if isinstance(images, Atoms):
            images = [images]
        overrides = {
            'origin': origin,
            'iteration': iteration,
            'temperature': temperature,
            'perturbation': perturbation,
            'source': source,
            'level_of_theory': level_of_theory,
        }
        return cls._from_frame_arrays(FrameArrays.from_ase(images, **overrides), validate=False, **kwargs)

    @classmethod
    def from_structure(
        cls, structures: orm.StructureData | t.Sequence[orm.StructureData], origin: str = 'import', **kwargs: t.Any
    ) -> FramesData:
        """A new unstored node with one frame per ``StructureData`` (``source`` = its uuid).

        The box builder's attributes are read when present: ``mol_id`` (one int per atom) and ``molecules``
        (ion name per molecule).

        :raises ValueError: if ``mol_id`` does not have one entry per site.
        """
        if isinstance(structures, orm.StructureData):
            structures = [structures]
        images = []
        for structure in structures:
            atoms = box_atoms(structure)
            atoms.info['source'] = structure.uuid if structure.is_stored else ''
            images.append(atoms)
        return cls.from_ase(images, origin=origin, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike, fmt: str, **kwargs: t.Any) -> FramesData:
        """A new unstored node from an extxyz file (MACE keys) or DeePMD npy system(s).

        :param fmt: ``extxyz`` or ``deepmd``.
        :param kwargs: for extxyz ``energy_key``, ``forces_key``, ``stress_key`` (default the MACE ``REF_*``
            keys, falling back to plain ASE labels); for both, metadata overrides as in :meth:`from_ase`
            (``origin``, ``iteration``, ``temperature``, ``perturbation``, ``source``, ``level_of_theory``);
            other keywords go to :class:`aiida.orm.Data`.
        :raises ValueError: for an unknown format or an invalid file.
        """
        reader_keys = {'origin', 'iteration', 'temperature', 'perturbation', 'source', 'level_of_theory'}
        if fmt == 'extxyz':
            reader_keys |= {'energy_key', 'forces_key', 'stress_key'}
            reader = frames_formats.read_extxyz
        elif fmt == 'deepmd':
            reader = frames_formats.read_deepmd
        else:
            raise ValueError(f'unknown format {fmt!r}: choose from {list(FORMATS)}')
        reader_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in reader_keys}
        return cls._from_frame_arrays(reader(path, **reader_kwargs), validate=False, **kwargs)

    # ------------------------------------------------------------------ storage and validation

    def _validate(self) -> bool:
        super()._validate()
        if self.FILENAME not in self.base.repository.list_object_names():
            raise ValidationError(f'FramesData has no {self.FILENAME}: build it with from_ase / from_arrays')
        missing = [key for key in (*_SUMMARY_KEYS, 'sha256') if key not in self.base.attributes.keys()]
        if missing:
            raise ValidationError(f'FramesData lacks summary attributes {missing}')
        return True

    def _cache(self) -> dict[str, t.Any]:
        try:
            return self._frames_cache
        except AttributeError:
            self._frames_cache: dict[str, t.Any] = {}
            return self._frames_cache

    def clear_cache(self) -> None:
        """Drop the arrays cached on this instance (they are reloaded from the repository on demand)."""
        self._frames_cache = {}

    def _read(self, function: t.Callable, *args: t.Any) -> t.Any:
        with self.base.repository.open(self.FILENAME, mode='rb') as handle:
            return function(handle, *args)

    def get_arrays(self) -> FrameArrays:
        """All frames as a :class:`~aiida_ilmlff.data.frame_arrays.FrameArrays` (loaded once, then cached)."""
        cache = self._cache()
        if 'arrays' not in cache:
            cache['arrays'] = self._read(frames_h5.read_arrays)
        return cache['arrays']

    def _field(self, name: str) -> t.Any:
        cache = self._cache()
        if 'arrays' in cache:
            return getattr(cache['arrays'], name)
        if name not in cache:
            cache[name] = self._read(frames_h5.read_field, name)
        return cache[name]

    def _rows(self, name: str, i: int, per_atom: bool) -> np.ndarray | None:
        i = self._frame_index(i)
        cache = self._cache()
        if 'arrays' in cache or name in cache:
            value = self._field(name)
            if value is None:
                return None
            return value[slice(*self.offsets[i : i + 2])] if per_atom else value[i]
        start, stop = (int(self.offsets[i]), int(self.offsets[i + 1])) if per_atom else (i, i + 1)
        value = self._read(frames_h5.read_frame_rows, name, start, stop)
        return value if value is None or per_atom else value[0]

    def _frame_index(self, i: int) -> int:
        n = len(self)
        index = int(i)
        if index < -n or index >= n:
            raise IndexError(f'frame {i} out of range for {n} frames')
        return index % n

    # ------------------------------------------------------------------ summary and sequence protocol

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.base.attributes.get('n_frames')

    @property
    def elements(self) -> list[str]:
        """Sorted chemical symbols present."""
        return self.base.attributes.get('elements')

    @property
    def sha256(self) -> str:
        """SHA-256 of the HDF5 file."""
        return self.base.attributes.get('sha256')

    @property
    def is_labelled(self) -> bool:
        """Whether every frame has an energy and forces."""
        return self.base.attributes.get('labelled')

    def __len__(self) -> int:
        return self.n_frames

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> t.Iterator[Atoms]:
        arrays = self.get_arrays()
        for i in range(arrays.n_frames):
            yield arrays.to_ase(i)

    def __getitem__(self, key: t.Any) -> Atoms | FramesData:
        """``node[i]`` -> :class:`ase.Atoms`; ``node[slice]`` or ``node[indices]`` -> a new unstored node."""
        if isinstance(key, (int, np.integer)):
            return self.get_arrays().to_ase(self._frame_index(key))
        return self.select(key)

    def select(self, indices: t.Any, **kwargs: t.Any) -> FramesData:
        """A new unstored node with the frames ``indices`` (ints, slice or bool mask), in that order.

        :raises IndexError: for an index out of range. :raises ValueError: for an empty selection.
        """
        return type(self)._from_frame_arrays(self.get_arrays().select(indices), **kwargs)

    def with_labels(
        self,
        energy: t.Any,
        forces: t.Any,
        stress: t.Any = None,
        *,
        level_of_theory: str | t.Sequence[str],
        **kwargs: t.Any,
    ) -> FramesData:
        """A new unstored node with the same frames and new labels (old labels are replaced).

        :param energy: ``(N,)`` eV, ``nan`` for frames left unlabelled.
        :param forces: eV/Å, ``(T, 3)``, ``(N, n, 3)`` or a list of ``(n_i, 3)``; ``nan`` rows where missing.
        :param stress: ``(N, 3, 3)`` or ``(N, 6)`` eV/Å^3 (ASE sign), or ``None``.
        :param level_of_theory: fingerprint of the method (one, or one per frame); kept only on frames that
            get an energy.
        :raises ValueError: on shape mismatches or partially labelled frames.
        """
        arrays = self.get_arrays().with_labels(energy, forces, stress, level_of_theory=level_of_theory)
        return type(self)._from_frame_arrays(arrays, validate=False, **kwargs)

    def to_ase(self) -> list[Atoms]:
        """All frames as :class:`ase.Atoms`, the exact inverse of :meth:`from_ase`.

        Labels as a ``SinglePointCalculator`` (stress 3x3); ``info`` gets ``origin`` and the metadata that are
        set (``perturbation`` as a dict, ``molecules`` as a list); ``arrays['mol_id']`` when known.
        """
        return list(self)

    def to_structure(self, i: int) -> orm.StructureData:
        """Frame ``i`` as an unstored ``StructureData`` with the ``mol_id``/``molecules`` attributes when set."""
        atoms = self[int(i)]
        structure = orm.StructureData(ase=atoms)
        if 'mol_id' in atoms.arrays:
            structure.base.attributes.set('mol_id', atoms.arrays['mol_id'].tolist())
        if 'molecules' in atoms.info:
            structure.base.attributes.set('molecules', list(atoms.info['molecules']))
        return structure

    # ------------------------------------------------------------------ export

    def export(
        self, path: str | os.PathLike, fmt: str = 'extxyz', *, overwrite: bool = False, **kwargs: t.Any
    ) -> pathlib.Path:
        """Write the frames to ``path`` and return it.

        :param fmt: ``extxyz`` (one file; MACE keys ``REF_energy``, ``REF_forces``, ``REF_stress``,
            ``config_type`` = origin, plus the metadata) or ``deepmd`` (a directory of npy systems, one per
            composition, ``virial = -stress * volume`` in eV; keyword ``type_map``).
        :param overwrite: replace an existing file or directory.
        :raises FileExistsError: if ``path`` exists and ``overwrite`` is false.
        :raises ValueError: for an unknown format, or frames the format cannot hold (see
            :mod:`aiida_ilmlff.data.frames_formats`).
        """
        path = pathlib.Path(path)
        if fmt not in FORMATS:
            raise ValueError(f'unknown format {fmt!r}: choose from {list(FORMATS)}')
        if path.exists() and not (path.is_dir() and not any(path.iterdir())):
            if not overwrite:
                raise FileExistsError(f'{path} exists: pass overwrite=True to replace it')
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        if fmt == 'extxyz':
            frames_formats.write_extxyz(path, self.get_arrays(), **kwargs)
        else:
            frames_formats.write_deepmd(path, self.get_arrays(), **kwargs)
        return path

    # ------------------------------------------------------------------ array accessors

    @property
    def offsets(self) -> np.ndarray:
        """``(N + 1,)`` int64: atoms of frame ``i`` are rows ``offsets[i]:offsets[i+1]`` of per-atom arrays."""
        return self._field('offsets')

    @property
    def n_atoms_per_frame(self) -> np.ndarray:
        """``(N,)`` int64 atoms per frame."""
        return np.diff(self.offsets)

    @property
    def numbers(self) -> np.ndarray:
        """``(T,)`` int64 atomic numbers of all frames, concatenated."""
        return self._field('numbers')

    @property
    def positions(self) -> np.ndarray:
        """``(T, 3)`` float64 positions [Å] of all frames, concatenated."""
        return self._field('positions')

    @property
    def cells(self) -> np.ndarray:
        """``(N, 3, 3)`` float64 cells [Å], row vectors."""
        return self._field('cells')

    @property
    def pbcs(self) -> np.ndarray:
        """``(N, 3)`` bool periodic boundary conditions."""
        return self._field('pbc')

    @property
    def energies(self) -> np.ndarray | None:
        """``(N,)`` float64 energies [eV], ``nan`` where missing; ``None`` if no frame has one."""
        return self._field('energy')

    @property
    def forces(self) -> np.ndarray | None:
        """``(T, 3)`` float64 forces [eV/Å], ``nan`` rows where missing; ``None`` if no frame has them."""
        return self._field('forces')

    @property
    def stresses(self) -> np.ndarray | None:
        """``(N, 3, 3)`` float64 stress [eV/Å^3, ASE sign], ``nan`` where missing; ``None`` if none."""
        return self._field('stress')

    @property
    def velocities(self) -> np.ndarray | None:
        """``(T, 3)`` float64 velocities [Å/fs], ``nan`` rows where missing; ``None`` if none."""
        return self._field('velocities')

    @property
    def mol_ids(self) -> np.ndarray | None:
        """``(T,)`` int64 molecule index per atom, -1 where unknown; ``None`` if none."""
        return self._field('mol_id')

    @property
    def origins(self) -> np.ndarray:
        """``(N,)`` str origin per frame (``EQ``, ``nEQ``, ``AL``, ``import``)."""
        return self._field('origin')

    @property
    def iterations(self) -> np.ndarray:
        """``(N,)`` int64 active-learning iteration per frame, -1 if none."""
        return self._field('iteration')

    @property
    def temperatures(self) -> np.ndarray:
        """``(N,)`` float64 temperature [K] per frame, ``nan`` if none."""
        return self._field('temperature')

    @property
    def perturbations(self) -> np.ndarray:
        """``(N,)`` str JSON object per frame describing the perturbation, '' if none."""
        return self._field('perturbation')

    @property
    def sources(self) -> np.ndarray:
        """``(N,)`` str uuid of each frame's source node, '' if none."""
        return self._field('source')

    @property
    def levels_of_theory(self) -> np.ndarray:
        """``(N,)`` str level-of-theory fingerprint per frame, '' if unlabelled."""
        return self._field('level_of_theory')

    @property
    def molecules(self) -> np.ndarray:
        """``(N,)`` str JSON list of ion names per molecule, '' if unknown."""
        return self._field('molecules')

    @property
    def composition_keys(self) -> np.ndarray:
        """``(N,)`` str composition key per frame (:func:`aiida_ilmlff.common.composition_key`, e.g.
        ``'PYR14:2 TFSI:2'``), '' where the frame's molecules are not known."""
        from aiida_ilmlff.common.compositions import composition_keys_of_frames

        return np.asarray(composition_keys_of_frames(self.molecules.tolist()), dtype=object)

    def get_mask(self, name: str) -> np.ndarray:
        """``(N,)`` bool: which frames have ``name`` (``energy``, ``forces``, ``stress``, ``velocities``)."""
        cache = self._cache()
        if 'arrays' in cache:
            return cache['arrays'].mask(name)
        if 'masks' not in cache:
            cache['masks'] = self._read(frames_h5.read_masks)
        return cache['masks'][name]

    @property
    def labelled_mask(self) -> np.ndarray:
        """``(N,)`` bool: frames with both energy and forces."""
        return self.get_mask('energy') & self.get_mask('forces')

    def get_numbers(self, i: int) -> np.ndarray:
        """``(n_i,)`` atomic numbers of frame ``i``."""
        return self._rows('numbers', i, True)

    def get_positions(self, i: int) -> np.ndarray:
        """``(n_i, 3)`` positions [Å] of frame ``i`` (a partial read)."""
        return self._rows('positions', i, True)

    def get_cell(self, i: int) -> np.ndarray:
        """``(3, 3)`` cell [Å] of frame ``i``."""
        return self._rows('cells', i, False)

    def get_energy(self, i: int) -> float:
        """Energy [eV] of frame ``i``, ``nan`` if missing."""
        value = self._rows('energy', i, False)
        return float('nan') if value is None else float(value)

    def get_forces(self, i: int) -> np.ndarray | None:
        """``(n_i, 3)`` forces [eV/Å] of frame ``i`` (``nan`` if missing); ``None`` if no frame has forces."""
        return self._rows('forces', i, True)

    def get_stress(self, i: int) -> np.ndarray | None:
        """``(3, 3)`` stress [eV/Å^3] of frame ``i`` (``nan`` if missing); ``None`` if no frame has one."""
        return self._rows('stress', i, False)
