"""Periodic geometry of the analyses: dihedral angles and the unwrapped-trajectory check.

Cells, minimum image and neighbour pairs live in :mod:`aiida_ilmlff.common.geometry` (re-exported here).

Conventions (those of ASE): a cell is a (3, 3) array whose *rows* are the lattice vectors
**a**, **b**, **c** in Å; every system is periodic in the three directions; fractional coordinates
are ``s = r @ inv(cell)``.
"""

from __future__ import annotations

import numpy as np

from aiida_ilmlff.common.geometry import (
    cell_volume,
    is_orthorhombic,
    minimum_image,
    pairs_within,
    perpendicular_widths,
    validate_cell,
)

from ._common import WrappedCoordinatesError

__all__ = (
    'cell_volume',
    'check_unwrapped',
    'dihedral',
    'is_orthorhombic',
    'minimum_image',
    'pairs_within',
    'perpendicular_widths',
    'validate_cell',
)


def dihedral(p1, p2, p3, p4, cell=None) -> np.ndarray:
    """Dihedral angle p1-p2-p3-p4 in degrees, in (-180, 180].

    Bond vectors are taken under the minimum image when ``cell`` is given, so the four atoms may
    sit in different periodic images. Formula: ``phi = atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3))``
    with ``b1 = p2 - p1``, ``b2 = p3 - p2``, ``b3 = p4 - p3`` (Blondel & Karplus, J. Comput. Chem. 17,
    1132 (1996)); the sign follows the IUPAC convention (as MDAnalysis ``calc_dihedrals``).

    :param p1, p2, p3, p4: (..., 3) positions in Å (broadcastable).
    :param cell: optional (3, 3) cell in Å.
    :returns: (...) array of angles in degrees.
    """
    p1, p2, p3, p4 = (np.asarray(p, dtype=float) for p in (p1, p2, p3, p4))
    b1, b2, b3 = p2 - p1, p3 - p2, p4 - p3
    if cell is not None:
        b1, b2, b3 = (minimum_image(b, cell) for b in (b1, b2, b3))
    n1 = np.cross(b1, b2)
    n2 = np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.einsum('...i,...i->...', b1, n2)
    x = np.einsum('...i,...i->...', n1, n2)
    return np.degrees(np.arctan2(y, x))


def check_unwrapped(positions, cell, previous=None, *, first_frame: int = 0) -> None:
    """Raise :class:`WrappedCoordinatesError` if consecutive frames jump by more than half a cell vector.

    An unwrapped trajectory sampled often enough never moves an atom by more than half a cell
    vector between two frames; a wrapped one does so each time an atom crosses a face.

    :param positions: (T, N, 3) positions in Å.
    :param cell: (3, 3) or (T, 3, 3) cell(s) in Å.
    :param previous: optional (N, 3) frame preceding ``positions[0]`` (to check across chunks).
    :param first_frame: index of ``positions[0]`` in the trajectory, used in the message.
    """
    positions = np.asarray(positions, dtype=float)
    cell = validate_cell(cell, n_frames=len(positions))
    cells = np.broadcast_to(cell, (len(positions), 3, 3)) if cell.ndim == 2 else cell
    if previous is not None and len(positions):
        _check_step(np.asarray(previous, dtype=float)[None], positions[:1], cells[:1], first_frame - 1)
    block = 32  # frames per step: bounds the temporaries to a few frames of positions
    for start in range(0, len(positions) - 1, block):
        stop = min(start + block + 1, len(positions))
        _check_step(
            positions[start : stop - 1],
            positions[start + 1 : stop],
            cells[start + 1 : stop],
            first_frame + start,
        )


def _check_step(before: np.ndarray, after: np.ndarray, cells: np.ndarray, first_frame: int) -> None:
    step = after - before
    if is_orthorhombic(cells):
        jumps = np.abs(step) > 0.5 * np.diagonal(cells, axis1=1, axis2=2)[:, None, :]
    else:
        jumps = np.abs(np.einsum('tni,tij->tnj', step, np.linalg.inv(cells))) > 0.5
    if np.any(jumps):
        t, n, _ = np.argwhere(jumps)[0]
        raise WrappedCoordinatesError(
            f'atom {n} jumps by more than half a cell vector between frames {first_frame + t} and '
            f'{first_frame + t + 1}: the coordinates look wrapped. This analysis needs unwrapped '
            'positions (or image flags); write them unwrapped (TrajectoryWriter) or pass images.'
        )
