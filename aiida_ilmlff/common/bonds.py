"""Covalent bonds perceived from distances: pairs closer than ``scale * (r_i + r_j)`` (ASE's covalent radii).

The one home of bond perception, for the box checks (:mod:`aiida_ilmlff.systems.checks`) and the analysis of
intramolecular geometry (:mod:`aiida_ilmlff.analysis.validation`). Pure numpy/ASE.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, covalent_radii
from ase.geometry import get_distances

__all__ = ('BOND_SCALE', 'bonds_from_positions')

#: Two atoms are bonded when closer than ``BOND_SCALE * (r_cov_i + r_cov_j)``.
BOND_SCALE = 1.2


def bonds_from_positions(symbols, positions, cell=None, pbc=False, scale: float = BOND_SCALE) -> set[tuple[int, int]]:
    """Bonded pairs of one molecule perceived from distances.

    :param symbols: element symbols, length n.
    :param positions: Cartesian coordinates in Å, shape (n, 3).
    :param cell: 3x3 cell in Å for minimum-image distances (``None``: no periodicity).
    :param pbc: periodic directions (bool or three bools).
    :param scale: factor on the sum of covalent radii.
    :returns: set of ``(i, j)`` with ``i < j``, 0-based indices into ``symbols``.
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(positions) < 2:
        return set()
    radii = np.array([covalent_radii[atomic_numbers[symbol]] for symbol in symbols])
    if cell is None or not np.any(pbc):
        _, distances = get_distances(positions)
    else:
        _, distances = get_distances(positions, cell=cell, pbc=pbc)
    bonded = distances < scale * (radii[:, None] + radii[None, :])
    i, j = np.nonzero(np.triu(bonded, k=1))
    return set(zip(i.tolist(), j.tolist()))
