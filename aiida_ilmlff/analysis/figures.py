"""Figures of the analyses (matplotlib, Agg canvas; pure: numbers in, figure or PNG out, no AiiDA).

The calcfunctions store them as PNG ``SinglefileData`` (:func:`png_buffer`); ``aiida-ilmlff report`` redraws the
comparison figures from the stored numbers. NPT density (:func:`plot_density`), MSD (:func:`plot_msd`), RDF
(:func:`plot_rdf`), committee calibration (:func:`calibration_png`), the model comparison
(:func:`plot_comparison`, :func:`plot_curves`). Data-set figures are :mod:`aiida_ilmlff.sampling.figures`.
"""

from __future__ import annotations

import io
import pathlib
import typing as t

import numpy as np

from aiida_ilmlff.analysis.comparison import ion_order

__all__ = (
    'calibration_png',
    'new_figure',
    'plot_comparison',
    'plot_curves',
    'plot_density',
    'plot_msd',
    'plot_rdf',
    'plot_study',
    'png_buffer',
)


def new_figure(figsize=(6.4, 4.4)):
    """A matplotlib ``Figure`` on an Agg canvas (constrained layout; no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def png_buffer(figure, dpi: int = 120) -> io.BytesIO:
    """The figure as PNG in a buffer positioned at its start."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=dpi)
    buffer.seek(0)
    return buffer


def plot_density(time_fs, density_g_cm3, stages: t.Sequence[t.Mapping], converged: bool):
    """Figure of the NPT density trace: stage boundaries, equilibrated parts and stage means +- error."""
    figure = new_figure((7.0, 4.2))
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


def plot_msd(
    lag_ps,
    curves: t.Mapping[str, np.ndarray],
    windows: t.Mapping[str, tuple[float, float]],
    regimes: t.Mapping[str, str] | None = None,
):
    """Log-log MSD per species: the fit window of a diffusive species shaded and drawn thick; a species whose MSD is
    not diffusive (``regimes``: ``'sub-diffusive'`` or ``'ballistic'``) drawn dashed, labelled with its regime and
    without a fit, since it has no diffusion coefficient."""
    figure = new_figure()
    axis = figure.subplots()
    lag_ps = np.asarray(lag_ps)
    regimes = regimes or {}
    for i, (name, values) in enumerate(curves.items()):
        colour = f'C{i}'
        keep = lag_ps > 0
        regime = regimes.get(name, 'diffusive')
        if regime != 'diffusive':
            axis.loglog(lag_ps[keep], values[keep], color=colour, linestyle='--', label=f'{name}: {regime}, no D')
            continue
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
    axis.set_title('self-diffusion (shaded: fit windows; dashed: not diffusive, no D)', fontsize=10)
    axis.legend(fontsize=8)
    return figure


def plot_rdf(r, curves: t.Mapping[str, tuple[np.ndarray, np.ndarray, float]], fallback: t.Collection[str] = ()):
    """g(r) of each pair (left axis) with its running coordination number (right axis, dashed) and cut-off; pairs in
    ``fallback`` (no first minimum within r_max: the cut-off is r_max) are labelled so."""
    figure = new_figure((7.0, 4.4))
    axis = figure.subplots()
    twin = axis.twinx()
    for i, (name, (g, cn, r_cut)) in enumerate(curves.items()):
        colour = f'C{i}'
        label = f'{name} (cut-off fell back to r_max)' if name in fallback else name
        axis.plot(r, g, color=colour, label=label)
        twin.plot(r, cn, color=colour, linestyle='--', linewidth=1.0)
        axis.axvline(r_cut, color=colour, linestyle=':', linewidth=0.8)
    axis.axhline(1.0, color='0.7', linewidth=0.6)
    axis.set_xlabel('r [Å]')
    axis.set_ylabel('g(r)')
    twin.set_ylabel('running coordination number (dashed)')
    axis.set_title('RDF and coordination (dotted: cut-offs)', fontsize=10)
    axis.legend(fontsize=8, loc='upper left')
    return figure


def plot_rdf_overlay(r, g: t.Mapping[str, np.ndarray], g_reference: t.Mapping[str, np.ndarray], title: str = ''):
    """g(r) of a model's MD (solid) over its reference run's (dashed), one colour per pair: the picture of a
    validation against the reference (:func:`aiida_ilmlff.analysis.validation.structure_agreement`)."""
    figure = new_figure((7.0, 4.4))
    axis = figure.subplots()
    for i, name in enumerate(g):
        axis.plot(r, g[name], color=f'C{i}', label=f'{name} model')
        if name in g_reference:
            axis.plot(r, g_reference[name], color=f'C{i}', linestyle='--', linewidth=1.0, label=f'{name} reference')
    axis.axhline(1.0, color='0.7', linewidth=0.6)
    axis.set_xlabel('r [Å]')
    axis.set_ylabel('g(r)')
    axis.set_title(title or 'model (solid) against reference (dashed)', fontsize=10)
    axis.legend(fontsize=7, loc='upper right', ncol=2)
    return figure


def calibration_png(deviation: np.ndarray, error: np.ndarray, f_lo: float, f_hi: float, title: str) -> bytes:
    """PNG bytes: committee max force deviation against the max force error [eV/Å], with the trust levels marked."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    axes.scatter(deviation, error, s=12, alpha=0.8)
    high = float(max(np.nanmax(deviation, initial=f_hi), np.nanmax(error, initial=f_hi))) * 1.05
    axes.plot([0, high], [0, high], color='k', lw=0.8, label='error = deviation')
    for level, style in ((f_lo, ':'), (f_hi, '--')):
        axes.axvline(level, color='grey', ls=style, lw=0.8)
    axes.set_xlabel('committee max force deviation [eV/Å]')
    axes.set_ylabel('max force error vs reference [eV/Å]')
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8, loc='upper left')
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()


#: Style of the notes written in place of a bar.
_NOTE = {'ha': 'center', 'va': 'bottom', 'fontsize': 7, 'rotation': 90}


def _failed(row: t.Mapping[str, t.Any]) -> str | None:
    """'molecules broke' / 'MD unstable' for a row whose MD gave no properties, else ``None``."""
    return 'molecules broke' if row.get('broken') else 'MD unstable' if row.get('unstable') else None


def plot_comparison(comparison: t.Mapping[str, t.Any], path: str | pathlib.Path | io.BytesIO) -> None:
    """Bar charts of the comparison: force RMSE, energy RMSE, density and self-diffusion per ion (log scale).

    Non-results are not drawn as numbers: a density whose stop rule did not hold (row ``converged`` false) is
    hatched and marked 'not converged'; an ion without a D (``D[ion]['value']`` None) gets no bar, and its
    ``regime`` (``'sub-diffusive'``, ``'ballistic'``) is written in its place when the row gives one; a model whose
    molecules broke or whose MD was unstable has no density or D bar, and says so in their place.

    :param comparison: as for :func:`format_comparison_table`.
    :param path: PNG file path or a binary buffer.
    """
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    order = list(comparison.get('order', sorted(comparison['rows'])))
    rows = [comparison['rows'][name] for name in order]
    labels = [row.get('label', name) for name, row in zip(order, rows)]
    ions = ion_order(comparison.get('ions', {}))
    x = np.arange(len(rows))

    def values(key):
        return np.array([np.nan if row.get(key) is None else float(row[key]) for row in rows])

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    axes[0].bar(x, values('force_rmse'), color='tab:blue')
    axes[0].set_ylabel('force RMSE (meV/Å)')
    axes[1].bar(x, values('energy_rmse'), color='tab:orange')
    axes[1].set_ylabel('energy RMSE (meV/atom)')
    density, density_error = values('density'), values('density_error')
    # A density whose stop rule did not hold is not a result: the comparison keeps it apart (`density_unconverged`);
    # it is drawn hatched and labelled, never as a plain bar. A model whose molecules broke or whose MD was unstable
    # has no bar.
    unconverged = values('density_unconverged')
    density = np.where(np.isfinite(density), density, unconverged)
    bars = axes[2].bar(x, density, yerr=np.nan_to_num(density_error), color='tab:green', capsize=3)
    for k, (bar, row) in enumerate(zip(bars, rows)):
        if row.get('converged') is False and np.isfinite(density[k]):
            bar.set_hatch('//')
            bar.set_alpha(0.5)
            axes[2].annotate('not converged', (x[k], density[k]), ha='center', va='bottom', fontsize=7, rotation=90)
        if _failed(row):
            axes[2].annotate(_failed(row), (x[k], 0.02), xycoords=('data', 'axes fraction'), **_NOTE)
    axes[2].set_ylabel('density (g/cm$^3$)')
    if np.isfinite(density).any():
        low = np.nanmin(density - np.nan_to_num(density_error))
        axes[2].set_ylim(max(0.0, 0.9 * low), None)
    else:  # no density is a result: no scale to show
        axes[2].set_yticks([])
    width = 0.8 / max(1, len(ions))
    for j, row in enumerate(rows):
        if _failed(row):
            axes[3].annotate(_failed(row), (x[j], 0.02), xycoords=('data', 'axes fraction'), **_NOTE)
    for k, ion in enumerate(ions):
        entries = [r.get('D', {}).get(ion) or {} for r in rows]
        d = np.array([np.nan if entry.get('value') is None else entry['value'] for entry in entries])
        e = np.array([entry.get('error') or 0.0 for entry in entries])
        axes[3].bar(x - 0.4 + width * (k + 0.5), d, width, yerr=e, capsize=2, label=ion)
        for j, entry in enumerate(entries):
            regime = entry.get('regime')
            if entry.get('value') is None and regime not in (None, 'diffusive') and not _failed(rows[j]):
                axes[3].annotate(
                    f'{ion}: {regime}',
                    (x[j] - 0.4 + width * (k + 0.5), 0.02),
                    xycoords=('data', 'axes fraction'),
                    **_NOTE,
                )
    axes[3].set_ylabel('D (m$^2$/s)')
    positive = [r['D'][i]['value'] for r in rows for i in ions if (r.get('D', {}).get(i) or {}).get('value')]
    if ions and positive:  # a legend of bars none of which is drawn would cover the flags
        axes[3].legend(fontsize=8)
    if positive and min(positive) > 0:
        axes[3].set_yscale('log')
    elif not positive:  # no D is a result: no scale to show
        axes[3].set_yticks([])
    for axis in axes:
        axis.set_xlim(-0.6, len(rows) - 0.4)
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


def plot_study(rows: t.Sequence[t.Mapping[str, t.Any]]):
    """The PYR14BF4 study's figure (``examples/study_pyr14bf4.py``): per row (variant and model), the relative
    force RMSE on the shared test set (left) and how long its NVT stayed intact at 450 K and 550 K [ps] (right;
    hatched: a guard tripped). ``rows``: dicts with ``variant``, ``model``, ``force_rmse_relative``, ``ps_450K``,
    ``intact_450K``, ``ps_550K``, ``intact_550K`` (``None`` where not measured). Returns the Figure."""
    figure = new_figure(figsize=(10.0, 0.45 * len(rows) + 1.6))
    left, right = figure.subplots(1, 2, sharey=True)
    labels = [f'{row["variant"]} {row["model"]}' for row in rows]
    y = np.arange(len(rows))
    relative = [100.0 * (row.get('force_rmse_relative') or np.nan) for row in rows]
    left.barh(y, relative, color=['tab:blue' if row['model'] == 'MACE' else 'tab:orange' for row in rows])
    left.set_yticks(y, labels)
    left.invert_yaxis()
    left.set_xlabel('test-set force RMSE / RMS reference force [%]')
    for offset, temperature, colour in ((-0.2, '450K', 'tab:green'), (0.2, '550K', 'tab:red')):
        times = [row.get(f'ps_{temperature}') or 0.0 for row in rows]
        broken = [row.get(f'intact_{temperature}') is False for row in rows]
        bars = right.barh(y + offset, times, height=0.4, color=colour, label=temperature.replace('K', ' K'))
        for bar, was_broken in zip(bars, broken):
            if was_broken:
                bar.set_hatch('//')
    right.set_xlabel('NVT intact [ps] (hatched: a guard tripped)')
    right.legend(loc='lower right')
    return figure
