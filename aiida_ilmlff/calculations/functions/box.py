"""Ionic-liquid boxes in the provenance graph: a calcfunction around :func:`~aiida_ilmlff.systems.build_ionic_liquid`.

Every box is a ``StructureData`` created by :func:`build_ionic_liquid_box` from three input nodes (composition
``Dict``, density ``Float`` in g/cm^3, seed ``Int``). The molecule of every atom travels with the structure as
node attributes, a convention other modules read (``FramesData.from_structure``):

- ``mol_id``: list of int, one per site, molecule index 0 .. n_molecules-1;
- ``molecules``: list of str, the ion name of every molecule.

Use :func:`build_box` from Python: it validates first, so bad input raises before any node is stored.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.systems import (
    build_ionic_liquid,
    ion_conformer,
    validate_composition,
    validate_density,
    validate_seed,
)

__all__ = ('BOX_ATTRIBUTES', 'build_box', 'build_ionic_liquid_box', 'moved_box', 'relaxed_box', 'structure_from_atoms')


#: The attributes of a built box that describe its molecules (see the module docstring).
BOX_ATTRIBUTES = ('mol_id', 'molecules', 'composition')


def moved_box(box: orm.StructureData, atoms) -> orm.StructureData:
    """An unstored ``StructureData`` of ``atoms`` (the same sites as ``box``, moved, or in a scaled cell) with the
    molecule attributes of ``box`` (:data:`BOX_ATTRIBUTES`, those it has)."""
    structure = orm.StructureData(ase=atoms)
    for key in BOX_ATTRIBUTES:
        value = box.base.attributes.get(key, None)
        if value is not None:
            structure.base.attributes.set(key, value)
    return structure


def structure_from_atoms(atoms) -> orm.StructureData:
    """An unstored ``StructureData`` of a built box with the ``mol_id``, ``molecules`` and ``composition``
    attributes set (``composition``: ion name -> count)."""
    structure = orm.StructureData(ase=atoms)
    structure.base.attributes.set('mol_id', [int(value) for value in atoms.arrays['mol_id']])
    structure.base.attributes.set('molecules', [str(name) for name in atoms.info['molecules']])
    structure.base.attributes.set('composition', {str(k): int(v) for k, v in atoms.info['composition'].items()})
    return structure


@calcfunction
def build_ionic_liquid_box(composition: orm.Dict, density: orm.Float, seed: orm.Int) -> orm.StructureData:
    """Build a periodic ionic-liquid box (RDKit conformers + Packmol, tolerance 2.0 Å) and record how.

    :param composition: ion name -> count; library ions as ``{'PYR14': 10, 'BF4': 10}``, other ions inline as
        ``{'N1114': {'count': 10, 'smiles': ..., 'charge': 1}}`` so that the node alone defines the system.
    :param density: target density in g/cm^3 (the cell's density equals it to floating precision).
    :param seed: random seed of the conformers and of Packmol.
    :returns: ``StructureData`` with attributes ``mol_id`` (int per site), ``molecules`` (ion name per
        molecule) and ``composition`` (name -> count).
    :raises CompositionError: invalid input (the process is then excepted: call :func:`build_box` instead).
    :raises BoxBuildError: conformer embedding or Packmol failed.
    """
    atoms = build_ionic_liquid(composition.get_dict(), density.value, seed.value)
    return structure_from_atoms(atoms)


@calcfunction
def relaxed_box(box: orm.StructureData, relaxed: orm.StructureData) -> orm.StructureData:
    """The built ``box`` with the positions of its relaxed geometry ``relaxed`` (a CP2K optimisation's output).

    The cell, species order and the box attributes (``mol_id``, ``molecules``, ``composition``) are the box's.

    :param box: a built box (:func:`build_ionic_liquid_box`), N sites.
    :param relaxed: the same N sites in the same order, relaxed positions in Å.
    :raises ValueError: another number of sites or other species order (not a relaxation of ``box``).
    """
    atoms, moved = box.get_ase(), relaxed.get_ase()
    if atoms.get_chemical_symbols() != moved.get_chemical_symbols():
        raise ValueError(
            f'`relaxed` ({moved.get_chemical_formula()}) is not a relaxation of `box` '
            f'({atoms.get_chemical_formula()}): other sites'
        )
    atoms.positions = moved.positions
    return moved_box(box, atoms)


def build_box(composition, density, seed=0) -> orm.StructureData:
    """Validate a box specification, then run :func:`build_ionic_liquid_box`; return the stored structure.

    Nothing is stored when the input is invalid or an ion cannot be embedded: composition, density and seed
    are validated and every ion's conformer is generated (cached for the build) before the calcfunction runs.

    :param composition: ion name -> count (see :func:`~aiida_ilmlff.systems.validate_composition`), or a
        ``Dict`` node (a stored one is used as the input node as is, keeping its provenance).
    :param density: g/cm^3, float or ``Float`` node.
    :param seed: int or ``Int`` node.
    :returns: the stored ``StructureData`` output of :func:`build_ionic_liquid_box`.
    :raises CompositionError: unknown ion, invalid SMILES or charge, non-positive or non-integer count, net
        charge != 0, density outside 0.1-5 g/cm^3, bad seed.
    :raises BoxBuildError: an ion has no conformer matching its SMILES.
    :raises PackmolError: Packmol failed (the calcfunction node is then stored as excepted).
    """
    spec = validate_composition(composition)
    density_value = validate_density(density)
    seed_value = validate_seed(seed)
    for ion in spec.ions.values():
        ion_conformer(ion, seed_value)
    inputs = {
        'composition': composition if isinstance(composition, orm.Dict) else orm.Dict(spec.to_dict()),
        'density': density if isinstance(density, orm.Float) else orm.Float(density_value),
        'seed': seed if isinstance(seed, orm.Int) else orm.Int(seed_value),
    }
    return build_ionic_liquid_box(**inputs)
