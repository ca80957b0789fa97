"""Physics guards of the MD runner: the checks that stop a run that has gone wrong (runs on the compute node).

The guards, their thresholds, runner exit statuses and ``ilmlff.md`` exit codes are part of the contract
(:data:`aiida_ilmlff.runner.contract.GUARDS`, :data:`~aiida_ilmlff.runner.contract.GUARD_DEFAULTS`): the
daemon reads them there. This module checks every MD step against them: :class:`GuardChecker`, with a Verlet
list (:class:`PairList`) for the minimum distance. Pure numpy; the pair search is
:func:`aiida_ilmlff.common.geometry.pairs_within` (scipy k-d tree).
"""

from __future__ import annotations

import dataclasses
import typing as t

import numpy as np

from aiida_ilmlff.common.geometry import min_pair_distance, pairs_within, perpendicular_widths

from .contract import GUARD_DEFAULTS, GUARDS, Guard

__all__ = ('GuardChecker', 'GuardFailure', 'PairList')


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

    def to_dict(self) -> dict[str, t.Any]:
        """JSON-ready form (``name``, ``step``, ``time_fs``, ``value``, ``threshold``, ``atoms``, ``message``)."""
        return {
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


class GuardChecker:
    """Checks one MD state against the guards.

    :param guards: the ``guards`` block (missing keys take :data:`GUARD_DEFAULTS`).
    :param target_temperature: K, the temperature the ``temperature`` guard scales (``None`` or 0: off).
    :param reference_volume: Å^3, V0 of the ``volume`` guard.
    """

    def __init__(self, guards: dict | None, target_temperature: float | None, reference_volume: float) -> None:
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
    ) -> GuardFailure | None:
        """The first guard ``(energy [eV], forces (N, 3) [eV/Å], ...)`` trips, in the table's order, or ``None``."""
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
        return None
