"""The one stratified split of a frame set into train / valid / test, and largest-remainder allocation.

Pure numpy (no AiiDA). The ``split_frames`` calcfunction (:mod:`aiida_ilmlff.calculations.functions.frames`), the
pipeline's held-out test set, the committee work chain and the training CalcJobs all split with
:func:`split_indices`, so one seed gives one split wherever it is made.
"""

from __future__ import annotations

import typing as t

import numpy as np

__all__ = ('SPLIT_NAMES', 'largest_remainder', 'split_counts', 'split_indices', 'train_valid_indices')

#: Names of the parts of a split, in order (two fractions give train and valid only).
SPLIT_NAMES = ('train', 'valid', 'test')


def largest_remainder(raw: t.Sequence[float], total: int) -> np.ndarray:
    """Round non-negative shares ``raw`` (summing to ``total``) to integers that sum to ``total``.

    Each share is floored, then the shares with the largest remainders get one more, ties to the earlier
    share (Hamilton's method).

    :param raw: ``(K,)`` real shares. :param total: the integer total.
    :returns: ``(K,)`` int counts.
    """
    raw = np.asarray(raw, dtype=float)
    counts = np.floor(raw).astype(int)
    remainder = raw - counts
    for index in sorted(range(len(raw)), key=lambda k: (-remainder[k], k))[: int(total) - int(counts.sum())]:
        counts[index] += 1
    return counts


def split_counts(n_frames: int, fractions: t.Sequence[float]) -> list[int]:
    """Frames per split for ``n_frames`` (:func:`largest_remainder` of ``fractions * n_frames``).

    :param fractions: 2 (train, valid) or 3 (train, valid, test) positive fractions summing to 1.
    :returns: the counts, in the order of ``fractions``.
    :raises ValueError: if ``fractions`` are not 2 or 3 positive numbers summing to 1, or a split would be
        empty.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) not in (2, 3):
        raise ValueError(f'fractions must be 2 (train, valid) or 3 (train, valid, test) numbers, got {fractions}')
    if any(not np.isfinite(f) or f <= 0 for f in fractions):
        raise ValueError(f'fractions must be positive, got {fractions}')
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f'fractions must sum to 1, got {fractions} (sum {sum(fractions)})')
    counts = largest_remainder(np.asarray(fractions) * n_frames, n_frames)
    empty = [SPLIT_NAMES[k] for k, count in enumerate(counts) if count == 0]
    if empty:
        raise ValueError(
            f'split {empty} would be empty: {n_frames} frames with fractions {fractions}; '
            'add frames, raise those fractions or use two splits'
        )
    return counts.tolist()


def split_indices(
    origins: t.Sequence[str], fractions: t.Sequence[float], seed: int, stratify: bool = False
) -> list[np.ndarray]:
    """Split frame indices ``0..N-1`` into ``len(fractions)`` sorted index arrays, deterministically by ``seed``.

    Without ``stratify`` the frames are shuffled and cut. With ``stratify`` each origin group is shuffled and
    its frames spread evenly over ``(0, 1)``; cutting the frames ordered by that position gives every split
    about the same origin mix as the whole set, while the split sizes stay exactly those of
    :func:`split_counts`.

    :param origins: ``(N,)`` origin of every frame (``EQ``, ``nEQ``, ``AL``, ``import``).
    :returns: one sorted int64 index array per fraction.
    :raises ValueError: as :func:`split_counts`, or for a negative seed.
    """
    if int(seed) < 0:
        raise ValueError(f'seed must be >= 0, got {seed}')
    origins = np.asarray(origins, dtype=str)
    counts = split_counts(len(origins), fractions)
    rng = np.random.default_rng(int(seed))
    if stratify:
        position = np.empty(len(origins))
        for origin in sorted(set(origins.tolist())):
            members = np.flatnonzero(origins == origin)
            position[members[rng.permutation(len(members))]] = (np.arange(len(members)) + 0.5) / len(members)
        order = np.lexsort((rng.random(len(origins)), position))
    else:
        order = rng.permutation(len(origins))
    return [np.sort(part) for part in np.split(order, np.cumsum(counts)[:-1])]


def train_valid_indices(
    origins: t.Sequence[str], valid_fraction: float, seed: int, *, stratify: bool = True, min_frames: int = 1
) -> tuple[list[int], list[int]]:
    """Two-way stratified split (:func:`split_indices` with fractions ``(1 - valid_fraction, valid_fraction)``).

    :param valid_fraction: fraction in (0, 1) of the frames that go to ``valid``.
    :param min_frames: the smallest size either part may have.
    :returns: ``(train, valid)`` sorted lists of frame indices.
    :raises ValueError: for a fraction outside (0, 1), a negative seed, or a part smaller than ``min_frames``
        (the message names ``valid_fraction`` and the fix).
    """
    valid_fraction = float(valid_fraction)
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f'`valid_fraction` must be in (0, 1), got {valid_fraction}')
    n_frames = len(origins)
    fractions = (1.0 - valid_fraction, valid_fraction)
    n_train, n_valid = largest_remainder(np.asarray(fractions) * n_frames, n_frames).tolist()
    if n_train < max(min_frames, 1) or n_valid < max(min_frames, 1):
        raise ValueError(
            f'`valid_fraction`={valid_fraction} of {n_frames} frames gives {n_train} training and {n_valid} '
            f'validation frames: each split needs at least {min_frames}; add frames, change the fraction or '
            'pass `valid` explicitly'
        )
    train, valid = split_indices(origins, fractions, seed, stratify)
    return [int(i) for i in train], [int(i) for i in valid]
