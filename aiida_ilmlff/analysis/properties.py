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

from .msd import diffusion_coefficient, yeh_hummer_correction
from .rdf import first_minimum, running_coordination_number
from .settings import ANALYSIS_SETTINGS, resolve_rdf_pairs, with_defaults
from .streaming import msd_from_trajectory, rdf_from_trajectory
from .trajectory import TrajectoryReader

__all__ = ('analysis_window', 'coordination_cutoff', 'rdf_and_coordination', 'species_diffusion')


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
    """Centre-of-mass self-diffusion coefficient of each species (Einstein relation, FFT MSD, streamed).

    D = slope / 6 from a least-squares fit over the window, error the standard error over molecules
    (:func:`~aiida_ilmlff.analysis.diffusion_coefficient`). Window: ``msd_fit_window_ps``, or automatic (local
    log-log slope within 0.9-1.1); when the run never reaches the diffusive regime, the fit falls back to the
    lags from 1/5 to all of ``msd_max_lag_fraction`` of the run and the species gets ``diffusive: false``. With
    ``viscosity_Pa_s`` the Yeh-Hummer correction is added for a box edge L = <V>^(1/3).

    :param settings: the ``analysis`` settings (missing keys default). :param temperature_K: K.
    :returns: ``(diffusion, lag_ps, curves, windows)``: species -> ``{D_m2_s, D_err_m2_s, fit_window_ps,
        diffusive, loglog_slope, n_molecules, automatic_window[, D_yeh_hummer_m2_s, box_length_A]}``; the (L,)
        lag times [ps]; species -> (L,) MSD [Å^2]; species -> fit window [ps].
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
    mean_volume = info['mean_volume']
    lag_ps = result.lag_fs / 1000.0
    window = settings['msd_fit_window_ps']
    diffusion, curves, windows = {}, {}, {}
    for name in names:
        per_molecule = result.msd_per_molecule[name]
        entry: dict[str, t.Any] = {'diffusive': True}
        if window is not None:
            fit = diffusion_coefficient(per_molecule, result.timestep_fs, (1000.0 * window[0], 1000.0 * window[1]))
        else:
            try:
                fit = diffusion_coefficient(
                    per_molecule, result.timestep_fs, max_lag_fraction=settings['msd_max_lag_fraction']
                )
            except ValueError:
                max_lag = settings['msd_max_lag_fraction'] * float(result.lag_fs[-1])
                fallback = (max(max_lag / 5.0, result.timestep_fs), max_lag)
                if fallback[1] - fallback[0] < 2 * result.timestep_fs:
                    fallback = (result.timestep_fs, float(result.lag_fs[-1]))
                fit = diffusion_coefficient(per_molecule, result.timestep_fs, fallback)
                entry['diffusive'] = False
        entry.update(
            {
                'D_m2_s': fit.D,
                'D_err_m2_s': None if not math.isfinite(fit.D_err) else fit.D_err,
                'fit_window_ps': [fit.window_fs[0] / 1000.0, fit.window_fs[1] / 1000.0],
                'loglog_slope': None if not math.isfinite(fit.loglog_slope) else fit.loglog_slope,
                'n_molecules': int(per_molecule.shape[1]),
                'automatic_window': window is None,
            }
        )
        if settings['viscosity_Pa_s'] is not None:
            entry['D_yeh_hummer_m2_s'] = yeh_hummer_correction(
                fit.D, float(temperature_K), settings['viscosity_Pa_s'], mean_volume ** (1.0 / 3.0)
            )
            entry['box_length_A'] = mean_volume ** (1.0 / 3.0)
        diffusion[name] = entry
        curves[name] = result.msd[name]
        windows[name] = tuple(entry['fit_window_ps'])
    return diffusion, lag_ps, curves, windows


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

    :returns: ``coordination`` (pair -> ``{r_cut_A, cn, r_cut_source, selections}``), ``r`` (B,) Å, ``g`` and
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
            'selections': [a, b],
        }
        g[name], cn[name], r_cut_of[name] = result.g, running, r_cut
    return {'coordination': coordination, 'r': r, 'g': g, 'cn': cn, 'r_cut': r_cut_of, 'r_max': float(r_max)}
