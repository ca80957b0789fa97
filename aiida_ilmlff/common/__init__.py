"""Primitives shared by every layer of aiida-ilmlff: units, periodic geometry, hashes, plain values (no AiiDA).

Each primitive has exactly one home here; the science packages (:mod:`aiida_ilmlff.systems`,
:mod:`aiida_ilmlff.sampling`, :mod:`aiida_ilmlff.analysis`), the runner and the AiiDA plugins import it from
here instead of writing their own copy.
"""

from .compositions import composition_key, composition_key_of_molecules, composition_keys_of_frames
from .geometry import (
    cell_volume,
    is_orthorhombic,
    min_pair_distance,
    minimum_image,
    pairs_within,
    perpendicular_widths,
    validate_cell,
)
from .hashing import sha256_bytes, sha256_file
from .plain import finite_or_none
from .units import AMU_A3_TO_G_CM3

__all__ = (
    'AMU_A3_TO_G_CM3',
    'cell_volume',
    'composition_key',
    'composition_key_of_molecules',
    'composition_keys_of_frames',
    'finite_or_none',
    'is_orthorhombic',
    'min_pair_distance',
    'minimum_image',
    'pairs_within',
    'perpendicular_widths',
    'sha256_bytes',
    'sha256_file',
    'validate_cell',
)
