"""Ionic-liquid systems: the ion library, compositions and the periodic box builder (no AiiDA inside).

Public entry point (DESIGN section 7)::

    from aiida_ilmlff.systems import build_ionic_liquid
    atoms = build_ionic_liquid({'PYR14': 10, 'BF4': 10}, density=1.2, seed=0)   # 350 atoms, 20 molecules
    atoms.arrays['mol_id'], atoms.info['molecules']
"""

from .builder import box_length, build_ionic_liquid
from .checks import bonds_from_positions, min_intermolecular_distance, molecule_graph_mismatches, molecule_graphs_match
from .composition import (
    DENSITY_RANGE,
    Composition,
    salt_in_il_composition,
    validate_composition,
    validate_compositions,
    validate_density,
    validate_seed,
)
from .conformers import ion_conformer
from .errors import BoxBuildError, CompositionError, PackmolError
from .ions import (
    Ion,
    get_ion,
    ion_table,
    is_library_ion,
    known_ions,
    library_ions,
    register_ion,
    resolve_ion_name,
    unregister_ion,
)
from .packmol import find_packmol, packmol_version, run_packmol

__all__ = (
    'DENSITY_RANGE',
    'BoxBuildError',
    'Composition',
    'CompositionError',
    'Ion',
    'PackmolError',
    'bonds_from_positions',
    'box_length',
    'build_ionic_liquid',
    'find_packmol',
    'get_ion',
    'ion_conformer',
    'ion_table',
    'is_library_ion',
    'known_ions',
    'library_ions',
    'min_intermolecular_distance',
    'molecule_graph_mismatches',
    'molecule_graphs_match',
    'packmol_version',
    'register_ion',
    'resolve_ion_name',
    'run_packmol',
    'salt_in_il_composition',
    'unregister_ion',
    'validate_composition',
    'validate_compositions',
    'validate_density',
    'validate_seed',
)
