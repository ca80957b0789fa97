"""Li+ environment: Li-anion contacts, coordination numbers and Li-anion clusters.

A Li+ is bound to an anion when any ligand atom of that anion (O of TFSI, F of BF4) lies within
``r_cut`` of it (minimum image); ``r_cut`` is normally the first minimum of the Li-ligand g(r)
(:func:`aiida_ilmlff.analysis.first_minimum`). Clusters are the connected components of the
bipartite Li-anion graph (Li and anions are the nodes, bindings the edges).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from ._common import AnalysisResult
from .geometry import pairs_within

__all__ = (
    'ClusterDistribution',
    'LiClusters',
    'LiContacts',
    'cluster_size_distribution',
    'li_anion_contacts',
    'li_clusters',
)


@dataclasses.dataclass(frozen=True)
class LiContacts(AnalysisResult):
    """Li-anion contacts in one frame.

    Attributes:
        bound: (n_li, n_anion) bool, Li i bound to anion j.
        ligand_counts: (n_li,) number of ligand atoms within r_cut of each Li.
        denticity: (n_li, n_anion) number of ligand atoms of anion j within r_cut of Li i (0: not bound, 1:
            monodentate, 2: bidentate, ...).
        anion_ids: (n_anion,) molecule id of each anion column.
        r_cut: cut-off in Å.
    """

    bound: np.ndarray
    ligand_counts: np.ndarray
    anion_ids: np.ndarray
    r_cut: float
    denticity: np.ndarray | None = None

    @property
    def anion_counts(self) -> np.ndarray:
        """(n_li,) number of distinct anions bound to each Li."""
        return self.bound.sum(axis=1)


def li_anion_contacts(li_positions, ligand_positions, ligand_mol_id, cell, r_cut: float, anion_ids=None) -> LiContacts:
    """Which anions each Li+ is bound to (any ligand atom within ``r_cut``, minimum image).

    :param li_positions: (n_li, 3) Li positions in Å.
    :param ligand_positions: (n_lig, 3) ligand atom positions (e.g. all TFSI O) in Å.
    :param ligand_mol_id: (n_lig,) molecule id of each ligand atom.
    :param cell: (3, 3) cell in Å.
    :param r_cut: Li-ligand cut-off in Å (at most half the smallest perpendicular width).
    :param anion_ids: optional column order of the anions (default ``np.unique(ligand_mol_id)``); keep
        it fixed across frames so the contact matrices are comparable.
    :returns: :class:`LiContacts`.
    """
    li = np.asarray(li_positions, dtype=float).reshape(-1, 3)
    ligand = np.asarray(ligand_positions, dtype=float).reshape(-1, 3)
    ligand_mol_id = np.asarray(ligand_mol_id)
    if len(ligand_mol_id) != len(ligand):
        raise ValueError('ligand_mol_id must have one entry per ligand atom')
    anion_ids = np.unique(ligand_mol_id) if anion_ids is None else np.asarray(anion_ids)
    lookup = dict(zip(anion_ids.tolist(), range(len(anion_ids))))
    try:
        column = np.array([lookup[m] for m in ligand_mol_id.tolist()], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f'anion_ids lacks the molecule id {exc.args[0]} of a ligand atom') from None
    i, j, _ = pairs_within(li, ligand, cell, r_cut)
    ligand_counts = np.bincount(i, minlength=len(li))
    denticity = np.zeros((len(li), len(anion_ids)), dtype=np.int64)
    np.add.at(denticity, (i, column[j]), 1)
    return LiContacts(
        bound=denticity > 0,
        ligand_counts=ligand_counts,
        anion_ids=anion_ids,
        r_cut=float(r_cut),
        denticity=denticity,
    )


@dataclasses.dataclass(frozen=True)
class LiClusters(AnalysisResult):
    """Connected components of the bipartite Li-anion graph in one frame.

    Attributes:
        li_labels: (n_li,) cluster index of each Li; anion_labels: (n_anion,) of each anion.
        n_li: (n_clusters,) Li count per cluster; n_anion: (n_clusters,) anion count per cluster.
    """

    li_labels: np.ndarray
    anion_labels: np.ndarray
    n_li: np.ndarray
    n_anion: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """(n_clusters,) cluster sizes: Li plus anions."""
        return self.n_li + self.n_anion


def li_clusters(bound) -> LiClusters:
    """Li-anion clusters: connected components (``scipy.sparse.csgraph.connected_components``) of the
    bipartite graph whose adjacency is ``bound`` (n_li, n_anion). A free Li or a free anion is a
    cluster of size 1.

    :param bound: (n_li, n_anion) boolean contact matrix (:attr:`LiContacts.bound`).
    :returns: :class:`LiClusters`.
    """
    bound = np.asarray(bound, dtype=bool)
    if bound.ndim != 2:
        raise ValueError('bound must be an (n_li, n_anion) matrix')
    n_li, n_anion = bound.shape
    li_index, anion_index = np.nonzero(bound)
    graph = sparse.csr_matrix(
        (np.ones(len(li_index), dtype=bool), (li_index, n_li + anion_index)), shape=(n_li + n_anion,) * 2
    )
    n_clusters, labels = connected_components(graph, directed=False)
    li_labels, anion_labels = labels[:n_li], labels[n_li:]
    return LiClusters(
        li_labels=li_labels,
        anion_labels=anion_labels,
        n_li=np.bincount(li_labels, minlength=n_clusters),
        n_anion=np.bincount(anion_labels, minlength=n_clusters),
    )


@dataclasses.dataclass(frozen=True)
class ClusterDistribution(AnalysisResult):
    """Cluster statistics over frames.

    Attributes:
        sizes: (K,) cluster sizes (Li + anions) observed, increasing.
        counts: (K,) clusters of each size summed over frames.
        fraction: (K,) ``counts / counts.sum()`` (number fraction of clusters).
        li_fraction: (K,) fraction of Li that sit in a cluster of each size.
        mean_size: number-average cluster size.
        compositions: ``{'<n_li>Li<n_anion>A': count}`` summed over frames, e.g. ``'1Li3A'``.
        n_frames: frames analysed.
        require_li: whether clusters without Li (free anions) were left out.
    """

    sizes: np.ndarray
    counts: np.ndarray
    fraction: np.ndarray
    li_fraction: np.ndarray
    mean_size: float
    compositions: dict[str, int]
    n_frames: int
    require_li: bool


def cluster_size_distribution(bound_frames: Iterable, *, require_li: bool = True) -> ClusterDistribution:
    """Distribution of Li-anion cluster sizes over frames (cluster size = Li + anions in it).

    :param bound_frames: (T, n_li, n_anion) array or iterable of (n_li, n_anion) contact matrices.
    :param require_li: count only clusters holding at least one Li (default; free anions excluded).
    :returns: :class:`ClusterDistribution`.
    :raises ValueError: no frames, or no cluster to count.
    """
    size_counts: Counter[int] = Counter()
    li_counts: Counter[int] = Counter()
    compositions: Counter[str] = Counter()
    n_frames = 0
    for bound in bound_frames:
        clusters = li_clusters(bound)
        keep = clusters.n_li > 0 if require_li else np.ones(len(clusters.n_li), dtype=bool)
        for n_li, n_anion in zip(clusters.n_li[keep].tolist(), clusters.n_anion[keep].tolist()):
            size_counts[n_li + n_anion] += 1
            li_counts[n_li + n_anion] += n_li
            compositions[f'{n_li}Li{n_anion}A'] += 1
        n_frames += 1
    if n_frames == 0 or not size_counts:
        raise ValueError('no frames or no clusters to count')
    sizes = np.array(sorted(size_counts))
    counts = np.array([size_counts[s] for s in sizes])
    li = np.array([li_counts[s] for s in sizes], dtype=float)
    return ClusterDistribution(
        sizes=sizes,
        counts=counts,
        fraction=counts / counts.sum(),
        li_fraction=li / li.sum() if li.sum() else np.zeros(len(sizes)),
        mean_size=float((sizes * counts).sum() / counts.sum()),
        compositions=dict(sorted(compositions.items())),
        n_frames=n_frames,
        require_li=require_li,
    )
