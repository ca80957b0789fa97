"""Calcfunctions on frame sets: merge, split into train/valid/test, select (cheap, so in the provenance graph).

Each returns new ``FramesData`` nodes linked to its inputs. Errors are raised as ``ValueError`` with the
reason and the fix; the calcfunction node is then marked excepted and nothing is returned.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.data.frame_arrays import FrameArrays
from aiida_ilmlff.data.frames import FramesData
from aiida_ilmlff.sampling.split import SPLIT_NAMES, split_indices

__all__ = ('hold_out_test_set', 'merge_frames', 'select_frames', 'split_frames')


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


@calcfunction
def hold_out_test_set(frames: FramesData, test_fraction: orm.Float, seed: orm.Int) -> dict[str, FramesData]:
    """Hold out a ``test`` set of ``frames`` (the rest is ``train``), stratified by origin.

    The one stratified split (:func:`~aiida_ilmlff.sampling.split.split_indices` with fractions
    ``(1 - test_fraction, test_fraction)``): the same frames as ``split_frames`` with those two fractions.

    :param test_fraction: ``Float`` in (0, 1). :param seed: ``Int`` seed.
    :returns: ``{'train': FramesData, 'test': FramesData}``, frames in their original order.
    :raises ValueError: for a fraction outside (0, 1) or a split that would be empty.
    """
    fraction = float(test_fraction.value)
    train, test = split_indices(frames.origins, [1.0 - fraction, fraction], seed.value, True)
    arrays = frames.get_arrays()
    return {
        'train': FramesData._from_frame_arrays(arrays.select(train)),
        'test': FramesData._from_frame_arrays(arrays.select(test)),
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
