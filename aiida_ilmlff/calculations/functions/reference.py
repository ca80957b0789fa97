"""Calcfunction turning the reference AIMD of a data set into an ilmlff trajectory, so that the Li+ solvation and TFSI
conformer analyses of the models' MD (:mod:`aiida_ilmlff.calculations.functions.properties`) run on it unchanged.

The pipeline compares each model's Li+ environments and TFSI conformers with those of the CP2K AIMD its data set
came from (Park, Ryu & Lee, arXiv:2503.18249, compare MLFF MD with AIMD the same way).
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import numpy as np
from aiida.engine import calcfunction

from aiida_ilmlff.analysis.trajectory import TrajectoryWriter
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.trajectory import MDTrajectoryData

__all__ = ('aimd_run_problem', 'aimd_trajectory')


def aimd_run_problem(frames: FramesData) -> str | None:
    """Why ``frames`` are not the frames of one AIMD run (the ``trajectory`` of ``ilmlff.aimd``), or None.

    One box (the same atoms in every frame), at least 3 frames, molecule indices, and a ``time_fs`` in every frame's
    ``perturbation``, increasing. The one check of a reference run, for :func:`aimd_trajectory` and
    ``ilmlff.validate``.
    """
    n_atoms = frames.n_atoms_per_frame
    if len(frames) < 3:
        return f'a reference AIMD needs at least 3 frames, got {len(frames)}'
    if len(set(n_atoms.tolist())) != 1:
        return f'the frames are not of one box: atom counts {sorted(set(n_atoms.tolist()))}'
    n = int(n_atoms[0])
    numbers = frames.numbers.reshape(len(frames), n)
    if not (numbers == numbers[0]).all():
        return 'the frames are not of one box: their atomic numbers differ'
    mol_ids = frames.mol_ids
    if mol_ids is None or (mol_ids[:n] < 0).any():
        return 'the frames have no molecule indices: the Li+, TFSI and structure analyses need them'
    times = []
    for index, text in enumerate(frames.perturbations.tolist()):
        record = json.loads(text) if text else {}
        if record.get('time_fs') is None:
            return f'frame {index} has no `time_fs`: not a frame of an AIMD run'
        times.append(float(record['time_fs']))
    if (np.diff(np.asarray(times)) <= 0).any():
        return 'the frames are not in increasing time'
    return None


@calcfunction
def aimd_trajectory(frames: FramesData) -> MDTrajectoryData:
    """The frames of one CP2K AIMD run (the ``trajectory`` output of ``ilmlff.aimd``) as an ilmlff trajectory file.

    Times [fs] are the ``time_fs`` of each frame's ``perturbation`` (as ``ilmlff.aimd`` records them), positions
    [Å] and cells as stored (CP2K writes them continuous in time, not wrapped; the Li+ and conformer analyses use
    the minimum image anyway), masses ASE's standard atomic weights, molecules
    and molecule indices those of the first frame (the box builder's).

    :param frames: ``FramesData`` of one box: every frame the same atoms, with ``time_fs`` and molecule indices.
    :returns: ``MDTrajectoryData``.
    :raises ValueError: frames of different atom counts or numbers, a frame without ``time_fs``, times not
        increasing, fewer than 3 frames, no molecule indices.
    """
    from ase.data import atomic_masses

    problem = aimd_run_problem(frames)
    if problem is not None:
        raise ValueError(problem)
    n = int(frames.n_atoms_per_frame[0])
    numbers = frames.numbers.reshape(len(frames), n)
    mol_ids = frames.mol_ids
    times = np.asarray([json.loads(text)['time_fs'] for text in frames.perturbations.tolist()], dtype=float)
    molecules = json.loads(frames.molecules[0]) if frames.molecules[0] else None
    positions = frames.positions.reshape(len(frames), n, 3)
    with tempfile.TemporaryDirectory(prefix='ilmlff-reference-') as tmpdir:
        path = pathlib.Path(tmpdir) / MDTrajectoryData.DEFAULT_FILENAME
        with TrajectoryWriter(
            path,
            numbers[0],
            atomic_masses[numbers[0]],
            mol_ids[:n],
            molecules,
            dtype='float64',
            energy=False,
            metadata={'source': 'CP2K AIMD (ilmlff.aimd)', 'frames_uuid': frames.uuid},
        ) as writer:
            writer.append(times, positions, frames.cells)
        return MDTrajectoryData.from_file(path)
