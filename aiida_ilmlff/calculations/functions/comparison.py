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

__all__ = ('compare_models', 'curve_arrays', 'curves_by_row', 'plot_property_curves', 'test_set_summary')


def _png_node(draw: t.Callable[[io.BytesIO], None], filename: str) -> orm.SinglefileData:
    buffer = io.BytesIO()
    draw(buffer)
    buffer.seek(0)
    return orm.SinglefileData(buffer, filename=filename)


def test_set_summary(split: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """What the comparison says about the test set, from the ``split`` summary of
    :func:`~aiida_ilmlff.sampling.split.block_test_split` (the pipeline's ``test_split`` output): ``leak_free``,
    ``gap_fs``, ``n_blocks`` (test blocks), ``n_frames`` (test frames), ``min_gap_fs``."""
    return {
        'leak_free': bool(split.get('leak_free')),
        'gap_fs': split.get('test_gap_fs'),
        'n_blocks': split.get('n_test_blocks'),
        'n_frames': split.get('n_test'),
        'min_gap_fs': split.get('min_gap_fs'),
    }


@calcfunction
def compare_models(
    ions: orm.Dict,
    test_split: orm.Dict | None = None,
    references: orm.Dict | None = None,
    active_learning: orm.Dict | None = None,
    **inputs: orm.Dict,
) -> dict[str, orm.Data]:
    """Store the comparison of the pipeline's models and its figure.

    The table is :func:`~aiida_ilmlff.analysis.comparison.comparison_table`, the figure
    :func:`~aiida_ilmlff.analysis.figures.plot_comparison`.

    :param ions: ``Dict`` ion name -> formal charge.
    :param test_split: how the shared test set was held out (the ``split`` output of ``hold_out_test_set``); without
        it the table warns that the test errors may be optimistic.
    :param references: the reference AIMD's Li+ solvation and TFSI conformers by composition key
        (``{key: {n_frames, li_clusters, tfsi_conformers}}``), shown beside the models'.
    :param active_learning: the ``iterations`` output of the active learning that grew the training set: its
        iterations and flags (nothing added, stopped early) join the table.
    :param inputs: per row ``<row>_info`` (Dict, see ``comparison_table``), ``<row>_evaluation`` (the
        ``metrics`` of ``ilmlff.evaluate`` on the shared test set) and optionally ``<row>_properties`` (the
        ``properties`` output of ``ilmlff.properties``) and ``<row>_validation`` (the ``validation`` of
        ``ilmlff.validate``).
    :returns: ``comparison`` (Dict) and ``figure`` (PNG SinglefileData).
    :raises ValueError: for an input name without one of the suffixes above, or a row without evaluation.
    """
    rows: dict[str, dict] = {}
    for key, node in inputs.items():
        name, _, part = key.rpartition('_')
        if part not in ('info', 'evaluation', 'properties', 'validation') or not name:
            raise ValueError(
                f'compare_models: unexpected input `{key}` (use <row>_info/_evaluation/_properties/_validation)'
            )
        rows.setdefault(name, {})[part] = node.get_dict()
    missing = sorted(name for name, values in rows.items() if 'evaluation' not in values)
    if missing:
        raise ValueError(f'compare_models: rows {missing} have no `_evaluation` metrics')
    test_set = test_set_summary(test_split.get_dict()) if test_split is not None else None
    table = comparison_table(
        rows,
        ions.get_dict(),
        test_set,
        references.get_dict() if references is not None else None,
        active_learning.get_dict() if active_learning is not None else None,
    )
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
