"""Molecules: centres of mass and grouping by species."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

__all__ = ('center_of_mass_matrix', 'molecular_centers_of_mass', 'species_groups')


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

    The positions must be unwrapped (whole molecules): a molecule split across the cell boundary
    gives a meaningless centre.

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
