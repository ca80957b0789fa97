"""TFSI conformers: cis / trans from the C-S...S-C dihedral.

TFSI ([N(SO2CF3)2]-) has two conformers that differ by the dihedral angle C-S...S-C between its two
CF3 groups about the S...S axis: *trans* (C2 symmetry, phi near 180 deg) and *cis* (C1, phi near
0 deg, in practice 30-50 deg) (Lassegues et al., J. Phys. Chem. A 113, 305 (2009); Canongia Lopes
et al., J. Phys. Chem. B 112, 5039 (2008)). Here ``|phi| < cis_cut_deg`` (default 90) means cis.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._common import AnalysisResult
from .geometry import dihedral, minimum_image

__all__ = ('ConformerFractions', 'classify_cis_trans', 'tfsi_dihedral_atoms', 'tfsi_dihedrals')

_C, _S = 6, 16


def tfsi_dihedral_atoms(numbers, mol_id, positions, cell=None, molecules=None) -> np.ndarray:
    """Atom indices (C1, S1, S2, C2) of the C-S...S-C dihedral of each TFSI-like molecule.

    Each molecule must hold exactly two S and two C atoms; each C is assigned to its nearest S
    (minimum image), which must give one C per S.

    :param numbers: (N,) atomic numbers.
    :param mol_id: (N,) molecule id per atom.
    :param positions: (N, 3) positions of one frame in Å (used only to pair C with S).
    :param cell: optional (3, 3) cell in Å.
    :param molecules: ids of the molecules to use; default every molecule with 2 S and 2 C.
    :returns: (n_mol, 4) int64 atom indices.
    :raises ValueError: a requested molecule without 2 S and 2 C, or ambiguous C-S bonding.
    """
    numbers = np.asarray(numbers)
    mol_id = np.asarray(mol_id)
    positions = np.asarray(positions, dtype=float)
    if molecules is None:
        candidates = np.unique(mol_id)
        auto = True
    else:
        candidates = np.asarray(molecules)
        auto = False
    rows = []
    for mol in candidates.tolist():
        atoms = np.nonzero(mol_id == mol)[0]
        sulfur = atoms[numbers[atoms] == _S]
        carbon = atoms[numbers[atoms] == _C]
        if len(sulfur) != 2 or len(carbon) != 2:
            if auto:
                continue
            raise ValueError(f'molecule {mol} has {len(sulfur)} S and {len(carbon)} C atoms, not 2 and 2')
        vectors = positions[carbon][:, None, :] - positions[sulfur][None, :, :]
        if cell is not None:
            vectors = minimum_image(vectors, cell)
        distance = np.linalg.norm(vectors, axis=-1)  # (C, S)
        nearest = distance.argmin(axis=1)
        if nearest[0] == nearest[1]:
            raise ValueError(f'molecule {mol}: both C atoms are closest to the same S atom')
        c_of_s = carbon[np.argsort(nearest)]
        rows.append((c_of_s[0], sulfur[0], sulfur[1], c_of_s[1]))
    if not rows:
        raise ValueError('no molecule with two S and two C atoms (no TFSI) found')
    return np.asarray(rows, dtype=np.int64)


def tfsi_dihedrals(positions, atoms, cell=None) -> np.ndarray:
    """C-S...S-C dihedrals in degrees for frames of positions.

    :param positions: (N, 3) or (T, N, 3) in Å.
    :param atoms: (n_mol, 4) indices from :func:`tfsi_dihedral_atoms`.
    :param cell: optional (3, 3) cell or (T, 3, 3) cells in Å (minimum image on the bonds).
    :returns: (n_mol,) or (T, n_mol) angles in (-180, 180].
    """
    positions = np.asarray(positions, dtype=float)
    atoms = np.asarray(atoms)
    if positions.ndim == 2:
        return dihedral(*(positions[atoms[:, k]] for k in range(4)), cell=cell)
    cell = None if cell is None else np.asarray(cell, dtype=float)
    out = np.empty((len(positions), len(atoms)))
    for t, frame in enumerate(positions):
        frame_cell = None if cell is None else (cell[t] if cell.ndim == 3 else cell)
        out[t] = dihedral(*(frame[atoms[:, k]] for k in range(4)), cell=frame_cell)
    return out


@dataclasses.dataclass(frozen=True)
class ConformerFractions(AnalysisResult):
    """Cis / trans populations.

    Attributes:
        is_cis: (T, n_mol) bool per molecule and frame.
        cis_fraction: (T,) fraction of cis molecules in each frame.
        mean_cis_fraction: time average; mean_trans_fraction = 1 - mean_cis_fraction.
        cis_cut_deg: the cut used (``|phi| < cut`` is cis).
    """

    is_cis: np.ndarray
    cis_fraction: np.ndarray
    mean_cis_fraction: float
    mean_trans_fraction: float
    cis_cut_deg: float


def classify_cis_trans(dihedrals_deg, cis_cut_deg: float = 90.0) -> ConformerFractions:
    """Classify C-S...S-C dihedrals: ``|phi| < cis_cut_deg`` is cis, otherwise trans.

    :param dihedrals_deg: (n_mol,) or (T, n_mol) angles in degrees.
    :returns: :class:`ConformerFractions`.
    """
    phi = np.atleast_2d(np.asarray(dihedrals_deg, dtype=float))
    if phi.size == 0:
        raise ValueError('no dihedral to classify')
    if not 0 < cis_cut_deg < 180:
        raise ValueError('cis_cut_deg must lie in (0, 180)')
    wrapped = (phi + 180.0) % 360.0 - 180.0
    is_cis = np.abs(wrapped) < cis_cut_deg
    fraction = is_cis.mean(axis=1)
    mean = float(fraction.mean())
    return ConformerFractions(is_cis, fraction, mean, 1.0 - mean, float(cis_cut_deg))
