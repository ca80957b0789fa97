"""Molecule-level geometry of periodic frames: bond graphs, whole (unwrapped) molecules, centres of mass, contacts.

Pure numpy/ASE (no AiiDA). Bonds are perceived as in :mod:`aiida_ilmlff.systems.checks`: two atoms are bonded
when closer than ``scale * (r_i + r_j)`` with ASE's covalent radii (``scale`` = 1.2), every periodic image
included. Whether a perturbed frame kept the bond graph of its source is judged with hysteresis
(:func:`bond_graph_difference`). Positions are in Å.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, covalent_radii
from ase.neighborlist import neighbor_list

from aiida_ilmlff.systems.checks import BOND_SCALE

#: A bond of the reference graph is broken beyond ``BREAK_SCALE * (r_i + r_j)`` (see :func:`bond_graph_difference`).
BREAK_SCALE = 1.5
#: A pair not bonded in the reference graph forms a bond below ``FORM_SCALE * (r_i + r_j)``.
FORM_SCALE = 1.0
#: A bond of the reference graph is squeezed (unphysically short) below ``SQUEEZE_SCALE * (r_i + r_j)``.
SQUEEZE_SCALE = 0.75

__all__ = (
    'BOND_SCALE',
    'BREAK_SCALE',
    'FORM_SCALE',
    'SQUEEZE_SCALE',
    'bond_graph',
    'bond_graph_difference',
    'centers_of_mass',
    'closest_pair',
    'molecule_ids',
    'squeezed_bonds',
    'unwrap_molecules',
)


def molecule_ids(atoms: Atoms) -> np.ndarray:
    """``(n,)`` int molecule index of every atom from ``atoms.arrays['mol_id']``.

    :raises ValueError: if ``mol_id`` is missing or has negative (unknown) entries.
    """
    if 'mol_id' not in atoms.arrays:
        raise ValueError(
            "the frame has no molecule ids (atoms.arrays['mol_id']): import it with a composition or topology"
        )
    mol_id = np.asarray(atoms.arrays['mol_id'], dtype=np.int64)
    if (mol_id < 0).any():
        raise ValueError('the frame has atoms without a molecule id (mol_id = -1)')
    return mol_id


def _bond_pairs(atoms: Atoms, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, D)`` of every bonded pair (both directions, every image); ``D`` the vector i -> j in Å."""
    if len(atoms) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 3))
    radii = scale * covalent_radii[atoms.numbers]
    i, j, vectors = neighbor_list('ijD', atoms, radii, self_interaction=False)
    return i, j, vectors


def bond_graph(atoms: Atoms, scale: float = BOND_SCALE) -> frozenset[tuple[int, int]]:
    """Bonded atom pairs ``(i, j)``, ``i < j``, perceived from distances (periodic images included).

    Intermolecular pairs closer than the bond criterion count as bonds too, so a frame in which two molecules
    fused has a different graph from the frame it was made from.

    :param atoms: the frame (any cell; periodic directions from ``atoms.pbc``).
    :param scale: factor on the sum of covalent radii.
    """
    i, j, _ = _bond_pairs(atoms, scale)
    keep = i < j
    return frozenset(zip(i[keep].tolist(), j[keep].tolist()))


def bond_graph_difference(
    reference: frozenset[tuple[int, int]],
    atoms: Atoms,
    break_scale: float = BREAK_SCALE,
    form_scale: float = FORM_SCALE,
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``(broken, formed)`` bonds of ``atoms`` relative to the graph ``reference`` (e.g. of the unperturbed frame).

    A perturbed bond is judged with hysteresis, so that thermal-size stretches do not count as chemistry: a
    bond of ``reference`` is *broken* when its atoms are farther apart than ``break_scale * (r_i + r_j)``
    (default 1.5: a C-H bond beyond 1.6 Å), and a pair not bonded in ``reference`` has *formed* a bond when
    closer than ``form_scale * (r_i + r_j)`` (default 1.0: H...F below 0.88 Å). Periodic images included.
    """
    i, j, _ = _bond_pairs(atoms, break_scale)
    keep = i < j
    loose = set(zip(i[keep].tolist(), j[keep].tolist()))
    i, j, _ = _bond_pairs(atoms, form_scale)
    keep = i < j
    tight = set(zip(i[keep].tolist(), j[keep].tolist()))
    return sorted(reference - loose), sorted(tight - reference)


def squeezed_bonds(
    reference: frozenset[tuple[int, int]], atoms: Atoms, scale: float = SQUEEZE_SCALE
) -> list[tuple[int, int, float]]:
    """Bonds of ``reference`` shorter than ``scale * (r_i + r_j)`` in ``atoms``: ``(i, j, distance in Å)``.

    The default 0.75 flags a C-H bond below 0.80 Å or a B-F bond below 1.06 Å, geometries whose forces
    (tens of eV/Å) no DFT quality control keeps.
    """
    if not reference:
        return []
    from ase.geometry import find_mic

    pairs = np.array(sorted(reference), dtype=np.int64)
    vectors = atoms.positions[pairs[:, 1]] - atoms.positions[pairs[:, 0]]
    if atoms.pbc.any():
        _, distances = find_mic(vectors, atoms.cell, atoms.pbc)
    else:
        distances = np.linalg.norm(vectors, axis=1)
    limit = scale * (covalent_radii[atoms.numbers[pairs[:, 0]]] + covalent_radii[atoms.numbers[pairs[:, 1]]])
    short = np.flatnonzero(distances < limit)
    return [(int(pairs[k, 0]), int(pairs[k, 1]), float(distances[k])) for k in short]


def unwrap_molecules(atoms: Atoms, scale: float = BOND_SCALE) -> np.ndarray:
    """``(n, 3)`` positions in Å with every molecule whole: each bonded neighbour at its bonded image.

    The bond graph of each molecule (``mol_id``) is walked breadth-first from its first atom, so molecules
    longer than half the box are made whole too. Atoms of a molecule not connected to its first atom (a
    broken molecule, or a monatomic ion's neighbours) are placed at the minimum image of that atom.

    :raises ValueError: if ``mol_id`` is missing (see :func:`molecule_ids`).
    """
    mol_id = molecule_ids(atoms)
    positions = atoms.get_positions()
    unwrapped = positions.copy()
    i, j, vectors = _bond_pairs(atoms, scale)
    same = mol_id[i] == mol_id[j]
    i, j, vectors = i[same], j[same], vectors[same]
    order = np.argsort(i, kind='stable')
    i, j, vectors = i[order], j[order], vectors[order]
    starts = np.searchsorted(i, np.arange(len(atoms) + 1))
    placed = np.zeros(len(atoms), dtype=bool)
    cell = atoms.cell.array
    periodic = atoms.pbc.any() and abs(np.linalg.det(cell)) > 1e-9
    for molecule in np.unique(mol_id):
        members = np.flatnonzero(mol_id == molecule)
        root = int(members[0])
        placed[root] = True
        queue = deque([root])
        while queue:
            atom = queue.popleft()
            for k in range(starts[atom], starts[atom + 1]):
                neighbour = int(j[k])
                if not placed[neighbour]:
                    unwrapped[neighbour] = unwrapped[atom] + vectors[k]
                    placed[neighbour] = True
                    queue.append(neighbour)
        loose = members[~placed[members]]
        if len(loose):
            delta = positions[loose] - unwrapped[root]
            if periodic:
                fractional = np.linalg.solve(cell.T, delta.T).T
                fractional -= np.round(fractional) * atoms.pbc
                delta = fractional @ cell
            unwrapped[loose] = unwrapped[root] + delta
            placed[loose] = True
    return unwrapped


def centers_of_mass(atoms: Atoms, positions: np.ndarray | None = None) -> np.ndarray:
    """``(M, 3)`` centre of mass in Å of every molecule (ASE's standard atomic masses).

    :param positions: whole-molecule positions (default :func:`unwrap_molecules`).
    """
    mol_id = molecule_ids(atoms)
    positions = unwrap_molecules(atoms) if positions is None else np.asarray(positions, dtype=np.float64)
    masses = atomic_masses[atoms.numbers]
    n_molecules = int(mol_id.max()) + 1
    total = np.bincount(mol_id, weights=masses, minlength=n_molecules)
    weighted = np.stack(
        [np.bincount(mol_id, weights=masses * positions[:, k], minlength=n_molecules) for k in range(3)], axis=1
    )
    with np.errstate(invalid='ignore', divide='ignore'):
        return weighted / total[:, None]


def closest_pair(atoms: Atoms, cutoff: float = 3.0) -> tuple[float, int, int]:
    """``(distance, i, j)``: the shortest distance in Å between two atoms, periodic images included.

    An atom's distance to its own periodic image counts (``i == j``). Returns ``(inf, -1, -1)`` if no pair
    is closer than ``cutoff``.
    """
    if len(atoms) == 0:
        return math.inf, -1, -1
    i, j, d = neighbor_list('ijd', atoms, float(cutoff), self_interaction=False)
    if len(d) == 0:
        return math.inf, -1, -1
    k = int(np.argmin(d))
    return float(d[k]), int(i[k]), int(j[k])
