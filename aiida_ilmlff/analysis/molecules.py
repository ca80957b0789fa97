"""Molecules: made whole across the periodic boundary, centres of mass and grouping by species."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

from aiida_ilmlff.common.geometry import minimum_image, validate_cell

__all__ = ('MoleculeTree', 'center_of_mass_matrix', 'make_whole', 'molecular_centers_of_mass', 'species_groups')


class MoleculeTree:
    """Bond trees of the molecules of a frame, to make molecules whole in any later frame.

    Within each molecule (atoms of one ``mol_id``) the minimum-image distances of every atom pair are taken and
    their minimum spanning tree (``scipy.sparse.csgraph.minimum_spanning_tree``) gives the bonds: for an intact
    molecule its edges are the covalent bonds (or the shortest contacts of atoms that are not bonded). The root
    of each tree is the molecule's first atom. :meth:`apply` walks the trees level by level and puts every atom
    at its parent's position plus the minimum-image bond vector, so the molecule is whole around its root atom
    (whose position is kept: unwrapped roots keep the centres of mass continuous in time). This is what
    ``MDAnalysis.transformations.unwrap`` / ``gmx trjconv -pbc mol`` do, on molecule ids instead of a topology.

    :param positions: (N, 3) positions in Å of the reference frame (wrapped or not).
    :param cell: (3, 3) cell in Å (rows are lattice vectors).
    :param mol_id: (N,) molecule id per atom.
    """

    def __init__(self, positions, cell, mol_id) -> None:
        positions = np.asarray(positions, dtype=float)
        mol_id = np.asarray(mol_id)
        if positions.ndim != 2 or positions.shape[1] != 3 or mol_id.shape != (len(positions),):
            raise ValueError(f'positions must be (N, 3) and mol_id (N,), got {positions.shape} and {mol_id.shape}')
        cell = validate_cell(cell)
        children, parents, depths = [], [], []
        for molecule in np.unique(mol_id):
            atoms = np.nonzero(mol_id == molecule)[0]
            if len(atoms) < 2:
                continue
            vectors = minimum_image(positions[atoms][None, :, :] - positions[atoms][:, None, :], cell)
            distances = np.linalg.norm(vectors, axis=-1)
            # zero distances would be read as 'no edge' by the sparse graph: coincident atoms still get linked
            tree = minimum_spanning_tree(np.where(distances > 0, distances, 1e-9) * (1 - np.eye(len(atoms))))
            order, predecessors = breadth_first_order(tree, 0, directed=False)
            depth = np.zeros(len(atoms), dtype=np.int64)
            for node in order[1:]:
                depth[node] = depth[predecessors[node]] + 1
            for node in order[1:]:
                children.append(atoms[node])
                parents.append(atoms[predecessors[node]])
                depths.append(depth[node])
        order = np.argsort(depths, kind='stable')
        self.children = np.asarray(children, dtype=np.int64)[order]
        self.parents = np.asarray(parents, dtype=np.int64)[order]
        depths = np.asarray(depths, dtype=np.int64)[order]
        self._levels = [np.nonzero(depths == d)[0] for d in np.unique(depths)]
        self.n_atoms = len(positions)

    def apply(self, positions, cell) -> np.ndarray:
        """Positions with every molecule whole (a new float64 array).

        :param positions: (N, 3) or (T, N, 3) positions in Å.
        :param cell: (3, 3) cell, or (T, 3, 3) one per frame, in Å.
        :returns: array of the shape of ``positions``.
        :raises ValueError: shapes that do not match the tree.
        """
        x = np.array(positions, dtype=float)
        single = x.ndim == 2
        if single:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f'positions must be (N, 3) or (T, N, 3) with N = {self.n_atoms}, got {x.shape}')
        cell = validate_cell(cell)
        cells = np.broadcast_to(cell, (len(x), 3, 3)) if cell.ndim == 2 else cell
        if len(cells) != len(x):
            raise ValueError(f'{len(cells)} cells for {len(x)} frames')
        inverse = np.linalg.inv(cells)
        for level in self._levels:
            child, parent = self.children[level], self.parents[level]
            bond = x[:, child] - x[:, parent]
            fractional = np.einsum('tbi,tij->tbj', bond, inverse)
            # bonds are far shorter than half a cell width, so rounding the fractional vector is the minimum image
            bond -= np.einsum('tbi,tij->tbj', np.rint(fractional), cells)
            x[:, child] = x[:, parent] + bond
        return x[0] if single else x


def make_whole(positions, cell, mol_id, reference=None) -> np.ndarray:
    """Molecules made whole across the periodic boundary (see :class:`MoleculeTree`).

    :param positions: (N, 3) or (T, N, 3) positions in Å.
    :param cell: (3, 3) or (T, 3, 3) cell(s) in Å.
    :param mol_id: (N,) molecule id per atom.
    :param reference: (N, 3) frame whose bonds define the trees (default: the first frame of ``positions``).
    :returns: positions of the same shape, each molecule whole around its first atom.
    """
    positions = np.asarray(positions, dtype=float)
    first_cell = np.asarray(cell, dtype=float)
    first_cell = first_cell[0] if first_cell.ndim == 3 else first_cell
    if reference is None:
        reference = positions if positions.ndim == 2 else positions[0]
    return MoleculeTree(reference, first_cell, mol_id).apply(positions, cell)


def center_of_mass_matrix(mol_id, masses, molecules=None) -> sparse.csr_matrix:
    """Sparse (n_mol, N) matrix W with ``com = W @ positions``: ``W[m, i] = m_i / M_m``, i in molecule m.

    :param mol_id: (N,) molecule id per atom.
    :param masses: (N,) atomic masses in amu.
    :param molecules: optional molecule ids to keep, in the row order wanted; default ``np.unique(mol_id)``.
    :raises ValueError: mismatched lengths, a molecule of zero mass, or a requested id that has no atom.
    """
    mol_id = np.asarray(mol_id)
    masses = np.asarray(masses, dtype=float)
    if mol_id.shape != masses.shape or mol_id.ndim != 1:
        raise ValueError('mol_id and masses must be (N,) arrays of the same length')
    wanted = np.unique(mol_id) if molecules is None else np.asarray(molecules)
    if np.any(wanted < 0) or np.any(mol_id < 0):
        raise ValueError('molecule ids must be non-negative integers')
    order = np.full(int(max(mol_id.max(initial=0), wanted.max(initial=0))) + 1, -1, dtype=np.int64)
    order[wanted] = np.arange(len(wanted))
    rows = order[mol_id]
    atoms = np.nonzero(rows >= 0)[0]
    weights = sparse.csr_matrix((masses[atoms], (rows[atoms], atoms)), shape=(len(wanted), len(mol_id)))
    totals = np.asarray(weights.sum(axis=1)).ravel()
    if np.any(totals <= 0):
        missing = wanted[totals <= 0]
        raise ValueError(f'molecule(s) {missing.tolist()[:10]} have no atoms or zero mass')
    return sparse.diags(1.0 / totals) @ weights


def molecular_centers_of_mass(positions, mol_id, masses, molecules=None) -> np.ndarray:
    """Centre of mass of each molecule: ``R_m = sum_i m_i r_i / sum_i m_i`` over the atoms of m.

    The molecules must be whole: a molecule split across the cell boundary gives a meaningless centre
    (make them whole first with :func:`make_whole`).

    :param positions: (N, 3) or (T, N, 3) unwrapped positions in Å.
    :param mol_id: (N,) molecule id per atom (non-negative integers).
    :param masses: (N,) masses in amu.
    :param molecules: optional ids of the molecules wanted (output order); default ``np.unique(mol_id)``.
    :returns: (n_mol, 3) or (T, n_mol, 3) float64 centres in Å.
    """
    positions = np.asarray(positions, dtype=float)
    weights = center_of_mass_matrix(mol_id, masses, molecules)
    if positions.shape[-2:] != (weights.shape[1], 3):
        raise ValueError(f'positions must have shape (..., {weights.shape[1]}, 3), got {positions.shape}')
    if positions.ndim == 2:
        return weights @ positions
    n_frames = positions.shape[0]
    flat = positions.transpose(1, 0, 2).reshape(weights.shape[1], n_frames * 3)
    return (weights @ flat).reshape(weights.shape[0], n_frames, 3).transpose(1, 0, 2)


def species_groups(molecules: Sequence[str]) -> dict[str, np.ndarray]:
    """Molecule indices of each species, in order of first appearance.

    :param molecules: species name per molecule (``atoms.info['molecules']`` of ``build_ionic_liquid``).
    :returns: ``{species: int64 array of molecule ids}``.
    """
    names = np.asarray([str(name) for name in molecules])
    groups: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(names.tolist()):
        groups[name] = np.nonzero(names == name)[0].astype(np.int64)
    return groups
