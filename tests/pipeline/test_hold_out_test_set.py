"""``hold_out_test_set`` on stored frame sets: blocks from the frames' metadata, parents found by uuid, the gap.

The frames carry the metadata the data-set work chain writes: EQ frames sampled from a CP2K AIMD keep ``step`` and
``time_fs`` with the trajectory's uuid as ``source``; nEQ frames carry ``source_index`` and the uuid of the EQ frame
set they were perturbed from; AL frames their ``iteration``.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_ilmlff.calculations.functions.frames import hold_out_test_set, merge_frames
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.sampling.split import frame_records


def _frames(n: int, rng, **metadata) -> FramesData:
    """``n`` labelled 3-atom frames in a 6 Å box with the given per-frame metadata."""
    positions = rng.uniform(0.0, 6.0, size=(n, 3, 3))
    return FramesData.from_arrays(
        [1, 1, 8],
        positions,
        np.eye(3) * 6.0,
        True,
        energy=rng.normal(size=n),
        forces=rng.normal(size=(n, 3, 3)),
        **metadata,
    )


@pytest.fixture
def dataset():
    """60 EQ frames of one AIMD (1 fs apart), 2 nEQ frames from each of 20 of them, 3 AL iterations of 4 frames."""
    rng = np.random.default_rng(0)
    trajectory = orm.Data().store()  # stands for the CP2K AIMD's trajectory node
    eq = _frames(
        60,
        rng,
        origin='EQ',
        source=trajectory.uuid,
        perturbation=[
            {'generator': 'md_sample', 'trajectory_generator': 'cp2k_aimd', 'step': 2 * k, 'time_fs': float(k)}
            for k in range(60)
        ],
    ).store()
    parents = [3 * k for k in range(20)]
    neq = _frames(
        40,
        rng,
        origin='nEQ',
        source=eq.uuid,
        perturbation=[{'generator': 'rattle', 'source_index': p, 'sigma': 0.05} for p in parents for _ in range(2)],
    ).store()
    al = _frames(12, rng, origin='AL', iteration=[k // 4 for k in range(12)]).store()
    return merge_frames(a_eq=eq, b_neq=neq, c_al=al)


def test_blocks_and_gap_from_the_frames_metadata(dataset):
    result = hold_out_test_set(
        dataset, orm.Float(0.2), orm.Int(1), test_gap_fs=orm.Float(4.0), test_block_fs=orm.Float(10.0)
    )
    train, test, split = result['train'], result['test'], result['split'].get_dict()
    assert train.n_frames == split['n_train'] and test.n_frames == split['n_test']
    assert train.n_frames + test.n_frames + split['n_excluded_by_gap'] == dataset.n_frames
    assert len(split['excluded_indices']) == split['n_excluded_by_gap']
    assert split['leak_free'] and split['test_gap_fs'] == 4.0 and split['test_block_fs'] == 10.0
    assert set(split['test_by_origin']) == {'EQ', 'nEQ', 'AL'}
    # The nEQ families were placed at their parents' times (the parent frame set was found by its uuid): the
    # segments of the AIMD hold them, and the gap counts them.
    records = frame_records(dataset.origins, dataset.sources, dataset.perturbations, dataset.iterations)
    assert all(not r.trajectory for r in records if r.origin == 'nEQ')  # without the lookup: no time
    assert any(b['block'].startswith('segment') and 'nEQ' in b['origin'] for b in split['test_blocks'])
    # No test frame within 4 fs of a training frame of the same trajectory, parents' times included.
    test_index = split['test_indices']
    excluded = set(split['excluded_indices'])
    train_index = [i for i in range(dataset.n_frames) if i not in excluded and i not in set(test_index)]
    times = {**{i: float(i) for i in range(60)}, **{60 + j: float(3 * (j // 2)) for j in range(40)}}
    for i in test_index:
        for j in train_index:
            if i in times and j in times:
                assert abs(times[i] - times[j]) >= 4.0
    gaps = split['min_gap_fs']
    assert gaps and min(gaps.values()) >= 4.0
    # Whole AL iterations.
    iterations = dataset.iterations
    for iteration in range(3):
        members = {i for i in range(dataset.n_frames) if iterations[i] == iteration}
        assert members <= set(test_index) or not members & set(test_index)


def test_bad_gap_is_refused(dataset):
    with pytest.raises(ValueError, match='`test_gap_fs` must be >= 0'):
        hold_out_test_set(dataset, orm.Float(0.2), orm.Int(0), test_gap_fs=orm.Float(-1.0))
