"""``MDTrajectoryData`` (entry point ``ilmlff.trajectory``): an MD trajectory file with queryable attributes.

The file is the project's HDF5 trajectory (:mod:`aiida_ilmlff.analysis.trajectory`: time in fs, unwrapped
positions in Å, cell per frame, potential energy, per-frame observables), kept verbatim in the node's
repository as ``SinglefileData`` does. The segments of a restarted run are joined by the
:func:`~aiida_ilmlff.calculations.functions.trajectory.merge_md_segments` calcfunction.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import typing as t

import numpy as np
from aiida import orm
from aiida.common.exceptions import ValidationError

from aiida_ilmlff.analysis.trajectory import TrajectoryReader, chemical_symbols
from aiida_ilmlff.common.hashing import sha256_file

__all__ = ('MDTrajectoryData',)

_REQUIRED_ATTRIBUTES = ('n_frames', 'n_atoms', 'elements', 'time_start_fs', 'time_end_fs', 'sha256')


def _finite_or_none(value: t.Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class MDTrajectoryData(orm.SinglefileData):
    """An ilmlff HDF5 trajectory (``trajectory.h5``) plus a queryable summary.

    Attributes: ``n_frames``, ``n_atoms``, ``n_molecules``, ``elements`` (sorted symbols), ``species``
    (molecule name -> count, when the file names them), ``time_start_fs`` and ``time_end_fs`` (first and last
    frame), ``frame_interval_fs`` (between frames, ``None`` if uneven or a single frame), ``timestep_fs`` (MD
    time step), ``start_time_fs`` (time of the state the run started from), ``ensemble``, ``temperature_K``,
    ``pressure_bar`` (``None`` when not set), ``engine``, ``observables``, ``has_velocities``, ``models``
    (uuids of the MLFFModelData that made it, model 0 first), ``sha256``, ``format_version``.

    Build with :meth:`from_file`; read with :meth:`open_reader`.
    """

    DEFAULT_FILENAME = 'trajectory.h5'

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, *, models: t.Sequence[str] = (), filename: str | None = None, **kwargs: t.Any
    ) -> MDTrajectoryData:
        """A new unstored node for the trajectory file at ``path`` (the file is read once for the summary).

        :param models: uuids of the models that drove (first) and evaluated the run.
        :param kwargs: passed to :class:`aiida.orm.Data` (``label``, ``description``).
        :raises FileNotFoundError: no file at ``path``.
        :raises ValueError: the file is not an ilmlff trajectory (or a newer format version).
        """
        path = pathlib.Path(path)
        summary = cls.summarise(path)
        node = cls(file=str(path), filename=filename or cls.DEFAULT_FILENAME, **kwargs)
        node.base.attributes.set_many({**summary, 'models': list(models), 'sha256': sha256_file(path)})
        return node

    @staticmethod
    def summarise(path: pathlib.Path) -> dict[str, t.Any]:
        """The summary attributes of the trajectory at ``path`` (all but ``models`` and ``sha256``)."""
        with TrajectoryReader(path) as reader:
            metadata = reader.metadata
            interval = None
            if reader.n_frames > 1:
                with contextlib.suppress(ValueError):
                    interval = reader.timestep_fs()
            species = None
            if reader.molecules is not None:
                names, counts = np.unique(np.array(reader.molecules, dtype=str), return_counts=True)
                species = {str(name): int(count) for name, count in zip(names, counts)}
            return {
                'n_frames': int(reader.n_frames),
                'n_atoms': int(reader.n_atoms),
                'n_molecules': int(reader.n_molecules),
                'elements': sorted({chemical_symbols[int(z)] for z in reader.numbers}),
                'species': species,
                'time_start_fs': float(reader.time[0]) if reader.n_frames else None,
                'time_end_fs': float(reader.time[-1]) if reader.n_frames else None,
                'frame_interval_fs': interval,
                'timestep_fs': _finite_or_none(metadata.get('timestep_fs')),
                'start_time_fs': _finite_or_none(metadata.get('start_time_fs')),
                'ensemble': metadata.get('ensemble'),
                'temperature_K': _finite_or_none(metadata.get('temperature_K')),
                'pressure_bar': _finite_or_none(metadata.get('pressure_bar')),
                'engine': metadata.get('engine'),
                'observables': list(reader.observable_names),
                'has_velocities': bool(reader.has_velocities),
                'format_version': 1,
            }

    def _validate(self) -> bool:
        super()._validate()
        missing = [key for key in _REQUIRED_ATTRIBUTES if key not in self.base.attributes.keys()]
        if missing:
            raise ValidationError(f'MDTrajectoryData lacks the attributes {missing}: build it with from_file')
        return True

    @contextlib.contextmanager
    def open_reader(self) -> t.Iterator[TrajectoryReader]:
        """A :class:`~aiida_ilmlff.analysis.trajectory.TrajectoryReader` on the file (a path on disk while open)."""
        with self.as_path() as path, TrajectoryReader(path) as reader:
            yield reader

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return self.base.attributes.get('n_frames')

    @property
    def n_atoms(self) -> int:
        """Atoms per frame."""
        return self.base.attributes.get('n_atoms')

    @property
    def time_span_fs(self) -> tuple[float | None, float | None]:
        """(first, last) frame time in fs."""
        return self.base.attributes.get('time_start_fs'), self.base.attributes.get('time_end_fs')

    @property
    def simulated_ps(self) -> float:
        """Simulated time [ps] from the first to the last saved frame (0.0 for fewer than two frames)."""
        first, last = self.time_span_fs
        return float((last - first) / 1000.0) if first is not None and last is not None else 0.0
