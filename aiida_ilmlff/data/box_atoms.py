"""A built box (``StructureData`` with molecule attributes) as ASE ``Atoms`` that keep its molecules.

The box builder (:mod:`aiida_ilmlff.calculations.functions.box`) stores which molecule each site belongs to as
attributes of the ``StructureData``: ``mol_id`` (one int per site) and ``molecules`` (the ion name of each
molecule). The analysis and the frame containers read them from ``atoms.arrays['mol_id']`` and
``atoms.info['molecules']``; this is the one place that converts.
"""

from __future__ import annotations

import numpy as np
from aiida import orm

__all__ = ('box_atoms',)


def box_atoms(structure: orm.StructureData):
    """``structure`` as ``ase.Atoms`` with ``arrays['mol_id']`` (int64 per atom) and ``info['molecules']`` (ion
    name per molecule) where the structure has those attributes (a structure without them gives plain Atoms).

    :raises ValueError: if ``mol_id`` does not have one entry per site.
    """
    atoms = structure.get_ase()
    mol_id = structure.base.attributes.get('mol_id', None)
    if mol_id is not None:
        if len(mol_id) != len(atoms):
            raise ValueError(f'StructureData<{structure.uuid}> has {len(mol_id)} mol_id for {len(atoms)} sites')
        atoms.arrays['mol_id'] = np.asarray(mol_id, dtype=np.int64)
    molecules = structure.base.attributes.get('molecules', None)
    if molecules is not None:
        atoms.info['molecules'] = list(molecules)
    return atoms
