"""The property analyses of an NVT production run, from a trajectory file to plain results (no AiiDA).

Each function streams the project's HDF5 trajectory (:mod:`aiida_ilmlff.analysis.trajectory`) through the
analysis library, with the ``analysis`` settings of ``ilmlff.properties`` (:mod:`aiida_ilmlff.analysis.settings`),
and returns dicts and arrays; the calcfunctions of :mod:`aiida_ilmlff.calculations.functions.properties` store
them as nodes. Units: Å, fs (ps where the key says so), Å^3, m^2/s.
"""

from __future__ import annotations

import math
import os
import typing as t

import numpy as np

from aiida_ilmlff.common.geometry import perpendicular_widths

from .msd import block_diffusion_error, classify_msd, diffusion_coefficient, yeh_hummer_correction
from .rdf import first_minimum, running_coordination_number
from .settings import ANALYSIS_SETTINGS, resolve_rdf_pairs, viscosity_Pa_s, with_defaults
from .streaming import msd_from_trajectory, rdf_from_trajectory
from .trajectory import TrajectoryReader

__all__ = (
    'GUARD_KEYS',
    'analysis_window',
    'coordination_cutoff',
    'guard_problem',
    'rdf_and_coordination',
    'species_diffusion',
)


#: Keys under which an MD trajectory (node attributes or file metadata ``meta_<key>``) says that a guard of the MD
#: runner tripped (:data:`aiida_ilmlff.runner.contract.GUARDS`, the covalent-topology guard included): a truthy
#: value of any of them means the trajectory is not a physical liquid, and its properties are not computed.
GUARD_KEYS = ('guard_tripped', 'guard', 'tripped_guard', 'broken_bonds')


def _tripped(key: str, value: t.Any) -> bool:
    if key == 'guard' and isinstance(value, t.Mapping):
        return bool(value.get('name'))  # the runner's status.json: {'name': 'bond', 'bond': {...}, ...}
    return value not in (None, False, '', [], {}, 0, 'none')


def guard_problem(*sources: t.Mapping[str, t.Any] | None) -> str | None:
    """Why a trajectory must not be analysed (a guard of its MD tripped), or None.

    :param sources: mappings to look in, e.g. the node's attributes, the file's metadata, the ``output_parameters``
        (``status.json``) of the MD run that wrote it. A truthy :data:`GUARD_KEYS` value (for ``guard``: a name,
        or a dict with a ``name``, as the runner writes), ``status == 'guard'``, or ``topology_intact`` /
        ``molecules_intact`` false counts.
    :returns: a message naming the guard (and the broken bonds when given), or None when nothing tripped.
    """
    for source in sources:
        if not source:
            continue
        tripped = [key for key in GUARD_KEYS if _tripped(key, source.get(key))]
        if source.get('status') == 'guard':
            tripped.append('status')
        tripped += [key for key in ('topology_intact', 'molecules_intact') if source.get(key) is False]
        if tripped:
            details = ', '.join(f'{key}={source.get(key)!r}' for key in tripped)
            return (
                f'the MD trajectory tripped a guard ({details}): its molecules or dynamics are not physical, so no '
                'property is computed from it; fix the model (more data, active learning) or the MD settings'
            )
    return None


def analysis_window(path: str | os.PathLike, discard_ps: float) -> dict[str, t.Any]:
    """What the analyses of a trajectory need to know about the part they analyse.

    :param discard_ps: ps left out from the start of the run.
    :returns: ``species`` (ion name per molecule, or ``None``), ``start`` (first frame after ``discard_ps``),
        ``mean_volume`` [Å^3] and ``half_width`` [Å] (half the smallest perpendicular cell width) from there on.
    :raises ValueError: fewer than 3 frames, or fewer than 3 left after ``discard_ps``.
    """
    with TrajectoryReader(path) as reader:
        time = reader.time
        if len(time) < 3:
            raise ValueError(f'the trajectory has {len(time)} frames: the analyses need at least 3')
        start = int(np.searchsorted(time, time[0] + 1000.0 * discard_ps - 1e-6))
        if start >= len(time) - 2:
            raise ValueError(f'discard_ps = {discard_ps:g} ps leaves fewer than 3 of the {len(time)} frames')
        cells = reader.cells(start)
        return {
            'species': None if reader.molecules is None else [str(name) for name in reader.molecules],
            'start': start,
            'mean_volume': float(reader.volumes(start).mean()),
            'half_width': float(0.5 * perpendicular_widths(cells).min()),
        }


def species_diffusion(
    path: str | os.PathLike, settings: t.Mapping | None, temperature_K: float
) -> tuple[dict[str, dict], np.ndarray, dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """Centre-of-mass self-diffusion of each species, reported as a D only where the MSD is diffusive.

    The MSD of the molecular centres of mass (molecules made whole, FFT MSD, streamed:
    :func:`~aiida_ilmlff.analysis.msd_from_trajectory`) is classified by :func:`~aiida_ilmlff.analysis.classify_msd`:
    ``diffusive`` when the log-log slope d ln MSD / d ln t lies within ``msd_slope_band`` (default 0.9-1.1,
    Maginn et al., LiveCoMS 1, 6324 (2019)) over the fit window (``msd_fit_window_ps``, or automatic up to
    ``msd_max_lag_fraction`` of the run), else ``sub-diffusive`` or ``ballistic``.

    Diffusive: D = slope / 6 of a least-squares line over the window (Einstein relation); its error is the
    standard error over ``msd_blocks`` independent time blocks (:func:`~aiida_ilmlff.analysis.block_diffusion_error`,
    ``D_err_method: 'blocks'``), or, when the run is too short for two blocks holding the window, over molecules
    (``'molecules'``, an underestimate: it misses slow collective fluctuations; ``'fit'``, the least-squares error of
    the slope, for a single molecule). With a viscosity
    (``viscosity_mPa_s`` or ``viscosity_Pa_s``) the Yeh-Hummer value D + k_B T xi / (6 pi eta L), L = <V>^(1/3),
    is given beside the raw D.

    Not diffusive: no D. The entry says the MSD reached at the longest lag considered and ``time_needed_ps``, an
    estimate of the production run (discarded start included) needed for the MSD to reach ``msd_target_A2``
    within the lag window (:class:`~aiida_ilmlff.analysis.MSDRegime`); the Einstein slope of the window is kept
    under ``not_a_result`` for inspection only.

    :param settings: the ``analysis`` settings (missing keys default). :param temperature_K: K.
    :returns: ``(diffusion, lag_ps, curves, windows)``: species -> entry (keys: ``regime``, ``diffusive``,
        ``loglog_slope``, ``slope_band``, ``fit_window_ps``, ``msd_reached_A2``, ``max_lag_ps``, ``n_molecules``,
        ``automatic_window``; diffusive: ``D_m2_s``, ``D_err_m2_s``, ``D_err_method``, ``n_blocks``,
        ``D_blocks_m2_s``, ``D_err_molecules_m2_s``[, ``D_yeh_hummer_m2_s``, ``box_length_A``,
        ``viscosity_mPa_s``]; otherwise ``time_needed_ps``, ``msd_target_A2``, ``not_a_result``); the (L,) lag
        times [ps]; species -> (L,) MSD [Å^2]; species -> the window judged [ps].
    :raises ValueError: no molecule names, absent species, wrapped coordinates, a window longer than the run.
    """
    settings = with_defaults(settings, ANALYSIS_SETTINGS)
    info = analysis_window(path, settings['discard_ps'])
    names = settings['diffusion_species']
    if names is None:
        if info['species'] is None:
            raise ValueError('the trajectory has no molecule names: diffusion per species needs them')
        names = list(dict.fromkeys(info['species']))
    result = msd_from_trajectory(path, names, start=info['start'], remove_drift=settings['remove_drift'])
    box_length = info['mean_volume'] ** (1.0 / 3.0)
    viscosity = viscosity_Pa_s(settings)
    band = (float(settings['msd_slope_band'][0]), float(settings['msd_slope_band'][1]))
    lag_ps = result.lag_fs / 1000.0
    window = settings['msd_fit_window_ps']
    window_fs = None if window is None else (1000.0 * window[0], 1000.0 * window[1])
    dt = result.timestep_fs
    diffusion, curves, windows = {}, {}, {}
    for name in names:
        per_molecule = result.msd_per_molecule[name]
        regime = classify_msd(
            result.msd[name],
            dt,
            window_fs,
            slope_band=band,
            max_lag_fraction=settings['msd_max_lag_fraction'],
            msd_target_A2=settings['msd_target_A2'],
        )
        judged = [regime.window_fs[0] / 1000.0, regime.window_fs[1] / 1000.0]
        entry: dict[str, t.Any] = {
            'regime': regime.regime,
            'diffusive': regime.diffusive,
            'loglog_slope': _finite(regime.loglog_slope),
            'slope_band': list(band),
            'fit_window_ps': judged,
            'msd_reached_A2': regime.msd_reached,
            'max_lag_ps': regime.max_lag_fs / 1000.0,
            'n_molecules': int(per_molecule.shape[1]),
            'automatic_window': window is None,
        }
        try:
            fit = diffusion_coefficient(per_molecule, dt, regime.window_fs)
        except ValueError:  # fewer than 3 lags to fit: a run of 3-4 frames, never diffusive
            fit = None
        if regime.diffusive:
            entry['D_m2_s'] = fit.D
            entry['D_err_molecules_m2_s'] = _finite(fit.D_err)
            try:
                blocks = block_diffusion_error(result.centres[name], dt, fit.window_indices, settings['msd_blocks'])
            except ValueError:
                method = 'molecules' if fit.D_err_method == 'particles' else 'fit'  # 'fit': one molecule
                entry.update({'D_err_m2_s': _finite(fit.D_err), 'D_err_method': method, 'n_blocks': 0})
            else:
                entry.update(
                    {
                        'D_err_m2_s': blocks.D_err,
                        'D_err_method': 'blocks',
                        'n_blocks': blocks.n_blocks,
                        'D_blocks_m2_s': blocks.D_blocks.tolist(),
                    }
                )
            if viscosity is not None:
                entry['D_yeh_hummer_m2_s'] = yeh_hummer_correction(fit.D, float(temperature_K), viscosity, box_length)
                entry['box_length_A'] = box_length
                entry['viscosity_mPa_s'] = viscosity * 1e3
        else:
            needed = regime.time_needed_fs
            entry['time_needed_ps'] = None if needed is None else settings['discard_ps'] + needed / 1000.0
            entry['msd_target_A2'] = regime.msd_target
            entry['not_a_result'] = {
                'einstein_slope_over_6_m2_s': None if fit is None else fit.D,
                'fit_window_ps': judged,
                'why': f'the MSD is {regime.regime} (log-log slope {regime.loglog_slope:.2f}, diffusive within '
                f'{band[0]}-{band[1]}): its slope is not a self-diffusion coefficient',
            }
        diffusion[name] = entry
        curves[name] = result.msd[name]
        windows[name] = tuple(judged)
    return diffusion, lag_ps, curves, windows


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def coordination_cutoff(r, g, given: float | None = None) -> tuple[float, str]:
    """The cut-off [Å] of a coordination number and where it comes from.

    :returns: ``(given, 'given')``; else the first minimum of g (:func:`~aiida_ilmlff.analysis.first_minimum`,
        ``'first_minimum'``); else, with no clear minimum within r_max (tiny boxes), the last bin centre
        (``'r_max'``).
    """
    if given is not None:
        return float(given), 'given'
    try:
        return float(first_minimum(r, g)), 'first_minimum'
    except ValueError:
        return float(r[-1]), 'r_max'


def rdf_and_coordination(path: str | os.PathLike, settings: t.Mapping | None) -> dict[str, t.Any]:
    """Partial RDFs and coordination numbers of the pairs :func:`~aiida_ilmlff.analysis.settings.resolve_rdf_pairs`
    names, on one grid up to ``rdf_r_max_A`` (default and at most half the smallest perpendicular cell width).

    g(r) normalised as MDAnalysis ``InterRDF`` (:func:`~aiida_ilmlff.analysis.rdf_from_trajectory`); the
    coordination number integrates 4 pi rho g(r) r^2 to :func:`coordination_cutoff` (``cn_cutoffs_A`` if given).

    Centre-of-mass selections are taken of whole molecules (:class:`~aiida_ilmlff.analysis.MoleculeTree`).

    :returns: ``coordination`` (pair -> ``{r_cut_A, cn, r_cut_source, cutoff_fallback, selections}``;
        ``cutoff_fallback`` is true when g(r) had no clear first minimum within r_max and the cut-off fell back to
        r_max: that coordination number counts everything within r_max, not a first shell), ``r`` (B,) Å, ``g`` and
        ``cn`` (pair -> (B,) arrays, in pair order), ``r_cut`` (pair -> Å) and ``r_max`` (Å).
    """
    settings = with_defaults(settings, ANALYSIS_SETTINGS)
    info = analysis_window(path, settings['discard_ps'])
    half_width = info['half_width']
    r_max = min(settings['rdf_r_max_A'] or half_width, half_width)
    pairs = resolve_rdf_pairs(settings, info['species'] or [])
    coordination, g, cn, r_cut_of = {}, {}, {}, {}
    r = None
    for name, (a, b) in pairs.items():
        result = rdf_from_trajectory(path, a, b, r_max, settings['rdf_bins'], start=info['start'])
        r = result.r
        running = running_coordination_number(result.r, result.g, result.number_density_b)
        r_cut, source = coordination_cutoff(result.r, result.g, settings['cn_cutoffs_A'].get(name))
        coordination[name] = {
            'r_cut_A': r_cut,
            'cn': float(result.coordination_number(r_cut)),
            'r_cut_source': source,
            'cutoff_fallback': source == 'r_max',
            'selections': [a, b],
        }
        g[name], cn[name], r_cut_of[name] = result.g, running, r_cut
    return {'coordination': coordination, 'r': r, 'g': g, 'cn': cn, 'r_cut': r_cut_of, 'r_max': float(r_max)}
