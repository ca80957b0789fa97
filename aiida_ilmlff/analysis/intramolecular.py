"""Bond-length and bond-angle distributions of a model's MD against a reference run's, per bond and angle type.

One of the checks of a model against its reference level of theory (an AIMD at the same state point): the
distribution of every intramolecular bond length (e.g. B-F, C-N, C-H) and bond angle (F-B-F, C-N-C) over the
frames of each run, compared by their means, their widths and the first Wasserstein distance between them (the
"earth mover's" distance, in the unit of the values: Å or degrees; ``scipy.stats.wasserstein_distance``). A model
that is too stiff gives too narrow a distribution, one with a wrong equilibrium geometry a shifted mean.

The bonds are a fixed list of atom pairs (perceived once, on a frame where the molecules are intact, e.g. with
:func:`aiida_ilmlff.systems.bonds_from_positions` per molecule); angles are the pairs of bonds that share an atom
(:func:`angle_triplets`). Distances and angles are taken under the minimum image of each frame's cell
(``MDAnalysis.lib.distances.calc_bonds`` / ``calc_angles``), so wrapped coordinates are fine.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np
from ase.data import chemical_symbols
from ase.geometry import cell_to_cellpar
from MDAnalysis.lib.distances import calc_angles, calc_bonds
from scipy.stats import wasserstein_distance

from ._common import AnalysisResult

__all__ = (
    'DistributionAgreement',
    'angle_triplets',
    'bond_angles',
    'bond_lengths',
    'distribution_agreement',
    'intramolecular_agreement',
    'type_labels',
)


def angle_triplets(pairs) -> np.ndarray:
    """The bond angles of a bond list: ``(i, j, k)`` for every two bonds ``i-j`` and ``j-k`` sharing atom ``j``.

    :param pairs: (n, 2) bonded atom indices. :returns: (m, 3) int64, ``i < k``, sorted.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    neighbours: dict[int, set[int]] = {}
    for i, j in pairs.tolist():
        neighbours.setdefault(i, set()).add(j)
        neighbours.setdefault(j, set()).add(i)
    triplets = [
        (i, centre, k) for centre, around in neighbours.items() for i, k in itertools.combinations(sorted(around), 2)
    ]
    return np.asarray(sorted(triplets), dtype=np.int64).reshape(-1, 3)


def type_labels(numbers, indices) -> list[str]:
    """Element label of each bond (``'B-F'``) or angle (``'F-B-F'``), the end atoms in alphabetical order.

    :param numbers: (N,) atomic numbers. :param indices: (n, 2) pairs or (n, 3) triplets (centre in the middle).
    """
    numbers = np.asarray(numbers)
    labels = []
    for row in np.asarray(indices, dtype=np.int64).reshape(len(indices), -1):
        symbols = [chemical_symbols[int(numbers[i])] for i in row]
        if len(symbols) == 2:
            symbols = sorted(symbols)
        else:
            first, last = sorted((symbols[0], symbols[2]))
            symbols = [first, symbols[1], last]
        labels.append('-'.join(symbols))
    return labels


def _frames(positions, cells) -> tuple[np.ndarray, np.ndarray]:
    positions = np.asarray(positions, dtype=float)
    if positions.ndim == 2:
        positions = positions[None]
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f'positions must be (F, N, 3), got {positions.shape}')
    cells = np.asarray(cells, dtype=float)
    if cells.shape == (3, 3):
        cells = np.broadcast_to(cells, (len(positions), 3, 3))
    if cells.shape != (len(positions), 3, 3):
        raise ValueError(f'cells must be (3, 3) or ({len(positions)}, 3, 3), got {cells.shape}')
    return positions, cells


def bond_lengths(positions, cells, pairs) -> np.ndarray:
    """Lengths [Å] of the bonds ``pairs`` in every frame, under the minimum image.

    :param positions: (F, N, 3) Å. :param cells: (3, 3) or (F, 3, 3) Å (rows are lattice vectors).
    :param pairs: (n, 2) atom indices. :returns: (F, n).
    """
    positions, cells = _frames(positions, cells)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.array(
        [
            calc_bonds(frame[pairs[:, 0]], frame[pairs[:, 1]], box=cell_to_cellpar(cell))
            for frame, cell in zip(positions, cells)
        ]
    ).reshape(len(positions), len(pairs))


def bond_angles(positions, cells, triplets) -> np.ndarray:
    """Angles [degrees] ``i-j-k`` (at ``j``) of ``triplets`` in every frame, under the minimum image.

    :param positions: (F, N, 3) Å. :param cells: (3, 3) or (F, 3, 3) Å. :param triplets: (m, 3).
    :returns: (F, m) in [0, 180].
    """
    positions, cells = _frames(positions, cells)
    triplets = np.asarray(triplets, dtype=np.int64).reshape(-1, 3)
    return np.degrees(
        np.array(
            [
                calc_angles(
                    frame[triplets[:, 0]], frame[triplets[:, 1]], frame[triplets[:, 2]], box=cell_to_cellpar(cell)
                )
                for frame, cell in zip(positions, cells)
            ]
        ).reshape(len(positions), len(triplets))
    )


@dataclasses.dataclass(frozen=True)
class DistributionAgreement(AnalysisResult):
    """A model's distribution of one bond length [Å] or angle [degrees] against the reference's.

    ``shift`` = mean - reference mean; ``width_ratio`` = std / reference std (``None`` when the reference has no
    spread); ``wasserstein``: first Wasserstein distance between the two samples (same unit).
    """

    mean: float
    reference_mean: float
    shift: float
    std: float
    reference_std: float
    width_ratio: float | None
    wasserstein: float
    n_values: int
    n_reference_values: int


def distribution_agreement(values, reference) -> DistributionAgreement:
    """Compare two samples of one quantity (all bonds of one type over all frames of each run).

    :param values: (n,) the model's values. :param reference: (m,) the reference's.
    :raises ValueError: an empty or non-finite sample.
    """
    values = np.asarray(values, dtype=float).ravel()
    reference = np.asarray(reference, dtype=float).ravel()
    for name, sample in (('values', values), ('reference', reference)):
        if sample.size == 0 or not np.all(np.isfinite(sample)):
            raise ValueError(f'{name}: need a non-empty, finite sample')
    std, reference_std = float(values.std()), float(reference.std())
    return DistributionAgreement(
        mean=float(values.mean()),
        reference_mean=float(reference.mean()),
        shift=float(values.mean() - reference.mean()),
        std=std,
        reference_std=reference_std,
        width_ratio=std / reference_std if reference_std > 0 else None,
        wasserstein=float(wasserstein_distance(values, reference)),
        n_values=int(values.size),
        n_reference_values=int(reference.size),
    )


def intramolecular_agreement(
    numbers: Sequence[int],
    pairs,
    positions,
    cells,
    reference_positions,
    reference_cells,
) -> dict[str, dict[str, DistributionAgreement]]:
    """Bond-length and bond-angle distributions of a model run against a reference run of the same atoms.

    :param numbers: (N,) atomic numbers (same atoms, same order in both runs).
    :param pairs: (n, 2) the bonds (perceived on intact molecules); angles are :func:`angle_triplets` of them.
    :param positions: (F, N, 3) Å of the model run; ``cells``: (3, 3) or (F, 3, 3) Å.
    :param reference_positions: (G, N, 3) Å of the reference run; ``reference_cells``: (3, 3) or (G, 3, 3) Å.
    :returns: ``{'bonds': {type: DistributionAgreement} [Å], 'angles': {type: ...} [degrees]}``, types as
        :func:`type_labels`.
    :raises ValueError: no bonds, or runs of different atom counts.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        raise ValueError('no bonds given')
    positions, cells = _frames(positions, cells)
    reference_positions, reference_cells = _frames(reference_positions, reference_cells)
    if positions.shape[1] != reference_positions.shape[1] or positions.shape[1] != len(numbers):
        raise ValueError(
            f'the runs must hold the same {len(numbers)} atoms: {positions.shape[1]} and {reference_positions.shape[1]}'
        )
    triplets = angle_triplets(pairs)
    result: dict[str, dict[str, DistributionAgreement]] = {'bonds': {}, 'angles': {}}
    for kind, indices, measure in (('bonds', pairs, bond_lengths), ('angles', triplets, bond_angles)):
        if len(indices) == 0:
            continue
        model = measure(positions, cells, indices)
        reference = measure(reference_positions, reference_cells, indices)
        labels = np.asarray(type_labels(numbers, indices))
        for label in sorted(set(labels.tolist())):
            columns = labels == label
            result[kind][label] = distribution_agreement(model[:, columns], reference[:, columns])
    return result
