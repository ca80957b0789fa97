"""The comparison table of the pipeline: assembly from metrics/properties dicts, text table, figures."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis.comparison import comparison_table, format_comparison_table
from aiida_ilmlff.analysis.figures import plot_comparison, plot_curves
from aiida_ilmlff.calculations.functions.comparison import curve_arrays

PNG = b'\x89PNG\r\n\x1a\n'


def _metrics(force_rmse: float, energy_rmse: float, n_models: int = 2) -> dict:
    models = {
        f'model_{k}': {'errors': {'force_rmse': force_rmse + k, 'energy_rmse': energy_rmse + k}}
        for k in range(n_models)
    }
    return {
        'n_frames': 5,
        'n_models': n_models,
        'models': models,
        'committee_mean': {'force_rmse': force_rmse - 1.0, 'energy_rmse': energy_rmse - 1.0},
    }


def _properties(density: float, d_cation: float, d_anion: float) -> dict:
    return {
        'density_g_cm3': {'mean': density, 'error': 0.01, 'n_stages': 2, 'converged': True},
        'diffusion': {
            'PYR14': {'D_m2_s': d_cation, 'D_err_m2_s': d_cation / 10, 'fit_window_ps': [1.0, 5.0]},
            'BF4': {'D_m2_s': d_anion, 'D_err_m2_s': d_anion / 10, 'fit_window_ps': [1.0, 5.0]},
        },
        'coordination': {'N-B': {'r_cut_A': 6.5, 'cn': 4.1}},
    }


@pytest.fixture
def table():
    rows = {
        'mace': {
            'info': {'label': 'MACE', 'kind': 'trained', 'architecture': 'mace', 'driver': 'model_0'},
            'evaluation': _metrics(40.0, 2.0),
            'properties': _properties(1.17, 2.0e-11, 3.0e-11),
        },
        'deepmd': {
            'info': {'label': 'DeePMD', 'kind': 'trained', 'architecture': 'deepmd', 'driver': 'model_1'},
            'evaluation': _metrics(60.0, 3.0),
        },
        'foundation_mp0': {
            'info': {'label': 'mp0 (as is)', 'kind': 'foundation', 'architecture': 'mace'},
            'evaluation': _metrics(200.0, 20.0, n_models=1),
            'properties': _properties(1.05, 9.0e-11, 8.0e-11),
        },
    }
    return comparison_table(rows, {'PYR14': 1, 'BF4': -1})


def test_comparison_rows(table):
    """Errors are the driving model's; committee-mean errors only for committees; missing properties are None."""
    mace, deepmd, foundation = (table['rows'][k] for k in ('mace', 'deepmd', 'foundation_mp0'))
    assert mace['force_rmse'] == 40.0 and mace['energy_rmse'] == 2.0
    assert deepmd['force_rmse'] == 61.0  # model_1 drove the MD
    assert mace['force_rmse_committee_mean'] == 39.0
    assert foundation['force_rmse_committee_mean'] is None
    assert mace['density'] == 1.17 and mace['converged'] is True
    assert mace['D']['PYR14'] == {'value': 2.0e-11, 'error': 2.0e-12}
    assert deepmd['density'] is None and deepmd['D']['BF4'] == {'value': None, 'error': None}
    assert mace['coordination']['N-B']['cn'] == 4.1
    assert table['order'] == ['deepmd', 'mace', 'foundation_mp0']  # trained rows first


def test_text_table(table):
    """One header, one rule and one line per row; D in 1e-11 m2/s with errors; missing values as '-'."""
    text = format_comparison_table(table)
    lines = text.splitlines()
    assert len(lines) == 2 + 3
    assert 'D PYR14 (1e-11 m2/s)' in lines[0] and 'D BF4 (1e-11 m2/s)' in lines[0]
    mace = next(line for line in lines if line.startswith('MACE'))
    assert '1.17 ± 0.01' in mace and '2 ± 0.2' in mace and '3 ± 0.3' in mace
    deepmd = next(line for line in lines if line.startswith('DeePMD'))
    assert deepmd.split()[-1] == '-'


def test_bad_rows():
    """An unknown kind and an empty table are refused."""
    with pytest.raises(ValueError, match='unknown kind'):
        comparison_table({'x': {'info': {'kind': 'magic'}, 'evaluation': {}}}, {})
    with pytest.raises(ValueError, match='at least one'):
        comparison_table({}, {})


def test_figures(tmp_path, table):
    """Both figures are PNG files."""
    plot_comparison(table, tmp_path / 'comparison.png')
    time = np.linspace(0.0, 10.0, 50)
    r = np.linspace(0.0, 8.0, 80)
    plot_curves(
        {'MACE': {'msd': {'time_ps': time, 'PYR14': 2 * time}, 'rdf': {'r_A': r, 'N-B': 1 + 0 * r}}},
        tmp_path / 'curves.png',
    )
    for name in ('comparison.png', 'curves.png'):
        assert (tmp_path / name).read_bytes().startswith(PNG)


def test_curve_arrays(aiida_profile):
    """The curves of ilmlff.properties: lag axis and msd_<species>; RDFs g_<k> named by the `pairs` attribute."""
    from aiida import orm

    msd = orm.ArrayData()
    msd.set_array('lag_ps', np.array([0.0, 1.0]))
    msd.set_array('msd_PYR14', np.array([0.0, 1.0]))
    msd.set_array('msd_PYR14_err', np.array([0.0, 0.1]))
    values = curve_arrays('msd', msd)
    assert set(values) == {'time_ps', 'PYR14'} and values['time_ps'][1] == 1.0
    legacy = orm.ArrayData()
    legacy.set_array('time_fs', np.array([0.0, 1000.0]))
    legacy.set_array('BF4', np.array([0.0, 1.0]))
    assert curve_arrays('msd', legacy)['time_ps'][1] == 1.0
    rdf = orm.ArrayData()
    rdf.set_array('r_A', np.array([1.0, 2.0]))
    rdf.set_array('g_0', np.array([0.0, 1.0]))
    rdf.set_array('cn_0', np.array([0.0, 1.0]))
    rdf.base.attributes.set('pairs', ['PYR14-BF4'])
    assert set(curve_arrays('rdf', rdf)) == {'r_A', 'PYR14-BF4'}
    assert curve_arrays('msd', rdf) is None
