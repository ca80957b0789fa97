"""Calcfunctions of the pipeline's comparison of MLFFs: store the table and figures of
:mod:`aiida_ilmlff.analysis.comparison` and :mod:`aiida_ilmlff.analysis.figures` (node <-> plain data only)."""

from __future__ import annotations

import io
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.analysis.comparison import comparison_table, curve_columns
from aiida_ilmlff.analysis.figures import plot_comparison, plot_curves

__all__ = ('compare_models', 'curve_arrays', 'curves_by_row', 'plot_property_curves')


def _png_node(draw: t.Callable[[io.BytesIO], None], filename: str) -> orm.SinglefileData:
    buffer = io.BytesIO()
    draw(buffer)
    buffer.seek(0)
    return orm.SinglefileData(buffer, filename=filename)


@calcfunction
def compare_models(ions: orm.Dict, **inputs: orm.Dict) -> dict[str, orm.Data]:
    """Store the comparison of the pipeline's models and its figure.

    The table is :func:`~aiida_ilmlff.analysis.comparison.comparison_table`, the figure
    :func:`~aiida_ilmlff.analysis.figures.plot_comparison`.

    :param ions: ``Dict`` ion name -> formal charge.
    :param inputs: per row ``<row>_info`` (Dict, see ``comparison_table``), ``<row>_evaluation`` (the
        ``metrics`` of ``ilmlff.evaluate`` on the shared test set) and optionally ``<row>_properties`` (the
        ``properties`` output of ``ilmlff.properties``).
    :returns: ``comparison`` (Dict) and ``figure`` (PNG SinglefileData).
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
    """:func:`~aiida_ilmlff.analysis.comparison.curve_columns` of an ``ilmlff.properties`` ``curves.msd`` or
    ``curves.rdf`` node (its arrays, and its ``pairs`` attribute)."""
    arrays = {name: array.get_array(name) for name in array.get_arraynames()}
    return curve_columns(part, arrays, array.base.attributes.get('pairs', None) or [])


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
    ``ilmlff.properties``), drawn by :func:`~aiida_ilmlff.analysis.figures.plot_curves`."""
    return _png_node(lambda buffer: plot_curves(curves_by_row(arrays), buffer), 'curves.png')
