"""The held-out test set of whole blocks (:func:`aiida_ilmlff.sampling.split.block_test_split`) on synthetic metadata.

Two AIMD trajectories (frames 0.5 fs apart), perturbation families of frames of the first one, and three
active-learning iterations. The central assertion: no test frame lies within the stated time gap of a training
frame of the same trajectory; a random frame split of the same data breaks it (so the assertion can fail).
"""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from aiida_ilmlff.sampling.split import (
    FrameRecord,
    block_test_split,
    frame_records,
    split_indices,
    time_gaps,
    validate_block_split,
)


def synthetic_records(n_a: int = 200, n_b: int = 120, n_parents: int = 20, per_family: int = 2, n_al: int = 3):
    """EQ frames of trajectories ``A`` and ``B`` (0.5 fs apart), nEQ families from frames of ``A`` (at their parent's
    time), and ``n_al`` AL iterations of 5 frames."""
    records = [FrameRecord('EQ', 'A', 0.5 * k) for k in range(n_a)]
    records += [FrameRecord('EQ', 'B', 10.0 + 0.5 * k) for k in range(n_b)]
    for parent in range(n_parents):
        time = 0.5 * (parent * n_a // n_parents)
        records += [FrameRecord('nEQ', 'A', time, family=f'eq:{parent}') for _ in range(per_family)]
    for iteration in range(n_al):
        records += [FrameRecord('AL', iteration=iteration) for _ in range(5)]
    return records


def min_gap(records, train, test) -> float:
    return min(time_gaps(records, train, test).values(), default=np.inf)


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize(('gap', 'block'), [(0.0, 10.0), (5.0, 10.0), (25.0, 20.0), (2.0, 50.0)])
def test_no_test_frame_within_the_gap_of_a_training_frame(seed, gap, block):
    """Partition, whole blocks, every origin in the test set, and the gap between train and test in time."""
    records = synthetic_records()
    split = block_test_split(records, 0.2, seed, test_gap_fs=gap, test_block_fs=block)
    train, test, excluded = set(split.train), set(split.test), set(split.excluded)
    assert not train & test and not train & excluded and not test & excluded
    assert train | test | excluded == set(range(len(records)))
    # The assertion of the issue: no test frame within the gap of a training frame of the same trajectory.
    for i in split.test:
        for j in split.train:
            if records[i].trajectory and records[i].trajectory == records[j].trajectory:
                assert abs(records[i].time_fs - records[j].time_fs) >= gap, (records[i], records[j])
    assert min_gap(records, split.train, split.test) >= gap
    assert split.summary['leak_free'] and split.summary['test_gap_fs'] == gap
    # Frames inside the gap are counted, not silently dropped.
    assert split.summary['n_excluded_by_gap'] == len(excluded)
    assert split.summary['n_train'] + split.summary['n_test'] + len(excluded) == len(records)
    # Whole blocks: a perturbation family, an AL iteration is all test or not test at all.
    groups = collections.defaultdict(set)
    for i, r in enumerate(records):
        if r.family:
            groups[r.family].add(i in test)
        if r.origin == 'AL':
            groups[f'AL{r.iteration}'].add(i in test)
    assert all(len(flags) == 1 for flags in groups.values())
    # Every origin has blocks enough: each is in the test set, and keeps a training block (which the gap may empty).
    assert set(split.summary['test_by_origin']) == {'EQ', 'nEQ', 'AL'}
    assert split.summary['origins_without_test_block'] == []
    assert set(split.summary['train_by_origin']) | set(split.summary['excluded_by_origin']) == {'EQ', 'nEQ', 'AL'}
    assert split.summary['n_test_blocks'] == len(split.summary['test_blocks'])
    # About the asked fraction (whole blocks make it coarse).
    assert 0.1 < len(test) / len(records) < 0.35


def test_test_segments_are_contiguous_in_time():
    """An AIMD test block is one segment of ``test_block_fs``: its frames are consecutive frames of the run."""
    records = synthetic_records()
    split = block_test_split(records, 0.2, 3, test_gap_fs=5.0, test_block_fs=10.0)
    segments = [b for b in split.summary['test_blocks'] if b['block'].startswith('segment')]
    assert segments
    for block in segments:
        low, high = block['time_fs']
        trajectory = block['block'].split()[1].split(':')[0]
        eq = [i for i in split.test if records[i].origin == 'EQ' and records[i].trajectory == trajectory]
        inside = [i for i in eq if low <= records[i].time_fs <= high]
        assert high - low < 10.0 and len(inside) == round((high - low) / 0.5) + 1


def test_a_random_frame_split_leaks():
    """The assertion above can fail: a random split of the same frames puts test frames 0.5 fs from training ones."""
    records = synthetic_records()
    train, test = split_indices([r.origin for r in records], [0.8, 0.2], 0, stratify=True)
    assert min_gap(records, train, test) < 5.0


def test_deterministic_by_seed():
    records = synthetic_records()
    one = block_test_split(records, 0.2, 7, test_gap_fs=5.0, test_block_fs=10.0)
    two = block_test_split(records, 0.2, 7, test_gap_fs=5.0, test_block_fs=10.0)
    other = block_test_split(records, 0.2, 8, test_gap_fs=5.0, test_block_fs=10.0)
    assert one.test == two.test and one.train == two.train and one.summary == two.summary
    assert other.test != one.test


def test_origin_with_a_single_block_stays_in_training():
    """One AL iteration: not enough blocks for a test block, said so; the others are still represented."""
    records = synthetic_records(n_al=1)
    split = block_test_split(records, 0.2, 0, test_gap_fs=5.0, test_block_fs=10.0)
    assert split.summary['origins_without_test_block'] == ['AL']
    assert 'AL' not in split.summary['test_by_origin'] and split.summary['train_by_origin']['AL'] == 5


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'test_gap_fs': -1.0}, '`test_gap_fs` must be >= 0'),
        ({'test_block_fs': 0.0}, '`test_block_fs` must be > 0'),
        ({'test_fraction': 0.0}, '`test_fraction` must be in (0, 1)'),
        ({'test_fraction': 1.0}, '`test_fraction` must be in (0, 1)'),
        ({'seed': -1}, '`seed` must be >= 0'),
    ],
)
def test_invalid_settings(kwargs, message):
    arguments = {'test_fraction': 0.2, 'seed': 0, 'test_gap_fs': 5.0, 'test_block_fs': 10.0, **kwargs}
    records = synthetic_records()
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        block_test_split(records, arguments.pop('test_fraction'), arguments.pop('seed'), **arguments)
    assert validate_block_split('x', None, 'y') and not validate_block_split(0.2, 0.0, 1.0)


def test_a_fraction_that_leaves_no_block():
    """One trajectory shorter than one segment: a single block, nothing can be held out."""
    records = [FrameRecord('EQ', 'A', 0.5 * k) for k in range(40)]
    with pytest.raises(ValueError, match=r'leaves no test block.*lower `test_block_fs`'):
        block_test_split(records, 0.2, 0, test_gap_fs=1.0, test_block_fs=100.0)


def test_a_gap_that_leaves_no_training_frame():
    records = [FrameRecord('EQ', 'A', 0.5 * k) for k in range(40)]
    with pytest.raises(ValueError, match=r'no training frame is left.*lower `test_gap_fs`'):
        block_test_split(records, 0.2, 0, test_gap_fs=100.0, test_block_fs=5.0)


def test_frame_records_from_frames_metadata():
    """AIMD steps sampled as EQ frames keep their time; nEQ frames find their parent's time; AL keeps iteration."""
    eq = json.dumps({'generator': 'md_sample', 'trajectory_generator': 'cp2k_aimd', 'step': 40, 'time_fs': 20.0})
    neq = json.dumps({'generator': 'rattle', 'source_index': 1, 'sigma': 0.05})
    parents = {('eqset', 1): ('traj', 20.0)}
    records = frame_records(
        ['EQ', 'nEQ', 'nEQ', 'AL', 'import'],
        ['traj', 'eqset', 'other', 'mdrun', ''],
        [eq, neq, json.dumps({'generator': 'rattle', 'source_index': 0}), '', ''],
        [-1, -1, -1, 2, -1],
        parent=lambda uuid, index: parents.get((uuid, index)),
    )
    assert records[0] == FrameRecord('EQ', 'traj', 20.0)
    assert records[1] == FrameRecord('nEQ', 'traj', 20.0, family='eqset:1')
    assert records[2].family == 'other:0' and records[2].trajectory == '' and np.isnan(records[2].time_fs)
    assert records[3].iteration == 2 and records[4].trajectory == ''


def _two_compositions(n_big: int, n_small: int) -> list[FrameRecord]:
    """EQ frames of a large PYR14TFSI trajectory and a small Li-containing one (0.5 fs apart)."""
    neat, lithium = 'PYR14:2 TFSI:2', 'Li:1 PYR14:2 TFSI:3'
    records = [FrameRecord('EQ', 'neat', 0.5 * k, composition=neat) for k in range(n_big)]
    records += [FrameRecord('EQ', 'li', 0.5 * k, composition=lithium) for k in range(n_small)]
    return records


@pytest.mark.parametrize('seed', range(8))
def test_every_composition_has_test_blocks(seed):
    """With compositions, each one gets a share of the test set: a 10x smaller trajectory is never left without
    test frames, and the test shares follow the frame counts of each composition."""
    records = _two_compositions(400, 40)
    split = block_test_split(records, 0.2, seed, test_gap_fs=2.0, test_block_fs=5.0)
    by_composition = split.summary['test_by_composition']
    assert set(by_composition) == {'PYR14:2 TFSI:2', 'Li:1 PYR14:2 TFSI:3'}
    assert by_composition['Li:1 PYR14:2 TFSI:3'] == pytest.approx(8, abs=5)
    assert by_composition['PYR14:2 TFSI:2'] == pytest.approx(80, abs=10)
    assert split.summary['origins_without_test_block'] == []
    assert min_gap(records, split.train, split.test) >= 2.0


def test_without_compositions_a_small_trajectory_can_miss_the_test_set():
    """The same records without composition keys: the stratification is by origin only, and some seed leaves the
    small composition out of the test set (why the keys are passed for frames of several compositions)."""
    stripped = [FrameRecord(r.origin, r.trajectory, r.time_fs) for r in _two_compositions(400, 40)]
    missed = 0
    for seed in range(8):
        split = block_test_split(stripped, 0.2, seed, test_gap_fs=2.0, test_block_fs=5.0)
        missed += not any(stripped[i].trajectory == 'li' for i in split.test)
        assert 'test_by_composition' not in split.summary
    assert missed > 0
