"""Import MD trajectories (e.g. from a classical force-field run) as ``ase.Atoms`` frames with molecule ids. No AiiDA.

Formats (:data:`TRAJECTORY_FORMATS`):

==================  =========================================================================================
``extxyz``, ``xyz``  ASE readers; energies from the calculator results or ``info`` (``energy``, ``REF_energy``),
                     molecule ids from a ``mol_id`` column when present.
``traj``            ASE trajectory (``.traj``); energies from the stored calculator results.
``lammps-dump``     LAMMPS text dump (ASE's ``lammps-dump-text`` reader; atoms sorted by id). Without an
                    ``element`` column, give ``type_map`` (element of LAMMPS type 1, 2, ...). ASE does not
                    read a ``mol`` column: molecules come from the composition (bond graph).
``gromacs``         GROMACS through MDAnalysis: ``topology`` (``.gro``, ``.tpr``, ``.pdb``) and a trajectory
                    (``.xtc``, ``.trr``, or a multi-frame ``.gro``). Residues are molecules; elements from
                    the topology, else guessed from atom names, or given by ``element_map`` (name -> element).
                    Positions in Å (MDAnalysis' unit).
``ilmlff-h5``       the project's HDF5 trajectory (:mod:`aiida_ilmlff.analysis.trajectory`), e.g. the output of
                    the MLFF MD runner: unwrapped positions, cells, potential energies, ``mol_id``, ``molecules``.
==================  =========================================================================================

Molecules: with a ``composition`` (ion name -> count), every molecule is identified by its element formula
(atoms in the file's order are kept); molecule ids come from the file (``mol_id`` column, LAMMPS ``mol``,
GROMACS residues) or, if absent, from the bond graph of the first frame (covalent radii x 1.2, periodic images
included). If the file's atoms are in the box builder's order (cations, then anions, each in SMILES order),
molecules are assigned by that order directly. The element counts must equal the composition's, else
:class:`SpeciesMismatchError` (a ``ValueError``) says which elements differ.

Labels read from a file (e.g. force-field energies and forces) are not kept as labels unless asked
(``keep_labels``): they are not at the labelling level of theory. The potential energies are returned beside
the frames for the equilibration analysis.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pathlib
import typing as t

import numpy as np
from ase import Atoms

__all__ = (
    'TRAJECTORY_FORMATS',
    'ImportedTrajectory',
    'SpeciesMismatchError',
    'assign_molecules',
    'check_species',
    'composition_element_counts',
    'read_first_frame',
    'read_trajectory',
)

TRAJECTORY_FORMATS = ('extxyz', 'xyz', 'traj', 'lammps-dump', 'gromacs', 'ilmlff-h5')

_ASE_FORMATS = {'extxyz': 'extxyz', 'xyz': 'extxyz', 'traj': 'traj', 'lammps-dump': 'lammps-dump-text'}
_ENERGY_INFO_KEYS = ('energy', 'REF_energy', 'potential_energy', 'free_energy')


class SpeciesMismatchError(ValueError):
    """The elements of a trajectory do not match the composition it is said to hold."""


@dataclasses.dataclass
class ImportedTrajectory:
    """Frames read from a trajectory file.

    Attributes:
        images: ``ase.Atoms`` per frame with ``arrays['mol_id']`` and ``info['molecules']`` (when known).
        energies: ``(T,)`` potential energies from the file in eV (``nan`` where absent).
        times: ``(T,)`` times in fs, or ``None``. indices: ``(T,)`` frame indices in the file.
        format: the format read. molecule_source: how molecule ids were found (``file``, ``order``, ``bonds``,
        or ``none``).
    """

    images: list[Atoms]
    energies: np.ndarray
    times: np.ndarray | None
    indices: np.ndarray
    format: str
    molecule_source: str


# --------------------------------------------------------------------------------------------- composition


def composition_element_counts(composition: t.Any) -> dict[str, int]:
    """Element -> number of atoms of the whole composition (see :func:`~aiida_ilmlff.systems.validate_composition`)."""
    from aiida_ilmlff.systems import validate_composition

    spec = validate_composition(composition)
    counts: collections.Counter = collections.Counter()
    for name, count in spec.counts.items():
        for symbol in spec.ions[name].symbols:
            counts[symbol] += count
    return dict(sorted(counts.items()))


def _species_message(found: t.Mapping[str, int], expected: t.Mapping[str, int], what: str) -> str:
    elements = sorted(set(found) | set(expected))
    differences = [
        f'{e}: {found.get(e, 0)} vs {expected.get(e, 0)}' for e in elements if found.get(e, 0) != expected.get(e, 0)
    ]
    return (
        f'the species of {what} do not match the composition: element counts (trajectory vs composition) differ '
        f'for {", ".join(differences)}; trajectory {dict(found)}, composition {dict(expected)}. Give the '
        'composition of the simulated box (ion -> number of molecules), or check `type_map`/`element_map`'
    )


def check_species(atoms: Atoms, composition: t.Any, what: str = 'the trajectory') -> None:
    """Raise :class:`SpeciesMismatchError` unless ``atoms`` has exactly the composition's element counts."""
    expected = composition_element_counts(composition)
    found = dict(sorted(collections.Counter(atoms.get_chemical_symbols()).items()))
    if found != expected:
        raise SpeciesMismatchError(_species_message(found, expected, what))


def assign_molecules(
    atoms: Atoms, composition: t.Any, mol_id: t.Sequence[int] | None = None
) -> tuple[np.ndarray, list[str], str]:
    """``(mol_id, molecules, how)`` for ``atoms`` holding ``composition`` (see the module docstring).

    :param mol_id: molecule index per atom from the file (any integers; renumbered by first appearance).
    :raises SpeciesMismatchError: if the element counts differ from the composition's.
    :raises ValueError: if a molecule's formula matches no ion of the composition, or the molecule counts
        per ion differ from the composition.
    """
    from aiida_ilmlff.systems import validate_composition

    check_species(atoms, composition)
    spec = validate_composition(composition)
    symbols = atoms.get_chemical_symbols()
    canonical = [s for name in spec.molecules for s in spec.ions[name].symbols]
    if mol_id is None and symbols == canonical:
        sizes = [spec.ions[name].n_atoms for name in spec.molecules]
        return np.repeat(np.arange(len(sizes)), sizes).astype(np.int64), list(spec.molecules), 'order'
    how = 'file'
    if mol_id is None:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        from .molecules import bond_graph

        bonds = np.array(sorted(bond_graph(atoms)), dtype=np.int64).reshape(-1, 2)
        graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(len(atoms), len(atoms)))
        _, mol_id = connected_components(graph, directed=False)
        how = 'bonds'
    raw = np.asarray(mol_id)
    _, first = np.unique(raw, return_index=True)
    order = {value: k for k, value in enumerate(raw[np.sort(first)])}
    ids = np.array([order[value] for value in raw], dtype=np.int64)
    formulas = {name: collections.Counter(ion.symbols) for name, ion in spec.ions.items()}
    molecules, unmatched = [], []
    for k in range(len(order)):
        formula = collections.Counter(np.asarray(symbols, dtype=object)[ids == k].tolist())
        name = next((n for n, f in formulas.items() if f == formula), None)
        if name is None:
            unmatched.append(''.join(f'{e}{c}' for e, c in sorted(formula.items())))
        molecules.append(name)
    if unmatched:
        raise ValueError(
            f'{len(unmatched)} molecule(s) found by {"the file" if how == "file" else "bond perception"} match no ion '
            f'of the composition: formulas {sorted(set(unmatched))[:10]}; ions {list(spec.counts)} '
            '(molecules broken or fused in the first frame, or wrong molecule ids)'
        )
    found_counts = collections.Counter(molecules)
    if dict(found_counts) != dict(spec.counts):
        raise ValueError(f'molecules found {dict(found_counts)} differ from the composition {dict(spec.counts)}')
    return ids, molecules, how


# --------------------------------------------------------------------------------------------- readers


def _energy_of(atoms: Atoms) -> float:
    results = getattr(atoms.calc, 'results', None) or {}
    if results.get('energy') is not None:
        return float(results['energy'])
    for key in _ENERGY_INFO_KEYS:
        if key in atoms.info:
            try:
                return float(atoms.info[key])
            except (TypeError, ValueError):
                continue
    return math.nan


def _apply_type_map(atoms: Atoms, type_map: t.Sequence[str] | None) -> None:
    """LAMMPS: ASE reads the ``type`` column as atomic numbers when no ``element`` column exists."""
    if not type_map:
        return
    from ase.data import atomic_numbers

    types = atoms.arrays.get('type', atoms.numbers)
    try:
        atoms.numbers = np.array([atomic_numbers[type_map[int(k) - 1]] for k in types])
    except (IndexError, KeyError) as exception:
        raise ValueError(f'`type_map` {list(type_map)} does not cover LAMMPS type {exception}') from exception


def _read_ase(path, fmt: str, window: slice, type_map) -> t.Iterator[tuple[int, Atoms]]:
    from ase.io import iread

    start, stop, step = window.start or 0, window.stop, window.step or 1
    for k, atoms in enumerate(iread(str(path), index=slice(start, stop, step), format=_ASE_FORMATS[fmt])):
        if fmt == 'lammps-dump':
            _apply_type_map(atoms, type_map)
        yield start + k * step, atoms


def _guess_elements(names: t.Sequence[str], element_map: t.Mapping[str, str] | None) -> list[str]:
    from ase.data import chemical_symbols

    known = set(chemical_symbols[1:])
    elements = []
    for name in names:
        if element_map and name in element_map:
            elements.append(element_map[name])
            continue
        letters = ''.join(c for c in str(name) if c.isalpha())
        two = letters[:2].capitalize()
        if len(letters) >= 2 and two in known and two in ('Li', 'Na', 'Cl', 'Br'):
            elements.append(two)
        elif letters[:1].upper() in known:
            elements.append(letters[:1].upper())
        else:
            raise ValueError(f'cannot guess the element of atom name {name!r}: give `element_map`')
    return elements


def _mdanalysis_universe(path, topology):
    import warnings

    import MDAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if topology is None:
            return MDAnalysis.Universe(str(path))
        return MDAnalysis.Universe(str(topology), str(path))


def _read_gromacs(path, topology, window: slice, element_map) -> t.Iterator[tuple[int, Atoms, np.ndarray, float]]:
    universe = _mdanalysis_universe(path, topology)
    atoms_group = universe.atoms
    elements = None
    if hasattr(atoms_group, 'elements'):
        candidate = [str(e).strip().capitalize() for e in atoms_group.elements]
        if all(candidate):
            elements = candidate
    if elements is None or element_map:
        elements = _guess_elements(atoms_group.names, element_map)
    residues = np.asarray(atoms_group.resindices, dtype=np.int64)
    for ts in universe.trajectory[window]:
        cell = ts.triclinic_dimensions if ts.dimensions is not None else np.zeros((3, 3))
        atoms = Atoms(
            symbols=elements, positions=np.array(atoms_group.positions, dtype=np.float64), cell=cell, pbc=True
        )
        time = float(ts.time) * 1000.0 if ts.time is not None else math.nan  # ps -> fs
        yield int(ts.frame), atoms, residues, time


def _read_ilmlff(path, window: slice) -> t.Iterator[tuple[int, Atoms, float, float, list[str] | None]]:
    from aiida_ilmlff.analysis import TrajectoryReader

    with TrajectoryReader(path) as reader:
        start, stop, step = window.indices(len(reader))
        fields = ('positions', 'cell', *(('energy',) if reader.has_energy else ()))
        molecules = list(reader.molecules) if reader.molecules is not None else None
        for block in reader.iter_chunks(stride=step, start=start, stop=stop, fields=fields):
            for k, index in enumerate(block.indices):
                atoms = Atoms(numbers=reader.numbers, positions=block.positions[k], cell=block.cell[k], pbc=True)
                atoms.arrays['mol_id'] = np.asarray(reader.mol_id, dtype=np.int64)
                energy = float(block.energy[k]) if block.energy is not None else math.nan
                yield int(index), atoms, energy, float(block.time[k]), molecules


def read_first_frame(path: str | os.PathLike, fmt: str, *, topology=None, type_map=None, element_map=None) -> Atoms:
    """The first frame of a trajectory (for checks before anything runs).

    :raises ValueError: for an unknown format, an empty or unreadable file.
    """
    imported = read_trajectory(path, fmt, topology=topology, type_map=type_map, element_map=element_map, stop=1)
    return imported.images[0]


def read_trajectory(
    path: str | os.PathLike,
    fmt: str,
    *,
    composition: t.Any = None,
    topology: str | os.PathLike | None = None,
    type_map: t.Sequence[str] | None = None,
    element_map: t.Mapping[str, str] | None = None,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    keep_labels: bool = False,
) -> ImportedTrajectory:
    """Read frames ``start:stop:stride`` of a trajectory file (see the module docstring for formats).

    :param composition: ion name -> count of the simulated box; gives the molecules and checks the species.
    :param topology: GROMACS topology file (``gromacs`` format).
    :param type_map: element per LAMMPS atom type (``lammps-dump``). :param element_map: atom name -> element
        (``gromacs``).
    :param keep_labels: keep energies/forces from the file as the frames' labels.
    :returns: :class:`ImportedTrajectory` (frames in memory: choose ``stride`` for long runs).
    :raises ValueError: unknown format, no frames, non-positive stride.
    :raises SpeciesMismatchError: the elements differ from ``composition``.
    """
    if fmt not in TRAJECTORY_FORMATS:
        raise ValueError(f'unknown trajectory format {fmt!r}: choose from {list(TRAJECTORY_FORMATS)}')
    if int(stride) < 1:
        raise ValueError(f'stride must be >= 1, got {stride}')
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f'no trajectory file at {path}')
    window = slice(int(start), None if stop is None else int(stop), int(stride))
    images, energies, times, indices = [], [], [], []
    file_mol_id, file_molecules = None, None
    if fmt in _ASE_FORMATS:
        for index, atoms in _read_ase(path, fmt, window, type_map):
            energies.append(_energy_of(atoms))
            times.append(float(atoms.info.get('time', math.nan)))
            if 'mol_id' in atoms.arrays and file_mol_id is None:
                file_mol_id = np.asarray(atoms.arrays['mol_id'], dtype=np.int64)
            if file_molecules is None and atoms.info.get('molecules'):
                file_molecules = atoms.info['molecules']
            indices.append(index)
            images.append(atoms)
    elif fmt == 'gromacs':
        for index, atoms, residues, time in _read_gromacs(path, topology, window, element_map):
            file_mol_id = residues
            energies.append(math.nan)
            times.append(time)
            indices.append(index)
            images.append(atoms)
    else:
        for index, atoms, energy, time, molecules in _read_ilmlff(path, window):
            file_mol_id = atoms.arrays['mol_id']
            file_molecules = molecules
            energies.append(energy)
            times.append(time)
            indices.append(index)
            images.append(atoms)
    if not images:
        raise ValueError(f'no frames read from {path.name} (format {fmt}, frames {start}:{stop}:{stride})')

    molecule_source = 'none'
    mol_id, molecules = None, None
    if composition is not None:
        mol_id, molecules, molecule_source = assign_molecules(images[0], composition, file_mol_id)
    elif file_mol_id is not None:
        mol_id, molecules, molecule_source = file_mol_id, file_molecules, 'file'
    for k, atoms in enumerate(images):
        if len(atoms) != len(images[0]) or (atoms.numbers != images[0].numbers).any():
            raise ValueError(f'frame {indices[k]} of {path.name} has other atoms than frame {indices[0]}')
        forces = None
        results = getattr(atoms.calc, 'results', None) or {}
        if keep_labels:
            forces = results.get('forces')
            if forces is None and 'forces' in atoms.arrays:
                forces = atoms.arrays['forces']
        clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if mol_id is not None:
            clean.arrays['mol_id'] = np.asarray(mol_id, dtype=np.int64)
        if molecules:
            clean.info['molecules'] = list(molecules)
        if keep_labels and np.isfinite(energies[k]):
            from ase.calculators.singlepoint import SinglePointCalculator

            clean.calc = SinglePointCalculator(
                clean, energy=energies[k], **({'forces': np.asarray(forces)} if forces is not None else {})
            )
        images[k] = clean
    times_array = np.asarray(times, dtype=np.float64)
    return ImportedTrajectory(
        images=images,
        energies=np.asarray(energies, dtype=np.float64),
        times=None if np.isnan(times_array).all() else times_array,
        indices=np.asarray(indices, dtype=np.int64),
        format=fmt,
        molecule_source=molecule_source,
    )
