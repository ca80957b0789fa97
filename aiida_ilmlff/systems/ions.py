"""Ion library: the ions of ionic liquids by their common abbreviations, and user ions by SMILES.

The library ships with the package (``ions.yaml`` beside this module): PYR14, PYR13, BMIM, EMIM, Li, Na,
BF4, PF6, TFSI, FSI, OTf and Cl. Every entry gives a SMILES, a formal charge (in e), a full chemical name
and aliases. The SMILES fixes the atom order of every molecule the box builder writes: heavy atoms in
SMILES order, then the hydrogens in RDKit ``AddHs`` order.

Users add ions for the running Python session with :func:`register_ion`, or inline in a composition
(see :mod:`aiida_ilmlff.systems.composition`); either way the SMILES is parsed by RDKit and its total
formal charge must equal the declared charge. No AiiDA import here: this module is plain science.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import numbers
import re
from collections.abc import Iterable

import yaml
from ase.data import atomic_masses, atomic_numbers
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors, rdMolDescriptors

from .errors import CompositionError

__all__ = (
    'Ion',
    'get_ion',
    'ion_table',
    'is_library_ion',
    'known_ions',
    'library_ions',
    'parse_ion_smiles',
    'register_ion',
    'resolve_ion_name',
    'unregister_ion',
)

#: Ion names are used as AiiDA ``Dict`` keys and in file names: letters, digits, ``_``, ``+``, ``-``.
NAME_PATTERN = re.compile(r'^[A-Za-z][A-Za-z0-9_+\-]{0,31}$')


def parse_ion_smiles(smiles: str, charge: int, name: str = 'ion') -> Chem.Mol:
    """Parse ``smiles`` with RDKit, add explicit hydrogens and check it is one closed-shell species.

    :param smiles: SMILES of the ion (one fragment, no ``.``).
    :param charge: the declared formal charge in e; must equal the sum of the SMILES formal charges.
    :param name: the ion's name, used in error messages.
    :returns: an RDKit ``Mol`` with explicit hydrogens (heavy atoms in SMILES order, then H).
    :raises CompositionError: unparsable SMILES, several fragments, radicals, or a charge mismatch.
    """
    if not isinstance(smiles, str) or not smiles.strip():
        raise CompositionError(f'invalid SMILES for ion {name!r}: expected a non-empty string, got {smiles!r}')
    if isinstance(charge, bool) or not isinstance(charge, numbers.Integral):
        raise CompositionError(
            f'invalid charge for ion {name!r}: expected an integer formal charge in e, got {charge!r}'
        )
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None:
        raise CompositionError(
            f'invalid SMILES for ion {name!r}: RDKit could not parse {smiles!r}; check brackets, ring '
            'closures and valences (charged atoms in brackets, e.g. [N+], [B-])'
        )
    if len(Chem.GetMolFrags(mol)) != 1:
        raise CompositionError(
            f'invalid SMILES for ion {name!r}: {smiles!r} has {len(Chem.GetMolFrags(mol))} fragments; '
            'give each ion as its own entry (one molecule per ion)'
        )
    radicals = Descriptors.NumRadicalElectrons(mol)
    if radicals:
        raise CompositionError(
            f'invalid SMILES for ion {name!r}: {smiles!r} has {radicals} unpaired electron(s); only '
            'closed-shell ions are supported (write hydrogens and charges explicitly, e.g. [NH4+])'
        )
    smiles_charge = Chem.GetFormalCharge(mol)
    if smiles_charge != int(charge):
        raise CompositionError(
            f'charge mismatch for ion {name!r}: the SMILES {smiles!r} carries a formal charge of '
            f'{smiles_charge:+d} e but the declared charge is {int(charge):+d} e'
        )
    return Chem.AddHs(mol)


@dataclasses.dataclass(frozen=True)
class Ion:
    """One molecular or atomic ion (or neutral species) defined by its SMILES.

    :param name: short name used in compositions (e.g. ``'PYR14'``); letters, digits, ``_+-``, at most 32.
    :param smiles: SMILES; hydrogens may be implicit (they are added, after the heavy atoms).
    :param charge: formal charge in e; must equal the SMILES formal charge.
    :param full_name: the chemical name, for documentation.
    :param aliases: other names that resolve to this ion (case-insensitive).
    :raises CompositionError: on an invalid name, SMILES or charge (see :func:`parse_ion_smiles`).
    """

    name: str
    smiles: str
    charge: int
    full_name: str = ''
    aliases: tuple[str, ...] = ()
    _mol: Chem.Mol = dataclasses.field(init=False, repr=False, compare=False, hash=False, default=None)

    def __post_init__(self):
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise CompositionError(
                f'invalid ion name {self.name!r}: use a letter followed by letters, digits, "_", "+" or "-" '
                '(at most 32 characters), e.g. "PYR14" or "N1114"'
            )
        object.__setattr__(self, 'aliases', tuple(str(alias) for alias in self.aliases))
        object.__setattr__(self, '_mol', parse_ion_smiles(self.smiles, self.charge, self.name))
        object.__setattr__(self, 'charge', int(self.charge))

    @property
    def mol(self) -> Chem.Mol:
        """A copy of the RDKit molecule with explicit hydrogens (no conformer)."""
        return Chem.Mol(self._mol)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Element symbols of the atoms, heavy atoms in SMILES order then hydrogens; length ``n_atoms``."""
        return tuple(atom.GetSymbol() for atom in self._mol.GetAtoms())

    @property
    def n_atoms(self) -> int:
        """Number of atoms including hydrogens."""
        return self._mol.GetNumAtoms()

    @property
    def mass(self) -> float:
        """Molar mass in amu (g/mol) from ASE's standard atomic weights (the masses ``ase.Atoms`` uses)."""
        return float(sum(atomic_masses[atomic_numbers[symbol]] for symbol in self.symbols))

    @property
    def formula(self) -> str:
        """Hill formula with the charge, e.g. ``'C9H20N+'``."""
        return rdMolDescriptors.CalcMolFormula(self._mol)

    @property
    def bonds(self) -> tuple[tuple[int, int], ...]:
        """Bonded atom pairs ``(i, j)`` with ``i < j`` (0-based, in :attr:`symbols` order), sorted."""
        return tuple(
            sorted(tuple(sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))) for bond in self._mol.GetBonds())
        )

    def to_dict(self) -> dict:
        """JSON-ready definition ``{'smiles', 'charge', 'full_name'}`` (what an inline composition entry holds)."""
        return {'smiles': self.smiles, 'charge': self.charge, 'full_name': self.full_name}

    def same_species(self, other: Ion) -> bool:
        """Whether ``other`` has the same SMILES (as written) and charge: the same molecule, atom order included."""
        return self.smiles == other.smiles and self.charge == other.charge


@functools.cache
def _load_library() -> dict[str, Ion]:
    text = importlib.resources.files('aiida_ilmlff.systems').joinpath('ions.yaml').read_text(encoding='utf-8')
    entries = yaml.safe_load(text)['ions']
    library = {}
    for entry in entries:
        ion = Ion(
            name=entry['name'],
            smiles=entry['smiles'],
            charge=entry['charge'],
            full_name=entry.get('full_name', ''),
            aliases=tuple(entry.get('aliases', ())),
        )
        _check_no_clash(ion, library)
        library[ion.name] = ion
    return library


_REGISTERED: dict[str, Ion] = {}


def library_ions() -> dict[str, Ion]:
    """The ions shipped with the package, name -> :class:`Ion` (a new dict; the library is read-only)."""
    return dict(_load_library())


def known_ions() -> dict[str, Ion]:
    """Library ions plus the ions registered in this session with :func:`register_ion`, name -> :class:`Ion`."""
    return {**_load_library(), **_REGISTERED}


def is_library_ion(ion: Ion | str) -> bool:
    """Whether ``ion`` (an :class:`Ion` or a canonical name) is a library ion, with the library's SMILES."""
    library = _load_library()
    if isinstance(ion, Ion):
        return ion.name in library and library[ion.name].same_species(ion)
    return ion in library


def _lookup_table(ions: Iterable[Ion]) -> dict[str, str]:
    """Lower-cased name or alias -> canonical name."""
    table = {}
    for ion in ions:
        for key in (ion.name, *ion.aliases):
            table.setdefault(key.lower(), ion.name)
    return table


def _check_no_clash(ion: Ion, existing: dict[str, Ion]) -> None:
    table = _lookup_table(other for other in existing.values() if other.name != ion.name)
    for key in (ion.name, *ion.aliases):
        if key.lower() in table:
            raise CompositionError(
                f'ion name or alias {key!r} of {ion.name!r} clashes with the existing ion {table[key.lower()]!r}; '
                'choose another name'
            )


def close_names(name: str, n: int = 5) -> list[str]:
    """Canonical names of known ions whose name or alias resembles ``name`` (difflib, case-insensitive)."""
    table = _lookup_table(known_ions().values())
    matches = difflib.get_close_matches(str(name).lower(), list(table), n=3 * n, cutoff=0.5)
    result = []
    for match in matches:
        if table[match] not in result:
            result.append(table[match])
    return result[:n]


def resolve_ion_name(name: str) -> str | None:
    """The canonical name of the known ion called ``name`` (exact name first, then names and aliases
    case-insensitively), or ``None`` if there is none."""
    ions = known_ions()
    if name in ions:
        return name
    return _lookup_table(ions.values()).get(str(name).lower())


def unknown_ion_message(name: str) -> str:
    """The error text for an unknown ion name: close names, the known names, and how to add an ion."""
    close = close_names(name)
    hint = f'did you mean {", ".join(close)}? ' if close else ''
    return (
        f'unknown ion {name!r}: {hint}known ions: {", ".join(known_ions())}. Add a new ion with '
        "register_ion(name, smiles, charge) or define it inline as {name: {'count': n, 'smiles': ..., "
        "'charge': q}}"
    )


def get_ion(name: str) -> Ion:
    """The known ion called ``name`` (canonical name or alias, case-insensitive).

    :raises CompositionError: unknown name; the message lists close names (difflib) and all known ions.
    """
    canonical = resolve_ion_name(name)
    if canonical is None:
        raise CompositionError(unknown_ion_message(name))
    return known_ions()[canonical]


def register_ion(
    name: str,
    smiles: str,
    charge: int,
    full_name: str = '',
    aliases: Iterable[str] = (),
    *,
    overwrite: bool = False,
) -> Ion:
    """Add an ion defined by SMILES and formal charge for this Python session.

    Registering the same name with the same SMILES and charge again is a no-op. Library ions cannot be
    redefined. A registered ion is written into AiiDA inputs inline (SMILES and charge), so provenance does
    not depend on this session's registry.

    :param name: short name (letters, digits, ``_+-``; at most 32 characters), e.g. ``'N1114'``.
    :param smiles: SMILES of the ion; its formal charge must equal ``charge``.
    :param charge: formal charge in e.
    :param full_name: the chemical name.
    :param aliases: other names for lookups (case-insensitive).
    :param overwrite: replace an earlier registration of ``name`` with a different definition.
    :returns: the registered :class:`Ion`.
    :raises CompositionError: invalid name/SMILES/charge, a library name, or a clash with a known name or alias.
    """
    ion = Ion(name=name, smiles=smiles, charge=charge, full_name=full_name, aliases=tuple(aliases))
    library = _load_library()
    if ion.name in library or resolve_ion_name(ion.name) in library:
        if library.get(ion.name) is not None and library[ion.name].same_species(ion):
            return library[ion.name]
        raise CompositionError(
            f'{ion.name!r} is a library ion ({resolve_ion_name(ion.name)}) and cannot be redefined; '
            'register the new species under another name'
        )
    previous = _REGISTERED.get(ion.name)
    if previous is not None and not overwrite:
        if previous.same_species(ion):
            return previous
        raise CompositionError(
            f'ion {ion.name!r} is already registered with SMILES {previous.smiles!r} and charge '
            f'{previous.charge:+d}; pass overwrite=True to replace it'
        )
    _check_no_clash(ion, known_ions())
    _REGISTERED[ion.name] = ion
    return ion


def unregister_ion(name: str) -> None:
    """Remove an ion added with :func:`register_ion` (library ions stay). Unknown names are ignored."""
    _REGISTERED.pop(name, None)


def ion_table() -> list[dict]:
    """Rows ``{name, full_name, formula, charge, n_atoms, mass, smiles, aliases}`` of all known ions (for docs
    and the CLI); ``mass`` in amu."""
    return [
        {
            'name': ion.name,
            'full_name': ion.full_name,
            'formula': ion.formula,
            'charge': ion.charge,
            'n_atoms': ion.n_atoms,
            'mass': round(ion.mass, 3),
            'smiles': ion.smiles,
            'aliases': list(ion.aliases),
        }
        for ion in known_ions().values()
    ]
