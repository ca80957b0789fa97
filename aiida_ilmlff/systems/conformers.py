"""3D conformers of single ions: RDKit ETKDG (seeded, explicit hydrogens), then MMFF94 or UFF.

The force field is MMFF94 where RDKit has parameters for every atom (the organic cations, TFSI, FSI, OTf),
else UFF (BF4, PF6), else none. Every geometry is checked: its bond graph perceived from distances must
equal the SMILES graph; a force-field geometry that fails falls back to the ETKDG one, and an embedding that
fails is retried with derived seeds. Atom order: heavy atoms in SMILES order, then hydrogens (RDKit AddHs).
"""

from __future__ import annotations

import functools

import numpy as np
from ase import Atoms
from rdkit import rdBase
from rdkit.Chem import AllChem

from .checks import bonds_from_positions
from .errors import BoxBuildError
from .ions import Ion

__all__ = ('ion_conformer',)

#: Embedding attempts (derived seeds) before giving up.
MAX_ATTEMPTS = 10


def _graph_ok(ion: Ion, positions: np.ndarray) -> bool:
    return bonds_from_positions(ion.symbols, positions) == set(ion.bonds)


def _optimise(mol) -> str | None:
    """Optimise conformer 0 in place with MMFF94 or UFF; return the force field's name or ``None``."""
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
        return 'MMFF94'
    if AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
        return 'UFF'
    return None


@functools.lru_cache(maxsize=256)
def _conformer(smiles: str, charge: int, seed: int) -> tuple[np.ndarray, str]:
    ion = Ion(name='ion', smiles=smiles, charge=charge)
    if ion.n_atoms == 1:
        return np.zeros((1, 3)), 'single atom'
    for attempt in range(MAX_ATTEMPTS):
        mol = ion.mol
        params = AllChem.ETKDGv3()
        params.randomSeed = (seed + 104729 * attempt) % 2**31
        params.useRandomCoords = attempt > 0
        with rdBase.BlockLogs():
            if AllChem.EmbedMolecule(mol, params) != 0:
                continue
            embedded = mol.GetConformer().GetPositions()
            method = _optimise(mol)
        optimised = mol.GetConformer().GetPositions()
        if method is not None and _graph_ok(ion, optimised):
            return optimised, method
        if _graph_ok(ion, embedded):
            return embedded, 'ETKDG'
    raise BoxBuildError(
        f'no 3D conformer of {smiles!r} with the bond graph of its SMILES after {MAX_ATTEMPTS} ETKDG attempts; '
        'for hypervalent centres give the geometry in the SMILES (e.g. F[P@OH1-](F)(F)(F)(F)F for an '
        'octahedron, @TB1 for a trigonal bipyramid)'
    )


def ion_conformer(ion: Ion, seed: int = 0) -> Atoms:
    """One 3D conformer of ``ion``, centred on its centre of geometry.

    Same ion and seed give the same coordinates (results are cached per SMILES, charge and seed).

    :param ion: the ion.
    :param seed: RDKit ETKDG random seed (``0 .. 2**31 - 1``).
    :returns: ``ase.Atoms`` without cell, positions in Å (atom order of :attr:`Ion.symbols`);
        ``info['conformer_method']`` is ``'MMFF94'``, ``'UFF'``, ``'ETKDG'`` or ``'single atom'``.
    :raises BoxBuildError: RDKit cannot embed a geometry whose bonds match the SMILES.
    """
    positions, method = _conformer(ion.smiles, ion.charge, int(seed))
    positions = positions - positions.mean(axis=0)
    atoms = Atoms(symbols=list(ion.symbols), positions=positions)
    atoms.info['conformer_method'] = method
    return atoms
