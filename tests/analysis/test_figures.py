"""Figures flag non-results: no fit for a non-diffusive MSD, no D bar for it, a density that did not converge."""

from __future__ import annotations

import io

import numpy as np

from aiida_ilmlff.analysis.figures import plot_comparison, plot_msd, plot_rdf

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def test_msd_figure_marks_a_non_diffusive_species_without_a_fit():
    lag = np.arange(100) * 0.01
    curves = {'PYR14': 0.5 * lag**2, 'BF4': 6e-1 * lag}
    figure = plot_msd(lag, curves, {'PYR14': (0.1, 0.2), 'BF4': (0.2, 0.5)}, {'PYR14': 'ballistic', 'BF4': 'diffusive'})
    axis = figure.axes[0]
    labels = [line.get_label() for line in axis.get_lines()]
    assert 'PYR14: ballistic, no D' in labels and 'BF4' in labels
    assert len(axis.patches) == 1  # one shaded fit window: BF4's only
    dashed = [line for line in axis.get_lines() if line.get_label() == 'PYR14: ballistic, no D']
    assert dashed[0].get_linestyle() == '--'


def test_rdf_figure_names_a_cutoff_that_fell_back_to_r_max():
    r = np.linspace(0.1, 6.0, 60)
    g = np.ones_like(r)
    figure = plot_rdf(r, {'A-B': (g, r, 6.0), 'A-A': (g, r, 3.0)}, fallback=['A-B'])
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ['A-B (cut-off fell back to r_max)', 'A-A']


def test_comparison_figure_draws_no_d_for_a_sub_diffusive_ion(monkeypatch):
    from matplotlib import pyplot as plt

    captured = {}
    monkeypatch.setattr(plt, 'close', lambda figure: captured.setdefault('figure', figure))
    comparison = {
        'order': ['mace', 'deepmd'],
        'ions': {'PYR14': 1},
        'rows': {
            'mace': {
                'force_rmse': 50.0,
                'energy_rmse': 1.0,
                'density': 1.2,
                'density_error': 0.01,
                'converged': True,
                'D': {'PYR14': {'value': 1e-10, 'error': 1e-11, 'regime': 'diffusive'}},
            },
            'deepmd': {
                'force_rmse': 60.0,
                'energy_rmse': 2.0,
                'density': 1.1,
                'density_error': 0.02,
                'converged': False,
                'D': {'PYR14': {'value': None, 'error': None, 'regime': 'sub-diffusive'}},
            },
        },
    }
    buffer = io.BytesIO()
    plot_comparison(comparison, buffer)
    assert buffer.getvalue()[:8] == PNG_MAGIC
    axes = captured['figure'].axes
    texts = [text.get_text() for text in axes[3].texts]
    assert texts == ['PYR14: sub-diffusive']
    heights = [patch.get_height() for patch in axes[3].patches]
    assert heights[0] == 1e-10 and np.isnan(heights[1])  # no bar for the sub-diffusive row
    assert [text.get_text() for text in axes[2].texts] == ['not converged']
    assert axes[2].patches[1].get_hatch() == '//' and not axes[2].patches[0].get_hatch()


def test_study_figure_hatches_a_run_that_tripped_a_guard():
    """The study's figure: one bar per row and temperature; a run whose guard tripped is hatched, a row without a
    measurement draws an empty bar, not a number."""
    from aiida_ilmlff.analysis.figures import plot_study, png_buffer

    rows = [
        {
            'variant': '(a) EQ',
            'model': 'MACE',
            'force_rmse_relative': 0.4,
            'ps_450K': 20.0,
            'intact_450K': True,
            'ps_550K': 3.5,
            'intact_550K': False,
        },
        {
            'variant': '(a) EQ',
            'model': 'DeePMD',
            'force_rmse_relative': None,
            'ps_450K': None,
            'intact_450K': None,
            'ps_550K': None,
            'intact_550K': None,
        },
    ]
    figure = plot_study(rows)
    left, right = figure.axes
    assert [tick.get_text() for tick in left.get_yticklabels()] == ['(a) EQ MACE', '(a) EQ DeePMD']
    hatches = [patch.get_hatch() for patch in right.patches]
    widths = [patch.get_width() for patch in right.patches]
    assert hatches == [None, None, '//', None] and widths == [20.0, 0.0, 3.5, 0.0]
    assert png_buffer(figure).getvalue()[:8] == b'\x89PNG\r\n\x1a\n'
