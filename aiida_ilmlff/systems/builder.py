"""The ionic-liquid box builder: RDKit conformers packed by Packmol into a periodic cube at a target density.

``build_ionic_liquid(composition, density, seed=0)`` (DESIGN section 7) validates the input, makes one
conformer per ion (see :mod:`aiida_ilmlff.systems.conformers`), sizes a cube whose density equals the target
exactly (volume from the total mass with ASE's atomic masses) and packs the molecules with Packmol (tolerance
2.0 Å, periodic ``pbc`` keyword so no contact is closer across the faces either). Plain science: no AiiDA.
"""

from __future__ import annotations

import numbers

import numpy as np
from ase import Atoms
from rdkit import __version__ as rdkit_version

from aiida_ilmlff.common.units import AMU_A3_TO_G_CM3

from .checks import min_intermolecular_distance
from .composition import validate_composition, validate_density, validate_seed
from .conformers import ion_conformer
from .errors import CompositionError, PackmolError
from .packmol import packmol_version, run_packmol

__all__ = ('box_length', 'build_ionic_liquid')

#: Accepted Packmol tolerances in Å.
TOLERANCE_RANGE = (0.5, 4.0)
#: A packed box is rejected if its minimum intermolecular distance is below this fraction of the tolerance.
TOLERANCE_SLACK = 0.75


def box_length(mass: float, density: float) -> float:
    """Edge in Å of the cube holding ``mass`` amu at ``density`` g/cm^3: ``(mass * amu / density)^(1/3)``."""
    return float((mass * AMU_A3_TO_G_CM3 / density) ** (1.0 / 3.0))


def _validate_tolerance(tolerance) -> float:
    low, high = TOLERANCE_RANGE
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not low <= tolerance <= high:
        raise CompositionError(f'Packmol tolerance must be between {low} and {high} Å, got {tolerance!r}')
    return float(tolerance)


def build_ionic_liquid(
    composition,
    density: float,
    seed: int = 0,
    *,
    tolerance: float = 2.0,
    timeout: float = 600.0,
    nloop: int | None = None,
) -> Atoms:
    """Build a periodic cubic box of an ionic liquid (or salt-in-IL mixture) at a target density.

    :param composition: ion name -> number of molecules, e.g. ``{'PYR14': 10, 'BF4': 10}`` (see
        :func:`~aiida_ilmlff.systems.validate_composition` for aliases, ``Ion`` keys and inline SMILES).
    :param density: target mass density in g/cm^3 (0.1-5).
    :param seed: random seed (0 .. 2**31-1) of the RDKit conformers and of Packmol; same inputs and seed give
        identical coordinates.
    :param tolerance: Packmol minimum distance in Å between atoms of different molecules.
    :param timeout: seconds Packmol may run.
    :param nloop: Packmol's maximum number of loops (``None``: its default).
    :returns: ``ase.Atoms`` with ``pbc=True`` and a cubic cell of edge ``(mass / density)^(1/3)`` in Å (its
        density equals ``density`` to floating precision). Molecules are whole (not wrapped), in canonical
        order (cations, neutral species, anions; alphabetical within each), atoms of each molecule in SMILES
        order then hydrogens. ``arrays['mol_id']``: int, shape (n_atoms,), molecule index 0 .. n_mol-1.
        ``info``: ``molecules`` (ion name per molecule), ``composition`` (name -> count), ``ions`` (name ->
        {'smiles', 'charge', 'full_name'}), ``density`` (g/cm^3), ``seed``, ``tolerance`` (Å),
        ``conformer_methods`` (name -> force field), ``rdkit_version``, ``packmol_version``.
    :raises CompositionError: invalid composition, density, seed or tolerance (before anything runs).
    :raises BoxBuildError: no conformer matching the SMILES could be embedded.
    :raises PackmolError: Packmol missing, failed, timed out, or left contacts closer than 0.75 x tolerance.
    """
    spec = validate_composition(composition)
    density = validate_density(density)
    seed = validate_seed(seed)
    tolerance = _validate_tolerance(tolerance)

    templates = {name: ion_conformer(ion, seed) for name, ion in spec.ions.items()}
    length = box_length(spec.mass, density)
    positions = run_packmol(
        [(templates[name], count) for name, count in spec.counts.items()],
        length,
        tolerance=tolerance,
        seed=seed,
        timeout=timeout,
        nloop=nloop,
    )
    symbols = [
        symbol for name, count in spec.counts.items() for symbol in templates[name].get_chemical_symbols() * count
    ]
    sizes = [len(templates[name]) for name in spec.molecules]
    atoms = Atoms(symbols=symbols, positions=positions, cell=np.eye(3) * length, pbc=True)
    atoms.arrays['mol_id'] = np.repeat(np.arange(len(sizes), dtype=int), sizes)
    atoms.info.update(
        {
            'molecules': spec.molecules,
            'composition': spec.counts,
            'ions': {name: ion.to_dict() for name, ion in spec.ions.items()},
            'density': density,
            'seed': seed,
            'tolerance': tolerance,
            'conformer_methods': {name: template.info['conformer_method'] for name, template in templates.items()},
            'rdkit_version': rdkit_version,
            'packmol_version': packmol_version(),
        }
    )
    closest = min_intermolecular_distance(atoms, cutoff=tolerance + 1.0)
    if closest < TOLERANCE_SLACK * tolerance:
        raise PackmolError(
            f'Packmol reported success but two molecules are {closest:.3f} Å apart (tolerance {tolerance} Å); '
            'lower the density or the tolerance'
        )
    return atoms
