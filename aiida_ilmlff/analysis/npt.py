"""NPT density convergence: statistics of one stage, the stop rule over stages, scaling to a density.

Pure numpy (no AiiDA): the ``ilmlff.properties`` work chain runs NPT stages until :func:`density_stop_rule` holds,
each stage summarised by :func:`stage_density_statistics`; the NVT production run starts from the last structure
scaled to the mean density (:func:`scale_to_density`). Units: fs, g/cm^3, Å^3.
"""

from __future__ import annotations

import math
import typing as t

import numpy as np

from .density import density, timeseries_statistics
from .molecules import center_of_mass_matrix
from .settings import is_number, with_defaults

__all__ = (
    'DENSITY_CONVERGENCE',
    'density_stop_rule',
    'scale_to_density',
    'stage_density_statistics',
    'validate_density_convergence',
)

#: Keys of the ``density_convergence`` Dict: (default, meaning). See :func:`density_stop_rule`.
DENSITY_CONVERGENCE: dict[str, tuple[t.Any, str]] = {
    'tolerance_g_cm3': (0.005, 'a change of the stage mean density below this is converged (g/cm^3)'),
    'n_sigma': (2.0, 'a change within n_sigma combined standard errors of the two stage means is converged'),
    'min_equilibrated_fraction': (
        0.5,
        'the equilibrated part (pymbar detection) must cover at least this fraction of the last stage',
    ),
    'min_stages': (2, 'never stop before this many NPT stages (>= 2: the rule compares two stages)'),
    'fail_if_not_converged': (
        False,
        'finish with exit code 510 (after producing every output) instead of 0 when max_npt_stages is reached '
        'unconverged',
    ),
}


def validate_density_convergence(settings: t.Mapping) -> list[str]:
    """Errors of a ``density_convergence`` mapping (unknown keys, out-of-range values); empty if valid."""
    errors = []
    unknown = sorted(set(settings) - set(DENSITY_CONVERGENCE))
    if unknown:
        errors.append(f'`density_convergence`: unknown keys {unknown}; known: {sorted(DENSITY_CONVERGENCE)}')
    for key in ('tolerance_g_cm3', 'n_sigma'):
        value = settings.get(key, 0.0)
        if not is_number(value) or value < 0:
            errors.append(f'`density_convergence.{key}` must be a number >= 0, got {value!r}')
    fraction = settings.get('min_equilibrated_fraction', 0.5)
    if not is_number(fraction) or not 0 <= fraction <= 1:
        errors.append(f'`density_convergence.min_equilibrated_fraction` must be within [0, 1], got {fraction!r}')
    min_stages = settings.get('min_stages', 2)
    if isinstance(min_stages, bool) or not isinstance(min_stages, int) or min_stages < 2:
        errors.append(f'`density_convergence.min_stages` must be an integer >= 2, got {min_stages!r}')
    if not isinstance(settings.get('fail_if_not_converged', False), bool):
        errors.append('`density_convergence.fail_if_not_converged` must be true or false')
    return errors


def density_stop_rule(stages: t.Sequence[t.Mapping], settings: t.Mapping | None = None) -> tuple[bool, str]:
    """Whether the NPT density has converged after the given stages, and why (one line for the report).

    Each stage is summarised by the equilibrated part of its density trace (:func:`stage_density_statistics`:
    ``pymbar`` equilibration detection, mean, standard error from the statistical inefficiency). After stage
    k the density is converged when all of these hold:

    1. k >= ``min_stages`` (default 2);
    2. the equilibrated part covers at least ``min_equilibrated_fraction`` (default 0.5) of stage k: a stage
       that is still drifting for most of its length is not equilibrated, whatever its mean;
    3. the stage means differ by little: ``|rho_k - rho_{k-1}| <= max(tolerance_g_cm3, n_sigma * sqrt(err_k^2
       + err_{k-1}^2))`` (defaults 0.005 g/cm^3 and 2): either below the tolerance, or a drift that is within
       the statistical error of the two means.

    :param stages: per-stage mappings with ``mean``, ``error`` (g/cm^3) and ``equilibrated_fraction``.
    :param settings: the ``density_convergence`` keys (:data:`DENSITY_CONVERGENCE`; missing keys default).
    :returns: ``(converged, reason)``.
    :raises ValueError: no stage given.
    """
    if not stages:
        raise ValueError('no NPT stage to judge')
    settings = with_defaults(settings, DENSITY_CONVERGENCE)
    k = len(stages)
    last = stages[-1]
    fraction = float(last['equilibrated_fraction'])
    if fraction < settings['min_equilibrated_fraction']:
        return False, (
            f'only {100 * fraction:.0f} % of stage {k} is equilibrated '
            f'(< {100 * settings["min_equilibrated_fraction"]:.0f} %): the density still drifts'
        )
    if k < 2:
        return False, f'stage {k} of at least {settings["min_stages"]}: nothing to compare with yet'
    previous = stages[-2]
    change = float(last['mean']) - float(previous['mean'])
    combined = math.hypot(float(last['error']), float(previous['error']))
    threshold = max(settings['tolerance_g_cm3'], settings['n_sigma'] * combined)
    text = f'change from stage {k - 1}: {change:+.4f} g/cm^3, threshold {threshold:.4f}'
    if abs(change) > threshold:
        return False, text + ': not converged'
    if k < settings['min_stages']:
        return False, text + f', but at least {settings["min_stages"]} stages are asked for'
    return True, text + ': converged'


def stage_density_statistics(time_fs, density_g_cm3, volume_A3) -> dict[str, t.Any]:
    """Density statistics of one NPT stage from its thermo log.

    The equilibrated part starts where ``pymbar.timeseries.detect_equilibration`` finds the most uncorrelated
    samples (Chodera, J. Chem. Theory Comput. 12, 1799 (2016); :func:`aiida_ilmlff.analysis.timeseries_statistics`);
    its mean has the standard error std / sqrt(N / g), g the statistical inefficiency.

    :param time_fs: (T,) times [fs]. :param density_g_cm3: (T,) densities [g/cm^3]. :param volume_A3: (T,) [Å^3].
    :returns: ``mean``, ``error``, ``std``, ``block_error`` (g/cm^3, ``None`` if not finite),
        ``statistical_inefficiency``, ``n_samples``, ``start_fs``, ``end_fs``, ``equilibration_time_fs``,
        ``equilibrated_fraction`` (of the stage's time span), ``mean_volume_A3`` (equilibrated part) and
        ``drift_g_cm3_per_ps`` (least-squares slope over the equilibrated part).
    :raises ValueError: fewer than 2 rows, or non-finite densities.
    """
    time = np.asarray(time_fs, dtype=float)
    rho = np.asarray(density_g_cm3, dtype=float)
    volume = np.asarray(volume_A3, dtype=float)
    stats = timeseries_statistics(rho, time)
    start = stats.equilibration_index
    span = float(time[-1] - time[0])
    fraction = float((time[-1] - time[start]) / span) if span > 0 else 1.0
    drift = 0.0
    if len(time) - start >= 3 and np.ptp(time[start:]) > 0:
        drift = float(np.polyfit(time[start:] / 1000.0, rho[start:], 1)[0])
    return {
        'mean': stats.mean,
        'error': stats.error,
        'std': stats.std,
        'block_error': None if not math.isfinite(stats.block_error) else stats.block_error,
        'statistical_inefficiency': stats.statistical_inefficiency,
        'n_samples': stats.n_samples,
        'start_fs': float(time[0]),
        'end_fs': float(time[-1]),
        'equilibration_time_fs': float(time[start]),
        'equilibrated_fraction': fraction,
        'mean_volume_A3': float(volume[start:].mean()),
        'drift_g_cm3_per_ps': drift,
    }


def scale_to_density(positions, cell, masses, target_g_cm3: float, mol_id=None) -> tuple[np.ndarray, np.ndarray]:
    """Positions and cell scaled isotropically so that the density becomes ``target_g_cm3``.

    With molecule ids the molecular centres of mass are scaled and every molecule is moved rigidly (bonds
    unchanged; the positions must be unwrapped, as MD final structures are); without them every atom is scaled.

    :param positions: (N, 3) Å. :param cell: (3, 3) Å. :param masses: (N,) amu.
    :param mol_id: optional (N,) int molecule index of every atom.
    :returns: ``(positions (N, 3), cell (3, 3))`` in Å.
    """
    positions = np.asarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float)
    masses = np.asarray(masses, dtype=float)
    current = float(density(masses, abs(float(np.linalg.det(cell)))))
    factor = (current / float(target_g_cm3)) ** (1.0 / 3.0)
    if mol_id is not None:
        mol_id = np.asarray(mol_id, dtype=np.int64)
        centres = center_of_mass_matrix(mol_id, masses) @ positions  # rows: np.unique(mol_id)
        positions = positions + (factor - 1.0) * centres[np.searchsorted(np.unique(mol_id), mol_id)]
    else:
        positions = positions * factor
    return positions, cell * factor
