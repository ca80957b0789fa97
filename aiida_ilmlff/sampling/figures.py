"""Figure of a data set's label distributions per origin (matplotlib's Agg canvas, no pyplot state). No AiiDA.

:func:`plot_label_distributions` draws two panels: the energy per atom relative to the data set's lowest
value [meV/atom] and the largest atomic force per frame [eV/Å], one step histogram per origin (EQ, nEQ, AL,
import) on shared bins, with the mean marked. The command ``aiida-ilmlff frames plot PK`` calls it.
"""

from __future__ import annotations

import os
import pathlib
import typing as t

import numpy as np

__all__ = ('ORIGIN_COLOURS', 'plot_label_distributions')

#: Colour per origin (other origins cycle through matplotlib's defaults).
ORIGIN_COLOURS = {'EQ': '#1f77b4', 'nEQ': '#d62728', 'AL': '#2ca02c', 'import': '#7f7f7f'}


def plot_label_distributions(
    origins: t.Sequence[str],
    energy_per_atom: t.Sequence[float],
    max_force: t.Sequence[float],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    bins: int = 30,
    dpi: int = 150,
) -> pathlib.Path:
    """Write a PNG of the energy-per-atom and max-force distributions per origin; return its path.

    :param origins: ``(N,)`` origin per frame. :param energy_per_atom: ``(N,)`` eV/atom (``nan``: unlabelled).
    :param max_force: ``(N,)`` eV/Å. :param path: output file (``.png``; parent folders are created).
    :param title: figure title. :param bins: histogram bins per panel. :param dpi: resolution.
    :raises ValueError: if the arrays differ in length or no frame is labelled.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    origins = np.asarray(origins, dtype=str)
    energy = np.asarray(energy_per_atom, dtype=np.float64)
    force = np.asarray(max_force, dtype=np.float64)
    if not len(origins) == len(energy) == len(force):
        raise ValueError(f'lengths differ: {len(origins)} origins, {len(energy)} energies, {len(force)} forces')
    labelled = np.isfinite(energy) & np.isfinite(force)
    if not labelled.any():
        raise ValueError('no labelled frame (energy and forces) to plot')
    relative = (energy - np.nanmin(energy[labelled])) * 1000.0
    panels = (
        (relative, 'energy per atom - min [meV/atom]', 'energy per atom'),
        (force, 'largest atomic force [eV/\u00c5]', 'max force'),
    )
    figure = Figure(figsize=(10, 4), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for axis, (values, xlabel, name) in zip(axes, panels):
        finite = values[labelled]
        edges = np.histogram_bin_edges(finite, bins=bins)
        for origin in dict.fromkeys(origins[labelled].tolist()):
            mask = labelled & (origins == origin)
            colour = ORIGIN_COLOURS.get(origin)
            axis.hist(
                values[mask], bins=edges, histtype='step', linewidth=1.8, color=colour, label=f'{origin} ({mask.sum()})'
            )
            axis.axvline(values[mask].mean(), color=colour, linestyle='--', linewidth=1.0)
        axis.set_xlabel(xlabel)
        axis.set_ylabel('frames')
        axis.set_title(name)
        axis.legend(title='origin (frames)')
    if title:
        figure.suptitle(title)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
