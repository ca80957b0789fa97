"""Periodic geometry: cells, minimum-image vectors, neighbour pairs and the closest pair of atoms.

Conventions (those of ASE): a cell is a (3, 3) array whose *rows* are the lattice vectors
**a**, **b**, **c** in Å; every system is periodic in the three directions; fractional coordinates
are ``s = r @ inv(cell)``. Pure numpy/scipy: the one home of these primitives for the analysis library,
the sampling code, the MD runner's guards and the active-learning selection.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

__all__ = (
    'cell_volume',
    'is_orthorhombic',
    'min_pair_distance',
    'minimum_image',
    'pairs_within',
    'perpendicular_widths',
    'validate_cell',
)

_ORTHO_TOL = 1e-8  # Å: off-diagonal elements below this are treated as zero
_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


def validate_cell(cell, n_frames: int | None = None) -> np.ndarray:
    """Return ``cell`` as float64 of shape (3, 3) or (T, 3, 3); raise ``ValueError`` if malformed.

    :param cell: (3, 3) or (T, 3, 3) cell(s) in Å, rows are lattice vectors.
    :param n_frames: if given, a (T, 3, 3) cell must have T == ``n_frames``.
    :raises ValueError: wrong shape, wrong number of frames, or a singular / left-handed cell.
    """
    cell = np.asarray(cell, dtype=float)
    if cell.shape[-2:] != (3, 3) or cell.ndim not in (2, 3):
        raise ValueError(f'cell must have shape (3, 3) or (T, 3, 3), got {cell.shape}')
    if cell.ndim == 3 and n_frames is not None and len(cell) != n_frames:
        raise ValueError(f'cell has {len(cell)} frames but the positions have {n_frames}')
    if np.any(np.linalg.det(cell) <= 0.0):
        raise ValueError('cell must have a positive volume (right-handed, non-singular lattice vectors)')
    return cell


def cell_volume(cell) -> np.ndarray | float:
    """Volume(s) of (3, 3) or (T, 3, 3) cell(s) in Å^3 (``det(cell)``)."""
    volume = np.linalg.det(np.asarray(cell, dtype=float))
    return float(volume) if np.ndim(volume) == 0 else volume


def is_orthorhombic(cell) -> bool:
    """True if all off-diagonal elements of the (3, 3) or (T, 3, 3) cell(s) vanish (below 1e-8 Å)."""
    cell = np.asarray(cell, dtype=float)
    off = cell * (1.0 - np.eye(3))
    return bool(np.all(np.abs(off) < _ORTHO_TOL))


def perpendicular_widths(cell) -> np.ndarray:
    """Distances between opposite faces of the cell, (3,) or (T, 3), in Å.

    ``w_i = V / |a_j x a_k|``; the largest sphere that fits in the cell has radius ``min(w) / 2``,
    which bounds the minimum-image convention and an RDF's ``r_max``.
    """
    cell = np.asarray(cell, dtype=float)
    volume = np.abs(np.linalg.det(cell))
    areas = np.stack(
        [
            np.linalg.norm(np.cross(cell[..., 1, :], cell[..., 2, :]), axis=-1),
            np.linalg.norm(np.cross(cell[..., 2, :], cell[..., 0, :]), axis=-1),
            np.linalg.norm(np.cross(cell[..., 0, :], cell[..., 1, :]), axis=-1),
        ],
        axis=-1,
    )
    return volume[..., None] / areas


def minimum_image(vectors, cell) -> np.ndarray:
    """Minimum-image version of difference vectors.

    Exact for orthorhombic cells (``d - L * rint(d / L)``). For triclinic cells the vector is first
    reduced in fractional coordinates, then the shortest of its 27 neighbouring images is taken,
    which is exact for every vector whose minimum image is shorter than half the smallest
    perpendicular width (the usual validity range of the convention).

    :param vectors: (..., 3) difference vectors in Å.
    :param cell: (3, 3) cell in Å (rows are lattice vectors).
    :returns: (..., 3) float64 array.
    """
    vectors = np.asarray(vectors, dtype=float)
    cell = validate_cell(cell)
    if cell.ndim != 2:
        raise ValueError('minimum_image takes one (3, 3) cell')
    if is_orthorhombic(cell):
        lengths = np.diag(cell)
        return vectors - lengths * np.rint(vectors / lengths)
    frac = vectors @ np.linalg.inv(cell)
    reduced = (frac - np.rint(frac)) @ cell
    candidates = reduced[..., None, :] + (_SHIFTS @ cell)
    best = np.argmin(np.einsum('...ij,...ij->...i', candidates, candidates), axis=-1)
    return np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]


def _wrap_orthorhombic(positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    wrapped = positions - np.floor(positions / lengths) * lengths
    # rounding can leave a coordinate exactly equal to L, which cKDTree(boxsize=L) rejects
    return np.where(wrapped >= lengths, 0.0, wrapped)


def _distances_orthorhombic(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray, lengths) -> np.ndarray:
    """Minimum-image distances of pairs (i, j) of coordinates in [0, L): min(|d|, L - |d|) per axis."""
    squared = None
    for k in range(3):
        d = np.take(np.ascontiguousarray(a[:, k]), i)
        d -= np.take(np.ascontiguousarray(b[:, k]), j)
        np.abs(d, out=d)
        np.minimum(d, lengths[k] - d, out=d)
        d *= d
        if squared is None:
            squared = d
        else:
            squared += d
    return np.sqrt(squared, out=squared)


def pairs_within(positions_a, positions_b, cell, r_max: float, *, same: bool = False):
    """All pairs closer than ``r_max`` under the minimum-image convention.

    Uses a k-d tree (``scipy.spatial.cKDTree``): with ``boxsize`` (periodic) for orthorhombic cells,
    on ghost images within ``r_max`` of the faces for triclinic ones.

    :param positions_a: (Na, 3) positions in Å (wrapped or not).
    :param positions_b: (Nb, 3) positions in Å; ignored when ``same`` is true.
    :param cell: (3, 3) cell in Å.
    :param r_max: cut-off in Å; must not exceed half the smallest perpendicular width.
    :param same: if true, pairs within ``positions_a`` are returned once each (``i < j``).
    :returns: ``(i, j, d)``: int64 index arrays into a and b and the float64 distances in Å (d <= r_max).
    :raises ValueError: ``r_max`` too large for the cell.
    """
    cell = validate_cell(cell)
    if cell.ndim != 2:
        raise ValueError('pairs_within takes one (3, 3) cell')
    a = np.asarray(positions_a, dtype=float).reshape(-1, 3)
    b = a if same else np.asarray(positions_b, dtype=float).reshape(-1, 3)
    widths = perpendicular_widths(cell)
    if r_max > 0.5 * widths.min() * (1 + 1e-12):
        raise ValueError(
            f'r_max = {r_max:g} Å exceeds half the smallest perpendicular cell width ({0.5 * widths.min():g} Å)'
        )
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    if len(a) == 0 or len(b) == 0:
        return empty
    if is_orthorhombic(cell):
        lengths = np.diag(cell).copy()
        a = _wrap_orthorhombic(a, lengths)
        b = a if same else _wrap_orthorhombic(b, lengths)
        tree_b = cKDTree(b, boxsize=lengths)
        if same:
            pairs = tree_b.query_pairs(r_max, output_type='ndarray')
            i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        else:
            found = cKDTree(a, boxsize=lengths).sparse_distance_matrix(tree_b, r_max, output_type='ndarray')
            i, j = found['i'].astype(np.int64), found['j'].astype(np.int64)
        d = _distances_orthorhombic(a, b, i, j, lengths)
    else:
        inverse = np.linalg.inv(cell)
        frac_a = (a @ inverse) % 1.0
        frac_b = frac_a if same else (b @ inverse) % 1.0
        margin = r_max / widths
        ghosts, owners = [], []
        for shift in _SHIFTS:
            image = frac_b + shift
            keep = np.all((image >= -margin) & (image < 1.0 + margin), axis=1)
            ghosts.append(image[keep])
            owners.append(np.nonzero(keep)[0])
        ghost_xyz = np.concatenate(ghosts) @ cell
        owner = np.concatenate(owners).astype(np.int64)
        a_xyz = frac_a @ cell
        found = cKDTree(a_xyz).sparse_distance_matrix(cKDTree(ghost_xyz), r_max, output_type='ndarray')
        i, g = found['i'].astype(np.int64), found['j'].astype(np.int64)
        j = owner[g]
        keep = i < j if same else np.ones(len(i), dtype=bool)
        i, j, g = i[keep], j[keep], g[keep]
        diff = a_xyz[i] - ghost_xyz[g]
        d = np.sqrt(np.einsum('ij,ij->i', diff, diff))
    keep = d <= r_max
    return i[keep], j[keep], d[keep]


def min_pair_distance(positions, cell, cutoff: float | None = None) -> tuple[float, tuple[int, int] | None]:
    """The shortest minimum-image distance between two atoms and their indices, searched up to ``cutoff``.

    :param positions: (N, 3) positions in Å (wrapped or not).
    :param cell: (3, 3) cell in Å (rows are lattice vectors, periodic in 3D).
    :param cutoff: search radius in Å; ``None``: half the smallest perpendicular width of the cell (the
        validity range of the minimum-image convention), so any pair closer than that is found.
    :returns: ``(distance in Å, (i, j))`` with ``i < j``, or ``(inf, None)`` when no pair is within ``cutoff``.
        An atom's distance to its own periodic images is not a pair.
    :raises ValueError: ``cutoff`` exceeds half the smallest perpendicular width (see :func:`pairs_within`).
    """
    if cutoff is None:
        cutoff = 0.5 * float(perpendicular_widths(validate_cell(cell)).min())
    i, j, d = pairs_within(positions, None, cell, cutoff, same=True)
    if len(d) == 0:
        return float('inf'), None
    best = int(np.argmin(d))
    return float(d[best]), (int(i[best]), int(j[best]))
