"""Joining the segments of a restarted MD run: one trajectory file, one time series (pure numpy/h5py, no AiiDA).

A run restarted after a wall-time stop or a guard repeats part of what the previous segment wrote: segment
``i`` is cut at the restart time of segment ``i + 1`` (:func:`segment_cut_times`), and nothing at or before
the last time already kept is written twice. Times are in fs; a tolerance of 1e-6 fs absorbs rounding.
The ``merge_md_segments`` calcfunction (:mod:`aiida_ilmlff.calculations.functions.trajectory`) wraps these.
"""

from __future__ import annotations

import contextlib
import json
import os
import typing as t

import numpy as np

from .trajectory import TrajectoryReader, TrajectoryWriter

__all__ = ('TIME_TOLERANCE_FS', 'merge_time_series', 'merge_trajectory_files', 'segment_cut_times')

#: fs: two times closer than this are the same time.
TIME_TOLERANCE_FS = 1e-6


def segment_cut_times(starts: t.Sequence[float]) -> list[float]:
    """The time [fs] up to which each segment is kept: the start time of the next segment (``inf`` for the last).

    :param starts: the time [fs] each segment (re)started from, in segment order.
    """
    return [*(float(start) for start in starts[1:]), np.inf]


def _opened(source: str | os.PathLike | t.Callable[[], t.ContextManager]) -> t.ContextManager:
    return source() if callable(source) else contextlib.nullcontext(source)


def merge_trajectory_files(
    paths: t.Sequence[str | os.PathLike | t.Callable[[], t.ContextManager]],
    cut_times: t.Sequence[float],
    target: str | os.PathLike,
    segment_timesteps_fs: t.Sequence[float | None],
) -> None:
    """Stream the frames of each segment file with time <= its cut time [fs] into a new trajectory ``target``.

    Only one chunk of frames is in memory at a time. The metadata, atoms, dtype, velocities, energy and
    observables of the first segment are kept; ``metadata['segments']`` is the number of segments and
    ``metadata['segment_timesteps_fs']`` the JSON list ``segment_timesteps_fs`` (one MD time step per segment).

    :param paths: the segments' HDF5 trajectories (:class:`~aiida_ilmlff.analysis.trajectory.TrajectoryReader`),
        each a path or a callable returning a context manager that yields one (opened one segment at a time).
    :param cut_times: one time [fs] per segment (:func:`segment_cut_times`).
    :param target: the file to write (overwritten).
    """
    writer = None
    last_time = -np.inf
    try:
        for path, cut in zip(paths, cut_times):
            with _opened(path) as opened, TrajectoryReader(opened) as reader:
                if writer is None:
                    metadata = dict(reader.metadata)
                    metadata['segments'] = len(paths)
                    metadata['segment_timesteps_fs'] = json.dumps(list(segment_timesteps_fs))
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
                stop = int(np.searchsorted(reader.time, cut + TIME_TOLERANCE_FS, side='right'))
                start = int(np.searchsorted(reader.time, last_time + TIME_TOLERANCE_FS, side='left'))
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


def merge_time_series(
    tables: t.Sequence[t.Mapping[str, np.ndarray]], cut_times: t.Sequence[float], time_name: str = 'time_fs'
) -> dict[str, np.ndarray]:
    """Concatenate per-segment tables of equal-length columns, keeping each segment's rows up to its cut time.

    :param tables: one mapping column name -> (n_rows,) array per segment, each with the column ``time_name``
        [fs].
    :param cut_times: one time [fs] per segment (:func:`segment_cut_times`).
    :returns: column name -> concatenated array (column order of the segments), rows after the last kept time.
    """
    merged: dict[str, list[np.ndarray]] = {}
    last = -np.inf
    for table, cut in zip(tables, cut_times):
        time = np.asarray(table[time_name])
        keep = (time <= cut + TIME_TOLERANCE_FS) & (time > last + TIME_TOLERANCE_FS)
        for name, values in table.items():
            merged.setdefault(name, []).append(np.asarray(values)[keep])
        if keep.any():
            last = float(time[keep][-1])
    return {name: np.concatenate(parts) for name, parts in merged.items()}
