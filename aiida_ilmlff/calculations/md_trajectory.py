"""``MDTrajectoryData`` (entry point ``ilmlff.trajectory``): an MD trajectory file with queryable attributes.

The file is the project's HDF5 trajectory (:mod:`aiida_ilmlff.analysis.trajectory`: time in fs, unwrapped
positions in Å, cell per frame, potential energy, per-frame observables), kept verbatim in the node's
repository as ``SinglefileData`` does. :func:`merge_md_segments` joins the segments of an MD run that was
restarted (wall time, guard) into one trajectory, cutting each segment at the restart time of the next.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pathlib
import tempfile
import typing as t

import numpy as np
from aiida import orm
from aiida.common.exceptions import ValidationError
from aiida.engine import calcfunction

from aiida_ilmlff.analysis.trajectory import TrajectoryReader, TrajectoryWriter, chemical_symbols

__all__ = ('MDTrajectoryData', 'merge_md_segments')

_REQUIRED_ATTRIBUTES = ('n_frames', 'n_atoms', 'elements', 'time_start_fs', 'time_end_fs', 'sha256')


def _sha256(path: pathlib.Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
        node.base.attributes.set_many({**summary, 'models': list(models), 'sha256': _sha256(path)})
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


# ---------------------------------------------------------------------------------------------- merging


def _segment_keys(segments: t.Mapping[str, t.Any], prefix: str) -> list[str]:
    return sorted(key for key in segments if key.startswith(prefix))


def _merge_trajectories(trajectories: list[MDTrajectoryData], cut_times: list[float], target: pathlib.Path) -> None:
    """Stream the frames of each segment with time <= its cut time into ``target`` (one chunk in memory)."""
    writer = None
    last_time = -np.inf
    try:
        for node, cut in zip(trajectories, cut_times):
            with node.open_reader() as reader:
                if writer is None:
                    metadata = dict(reader.metadata)
                    metadata['segments'] = len(trajectories)
                    metadata['segment_timesteps_fs'] = json.dumps(
                        [n.base.attributes.get('timestep_fs') for n in trajectories]
                    )
                    writer = TrajectoryWriter(
                        target,
                        reader.numbers,
                        reader.masses,
                        reader.mol_id,
                        reader.molecules,
                        dtype=str(reader.dtype),
                        velocities=reader.has_velocities,
                        energy=reader.has_energy,
                        observables={
                            name: reader._file['observables'][name].attrs.get('units', '')
                            for name in reader.observable_names
                        },
                        metadata={k: v for k, v in metadata.items() if v is not None},
                        overwrite=True,
                        flush_every=10**9,
                    )
                stop = int(np.searchsorted(reader.time, cut + 1e-6, side='right'))
                start = int(np.searchsorted(reader.time, last_time + 1e-6, side='left'))
                if stop <= start:
                    continue
                fields = ['positions', 'cell', 'observables']
                fields += ['velocities'] if reader.has_velocities else []
                fields += ['energy'] if reader.has_energy else []
                for block in reader.iter_chunks(start=start, stop=stop, fields=fields):
                    writer.append(
                        block.time,
                        block.positions,
                        block.cell,
                        velocities=block.velocities,
                        energy=block.energy,
                        observables=block.observables,
                    )
                    last_time = float(block.time[-1])
    finally:
        if writer is not None:
            writer.close()


def _merge_arrays(nodes: list[orm.ArrayData], cut_times: list[float], time_name: str) -> orm.ArrayData:
    merged: dict[str, list[np.ndarray]] = {}
    last = -np.inf
    for node, cut in zip(nodes, cut_times):
        time = node.get_array(time_name)
        keep = (time <= cut + 1e-6) & (time > last + 1e-6)
        for name in node.get_arraynames():
            merged.setdefault(name, []).append(node.get_array(name)[keep])
        if keep.any():
            last = float(time[keep][-1])
    result = orm.ArrayData()
    for name, parts in merged.items():
        result.set_array(name, np.concatenate(parts))
    result.base.attributes.set('columns', list(nodes[0].base.attributes.get('columns', list(merged))))
    return result


@calcfunction
def merge_md_segments(**segments: orm.Data) -> dict[str, orm.Data]:
    """Join the segments of a restarted MD run into one trajectory, thermo log and (committee) deviation log.

    :param segments: ``trajectory_NN`` (MDTrajectoryData), ``thermo_NN`` (ArrayData), optional
        ``deviation_NN`` (ArrayData) and ``start_NN`` (Float: the time in fs each segment restarted from), for
        segments ``NN = 00, 01, ...`` in order. Segment ``i`` keeps its rows and frames up to the start time of
        segment ``i + 1`` (what the restart repeats is dropped).
    :returns: ``trajectory``, ``thermo`` and, when every segment has one, ``deviation``.
    """
    trajectory_keys = _segment_keys(segments, 'trajectory_')
    suffixes = [key.split('_', 1)[1] for key in trajectory_keys]
    starts = [float(segments[f'start_{suffix}'].value) for suffix in suffixes]
    cut_times = [*starts[1:], np.inf]
    trajectories = [segments[key] for key in trajectory_keys]
    outputs: dict[str, orm.Data] = {}
    with tempfile.TemporaryDirectory(prefix='ilmlff-merge-') as tmpdir:
        target = pathlib.Path(tmpdir) / MDTrajectoryData.DEFAULT_FILENAME
        _merge_trajectories(trajectories, cut_times, target)
        models = trajectories[-1].base.attributes.get('models', [])
        outputs['trajectory'] = MDTrajectoryData.from_file(target, models=models)
    outputs['thermo'] = _merge_arrays([segments[f'thermo_{s}'] for s in suffixes], cut_times, 'time_fs')
    if all(f'deviation_{s}' in segments for s in suffixes):
        outputs['deviation'] = _merge_arrays([segments[f'deviation_{s}'] for s in suffixes], cut_times, 'time_fs')
    return outputs
