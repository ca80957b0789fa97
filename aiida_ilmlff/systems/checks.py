"""Geometry checks of ionic-liquid boxes: bond graphs against the SMILES, and intermolecular contacts.

Both checks use the minimum-image convention in periodic cells and need the molecule index of every atom
in ``atoms.arrays['mol_id']`` (0 .. n_molecules - 1); the bond-graph check also needs the ion name of every
molecule in ``atoms.info['molecules']`` (as written by :func:`~aiida_ilmlff.systems.build_ionic_liquid`).
Bonds are perceived as pairs closer than ``scale * (r_i + r_j)`` with ASE's covalent radii (scale 1.2).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list
from rdkit import Chem

from aiida_ilmlff.common.bonds import BOND_SCALE, bonds_from_positions

from .ions import Ion, get_ion

__all__ = (
    'BOND_SCALE',
    'bonds_from_positions',
    'min_intermolecular_distance',
    'molecule_graph_mismatches',
    'molecule_graphs_match',
)


@functools.lru_cache(maxsize=256)
def _ion_from_definition(name: str, smiles: str, charge: int) -> Ion:
    return Ion(name=name, smiles=smiles, charge=charge)


def _ions_for(atoms: Atoms) -> dict[str, Ion]:
    """Ion definitions of the box: ``atoms.info['ions']`` (name -> {'smiles', 'charge'}), else the library."""
    definitions = atoms.info.get('ions') or {}
    ions = {}
    for name in dict.fromkeys(atoms.info['molecules']):
        if name in definitions:
            ions[name] = _ion_from_definition(name, definitions[name]['smiles'], int(definitions[name]['charge']))
        else:
            ions[name] = get_ion(name)
    return ions


def _graph_mol(symbols, bonds) -> Chem.Mol:
    """An element-labelled graph as an RDKit molecule: no charges, no aromaticity, single bonds only."""
    mol = Chem.RWMol()
    for symbol in symbols:
        atom = Chem.Atom(symbol)
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    for i, j in bonds:
        mol.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    mol = mol.GetMol()
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol


def _isomorphic(symbols_a, bonds_a, symbols_b, bonds_b) -> bool:
    if sorted(symbols_a) != sorted(symbols_b) or len(bonds_a) != len(bonds_b):
        return False
    return _graph_mol(symbols_a, bonds_a).HasSubstructMatch(_graph_mol(symbols_b, bonds_b))


def _require_molecule_arrays(atoms: Atoms) -> np.ndarray:
    if 'mol_id' not in atoms.arrays:
        raise ValueError("atoms.arrays['mol_id'] is missing: these checks need the molecule index of every atom")
    return np.asarray(atoms.arrays['mol_id'], dtype=int)


def molecule_graph_mismatches(atoms: Atoms, scale: float = BOND_SCALE, ordered: bool = True) -> list[str]:
    """Molecules whose bond graph, perceived from distances (minimum image), differs from their SMILES graph.

    :param atoms: box with ``arrays['mol_id']`` and ``info['molecules']``; ion definitions from
        ``info['ions']`` (name -> {'smiles', 'charge'}) when present, else from the ion library.
    :param scale: bond criterion factor on the sum of covalent radii.
    :param ordered: ``True``: exact check that atom k of the molecule is atom k of the SMILES (heavy atoms in
        SMILES order, then H) with identical bonds; ``False``: element-labelled graph isomorphism (RDKit), for
        boxes whose atoms were reordered.
    :returns: one human-readable line per mismatching molecule; empty when all match.
    :raises ValueError: ``mol_id`` missing, or ``molecules`` inconsistent with ``mol_id``.
    """
    mol_id = _require_molecule_arrays(atoms)
    molecules = list(atoms.info.get('molecules', ()))
    if len(molecules) != (mol_id.max() + 1 if len(mol_id) else 0):
        raise ValueError(
            f"atoms.info['molecules'] has {len(molecules)} names for {len(np.unique(mol_id))} mol_id values"
        )
    ions = _ions_for(atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    mismatches = []
    for index, name in enumerate(molecules):
        ion = ions[name]
        members = np.flatnonzero(mol_id == index)
        found_symbols = symbols[members].tolist()
        found = bonds_from_positions(found_symbols, atoms.positions[members], atoms.cell, atoms.pbc, scale)
        expected = set(ion.bonds)
        if ordered:
            if tuple(found_symbols) != ion.symbols:
                mismatches.append(
                    f'molecule {index} ({name}): elements {found_symbols} differ from {list(ion.symbols)}'
                )
                continue
            if found != expected:
                missing, extra = sorted(expected - found), sorted(found - expected)
                mismatches.append(f'molecule {index} ({name}): missing bonds {missing}, extra bonds {extra}')
        elif not _isomorphic(found_symbols, found, ion.symbols, expected):
            mismatches.append(f'molecule {index} ({name}): bond graph is not isomorphic to {ion.smiles}')
    return mismatches


def molecule_graphs_match(atoms: Atoms, scale: float = BOND_SCALE, ordered: bool = True) -> bool:
    """Whether every molecule's distance-perceived bond graph equals its SMILES graph.

    See :func:`molecule_graph_mismatches` for the parameters and errors.
    """
    return not molecule_graph_mismatches(atoms, scale=scale, ordered=ordered)


def min_intermolecular_distance(atoms: Atoms, cutoff: float = 6.0) -> float:
    """Shortest distance in Å between atoms of different molecules, minimum image (periodic images included).

    Contacts of a molecule with its own periodic images count as intermolecular; within a molecule, the
    minimum-image distance of each atom pair is its intramolecular distance (valid for molecules smaller than
    half the cell).

    :param atoms: box with ``arrays['mol_id']``; periodic or not.
    :param cutoff: search radius in Å.
    :returns: the distance in Å, or ``math.inf`` if no intermolecular pair is closer than ``cutoff``.
    :raises ValueError: ``mol_id`` missing.
    """
    mol_id = _require_molecule_arrays(atoms)
    i, j, d = neighbor_list('ijd', atoms, cutoff)
    same = mol_id[i] == mol_id[j]
    candidates = [d[~same]]
    i_s, j_s, d_s = i[same], j[same], d[same]
    candidates.append(d_s[i_s == j_s])  # an atom and its own periodic image
    pair = i_s != j_s
    i_s, j_s, d_s = i_s[pair], j_s[pair], d_s[pair]
    if len(d_s):
        key = i_s.astype(np.int64) * len(atoms) + j_s
        order = np.lexsort((d_s, key))
        key, d_s = key[order], d_s[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        candidates.append(d_s[~first])  # further images of an intramolecular pair
    distances = np.concatenate(candidates)
    return float(distances.min()) if len(distances) else math.inf
