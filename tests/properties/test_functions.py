"""The analysis calcfunctions of ``ilmlff.properties`` on a synthetic MDTrajectoryData with known answers.

The system: rigid BF4 (some with a Li bound to one F at 1.9 Å, moving with it) and trans TFSI, all on a lattice
of a 24 Å box, each body doing a Gaussian random walk of 0.05 Å per axis per 10 fs frame:
D = 0.05^2 / (2 x 10 fs) = 1.25e-4 Å^2/fs = 1.25e-9 m^2/s.
"""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_ilmlff.analysis import TrajectoryWriter
from aiida_ilmlff.analysis import density as density_of
from aiida_ilmlff.analysis.settings import resolve_rdf_pairs
from aiida_ilmlff.calculations.functions.properties import (
    analyse_diffusion,
    analyse_li_environment,
    analyse_structure,
    analyse_tfsi_conformers,
    collect_properties,
    scale_to_density,
    summarise_density,
    trajectory_guard_problem,
)
from aiida_ilmlff.data.trajectory import MDTrajectoryData

L = 24.0
STEP_A = 0.05
DT_FS = 10.0
D_EXACT = STEP_A**2 / (2 * DT_FS) * 1e-5
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
BF4 = np.array([[0.0, 0, 0], [0.81, 0.81, 0.81], [-0.81, -0.81, 0.81], [-0.81, 0.81, -0.81], [0.81, -0.81, -0.81]])


def tfsi_trans():
    """A trans TFSI skeleton (N, 2 S, 2 C, 4 O, 6 F): C-S...S-C dihedral 180 deg."""
    s1, s2 = np.array([-1.3, 0.5, 0.0]), np.array([1.3, 0.5, 0.0])
    c1, c2 = s1 + np.array([-0.5, 1.7, 0.0]), s2 + np.array([0.5, -1.7, 0.0])
    oxygens = [s + np.array(d) for s in (s1, s2) for d in ([0, -1, 1], [0, -1, -1])]
    fluorines = [c + d for c in (c1, c2) for d in ([1, 0, 0], [0, 0, 1], [0, 0, -1])]
    positions = np.array([[0.0, 0, 0], s1, s2, c1, c2, *oxygens, *fluorines])
    return (
        positions,
        [7, 16, 16, 6, 6, 8, 8, 8, 8] + [9] * 6,
        [14.007, 32.06, 32.06, 12.011, 12.011] + [15.999] * 4 + [18.998] * 6,
    )


def synthetic_system(rng, n_frames=400, n_li=6, n_bf4=12, n_tfsi=3):
    numbers, masses, mol_id, molecules, bodies = [], [], [], [], []
    for k in range(n_bf4):
        body = [BF4.copy()]
        numbers += [5, 9, 9, 9, 9]
        masses += [10.81, 18.998, 18.998, 18.998, 18.998]
        mol_id += [len(molecules)] * 5
        molecules.append('BF4')
        if k < n_li:
            direction = BF4[1] / np.linalg.norm(BF4[1])
            body.append([BF4[1] + 1.9 * direction])
            numbers.append(3)
            masses.append(6.94)
            mol_id.append(len(molecules))
            molecules.append('Li')
        bodies.append(np.vstack(body))
    tfsi, tfsi_numbers, tfsi_masses = tfsi_trans()
    for _ in range(n_tfsi):
        bodies.append(tfsi)
        numbers += tfsi_numbers
        masses += tfsi_masses
        mol_id += [len(molecules)] * len(tfsi_numbers)
        molecules.append('TFSI')
    sites = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing='ij'), axis=-1).reshape(-1, 3) * (L / 4) + 3.0
    centres = sites[rng.choice(len(sites), len(bodies), replace=False)]
    walk = np.cumsum(rng.normal(scale=STEP_A, size=(n_frames, len(bodies), 3)), axis=0)
    positions = np.stack(
        [np.vstack([body + centres[k] + walk[t, k] for k, body in enumerate(bodies)]) for t in range(n_frames)]
    )
    return positions, np.array(numbers), np.array(masses), np.array(mol_id), molecules


@pytest.fixture(scope='module')
def trajectory_file(tmp_path_factory):
    positions, numbers, masses, mol_id, molecules = synthetic_system(np.random.default_rng(7))
    path = tmp_path_factory.mktemp('synthetic') / 'trajectory.h5'
    with TrajectoryWriter(path, numbers, masses, mol_id, molecules, dtype='float64') as out:
        out.append(np.arange(len(positions)) * DT_FS, positions, np.diag([L, L, L]))
    return path


@pytest.fixture
def trajectory(aiida_profile, trajectory_file):
    return MDTrajectoryData.from_file(trajectory_file).store()


def test_diffusion_of_a_random_walk(trajectory):
    """Known D within the statistical error (from time blocks); diffusive regime found; Yeh-Hummer beside the raw D."""
    result = analyse_diffusion(trajectory, orm.Dict({'viscosity_mPa_s': 50.0}), orm.Float(300.0))
    diffusion = result['diffusion'].get_dict()
    assert set(diffusion) == {'BF4', 'Li', 'TFSI'}
    bf4 = diffusion['BF4']
    assert bf4['regime'] == 'diffusive' and bf4['diffusive'] and bf4['automatic_window'] and bf4['n_molecules'] == 12
    assert bf4['slope_band'] == [0.9, 1.1] and 0.9 <= bf4['loglog_slope'] <= 1.1
    assert bf4['D_m2_s'] == pytest.approx(D_EXACT, rel=0.25)
    assert bf4['D_err_method'] == 'blocks' and bf4['n_blocks'] >= 2 and len(bf4['D_blocks_m2_s']) == bf4['n_blocks']
    assert abs(bf4['D_m2_s'] - D_EXACT) < 4 * bf4['D_err_m2_s']
    assert bf4['D_err_molecules_m2_s'] > 0
    assert 'time_needed_ps' not in bf4 and 'not_a_result' not in bf4
    assert 0 <= bf4['fit_window_ps'][0] < bf4['fit_window_ps'][1] <= 1.0
    box_m = L * 1e-10
    correction = 2.837297 * 1.380649e-23 * 300.0 / (6 * np.pi * 0.05 * box_m)
    assert bf4['D_yeh_hummer_m2_s'] == pytest.approx(bf4['D_m2_s'] + correction, rel=1e-9)
    assert bf4['box_length_A'] == pytest.approx(L) and bf4['viscosity_mPa_s'] == pytest.approx(50.0)
    same = analyse_diffusion(trajectory, orm.Dict({'viscosity_Pa_s': 0.05}), orm.Float(300.0))['diffusion']
    assert same['BF4']['D_yeh_hummer_m2_s'] == pytest.approx(bf4['D_yeh_hummer_m2_s'], rel=1e-12)
    msd = result['msd']
    assert msd.get_array('lag_ps')[1] == pytest.approx(0.01)
    assert msd.base.attributes.get('species') == ['BF4', 'Li', 'TFSI']
    assert msd.get_array('msd_BF4')[0] == 0.0
    assert result['figure'].get_content('rb')[:8] == PNG_MAGIC


def test_diffusion_with_a_window_and_discarded_start(trajectory):
    settings = {'diffusion_species': ['TFSI'], 'msd_fit_window_ps': [0.1, 0.5], 'discard_ps': 0.5}
    diffusion = analyse_diffusion(trajectory, orm.Dict(settings), orm.Float(300.0))['diffusion'].get_dict()
    assert list(diffusion) == ['TFSI']
    assert diffusion['TFSI']['fit_window_ps'] == pytest.approx([0.1, 0.5])
    assert not diffusion['TFSI']['automatic_window'] and 'D_yeh_hummer_m2_s' not in diffusion['TFSI']
    # a window longer than half the analysed run: no two time blocks hold it, the error is over molecules, and says so
    settings = {'diffusion_species': ['BF4'], 'msd_fit_window_ps': [0.1, 2.0], 'discard_ps': 0.5}
    bf4 = analyse_diffusion(trajectory, orm.Dict(settings), orm.Float(300.0))['diffusion']['BF4']
    assert bf4['regime'] == 'diffusive', bf4
    assert bf4['D_err_method'] == 'molecules' and bf4['n_blocks'] == 0
    assert bf4['D_err_m2_s'] == bf4['D_err_molecules_m2_s'] > 0


def test_diffusion_without_a_diffusive_regime_reports_no_d(aiida_profile, tmp_path):
    """Caged molecules (oscillating, no drift): sub-diffusive, the MSD reached and the time needed, and no D."""
    rng = np.random.default_rng(3)
    n_frames, n_mol = 200, 8
    centres = rng.uniform(2, L - 2, (n_mol, 3))
    positions = centres[None] + rng.normal(scale=0.2, size=(n_frames, n_mol, 3))
    path = tmp_path / 'caged.h5'
    with TrajectoryWriter(path, [3] * n_mol, [6.94] * n_mol, np.arange(n_mol), ['Li'] * n_mol) as out:
        out.append(np.arange(n_frames) * DT_FS, positions, np.diag([L, L, L]))
    node = MDTrajectoryData.from_file(path).store()
    result = analyse_diffusion(node, orm.Dict({'viscosity_mPa_s': 50.0}), orm.Float(300.0))
    entry = result['diffusion']['Li']
    assert entry['regime'] == 'sub-diffusive' and entry['diffusive'] is False and entry['loglog_slope'] < 0.9
    for key in ('D_m2_s', 'D_err_m2_s', 'D_yeh_hummer_m2_s'):
        assert key not in entry
    assert entry['fit_window_ps'][1] == pytest.approx(0.25 * 199 * DT_FS / 1000, rel=0.05)
    assert entry['max_lag_ps'] == pytest.approx(entry['fit_window_ps'][1])
    assert entry['msd_reached_A2'] == pytest.approx(2 * 3 * 0.2**2, rel=0.3)  # 2 x 3 sigma^2: the cage
    assert entry['time_needed_ps'] > 2.0 and entry['msd_target_A2'] == 100.0
    assert 'not a self-diffusion coefficient' in entry['not_a_result']['why']
    assert result['msd'].base.attributes.get('regime') == {'Li': 'sub-diffusive'}


def test_a_run_too_short_for_a_window_is_not_diffusive(aiida_profile, tmp_path):
    """8 frames: no fit window fits in a quarter of the run; the regime is still judged, and no D is given."""
    positions, numbers, masses, mol_id, molecules = synthetic_system(np.random.default_rng(8), n_frames=8)
    path = tmp_path / 'short.h5'
    with TrajectoryWriter(path, numbers, masses, mol_id, molecules, dtype='float64') as out:
        out.append(np.arange(len(positions)) * DT_FS, positions, np.diag([L, L, L]))
    node = MDTrajectoryData.from_file(path).store()
    diffusion = analyse_diffusion(node, orm.Dict({'diffusion_species': ['BF4']}), orm.Float(300.0))['diffusion']
    entry = diffusion['BF4']
    assert entry['regime'] in ('sub-diffusive', 'ballistic') and 'D_m2_s' not in entry
    assert entry['max_lag_ps'] == pytest.approx(7 * DT_FS / 1000) and entry['time_needed_ps'] > 0


def test_structure_rdf_and_coordination(trajectory):
    """Li-F contact at 1.9 Å: first minimum found, CN = 1; centre-of-mass pairs by default."""
    settings = {'li_ligand': 'BF4:F', 'rdf_bins': 240, 'cn_cutoffs_A': {'BF4-BF4': 5.0}}
    result = analyse_structure(trajectory, orm.Dict(settings))
    coordination = result['coordination'].get_dict()
    expected = ['BF4-BF4', 'BF4-Li', 'BF4-TFSI', 'Li-Li', 'Li-TFSI', 'TFSI-TFSI', 'Li-BF4:F']
    assert list(coordination) == expected
    li_f = coordination['Li-BF4:F']
    assert li_f['r_cut_source'] == 'first_minimum' and 1.9 < li_f['r_cut_A'] < 3.5
    assert li_f['cn'] == pytest.approx(1.0, abs=1e-3)  # trapezoid over the histogram bins
    assert coordination['BF4-BF4']['r_cut_source'] == 'given' and coordination['BF4-BF4']['r_cut_A'] == 5.0
    assert coordination['BF4-Li']['selections'] == ['BF4:com', 'Li:com']
    rdf, cn = result['rdf'], result['cn']
    assert rdf.base.attributes.get('pairs') == expected
    assert rdf.get_array('r_A')[-1] < L / 2 and rdf.get_array('g_6').shape == (240,)
    assert cn.get_array('cn_6')[-1] >= 1.0
    assert result['figure'].get_content('rb')[:8] == PNG_MAGIC
    # no minimum within r_max (as in a tiny box): the cut-off is the last bin
    short = analyse_structure(trajectory, orm.Dict({'rdf_pairs': [['BF4', 'TFSI']], 'rdf_r_max_A': 4.0}))
    entry = short['coordination']['BF4-TFSI']
    assert entry['r_cut_source'] == 'r_max' and entry['r_cut_A'] == pytest.approx(short['rdf'].get_array('r_A')[-1])
    assert entry['cutoff_fallback'] is True
    assert li_f['cutoff_fallback'] is False and coordination['BF4-BF4']['cutoff_fallback'] is False


def test_li_environment_and_tfsi_conformers(trajectory):
    li = analyse_li_environment(trajectory, orm.Dict({'li_ligand': 'BF4:F'})).get_dict()
    assert li['available'] and li['ligand'] == 'BF4:F' and li['r_cut_from_rdf'] and 1.9 < li['r_cut_A'] < 3.5
    assert li['anion_cn'] == pytest.approx(1.0) and li['ligand_cn'] == pytest.approx(1.0)
    assert li['cluster_sizes'] == [2] and li['compositions'] == {'1Li1A': 6 * 400}
    # Li bound for the whole run: the continuous function never decays (flagged), <h> = 1 for the bound pairs
    assert li['lifetime_continuous_decayed'] is False and li['lifetime_continuous_ps'] > 0
    assert li['bound_fraction'] == pytest.approx(1.0) and li['lifetime_intermittent_ps'] is None
    assert li['lifetime_intermittent_decayed'] is None and 'C_I - <h>' in li['lifetime_intermittent_method']
    given = analyse_li_environment(trajectory, orm.Dict({'li_ligand': 'BF4:F', 'li_cutoff_A': 2.2})).get_dict()
    assert given['r_cut_A'] == 2.2 and not given['r_cut_from_rdf']
    conformers = analyse_tfsi_conformers(trajectory, orm.Dict({})).get_dict()
    assert conformers['trans_fraction'] == 1.0 and conformers['cis_fraction'] == 0.0
    assert conformers['n_molecules'] == 3 and conformers['n_frames'] == 400


def test_li_environment_without_a_first_shell_says_why(trajectory, monkeypatch):
    """When the Li-ligand g(r) has no first shell to cut at (a short run in a tiny box: measured in the two-composition
    pipeline test), the Li+ solvation is `available` false with the reason, not a failed analysis, and the
    comparison flags it instead of printing numbers."""
    import aiida_ilmlff.analysis as analysis
    from aiida_ilmlff.analysis.comparison import comparison_table

    def no_shell(*args, **kwargs):
        raise analysis.NoFirstShellError('g(r) has no peak in the given range')

    monkeypatch.setattr(analysis, 'li_environment_from_trajectory', no_shell)
    li = analyse_li_environment(trajectory, orm.Dict({'li_ligand': 'BF4:F'})).get_dict()
    assert li['available'] is False and 'no first shell' in li['reason'] and 'li_cutoff_A' in li['reason']
    row = {
        'info': {'label': 'MACE', 'kind': 'trained'},
        'evaluation': {'n_frames': 1, 'models': {}},
        'properties': {'li_clusters': li},
    }
    table = comparison_table({'mace': row}, {'Li': 1, 'BF4': -1})
    assert table['rows']['mace']['li_solvation'] is None
    assert any(
        flag.startswith('Li+ solvation: the Li-BF4:F g(r) has no first shell')
        for flag in table['rows']['mace']['flags']
    )


def test_analysis_errors_are_clear(trajectory, aiida_profile, tmp_path):
    """An absent species, a window longer than the run, and wrapped coordinates raise with a clear message."""
    with pytest.raises(ValueError, match="species 'PYR14' is not in the trajectory"):
        analyse_diffusion(trajectory, orm.Dict({'diffusion_species': ['PYR14']}), orm.Float(300.0))
    with pytest.raises(ValueError, match='longer than the trajectory'):
        analyse_diffusion(trajectory, orm.Dict({'msd_fit_window_ps': [0.1, 9.0]}), orm.Float(300.0))
    positions, numbers, masses, mol_id, molecules = synthetic_system(np.random.default_rng(1), n_frames=20)
    path = tmp_path / 'wrapped.h5'
    with TrajectoryWriter(path, numbers, masses, mol_id, molecules, dtype='float64') as out:
        drift = np.arange(20)[:, None, None] * np.array([0.5, 0.0, 0.0])  # atoms cross the cell face at x = L
        out.append(np.arange(20) * DT_FS, (positions + drift) % L, np.diag([L, L, L]))
    wrapped = MDTrajectoryData.from_file(path).store()
    from aiida_ilmlff.analysis import WrappedCoordinatesError

    with pytest.raises(WrappedCoordinatesError):
        analyse_diffusion(wrapped, orm.Dict({}), orm.Float(300.0))


def test_density_summary_scaling_and_collection(aiida_profile, box_atoms):
    """summarise_density takes the last stage; scale_to_density hits the density with rigid molecules."""
    time_fs = np.arange(100) * 10.0
    thermo = orm.ArrayData()
    thermo.set_array('time_fs', time_fs)
    thermo.set_array('density_g_cm3', 1.2 + 0.01 * np.sin(time_fs / 50))
    stages = {
        f'stage_{k}': orm.Dict(
            {
                'mean': mean,
                'error': 0.002,
                'start_fs': start,
                'end_fs': start + 490.0,
                'equilibration_time_fs': start + 100.0,
                'equilibrated_fraction': 0.8,
                'drift_g_cm3_per_ps': 0.0,
                'mean_volume_A3': 900.0,
            }
        )
        for k, (mean, start) in enumerate([(1.19, 0.0), (1.201, 500.0)], 1)
    }
    summary = summarise_density(thermo, orm.Bool(True), **stages)
    density = summary['density'].get_dict()
    assert density['mean'] == 1.201 and density['n_stages'] == 2 and density['converged'] is True
    assert [s['mean'] for s in density['stages']] == [1.19, 1.201]
    assert summary['figure'].get_content('rb')[:8] == PNG_MAGIC

    structure = orm.StructureData(ase=box_atoms)
    structure.base.attributes.set('mol_id', box_atoms.arrays['mol_id'].tolist())
    structure.base.attributes.set('molecules', list(box_atoms.info['molecules']))
    scaled = scale_to_density(structure, summary['density'])
    atoms = scaled.get_ase()
    assert density_of(atoms.get_masses(), atoms.get_volume()) == pytest.approx(1.201, rel=1e-10)
    assert scaled.base.attributes.get('molecules') == ['PYR14', 'PYR14', 'BF4', 'BF4']
    mol_id = np.array(scaled.base.attributes.get('mol_id'))
    first = np.nonzero(mol_id == 0)[0]
    before = box_atoms.positions[first]
    after = atoms.positions[first]
    np.testing.assert_allclose(after - after[0], before - before[0], atol=1e-9)  # moved rigidly

    diffusion = orm.Dict({'BF4': {'D_m2_s': 1e-10, 'D_err_m2_s': 1e-11, 'fit_window_ps': [0.1, 0.5]}})
    coordination = orm.Dict({'BF4-BF4': {'r_cut_A': 5.0, 'cn': 2.0}})
    properties = collect_properties(summary['density'], orm.Float(450.0), diffusion, coordination).get_dict()
    assert set(properties) == {'density_g_cm3', 'temperature_K', 'diffusion', 'coordination'}
    assert properties['density_g_cm3']['converged'] is True and properties['temperature_K'] == 450.0


def test_default_rdf_pairs():
    """Every pair of species, the Li-ligand pair; no like pair of a species with one molecule (one BF4, one Li:
    a BF4-BF4 or Li-Li RDF has no pair to count, and asking for it failed the whole analysis of small boxes)."""
    species = ['PYR14', 'PYR14', 'BF4', 'Li']
    assert resolve_rdf_pairs({}, species) == {
        'PYR14-PYR14': ('PYR14:com', 'PYR14:com'),
        'PYR14-BF4': ('PYR14:com', 'BF4:com'),
        'PYR14-Li': ('PYR14:com', 'Li:com'),
        'BF4-Li': ('BF4:com', 'Li:com'),
        'Li-BF4:F': ('Li:com', 'BF4:F'),
    }
    two_each = resolve_rdf_pairs({}, ['Li', 'Li', 'PYR14', 'TFSI', 'TFSI'])
    assert 'Li-Li' in two_each and 'TFSI-TFSI' in two_each and 'PYR14-PYR14' not in two_each
    assert resolve_rdf_pairs({'rdf_pairs': [['Li', 'TFSI:O']]}, ['Li', 'TFSI']) == {'Li-TFSI:O': ('Li:com', 'TFSI:O')}


@pytest.mark.parametrize(
    ('where', 'value'),
    [
        ('attribute', {'guard_tripped': True, 'guard': 'bonds'}),
        ('file', {'guard': 'bonds'}),
        ('file', {'status': 'guard'}),
    ],
)
def test_a_trajectory_that_tripped_a_guard_is_not_analysed(aiida_profile, tmp_path, where, value):
    """Molecules broke (or another guard tripped): every analysis refuses with exit status 530 and computes nothing."""
    positions, numbers, masses, mol_id, molecules = synthetic_system(np.random.default_rng(5), n_frames=30)
    path = tmp_path / 'broken.h5'
    metadata = value if where == 'file' else None
    with TrajectoryWriter(path, numbers, masses, mol_id, molecules, dtype='float64', metadata=metadata) as out:
        out.append(np.arange(len(positions)) * DT_FS, positions, np.diag([L, L, L]))
    node = MDTrajectoryData.from_file(path)
    if where == 'attribute':
        node.base.attributes.set_many(value)
    node.store()
    assert 'tripped a guard' in trajectory_guard_problem(node)
    for function, args in (
        (analyse_diffusion, (orm.Dict({}), orm.Float(300.0))),
        (analyse_structure, (orm.Dict({}),)),
        (analyse_li_environment, (orm.Dict({'li_ligand': 'BF4:F'}),)),
        (analyse_tfsi_conformers, (orm.Dict({}),)),
    ):
        outputs, process = function.run_get_node(node, *args)
        assert process.exit_status == 530 and outputs == {}
        assert 'ERROR_TRAJECTORY_TRIPPED_GUARD' in process.exit_message


def test_an_intact_trajectory_has_no_guard_problem(trajectory):
    assert trajectory_guard_problem(trajectory) is None


@pytest.mark.parametrize(('exit_status', 'refused'), [(505, True), (502, True), (0, False)])
def test_the_md_run_that_wrote_a_trajectory_is_looked_at(
    aiida_profile, aiida_localhost, tmp_path, exit_status, refused
):
    """A trajectory output of an ``ilmlff.md`` run that stopped on a guard (505: bond, 502: temperature) is refused;
    one of a finished run (status completed, no guard) is not."""
    from aiida.common.links import LinkType

    positions, numbers, masses, mol_id, molecules = synthetic_system(np.random.default_rng(6), n_frames=20)
    path = tmp_path / 'segment.h5'
    with TrajectoryWriter(path, numbers, masses, mol_id, molecules, dtype='float64') as out:
        out.append(np.arange(len(positions)) * DT_FS, positions, np.diag([L, L, L]))
    calculation = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:ilmlff.md')
    calculation.set_process_state('finished')
    calculation.set_exit_status(exit_status)
    calculation.store()
    status = {'status': 'guard' if exit_status else 'completed', 'guard': None}
    if exit_status == 505:
        status['guard'] = {'name': 'bond', 'bond': {'label': 'C1-N2 of PYR14 #0'}}
    parameters = orm.Dict(status)
    parameters.base.links.add_incoming(calculation, LinkType.CREATE, 'output_parameters')
    parameters.store()
    node = MDTrajectoryData.from_file(path)
    node.base.links.add_incoming(calculation, LinkType.CREATE, 'trajectory')
    node.store()
    problem = trajectory_guard_problem(node)
    if refused:
        name = {505: 'bond', 502: 'temperature'}[exit_status]
        assert f'<{calculation.pk}>, which stopped on the `{name}` guard' in problem
        _, process = analyse_structure.run_get_node(node, orm.Dict({}))
        assert process.exit_status == 530
    else:
        assert problem is None
