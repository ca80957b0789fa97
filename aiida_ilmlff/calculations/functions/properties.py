"""Calcfunctions of ``ilmlff.properties``: NPT density statistics, scaling to the mean density, and the analyses
of the NVT production run (self-diffusion, RDF / coordination numbers, Li+ clusters, TFSI conformers) with their
curves and figures.

Every analysis streams the trajectory file of an :class:`~aiida_ilmlff.data.trajectory.MDTrajectoryData`
through :mod:`aiida_ilmlff.analysis` (memory bounded by one chunk plus per-molecule centres of mass), so the
graph links each number and figure to the trajectory and the settings it came from. Figures are drawn with
matplotlib's Agg canvas (:mod:`aiida_ilmlff.analysis.figures`). The settings, their validation and the RDF
pairs are :mod:`aiida_ilmlff.analysis.settings`; the stage statistics, the density stop rule and the scaling
:mod:`aiida_ilmlff.analysis.npt` (plain Python, tested without a profile).

Units: Å, fs (ps where the key says so), g/cm^3, m^2/s.
"""

from __future__ import annotations

import contextlib
import re
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction

from aiida_ilmlff.analysis.figures import plot_density, plot_msd, plot_rdf, png_buffer
from aiida_ilmlff.analysis.npt import scale_to_density as scale_positions_to_density
from aiida_ilmlff.analysis.npt import stage_density_statistics
from aiida_ilmlff.analysis.properties import analysis_window, guard_problem, rdf_and_coordination, species_diffusion
from aiida_ilmlff.analysis.settings import ANALYSIS_SETTINGS, default_li_ligand, with_defaults
from aiida_ilmlff.analysis.trajectory import TrajectoryReader
from aiida_ilmlff.calculations.functions.box import moved_box
from aiida_ilmlff.runner.contract import GUARDS

__all__ = (
    'analyse_diffusion',
    'analyse_li_environment',
    'analyse_structure',
    'analyse_tfsi_conformers',
    'collect_properties',
    'npt_stage_density',
    'scale_to_density',
    'summarise_density',
    'trajectory_guard_problem',
)

#: Exit status of the analysis calcfunctions when their trajectory tripped an MD guard (5xx: physics).
EXIT_TRAJECTORY_TRIPPED_GUARD = 530


def _creator_guard_problem(node: orm.Data) -> str | None:
    """A guard that tripped in the process that made ``node`` (an ``ilmlff.md`` run: its exit status or its
    ``output_parameters``). A trajectory merged from segments (``merge_md_segments``) is not looked through: the MD
    work chain that merged them recovered from any guard of a segment by restarting from a good checkpoint."""
    creator = node.creator
    if creator is None:
        return None
    guard = next((g for g in GUARDS.values() if creator.exit_status == g.exit_status), None)
    if guard is not None and creator.process_type and 'ilmlff.md' in creator.process_type:
        return (
            f'the MD trajectory comes from {creator.process_label or "ilmlff.md"}<{creator.pk}>, which stopped on the '
            f'`{guard.name}` guard ({guard.exit_label}): no property is computed from it'
        )
    parameters = creator.outputs.output_parameters if 'output_parameters' in creator.outputs else None
    if isinstance(parameters, orm.Dict):
        problem = guard_problem(parameters.get_dict())
        if problem is not None:
            return problem
    return None


def trajectory_guard_problem(trajectory: orm.Data) -> str | None:
    """Why the properties of ``trajectory`` must not be computed (an MD guard tripped), or None.

    Looks at the node's attributes, the trajectory file's metadata (:func:`aiida_ilmlff.analysis.properties.
    guard_problem`, keys :data:`~aiida_ilmlff.analysis.properties.GUARD_KEYS`) and the provenance: the ``ilmlff.md``
    run that wrote it (exit status of a guard, :data:`aiida_ilmlff.runner.contract.GUARDS`, or ``status: 'guard'``
    in its ``output_parameters``). Work chains call it before the
    analyses to skip them with a flag; the analysis calcfunctions call it too and refuse.
    """
    problem = guard_problem(trajectory.base.attributes.all)
    if problem is not None:
        return problem
    with trajectory.as_path() as path, TrajectoryReader(path) as reader:
        problem = guard_problem(reader.metadata)
    if problem is not None:
        return problem
    return _creator_guard_problem(trajectory) if trajectory.is_stored else None


def _refusal(trajectory: orm.Data) -> ExitCode | None:
    problem = trajectory_guard_problem(trajectory)
    if problem is None:
        return None
    return ExitCode(EXIT_TRAJECTORY_TRIPPED_GUARD, f'ERROR_TRAJECTORY_TRIPPED_GUARD: {problem}')


def _singlefile(figure, filename: str) -> orm.SinglefileData:
    return orm.SinglefileData(png_buffer(figure), filename=filename)


def _array_name(text: str) -> str:
    return re.sub(r'\W+', '_', text).strip('_')


@contextlib.contextmanager
def _opened(trajectory: orm.Data, discard_ps: float) -> t.Iterator[tuple[t.Any, dict[str, t.Any]]]:
    """``(path, info)`` of a trajectory node's file, ``info`` from ``analysis_window``."""
    with trajectory.as_path() as path:
        yield path, analysis_window(path, discard_ps)


# ---------------------------------------------------------------------------------------------- density


@calcfunction
def npt_stage_density(thermo: orm.ArrayData) -> orm.Dict:
    """Density statistics of one NPT stage from its thermo log (columns ``time_fs``, ``density_g_cm3``,
    ``volume_A3``).

    The equilibrated part starts where ``pymbar.timeseries.detect_equilibration`` finds the most uncorrelated
    samples (Chodera, J. Chem. Theory Comput. 12, 1799 (2016); :func:`aiida_ilmlff.analysis.timeseries_statistics`);
    its mean has the standard error std / sqrt(N / g), g the statistical inefficiency.

    :returns: Dict with ``mean``, ``error``, ``std``, ``block_error`` (g/cm^3), ``statistical_inefficiency``,
        ``n_samples``, ``start_fs``, ``end_fs``, ``equilibration_time_fs``, ``equilibrated_fraction`` (of the
        stage's time span), ``mean_volume_A3`` (equilibrated part) and ``drift_g_cm3_per_ps`` (least-squares
        slope over the equilibrated part).
    :raises ValueError: fewer than 2 thermo rows, or non-finite densities.
    """
    return orm.Dict(
        stage_density_statistics(
            thermo.get_array('time_fs'), thermo.get_array('density_g_cm3'), thermo.get_array('volume_A3')
        )
    )


def _stage_values(stages: t.Mapping[str, orm.Dict]) -> list[dict]:
    return [stages[key].get_dict() for key in sorted(stages, key=lambda k: int(k.rsplit('_', 1)[-1]))]


@calcfunction
def summarise_density(thermo: orm.ArrayData, converged: orm.Bool, **stages: orm.Dict) -> dict[str, orm.Data]:
    """The density result of the NPT stages and its figure.

    :param thermo: the NPT thermo log of all stages (``time_fs``, ``density_g_cm3``).
    :param converged: whether the stop rule (:func:`density_stop_rule`) held.
    :param stages: ``stage_1``, ``stage_2``, ... the :func:`npt_stage_density` Dicts.
    :returns: ``density`` (Dict: ``mean``, ``error`` of the last stage's equilibrated part in g/cm^3,
        ``n_stages``, ``converged``, ``mean_volume_A3``, and ``stages``: mean/error/equilibrated fraction of
        each) and ``figure`` (PNG: the density trace with each stage's equilibrated mean ± error).
    """
    values = _stage_values(stages)
    last = values[-1]
    figure = plot_density(thermo.get_array('time_fs'), thermo.get_array('density_g_cm3'), values, converged.value)
    density = {
        'mean': last['mean'],
        'error': last['error'],
        'n_stages': len(values),
        'converged': bool(converged.value),
        'mean_volume_A3': last['mean_volume_A3'],
        'stages': [
            {k: stage[k] for k in ('mean', 'error', 'equilibrated_fraction', 'drift_g_cm3_per_ps')} for stage in values
        ],
    }
    return {'density': orm.Dict(density), 'figure': _singlefile(figure, 'density.png')}


@calcfunction
def scale_to_density(structure: orm.StructureData, density: orm.Dict) -> orm.StructureData:
    """The structure with its cell scaled isotropically to the density ``density['mean']`` (g/cm^3).

    With molecule ids (``mol_id`` attribute) the molecular centres of mass are scaled and every molecule is
    moved rigidly (bonds unchanged; the positions must be unwrapped, as MD final structures are); without them
    every atom is scaled. The ``mol_id``/``molecules`` attributes are kept.
    """
    atoms = structure.get_ase()
    mol_id = structure.base.attributes.get('mol_id', None)
    positions, cell = scale_positions_to_density(
        atoms.get_positions(), atoms.cell.array, atoms.get_masses(), float(density['mean']), mol_id
    )
    atoms.set_cell(cell, scale_atoms=False)
    atoms.set_positions(positions)
    return moved_box(structure, atoms)


# ---------------------------------------------------------------------------------------------- diffusion


@calcfunction
def analyse_diffusion(trajectory: orm.Data, analysis: orm.Dict, temperature: orm.Float) -> dict[str, orm.Data]:
    """Centre-of-mass self-diffusion of each species from the NVT trajectory; a D only where the MSD is diffusive.

    :func:`aiida_ilmlff.analysis.properties.species_diffusion`: molecules made whole, FFT MSD of the centres of
    mass (streamed), regime from the log-log slope over the fit window (``analysis.msd_slope_band``, default
    0.9-1.1); diffusive: D = slope / 6 (Einstein) with its error from independent time blocks (block averaging,
    Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)) and, with a viscosity, the Yeh-Hummer value
    (J. Phys. Chem. B 108, 15873 (2004)) beside it; otherwise ``regime`` sub-diffusive or ballistic, the MSD
    reached and the time needed, and no D.

    :returns: ``diffusion`` (Dict ``{species: {regime, diffusive, loglog_slope, slope_band, fit_window_ps,
        msd_reached_A2, max_lag_ps, n_molecules, automatic_window, and when diffusive D_m2_s, D_err_m2_s,
        D_err_method, n_blocks, D_blocks_m2_s, D_err_molecules_m2_s[, D_yeh_hummer_m2_s, box_length_A,
        viscosity_mPa_s], otherwise time_needed_ps, msd_target_A2, not_a_result}}``), ``msd`` (ArrayData:
        ``lag_ps`` and one ``msd_<species>`` array in Å^2 per species; attributes ``species``, ``fit_window_ps``,
        ``regime``) and ``figure`` (PNG, log-log; non-diffusive curves marked, no fit line).
        Exit status 530 (``ERROR_TRAJECTORY_TRIPPED_GUARD``) when the trajectory tripped an MD guard.
    :raises ValueError: absent species, wrapped coordinates, a window longer than the trajectory.
    """
    refusal = _refusal(trajectory)
    if refusal is not None:
        return refusal
    with trajectory.as_path() as path:
        diffusion, lag_ps, curves, windows = species_diffusion(path, analysis.get_dict(), temperature.value)
    arrays = orm.ArrayData()
    arrays.set_array('lag_ps', lag_ps)
    for name, values in curves.items():
        arrays.set_array(f'msd_{_array_name(name)}', values)
    arrays.base.attributes.set('species', list(curves))
    arrays.base.attributes.set('units', {'lag_ps': 'ps', 'msd_*': 'angstrom^2'})
    arrays.base.attributes.set('fit_window_ps', {name: list(w) for name, w in windows.items()})
    regimes = {name: entry['regime'] for name, entry in diffusion.items()}
    arrays.base.attributes.set('regime', regimes)
    figure = plot_msd(lag_ps, curves, windows, regimes)
    return {'diffusion': orm.Dict(diffusion), 'msd': arrays, 'figure': _singlefile(figure, 'msd.png')}


# ---------------------------------------------------------------------------------------------- structure


@calcfunction
def analyse_structure(trajectory: orm.Data, analysis: orm.Dict) -> dict[str, orm.Data]:
    """Partial RDFs and coordination numbers from the NVT trajectory (streamed).

    g(r) normalised as MDAnalysis ``InterRDF`` (:func:`aiida_ilmlff.analysis.rdf_from_trajectory`), all pairs on
    one grid up to ``rdf_r_max_A`` (default and at most half the smallest perpendicular cell width). The
    coordination number integrates 4 pi rho g(r) r^2 to the cut-off: ``cn_cutoffs_A`` if given, otherwise the
    first minimum of g (:func:`aiida_ilmlff.analysis.first_minimum`), otherwise (no clear minimum within r_max,
    as in tiny boxes) r_max itself; ``r_cut_source`` says which and ``cutoff_fallback`` is true for the last.
    Centre-of-mass selections use whole molecules.

    :returns: ``coordination`` (Dict ``{'a-b': {r_cut_A, cn, r_cut_source, cutoff_fallback, selections}}``),
        ``rdf`` and ``cn`` (ArrayData: ``r_A`` and ``g_<k>`` / ``cn_<k>`` per pair k, attribute ``pairs`` = the
        pair names in order) and ``figure`` (PNG: g(r) with the running CN on a twin axis).
        Exit status 530 when the trajectory tripped an MD guard.
    """
    refusal = _refusal(trajectory)
    if refusal is not None:
        return refusal
    with trajectory.as_path() as path:
        result = rdf_and_coordination(path, analysis.get_dict())
    pairs, r = list(result['coordination']), result['r']
    rdf_arrays, cn_arrays = orm.ArrayData(), orm.ArrayData()
    for k, name in enumerate(pairs):
        rdf_arrays.set_array(f'g_{k}', result['g'][name])
        cn_arrays.set_array(f'cn_{k}', result['cn'][name])
    for arrays in (rdf_arrays, cn_arrays):
        arrays.set_array('r_A', r)
        arrays.base.attributes.set('pairs', pairs)
        arrays.base.attributes.set('r_max_A', result['r_max'])
    curves = {name: (result['g'][name], result['cn'][name], result['r_cut'][name]) for name in pairs}
    fallback = [name for name in pairs if result['coordination'][name]['cutoff_fallback']]
    figure = plot_rdf(r, curves, fallback)
    return {
        'coordination': orm.Dict(result['coordination']),
        'rdf': rdf_arrays,
        'cn': cn_arrays,
        'figure': _singlefile(figure, 'rdf.png'),
    }


@calcfunction
def analyse_li_environment(trajectory: orm.Data, analysis: orm.Dict) -> orm.Dict:
    """Li+ solvation from the NVT trajectory (:func:`aiida_ilmlff.analysis.li_environment_from_trajectory`).

    A Li is bound to an anion when one of its ligand atoms (``li_ligand``, default from the anions: TFSI:O,
    BF4:F, ...) is within the cut-off (``li_cutoff_A``, default the first minimum of the Li-ligand g(r));
    clusters are the connected components of the Li-anion graph.

    :returns: Dict with ``r_cut_A``, ``r_cut_from_rdf``, ``ligand``, ``ligand_cn``, ``anion_cn``,
        ``anion_cn_distribution`` (fraction of Li bound to 0, 1, ... anions), ``denticity_distribution`` (fraction
        of Li-anion contacts through 1, 2, ... ligand atoms: mono-, bidentate, ...), ``cluster_sizes``,
        ``cluster_fraction``, ``li_fraction`` (fraction of Li in clusters of each size), ``mean_cluster_size``,
        ``compositions`` (``'1Li3A'``: count over frames), ``lifetime_continuous_ps`` with
        ``lifetime_continuous_decayed`` (whether C_C fell below 0.05 within the run; if not, the integral is a lower
        bound), ``lifetime_intermittent_ps`` with ``lifetime_intermittent_decayed``: the integral of
        ``(C_I - <h>) / (1 - <h>)`` (Luzar, J. Chem. Phys. 113, 10663 (2000)), which does not grow with the run
        length, ``bound_fraction`` (<h>), ``lifetime_intermittent_method``; lifetimes None when the run is too short
        to integrate them), ``n_frames``. When the Li-ligand g(r) has no first shell to find a cut-off in (no peak,
        or no minimum after it, within half the box: a short run or a tiny box), ``available`` false and the
        ``reason`` instead of numbers: give ``li_cutoff_A`` to count contacts anyway. Exit status 530 when the
        trajectory tripped an MD guard.
    """
    from aiida_ilmlff.analysis import NoFirstShellError, li_environment_from_trajectory

    refusal = _refusal(trajectory)
    if refusal is not None:
        return refusal

    settings = with_defaults(analysis.get_dict(), ANALYSIS_SETTINGS)
    with _opened(trajectory, settings['discard_ps']) as (path, info):
        ligand = settings['li_ligand'] or default_li_ligand(info['species'] or [])
        try:
            result = li_environment_from_trajectory(
                path, settings['li_species'], ligand, settings['li_cutoff_A'], start=info['start']
            )
        except NoFirstShellError as exception:
            return orm.Dict(
                {
                    'available': False,
                    'reason': f'the {settings["li_species"]}-{ligand} g(r) has no first shell to cut at ({exception}); '
                    'run longer, use a larger box or give `li_cutoff_A`',
                    'ligand': ligand,
                }
            )
    clusters = result.clusters
    return orm.Dict(
        {
            'available': True,
            'r_cut_A': result.r_cut,
            'r_cut_from_rdf': result.r_cut_from_rdf,
            'ligand': ligand,
            'ligand_cn': result.ligand_cn,
            'anion_cn': result.anion_cn,
            'anion_cn_distribution': result.anion_cn_distribution.tolist(),
            'denticity_distribution': result.denticity_distribution.tolist(),
            'cluster_sizes': clusters.sizes.tolist(),
            'cluster_fraction': clusters.fraction.tolist(),
            'li_fraction': clusters.li_fraction.tolist(),
            'mean_cluster_size': clusters.mean_size,
            'compositions': dict(clusters.compositions),
            'lifetime_continuous_ps': None
            if result.lifetime_continuous is None
            else result.lifetime_continuous.tau_fs / 1000.0,
            'lifetime_continuous_decayed': None
            if result.lifetime_continuous is None
            else result.lifetime_continuous.decayed,
            'lifetime_intermittent_ps': None
            if result.lifetime_intermittent is None
            else result.lifetime_intermittent.tau_fs / 1000.0,
            'lifetime_intermittent_decayed': None
            if result.lifetime_intermittent is None
            else result.lifetime_intermittent.decayed,
            'lifetime_intermittent_method': '(C_I - <h>) / (1 - <h>) integrated to 0.05 plus its exponential tail',
            'bound_fraction': result.bound_fraction,
            'n_frames': clusters.n_frames,
        }
    )


@calcfunction
def analyse_tfsi_conformers(trajectory: orm.Data, analysis: orm.Dict) -> orm.Dict:
    """Cis/trans populations of TFSI from the C-S...S-C dihedral (|phi| < 90 deg is cis) over the NVT run.

    :returns: Dict with ``cis_fraction``, ``trans_fraction`` (time averages), ``cis_fraction_std`` (over
        frames), ``n_molecules``, ``n_frames``, ``cis_cut_deg``. Exit status 530 when the trajectory tripped an
        MD guard.
    """
    from aiida_ilmlff.analysis import conformers_from_trajectory

    refusal = _refusal(trajectory)
    if refusal is not None:
        return refusal

    settings = with_defaults(analysis.get_dict(), ANALYSIS_SETTINGS)
    with _opened(trajectory, settings['discard_ps']) as (path, info):
        _, fractions = conformers_from_trajectory(path, settings['tfsi_species'], start=info['start'])
    return orm.Dict(
        {
            'cis_fraction': fractions.mean_cis_fraction,
            'trans_fraction': fractions.mean_trans_fraction,
            'cis_fraction_std': float(np.std(fractions.cis_fraction)),
            'n_molecules': int(fractions.is_cis.shape[1]),
            'n_frames': int(fractions.is_cis.shape[0]),
            'cis_cut_deg': fractions.cis_cut_deg,
        }
    )


@calcfunction
def collect_properties(
    density: orm.Dict, temperature: orm.Float, diffusion: orm.Dict, coordination: orm.Dict, **optional: orm.Dict
) -> orm.Dict:
    """The ``properties`` Dict of ``ilmlff.properties`` from the analysis results.

    :param optional: ``li_clusters`` and ``tfsi_conformers`` when those species are present.
    :returns: Dict with ``density_g_cm3`` (``mean``, ``error``, ``n_stages``, ``converged``, ...),
        ``temperature_K`` (the target), ``diffusion``, ``coordination`` and, when present, ``li_clusters`` and
        ``tfsi_conformers``.
    """
    properties = {
        'density_g_cm3': density.get_dict(),
        'temperature_K': float(temperature.value),
        'diffusion': diffusion.get_dict(),
        'coordination': coordination.get_dict(),
    }
    for key in ('li_clusters', 'tfsi_conformers'):
        if key in optional:
            properties[key] = optional[key].get_dict()
    return orm.Dict(properties)
