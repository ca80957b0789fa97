"""Physics guards of the MD runner: the checks that stop a run that has gone wrong (runs on the compute node).

The guards, their thresholds, runner exit statuses and ``ilmlff.md`` exit codes are part of the contract
(:data:`aiida_ilmlff.runner.contract.GUARDS`, :data:`~aiida_ilmlff.runner.contract.GUARD_DEFAULTS`): the
daemon reads them there. This module checks every MD step against them: :class:`GuardChecker`, with a Verlet
list (:class:`PairList`) for the minimum distance and the covalent bonds of the starting frame
(:class:`BondWatch`) for the ``bond`` guard. Pure numpy; the pair search is
:func:`aiida_ilmlff.common.geometry.pairs_within` (scipy k-d tree), the bond perception ASE's
:func:`~ase.neighborlist.neighbor_list` (imported when bonds are perceived).
"""

from __future__ import annotations

import dataclasses
import time
import typing as t

import numpy as np

from aiida_ilmlff.common.geometry import min_pair_distance, minimum_image, pairs_within, perpendicular_widths

from .contract import BOND_PERCEPTION_SCALE, GUARD_DEFAULTS, GUARDS, Guard

__all__ = ('BondWatch', 'GuardChecker', 'GuardFailure', 'PairList')


@dataclasses.dataclass
class GuardFailure:
    """A tripped guard: ``value`` measured against ``threshold`` at ``step`` (``atoms``: the atoms involved)."""

    guard: Guard
    step: int
    time_fs: float
    value: float
    threshold: float
    atoms: list[int]
    message: str
    extra: dict[str, t.Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, t.Any]:
        """JSON-ready form (``name``, ``step``, ``time_fs``, ``value``, ``threshold``, ``atoms``, ``message``, and
        the guard's own details, e.g. ``bond`` for the ``bond`` guard)."""
        return {
            **self.extra,
            'name': self.guard.name,
            'runner_status': self.guard.runner_status,
            'step': self.step,
            'time_fs': self.time_fs,
            'value': None if not np.isfinite(self.value) else float(self.value),
            'threshold': self.threshold,
            'atoms': self.atoms,
            'message': self.message,
        }


class PairList:
    """Verlet list for the ``min_distance`` guard: pairs within ``cutoff + skin`` found with a k-d tree, then only
    their distances are computed each step, until an atom has moved by more than ``skin / 2`` or the cell has
    changed by more than ``skin / 4`` (then the list is rebuilt). Exact, like a full search every step, for
    boxes wider than twice ``cutoff + skin``; narrower boxes get a full search every call.

    :param cutoff: Å, the guard distance. :param skin: Å.
    """

    def __init__(self, cutoff: float, skin: float = 1.0) -> None:
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.reference: np.ndarray | None = None
        self.reference_cell: np.ndarray | None = None
        self.pairs = np.zeros((0, 2), dtype=np.int64)
        self.usable = False
        self.rebuilds = 0

    def _build(self, positions: np.ndarray, cell: np.ndarray) -> None:
        self.inverse = np.linalg.inv(cell)
        self.usable = bool(2 * (self.cutoff + self.skin) < perpendicular_widths(cell).min())
        if self.usable:
            i, j, _ = pairs_within(positions, None, cell, self.cutoff + self.skin, same=True)
            self.pairs = np.stack([i, j], axis=1)
        self.reference = positions.copy()
        self.reference_cell = cell.copy()
        self.rebuilds += 1

    def _stale(self, positions: np.ndarray, cell: np.ndarray) -> bool:
        if self.reference is None or self.reference.shape != positions.shape:
            return True
        if np.abs(cell - self.reference_cell).max() > self.skin / 4:
            return True
        moved = positions - self.reference
        return bool(np.einsum('ij,ij->i', moved, moved).max() > self.skin**2 / 4)

    def min_distance(self, positions: np.ndarray, cell: np.ndarray) -> tuple[float, tuple[int, int] | None]:
        """As :func:`~aiida_ilmlff.common.geometry.min_pair_distance` with the guard ``cutoff``."""
        positions = np.asarray(positions, dtype=float)
        cell = np.asarray(cell, dtype=float)
        if self._stale(positions, cell):
            self._build(positions, cell)
        if not self.usable:
            return min_pair_distance(positions, cell, self.cutoff)
        if len(self.pairs) == 0:
            return float('inf'), None
        delta = positions[self.pairs[:, 1]] - positions[self.pairs[:, 0]]
        delta -= np.round(delta @ self.inverse) @ cell  # the image choice is stable while the cell changes little
        distances2 = np.einsum('ij,ij->i', delta, delta)
        best = int(np.argmin(distances2))
        distance = float(np.sqrt(distances2[best]))
        if distance >= self.cutoff:
            return float('inf'), None
        return distance, (int(self.pairs[best, 0]), int(self.pairs[best, 1]))


class BondWatch:
    """The covalent bonds of the starting frame and their lengths there: the topology the ``bond`` guard keeps.

    Bonds are the pairs of atoms of one molecule (same ``mol_id``) closer than
    :data:`~aiida_ilmlff.runner.contract.BOND_PERCEPTION_SCALE` x (r_i + r_j), with ASE's covalent radii
    (Cordero et al., Dalton Trans. 2008), minimum image. Each check computes the minimum-image length of every
    bond (:func:`~aiida_ilmlff.common.geometry.minimum_image`) and its stretch, length / starting length.

    :param pairs: (n_bonds, 2) int atom indices, i < j. :param reference_lengths: (n_bonds,) Å.
    :param numbers: (n_atoms,) atomic numbers. :param mol_id: (n_atoms,) molecule index of every atom.
    :param molecules: species name of every molecule, or ``None``.
    """

    def __init__(
        self,
        pairs: np.ndarray,
        reference_lengths: np.ndarray,
        numbers: np.ndarray,
        mol_id: np.ndarray,
        molecules: t.Sequence[str] | None = None,
    ) -> None:
        self.pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        self.reference_lengths = np.asarray(reference_lengths, dtype=float).reshape(-1)
        if len(self.pairs) != len(self.reference_lengths):
            raise ValueError(f'{len(self.pairs)} bonds but {len(self.reference_lengths)} reference lengths')
        if len(self.pairs) and not np.all(self.reference_lengths > 0):
            raise ValueError('a bond of the starting frame has zero length')
        self.numbers = np.asarray(numbers, dtype=np.int64)
        self.mol_id = np.asarray(mol_id, dtype=np.int64)
        self.molecules = None if molecules is None else list(molecules)
        self.checks = 0
        self.seconds = 0.0

    @classmethod
    def from_frame(
        cls,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray,
        mol_id: np.ndarray,
        molecules: t.Sequence[str] | None = None,
        scale: float = BOND_PERCEPTION_SCALE,
    ) -> BondWatch:
        """Perceive the bonds of one periodic frame (positions (N, 3) Å, cell (3, 3) Å, ``mol_id`` (N,))."""
        from ase import Atoms
        from ase.data import covalent_radii
        from ase.neighborlist import neighbor_list

        numbers = np.asarray(numbers, dtype=np.int64)
        mol_id = np.asarray(mol_id, dtype=np.int64)
        if len(mol_id) != len(numbers):
            raise ValueError(f'mol_id has {len(mol_id)} entries for {len(numbers)} atoms')
        atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
        i, j, d = neighbor_list('ijd', atoms, scale * covalent_radii[numbers], self_interaction=False)
        keep = (i < j) & (mol_id[i] == mol_id[j])
        pairs = np.stack([i[keep], j[keep]], axis=1)
        lengths = d[keep]
        if len(pairs):  # a tiny cell can list one pair at two images: keep the shortest
            order = np.lexsort((lengths, pairs[:, 1], pairs[:, 0]))
            pairs, lengths = pairs[order], lengths[order]
            first = np.ones(len(pairs), dtype=bool)
            first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
            pairs, lengths = pairs[first], lengths[first]
        return cls(pairs, lengths, numbers, mol_id, molecules)

    def lengths(self, positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
        """(n_bonds,) minimum-image bond lengths in Å of a frame (positions (N, 3) Å, cell (3, 3) Å)."""
        if len(self.pairs) == 0:
            return np.zeros(0)
        delta = positions[self.pairs[:, 1]] - positions[self.pairs[:, 0]]
        delta = minimum_image(delta, cell)
        return np.sqrt(np.einsum('ij,ij->i', delta, delta))

    def worst(self, positions: np.ndarray, cell: np.ndarray) -> tuple[int, float] | None:
        """``(bond index, stretch)`` of the most stretched bond (length / starting length), or ``None`` (no bond)."""
        started = time.perf_counter()
        try:
            if len(self.pairs) == 0:
                return None
            stretch = self.lengths(np.asarray(positions, dtype=float), np.asarray(cell, dtype=float))
            stretch /= self.reference_lengths
            index = int(np.argmax(stretch))
            return index, float(stretch[index])
        finally:
            self.checks += 1
            self.seconds += time.perf_counter() - started

    def describe(self, index: int, length: float) -> dict[str, t.Any]:
        """The bond ``index`` as a JSON-ready dict: ``i``, ``j``, ``elements``, ``molecule``, ``species``,
        ``length_A``, ``reference_length_A``, ``stretch``, ``label`` (e.g. ``"BF4 #2: B(5)-F(7) 1.52x"``)."""
        from ase.data import chemical_symbols

        i, j = (int(k) for k in self.pairs[index])
        molecule = int(self.mol_id[i])
        species = self.molecules[molecule] if self.molecules and molecule < len(self.molecules) else None
        elements = [chemical_symbols[self.numbers[i]], chemical_symbols[self.numbers[j]]]
        reference = float(self.reference_lengths[index])
        stretch = length / reference
        return {
            'i': i,
            'j': j,
            'elements': elements,
            'molecule': molecule,
            'species': species,
            'length_A': float(length),
            'reference_length_A': reference,
            'stretch': float(stretch),
            'label': f'{species or "molecule"} #{molecule}: {elements[0]}({i})-{elements[1]}({j}) '
            f'{length:.2f} A = {stretch:.2f}x',
        }

    def to_checkpoint(self) -> dict[str, list]:
        """``bonds`` and ``bond_lengths_A`` for the checkpoint (a restart keeps the starting frame's topology)."""
        return {'bonds': self.pairs.tolist(), 'bond_lengths_A': self.reference_lengths.tolist()}


class GuardChecker:
    """Checks one MD state against the guards.

    :param guards: the ``guards`` block (missing keys take :data:`GUARD_DEFAULTS`).
    :param target_temperature: K, the temperature the ``temperature`` guard scales (``None`` or 0: off).
    :param reference_volume: Å^3, V0 of the ``volume`` guard.
    :param bonds: the bonds of the starting frame (``bond`` guard), or ``None`` (the guard is off).
    """

    def __init__(
        self,
        guards: dict | None,
        target_temperature: float | None,
        reference_volume: float,
        bonds: BondWatch | None = None,
    ) -> None:
        settings = {**GUARD_DEFAULTS, **(guards or {})}
        self.max_force = settings['max_force_eV_A']
        self.max_temperature = (
            None
            if not target_temperature or settings['max_temperature_factor'] is None
            else float(settings['max_temperature_factor']) * float(target_temperature)
        )
        self.min_distance = settings['min_distance_A']
        self.max_volume_change = settings['max_volume_change']
        self.distance_every = int(settings['distance_every'] or 1)
        self.max_bond_stretch = settings['max_bond_stretch']
        self.bond_every = int(settings['bond_every'] or 1)
        self.bonds = bonds if self.max_bond_stretch is not None else None
        self.reference_volume = float(reference_volume)
        self.pair_list = PairList(float(self.min_distance)) if self.min_distance is not None else None

    def check(
        self,
        step: int,
        time_fs: float,
        energy: float,
        forces: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray,
        temperature: float,
        volume: float,
        check_distance: bool = True,
        check_bonds: bool = True,
    ) -> GuardFailure | None:
        """The first guard ``(energy [eV], forces (N, 3) [eV/Å], ...)`` trips, in the table's order, or ``None``.

        ``check_distance``/``check_bonds``: whether this step checks the minimum distance / the bonds (the run
        loop checks them every ``distance_every``/``bond_every`` steps and on every saved frame).
        """
        if not (np.isfinite(energy) and np.all(np.isfinite(forces)) and np.all(np.isfinite(positions))):
            bad = np.nonzero(~np.all(np.isfinite(forces), axis=1) | ~np.all(np.isfinite(positions), axis=1))[0]
            return GuardFailure(
                GUARDS['non_finite'],
                step,
                time_fs,
                float('nan'),
                float('nan'),
                bad[:10].tolist(),
                f'non-finite energy ({energy}) or forces/positions on {len(bad)} atoms at step {step}',
            )
        if self.max_force is not None:
            norms2 = np.einsum('ij,ij->i', forces, forces)
            worst = int(np.argmax(norms2))
            value = float(np.sqrt(norms2[worst]))
            if value > self.max_force:
                return GuardFailure(
                    GUARDS['max_force'],
                    step,
                    time_fs,
                    value,
                    float(self.max_force),
                    [worst],
                    f'|F| = {value:.3g} eV/A on atom {worst} > {self.max_force} eV/A at step {step}',
                )
        if self.max_temperature is not None and temperature > self.max_temperature:
            return GuardFailure(
                GUARDS['temperature'],
                step,
                time_fs,
                float(temperature),
                self.max_temperature,
                [],
                f'T = {temperature:.4g} K > {self.max_temperature:.4g} K at step {step}',
            )
        if self.pair_list is not None and check_distance:
            distance, pair = self.pair_list.min_distance(positions, cell)
            if pair is not None:
                return GuardFailure(
                    GUARDS['min_distance'],
                    step,
                    time_fs,
                    distance,
                    float(self.min_distance),
                    list(pair),
                    f'atoms {pair[0]} and {pair[1]} are {distance:.3f} A apart (< {self.min_distance} A) '
                    f'at step {step}',
                )
        if self.max_volume_change is not None:
            change = abs(volume / self.reference_volume - 1.0)
            if change > self.max_volume_change:
                return GuardFailure(
                    GUARDS['volume'],
                    step,
                    time_fs,
                    change,
                    float(self.max_volume_change),
                    [],
                    f'volume {volume:.5g} A^3 is {100 * change:.1f} % away from V0 = {self.reference_volume:.5g} '
                    f'A^3 (> {100 * self.max_volume_change:.0f} %) at step {step}',
                )
        if self.bonds is not None and check_bonds:
            worst = self.bonds.worst(positions, cell)
            if worst is not None and worst[1] > self.max_bond_stretch:
                index, stretch = worst
                bond = self.bonds.describe(index, stretch * float(self.bonds.reference_lengths[index]))
                return GuardFailure(
                    GUARDS['bond'],
                    step,
                    time_fs,
                    stretch,
                    float(self.max_bond_stretch),
                    [bond['i'], bond['j']],
                    f'bond {bond["label"]} of its starting length {bond["reference_length_A"]:.2f} A '
                    f'(> {self.max_bond_stretch}x) at step {step} (t = {time_fs:g} fs)',
                    {'bond': bond},
                )
        return None
