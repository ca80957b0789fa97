"""Physics guards of the MD runner: checks that stop a run that has gone wrong, one exit status per guard.

Pure numpy (scipy for the neighbour search, imported when first needed): the daemon imports this module to
map the runner's exit statuses to the ``ilmlff.md`` exit codes, the runner to check every MD step.

=================  =====================================  ==============  ========  ===============================
guard              trips when                             default         runner    CalcJob exit code
=================  =====================================  ==============  ========  ===============================
``non_finite``     energy, a force or a position is        always on       11        500 ``ERROR_NON_FINITE``
                   NaN or infinite
``max_force``      any \\|F_i\\| > threshold                20 eV/Å         12        501 ``ERROR_FORCE_TOO_LARGE``
``temperature``    T > factor x target temperature         5               13        502 ``ERROR_TEMPERATURE_TOO_HIGH``
``min_distance``   two atoms closer than threshold         0.5 Å           14        503 ``ERROR_ATOMS_TOO_CLOSE``
                   (minimum image)
``volume``         \\|V / V0 - 1\\| > threshold (V0: the    0.5 (50 %)      15        504 ``ERROR_VOLUME_CHANGE``
                   volume at step 0 of the simulation)
=================  =====================================  ==============  ========  ===============================

Thresholds are set in the ``guards`` block of the MD parameters (``max_force_eV_A``,
``max_temperature_factor``, ``min_distance_A``, ``max_volume_change``; ``null`` disables that guard) and
``distance_every`` (steps between two checks of the minimum distance, default 1: every step).
"""

from __future__ import annotations

import dataclasses
import typing as t

import numpy as np

__all__ = (
    'GUARDS',
    'GUARD_DEFAULTS',
    'Guard',
    'GuardChecker',
    'GuardFailure',
    'PairList',
    'guard_for_exit_status',
    'min_pair_distance',
    'pairs_within',
    'validate_guards',
)


@dataclasses.dataclass(frozen=True)
class Guard:
    """One guard: its name, the runner's exit status and the ``ilmlff.md`` exit code it maps to."""

    name: str
    runner_status: int
    exit_status: int
    exit_label: str
    message: str


GUARDS: dict[str, Guard] = {
    guard.name: guard
    for guard in (
        Guard('non_finite', 11, 500, 'ERROR_NON_FINITE', 'The energy, a force or a position became NaN or infinite.'),
        Guard('max_force', 12, 501, 'ERROR_FORCE_TOO_LARGE', 'An atomic force exceeded the `max_force_eV_A` guard.'),
        Guard(
            'temperature',
            13,
            502,
            'ERROR_TEMPERATURE_TOO_HIGH',
            'The temperature exceeded `max_temperature_factor` times the target temperature.',
        ),
        Guard(
            'min_distance', 14, 503, 'ERROR_ATOMS_TOO_CLOSE', 'Two atoms came closer than the `min_distance_A` guard.'
        ),
        Guard(
            'volume',
            15,
            504,
            'ERROR_VOLUME_CHANGE',
            'The cell volume changed by more than `max_volume_change` from its initial value.',
        ),
    )
}

#: Default thresholds (keys of the ``guards`` block of the MD parameters).
GUARD_DEFAULTS: dict[str, float | int | None] = {
    'max_force_eV_A': 20.0,
    'max_temperature_factor': 5.0,
    'min_distance_A': 0.5,
    'max_volume_change': 0.5,
    'distance_every': 1,
}


def guard_for_exit_status(status: int) -> Guard | None:
    """The guard whose runner exit status is ``status``, or ``None``."""
    for guard in GUARDS.values():
        if guard.runner_status == status:
            return guard
    return None


def validate_guards(value: t.Any) -> list[str]:
    """Error messages for a ``guards`` block (empty when it is valid); messages name ``parameters.guards.<key>``."""
    if not isinstance(value, dict):
        return [f'`parameters.guards` must be a dict, got {type(value).__name__}']
    errors = []
    unknown = sorted(set(value) - set(GUARD_DEFAULTS))
    if unknown:
        errors.append(f'`parameters.guards`: unknown keys {unknown}; known: {sorted(GUARD_DEFAULTS)}')
    for key in ('max_force_eV_A', 'max_temperature_factor', 'min_distance_A', 'max_volume_change'):
        if key not in value or value[key] is None:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
            errors.append(f'`parameters.guards.{key}` must be a positive number or null (off), got {number!r}')
    if 'distance_every' in value:
        every = value['distance_every']
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            errors.append(f'`parameters.guards.distance_every` must be an integer >= 1, got {every!r}')
    return errors


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


def _is_orthorhombic(cell: np.ndarray) -> bool:
    return bool(np.all(np.abs(cell - np.diag(np.diag(cell))) < 1e-10) and np.all(np.diag(cell) > 0))


def pairs_within(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """All atom pairs closer than ``cutoff`` [Å] under periodic boundary conditions, and their distances.

    :param positions: (N, 3) Cartesian positions [Å], wrapped or not.
    :param cell: (3, 3) periodic cell [Å], rows are lattice vectors (3D periodic).
    :param cutoff: search radius [Å]; smaller than half the shortest plane spacing for a unique minimum image.
    :returns: ``pairs`` (K, 2) with ``i < j`` and ``distances`` (K,) [Å] (minimum image).

    A k-d tree (``scipy.spatial.cKDTree``): an orthorhombic cell uses its periodic ``boxsize``; any other
    cell is handled by adding the periodic images of atoms within ``cutoff`` of a face.
    """
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float)
    n_atoms = len(positions)
    if _is_orthorhombic(cell):
        lengths = np.diag(cell).copy()
        wrapped = np.mod(positions, lengths)
        wrapped[wrapped >= lengths] = 0.0
        pairs = cKDTree(wrapped, boxsize=lengths).query_pairs(cutoff, output_type='ndarray')
        delta = wrapped[pairs[:, 0]] - wrapped[pairs[:, 1]]
        delta -= lengths * np.round(delta / lengths)
    else:
        inverse = np.linalg.inv(cell)
        fractional = np.mod(positions @ inverse, 1.0)
        spacing = 1.0 / np.linalg.norm(inverse, axis=0)  # distances between lattice planes
        margin = cutoff / spacing
        shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
        points, owners = [fractional], [np.arange(n_atoms)]
        for shift in shifts[np.any(shifts != 0, axis=1)]:
            moved = fractional + shift
            inside = np.all((moved > -margin) & (moved < 1 + margin), axis=1)
            points.append(moved[inside])
            owners.append(np.nonzero(inside)[0])
        cartesian = np.vstack(points) @ cell
        owner = np.concatenate(owners)
        pairs = cKDTree(cartesian).query_pairs(cutoff, output_type='ndarray')
        pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
        delta = cartesian[pairs[:, 0]] - cartesian[pairs[:, 1]]
        pairs = np.sort(owner[pairs], axis=1)
        if len(pairs):
            pairs, unique = np.unique(pairs, axis=0, return_index=True)
            delta = delta[unique]
    pairs = np.sort(pairs.reshape(-1, 2), axis=1)
    return pairs.astype(np.int64), np.linalg.norm(delta.reshape(-1, 3), axis=1)


def min_pair_distance(positions: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[float, tuple[int, int] | None]:
    """The shortest minimum-image distance below ``cutoff`` [Å] and its atom pair ``(i, j)``, or ``(inf, None)``.

    Arguments as :func:`pairs_within`.
    """
    pairs, distances = pairs_within(positions, cell, cutoff)
    if len(pairs) == 0:
        return float('inf'), None
    best = int(np.argmin(distances))
    return float(distances[best]), (int(pairs[best, 0]), int(pairs[best, 1]))


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
        spacing = 1.0 / np.linalg.norm(self.inverse, axis=0)
        self.usable = bool(2 * (self.cutoff + self.skin) < spacing.min())
        if self.usable:
            self.pairs, _ = pairs_within(positions, cell, self.cutoff + self.skin)
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
        """As :func:`min_pair_distance` with the guard ``cutoff``."""
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
