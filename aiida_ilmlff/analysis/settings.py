"""Settings of the property analyses (the ``analysis`` Dict of ``ilmlff.properties``): defaults, validation, RDF pairs.

Pure Python (no AiiDA): the work chain validates its input with :func:`validate_analysis_settings` before anything
is submitted, and the analysis calcfunctions resolve the pairs with :func:`resolve_rdf_pairs`. Selections are
those of :meth:`aiida_ilmlff.analysis.TrajectoryReader.select_atoms` (``'Li'``, ``'TFSI:O'``, ``'BF4:com'``).
"""

from __future__ import annotations

import math
import typing as t

__all__ = (
    'ANALYSIS_SETTINGS',
    'LI_LIGANDS',
    'default_li_ligand',
    'is_number',
    'resolve_rdf_pairs',
    'validate_analysis_settings',
    'viscosity_Pa_s',
    'with_defaults',
)

#: Keys of the ``analysis`` Dict: (default, meaning).
ANALYSIS_SETTINGS: dict[str, tuple[t.Any, str]] = {
    'discard_ps': (0.0, 'NVT time (ps) left out of every analysis, from the start of the production run'),
    'diffusion_species': (
        None,
        'species whose centre-of-mass self-diffusion is computed; null: every species of the structure; [] none',
    ),
    'msd_fit_window_ps': (
        None,
        '[start, end] lag window (ps) of the MSD fit; null: automatic (local log-log slope within msd_slope_band)',
    ),
    'msd_max_lag_fraction': (0.25, 'longest lag considered by the automatic window, as a fraction of the run'),
    'msd_slope_band': (
        [0.9, 1.1],
        '[low, high] log-log slope d ln MSD / d ln t counted as diffusive (Maginn et al., LiveCoMS 1, 6324 (2019)); '
        'outside it no D is reported (regime sub-diffusive or ballistic)',
    ),
    'msd_target_A2': (
        100.0,
        'MSD (Å^2) a species should reach, about one ion-pair diameter squared; used for time_needed_ps only',
    ),
    'msd_blocks': (5, 'independent time blocks for the error of D (block averaging); lowered until each holds the fit'),
    'remove_drift': (True, 'subtract the centre-of-mass motion of the whole system before the MSD'),
    'viscosity_mPa_s': (
        None,
        'shear viscosity (mPa s = cP); when given, D_yeh_hummer_m2_s = D + k_B T xi / (6 pi eta L) beside D '
        '(Yeh & Hummer, J. Phys. Chem. B 108, 15873 (2004))',
    ),
    'viscosity_Pa_s': (None, 'the same viscosity in Pa s (give one of viscosity_mPa_s, viscosity_Pa_s)'),
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


def is_number(value: t.Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def with_defaults(settings: t.Mapping | None, table: t.Mapping[str, tuple[t.Any, str]]) -> dict[str, t.Any]:
    """``settings`` over the defaults of ``table`` (key -> (default, meaning))."""
    values = {key: default for key, (default, _) in table.items()}
    values.update(settings or {})
    return values


def viscosity_Pa_s(settings: t.Mapping) -> float | None:
    """The viscosity of the ``analysis`` settings in Pa s (from ``viscosity_mPa_s`` or ``viscosity_Pa_s``), or None."""
    values = with_defaults(settings, ANALYSIS_SETTINGS)
    if values['viscosity_mPa_s'] is not None:
        return float(values['viscosity_mPa_s']) * 1e-3
    if values['viscosity_Pa_s'] is not None:
        return float(values['viscosity_Pa_s'])
    return None


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
    when Li is present; a species with a single molecule in the box has no like pair (``'Li-Li'`` of one Li+),
    so that pair is left out. In given pairs, a species name is its centre of mass.
    """
    settings = with_defaults(settings, ANALYSIS_SETTINGS)
    pairs = settings['rdf_pairs']
    if pairs is None:
        names = list(dict.fromkeys(species))
        count = {name: list(species).count(name) for name in names}
        pairs = [[a, b] for i, a in enumerate(names) for b in names[i:] if a != b or count[a] > 1]
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
    values = with_defaults(settings, ANALYSIS_SETTINGS)
    present = None if species is None else set(species)
    discard = values['discard_ps']
    if not is_number(discard) or discard < 0:
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
            or not all(is_number(w) for w in window)
            or not 0 <= window[0] < window[1]
        ):
            errors.append(f'`analysis.msd_fit_window_ps` must be [start, end] with 0 <= start < end, got {window!r}')
        elif production_ps is not None and window[1] > production_ps - discard:
            errors.append(
                f'`analysis.msd_fit_window_ps` ends at {window[1]:g} ps but the analysed NVT run is only '
                f'{production_ps - discard:g} ps long: the fit window is longer than the trajectory'
            )
    fraction = values['msd_max_lag_fraction']
    if not is_number(fraction) or not 0 < fraction <= 1:
        errors.append(f'`analysis.msd_max_lag_fraction` must be within (0, 1], got {fraction!r}')
    if not isinstance(values['remove_drift'], bool):
        errors.append('`analysis.remove_drift` must be true or false')
    for key, unit in (('viscosity_mPa_s', 'mPa s'), ('viscosity_Pa_s', 'Pa s')):
        viscosity = values[key]
        if viscosity is not None and (not is_number(viscosity) or viscosity <= 0):
            errors.append(
                f'`analysis.{key}` must be a positive number ({unit}), got {viscosity!r}: a viscosity must be > 0; '
                'leave it out to skip the Yeh-Hummer correction'
            )
    if values['viscosity_mPa_s'] is not None and values['viscosity_Pa_s'] is not None:
        errors.append('give one of `analysis.viscosity_mPa_s` and `analysis.viscosity_Pa_s`, not both')
    band = values['msd_slope_band']
    if (
        not isinstance(band, list | tuple)
        or len(band) != 2
        or not all(is_number(b) for b in band)
        or not 0 < band[0] < 1 < band[1]
    ):
        errors.append(f'`analysis.msd_slope_band` must be [low, high] with 0 < low < 1 < high, got {band!r}')
    target = values['msd_target_A2']
    if not is_number(target) or target <= 0:
        errors.append(f'`analysis.msd_target_A2` must be a positive number (Å^2), got {target!r}')
    blocks = values['msd_blocks']
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 2:
        errors.append(f'`analysis.msd_blocks` must be an integer >= 2, got {blocks!r}')
    r_max = values['rdf_r_max_A']
    if r_max is not None and (not is_number(r_max) or r_max <= 0):
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
    if not isinstance(cutoffs, dict) or not all(is_number(v) and v > 0 for v in cutoffs.values()):
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
    if cutoff is not None and (not is_number(cutoff) or cutoff <= 0):
        errors.append(f'`analysis.li_cutoff_A` must be a positive number (Å), got {cutoff!r}')
    return errors
