"""Small PYR14BF4 boxes for the MD tests: RDKit conformers placed at random in a cubic box (no Packmol).

Independent of :mod:`aiida_ilmlff.systems` so the MD tests do not depend on the box builder. Positions in Å.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from rdkit import Chem
from rdkit.Chem import AllChem

SMILES = {'PYR14': 'CCCC[N+]1(C)CCCC1', 'BF4': 'F[B-](F)(F)F'}
#: Liquid volume of one PYR14BF4 ion pair (DESIGN.md), Å^3.
PAIR_VOLUME = 317.0


def _conformer(smiles: str, seed: int) -> tuple[list[str], np.ndarray]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    positions = mol.GetConformer().GetPositions()
    return [atom.GetSymbol() for atom in mol.GetAtoms()], positions - positions.mean(axis=0)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def _min_image_distance(a: np.ndarray, b: np.ndarray, box: float) -> float:
    delta = a[:, None, :] - b[None, :, :]
    delta -= box * np.round(delta / box)
    return float(np.sqrt((delta**2).sum(-1)).min())


def pyr14bf4_box(n_pairs: int, seed: int = 0, volume_per_pair: float = PAIR_VOLUME, min_gap: float = 1.9) -> Atoms:
    """A cubic periodic box of ``n_pairs`` PYR14+ BF4- pairs; ``arrays['mol_id']`` and ``info['molecules']`` set.

    :raises RuntimeError: if random insertion fails (box too dense for ``min_gap`` Å).
    """
    rng = np.random.default_rng(seed)
    box = (n_pairs * volume_per_pair) ** (1 / 3)
    templates = {name: _conformer(smiles, seed) for name, smiles in SMILES.items()}
    symbols: list[str] = []
    placed: list[np.ndarray] = []
    molecules: list[str] = []
    mol_id: list[int] = []
    for name in ['PYR14'] * n_pairs + ['BF4'] * n_pairs:
        names, template = templates[name]
        for _ in range(20000):
            trial = template @ _random_rotation(rng).T + rng.uniform(0, box, 3)
            if all(_min_image_distance(trial, other, box) > min_gap for other in placed):
                break
        else:
            raise RuntimeError(f'could not insert {name} into a {box:.2f} A box')
        placed.append(trial)
        symbols += names
        mol_id += [len(molecules)] * len(names)
        molecules.append(name)
    atoms = Atoms(symbols, positions=np.vstack(placed), cell=[box] * 3, pbc=True)
    atoms.arrays['mol_id'] = np.array(mol_id, dtype=np.int64)
    atoms.info['molecules'] = molecules
    return atoms
