"""The side-by-side comparison of MLFFs (the pipeline's last step) as plain data: table, text, curve columns.

The table follows Park, Ryu & Lee (arXiv:2503.18249, Tables 2-4): for every model, the force and energy RMSE
on a held-out DFT test set, and the density and self-diffusion coefficients of each ion from MD with that
model. Pure Python/numpy on plain dicts and arrays, so ``aiida-ilmlff report`` redraws the figures
(:mod:`aiida_ilmlff.analysis.figures`) from the stored nodes without recomputing anything; the calcfunctions
that store them are :mod:`aiida_ilmlff.calculations.functions.comparison`.
"""

from __future__ import annotations

import math
import typing as t

import numpy as np

from aiida_ilmlff.analysis.active_learning import active_learning_summary, format_active_learning

__all__ = ('ROW_KINDS', 'UNITS', 'comparison_table', 'curve_columns', 'format_comparison_table', 'ion_order')

#: How a comparison row's model came about.
ROW_KINDS = {
    'trained': 'committee trained from scratch on the final training set',
    'foundation': 'user-supplied foundation model, run as it is',
    'finetuned': 'user-supplied foundation model fine-tuned on the final training set',
}
#: Units of the numbers in a comparison row.
UNITS = {
    'force_rmse': 'meV/Å',
    'force_rmse_relative': 'force RMSE / RMS of the reference forces',
    'energy_rmse': 'meV/atom',
    'energy_rmse_aligned': 'meV/atom, after fitted per-element offsets',
    'pressure_rmse': 'kbar',
    'force_rmse_committee_mean': 'meV/Å',
    'density': 'g/cm^3',
    'D': 'm^2/s',
    'coordination': 'neighbours within r_cut (Å)',
    'li_solvation': 'ligand_cn: ligand atoms within r_cut (Å) of a Li+; anion_cn: anions per Li+; distributions as '
    'fractions; lifetimes in ps',
    'tfsi_cis_fraction': 'fraction of TFSI in the cis (C1) conformer (|C-S...S-C| < 90 deg)',
}
#: Row kinds whose energies may have another reference than the labels (another code or level of theory): their
#: energy RMSE is shown only after per-element offsets are fitted
#: (:func:`aiida_ilmlff.parsers.evaluate.aligned_energy_errors`).
ALIGNED_KINDS = ('foundation', 'finetuned')


def _errors(metrics: t.Mapping, key: str | None) -> dict:
    """Errors of model ``key`` (default: the first in natural order) of an ``ilmlff.evaluate`` metrics dict."""
    models = metrics.get('models', {})
    if not models:
        return {}
    key = key if key in models else sorted(models)[0]
    return dict(models[key].get('errors') or {})


def _origin_errors(errors: t.Mapping) -> dict[str, dict]:
    """``{origin: {n_frames, force_rmse, force_rmse_relative}}`` from the ``per_origin`` block of an error dict."""
    return {
        origin: {
            'n_frames': entry.get('n_frames'),
            'force_rmse': entry.get('force_rmse'),
            'force_rmse_relative': entry.get('force_rmse_relative'),
        }
        for origin, entry in sorted((errors.get('per_origin') or {}).items())
    }


def _guard_text(unstable: t.Mapping) -> str:
    """``temperature guard tripped: T = 4521 K > 4500 K at step 56 (nvt)`` from a ``properties.unstable`` record
    (the runner's message names the value and step; without one, the step is given)."""
    text = f'{unstable.get("guard") or "a"} guard tripped'
    if unstable.get('message'):
        text += f': {unstable["message"]}'
        where = [unstable.get('stage')]
    else:
        where = [unstable.get('stage'), f'step {unstable["step"]}' if unstable.get('step') is not None else None]
    where = ', '.join(str(v) for v in where if v)
    return f'{text} ({where})' if where else text


def _bond_text(broken: t.Mapping) -> str:
    """``PYR14 #1: C(37)-H(55) 1.68 A = 1.53x (npt_0, step 120)`` from a ``properties.broken`` record (its ``label``,
    else its ``elements``, ``i``, ``j``, ``species`` and ``stretch``)."""
    where = ', '.join(
        str(v) for v in (broken.get('stage'), f'step {broken["step"]}' if 'step' in broken else None) if v
    )
    if broken.get('label'):
        return f'{broken["label"]} ({where})' if where else str(broken['label'])
    elements = broken.get('elements') or []
    atoms = '-'.join(f'{e}{i}' for e, i in zip(elements, (broken.get('i'), broken.get('j')))) or 'a bond'
    text = f'{atoms} of {broken.get("species") or "a molecule"}'
    if broken.get('stretch') is not None:
        text += f' x{float(broken["stretch"]):.2g}'
    return f'{text} ({where})' if where else text


def _diffusion_entry(entry: t.Mapping) -> dict[str, t.Any]:
    """A D cell: the value and error only where the MSD is diffusive, else the regime and what it would need."""
    regime = entry.get('regime')
    if regime is None and entry.get('D_m2_s') is not None:
        regime = 'diffusive'  # an entry of a properties run older than the regime flag
    diffusive = regime == 'diffusive'
    return {
        'value': entry.get('D_m2_s') if diffusive else None,
        'error': entry.get('D_err_m2_s') if diffusive else None,
        'error_method': entry.get('D_err_method') if diffusive else None,
        'yeh_hummer': entry.get('D_yeh_hummer_m2_s') if diffusive else None,
        'regime': regime,
        'msd_reached_A2': entry.get('msd_reached_A2'),
        'time_needed_ps': entry.get('time_needed_ps'),
    }


def ion_order(ions: t.Mapping[str, int]) -> list[str]:
    """The ions of a composition in the table's column order: cations first, then anions, each by name.

    Never the mapping's own order: a ``Dict`` on PostgreSQL (JSONB) and a work chain's checkpoint (YAML) both
    re-order keys, so the same pipeline would otherwise print its columns in a different order on PostgreSQL, or
    after a daemon restart, than on SQLite.

    :param ions: ion name -> formal charge.
    """
    return sorted(ions, key=lambda name: (-int(ions[name]), name))


def comparison_table(
    rows: t.Mapping[str, t.Mapping[str, t.Any]],
    ions: t.Mapping[str, int],
    test_set: t.Mapping[str, t.Any] | None = None,
    references: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
    active_learning: t.Mapping[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    """Assemble the comparison from per-model evaluation metrics and properties, every number flagged where it is
    not a result.

    :param rows: row name -> ``{'info': {...}, 'evaluation': <ilmlff.evaluate metrics dict>, 'properties':
        <ilmlff.properties ``properties`` dict, optional>, 'validation': <ilmlff.validate ``validation`` dict,
        optional>}``; ``info`` holds ``label`` (shown in the table),
        ``kind`` (one of :data:`ROW_KINDS`), ``architecture``, ``driver`` (the model key that drove the MD and
        whose errors are reported), ``committee_size``, ``model_uuid``.
    :param ions: ion name -> formal charge of the composition (columns of the self-diffusion coefficients).
    :param test_set: how the shared test set was held out (the pipeline's ``test_split``): ``leak_free`` (bool),
        ``gap_fs``, ``n_blocks``, ``n_frames``; ``None`` when unknown (the errors are then flagged as possibly
        leaking).
    :param references: composition key -> the reference AIMD's ``li_clusters`` and ``tfsi_conformers`` (as
        ``ilmlff.properties`` writes them) and ``n_frames``: the Li+ solvation and TFSI cis fraction of the AIMD the
        data set came from, shown beside the models' (``references`` of the result, flagged as short runs).
    :param active_learning: the ``iterations`` of the active learning that made the training set, summarised by
        :func:`~aiida_ilmlff.analysis.active_learning.active_learning_summary` (``active_learning`` of the result;
        its flags say when it added nothing or stopped early).
    :returns: ``{'rows': {name: row}, 'order': [names], 'ions': {...}, 'units': {...}, 'test_set': {...}}``; a row
        has ``force_rmse`` [meV/Å], ``force_rmse_relative``, ``energy_rmse`` [meV/atom] (for :data:`ALIGNED_KINDS`
        the energy RMSE after fitted per-element offsets, ``None`` when that fit is not determined),
        ``energy_rmse_raw``, ``pressure_rmse`` [kbar] over ``n_stress_frames``, ``per_origin`` {origin:
        {n_frames, force_rmse, force_rmse_relative}}, ``force_rmse_committee_mean`` (committee rows),
        ``n_test_frames``, ``density`` and ``density_error`` [g/cm^3] (``None`` unless the density stop rule held:
        the value is kept in ``density_unconverged``), ``converged``, ``D`` {ion: :func:`_diffusion_entry`}
        [m^2/s], ``coordination`` {pair: {r_cut_A, cn, cutoff_fallback}}, ``composition`` (the row's composition
        key, from ``info``), ``li_solvation`` (Li+ rows: :func:`_li_solvation`: Li-ligand CN, anions per Li+ and
        their distribution, mono-/bidentate shares, mean cluster size, continuous and intermittent Li-anion
        lifetimes [ps] with lower-bound marks) and ``tfsi_cis_fraction``, ``broken`` (the bond a model's MD broke,
        or ``None``), ``unstable`` (the guard its MD gave up on, or ``None``; with either there is no density, D or
        coordination), ``validation`` (with a validation: ``md_intact``, ``md_ps``, ``a_posteriori_force_rmse``
        [meV/Å] and its relative value and ratio to the test-set RMSE, ``rdf_within_targets``, the largest RDF peak
        shift [Å] and height deviation, the mean RDF distance [Å], counts of RDFs; else ``None``) and ``flags``
        (one short text per number that is not a result, shown under the table). Missing numbers are ``None``.
    :raises ValueError: for an unknown ``kind`` or no rows.
    """
    if not rows:
        raise ValueError('the comparison needs at least one model row')
    test_set = dict(test_set) if test_set else {}
    table: dict[str, t.Any] = {}
    for name, values in rows.items():
        info = dict(values.get('info') or {})
        kind = info.get('kind', 'trained')
        if kind not in ROW_KINDS:
            raise ValueError(f'row `{name}`: unknown kind {kind!r}; one of {sorted(ROW_KINDS)}')
        metrics = values.get('evaluation') or {}
        errors = _errors(metrics, info.get('driver'))
        committee = metrics.get('committee_mean') if metrics.get('n_models', 1) > 1 else None
        flags: list[str] = []
        energy = errors.get('energy_rmse')
        if kind in ALIGNED_KINDS:
            energy = errors.get('energy_rmse_aligned_meV_per_atom')
            if energy is None and errors.get('energy_rmse') is not None:
                flags.append(f'energy: {errors.get("energy_alignment") or "other reference energies"}')
        row: dict[str, t.Any] = {
            'label': info.get('label', name),
            'kind': kind,
            'architecture': info.get('architecture'),
            'committee_size': info.get('committee_size', metrics.get('n_models')),
            'model_uuid': info.get('model_uuid'),
            'n_test_frames': metrics.get('n_frames'),
            'force_rmse': errors.get('force_rmse'),
            'force_rmse_relative': errors.get('force_rmse_relative'),
            'energy_rmse': energy,
            'energy_rmse_raw': errors.get('energy_rmse'),
            'pressure_rmse': errors.get('pressure_rmse_kbar'),
            'n_stress_frames': errors.get('n_stress_frames'),
            'per_origin': _origin_errors(errors),
            'force_rmse_committee_mean': (committee or {}).get('force_rmse'),
            'density': None,
            'density_error': None,
            'density_unconverged': None,
            'converged': None,
            'D': {},
            'coordination': {},
            'composition': info.get('composition'),
            'li_solvation': None,
            'tfsi_cis_fraction': None,
            'broken': None,
            'unstable': None,
            'validation': None,
            'flags': flags,
        }
        validation = values.get('validation')
        if validation:
            row['validation'] = _validation_entry(validation, flags)
        properties = values.get('properties') or {}
        broken = properties.get('broken')
        unstable = properties.get('unstable')
        if broken:
            row['broken'] = dict(broken)
            flags.append(f'molecules broke: {_bond_text(broken)}; no density, D or structure from this model')
        elif unstable:
            row['unstable'] = dict(unstable)
            flags.append(f'MD unstable: {_guard_text(unstable)}; no density, D or structure from this model')
        broken = broken or unstable
        density = properties.get('density_g_cm3') or {}
        row['converged'] = density.get('converged')
        if not broken and density.get('mean') is not None:
            if density.get('converged') is False:
                row['density_unconverged'] = density.get('mean')
                flags.append(f'density: the stop rule did not hold (last value {density["mean"]:.4g} g/cm^3)')
            else:
                row['density'] = density.get('mean')
                row['density_error'] = density.get('error')
        for ion in ion_order(ions):
            entry = (properties.get('diffusion') or {}).get(ion) or {}
            cell = _diffusion_entry(entry) if not broken else _diffusion_entry({})
            row['D'][ion] = cell
            if cell['regime'] not in (None, 'diffusive'):
                needed = cell['time_needed_ps']
                flags.append(
                    f'D {ion}: {cell["regime"]} MSD ({_fmt(cell["msd_reached_A2"])} Å² reached)'
                    + (f', needs ~{_fmt(needed)} ps' if needed is not None else '')
                )
        if not broken:
            # Sorted: a Dict read back from PostgreSQL (JSONB) has its keys in another order than from SQLite.
            for pair, entry in sorted((properties.get('coordination') or {}).items()):
                row['coordination'][pair] = {
                    'r_cut_A': entry.get('r_cut_A'),
                    'cn': entry.get('cn'),
                    'cutoff_fallback': entry.get('cutoff_fallback'),
                }
                if entry.get('cutoff_fallback'):
                    flags.append(
                        f'CN {pair}: no RDF minimum, cut-off fell back to r_max {_fmt(entry.get("r_cut_A"))} Å'
                    )
            li = properties.get('li_clusters')
            if li and li.get('available') is False:
                flags.append(f'Li+ solvation: {li.get("reason")}')
            elif li:
                row['li_solvation'] = _li_solvation(li, flags)
            if properties.get('tfsi_conformers'):
                row['tfsi_cis_fraction'] = properties['tfsi_conformers'].get('cis_fraction')
        table[name] = row
    order = sorted(table, key=lambda n: (list(ROW_KINDS).index(table[n]['kind']), n))
    if not test_set.get('leak_free'):
        test_set.setdefault('warning', 'the test set was not held out in blocks: its errors may be optimistic')
    ions = {ion: ions[ion] for ion in ion_order(ions)}
    result = {'rows': table, 'order': order, 'ions': ions, 'units': dict(UNITS), 'test_set': test_set}
    if references:
        result['references'] = {key: _reference_entry(key, value) for key, value in sorted(references.items())}
    if active_learning:
        result['active_learning'] = active_learning_summary(active_learning)
    return result


#: A posteriori force RMSE / test-set force RMSE above which the test set does not represent the model's own MD
#: (issue 17's study goal: at most 1.5).
A_POSTERIORI_RATIO_TARGET = 1.5


def _validation_entry(validation: t.Mapping[str, t.Any], flags: list[str]) -> dict[str, t.Any]:
    """The comparison's view of an ``ilmlff.validate`` record (``validation`` output), flags appended to ``flags``."""
    structure = validation.get('structure') or {}
    a_posteriori = validation.get('a_posteriori') or {}
    rdf = validation.get('rdf') or {}
    entry = {
        'md_intact': validation.get('md_intact'),
        'md_ps': validation.get('md_ps'),
        'a_posteriori_force_rmse': a_posteriori.get('force_rmse'),
        'a_posteriori_force_rmse_relative': a_posteriori.get('force_rmse_relative'),
        'a_posteriori_ratio': a_posteriori.get('ratio_to_test'),
        'a_posteriori_frames': a_posteriori.get('n_frames'),
        'a_posteriori_problem': validation.get('a_posteriori_problem'),
        'calibration_pearson': a_posteriori.get('calibration_pearson'),
        'rdf_within_targets': structure.get('within_targets'),
        'max_abs_peak_shift_A': structure.get('max_abs_peak_shift_A'),
        'max_abs_height_deviation': structure.get('max_abs_height_deviation'),
        'mean_rdf_distance_A': structure.get('mean_rdf_distance_A'),
        'n_rdf': len(rdf),
        'n_rdf_available': sum(1 for value in rdf.values() if value.get('available', True) is not False),
    }
    if entry['md_intact'] is False:
        flags.append(
            f'validation: its NVT at the AIMD state point tripped a guard after {_fmt(entry["md_ps"])} ps '
            f'({validation.get("md_exit_message")}); no structure or a posteriori error'
        )
        return entry
    if entry['rdf_within_targets'] is False:
        flags.append(
            f'validation: RDF first peaks off the AIMD by up to {_fmt(entry["max_abs_peak_shift_A"])} Å and '
            f'{_percent(entry["max_abs_height_deviation"])} in height (targets 0.05 Å, 10 %)'
        )
    elif entry['n_rdf'] and not entry['n_rdf_available']:
        flags.append('validation: no RDF had a first peak within half the box (too small a box): no RDF agreement')
    if entry['a_posteriori_problem']:
        flags.append(f'validation: no a posteriori error: {entry["a_posteriori_problem"]}')
    ratio = entry['a_posteriori_ratio']
    if ratio is not None and ratio > A_POSTERIORI_RATIO_TARGET:
        flags.append(
            f'validation: the force RMSE on frames of its own MD is {ratio:.1f} x the test-set RMSE (target <= '
            f'{A_POSTERIORI_RATIO_TARGET:g}): the test set does not represent where its MD goes'
        )
    return entry


def _reference_entry(key: str, reference: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """One reference AIMD in the table: the same Li+ solvation and TFSI columns as a model row, with its flags."""
    flags: list[str] = []
    li = reference.get('li_clusters')
    solvation = None
    if li and li.get('available') is False:
        flags.append(f'Li+ solvation: {li.get("reason")}')
    elif li:
        solvation = _li_solvation(li, flags)
    return {
        'label': f'AIMD [{key}]',
        'composition': key,
        'n_frames': reference.get('n_frames'),
        'li_solvation': solvation,
        'tfsi_cis_fraction': (reference.get('tfsi_conformers') or {}).get('cis_fraction'),
        'flags': flags,
    }


def _li_solvation(li: t.Mapping[str, t.Any], flags: list[str]) -> dict[str, t.Any]:
    """The Li+ solvation columns of a row from ``properties.li_clusters`` (``analyse_li_environment``); a lifetime
    whose correlation did not decay within the run is kept as a lower bound and flagged, one that could not be
    integrated is ``None`` and flagged."""
    entry = {
        'r_cut_A': li.get('r_cut_A'),
        'ligand': li.get('ligand'),
        'ligand_cn': li.get('ligand_cn'),
        'anion_cn': li.get('anion_cn'),
        'anion_cn_distribution': li.get('anion_cn_distribution'),
        'denticity_distribution': li.get('denticity_distribution'),
        'mean_cluster_size': li.get('mean_cluster_size'),
        'lifetime_continuous_ps': li.get('lifetime_continuous_ps'),
        'lifetime_continuous_lower_bound': li.get('lifetime_continuous_decayed') is False,
        'lifetime_intermittent_ps': li.get('lifetime_intermittent_ps'),
        'lifetime_intermittent_lower_bound': li.get('lifetime_intermittent_decayed') is False,
    }
    for kind in ('continuous', 'intermittent'):
        if entry[f'lifetime_{kind}_ps'] is None:
            flags.append(f'Li-anion {kind} lifetime: the run is too short to integrate C(t)')
        elif entry[f'lifetime_{kind}_lower_bound']:
            flags.append(
                f'Li-anion {kind} lifetime: C(t) did not decay within the run; '
                f'{_fmt(entry[f"lifetime_{kind}_ps"])} ps is a lower bound'
            )
    return entry


def _fmt(value: float | None, error: float | None = None, scale: float = 1.0, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    text = f'{value * scale:.{digits}g}'
    if error is not None and math.isfinite(error):
        text += f' ± {error * scale:.2g}'
    return text


def _percent(value: float | None) -> str:
    return '-' if value is None or not math.isfinite(value) else f'{100.0 * value:.0f} %'


def format_comparison_table(comparison: t.Mapping[str, t.Any]) -> str:
    """The comparison as a plain-text table, one line per model, then the per-origin force errors and the flags.

    Columns: model, kind, force RMSE [meV/Å] and relative force error on the shared test set, energy RMSE
    [meV/atom] (aligned for foundation rows), pressure RMSE [kbar], density [g/cm^3] with its error, and the
    self-diffusion coefficient of every ion [1e-11 m^2/s] with its error. A number that is not a result is never
    printed in its column: ``broken`` (the MD broke a molecule), ``unstable`` (the MD gave up on another guard),
    ``n.c.`` (density stop rule not met),
    ``sub-diff.`` / ``ballistic`` (the MSD was not diffusive); each is explained in a numbered note below.

    :param comparison: the ``comparison`` dict of :func:`comparison_table` (the pipeline's ``comparison``
        output, ``get_dict()``).
    """
    ions = ion_order(comparison.get('ions', {}))
    header = ['model', 'kind', 'F RMSE (meV/Å)', 'F rel.', 'E RMSE (meV/atom)', 'P RMSE (kbar)', 'density (g/cm3)']
    header += [f'D {ion} (1e-11 m2/s)' for ion in ions]
    lines = [header]
    order = comparison.get('order', sorted(comparison['rows']))
    for name in order:
        row = comparison['rows'][name]
        failed = 'broken' if row.get('broken') else 'unstable' if row.get('unstable') else None
        if failed:
            density = failed
        elif row.get('density') is None and row.get('density_unconverged') is not None:
            density = 'n.c.'
        else:
            density = _fmt(row.get('density'), row.get('density_error'), digits=4)
        line = [
            row.get('label', name),
            row.get('kind', ''),
            _fmt(row.get('force_rmse'), digits=4),
            _percent(row.get('force_rmse_relative')),
            _fmt(row.get('energy_rmse'), digits=4),
            _fmt(row.get('pressure_rmse'), digits=3),
            density,
        ]
        for ion in ions:
            entry = row.get('D', {}).get(ion) or {}
            if failed:
                line.append(failed)
            elif entry.get('value') is None and entry.get('regime') not in (None, 'diffusive'):
                line.append('sub-diff.' if entry['regime'] == 'sub-diffusive' else str(entry['regime']))
            else:
                line.append(_fmt(entry.get('value'), entry.get('error'), scale=1e11))
        lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    rendered = ['  '.join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    rendered.insert(1, '  '.join('-' * width for width in widths))
    origins = sorted({origin for name in order for origin in comparison['rows'][name].get('per_origin') or {}})
    if origins:
        rendered.append('')
        rendered.append('force RMSE per origin of the test frames (meV/Å, relative):')
        for name in order:
            row = comparison['rows'][name]
            cells = []
            for origin in origins:
                entry = (row.get('per_origin') or {}).get(origin) or {}
                relative = _percent(entry.get('force_rmse_relative'))
                force = _fmt(entry.get('force_rmse'), digits=4)
                cells.append(f'{origin} {force} ({relative}, {entry.get("n_frames") or 0} frames)')
            rendered.append(f'  {row.get("label", name)}: ' + '; '.join(cells))
    validated = [name for name in order if comparison['rows'][name].get('validation')]
    if validated:
        rendered.append('')
        rendered.append(
            "validation against the data set's AIMD (NVT at its state point: MD intact, a posteriori force RMSE on "
            'frames of its own MD, RDF first peaks and distance to the AIMD):'
        )
        for name in validated:
            row = comparison['rows'][name]
            entry = row['validation']
            if entry.get('md_intact') is False:
                cells = [f'MD broke after {_fmt(entry.get("md_ps"))} ps']
            else:
                ratio = entry.get('a_posteriori_ratio')
                cells = [
                    f'MD intact ({_fmt(entry.get("md_ps"))} ps)',
                    f'a posteriori F RMSE {_fmt(entry.get("a_posteriori_force_rmse"), digits=4)} meV/Å '
                    f'({_percent(entry.get("a_posteriori_force_rmse_relative"))}'
                    + (f', {ratio:.2f} x test' if ratio is not None else '')
                    + f', {entry.get("a_posteriori_frames") or 0} frames)',
                ]
                if entry.get('n_rdf_available'):
                    targets = {True: 'within targets', False: 'off targets'}.get(entry.get('rdf_within_targets'), 'n/a')
                    cells.append(
                        f'RDF peak shift <= {_fmt(entry.get("max_abs_peak_shift_A"))} Å, height <= '
                        f'{_percent(entry.get("max_abs_height_deviation"))}, distance '
                        f'{_fmt(entry.get("mean_rdf_distance_A"))} Å ({targets}, {entry["n_rdf_available"]} of '
                        f'{entry["n_rdf"]} RDFs)'
                    )
                else:
                    cells.append('RDF n/a (no first peak within half the box)')
            rendered.append(f'  {row.get("label", name)}: ' + '; '.join(cells))
    references = comparison.get('references') or {}
    lines = [(row.get('label', name), row) for name in order for row in [comparison['rows'][name]]]
    lines += [(entry.get('label', key), entry) for key, entry in references.items()]
    if any(row.get('li_solvation') or row.get('tfsi_cis_fraction') is not None for _, row in lines):
        rendered.append('')
        rendered.append(
            'Li+ solvation (CN of the ligand atom, anions per Li+, share of contacts mono-/bidentate, mean Li-anion '
            'cluster size, Li-anion lifetimes continuous/intermittent in ps; > : lower bound) and TFSI cis fraction'
            + ('; AIMD: the reference CP2K run of the data set:' if references else ':')
        )
        for label, row in lines:
            cells = []
            li = row.get('li_solvation')
            if li:
                dentate = li.get('denticity_distribution') or []
                shares = '/'.join(_percent(share) for share in dentate[:2]) if dentate else '-'
                lifetimes = '/'.join(
                    ('>' if li.get(f'lifetime_{kind}_lower_bound') else '') + _fmt(li.get(f'lifetime_{kind}_ps'))
                    for kind in ('continuous', 'intermittent')
                )
                cells.append(
                    f'CN Li-{(li.get("ligand") or "?").split(":")[-1]} {_fmt(li.get("ligand_cn"))} '
                    f'(r_cut {_fmt(li.get("r_cut_A"))} Å), {_fmt(li.get("anion_cn"))} anions/Li+, '
                    f'mono/bi {shares}, cluster {_fmt(li.get("mean_cluster_size"))}, lifetimes {lifetimes} ps'
                )
            if row.get('tfsi_cis_fraction') is not None:
                cells.append(f'TFSI cis {_percent(row["tfsi_cis_fraction"])}')
            if row.get('broken') or row.get('unstable'):
                cells = ['broken' if row.get('broken') else 'unstable']
            if cells:
                rendered.append(f'  {label}: ' + '; '.join(cells))
    test_set = comparison.get('test_set') or {}
    notes = []
    if test_set.get('leak_free'):
        notes.append(
            f'test set: {test_set.get("n_frames", "?")} frames in {test_set.get("n_blocks", "?")} whole blocks, at '
            f'least {_fmt(test_set.get("gap_fs"))} fs from any training frame of the same trajectory'
        )
    elif test_set.get('warning'):
        notes.append(f'test set: {test_set["warning"]}')
    for name in order:
        row = comparison['rows'][name]
        notes.extend(f'{row.get("label", name)}: {flag}' for flag in row.get('flags') or [])
        if row.get('n_stress_frames') == 0:
            notes.append(f'{row.get("label", name)}: no test frame has a reference stress (no pressure RMSE)')
    for key, entry in references.items():
        notes.append(
            f"{entry.get('label', key)}: {entry.get('n_frames')} frames of the data set's own AIMD (short, from the "
            "built box): a check of the models' structure, not an equilibrium value"
        )
        notes.extend(f'{entry.get("label", key)}: {flag}' for flag in entry.get('flags') or [])
    active_learning = comparison.get('active_learning')
    if active_learning:
        notes.extend(active_learning.get('flags') or [])
        rendered.append('')
        rendered.extend(format_active_learning(active_learning))
    if notes:
        rendered.append('')
        rendered.extend(f'[{k}] {note}' for k, note in enumerate(notes, start=1))
    return '\n'.join(rendered)


def curve_columns(
    part: str, arrays: t.Mapping[str, np.ndarray], pairs: t.Sequence[str] = ()
) -> dict[str, np.ndarray] | None:
    """The ``curves.msd`` or ``curves.rdf`` arrays of ``ilmlff.properties`` as
    :func:`~aiida_ilmlff.analysis.figures.plot_curves` wants them.

    MSD: the lag axis ``lag_ps`` (or an array named ``time...``; ``..._fs`` is converted to ps) becomes
    ``time_ps``; ``msd_<species>`` arrays become curves named ``<species>``. RDF: ``r_A`` is the axis; ``g_<k>``
    arrays are named by ``pairs`` (``pairs[k]``: the node's ``pairs`` attribute). Errors (``...err``) and running
    coordination numbers (``cn...``) are not curves.
    :returns: the dict, or ``None`` when the axis array is missing.
    """
    names = list(arrays)
    if part == 'msd':
        axis = 'lag_ps' if 'lag_ps' in names else next((n for n in names if n.startswith('time')), None)
        if axis is None:
            return None
        scale = 1e-3 if axis.endswith('fs') else 1.0
        values = {'time_ps': arrays[axis] * scale}
        for name in names:
            if name != axis and not name.endswith(('err', 'error')):
                values[name[len('msd_') :] if name.startswith('msd_') else name] = arrays[name]
        return values
    if 'r_A' not in names:
        return None
    pairs = list(pairs)
    values = {'r_A': arrays['r_A']}
    for name in names:
        if name == 'r_A' or name.startswith('cn'):
            continue
        index = name[2:] if name.startswith('g_') else ''
        label = pairs[int(index)] if index.isdigit() and int(index) < len(pairs) else name
        values[str(label)] = arrays[name]
    return values
