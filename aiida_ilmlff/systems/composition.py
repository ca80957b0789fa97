"""Compositions of ionic-liquid boxes (ion name -> number of molecules) and their validation.

A composition is a mapping such as ``{'PYR14': 10, 'BF4': 10}`` or ``{'Li': 2, 'PYR14': 8, 'TFSI': 10}``.
Keys are ion names or aliases from the library (case-insensitive, see :mod:`aiida_ilmlff.systems.ions`),
names registered with :func:`~aiida_ilmlff.systems.ions.register_ion`, or :class:`~aiida_ilmlff.systems.ions.Ion`
objects. A new ion can also be defined inline::

    {'N1114': {'count': 10, 'smiles': 'CCCC[N+](C)(C)C', 'charge': 1}, 'TFSI': 10}

:func:`validate_composition` checks everything before any conformer is made, Packmol is run or a node is
stored, and raises :class:`~aiida_ilmlff.systems.errors.CompositionError` (a ``ValueError``) listing every
problem: unknown ions (with close names), invalid SMILES or charges, counts that are not positive integers,
and a net charge other than zero (with its value). Density and seed have their own validators.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence

from .density import reference_density
from .errors import CompositionError
from .ions import Ion, get_ion, is_library_ion, known_ions, resolve_ion_name, unknown_ion_message

__all__ = (
    'DENSITY_RANGE',
    'Composition',
    'reference_density',
    'salt_in_il_composition',
    'validate_composition',
    'validate_compositions',
    'validate_density',
    'validate_seed',
)

#: Accepted box densities in g/cm^3 (ionic liquids lie near 0.9-2.0 g/cm^3).
DENSITY_RANGE = (0.1, 5.0)
#: Largest seed (Packmol and RDKit take 32-bit signed integers).
SEED_MAX = 2**31 - 1
_INLINE_KEYS = {'count', 'smiles', 'charge', 'full_name'}


def _species_order(ion: Ion) -> tuple:
    """Canonical order: cations, then neutral species, then anions; by name (case-insensitive) in each group."""
    group = 0 if ion.charge > 0 else (1 if ion.charge == 0 else 2)
    return (group, ion.name.lower(), ion.name)


@dataclasses.dataclass(frozen=True)
class Composition:
    """A validated, charge-neutral composition: ions with their molecule counts, in canonical order.

    Canonical order (the order of molecules in a built box): cations, neutral species, anions; alphabetical
    (case-insensitive) within each group, whatever the order of the input mapping.

    Build it with :func:`validate_composition`; the constructor does not check anything.
    """

    entries: tuple[tuple[Ion, int], ...]

    @property
    def ions(self) -> dict[str, Ion]:
        """Ion name -> :class:`Ion`, in canonical order."""
        return {ion.name: ion for ion, _ in self.entries}

    @property
    def counts(self) -> dict[str, int]:
        """Ion name -> number of molecules, in canonical order."""
        return {ion.name: count for ion, count in self.entries}

    @property
    def net_charge(self) -> int:
        """Total formal charge in e (zero for a validated composition)."""
        return sum(ion.charge * count for ion, count in self.entries)

    @property
    def n_molecules(self) -> int:
        """Total number of molecules (ions)."""
        return sum(count for _, count in self.entries)

    @property
    def elements(self) -> list[str]:
        """The chemical elements of the composition, sorted (hydrogen included)."""
        return sorted({symbol for ion, _ in self.entries for symbol in ion.symbols if symbol})

    @property
    def n_atoms(self) -> int:
        """Total number of atoms, hydrogens included."""
        return sum(ion.n_atoms * count for ion, count in self.entries)

    @property
    def mass(self) -> float:
        """Total mass in amu, from ASE's standard atomic weights."""
        return sum(ion.mass * count for ion, count in self.entries)

    @property
    def molecules(self) -> list[str]:
        """Ion name of every molecule in box order (length ``n_molecules``)."""
        return [ion.name for ion, count in self.entries for _ in range(count)]

    def to_dict(self) -> dict:
        """JSON-ready form for an AiiDA ``Dict``: library ions as ``name: count``; any other ion inline as
        ``name: {'count', 'smiles', 'charge', 'full_name'}`` so that the input alone defines the system."""
        result = {}
        for ion, count in self.entries:
            result[ion.name] = count if is_library_ion(ion) else {'count': count, **ion.to_dict()}
        return result

    def __str__(self) -> str:
        return ' '.join(f'{name}:{count}' for name, count in self.counts.items())


def _count_error(name: str, count) -> str | None:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        return (
            f'count of ion {name!r} must be a positive integer (number of molecules), got {count!r} '
            f'({type(count).__name__})'
        )
    if count <= 0:
        return f'count of ion {name!r} must be a positive integer (number of molecules), got {int(count)}'
    return None


def _known_conflict(ion: Ion) -> str | None:
    """A message if ``ion`` reuses the name or an alias of a known ion with another SMILES or charge."""
    canonical = resolve_ion_name(ion.name)
    if canonical is None:
        return None
    known = known_ions()[canonical]
    if known.same_species(ion):
        return None
    return (
        f'ion {ion.name!r} is defined with SMILES {ion.smiles!r} (charge {ion.charge:+d}) but {ion.name!r} names '
        f'the known ion {canonical!r} (SMILES {known.smiles!r}, charge {known.charge:+d}); choose another name'
    )


def _library_or_own(ion: Ion, count, errors: list[str]) -> tuple[Ion | None, object]:
    """The library's ion of that name (an alias resolved), else ``ion``; ``None`` (and an error) if ``ion``
    redefines a library ion differently."""
    conflict = _known_conflict(ion)
    if conflict:
        errors.append(conflict)
        return None, count
    canonical = resolve_ion_name(ion.name)
    return (known_ions()[canonical] if canonical else ion), count


def _resolve_entry(key, value, errors: list[str]) -> tuple[Ion | None, object]:
    """Resolve one composition entry to (Ion or None on error, raw count)."""
    if isinstance(key, Ion):
        return _library_or_own(key, value, errors)
    if not isinstance(key, str):
        errors.append(f'ion names must be strings or Ion objects, got {key!r} ({type(key).__name__})')
        return None, value
    if isinstance(value, Mapping):
        unexpected = sorted(set(value) - _INLINE_KEYS)
        if unexpected:
            errors.append(
                f'inline definition of ion {key!r} has unknown keys {unexpected}; allowed: {sorted(_INLINE_KEYS)}'
            )
            return None, None
        if 'count' not in value:
            errors.append(f"inline definition of ion {key!r} needs a 'count'")
            return None, None
        count = value['count']
        if 'smiles' not in value:
            try:
                return get_ion(key), count
            except CompositionError as exception:
                errors.append(str(exception))
                return None, count
        if 'charge' not in value:
            errors.append(f"inline definition of ion {key!r} needs a 'charge' (formal charge in e) with its SMILES")
            return None, count
        try:
            ion = Ion(name=key, smiles=value['smiles'], charge=value['charge'], full_name=value.get('full_name', ''))
        except CompositionError as exception:
            errors.append(str(exception))
            return None, count
        return _library_or_own(ion, count, errors)
    canonical = resolve_ion_name(key)
    if canonical is None:
        errors.append(unknown_ion_message(key))
        return None, value
    return known_ions()[canonical], value


def validate_composition(composition) -> Composition:
    """Check a composition and return it as a :class:`Composition` in canonical order.

    :param composition: mapping ion -> count (see the module docstring), a :class:`Composition`
        (returned unchanged), or anything with ``get_dict()`` (an AiiDA ``Dict``).
    :returns: the validated :class:`Composition`.
    :raises CompositionError: listing every problem found: not a mapping or empty; unknown ion (with close
        names); invalid SMILES, charge or inline definition; an ion given twice (e.g. as ``TFSI`` and
        ``NTf2``); a count that is not a positive integer; then, if all entries are valid, a net charge other
        than zero (the message gives it and each ion's contribution).
    """
    if isinstance(composition, Composition):
        return composition
    if hasattr(composition, 'get_dict') and not isinstance(composition, Mapping):
        composition = composition.get_dict()
    if not isinstance(composition, Mapping):
        raise CompositionError(
            f"composition must be a mapping of ion name -> count, e.g. {{'PYR14': 10, 'BF4': 10}}, got "
            f'{composition!r} ({type(composition).__name__})'
        )
    if not composition:
        raise CompositionError("composition is empty: give at least one ion, e.g. {'PYR14': 10, 'BF4': 10}")

    errors: list[str] = []
    resolved: dict[str, tuple[Ion, int, object]] = {}
    for key, value in composition.items():
        ion, count = _resolve_entry(key, value, errors)
        name = ion.name if ion is not None else (key.name if isinstance(key, Ion) else str(key))
        count_error = _count_error(name, count) if count is not None else None
        if count_error:
            errors.append(count_error)
        if ion is None:
            continue
        if ion.name in resolved:
            first_key = resolved[ion.name][2]
            errors.append(
                f'ion {ion.name!r} is given twice (as {_key_label(first_key)} and {_key_label(key)}); '
                'give each ion once'
            )
            continue
        resolved[ion.name] = (ion, count, key)
    if errors:
        if len(errors) == 1:
            raise CompositionError(f'invalid composition: {errors[0]}')
        raise CompositionError('invalid composition:\n  - ' + '\n  - '.join(errors))

    entries = tuple(
        sorted(((ion, int(count)) for ion, count, _ in resolved.values()), key=lambda e: _species_order(e[0]))
    )
    result = Composition(entries)
    if result.net_charge != 0:
        contributions = ', '.join(f'{ion.name} {count} x {ion.charge:+d}' for ion, count in entries)
        raise CompositionError(
            f'composition {result} is not charge-neutral: net charge {result.net_charge:+d} e ({contributions}); '
            'change the counts so that the charges of cations and anions cancel'
        )
    return result


def validate_compositions(compositions) -> list[Composition]:
    """Check a list of compositions for one data set or pipeline (e.g. LiTFSI/PYR14TFSI at several Li+ fractions).

    :param compositions: a list (or tuple, or AiiDA ``List``) of two or more compositions, each as
        :func:`validate_composition` accepts.
    :returns: the validated compositions, in the given order.
    :raises CompositionError: listing every problem, each naming ``compositions[i]``: not a list, fewer than two
        entries (give ``composition`` for one), an invalid or non-neutral composition, and two compositions of the
        same liquid (the same counts, or counts in the same ratio such as PYR14:1 TFSI:1 and PYR14:2 TFSI:2: one
        box size per composition).
    """
    if hasattr(compositions, 'get_list'):
        compositions = compositions.get_list()
    if isinstance(compositions, (str, bytes, Mapping)) or not isinstance(compositions, Sequence):
        raise CompositionError(
            "`compositions` must be a list of compositions, e.g. [{'PYR14': 2, 'TFSI': 2}, "
            f"{{'Li': 1, 'PYR14': 2, 'TFSI': 3}}], got {type(compositions).__name__}"
        )
    if len(compositions) < 2:
        raise CompositionError(
            f'`compositions` has {len(compositions)} entr{"y" if len(compositions) == 1 else "ies"}: give two or '
            'more (for one, give `composition`)'
        )
    errors: list[str] = []
    valid: dict[int, Composition] = {}
    seen: dict[tuple, int] = {}
    for index, composition in enumerate(compositions):
        try:
            spec = validate_composition(composition)
        except CompositionError as exception:
            errors.append(f'`compositions[{index}]`: {str(exception).removeprefix("invalid composition: ")}')
            continue
        valid[index] = spec
        divisor = math.gcd(*spec.counts.values())
        ratio = tuple(sorted((name, count // divisor) for name, count in spec.counts.items()))
        if ratio in seen:
            errors.append(
                f'`compositions[{index}]` ({spec}) is the same liquid as `compositions[{seen[ratio]}]` '
                f'({valid[seen[ratio]]}): give each composition once'
            )
        else:
            seen[ratio] = index
    if errors:
        raise CompositionError('invalid `compositions`:\n  - ' + '\n  - '.join(errors))
    return list(valid.values())


def _key_label(key) -> str:
    return repr(key.name) if isinstance(key, Ion) else repr(key)


def validate_density(density) -> float:
    """Check a target density and return it as a float in g/cm^3.

    :param density: mass density in g/cm^3 (an AiiDA ``Float`` is accepted through its ``value``).
    :raises CompositionError: not a real number, not finite, or outside :data:`DENSITY_RANGE` (0.1-5 g/cm^3).
    """
    value = getattr(density, 'value', density)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CompositionError(f'density must be a number in g/cm^3, got {density!r} ({type(density).__name__})')
    value = float(value)
    low, high = DENSITY_RANGE
    if not math.isfinite(value) or not low <= value <= high:
        raise CompositionError(
            f'density must be between {low} and {high} g/cm^3 (ionic liquids: about 0.9-2.0), got {value}; '
            'note the unit is g/cm^3, not kg/m^3'
        )
    return value


def validate_seed(seed) -> int:
    """Check a random seed (for RDKit conformers and Packmol) and return it as an int.

    :param seed: integer in ``0 .. 2**31 - 1`` (an AiiDA ``Int`` is accepted through its ``value``).
    :raises CompositionError: not an integer or out of range.
    """
    value = getattr(seed, 'value', seed)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= SEED_MAX:
        raise CompositionError(f'seed must be an integer between 0 and {SEED_MAX}, got {seed!r}')
    return int(value)


def _formula_unit(cation: Ion, anion: Ion) -> tuple[int, int]:
    """Smallest neutral formula unit (n_cation, n_anion) of a salt."""
    divisor = math.gcd(cation.charge, -anion.charge)
    return -anion.charge // divisor, cation.charge // divisor


def salt_in_il_composition(
    salt_cation: str, il_cation: str, anion: str, salt_fraction: float, n_anions: int
) -> dict[str, int]:
    """Composition of a salt dissolved in an ionic liquid with the same anion, e.g. LiTFSI in PYR14TFSI.

    The salt mole fraction is ``x = n_salt / (n_salt + n_IL)`` in formula units (LiTFSI, PYR14TFSI;
    Mg(TFSI)2 counts as one unit). With ``b_s`` and ``b_il`` anions per salt and IL formula unit and
    ``N = n_anions``, the exact number of salt units is ``x N / (x b_s + (1 - x) b_il)``.

    Rounding rule: the number of salt formula units is rounded half up (0.5 -> 1); the IL formula units
    take the remaining anions, ``n_IL = (N - b_s n_salt) / b_il``. The anion count is therefore exact and
    the realised fraction ``n_salt / (n_salt + n_IL)`` is the closest one the box allows.
    Example: ``salt_in_il_composition('Li', 'PYR14', 'TFSI', 0.2, 10)`` -> ``{'Li': 2, 'PYR14': 8, 'TFSI': 10}``.

    :param salt_cation: cation of the salt (e.g. ``'Li'``); a known ion name.
    :param il_cation: cation of the ionic liquid (e.g. ``'PYR14'``).
    :param anion: the common anion (e.g. ``'TFSI'``).
    :param salt_fraction: salt mole fraction ``x``, ``0 <= x < 1`` (0 gives the neat IL).
    :param n_anions: total number of anions in the box (positive integer).
    :returns: validated composition ``{salt_cation: n, il_cation: n, anion: n_anions}`` (salt cation
        omitted when ``x == 0``).
    :raises CompositionError: unknown ions, wrong charge signs, ``x`` outside ``[0, 1)``, too few anions
        for ``x`` (no salt or no IL left after rounding), or remaining anions not divisible by the IL
        formula unit (rounding would break charge neutrality).
    """
    cation_salt, cation_il, common_anion = get_ion(salt_cation), get_ion(il_cation), get_ion(anion)
    if cation_salt.charge <= 0 or cation_il.charge <= 0:
        raise CompositionError(
            f'salt_in_il_composition: {cation_salt.name} and {cation_il.name} must be cations '
            f'(charges {cation_salt.charge:+d}, {cation_il.charge:+d})'
        )
    if common_anion.charge >= 0:
        raise CompositionError(
            f'salt_in_il_composition: {common_anion.name} must be an anion (charge {common_anion.charge:+d})'
        )
    if cation_salt.name == cation_il.name:
        raise CompositionError('salt_in_il_composition: the salt cation and the IL cation must differ')
    if isinstance(salt_fraction, bool) or not isinstance(salt_fraction, numbers.Real):
        raise CompositionError(f'salt mole fraction must be a number in [0, 1), got {salt_fraction!r}')
    x = float(salt_fraction)
    if not 0.0 <= x < 1.0:
        raise CompositionError(f'salt mole fraction must be in [0, 1), got {x}')
    count_error = _count_error('anions (n_anions)', n_anions)
    if count_error:
        raise CompositionError(count_error)

    a_salt, b_salt = _formula_unit(cation_salt, common_anion)
    a_il, b_il = _formula_unit(cation_il, common_anion)
    exact = x * n_anions / (x * b_salt + (1.0 - x) * b_il)
    n_salt = math.floor(exact + 0.5)
    remaining = n_anions - b_salt * n_salt
    if x > 0 and n_salt == 0:
        raise CompositionError(
            f'{n_anions} anions are too few for a salt mole fraction of {x}: {exact:.3f} salt units round to 0; '
            'use more anions'
        )
    if remaining <= 0:
        raise CompositionError(
            f'{n_anions} anions at a salt mole fraction of {x} leave no ionic-liquid cations after rounding '
            f'({n_salt} salt units); use more anions or a smaller fraction'
        )
    if remaining % b_il:
        raise CompositionError(
            f'rounding breaks charge neutrality: {n_salt} salt units leave {remaining} anions, not a multiple of '
            f'the {b_il} anions per {cation_il.name} formula unit; choose another number of anions'
        )
    n_il = remaining // b_il
    composition = {}
    if n_salt:
        composition[cation_salt.name] = a_salt * n_salt
    composition[cation_il.name] = a_il * n_il
    composition[common_anion.name] = n_anions
    validate_composition(composition)
    return composition
