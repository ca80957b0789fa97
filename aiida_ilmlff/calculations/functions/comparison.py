"""Side-by-side comparison of MLFFs (the pipeline's last step): accuracy on one shared test set and properties.

The table follows Park, Ryu & Lee (arXiv:2503.18249, Tables 2-4): for every model, the force and energy RMSE
on a held-out DFT test set, and the density and self-diffusion coefficients of each ion from MD with that
model. The pure functions (:func:`comparison_table`, :func:`format_comparison_table`, :func:`plot_comparison`,
:func:`plot_curves`) work on plain dicts/arrays, so that ``aiida-ilmlff report`` redraws the figures from the
stored nodes without recomputing anything; :func:`compare_models` is the calcfunction that stores them.
"""

from __future__ import annotations

import io
import math
import pathlib
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

__all__ = (
    'ROW_KINDS',
    'compare_models',
    'comparison_table',
    'curve_arrays',
    'format_comparison_table',
    'plot_comparison',
    'plot_curves',
    'plot_property_curves',
)

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


def plot_comparison(comparison: t.Mapping[str, t.Any], path: str | pathlib.Path | io.BytesIO) -> None:
    """Bar charts of the comparison: force RMSE, energy RMSE, density and self-diffusion per ion (log scale).

    :param comparison: as for :func:`format_comparison_table`.
    :param path: PNG file path or a binary buffer.
    """
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    order = list(comparison.get('order', sorted(comparison['rows'])))
    rows = [comparison['rows'][name] for name in order]
    labels = [row.get('label', name) for name, row in zip(order, rows)]
    ions = list(comparison.get('ions', {}))
    x = np.arange(len(rows))

    def values(key):
        return np.array([np.nan if row.get(key) is None else float(row[key]) for row in rows])

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    axes[0].bar(x, values('force_rmse'), color='tab:blue')
    axes[0].set_ylabel('force RMSE (meV/Å)')
    axes[1].bar(x, values('energy_rmse'), color='tab:orange')
    axes[1].set_ylabel('energy RMSE (meV/atom)')
    density, density_error = values('density'), values('density_error')
    axes[2].bar(x, density, yerr=np.nan_to_num(density_error), color='tab:green', capsize=3)
    axes[2].set_ylabel('density (g/cm$^3$)')
    if np.isfinite(density).any():
        low = np.nanmin(density - np.nan_to_num(density_error))
        axes[2].set_ylim(max(0.0, 0.9 * low), None)
    width = 0.8 / max(1, len(ions))
    for k, ion in enumerate(ions):
        entries = [r.get('D', {}).get(ion) or {} for r in rows]
        d = np.array([np.nan if entry.get('value') is None else entry['value'] for entry in entries])
        e = np.array([entry.get('error') or 0.0 for entry in entries])
        axes[3].bar(x - 0.4 + width * (k + 0.5), d, width, yerr=e, capsize=2, label=ion)
    axes[3].set_ylabel('D (m$^2$/s)')
    if ions:
        axes[3].legend(fontsize=8)
    positive = [r['D'][i]['value'] for r in rows for i in ions if (r.get('D', {}).get(i) or {}).get('value')]
    if positive and min(positive) > 0:
        axes[3].set_yscale('log')
    for axis in axes:
        axis.set_xticks(x)
        axis.set_xticklabels(labels, rotation=30, ha='right', fontsize=8)
    fig.suptitle('MLFF comparison: shared DFT test set and MD properties')
    fig.tight_layout()
    fig.savefig(path, format='png', dpi=110)
    plt.close(fig)


def plot_curves(
    curves: t.Mapping[str, t.Mapping[str, t.Mapping[str, np.ndarray]]],
    path: str | pathlib.Path | io.BytesIO,
) -> None:
    """MSD and RDF curves of every model on one figure (two panels).

    :param curves: row label -> ``{'msd': {'time_ps': (T,), <ion>: (T,) Å^2, ...}, 'rdf': {'r_A': (B,),
        <pair>: (B,), ...}}`` (either part may be missing).
    :param path: PNG file path or a binary buffer.
    """
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    fig, (ax_msd, ax_rdf) = plt.subplots(1, 2, figsize=(11, 4))
    styles = ['-', '--', ':', '-.']
    for k, (label, parts) in enumerate(curves.items()):
        style = styles[k % len(styles)]
        msd = parts.get('msd') or {}
        time = msd.get('time_ps')
        for name, values in msd.items():
            if name == 'time_ps' or time is None:
                continue
            mask = np.asarray(time) > 0
            ax_msd.loglog(np.asarray(time)[mask], np.asarray(values)[mask], style, label=f'{label}: {name}')
        rdf = parts.get('rdf') or {}
        r = rdf.get('r_A')
        for name, values in rdf.items():
            if name == 'r_A' or r is None:
                continue
            ax_rdf.plot(r, values, style, label=f'{label}: {name}')
    ax_msd.set_xlabel('time (ps)')
    ax_msd.set_ylabel('MSD (Å$^2$)')
    ax_rdf.set_xlabel('r (Å)')
    ax_rdf.set_ylabel('g(r)')
    for axis in (ax_msd, ax_rdf):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format='png', dpi=110)
    plt.close(fig)


def _png_node(draw: t.Callable[[io.BytesIO], None], filename: str) -> orm.SinglefileData:
    buffer = io.BytesIO()
    draw(buffer)
    buffer.seek(0)
    return orm.SinglefileData(buffer, filename=filename)


@calcfunction
def compare_models(ions: orm.Dict, **inputs: orm.Dict) -> dict[str, orm.Data]:
    """Store the comparison of the pipeline's models (:func:`comparison_table`) and its figure.

    :param ions: ``Dict`` ion name -> formal charge.
    :param inputs: per row ``<row>_info`` (Dict, see :func:`comparison_table`), ``<row>_evaluation`` (the
        ``metrics`` of ``ilmlff.evaluate`` on the shared test set) and optionally ``<row>_properties`` (the
        ``properties`` output of ``ilmlff.properties``).
    :returns: ``comparison`` (Dict) and ``figure`` (PNG SinglefileData, :func:`plot_comparison`).
    :raises ValueError: for an input name without one of the suffixes above, or a row without evaluation.
    """
    rows: dict[str, dict] = {}
    for key, node in inputs.items():
        name, _, part = key.rpartition('_')
        if part not in ('info', 'evaluation', 'properties') or not name:
            raise ValueError(f'compare_models: unexpected input `{key}` (use <row>_info/_evaluation/_properties)')
        rows.setdefault(name, {})[part] = node.get_dict()
    missing = sorted(name for name, values in rows.items() if 'evaluation' not in values)
    if missing:
        raise ValueError(f'compare_models: rows {missing} have no `_evaluation` metrics')
    table = comparison_table(rows, ions.get_dict())
    figure = _png_node(lambda buffer: plot_comparison(table, buffer), 'comparison.png')
    return {'comparison': orm.Dict(table), 'figure': figure}


def curve_arrays(part: str, array: orm.ArrayData) -> dict[str, np.ndarray] | None:
    """The arrays of an ``ilmlff.properties`` ``curves.msd`` or ``curves.rdf`` node as :func:`plot_curves` wants them.

    MSD: the lag axis ``lag_ps`` (or an array named ``time...``; ``..._fs`` is converted to ps) becomes
    ``time_ps``; ``msd_<species>`` arrays become curves named ``<species>``. RDF: ``r_A`` is the axis; ``g_<k>``
    arrays are named by the node's ``pairs`` attribute (``pairs[k]``). Errors (``...err``) and running
    coordination numbers (``cn...``) are not curves.
    :returns: the dict, or ``None`` when the axis array is missing.
    """
    names = array.get_arraynames()
    if part == 'msd':
        axis = 'lag_ps' if 'lag_ps' in names else next((n for n in names if n.startswith('time')), None)
        if axis is None:
            return None
        scale = 1e-3 if axis.endswith('fs') else 1.0
        values = {'time_ps': array.get_array(axis) * scale}
        for name in names:
            if name != axis and not name.endswith(('err', 'error')):
                values[name[len('msd_') :] if name.startswith('msd_') else name] = array.get_array(name)
        return values
    if 'r_A' not in names:
        return None
    pairs = array.base.attributes.get('pairs', None) or []
    values = {'r_A': array.get_array('r_A')}
    for name in names:
        if name == 'r_A' or name.startswith('cn'):
            continue
        index = name[2:] if name.startswith('g_') else ''
        label = pairs[int(index)] if index.isdigit() and int(index) < len(pairs) else name
        values[str(label)] = array.get_array(name)
    return values


def curves_by_row(arrays: t.Mapping[str, orm.ArrayData]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{'<row>_msd': ArrayData, '<row>_rdf': ...}`` -> ``{row: {'msd': {...}, 'rdf': {...}}}``.

    Each array goes through :func:`curve_arrays`; inputs whose axis is missing are skipped.
    """
    curves: dict[str, dict] = {}
    for key, node in arrays.items():
        row, _, part = key.rpartition('_')
        values = curve_arrays(part, node)
        if values is not None:
            curves.setdefault(row, {})[part] = values
    return curves


@calcfunction
def plot_property_curves(**arrays: orm.ArrayData) -> orm.SinglefileData:
    """PNG of the MSD and RDF curves of every row (inputs ``<row>_msd`` / ``<row>_rdf``: the ``curves`` ArrayData of
    ``ilmlff.properties``), drawn by :func:`plot_curves`."""
    return _png_node(lambda buffer: plot_curves(curves_by_row(arrays), buffer), 'curves.png')
