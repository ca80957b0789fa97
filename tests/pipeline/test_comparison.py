"""The comparison table of the pipeline: assembly from metrics/properties dicts, text table, figures."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_ilmlff.analysis.comparison import comparison_table, format_comparison_table, ion_order
from aiida_ilmlff.analysis.figures import plot_comparison, plot_curves
from aiida_ilmlff.calculations.functions.comparison import curve_arrays

PNG = b'\x89PNG\r\n\x1a\n'


def _metrics(force_rmse: float, energy_rmse: float, n_models: int = 2, aligned: float | None = None) -> dict:
    def errors(force, energy):
        return {
            'force_rmse': force,
            'energy_rmse': energy,
            'force_rmse_relative': force / 1000.0,
            'energy_rmse_aligned_meV_per_atom': aligned,
            'energy_alignment': 'fitted' if aligned is not None else 'not determined: 1 frames for 2 counts',
            'pressure_rmse_kbar': 5.0,
            'n_stress_frames': 5,
            'per_origin': {
                'EQ': {'n_frames': 3, 'force_rmse': force - 5, 'force_rmse_relative': 0.1},
                'nEQ': {'n_frames': 2, 'force_rmse': force + 5, 'force_rmse_relative': 0.2},
            },
        }

    models = {f'model_{k}': {'errors': errors(force_rmse + k, energy_rmse + k)} for k in range(n_models)}
    return {
        'n_frames': 5,
        'n_models': n_models,
        'models': models,
        'committee_mean': {'force_rmse': force_rmse - 1.0, 'energy_rmse': energy_rmse - 1.0},
    }


def _diffusive(value: float) -> dict:
    return {'regime': 'diffusive', 'D_m2_s': value, 'D_err_m2_s': value / 10, 'D_err_method': 'blocks'}


def _properties(density: float, d_cation: float, d_anion: float, converged: bool = True) -> dict:
    return {
        'density_g_cm3': {'mean': density, 'error': 0.01, 'n_stages': 2, 'converged': converged},
        'diffusion': {'PYR14': _diffusive(d_cation), 'BF4': _diffusive(d_anion)},
        'coordination': {'N-B': {'r_cut_A': 6.5, 'cn': 4.1, 'cutoff_fallback': False}},
    }


TEST_SET = {'leak_free': True, 'gap_fs': 100.0, 'n_blocks': 3, 'n_frames': 5}


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
            'evaluation': _metrics(200.0, 2000.0, n_models=1, aligned=20.0),
            'properties': _properties(1.05, 9.0e-11, 8.0e-11),
        },
    }
    return comparison_table(rows, {'PYR14': 1, 'BF4': -1}, TEST_SET)


def test_comparison_rows(table):
    """Errors are the driving model's; committee-mean errors only for committees; missing properties are None."""
    mace, deepmd, foundation = (table['rows'][k] for k in ('mace', 'deepmd', 'foundation_mp0'))
    assert mace['force_rmse'] == 40.0 and mace['energy_rmse'] == 2.0
    assert mace['force_rmse_relative'] == 0.04 and mace['pressure_rmse'] == 5.0
    assert mace['per_origin']['nEQ'] == {'n_frames': 2, 'force_rmse': 45.0, 'force_rmse_relative': 0.2}
    assert deepmd['force_rmse'] == 61.0  # model_1 drove the MD
    assert mace['force_rmse_committee_mean'] == 39.0
    assert foundation['force_rmse_committee_mean'] is None
    assert foundation['energy_rmse'] == 20.0 and foundation['energy_rmse_raw'] == 2000.0  # aligned for foundations
    assert mace['density'] == 1.17 and mace['converged'] is True
    assert mace['D']['PYR14']['value'] == 2.0e-11 and mace['D']['PYR14']['error'] == 2.0e-12
    assert deepmd['density'] is None and deepmd['D']['BF4']['value'] is None
    assert mace['coordination']['N-B']['cn'] == 4.1
    assert mace['flags'] == [] and table['test_set']['leak_free'] is True
    assert table['order'] == ['deepmd', 'mace', 'foundation_mp0']  # trained rows first


def test_text_table(table):
    """One header, one rule and one line per row; D in 1e-11 m2/s with errors; missing values as '-'."""
    text = format_comparison_table(table)
    lines = text.splitlines()
    assert 'D PYR14 (1e-11 m2/s)' in lines[0] and 'D BF4 (1e-11 m2/s)' in lines[0] and 'P RMSE (kbar)' in lines[0]
    assert len([line for line in lines[2:] if line.startswith(('MACE', 'DeePMD', 'mp0'))]) == 3
    mace = next(line for line in lines if line.startswith('MACE'))
    assert '1.17 ± 0.01' in mace and '2 ± 0.2' in mace and '3 ± 0.3' in mace and '4 %' in mace
    deepmd = next(line for line in lines if line.startswith('DeePMD'))
    assert deepmd.split()[-1] == '-'
    assert any(line.startswith('  MACE: EQ 35') for line in lines)
    assert any('whole blocks' in line for line in lines)


def test_ion_columns_do_not_depend_on_the_order_of_the_ions():
    """Cations first, then anions, by name: a ``Dict`` on PostgreSQL and a work chain's checkpoint re-order keys, and
    the same pipeline printed its D columns in another order there (found by the fault tests, tests/test_faults.py).
    """
    rows = {'m': {'info': {'label': 'M', 'kind': 'trained'}, 'evaluation': _metrics(40.0, 2.0)}}
    rows['m']['properties'] = _properties(1.17, 2.0e-11, 3.0e-11)
    first = comparison_table(rows, {'PYR14': 1, 'BF4': -1}, TEST_SET)
    second = comparison_table(rows, {'BF4': -1, 'PYR14': 1}, TEST_SET)
    assert first == second and list(first['ions']) == list(first['rows']['m']['D']) == ['PYR14', 'BF4']
    reordered = {**first, 'ions': {'BF4': -1, 'PYR14': 1}}
    assert format_comparison_table(reordered) == format_comparison_table(first)
    header = format_comparison_table(first).splitlines()[0]
    assert header.index('D PYR14') < header.index('D BF4')
    assert ion_order({'TFSI': -1, 'PYR14': 1, 'Li': 1}) == ['Li', 'PYR14', 'TFSI']


def _flagged(properties: dict, evaluation: dict | None = None, kind: str = 'trained', test_set=TEST_SET) -> dict:
    rows = {'m': {'info': {'label': 'M', 'kind': kind}, 'evaluation': evaluation or _metrics(40.0, 2.0)}}
    rows['m']['properties'] = properties
    return comparison_table(rows, {'PYR14': 1, 'BF4': -1}, test_set)


def test_non_results_are_flagged_not_printed():
    """An unconverged density, a sub-diffusive MSD and a broken molecule never appear as numbers in their column."""
    properties = _properties(1.1234, 2.0e-11, 3.0e-11, converged=False)
    properties['diffusion']['BF4'] = {
        'regime': 'sub-diffusive',
        'msd_reached_A2': 1.2,
        'time_needed_ps': 900.0,
        'not_a_result': {'einstein_slope_over_6_m2_s': 1.4e-9},
    }
    properties['coordination']['N-B']['cutoff_fallback'] = True
    table = _flagged(properties)
    row = table['rows']['m']
    assert row['density'] is None and row['density_unconverged'] == 1.1234
    assert row['D']['BF4']['value'] is None and row['D']['BF4']['regime'] == 'sub-diffusive'
    text = format_comparison_table(table)
    line = next(line for line in text.splitlines() if line.startswith('M '))
    assert '1.123' not in line and 'n.c.' in line and 'sub-diff.' in line and '14' not in line.split('sub-diff.')[-1]
    assert 'stop rule did not hold' in text and 'needs ~900 ps' in text and 'cut-off fell back' in text

    broken = _properties(1.2, 2.0e-11, 3.0e-11)
    broken['broken'] = {'species': 'PYR14', 'elements': ['C', 'N'], 'i': 3, 'j': 1, 'stretch': 1.8, 'stage': 'nvt'}
    table = _flagged(broken)
    row = table['rows']['m']
    assert row['density'] is None and all(cell['value'] is None for cell in row['D'].values())
    assert row['coordination'] == {}
    text = format_comparison_table(table)
    line = next(line for line in text.splitlines() if line.startswith('M '))
    assert line.count('broken') == 3 and '1.2' not in line
    assert 'molecules broke: C3-N1 of PYR14 x1.8 (nvt)' in text

    unstable = _properties(1.2, 2.0e-11, 3.0e-11)
    unstable['unstable'] = {'guard': 'temperature', 'message': 'T = 4521 K > 4500 K at step 56', 'stage': 'nvt'}
    table = _flagged(unstable)
    row = table['rows']['m']
    assert row['density'] is None and all(cell['value'] is None for cell in row['D'].values())
    assert row['coordination'] == {} and row['broken'] is None and row['unstable']['guard'] == 'temperature'
    text = format_comparison_table(table)
    line = next(line for line in text.splitlines() if line.startswith('M '))
    assert line.count('unstable') == 3 and '1.2' not in line
    assert 'MD unstable: temperature guard tripped: T = 4521 K > 4500 K at step 56 (nvt)' in text


def test_foundation_energy_without_alignment_and_leaky_test_set():
    """A foundation row whose offsets cannot be fitted shows forces only; an unknown split is flagged."""
    table = _flagged({}, _metrics(200.0, 2000.0, n_models=1), kind='foundation', test_set=None)
    row = table['rows']['m']
    assert row['energy_rmse'] is None and row['energy_rmse_raw'] == 2000.0
    text = format_comparison_table(table)
    assert 'energy: not determined' in text and 'may be optimistic' in text


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


def _li_clusters(decayed: bool) -> dict:
    """``properties.li_clusters`` as analyse_li_environment writes it."""
    return {
        'r_cut_A': 2.65,
        'ligand': 'TFSI:O',
        'ligand_cn': 4.2,
        'anion_cn': 3.4,
        'anion_cn_distribution': [0.0, 0.0, 0.1, 0.4, 0.5],
        'denticity_distribution': [0.75, 0.25],
        'mean_cluster_size': 4.4,
        'lifetime_continuous_ps': 0.8,
        'lifetime_continuous_decayed': decayed,
        'lifetime_intermittent_ps': None,
        'lifetime_intermittent_decayed': None,
    }


def test_li_and_tfsi_columns_per_composition():
    """Rows of two compositions: the composition is kept per row; the Li+ row gets its solvation (CN, anions per Li+,
    mono/bidentate shares, cluster size, lifetimes) and the TFSI cis fraction; a lifetime that did not decay is a
    flagged lower bound, one not integrated is flagged and not printed; the neat row has no Li+ entry and no Li D."""
    tfsi = {'cis_fraction': 0.3, 'trans_fraction': 0.7}
    lithium = _properties(1.45, 1.0e-11, 1.5e-11) | {'li_clusters': _li_clusters(False), 'tfsi_conformers': tfsi}
    lithium['diffusion'] = {'Li': _diffusive(0.5e-11), 'PYR14': _diffusive(1.0e-11), 'TFSI': _diffusive(1.5e-11)}
    neat = _properties(1.39, 2.0e-11, 2.5e-11) | {'tfsi_conformers': {'cis_fraction': 0.35}}
    neat['diffusion'] = {'PYR14': _diffusive(2.0e-11), 'TFSI': _diffusive(2.5e-11)}
    info = {'kind': 'trained', 'architecture': 'mace', 'driver': 'model_0'}
    rows = {
        'mace_c0': {
            'info': {**info, 'label': 'MACE [PYR14:2 TFSI:2]', 'composition': 'PYR14:2 TFSI:2'},
            'evaluation': _metrics(40.0, 2.0),
            'properties': neat,
        },
        'mace_c1': {
            'info': {**info, 'label': 'MACE [Li:1 PYR14:2 TFSI:3]', 'composition': 'Li:1 PYR14:2 TFSI:3'},
            'evaluation': _metrics(45.0, 2.5),
            'properties': lithium,
        },
    }
    table = comparison_table(rows, {'Li': 1, 'PYR14': 1, 'TFSI': -1}, TEST_SET)
    neat_row, li_row = table['rows']['mace_c0'], table['rows']['mace_c1']
    assert (neat_row['composition'], li_row['composition']) == ('PYR14:2 TFSI:2', 'Li:1 PYR14:2 TFSI:3')
    assert neat_row['li_solvation'] is None and neat_row['D']['Li']['value'] is None
    assert neat_row['tfsi_cis_fraction'] == 0.35 and li_row['tfsi_cis_fraction'] == 0.3
    li = li_row['li_solvation']
    assert li['ligand_cn'] == 4.2 and li['denticity_distribution'] == [0.75, 0.25]
    assert li['lifetime_continuous_lower_bound'] and li['lifetime_intermittent_ps'] is None
    assert any('continuous lifetime' in flag and 'lower bound' in flag for flag in li_row['flags'])
    assert any('intermittent lifetime: the run is too short' in flag for flag in li_row['flags'])
    text = format_comparison_table(table)
    assert 'MACE [Li:1 PYR14:2 TFSI:3]: CN Li-O 4.2 (r_cut 2.65 Å), 3.4 anions/Li+, mono/bi 75 %/25 %' in text
    assert 'lifetimes >0.8/- ps; TFSI cis 30 %' in text
    assert 'MACE [PYR14:2 TFSI:2]: TFSI cis 35 %' in text


def test_reference_aimd_beside_the_models():
    """The reference AIMD's Li+ solvation and TFSI cis fraction are shown beside the models', labelled and flagged as
    a short run; one without a first shell says why."""
    rows = {
        'mace': {
            'info': {'label': 'MACE', 'kind': 'trained', 'architecture': 'mace', 'driver': 'model_0'},
            'evaluation': _metrics(40.0, 2.0),
            'properties': _properties(1.45, 1.0e-11, 1.5e-11) | {'li_clusters': _li_clusters(True)},
        }
    }
    references = {
        'Li:1 PYR14:2 TFSI:3': {
            'n_frames': 41,
            'li_clusters': _li_clusters(True) | {'ligand_cn': 3.9},
            'tfsi_conformers': {'cis_fraction': 0.25},
        },
        'Li:2 PYR14:1 TFSI:3': {'n_frames': 41, 'li_clusters': {'available': False, 'reason': 'no first shell'}},
    }
    table = comparison_table(rows, {'Li': 1, 'PYR14': 1, 'TFSI': -1}, TEST_SET, references)
    reference = table['references']['Li:1 PYR14:2 TFSI:3']
    assert reference['li_solvation']['ligand_cn'] == 3.9 and reference['tfsi_cis_fraction'] == 0.25
    assert table['references']['Li:2 PYR14:1 TFSI:3']['li_solvation'] is None
    text = format_comparison_table(table)
    assert '  AIMD [Li:1 PYR14:2 TFSI:3]: CN Li-O 3.9 (r_cut 2.65 Å)' in text and 'TFSI cis 25 %' in text
    assert "AIMD [Li:1 PYR14:2 TFSI:3]: 41 frames of the data set's own AIMD" in text
    assert 'AIMD [Li:2 PYR14:1 TFSI:3]: Li+ solvation: no first shell' in text
    assert 'references' not in comparison_table(rows, {'Li': 1, 'PYR14': 1, 'TFSI': -1}, TEST_SET)


def test_flags_do_not_depend_on_the_order_of_the_stored_dict():
    """PostgreSQL (JSONB) gives a Dict's keys back in another order than SQLite: the table must not change with it
    (the fault test compares tables across profiles and found CN flags swapped)."""
    fallback = {'r_cut_A': 4.17, 'cn': 1.0, 'cutoff_fallback': True}
    tables = []
    for pairs in (['PYR14-PYR14', 'PYR14-BF4'], ['PYR14-BF4', 'PYR14-PYR14']):
        properties = _properties(1.2, 2.0e-11, 3.0e-11) | {'coordination': {pair: fallback for pair in pairs}}
        rows = {'mace': {'info': {'label': 'MACE'}, 'evaluation': _metrics(40.0, 2.0), 'properties': properties}}
        tables.append(format_comparison_table(comparison_table(rows, {'PYR14': 1, 'BF4': -1}, TEST_SET)))
    assert tables[0] == tables[1]


def _al_record(iteration, ratio, n_labelled, selected_from='candidate', stage=0):
    return {
        'iteration': iteration,
        'stage': stage,
        'n_frames': 30,
        'ratio_accurate': ratio,
        'ratio_candidate': 1.0 - ratio - 0.1,
        'ratio_failed': 0.1,
        'f_lo': 0.3,
        'f_hi': 0.9,
        'n_selected': n_labelled,
        'selected_from': selected_from if n_labelled else None,
        'n_labelled': n_labelled,
        'n_train_before': 40 + 8 * (iteration - 1),
        'n_train_after': 40 + 8 * iteration,
        'converged': False,
    }


def test_active_learning_rows_and_flags_under_the_table():
    """The iterations of active learning are printed under the table; what it did not do is flagged."""
    rows = {
        'mace': {
            'info': {'label': 'MACE', 'kind': 'trained', 'architecture': 'mace', 'driver': 'model_0'},
            'evaluation': _metrics(40.0, 2.0),
        }
    }
    trust = {'mode': 'relative', 'f_lo': 0.3, 'f_hi': 0.9, 'f_lo_relative': 2.0, 'f_hi_relative': 6.0}
    working = {
        'status': 'max_iterations',
        'trust': {**trust, 'force_rmse_valid': 0.15},
        'iterations': [_al_record(1, 0.2, 8, 'failed'), _al_record(2, 0.5, 8), _al_record(3, 0.8, 8)],
    }
    table = comparison_table(rows, {'PYR14': 1, 'BF4': -1}, TEST_SET, active_learning=working)
    summary = table['active_learning']
    assert summary['n_labelled'] == 24 and [r['ratio_accurate'] for r in summary['iterations']] == [0.2, 0.5, 0.8]
    assert summary['flags'] == [
        'active learning: iteration(s) 1 picked from the failed band (no explored frame lay between the trust levels)'
    ]
    text = format_comparison_table(table)
    assert 'active learning: max_iterations, 24 frames added; trust levels 0.3 / 0.9 eV/Å (2 / 6 x the' in text
    assert '     1     0     30    0.200     0.700  0.100 8 (failed)' in text
    assert '40->48' in text and '56->64' in text

    idle = {
        'status': 'no_candidates',
        'trust': {'mode': 'absolute', 'f_lo': 0.05, 'f_hi': 0.15},
        'iterations': [_al_record(1, 0.3, 0), _al_record(2, 0.1, 0)],
    }
    text = format_comparison_table(comparison_table(rows, {'PYR14': 1, 'BF4': -1}, TEST_SET, active_learning=idle))
    assert 'active learning added no frame in 2 iteration(s): the models were trained on the data set alone' in text
    assert 'active learning stopped early (no_candidates): the models were trained on its last training set' in text
    assert 'the accurate ratio did not rise (0.30 in iteration 1, 0.10 in iteration 2)' in text
    assert 'active learning' not in format_comparison_table(comparison_table(rows, {'PYR14': 1, 'BF4': -1}, TEST_SET))


def test_validation_columns_and_flags():
    """A validated row prints its MD, a posteriori error and RDF agreement; what misses the targets is flagged."""
    rows = {
        'mace': {
            'info': {'label': 'MACE', 'kind': 'trained', 'architecture': 'mace', 'driver': 'model_0'},
            'evaluation': _metrics(40.0, 2.0),
            'validation': {
                'md_intact': True,
                'md_ps': 1.0,
                'structure': {
                    'within_targets': False,
                    'max_abs_peak_shift_A': 0.08,
                    'max_abs_height_deviation': 0.2,
                    'mean_rdf_distance_A': 0.3,
                },
                'rdf': {'A-B': {'available': True}, 'A-A': {'available': False, 'reason': 'no peak'}},
                'a_posteriori': {'n_frames': 4, 'force_rmse': 100.0, 'force_rmse_relative': 0.1, 'ratio_to_test': 2.5},
            },
        },
        'deepmd': {
            'info': {'label': 'DeePMD', 'kind': 'trained', 'architecture': 'deepmd', 'driver': 'model_0'},
            'evaluation': _metrics(60.0, 3.0),
            'validation': {'md_intact': False, 'md_ps': 0.12, 'md_exit_message': 'a bond broke'},
        },
    }
    table = comparison_table(rows, {'PYR14': 1, 'BF4': -1}, TEST_SET)
    assert table['rows']['mace']['validation']['n_rdf_available'] == 1
    assert table['rows']['mace']['validation']['a_posteriori_ratio'] == 2.5
    text = format_comparison_table(table)
    assert 'MACE: MD intact (1 ps); a posteriori F RMSE 100 meV/Å (10 %, 2.50 x test, 4 frames); RDF peak shift' in text
    assert '(off targets, 1 of 2 RDFs)' in text
    assert 'DeePMD: MD broke after 0.12 ps' in text
    assert 'MACE: validation: RDF first peaks off the AIMD by up to 0.08 Å and 20 % in height' in text
    assert 'MACE: validation: the force RMSE on frames of its own MD is 2.5 x the test-set RMSE' in text
    assert 'DeePMD: validation: its NVT at the AIMD state point tripped a guard after 0.12 ps (a bond broke)' in text
    assert table['rows']['deepmd']['validation']['a_posteriori_force_rmse'] is None
