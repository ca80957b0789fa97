"""Calcfunctions on frame sets: merge, split into train/valid/test, hold out a leak-free test set of whole blocks,
select (cheap, so in the provenance graph).

Each returns new ``FramesData`` nodes linked to its inputs. Errors are raised as ``ValueError`` with the
reason and the fix; the calcfunction node is then marked excepted and nothing is returned.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common import exceptions
from aiida.engine import calcfunction

from aiida_ilmlff.data.frame_arrays import FrameArrays
from aiida_ilmlff.data.frames import FramesData
from aiida_ilmlff.sampling.split import (
    BLOCK_SPLIT_DEFAULTS,
    SPLIT_NAMES,
    block_test_split,
    frame_records,
    split_indices,
)

__all__ = ('frame_records_of', 'hold_out_test_set', 'merge_frames', 'select_frames', 'split_frames')


@calcfunction
def merge_frames(allow_mixed_level_of_theory: orm.Bool | None = None, **frames: FramesData) -> FramesData:
    """Concatenate frame sets, keeping every frame's origin and metadata.

    :param frames: ``FramesData`` nodes, merged in the sorted order of their keyword names.
    :param allow_mixed_level_of_theory: ``Bool(True)`` to accept labels from different levels of theory
        (frames without labels, fingerprint '', never count as a different level).
    :returns: the merged ``FramesData``.
    :raises ValueError: if no frame set is given, or if the labelled frames carry more than one
        level-of-theory fingerprint (the message lists them) and mixing is not allowed.
    :raises TypeError: if an input is not a ``FramesData``.
    """
    if not frames:
        raise ValueError('merge_frames needs at least one FramesData keyword argument')
    for name, node in frames.items():
        if not isinstance(node, FramesData):
            raise TypeError(f'input `{name}` is a {type(node).__name__}, not a FramesData')
    names = sorted(frames)
    fingerprints = sorted({lot for name in names for lot in frames[name].base.attributes.get('level_of_theory')})
    allow = bool(allow_mixed_level_of_theory.value) if allow_mixed_level_of_theory is not None else False
    if len(fingerprints) > 1 and not allow:
        by_input = {name: frames[name].base.attributes.get('level_of_theory') for name in names}
        raise ValueError(
            f'refusing to merge labels from {len(fingerprints)} levels of theory {fingerprints} '
            f'(per input: {by_input}); relabel the frames, or pass allow_mixed_level_of_theory=Bool(True)'
        )
    merged = FrameArrays.concatenate([frames[name].get_arrays() for name in names])
    return FramesData._from_frame_arrays(merged)


@calcfunction
def split_frames(
    frames: FramesData, fractions: orm.List, seed: orm.Int, stratify: orm.Bool | None = None
) -> dict[str, FramesData]:
    """Split a frame set into ``train``, ``valid`` and (with three fractions) ``test``.

    :param fractions: ``List`` of 2 or 3 positive fractions summing to 1 (train, valid[, test]).
    :param seed: ``Int`` seed; the same seed gives the same split.
    :param stratify: ``Bool(True)`` to keep the origin mix (EQ/nEQ/AL/import) the same in every split.
    :returns: ``{'train': FramesData, 'valid': FramesData[, 'test': FramesData]}``, frames in their original
        order.
    :raises ValueError: for invalid fractions, or a split that would be empty.
    """
    do_stratify = bool(stratify.value) if stratify is not None else False
    parts = split_indices(frames.origins, fractions.get_list(), seed.value, do_stratify)
    arrays = frames.get_arrays()
    return {name: FramesData._from_frame_arrays(arrays.select(index)) for name, index in zip(SPLIT_NAMES, parts)}


def _parent_lookup():
    """``(source uuid, index) -> (trajectory, time_fs)`` of a perturbed frame's parent, read from the parent frame set
    (loaded by uuid; ``None`` when it is not a stored ``FramesData`` or the parent frame has no time)."""
    from aiida_ilmlff.sampling.split import frame_records

    cache: dict[str, list | None] = {}

    def parent(uuid: str, index: int):
        if uuid not in cache:
            try:
                node = orm.load_node(uuid)
            except (exceptions.NotExistent, exceptions.MultipleObjectsError, ValueError, TypeError):
                # not a node of this profile: the family has no known time
                node = None
            cache[uuid] = (
                frame_records(node.origins, node.sources, node.perturbations, node.iterations)
                if isinstance(node, FramesData)
                else None
            )
        records = cache[uuid]
        if records is None or not 0 <= index < len(records) or not records[index].trajectory:
            return None
        return records[index].trajectory, records[index].time_fs

    return parent


def frame_records_of(frames: FramesData) -> list:
    """The :class:`~aiida_ilmlff.sampling.split.FrameRecord` of every frame of ``frames`` as ``hold_out_test_set``
    sees them: trajectory and time of AIMD frames, perturbation families placed at their parent's time (the parent
    frame set looked up by uuid), AL iterations. Use it with :func:`~aiida_ilmlff.sampling.split.time_gaps` to check
    a split. Frames of several compositions carry their composition key, so that the test set holds blocks of every
    composition."""
    several = len(frames.base.attributes.get('compositions', [])) > 1
    return frame_records(
        frames.origins,
        frames.sources,
        frames.perturbations,
        frames.iterations,
        _parent_lookup(),
        compositions=frames.composition_keys if several else None,
    )


@calcfunction
def hold_out_test_set(
    frames: FramesData,
    test_fraction: orm.Float,
    seed: orm.Int,
    test_gap_fs: orm.Float | None = None,
    test_block_fs: orm.Float | None = None,
) -> dict[str, orm.Data]:
    """Hold out a ``test`` set of whole blocks of ``frames``, a time gap away from the ``train`` set.

    :func:`~aiida_ilmlff.sampling.split.block_test_split`: the blocks are AIMD segments of ``test_block_fs``
    (frames of one ``source`` with ``time_fs`` in their ``perturbation``), perturbation families (nEQ frames of one
    parent: ``source`` + ``perturbation.source_index``; the parent's trajectory and time are read from the parent
    frame set, loaded by uuid) and active-learning iterations; every origin (of every composition, when ``frames``
    hold several) with two blocks or more is in the test set; training frames of a trajectory within
    ``test_gap_fs`` of a test frame are left out of both sets.

    :param test_fraction: ``Float`` in (0, 1). :param seed: ``Int`` >= 0.
    :param test_gap_fs: ``Float`` >= 0 [fs] (default 25). :param test_block_fs: ``Float`` > 0 [fs] (default 100).
    :returns: ``{'train': FramesData, 'test': FramesData, 'split': Dict}``, frames in their original order;
        ``split`` records the blocks, the gap and the counts (see ``block_test_split``), with ``excluded_indices``
        (frames of ``frames`` in neither set) and ``test_indices``.
    :raises ValueError: invalid settings, a fraction that leaves no test block, or no training frame left.
    """
    settings = {
        'test_gap_fs': float(test_gap_fs.value) if test_gap_fs is not None else BLOCK_SPLIT_DEFAULTS['test_gap_fs'],
        'test_block_fs': float(test_block_fs.value)
        if test_block_fs is not None
        else BLOCK_SPLIT_DEFAULTS['test_block_fs'],
    }
    records = frame_records_of(frames)
    split = block_test_split(records, float(test_fraction.value), int(seed.value), **settings)
    arrays = frames.get_arrays()
    summary = {**split.summary, 'test_indices': split.test, 'excluded_indices': split.excluded}
    return {
        'train': FramesData._from_frame_arrays(arrays.select(np.asarray(split.train, dtype=np.int64))),
        'test': FramesData._from_frame_arrays(arrays.select(np.asarray(split.test, dtype=np.int64))),
        'split': orm.Dict(summary),
    }


@calcfunction
def select_frames(frames: FramesData, indices: orm.List) -> FramesData:
    """The frames ``indices`` (a ``List`` of ints, negative allowed) of ``frames``, in that order.

    :raises IndexError: for an index out of range. :raises ValueError: for an empty list or non-integers.
    """
    values = indices.get_list()
    if not values:
        raise ValueError('indices is empty: a frame set needs at least one frame')
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f'indices must be integers, got {values[:10]}')
    return FramesData._from_frame_arrays(frames.get_arrays().select(np.asarray(values, dtype=np.int64)))
