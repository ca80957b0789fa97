"""Calcfunctions of ``ilmlff.properties``: NPT density statistics, the density stop rule, scaling to the mean
density, and the analyses of the NVT production run (self-diffusion, RDF / coordination numbers, Li+
clusters, TFSI conformers) with their curves and figures.

Every analysis streams the trajectory file of an :class:`~aiida_ilmlff.data.trajectory.MDTrajectoryData`
through :mod:`aiida_ilmlff.analysis` (memory bounded by one chunk plus per-molecule centres of mass), so the
graph links each number and figure to the trajectory and the settings it came from. Figures are drawn with
matplotlib's Agg canvas (no pyplot state). The pure helpers (:func:`density_stop_rule`,
:func:`validate_analysis_settings`, :func:`validate_density_convergence`, :func:`resolve_rdf_pairs`) are
plain Python, tested without a profile.

Units: Å, fs (ps where the key says so), g/cm^3, m^2/s.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

__all__ = (
    'ANALYSIS_SETTINGS',
    'DENSITY_CONVERGENCE',
    'LI_LIGANDS',
    'analyse_diffusion',
    'analyse_li_environment',
    'analyse_structure',
    'analyse_tfsi_conformers',
    'collect_properties',
    'density_stop_rule',
    'npt_stage_density',
    'resolve_rdf_pairs',
    'scale_to_density',
    'summarise_density',
    'validate_analysis_settings',
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

#: Keys of the ``analysis`` Dict: (default, meaning).
ANALYSIS_SETTINGS: dict[str, tuple[t.Any, str]] = {
    'discard_ps': (0.0, 'NVT time (ps) left out of every analysis, from the start of the production run'),
    'diffusion_species': (
        None,
        'species whose centre-of-mass self-diffusion is computed; null: every species of the structure; [] none',
    ),
    'msd_fit_window_ps': (None, '[start, end] lag window (ps) of the MSD fit; null: automatic (log-log slope 0.9-1.1)'),
    'msd_max_lag_fraction': (0.25, 'longest lag considered by the automatic window, as a fraction of the run'),
    'remove_drift': (True, 'subtract the centre-of-mass motion of the whole system before the MSD'),
    'viscosity_Pa_s': (None, 'shear viscosity (Pa s); when given, D is also corrected for the box size (Yeh-Hummer)'),
    'rdf_pairs': (
        None,
        'list of [a, b] selections; a species name means its molecular centre of mass, otherwise selections '
        "like 'Li', 'TFSI:O', 'BF4:B'; null: every pair of species (and Li-ligand when Li is present)",
    ),
    'rdf_r_max_A': (None, 'largest RDF distance (Å); null: half the smallest perpendicular width of the cell'),
    'rdf_bins': (200, 'number of RDF bins'),
    'cn_cutoffs_A': ({}, "{'a-b': r_cut in Å} to override the first-minimum cut-off of a pair's coordination number"),
    'li_species': ('Li', 'name of the lithium species'),
    'li_ligand': (None, "ligand atoms of the Li+ shell, e.g. 'TFSI:O', 'BF4:F'; null: from the anions present"),
    'li_cutoff_A': (None, 'Li-ligand cut-off (Å); null: the first minimum of the Li-ligand g(r)'),
    'tfsi_species': ('TFSI', 'name of the TFSI species (cis/trans conformers)'),
}

#: Ligand atoms that bind Li+ for anions of the ion library, in order of preference.
LI_LIGANDS = {'TFSI': 'O', 'FSI': 'O', 'OTf': 'O', 'BF4': 'F', 'PF6': 'F', 'Cl': 'Cl'}


def _is_number(value: t.Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------- settings


def validate_density_convergence(settings: t.Mapping) -> list[str]:
    """Errors of a ``density_convergence`` mapping (unknown keys, out-of-range values); empty if valid."""
    errors = []
    unknown = sorted(set(settings) - set(DENSITY_CONVERGENCE))
    if unknown:
        errors.append(f'`density_convergence`: unknown keys {unknown}; known: {sorted(DENSITY_CONVERGENCE)}')
    for key in ('tolerance_g_cm3', 'n_sigma'):
        value = settings.get(key, 0.0)
        if not _is_number(value) or value < 0:
            errors.append(f'`density_convergence.{key}` must be a number >= 0, got {value!r}')
    fraction = settings.get('min_equilibrated_fraction', 0.5)
    if not _is_number(fraction) or not 0 <= fraction <= 1:
        errors.append(f'`density_convergence.min_equilibrated_fraction` must be within [0, 1], got {fraction!r}')
    min_stages = settings.get('min_stages', 2)
    if isinstance(min_stages, bool) or not isinstance(min_stages, int) or min_stages < 2:
        errors.append(f'`density_convergence.min_stages` must be an integer >= 2, got {min_stages!r}')
    if not isinstance(settings.get('fail_if_not_converged', False), bool):
        errors.append('`density_convergence.fail_if_not_converged` must be true or false')
    return errors


def _with_defaults(settings: t.Mapping | None, table: t.Mapping[str, tuple[t.Any, str]]) -> dict[str, t.Any]:
    values = {key: default for key, (default, _) in table.items()}
    values.update(settings or {})
    return values


def density_stop_rule(stages: t.Sequence[t.Mapping], settings: t.Mapping | None = None) -> tuple[bool, str]:
    """Whether the NPT density has converged after the given stages, and why (one line for the report).

    Each stage is summarised by the equilibrated part of its density trace (:func:`npt_stage_density`:
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
    settings = _with_defaults(settings, DENSITY_CONVERGENCE)
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


def _species_selection(name: str, species: t.Collection[str]) -> str:
    """A species name becomes its centre-of-mass selection; anything else is kept."""
    return f'{name}:com' if name in species else name


def _check_selection(selection: t.Any, species: t.Collection[str] | None, elements: t.Collection[str]) -> str | None:
    if not isinstance(selection, str) or not selection:
        return f'a selection must be a non-empty string, got {selection!r}'
    name, _, part = selection.partition(':')
    if species is None and (part or name not in elements):
        return (
            f'selection {selection!r} needs molecule ids: the structure has no `mol_id`/`molecules` attributes '
            '(build it with build_ionic_liquid_box), or select atoms by element'
        )
    known = set(species or ()) | set(elements)
    if name not in known:
        return (
            f'selection {selection!r}: {name!r} is neither a species {sorted(species or [])} '
            f'nor an element {sorted(elements)}'
        )
    if part and name not in (species or ()):
        return f'selection {selection!r}: {name!r} is not a species of the structure {sorted(species or [])}'
    if part and part not in ('com', '*') and part not in elements:
        return f'selection {selection!r}: element {part!r} is not in the structure {sorted(elements)}'
    return None


def default_li_ligand(species: t.Collection[str]) -> str | None:
    """The Li+ ligand selection for the anions present (:data:`LI_LIGANDS`), e.g. ``'TFSI:O'``; None if none."""
    for anion, element in LI_LIGANDS.items():
        if anion in species:
            return f'{anion}:{element}'
    return None


def resolve_rdf_pairs(settings: t.Mapping, species: t.Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{'a-b': (selection a, selection b)}`` of the RDFs to compute.

    Default (``rdf_pairs`` null): the centre-of-mass RDF of every pair of species in the order of the
    structure (``'PYR14-PYR14'``, ``'PYR14-BF4'``, ``'BF4-BF4'``), plus the Li-ligand RDF (``'Li-TFSI:O'``)
    when Li is present. In given pairs, a species name is its centre of mass.
    """
    settings = _with_defaults(settings, ANALYSIS_SETTINGS)
    pairs = settings['rdf_pairs']
    if pairs is None:
        names = list(dict.fromkeys(species))
        pairs = [[a, b] for i, a in enumerate(names) for b in names[i:]]
        li = settings['li_species']
        ligand = settings['li_ligand'] or default_li_ligand(names)
        if li in names and ligand:
            pairs.append([li, ligand])
    return {f'{a}-{b}': (_species_selection(a, species), _species_selection(b, species)) for a, b in pairs}


def validate_analysis_settings(
    settings: t.Mapping,
    species: t.Sequence[str] | None,
    elements: t.Collection[str],
    production_ps: float | None = None,
) -> list[str]:
    """Errors of an ``analysis`` mapping for a structure; empty if valid.

    :param species: species name of every molecule (the ``molecules`` attribute), None without molecule ids.
    :param elements: element symbols of the structure.
    :param production_ps: length of the NVT production run in ps, to check the windows (None: not checked).
    """
    errors = []
    unknown = sorted(set(settings) - set(ANALYSIS_SETTINGS))
    if unknown:
        return [f'`analysis`: unknown keys {unknown}; known: {sorted(ANALYSIS_SETTINGS)}']
    values = _with_defaults(settings, ANALYSIS_SETTINGS)
    present = None if species is None else set(species)
    discard = values['discard_ps']
    if not _is_number(discard) or discard < 0:
        errors.append(f'`analysis.discard_ps` must be a number >= 0, got {discard!r}')
        discard = 0.0
    if production_ps is not None and discard >= production_ps:
        errors.append(
            f'`analysis.discard_ps` ({discard:g} ps) leaves nothing of the {production_ps:g} ps NVT production run'
        )

    diffusion = values['diffusion_species']
    if diffusion is None or diffusion:
        if present is None:
            errors.append(
                'diffusion per species is asked (`analysis.diffusion_species`) but the structure has no molecule '
                'ids (`mol_id`/`molecules` attributes, as set by build_ionic_liquid_box): give such a structure '
                'or set `analysis.diffusion_species` to []'
            )
        elif diffusion is not None:
            if not isinstance(diffusion, list) or not all(isinstance(name, str) for name in diffusion):
                errors.append(f'`analysis.diffusion_species` must be a list of species names, got {diffusion!r}')
            else:
                missing = sorted(set(diffusion) - present)
                if missing:
                    errors.append(
                        f'`analysis.diffusion_species`: {missing} not in the structure; species: {sorted(present)}'
                    )
    window = values['msd_fit_window_ps']
    if window is not None:
        if (
            not isinstance(window, list | tuple)
            or len(window) != 2
            or not all(_is_number(w) for w in window)
            or not 0 <= window[0] < window[1]
        ):
            errors.append(f'`analysis.msd_fit_window_ps` must be [start, end] with 0 <= start < end, got {window!r}')
        elif production_ps is not None and window[1] > production_ps - discard:
            errors.append(
                f'`analysis.msd_fit_window_ps` ends at {window[1]:g} ps but the analysed NVT run is only '
                f'{production_ps - discard:g} ps long: the fit window is longer than the trajectory'
            )
    fraction = values['msd_max_lag_fraction']
    if not _is_number(fraction) or not 0 < fraction <= 1:
        errors.append(f'`analysis.msd_max_lag_fraction` must be within (0, 1], got {fraction!r}')
    if not isinstance(values['remove_drift'], bool):
        errors.append('`analysis.remove_drift` must be true or false')
    viscosity = values['viscosity_Pa_s']
    if viscosity is not None and (not _is_number(viscosity) or viscosity <= 0):
        errors.append(f'`analysis.viscosity_Pa_s` must be a positive number (Pa s), got {viscosity!r}')
    r_max = values['rdf_r_max_A']
    if r_max is not None and (not _is_number(r_max) or r_max <= 0):
        errors.append(f'`analysis.rdf_r_max_A` must be a positive number (Å), got {r_max!r}')
    bins = values['rdf_bins']
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 10:
        errors.append(f'`analysis.rdf_bins` must be an integer >= 10, got {bins!r}')
    pairs = values['rdf_pairs']
    if pairs is not None:
        if not isinstance(pairs, list) or not all(isinstance(p, list | tuple) and len(p) == 2 for p in pairs):
            errors.append(
                f"`analysis.rdf_pairs` must be a list of [a, b] pairs, e.g. [['Li', 'TFSI:O']], got {pairs!r}"
            )
            pairs = []
        for pair in pairs:
            for selection in pair:
                problem = _check_selection(selection, present, elements)
                if problem:
                    errors.append(f'`analysis.rdf_pairs`: {problem}')
    elif present is None:
        errors.append(
            '`analysis.rdf_pairs` is null (centre-of-mass RDFs of every species pair) but the structure has no '
            "molecule ids: give element pairs, e.g. [['B', 'N']]"
        )
    cutoffs = values['cn_cutoffs_A']
    if not isinstance(cutoffs, dict) or not all(_is_number(v) and v > 0 for v in cutoffs.values()):
        errors.append(f"`analysis.cn_cutoffs_A` must map 'a-b' to a positive cut-off in Å, got {cutoffs!r}")
    elif present is not None and not errors:
        names = resolve_rdf_pairs(values, species)
        unknown_pairs = sorted(set(cutoffs) - set(names))
        if unknown_pairs:
            errors.append(f'`analysis.cn_cutoffs_A`: no RDF pair named {unknown_pairs}; pairs: {sorted(names)}')
    li = values['li_species']
    if present is not None and li in present:
        ligand = values['li_ligand'] or default_li_ligand(present)
        if ligand is None:
            errors.append(
                f'`analysis.li_ligand`: {li} is present but no anion of {sorted(LI_LIGANDS)} is: name the ligand '
                "atoms, e.g. 'X:O'"
            )
        else:
            problem = _check_selection(ligand, present, elements)
            if problem:
                errors.append(f'`analysis.li_ligand`: {problem}')
    cutoff = values['li_cutoff_A']
    if cutoff is not None and (not _is_number(cutoff) or cutoff <= 0):
        errors.append(f'`analysis.li_cutoff_A` must be a positive number (Å), got {cutoff!r}')
    return errors


# ---------------------------------------------------------------------------------------------- helpers


def _png(figure) -> io.BytesIO:
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=120)
    buffer.seek(0)
    return buffer


def _figure(figsize=(6.4, 4.4)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def _singlefile(figure, filename: str) -> orm.SinglefileData:
    return orm.SinglefileData(_png(figure), filename=filename)


def _array_name(text: str) -> str:
    return re.sub(r'\W+', '_', text).strip('_')


@contextlib.contextmanager
def _opened(trajectory: orm.Data, discard_ps: float) -> t.Iterator[tuple[t.Any, dict[str, t.Any]]]:
    """``(path, info)`` of a trajectory node's file: ``info`` has ``species`` (name per molecule, or None),
    ``start`` (first frame after ``discard_ps``), ``mean_volume`` (Å^3) and ``half_width`` (Å) from there on."""
    from aiida_ilmlff.analysis import TrajectoryReader, perpendicular_widths

    with trajectory.as_path() as path:
        with TrajectoryReader(path) as reader:
            time = reader.time
            if len(time) < 3:
                raise ValueError(f'the trajectory has {len(time)} frames: the analyses need at least 3')
            start = int(np.searchsorted(time, time[0] + 1000.0 * discard_ps - 1e-6))
            if start >= len(time) - 2:
                raise ValueError(f'discard_ps = {discard_ps:g} ps leaves fewer than 3 of the {len(time)} frames')
            cells = reader.cells(start)
            info = {
                'species': None if reader.molecules is None else [str(name) for name in reader.molecules],
                'start': start,
                'mean_volume': float(reader.volumes(start).mean()),
                'half_width': float(0.5 * perpendicular_widths(cells).min()),
            }
        yield path, info


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
    from aiida_ilmlff.analysis import timeseries_statistics

    time = np.asarray(thermo.get_array('time_fs'), dtype=float)
    rho = np.asarray(thermo.get_array('density_g_cm3'), dtype=float)
    volume = np.asarray(thermo.get_array('volume_A3'), dtype=float)
    stats = timeseries_statistics(rho, time)
    start = stats.equilibration_index
    span = float(time[-1] - time[0])
    fraction = float((time[-1] - time[start]) / span) if span > 0 else 1.0
    drift = 0.0
    if len(time) - start >= 3 and np.ptp(time[start:]) > 0:
        drift = float(np.polyfit(time[start:] / 1000.0, rho[start:], 1)[0])
    return orm.Dict(
        {
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
    )


def _stage_values(stages: t.Mapping[str, orm.Dict]) -> list[dict]:
    return [stages[key].get_dict() for key in sorted(stages, key=lambda k: int(k.rsplit('_', 1)[-1]))]


def plot_density(time_fs, density_g_cm3, stages: t.Sequence[t.Mapping], converged: bool):
    """Figure of the NPT density trace: stage boundaries, equilibrated parts and stage means +- error."""
    figure = _figure((7.0, 4.2))
    axis = figure.subplots()
    time_ps = np.asarray(time_fs) / 1000.0
    axis.plot(time_ps, density_g_cm3, color='0.55', linewidth=0.8, label='density')
    for k, stage in enumerate(stages, 1):
        t0, t1, te = stage['start_fs'] / 1000.0, stage['end_fs'] / 1000.0, stage['equilibration_time_fs'] / 1000.0
        axis.axvline(t0, color='0.8', linewidth=0.8)
        axis.hlines(stage['mean'], te, t1, color='C0', linewidth=2.0, label='equilibrated mean' if k == 1 else None)
        axis.fill_between(
            [te, t1],
            stage['mean'] - stage['error'],
            stage['mean'] + stage['error'],
            color='C0',
            alpha=0.25,
            linewidth=0,
        )
        axis.annotate(f'{k}', (0.5 * (t0 + t1), 1.0), xycoords=('data', 'axes fraction'), ha='center', va='top')
    last = stages[-1]
    axis.set_xlabel('time [ps]')
    axis.set_ylabel('density [g/cm$^3$]')
    state = 'converged' if converged else 'NOT converged'
    axis.set_title(f'NPT stages: {last["mean"]:.4f} ± {last["error"]:.4f} g/cm$^3$ ({state})', fontsize=10)
    axis.legend(loc='lower right', fontsize=8)
    return figure


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
    from aiida_ilmlff.analysis import center_of_mass_matrix
    from aiida_ilmlff.analysis import density as density_of

    atoms = structure.get_ase()
    current = float(density_of(atoms.get_masses(), atoms.get_volume()))
    factor = (current / float(density['mean'])) ** (1.0 / 3.0)
    mol_id = structure.base.attributes.get('mol_id', None)
    positions = atoms.get_positions()
    if mol_id is not None:
        mol_id = np.asarray(mol_id, dtype=np.int64)
        centres = center_of_mass_matrix(mol_id, atoms.get_masses()) @ positions  # rows: np.unique(mol_id)
        positions = positions + (factor - 1.0) * centres[np.searchsorted(np.unique(mol_id), mol_id)]
    else:
        positions = positions * factor
    atoms.set_cell(atoms.cell * factor, scale_atoms=False)
    atoms.set_positions(positions)
    scaled = orm.StructureData(ase=atoms)
    for key in ('mol_id', 'molecules', 'composition'):
        value = structure.base.attributes.get(key, None)
        if value is not None:
            scaled.base.attributes.set(key, value)
    return scaled


# ---------------------------------------------------------------------------------------------- diffusion


def plot_msd(lag_ps, curves: t.Mapping[str, np.ndarray], windows: t.Mapping[str, tuple[float, float]]):
    """Log-log MSD per species with the fit window of each marked (shaded, and the fitted line)."""
    figure = _figure()
    axis = figure.subplots()
    lag_ps = np.asarray(lag_ps)
    for i, (name, values) in enumerate(curves.items()):
        colour = f'C{i}'
        keep = lag_ps > 0
        axis.loglog(lag_ps[keep], values[keep], color=colour, label=name)
        if name in windows:
            start, end = windows[name]
            inside = keep & (lag_ps >= start - 1e-9) & (lag_ps <= end + 1e-9)
            axis.axvspan(start, end, color=colour, alpha=0.12, linewidth=0)
            axis.loglog(lag_ps[inside], values[inside], color=colour, linewidth=3.0, alpha=0.7)
    if len(lag_ps) > 2:
        reference = lag_ps[lag_ps > 0]
        scale = max(np.nanmax(v[1:]) for v in curves.values()) / reference[-1] if curves else 1.0
        axis.loglog(reference, 0.3 * scale * reference, color='0.5', linestyle=':', label='slope 1')
    axis.set_xlabel('lag time [ps]')
    axis.set_ylabel('centre-of-mass MSD [Å$^2$]')
    axis.set_title('self-diffusion (shaded: fit windows)', fontsize=10)
    axis.legend(fontsize=8)
    return figure


@calcfunction
def analyse_diffusion(trajectory: orm.Data, analysis: orm.Dict, temperature: orm.Float) -> dict[str, orm.Data]:
    """Centre-of-mass self-diffusion coefficient of each species from the NVT trajectory.

    MSD by the FFT algorithm (:func:`aiida_ilmlff.analysis.msd_from_trajectory`, streamed); D = slope / 6 from a
    least-squares fit over the window (Einstein relation), error the standard error over molecules
    (:func:`aiida_ilmlff.analysis.diffusion_coefficient`). Window: ``analysis.msd_fit_window_ps``, or automatic
    (local log-log slope within 0.9-1.1); when the run never reaches the diffusive regime, the fit falls back to
    the lags from 1/5 to all of ``msd_max_lag_fraction`` of the run and the species gets ``diffusive: false``
    (an apparent D: run longer). With ``viscosity_Pa_s`` the Yeh-Hummer correction (J. Phys. Chem. B 108,
    15873 (2004)) is added as ``D_yeh_hummer_m2_s`` for a box edge L = <V>^(1/3).

    :returns: ``diffusion`` (Dict ``{species: {D_m2_s, D_err_m2_s, fit_window_ps, diffusive, loglog_slope,
        n_molecules, automatic_window[, D_yeh_hummer_m2_s]}}``), ``msd`` (ArrayData: ``lag_ps`` and one
        ``msd_<species>`` array in Å^2 per species; attribute ``species``) and ``figure`` (PNG, log-log).
    :raises ValueError: absent species, wrapped coordinates, a window longer than the trajectory.
    """
    from aiida_ilmlff.analysis import diffusion_coefficient, msd_from_trajectory, yeh_hummer_correction

    settings = _with_defaults(analysis.get_dict(), ANALYSIS_SETTINGS)
    with _opened(trajectory, settings['discard_ps']) as (path, info):
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
                fit.D, temperature.value, settings['viscosity_Pa_s'], mean_volume ** (1.0 / 3.0)
            )
            entry['box_length_A'] = mean_volume ** (1.0 / 3.0)
        diffusion[name] = entry
        curves[name] = result.msd[name]
        windows[name] = tuple(entry['fit_window_ps'])
    arrays = orm.ArrayData()
    arrays.set_array('lag_ps', lag_ps)
    for name, values in curves.items():
        arrays.set_array(f'msd_{_array_name(name)}', values)
    arrays.base.attributes.set('species', list(curves))
    arrays.base.attributes.set('units', {'lag_ps': 'ps', 'msd_*': 'angstrom^2'})
    arrays.base.attributes.set('fit_window_ps', {name: list(w) for name, w in windows.items()})
    figure = plot_msd(lag_ps, curves, windows)
    return {'diffusion': orm.Dict(diffusion), 'msd': arrays, 'figure': _singlefile(figure, 'msd.png')}


# ---------------------------------------------------------------------------------------------- structure


def plot_rdf(r, curves: t.Mapping[str, tuple[np.ndarray, np.ndarray, float]]):
    """g(r) of each pair (left axis) with its running coordination number (right axis, dashed) and cut-off."""
    figure = _figure((7.0, 4.4))
    axis = figure.subplots()
    twin = axis.twinx()
    for i, (name, (g, cn, r_cut)) in enumerate(curves.items()):
        colour = f'C{i}'
        axis.plot(r, g, color=colour, label=name)
        twin.plot(r, cn, color=colour, linestyle='--', linewidth=1.0)
        axis.axvline(r_cut, color=colour, linestyle=':', linewidth=0.8)
    axis.axhline(1.0, color='0.7', linewidth=0.6)
    axis.set_xlabel('r [Å]')
    axis.set_ylabel('g(r)')
    twin.set_ylabel('running coordination number (dashed)')
    axis.set_title('RDF and coordination (dotted: cut-offs)', fontsize=10)
    axis.legend(fontsize=8, loc='upper left')
    return figure


@calcfunction
def analyse_structure(trajectory: orm.Data, analysis: orm.Dict) -> dict[str, orm.Data]:
    """Partial RDFs and coordination numbers from the NVT trajectory (streamed).

    g(r) normalised as MDAnalysis ``InterRDF`` (:func:`aiida_ilmlff.analysis.rdf_from_trajectory`), all pairs on
    one grid up to ``rdf_r_max_A`` (default and at most half the smallest perpendicular cell width). The
    coordination number integrates 4 pi rho g(r) r^2 to the cut-off: ``cn_cutoffs_A`` if given, otherwise the
    first minimum of g (:func:`aiida_ilmlff.analysis.first_minimum`), otherwise (no clear minimum within r_max,
    as in tiny boxes) r_max itself; ``r_cut_source`` says which.

    :returns: ``coordination`` (Dict ``{'a-b': {r_cut_A, cn, r_cut_source, selections}}``), ``rdf`` and ``cn``
        (ArrayData: ``r_A`` and ``g_<k>`` / ``cn_<k>`` per pair k, attribute ``pairs`` = the pair names in
        order) and ``figure`` (PNG: g(r) with the running CN on a twin axis).
    """
    from aiida_ilmlff.analysis import first_minimum, rdf_from_trajectory, running_coordination_number

    settings = _with_defaults(analysis.get_dict(), ANALYSIS_SETTINGS)
    with _opened(trajectory, settings['discard_ps']) as (path, info):
        half_width = info['half_width']
        r_max = min(settings['rdf_r_max_A'] or half_width, half_width)
        pairs = resolve_rdf_pairs(settings, info['species'] or [])
        coordination, curves = {}, {}
        rdf_arrays, cn_arrays = orm.ArrayData(), orm.ArrayData()
        r = None
        for k, (name, (a, b)) in enumerate(pairs.items()):
            result = rdf_from_trajectory(path, a, b, r_max, settings['rdf_bins'], start=info['start'])
            r = result.r
            running = running_coordination_number(result.r, result.g, result.number_density_b)
            if name in settings['cn_cutoffs_A']:
                r_cut, source = float(settings['cn_cutoffs_A'][name]), 'given'
            else:
                try:
                    r_cut, source = float(first_minimum(result.r, result.g)), 'first_minimum'
                except ValueError:  # no clear minimum within r_max (tiny boxes): the last bin centre
                    r_cut, source = float(result.r[-1]), 'r_max'
            coordination[name] = {
                'r_cut_A': r_cut,
                'cn': float(result.coordination_number(r_cut)),
                'r_cut_source': source,
                'selections': [a, b],
            }
            rdf_arrays.set_array(f'g_{k}', result.g)
            cn_arrays.set_array(f'cn_{k}', running)
            curves[name] = (result.g, running, r_cut)
    for arrays in (rdf_arrays, cn_arrays):
        arrays.set_array('r_A', r)
        arrays.base.attributes.set('pairs', list(pairs))
        arrays.base.attributes.set('r_max_A', float(r_max))
    figure = plot_rdf(r, curves)
    return {
        'coordination': orm.Dict(coordination),
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
        ``anion_cn_distribution`` (fraction of Li bound to 0, 1, ... anions), ``cluster_sizes``,
        ``cluster_fraction``, ``li_fraction`` (fraction of Li in clusters of each size), ``mean_cluster_size``,
        ``compositions`` (``'1Li3A'``: count over frames), ``lifetime_continuous_ps`` and
        ``lifetime_intermittent_ps`` (None when the run is too short to integrate them), ``n_frames``.
    """
    from aiida_ilmlff.analysis import li_environment_from_trajectory

    settings = _with_defaults(analysis.get_dict(), ANALYSIS_SETTINGS)
    with _opened(trajectory, settings['discard_ps']) as (path, info):
        ligand = settings['li_ligand'] or default_li_ligand(info['species'] or [])
        result = li_environment_from_trajectory(
            path, settings['li_species'], ligand, settings['li_cutoff_A'], start=info['start']
        )
    clusters = result.clusters
    return orm.Dict(
        {
            'r_cut_A': result.r_cut,
            'r_cut_from_rdf': result.r_cut_from_rdf,
            'ligand': ligand,
            'ligand_cn': result.ligand_cn,
            'anion_cn': result.anion_cn,
            'anion_cn_distribution': result.anion_cn_distribution.tolist(),
            'cluster_sizes': clusters.sizes.tolist(),
            'cluster_fraction': clusters.fraction.tolist(),
            'li_fraction': clusters.li_fraction.tolist(),
            'mean_cluster_size': clusters.mean_size,
            'compositions': dict(clusters.compositions),
            'lifetime_continuous_ps': None
            if result.lifetime_continuous is None
            else result.lifetime_continuous.tau_fs / 1000.0,
            'lifetime_intermittent_ps': None
            if result.lifetime_intermittent is None
            else result.lifetime_intermittent.tau_fs / 1000.0,
            'n_frames': clusters.n_frames,
        }
    )


@calcfunction
def analyse_tfsi_conformers(trajectory: orm.Data, analysis: orm.Dict) -> orm.Dict:
    """Cis/trans populations of TFSI from the C-S...S-C dihedral (|phi| < 90 deg is cis) over the NVT run.

    :returns: Dict with ``cis_fraction``, ``trans_fraction`` (time averages), ``cis_fraction_std`` (over
        frames), ``n_molecules``, ``n_frames``, ``cis_cut_deg``.
    """
    from aiida_ilmlff.analysis import conformers_from_trajectory

    settings = _with_defaults(analysis.get_dict(), ANALYSIS_SETTINGS)
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
