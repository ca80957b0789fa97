"""Calcfunction joining the segments of a restarted MD run (trajectory, thermo log, committee deviation log).

Node <-> plain-data wrapper: the merging itself is :mod:`aiida_ilmlff.analysis.segments`. Both the
``ilmlff.md.base`` work chain (restarts) and ``ilmlff.properties`` (NPT stages) join their segments here, with
the inputs built by :func:`md_segment_inputs`.
"""

from __future__ import annotations

import pathlib
import tempfile
import typing as t

from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.analysis.segments import merge_time_series, merge_trajectory_files, segment_cut_times
from aiida_ilmlff.data.trajectory import MDTrajectoryData

__all__ = ('md_segment_inputs', 'merge_md_segments')


def md_segment_inputs(calculations: t.Sequence[orm.ProcessNode], *, deviation: bool = True) -> dict[str, orm.Data]:
    """The inputs of :func:`merge_md_segments` for MD calculations in run order (``NN`` = 00, 01, ...).

    :param calculations: nodes with the ``trajectory`` and ``thermo`` outputs of ``ilmlff.md``; a segment's start
        time is its trajectory's ``start_time_fs`` attribute (0 if unset).
    :param deviation: also pass each ``deviation`` output there is.
    """
    inputs: dict[str, orm.Data] = {}
    for i, node in enumerate(calculations):
        trajectory = node.outputs.trajectory
        inputs[f'trajectory_{i:02d}'] = trajectory
        inputs[f'thermo_{i:02d}'] = node.outputs.thermo
        inputs[f'start_{i:02d}'] = orm.Float(trajectory.base.attributes.get('start_time_fs') or 0.0)
        if deviation and 'deviation' in node.outputs:
            inputs[f'deviation_{i:02d}'] = node.outputs.deviation
    return inputs


def _segment_keys(segments: t.Mapping[str, t.Any], prefix: str) -> list[str]:
    return sorted(key for key in segments if key.startswith(prefix))


def _merge_arrays(nodes: list[orm.ArrayData], cut_times: list[float], time_name: str) -> orm.ArrayData:
    tables = [{name: node.get_array(name) for name in node.get_arraynames()} for node in nodes]
    merged = merge_time_series(tables, cut_times, time_name)
    result = orm.ArrayData()
    for name, values in merged.items():
        result.set_array(name, values)
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
    cut_times = segment_cut_times([float(segments[f'start_{suffix}'].value) for suffix in suffixes])
    trajectories = [segments[key] for key in trajectory_keys]
    outputs: dict[str, orm.Data] = {}
    with tempfile.TemporaryDirectory(prefix='ilmlff-merge-') as tmpdir:
        paths = [node.as_path for node in trajectories]  # each opened in turn
        target = pathlib.Path(tmpdir) / MDTrajectoryData.DEFAULT_FILENAME
        timesteps = [node.base.attributes.get('timestep_fs') for node in trajectories]
        merge_trajectory_files(paths, cut_times, target, timesteps)
        models = trajectories[-1].base.attributes.get('models', [])
        outputs['trajectory'] = MDTrajectoryData.from_file(target, models=models)
    outputs['thermo'] = _merge_arrays([segments[f'thermo_{s}'] for s in suffixes], cut_times, 'time_fs')
    if all(f'deviation_{s}' in segments for s in suffixes):
        outputs['deviation'] = _merge_arrays([segments[f'deviation_{s}'] for s in suffixes], cut_times, 'time_fs')
    return outputs
