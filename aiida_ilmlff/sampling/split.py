"""The splits of a frame set: the stratified train / valid / test split, the held-out test set made of whole
blocks with a time gap, and largest-remainder allocation.

Pure numpy (no AiiDA). The ``split_frames`` calcfunction (:mod:`aiida_ilmlff.calculations.functions.frames`), the
committee work chain and the training CalcJobs split with :func:`split_indices`, so one seed gives one split
wherever it is made. The pipeline's held-out test set (``hold_out_test_set``) is :func:`block_test_split`: whole
AIMD segments, perturbation families and active-learning iterations, with a minimum time gap to training frames
of the same trajectory, so the test errors are not those of near-copies of training frames.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import typing as t

import numpy as np

__all__ = (
    'BLOCK_SPLIT_DEFAULTS',
    'SPLIT_NAMES',
    'BlockSplit',
    'FrameRecord',
    'block_test_split',
    'frame_records',
    'largest_remainder',
    'split_counts',
    'split_indices',
    'time_gaps',
    'train_valid_indices',
    'validate_block_split',
)

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


# ----------------------------------------------------------------------------------------- held-out blocks

#: Defaults of the held-out test split (:func:`block_test_split`): segment length and gap in fs.
BLOCK_SPLIT_DEFAULTS = {'test_block_fs': 100.0, 'test_gap_fs': 25.0}


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """What the block split needs to know of one frame (see :func:`frame_records`).

    :param origin: ``EQ``, ``nEQ``, ``AL`` or ``import``.
    :param trajectory: the trajectory the frame belongs to, or whose frame it was perturbed from ('' if none).
    :param time_fs: its time in that trajectory [fs] (the parent's time for a perturbed frame; nan if unknown).
    :param family: the perturbation family ('' if the frame was not perturbed from a parent frame).
    :param iteration: the active-learning iteration (-1 if none).
    :param composition: the composition key of its box ('' if unknown; :func:`aiida_ilmlff.common.composition_key`).
    """

    origin: str
    trajectory: str = ''
    time_fs: float = float('nan')
    family: str = ''
    iteration: int = -1
    composition: str = ''

    @property
    def stratum(self) -> str:
        """What the test set must hold a share of: the origin, per composition when the frames have several."""
        return f'{self.origin} [{self.composition}]' if self.composition else self.origin


def _perturbation(text: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def frame_records(
    origins: t.Sequence[str],
    sources: t.Sequence[str],
    perturbations: t.Sequence[str],
    iterations: t.Sequence[int],
    parent: t.Callable[[str, int], tuple[str, float] | None] | None = None,
    compositions: t.Sequence[str] | None = None,
) -> list[FrameRecord]:
    """The :class:`FrameRecord` of every frame, from ``FramesData`` metadata.

    * a frame whose ``perturbation`` has ``time_fs`` (CP2K AIMD steps, generator ``cp2k_aimd``; EQ frames sampled
      from them keep ``step`` and ``time_fs``; hot-MD nEQ frames) belongs to the trajectory ``source`` at that time;
    * a frame perturbed from a parent (``perturbation.source_index``, :mod:`aiida_ilmlff.sampling.perturb`) belongs
      to the family ``(source, source_index)``; ``parent(source, source_index)`` may give the parent's
      ``(trajectory, time_fs)`` (the calcfunction looks the parent frame set up by uuid), so the time gap also
      keeps a test family away from its parent's neighbours in training and the other way round;
    * ``AL`` frames carry their ``iteration``.

    :param origins, sources, perturbations, iterations: ``(N,)`` per-frame metadata (``FramesData.origins``,
        ``.sources``, ``.perturbations`` (JSON text), ``.iterations``).
    :param compositions: ``(N,)`` composition keys (``FramesData.composition_keys``); given only when the frames
        hold more than one composition, so that every composition gets its share of the test set.
    :returns: ``N`` records.
    """
    records = []
    if compositions is None:
        compositions = [''] * len(origins)
    rows = zip(origins, sources, perturbations, iterations, compositions, strict=True)
    for origin, source, text, iteration, composition in rows:
        record = _perturbation(str(text))
        trajectory, time_fs, family = '', float('nan'), ''
        if record.get('time_fs') is not None and 'source_index' not in record:
            trajectory, time_fs = str(source), float(record['time_fs'])
        elif 'source_index' in record:
            family = f'{source}:{int(record["source_index"])}'
            found = parent(str(source), int(record['source_index'])) if parent is not None else None
            if found is not None:
                trajectory, time_fs = str(found[0]), float(found[1])
        records.append(
            FrameRecord(
                str(origin),
                trajectory,
                time_fs if np.isfinite(time_fs) else float('nan'),
                family,
                int(iteration),
                str(composition),
            )
        )
    return records


def _block_keys(records: t.Sequence[FrameRecord], block_fs: float) -> list[str]:
    """The block of every frame: an AL iteration, a segment of ``block_fs`` of one trajectory (counted from its
    first frame; a perturbed frame is in its parent's segment), a perturbation family of unknown parent time, or
    the frame alone."""
    starts: dict[str, float] = {}
    for r in records:
        if r.trajectory and np.isfinite(r.time_fs) and r.origin != 'AL':
            starts[r.trajectory] = min(starts.get(r.trajectory, r.time_fs), r.time_fs)
    keys = []
    for i, r in enumerate(records):
        if r.origin == 'AL' and r.iteration >= 0:
            keys.append(f'AL iteration {r.iteration}')
        elif r.trajectory in starts and np.isfinite(r.time_fs):
            segment = int(np.floor((r.time_fs - starts[r.trajectory]) / block_fs))
            keys.append(f'segment {r.trajectory}:{segment}')
        elif r.family:
            keys.append(f'family {r.family}')
        else:
            keys.append(f'frame {i}')
    return keys


def time_gaps(records: t.Sequence[FrameRecord], train: t.Sequence[int], test: t.Sequence[int]) -> dict[str, float]:
    """The smallest time distance [fs] between a training and a test frame of the same trajectory, per trajectory
    that has both (frames with an unknown time are not counted).

    The check behind "no test frame lies within the gap of a training frame of the same trajectory":
    ``min(time_gaps(...).values(), default=inf) >= gap``.
    """
    gaps: dict[str, float] = {}
    test_times: dict[str, list[float]] = {}
    for i in test:
        r = records[i]
        if r.trajectory and np.isfinite(r.time_fs):
            test_times.setdefault(r.trajectory, []).append(r.time_fs)
    for i in train:
        r = records[i]
        if r.trajectory in test_times and np.isfinite(r.time_fs):
            distance = float(np.min(np.abs(np.asarray(test_times[r.trajectory]) - r.time_fs)))
            gaps[r.trajectory] = min(gaps.get(r.trajectory, np.inf), distance)
    return gaps


def validate_block_split(test_fraction: t.Any, test_gap_fs: t.Any, test_block_fs: t.Any) -> list[str]:
    """Messages for invalid settings of :func:`block_test_split` (empty when valid); each names the key and the fix."""
    messages = []
    try:
        fraction = float(test_fraction)
        if not 0.0 < fraction < 1.0:
            messages.append(f'`test_fraction` must be in (0, 1), got {test_fraction}')
    except (TypeError, ValueError):
        messages.append(f'`test_fraction` must be a number in (0, 1), got {test_fraction!r}')
    try:
        gap = float(test_gap_fs)
        if not np.isfinite(gap) or gap < 0:
            messages.append(
                f'`test_gap_fs` must be >= 0 fs (the time between a test frame and any training frame of the same '
                f'trajectory), got {test_gap_fs}'
            )
    except (TypeError, ValueError):
        messages.append(f'`test_gap_fs` must be a number of fs >= 0, got {test_gap_fs!r}')
    try:
        block = float(test_block_fs)
        if not np.isfinite(block) or block <= 0:
            messages.append(
                f'`test_block_fs` must be > 0 fs (the length of one held-out AIMD segment), got {test_block_fs}'
            )
    except (TypeError, ValueError):
        messages.append(f'`test_block_fs` must be a number of fs > 0, got {test_block_fs!r}')
    return messages


@dataclasses.dataclass
class BlockSplit:
    """Result of :func:`block_test_split`: sorted frame indices and the record of the split."""

    train: list[int]
    test: list[int]
    excluded: list[int]
    summary: dict[str, t.Any]


def block_test_split(
    records: t.Sequence[FrameRecord],
    test_fraction: float,
    seed: int,
    *,
    test_gap_fs: float = BLOCK_SPLIT_DEFAULTS['test_gap_fs'],
    test_block_fs: float = BLOCK_SPLIT_DEFAULTS['test_block_fs'],
) -> BlockSplit:
    """Hold out a test set made of whole blocks, at least ``test_gap_fs`` away from training frames in time.

    Blocks (see :func:`frame_records`): contiguous segments of ``test_block_fs`` of one AIMD trajectory, with the
    perturbation families whose parent frame lies in that segment; families of unknown parent time as blocks of
    their own; whole active-learning iterations; a frame with none of these is a block of its own. Test frames are
    drawn block by block, in an order shuffled by ``seed``: first one block for every origin (every origin of every
    composition, when the records carry compositions: :attr:`FrameRecord.stratum`) found in two blocks or
    more (the origin in fewest blocks first, the block closest to the shares), then every block that brings the
    frames of each origin closer to its share ``test_fraction x frames of that origin`` (Hamilton rounding of
    ``round(test_fraction x N)``); no block is taken that would leave an origin without a training block. Whole
    blocks make the test fraction coarse when the blocks are large (``n_test`` says what it is). Then every
    training frame of a trajectory closer than ``test_gap_fs`` in time to a test frame of that trajectory (a
    perturbed frame counts at
    its parent's time) is left out of both sets (``excluded``), so ``min(time_gaps(records, train, test)) >= gap``.
    Random frame splits of AIMD data leak (neighbouring frames 0.5 fs apart are nearly the same configuration);
    this is the blocked cross-validation of Roberts et al., Ecography 40, 913 (2017) applied to trajectories.

    :param records: ``(N,)`` :class:`FrameRecord`. :param test_fraction: in (0, 1). :param seed: >= 0.
    :param test_gap_fs: >= 0 fs. :param test_block_fs: > 0 fs.
    :returns: :class:`BlockSplit`: ``train``, ``test``, ``excluded`` (sorted indices) and ``summary`` (the
        settings, ``n_blocks``, ``n_test_blocks``, ``test_blocks`` (key, origin, frames, time range), frame
        counts per origin (and ``train_by_composition``/``test_by_composition`` when the records carry
        compositions), ``origins_without_test_block`` (strata, e.g. ``'EQ [PYR14:2 TFSI:2]'``), ``min_gap_fs``
        (smallest observed train-test distance per trajectory) and ``leak_free``).
    :raises ValueError: invalid settings (:func:`validate_block_split`), a negative seed, a fraction that leaves no
        test block (every origin has a single block), or no training frame left after the gap.
    """
    messages = validate_block_split(test_fraction, test_gap_fs, test_block_fs)
    if int(seed) < 0:
        messages.append(f'`seed` must be >= 0, got {seed}')
    if messages:
        raise ValueError('; '.join(messages))
    fraction, gap, block_fs = float(test_fraction), float(test_gap_fs), float(test_block_fs)
    n_frames = len(records)
    keys = _block_keys(records, block_fs)
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    # Strata: the origins, per composition when the records carry one (FrameRecord.stratum).
    origins = sorted({r.stratum for r in records})
    content = {
        key: np.array([sum(records[i].stratum == o for i in index) for o in origins], dtype=float)
        for key, index in members.items()
    }
    counts = np.sum(list(content.values()), axis=0)
    n_test = max(1, round(fraction * n_frames))
    shares = largest_remainder(counts * n_test / max(n_frames, 1), n_test).astype(float)
    blocks_with = {o: sum(1 for c in content.values() if c[k] > 0) for k, o in enumerate(origins)}
    rng = np.random.default_rng(int(seed))
    order = [sorted(members)[k] for k in rng.permutation(len(members))]
    chosen: list[str] = []
    size = np.zeros(len(origins))

    def allowed(key: str) -> bool:
        """Taking ``key`` leaves every origin at least one training block."""
        return all(
            sum(1 for c in (content[b] for b in (*chosen, key)) if c[k] > 0) < blocks_with[o]
            for k, o in enumerate(origins)
            if content[key][k] > 0
        )

    # First, for every origin found in two blocks or more (the origin in fewest blocks first), the block with that
    # origin closest to the shares (the first in the shuffled order among equals), then the blocks that bring every
    # origin closer to its share (the sum over origins of |frames - share| decreases).
    for k, origin in sorted(enumerate(origins), key=lambda item: (blocks_with[item[1]], item[1])):
        if blocks_with[origin] < 2 or size[k] > 0:
            continue
        candidates = [key for key in order if key not in chosen and content[key][k] > 0 and allowed(key)]
        if candidates:
            key = min(candidates, key=lambda c: np.abs(size + content[c] - shares).sum())
            chosen.append(key)
            size += content[key]
    for key in order:
        if key in chosen or not allowed(key):
            continue
        if np.abs(size + content[key] - shares).sum() < np.abs(size - shares).sum():
            chosen.append(key)
            size += content[key]
    without = [o for k, o in enumerate(origins) if size[k] == 0]
    block_origin = {key: '+'.join(o for k, o in enumerate(origins) if content[key][k] > 0) for key in members}
    if not chosen:
        raise ValueError(
            f'`test_fraction`={fraction} leaves no test block: every origin of the {n_frames} frames has a single '
            f'block ({len(members)} blocks of {test_block_fs} fs segments, perturbation families and AL '
            'iterations); add frames or lower `test_block_fs`'
        )
    test = sorted(i for key in chosen for i in members[key])
    test_set = set(test)
    test_times: dict[str, list[float]] = {}
    for i in test:
        r = records[i]
        if r.trajectory and np.isfinite(r.time_fs):
            test_times.setdefault(r.trajectory, []).append(r.time_fs)
    train, excluded = [], []
    for i, r in enumerate(records):
        if i in test_set:
            continue
        near = (
            r.trajectory in test_times
            and np.isfinite(r.time_fs)
            and float(np.min(np.abs(np.asarray(test_times[r.trajectory]) - r.time_fs))) < gap
        )
        (excluded if near else train).append(i)
    if not train:
        raise ValueError(
            f'no training frame is left: {len(test)} test frames and {len(excluded)} frames within `test_gap_fs`='
            f'{gap} fs of them; lower `test_gap_fs` or `test_fraction`, or add frames'
        )
    gaps = time_gaps(records, train, test)

    def by_origin(index: t.Sequence[int], field: str = 'origin') -> dict[str, int]:
        return dict(sorted(collections.Counter(getattr(records[i], field) for i in index).items()))

    test_blocks = []
    for key in sorted(chosen):
        times = [records[i].time_fs for i in members[key] if np.isfinite(records[i].time_fs)]
        test_blocks.append(
            {
                'block': key,
                'origin': block_origin[key],
                'n_frames': len(members[key]),
                'time_fs': [float(min(times)), float(max(times))] if times else None,
            }
        )
    summary = {
        'method': 'blocks',
        'test_fraction': fraction,
        'seed': int(seed),
        'test_gap_fs': gap,
        'test_block_fs': block_fs,
        'n_frames': n_frames,
        'n_train': len(train),
        'n_test': len(test),
        'n_excluded_by_gap': len(excluded),
        'n_blocks': len(members),
        'n_test_blocks': len(chosen),
        'test_blocks': test_blocks,
        'train_by_origin': by_origin(train),
        'test_by_origin': by_origin(test),
        'excluded_by_origin': by_origin(excluded),
        'origins_without_test_block': without,
        **(
            {
                'train_by_composition': by_origin(train, 'composition'),
                'test_by_composition': by_origin(test, 'composition'),
            }
            if any(r.composition for r in records)
            else {}
        ),
        'min_gap_fs': gaps,
        'leak_free': all(value >= gap for value in gaps.values()),
    }
    return BlockSplit(train, test, excluded, summary)
