"""Li+ contacts, coordination and clusters on a hand-built configuration with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis import cluster_size_distribution, li_anion_contacts, li_clusters

CELL = np.diag([20.0, 20.0, 20.0])
LI = np.array([[1.0, 1, 1], [5.0, 1, 1], [10.0, 10, 10], [15.0, 15, 15]])
# ligand atoms (F of BF4-like anions): molecule ids 10..13
LIGAND = np.array(
    [
        [19.0, 1, 1],  # anion 10, 2.0 Å from Li0 through the periodic boundary
        [3.0, 1, 1],  # anion 10, 2.0 Å from Li0 and from Li1: a bridge
        [7.0, 1, 1],  # anion 11, 2.0 Å from Li1
        [7.0, 3, 1],  # anion 11, 2.83 Å from Li1: outside the cut-off
        [10.0, 10, 12],  # anion 12, 2.0 Å from Li2
        [10.0, 12, 10],  # anion 12, 2.0 Å from Li2
        [15.0, 5, 5],  # anion 13: free
    ]
)
LIGAND_MOL = np.array([10, 10, 11, 11, 12, 12, 13])


def test_contacts_and_coordination():
    contacts = li_anion_contacts(LI, LIGAND, LIGAND_MOL, CELL, r_cut=2.5)
    assert contacts.anion_ids.tolist() == [10, 11, 12, 13]
    assert contacts.ligand_counts.tolist() == [2, 2, 2, 0]
    assert contacts.anion_counts.tolist() == [1, 2, 1, 0]
    expected = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(contacts.bound, expected)
    # a larger cut-off takes the second ligand atom of anion 11 too
    assert li_anion_contacts(LI, LIGAND, LIGAND_MOL, CELL, r_cut=3.0).ligand_counts.tolist() == [2, 3, 2, 0]


def test_clusters_are_connected_components():
    bound = li_anion_contacts(LI, LIGAND, LIGAND_MOL, CELL, r_cut=2.5).bound
    clusters = li_clusters(bound)
    assert clusters.li_labels[0] == clusters.li_labels[1] == clusters.anion_labels[0] == clusters.anion_labels[1]
    assert clusters.li_labels[2] == clusters.anion_labels[2] != clusters.li_labels[0]
    composition = sorted(zip(clusters.n_li.tolist(), clusters.n_anion.tolist()))
    assert composition == [(0, 1), (1, 0), (1, 1), (2, 2)]
    assert sorted(clusters.sizes.tolist()) == [1, 1, 2, 4]


def test_cluster_size_distribution():
    bound = li_anion_contacts(LI, LIGAND, LIGAND_MOL, CELL, r_cut=2.5).bound
    result = cluster_size_distribution([bound, bound])
    assert result.n_frames == 2
    assert result.sizes.tolist() == [1, 2, 4]
    assert result.counts.tolist() == [2, 2, 2]
    np.testing.assert_allclose(result.li_fraction, [0.25, 0.25, 0.5])
    assert result.mean_size == pytest.approx(7 / 3)
    assert result.compositions == {'1Li0A': 2, '1Li1A': 2, '2Li2A': 2}
    with_free = cluster_size_distribution(bound[None], require_li=False)
    assert with_free.counts.tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match='no frames'):
        cluster_size_distribution([])


def test_contacts_reject_unknown_anion_ids():
    with pytest.raises(ValueError, match='lacks the molecule id'):
        li_anion_contacts(LI, LIGAND, LIGAND_MOL, CELL, r_cut=2.5, anion_ids=[10, 11])


def test_denticity_counts_the_ligand_atoms_of_each_anion():
    """A Li with anion 0 bound through two O (bidentate) and anion 1 through one (monodentate), anion 2 unbound."""
    cell = np.eye(3) * 20.0
    li = np.array([[10.0, 10.0, 10.0]])
    oxygens = np.array(
        [
            [12.0, 10.0, 10.0],  # anion 0
            [10.0, 12.0, 10.0],  # anion 0
            [8.0, 10.0, 10.0],  # anion 1
            [5.0, 10.0, 10.0],  # anion 1, far
            [10.0, 10.0, 15.0],  # anion 2, far
        ]
    )
    contacts = li_anion_contacts(li, oxygens, np.array([0, 0, 1, 1, 2]), cell, r_cut=2.6)
    assert contacts.denticity.tolist() == [[2, 1, 0]]
    assert contacts.bound.tolist() == [[True, True, False]]
    assert contacts.ligand_counts.tolist() == [3] and contacts.anion_counts.tolist() == [2]
