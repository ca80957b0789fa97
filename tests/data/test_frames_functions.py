"""merge_frames / split_frames / select_frames calcfunctions and the split arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_ilmlff.calculations.functions.frames import merge_frames, select_frames, split_frames
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.sampling.split import split_counts, split_indices


def _set(n, origin, level_of_theory='cp2k:gfn1-xtb:abc', seed=0):
    rng = np.random.default_rng(seed)
    return FramesData.from_arrays(
        [8, 1, 1],
        rng.random((n, 3, 3)) * 5,
        np.eye(3) * 5,
        energy=rng.normal(size=n),
        forces=rng.normal(size=(n, 3, 3)),
        origin=origin,
        level_of_theory=level_of_theory,
    )


def test_merge_keeps_origins_and_provenance():
    eq, neq = _set(3, 'EQ'), _set(2, 'nEQ', seed=1)
    merged = merge_frames(a_eq=eq, b_neq=neq)
    assert merged.is_stored
    assert list(merged.origins) == ['EQ'] * 3 + ['nEQ'] * 2
    assert merged.base.attributes.get('origin_counts') == {'EQ': 3, 'nEQ': 2}
    assert np.array_equal(merged.positions, np.concatenate([eq.positions, neq.positions]))
    creator = merged.creator
    assert creator.process_label == 'merge_frames'
    assert {link.link_label for link in creator.base.links.get_incoming().all()} == {'a_eq', 'b_neq'}


def test_merge_unlabelled_frames_do_not_count_as_another_level():
    labelled = _set(2, 'EQ')
    unlabelled = FramesData.from_arrays([1], np.zeros((2, 1, 3)), origin='nEQ')
    merged = merge_frames(x=labelled, y=unlabelled)
    assert merged.base.attributes.get('level_of_theory') == ['cp2k:gfn1-xtb:abc']
    assert merged.base.attributes.get('labelled') is False


def test_merge_refuses_mixed_level_of_theory():
    a, b = _set(2, 'EQ', 'cp2k:gfn1-xtb:abc'), _set(2, 'EQ', 'qe:pbe:def')
    with pytest.raises(ValueError, match=r"2 levels of theory \['cp2k:gfn1-xtb:abc', 'qe:pbe:def'\]") as info:
        merge_frames(a=a, b=b)
    assert 'allow_mixed_level_of_theory=Bool(True)' in str(info.value)
    merged = merge_frames(a=a, b=b, allow_mixed_level_of_theory=orm.Bool(True))
    assert merged.base.attributes.get('level_of_theory') == ['cp2k:gfn1-xtb:abc', 'qe:pbe:def']


def test_merge_rejects_other_nodes():
    with pytest.raises(TypeError, match='not a FramesData'):
        merge_frames(a=_set(1, 'EQ'), b=orm.Int(1))


def test_split_is_deterministic_and_complete():
    frames = _set(20, ['EQ'] * 10 + ['nEQ'] * 10)
    fractions = orm.List([0.8, 0.1, 0.1])
    first = split_frames(frames, fractions, orm.Int(7))
    second = split_frames(frames, fractions, orm.Int(7))
    other = split_frames(frames, fractions, orm.Int(8))
    assert [len(first[k]) for k in ('train', 'valid', 'test')] == [16, 2, 2]
    for key in ('train', 'valid', 'test'):
        assert first[key].sha256 == second[key].sha256
    assert any(first[k].sha256 != other[k].sha256 for k in ('train', 'valid', 'test'))
    all_positions = np.concatenate([first[k].positions for k in ('train', 'valid', 'test')])
    assert sorted(map(tuple, all_positions)) == sorted(map(tuple, frames.positions))


def test_split_stratified_keeps_origin_mix():
    origins = ['EQ'] * 40 + ['nEQ'] * 50 + ['AL'] * 10
    frames = _set(100, origins)
    result = split_frames(frames, orm.List([0.8, 0.1, 0.1]), orm.Int(3), stratify=orm.Bool(True))
    assert result['train'].base.attributes.get('origin_counts') == {'EQ': 32, 'nEQ': 40, 'AL': 8}
    for key in ('valid', 'test'):
        counts = result[key].base.attributes.get('origin_counts')
        assert sum(counts.values()) == 10
        assert abs(counts['EQ'] - 4) <= 1 and abs(counts['nEQ'] - 5) <= 1 and abs(counts.get('AL', 0) - 1) <= 1


def test_split_two_fractions_and_errors():
    frames = _set(5, 'EQ')
    result = split_frames(frames, orm.List([0.6, 0.4]), orm.Int(0))
    assert set(result) == {'train', 'valid'}
    with pytest.raises(ValueError, match=r"split \['test'\] would be empty"):
        split_frames(frames, orm.List([0.8, 0.15, 0.05]), orm.Int(0))
    with pytest.raises(ValueError, match='sum to 1'):
        split_frames(frames, orm.List([0.8, 0.3]), orm.Int(0))
    with pytest.raises(ValueError, match='positive'):
        split_counts(10, [1.0, 0.0])
    with pytest.raises(ValueError, match='2 \\(train, valid\\) or 3'):
        split_counts(10, [1.0])


def test_split_indices_pure():
    origins = ['EQ', 'nEQ'] * 10
    parts = split_indices(origins, [0.5, 0.5], seed=1, stratify=True)
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))
    assert [sum(origins[i] == 'EQ' for i in part) for part in parts] == [5, 5]
    assert split_counts(7, [0.8, 0.1, 0.1]) == [5, 1, 1]  # largest remainders: 5.6, 0.7, 0.7
    assert split_counts(10, [0.8, 0.1, 0.1]) == [8, 1, 1]
    assert split_counts(11, [0.8, 0.1, 0.1]) == [9, 1, 1]


def test_select_frames():
    frames = _set(5, ['EQ', 'nEQ', 'AL', 'EQ', 'import'])
    picked = select_frames(frames, orm.List([4, -1, 1]))
    assert list(picked.origins) == ['import', 'import', 'nEQ']
    assert np.array_equal(picked.get_positions(2), frames.get_positions(1))
    with pytest.raises(IndexError):
        select_frames(frames, orm.List([5]))
    with pytest.raises(ValueError, match='empty'):
        select_frames(frames, orm.List([]))
