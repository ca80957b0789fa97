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

__all__ = ('ROW_KINDS', 'UNITS', 'comparison_table', 'curve_columns', 'format_comparison_table')

#: How a comparison row's model came about.
ROW_KINDS = {
    'trained': 'committee trained from scratch on the final training set',
    'foundation': 'user-supplied foundation model, run as it is',
    'finetuned': 'user-supplied foundation model fine-tuned on the final training set',
}
#: Units of the numbers in a comparison row.
UNITS = {
    'force_rmse': 'meV/Å',
    'energy_rmse': 'meV/atom',
    'force_rmse_committee_mean': 'meV/Å',
    'density': 'g/cm^3',
    'D': 'm^2/s',
    'coordination': 'neighbours within r_cut (Å)',
}


def _errors(metrics: t.Mapping, key: str | None) -> dict:
    """Errors of model ``key`` (default: the first in natural order) of an ``ilmlff.evaluate`` metrics dict."""
    models = metrics.get('models', {})
    if not models:
        return {}
    key = key if key in models else sorted(models)[0]
    return dict(models[key].get('errors') or {})


def comparison_table(
    rows: t.Mapping[str, t.Mapping[str, t.Any]],
    ions: t.Mapping[str, int],
) -> dict[str, t.Any]:
    """Assemble the comparison from per-model evaluation metrics and properties.

    :param rows: row name -> ``{'info': {...}, 'evaluation': <ilmlff.evaluate metrics dict>, 'properties':
        <ilmlff.properties ``properties`` dict, optional>}``; ``info`` holds ``label`` (shown in the table),
        ``kind`` (one of :data:`ROW_KINDS`), ``architecture``, ``driver`` (the model key that drove the MD and
        whose errors are reported), ``committee_size``, ``model_uuid``.
    :param ions: ion name -> formal charge of the composition (columns of the self-diffusion coefficients).
    :returns: ``{'rows': {name: row}, 'order': [names], 'ions': {...}, 'units': {...}}``; a row has
        ``force_rmse`` [meV/Å] and ``energy_rmse`` [meV/atom] of the driving model on the test set,
        ``force_rmse_committee_mean`` (committee rows), ``n_test_frames``, ``density`` and
        ``density_error`` [g/cm^3], ``D`` {ion: {value, error}} [m^2/s], ``coordination`` {pair: {r_cut_A, cn}}
        and ``converged`` (the density stop rule of the NPT stage). Missing numbers are ``None``.
    :raises ValueError: for an unknown ``kind`` or no rows.
    """
    if not rows:
        raise ValueError('the comparison needs at least one model row')
    table: dict[str, t.Any] = {}
    for name, values in rows.items():
        info = dict(values.get('info') or {})
        kind = info.get('kind', 'trained')
        if kind not in ROW_KINDS:
            raise ValueError(f'row `{name}`: unknown kind {kind!r}; one of {sorted(ROW_KINDS)}')
        metrics = values.get('evaluation') or {}
        errors = _errors(metrics, info.get('driver'))
        committee = metrics.get('committee_mean') if metrics.get('n_models', 1) > 1 else None
        row: dict[str, t.Any] = {
            'label': info.get('label', name),
            'kind': kind,
            'architecture': info.get('architecture'),
            'committee_size': info.get('committee_size', metrics.get('n_models')),
            'model_uuid': info.get('model_uuid'),
            'n_test_frames': metrics.get('n_frames'),
            'force_rmse': errors.get('force_rmse'),
            'energy_rmse': errors.get('energy_rmse'),
            'force_rmse_committee_mean': (committee or {}).get('force_rmse'),
            'density': None,
            'density_error': None,
            'converged': None,
            'D': {},
            'coordination': {},
        }
        properties = values.get('properties') or {}
        density = properties.get('density_g_cm3') or {}
        row['density'] = density.get('mean')
        row['density_error'] = density.get('error')
        row['converged'] = density.get('converged')
        for ion in ions:
            entry = (properties.get('diffusion') or {}).get(ion) or {}
            row['D'][ion] = {'value': entry.get('D_m2_s'), 'error': entry.get('D_err_m2_s')}
        for pair, entry in (properties.get('coordination') or {}).items():
            row['coordination'][pair] = {'r_cut_A': entry.get('r_cut_A'), 'cn': entry.get('cn')}
        table[name] = row
    order = sorted(table, key=lambda n: (list(ROW_KINDS).index(table[n]['kind']), n))
    return {'rows': table, 'order': order, 'ions': dict(ions), 'units': dict(UNITS)}


def _fmt(value: float | None, error: float | None = None, scale: float = 1.0, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    text = f'{value * scale:.{digits}g}'
    if error is not None and math.isfinite(error):
        text += f' ± {error * scale:.2g}'
    return text


def format_comparison_table(comparison: t.Mapping[str, t.Any]) -> str:
    """The comparison as a plain-text table, one line per model.

    Columns: model, kind, force RMSE [meV/Å] and energy RMSE [meV/atom] on the shared test set, density
    [g/cm^3] with its error, and the self-diffusion coefficient of every ion [1e-11 m^2/s] with its error.

    :param comparison: the ``comparison`` dict of :func:`comparison_table` (the pipeline's ``comparison``
        output, ``get_dict()``).
    """
    ions = list(comparison.get('ions', {}))
    header = ['model', 'kind', 'F RMSE (meV/Å)', 'E RMSE (meV/atom)', 'density (g/cm3)']
    header += [f'D {ion} (1e-11 m2/s)' for ion in ions]
    lines = [header]
    for name in comparison.get('order', sorted(comparison['rows'])):
        row = comparison['rows'][name]
        line = [
            row.get('label', name),
            row.get('kind', ''),
            _fmt(row.get('force_rmse'), digits=4),
            _fmt(row.get('energy_rmse'), digits=4),
            _fmt(row.get('density'), row.get('density_error'), digits=4),
        ]
        for ion in ions:
            entry = row.get('D', {}).get(ion) or {}
            line.append(_fmt(entry.get('value'), entry.get('error'), scale=1e11))
        lines.append(line)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    rendered = ['  '.join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    rendered.insert(1, '  '.join('-' * width for width in widths))
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
