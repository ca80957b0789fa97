"""Training inputs without running a code: validation before submission, protocols, job files, parsers' helpers."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from aiida import orm
from aiida.common.folders import Folder
from aiida.engine import run_get_node
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager

from aiida_ilmlff.calculations.deepmd import DeepmdTrainCalculation, count_sel
from aiida_ilmlff.calculations.evaluate import EvaluateCalculation
from aiida_ilmlff.calculations.mace import MaceTrainCalculation
from aiida_ilmlff.parsers.deepmd import parse_lcurve
from aiida_ilmlff.parsers.evaluate import committee_force_deviation, error_metrics
from aiida_ilmlff.parsers.mace import parse_error_table, parse_results_lines
from aiida_ilmlff.sampling.split import train_valid_indices
from aiida_ilmlff.workflows.train import DeepmdTrainBaseWorkChain, MaceTrainBaseWorkChain, TrainWorkChain
from tests.fixtures.training import TINY_DEEPMD, TINY_MACE, job_options


def _n_nodes() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def _fake_model(elements, architecture='mace', tmp_path=None):
    from aiida_ilmlff.data import MLFFModelData

    path = tmp_path / ('fake.model' if architecture == 'mace' else 'fake.pb')
    path.write_bytes(b'not a real model, metadata only')
    return MLFFModelData.from_file(path, architecture, elements=elements, r_cut=4.0, dtype='float64', inspect=False)


def _assert_rejected(process_class, inputs, *fragments):
    """Running with ``inputs`` raises before anything is stored; the message contains every fragment."""
    before = _n_nodes()
    with pytest.raises(ValueError) as excinfo:
        run_get_node(process_class, **inputs)
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, message
    assert _n_nodes() == before, 'a rejected submission stored nodes'


def _mace_inputs(code, frames, **parameters):
    return {
        'code': code,
        'train': frames['train'],
        'valid': frames['valid'],
        'parameters': orm.Dict({**TINY_MACE, **parameters}),
        'metadata': {'options': job_options()},
    }


# ------------------------------------------------------------------ bad input fails before submission


def test_unknown_mace_hyperparameter_rejected(mace_train_code, frames):
    inputs = _mace_inputs(mace_train_code, frames, num_chanels=16)
    _assert_rejected(MaceTrainCalculation, inputs, 'unknown', 'num_chanels', 'num_channels')


def test_bad_mace_value_rejected(mace_train_code, frames):
    _assert_rejected(MaceTrainCalculation, _mace_inputs(mace_train_code, frames, max_L=7), '`max_L`')
    _assert_rejected(MaceTrainCalculation, _mace_inputs(mace_train_code, frames, batch_size=True), 'bool')


def test_unknown_deepmd_hyperparameter_rejected(dp_code, frames):
    inputs = {
        'code': dp_code,
        'train': frames['train'],
        'valid': frames['valid'],
        'parameters': orm.Dict({**TINY_DEEPMD, 'learning_rate': 1e-3}),
        'metadata': {'options': job_options()},
    }
    _assert_rejected(DeepmdTrainCalculation, inputs, 'unknown', 'learning_rate', 'start_lr')


def test_split_with_one_frame_rejected(mace_train_code, frames):
    inputs = _mace_inputs(mace_train_code, frames)
    inputs['valid'] = frames['valid'].select([0])
    _assert_rejected(MaceTrainCalculation, inputs, '`valid` has 1 frame(s)', 'at least 2')


def test_valid_fraction_too_small_rejected(mace_train_code, frames):
    inputs = _mace_inputs(mace_train_code, frames)
    inputs.pop('valid')
    inputs['train'] = frames['train'].select(list(range(10)))
    inputs['valid_fraction'] = orm.Float(0.1)
    _assert_rejected(MaceTrainCalculation, inputs, 'valid_fraction', 'at least 2')


def test_foundation_model_missing_elements_rejected(mace_train_code, frames, tmp_path):
    inputs = _mace_inputs(mace_train_code, frames)
    inputs['foundation_model'] = _fake_model(['B', 'F', 'H', 'C'], tmp_path=tmp_path)
    _assert_rejected(MaceTrainCalculation, inputs, "elements ['Li']", 'foundation_model')


def test_foundation_model_must_be_mace(mace_train_code, frames, tmp_path):
    inputs = _mace_inputs(mace_train_code, frames)
    inputs['foundation_model'] = _fake_model(['B', 'F', 'Li'], 'deepmd', tmp_path=tmp_path)
    _assert_rejected(MaceTrainCalculation, inputs, 'must be a MACE model')


def test_e0s_missing_element_rejected(mace_train_code, frames):
    inputs = _mace_inputs(mace_train_code, frames, E0s={'Li': -5.0, 'B': -80.0})
    _assert_rejected(MaceTrainCalculation, inputs, '`E0s`', "['F']")


def test_unlabelled_frames_rejected(mace_train_code, frames):
    from aiida_ilmlff.data import FramesData

    unlabelled = FramesData.from_ase([atoms.copy() for atoms in frames['train'].to_ase()])
    for atoms_frame in unlabelled.to_ase():
        assert atoms_frame.calc is None
    inputs = _mace_inputs(mace_train_code, frames)
    inputs['train'] = unlabelled
    _assert_rejected(MaceTrainCalculation, inputs, 'not fully labelled')


def test_evaluate_model_missing_elements_rejected(evaluate_code, frames, tmp_path):
    inputs = {
        'code': evaluate_code,
        'frames': frames['test'],
        'models': {'m0': _fake_model(['B', 'F'], tmp_path=tmp_path)},
        'metadata': {'options': job_options()},
    }
    _assert_rejected(EvaluateCalculation, inputs, "['Li']", 'm0')


@pytest.mark.parametrize('batch_size', [0, -1, 1.5])
def test_evaluate_batch_size_below_one_rejected(evaluate_code, frames, tmp_path, batch_size):
    inputs = {
        'code': evaluate_code,
        'frames': frames['test'],
        'models': {'m0': _fake_model(['B', 'F', 'H', 'Li'], tmp_path=tmp_path)},
        'parameters': orm.Dict({'batch_size': batch_size}),
        'metadata': {'options': job_options()},
    }
    _assert_rejected(EvaluateCalculation, inputs, '`batch_size` must be an integer >= 1', repr(batch_size))


def test_committee_bad_inputs_rejected(mace_train_code, frames, tmp_path):
    builder = TrainWorkChain.get_builder_from_protocol(
        mace_train_code, frames['train'], protocol='fast', valid=frames['valid']
    )
    builder.seeds = orm.List([1, 1, 2, 3])
    before = _n_nodes()
    with pytest.raises(ValueError, match='distinct integers'):
        run_get_node(builder)
    builder.seeds = orm.List([1, 2, 3, 4])
    member = builder.member['mace']  # `member` is a dynamic namespace: item access
    member['parameters'] = orm.Dict({**member['parameters'].get_dict(), 'epochs': 3})
    with pytest.raises(ValueError, match=r"'member.mace.parameters': unknown.*'epochs'"):
        run_get_node(builder)
    assert _n_nodes() == before


def test_committee_of_one_and_wrong_code_rejected(mace_train_code, dp_code, frames):
    """A committee of one, a dp code as the MACE training code, a misspelt override: refused by the builder."""
    with pytest.raises(ValueError, match='`committee_size` is 1: a committee needs at least 2 models'):
        TrainWorkChain.get_builder_from_protocol(mace_train_code, frames['train'], committee_size=1)
    with pytest.raises(ValueError, match=r'`member.mace.code`: code `.*` runs plugin `ilmlff.deepmd.train`'):
        TrainWorkChain.get_builder_from_protocol(dp_code, frames['train'], architecture='mace')
    with pytest.raises(ValueError, match=r'unknown key `member.mace.paramters`'):
        TrainWorkChain.get_builder_from_protocol(
            mace_train_code, frames['train'], overrides={'member': {'mace': {'paramters': {'lr': 1e-3}}}}
        )
    with pytest.raises(ValueError, match=r'unknown key `comittee_size`'):
        TrainWorkChain.get_builder_from_protocol(mace_train_code, frames['train'], overrides={'comittee_size': 3})
    builder = TrainWorkChain.get_builder_from_protocol(mace_train_code, frames['train'], valid=frames['valid'])
    builder.architecture = orm.Str('deepmd')
    with pytest.raises(ValueError, match='set `architecture` to `mace`'):
        run_get_node(builder)


# ------------------------------------------------------------------ protocols


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_protocols_give_valid_builders(protocol, mace_train_code, dp_code, frames):
    mace = MaceTrainBaseWorkChain.get_builder_from_protocol(mace_train_code, frames['all'], protocol=protocol)
    deepmd = DeepmdTrainBaseWorkChain.get_builder_from_protocol(dp_code, frames['all'], protocol=protocol)
    for builder, process in ((mace, MaceTrainBaseWorkChain), (deepmd, DeepmdTrainBaseWorkChain)):
        assert process.spec().inputs.validate(dict(builder._inputs(prune=True))) is None
    mace, deepmd = mace.mace, deepmd.deepmd
    if protocol == 'fast':
        p = mace.parameters.get_dict()
        assert (p['num_channels'], p['max_L'], p['r_max'], p['num_interactions']) == (16, 0, 4.0, 2)
        assert deepmd.parameters['neuron'] == [8, 16] and deepmd.parameters['fitting_neuron'] == [32, 32]
    if protocol == 'balanced':
        p = mace.parameters.get_dict()
        assert (p['num_channels'], p['max_L'], p['r_max'], p['correlation'], p['forces_weight']) == (
            64,
            1,
            5.0,
            3,
            100.0,
        )
        assert deepmd.parameters['neuron'] == [25, 50, 100]
        assert deepmd.parameters['fitting_neuron'] == [240, 240, 240]
        assert deepmd.parameters['numb_steps'] == 400000
    committee = TrainWorkChain.get_builder_from_protocol(
        mace_train_code,
        frames['all'],
        protocol=protocol,
        overrides={'member': {'mace': {'parameters': {'lr': 0.005}}}},
    )
    assert committee.committee_size.value in (4, 5)
    assert committee.member['mace']['parameters']['lr'] == 0.005
    assert TrainWorkChain.spec().inputs.validate(dict(committee._inputs(prune=True))) is None
    dp_committee = TrainWorkChain.get_builder_from_protocol(
        dp_code, frames['all'], protocol=protocol, architecture='deepmd'
    )
    assert TrainWorkChain.spec().inputs.validate(dict(dp_committee._inputs(prune=True))) is None
    assert dp_committee.member['deepmd']['parameters']['neuron'] == deepmd.parameters['neuron']
    assert 'mace' not in dp_committee.member


def test_protocol_overrides_and_unknown_protocol(mace_train_code, frames):
    builder = MaceTrainBaseWorkChain.get_builder_from_protocol(
        mace_train_code,
        frames['train'],
        protocol='fast',
        overrides={'mace': {'parameters': {'max_num_epochs': 3}}},
        seed=11,
    )
    assert builder.mace.parameters['max_num_epochs'] == 3 and builder.mace.parameters['seed'] == 11
    assert builder.mace.valid_fraction.value == pytest.approx(0.1)
    with pytest.raises(ValueError, match='`protocol`'):
        MaceTrainBaseWorkChain.get_builder_from_protocol(mace_train_code, frames['train'], protocol='precise')


# ------------------------------------------------------------------ job files


def test_mace_e0s_given_and_foundation_own(mace_train_code, frames, tmp_path):
    """Without a foundation model the E0s go to --E0s; a fine-tune with E0s 'foundation' runs no E0s step."""
    inputs = _mace_inputs(mace_train_code, frames, E0s={'Li': -5.0, 'B': -80.0, 'F': -120.0})
    calcinfo, _ = _prepare(MaceTrainCalculation, inputs, tmp_path)
    assert '--E0s={"3": -5.0, "5": -80.0, "9": -120.0}' in calcinfo.codes_info[0].cmdline_params
    assert not calcinfo.prepend_text
    inputs = _mace_inputs(mace_train_code, frames, E0s='foundation')
    inputs['foundation_model'] = _fake_model(['B', 'F', 'Li'], tmp_path=tmp_path).store()
    (tmp_path / 'own').mkdir()
    calcinfo, _ = _prepare(MaceTrainCalculation, inputs, tmp_path / 'own')
    assert '--E0s=foundation' in calcinfo.codes_info[0].cmdline_params and not calcinfo.prepend_text


def test_mace_e0s_estimated_needs_a_foundation_model(mace_train_code, frames):
    inputs = _mace_inputs(mace_train_code, frames, E0s='estimated')
    _assert_rejected(MaceTrainCalculation, inputs, "`E0s`='estimated' needs a `foundation_model`")


def _prepare(process_class, inputs, tmp_path):
    process = instantiate_process(get_manager().get_runner(), process_class, **inputs)
    (tmp_path / 'sandbox').mkdir()
    folder = Folder(str(tmp_path / 'sandbox'))
    return process.prepare_for_submission(folder), folder


def test_mace_job_files_and_cmdline(mace_train_code, frames, tmp_path):
    inputs = _mace_inputs(mace_train_code, frames, E0s={'Li': -5.0, 'B': -80.0, 'F': -120.0}, swa=True, start_swa=2)
    inputs['test'] = frames['test']
    inputs['foundation_model'] = _fake_model(['B', 'F', 'Li'], tmp_path=tmp_path).store()
    calcinfo, folder = _prepare(MaceTrainCalculation, inputs, tmp_path)
    arguments = calcinfo.codes_info[0].cmdline_params
    assert '--foundation_model=foundation.model' in arguments
    assert '--multiheads_finetuning=False' in arguments
    assert '--train_file=train.xyz' in arguments and '--test_file=test.xyz' in arguments
    # mace 0.3.16's plain fine-tune keeps the foundation's E0s whatever --E0s says: the job writes the asked E0s
    # into the foundation file first (runner/mace_e0s.py, with the Python beside mace_run_train), then trains with
    # the foundation's
    assert '--E0s=foundation' in arguments
    python = str(pathlib.PurePosixPath(mace_train_code.filepath_executable).parent / 'python')
    assert calcinfo.prepend_text.startswith(f'{python} mace_e0s.py ')
    assert '\'--e0s={"Li": -5.0, "B": -80.0, "F": -120.0}\'' in calcinfo.prepend_text
    assert '--model=foundation.model' in calcinfo.prepend_text and '|| exit 1' in calcinfo.prepend_text
    assert 'def fit_e0s' in (tmp_path / 'sandbox' / 'mace_e0s.py').read_text()
    assert 'e0s.json' in calcinfo.retrieve_list
    assert '--ema' in arguments and '--swa' in arguments and '--seed=3' in arguments
    assert calcinfo.local_copy_list[0][2] == 'foundation.model'
    assert 'mace_stagetwo.model' in calcinfo.retrieve_list
    assert 'mace_eval_configs' in calcinfo.append_text and '--model=mace_stagetwo.model' in calcinfo.append_text
    split = json.loads(
        folder.get_abs_path('ilmlff_split.json') and open(folder.get_abs_path('ilmlff_split.json')).read()
    )
    assert split['n_frames'] == {'train': 24, 'valid': 6, 'test': 6}
    evaluated = open(folder.get_abs_path('eval_input.xyz')).read()
    assert evaluated.count('REF_energy') == 36


def test_mace_valid_fraction_split_is_seeded(mace_train_code, frames, tmp_path):
    inputs = _mace_inputs(mace_train_code, frames)
    inputs.pop('valid')
    inputs['train'] = frames['all']
    inputs['valid_fraction'] = orm.Float(0.25)
    _, folder = _prepare(MaceTrainCalculation, inputs, tmp_path)
    split = json.loads(open(folder.get_abs_path('ilmlff_split.json')).read())
    train, valid = train_valid_indices(frames['all'].origins, 0.25, TINY_MACE['seed'], min_frames=2)
    assert split['train_indices'] == train and split['valid_indices'] == valid
    assert len(valid) == 9 and not set(train) & set(valid)


def test_deepmd_job_files(dp_code, frames, tmp_path):
    inputs = {
        'code': dp_code,
        'train': frames['train'],
        'valid': frames['valid'],
        'test': frames['test'],
        'parameters': orm.Dict({**TINY_DEEPMD, 'compress': True}),
        'metadata': {'options': job_options()},
    }
    calcinfo, folder = _prepare(DeepmdTrainCalculation, inputs, tmp_path)
    data = json.loads(open(folder.get_abs_path('input.json')).read())
    assert data['model']['type_map'] == ['B', 'F', 'Li']
    counted = count_sel([frames['train'], frames['valid'], frames['test']], ['B', 'F', 'Li'], 6.0)
    assert data['model']['descriptor']['sel'] == [math.ceil(1.2 * c) for c in counted]
    assert data['model']['descriptor']['rcut'] == 6.0 and data['model']['descriptor']['neuron'] == [4, 8]
    commands = [' '.join(info.cmdline_params) for info in calcinfo.codes_info]
    assert commands[0].startswith('--tf train input.json')
    assert commands[1].startswith('--tf freeze -o frozen_model.pb')
    assert commands[2].startswith('--tf compress -i frozen_model.pb -o compressed_model.pb')
    assert commands[3].startswith('--tf test -m compressed_model.pb -s data -n 0 -d detail') and len(commands) == 4
    assert 'compressed_model.pb' in calcinfo.retrieve_list
    assert data['training']['training_data']['systems'] == ['data/train/BF4Li']


def test_count_sel_counts_periodic_neighbours():
    from ase import Atoms

    class _One:
        def __init__(self, atoms):
            self.atoms = atoms

        def to_ase(self):
            return [self.atoms]

    # simple cubic lattice of Li, a = 2 A: within 2.1 A each atom has 6 neighbours (its periodic images)
    atoms = Atoms('Li', positions=[[0, 0, 0]], cell=[2.0, 2.0, 2.0], pbc=True)
    assert count_sel([_One(atoms)], ['Li'], 2.1) == [6]
    assert count_sel([_One(atoms)], ['Li'], 2.9) == [18]


# ------------------------------------------------------------------ numeric helpers and log parsing


def test_training_split_deterministic_and_checked():
    """The training jobs' split is the one stratified split: seeded, and each part holds at least 2 frames."""
    origins = ['EQ'] * 10 + ['nEQ'] * 10
    assert train_valid_indices(origins, 0.2, 1, min_frames=2) == train_valid_indices(origins, 0.2, 1, min_frames=2)
    assert train_valid_indices(origins, 0.2, 1, min_frames=2) != train_valid_indices(origins, 0.2, 2, min_frames=2)
    with pytest.raises(ValueError, match='at least 2'):
        train_valid_indices(['nEQ'] * 3, 0.5, 0, min_frames=2)


def test_error_metrics_units_and_elements():
    n_atoms = np.array([2, 3])
    ref_e, pred_e = np.array([1.0, 2.0]), np.array([1.002, 1.997])
    numbers = np.array([1, 8, 1, 1, 8])
    ref_f = np.zeros((5, 3))
    pred_f = np.zeros((5, 3))
    pred_f[:, 0] = [0.01, 0.02, -0.01, 0.01, 0.02]
    result = error_metrics(pred_e, ref_e, n_atoms, pred_f, ref_f, numbers)
    assert result['energy_rmse'] == pytest.approx(np.sqrt((0.001**2 + 0.001**2) / 2) * 1000)
    assert result['force_rmse'] == pytest.approx(np.sqrt(np.mean(pred_f**2)) * 1000)
    assert result['force_rmse_per_element']['H'] == pytest.approx(np.sqrt(3 * 0.01**2 / 9) * 1000)
    assert result['force_rmse_per_element']['O'] == pytest.approx(np.sqrt(2 * 0.02**2 / 6) * 1000)


def test_committee_force_deviation_matches_dpgen_definition():
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(4, 7, 3))
    n_atoms = np.array([3, 4])
    deviation = committee_force_deviation(forces, n_atoms)
    for frame, (start, stop) in enumerate([(0, 3), (3, 7)]):
        f = forces[:, start:stop]
        expected = max(
            np.sqrt(np.mean([np.sum((f[m, i] - f[:, i].mean(axis=0)) ** 2) for m in range(4)]))
            for i in range(stop - start)
        )
        assert deviation[frame] == pytest.approx(expected)


def test_parse_mace_results_detects_nan():
    lines = [
        {'loss': 5.0, 'rmse_e_per_atom': 0.1, 'rmse_f': 0.5, 'mode': 'eval', 'epoch': None},
        {'loss': 3.0, 'mode': 'opt', 'epoch': 0},
        {'loss': 1.0, 'mode': 'opt', 'epoch': 0},
        {'loss': 2.0, 'rmse_e_per_atom': 0.05, 'rmse_f': 0.3, 'mode': 'eval', 'epoch': 0},
        {'loss': float('nan'), 'mode': 'opt', 'epoch': 1},
    ]
    curve = parse_results_lines('\n'.join(json.dumps(line) for line in lines))
    assert list(curve['epoch']) == [0, 1] and curve['train_loss'][0] == 2.0 and np.isnan(curve['train_loss'][1])
    assert list(curve['eval_epoch']) == [-1, 0] and curve['valid_force_rmse'][1] == pytest.approx(300.0)


def test_parse_mace_error_table():
    log = (
        '| config_type   | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % |\n'
        '| train_Default |          381.8      |        574.3     |         39.28     |\n'
        '| valid_Default |            nan      |          nan     |           nan     |\n'
    )
    table = parse_error_table(log)
    assert table['train_Default'] == {'energy_rmse': 381.8, 'force_rmse': 574.3, 'relative_force_rmse_percent': 39.28}
    assert math.isnan(table['valid_Default']['force_rmse'])


def test_parse_lcurve():
    text = (
        '# step       rmse_val    rmse_trn    rmse_e_val  rmse_e_trn    rmse_f_val  rmse_f_trn   lr\n'
        '# If there is no available reference data, rmse_*_{val,trn} will print nan\n'
        '      0      4.69e+01    4.65e+01      8.17e-01    7.98e-01      1.48e+00    1.47e+00    1.0e-03\n'
        '     20      nan         nan           nan         nan           nan         nan         1.0e-03\n'
    )
    curve = parse_lcurve(text)
    assert list(curve['step']) == [0, 20] and curve['rmse_f_trn'][0] == pytest.approx(1.47)
    assert np.isnan(curve['rmse_trn'][1])


def test_deepmd_restart_cmdline(dp_code, frames, tmp_path):
    inputs = {
        'code': dp_code,
        'train': frames['train'],
        'valid': frames['valid'],
        'parameters': orm.Dict(TINY_DEEPMD),
        'parent_folder': orm.RemoteData(computer=dp_code.computer, remote_path='/tmp/old-dp-job').store(),
        'metadata': {'options': job_options()},
    }
    calcinfo, _ = _prepare(DeepmdTrainCalculation, inputs, tmp_path)
    assert calcinfo.codes_info[0].cmdline_params[:5] == ['--tf', 'train', 'input.json', '--restart', 'model.ckpt']
    assert [entry[1] for entry in calcinfo.remote_copy_list] == [
        '/tmp/old-dp-job/model.ckpt*',
        '/tmp/old-dp-job/checkpoint',
    ]


def test_committee_submits_each_member_with_the_member_inputs(mace_train_code, frames, monkeypatch):
    """Each member gets the `member` inputs, the shared frames and its own seed, valid for the base work chain."""
    builder = TrainWorkChain.get_builder_from_protocol(
        mace_train_code, frames['train'], protocol='fast', valid=frames['valid'], committee_size=2
    )
    process = instantiate_process(get_manager().get_runner(), TrainWorkChain, **builder._inputs(prune=True))
    submitted = []
    monkeypatch.setattr(process, 'submit', lambda cls, **inputs: submitted.append((cls, inputs)) or orm.WorkflowNode())
    monkeypatch.setattr(process, 'to_context', lambda **_: None)
    process.setup()
    process.run_committee()
    assert [cls for cls, _ in submitted] == [MaceTrainBaseWorkChain, MaceTrainBaseWorkChain]
    seeds = [inputs['mace']['parameters']['seed'] for _, inputs in submitted]
    assert seeds == [builder.member['mace']['parameters']['seed'] + k for k in range(2)]
    for _, inputs in submitted:
        assert inputs['mace']['train'].uuid == frames['train'].uuid
        assert inputs['mace']['valid'].uuid == frames['valid'].uuid
        assert inputs['mace']['metadata']['options']['max_wallclock_seconds'] == 3600
        inputs = {key: value for key, value in inputs.items() if key != 'metadata'}
        assert MaceTrainBaseWorkChain.spec().inputs.validate(inputs) is None


# ------------------------------------------------------------------ stress and virial terms


def test_stress_weight_without_any_stress_label_rejected(mace_train_code, dp_code, frames):
    """A stress (virial) weight > 0 on a training set without a single stress label: a clear error, nothing stored."""
    _assert_rejected(
        MaceTrainCalculation,
        {**_mace_inputs(mace_train_code, frames), 'train': frames['no_stress']},
        '`parameters.stress_weight` > 0 but no frame of `train` has a stress label',
        "`train_stress` to 'auto'",
    )
    deepmd = {
        'code': dp_code,
        'train': frames['no_stress'],
        'valid': frames['valid'],
        'parameters': orm.Dict(TINY_DEEPMD),
        'metadata': {'options': job_options()},
    }
    _assert_rejected(
        DeepmdTrainCalculation, deepmd, '`parameters.start_pref_v`/`limit_pref_v` > 0 but no frame of `train`'
    )
    # the same check runs for a work chain before submission (explicit `on` in the protocol's parameters)
    with pytest.raises(ValueError, match='no frame of `train` has a stress label'):
        MaceTrainBaseWorkChain.get_builder_from_protocol(
            mace_train_code, frames['no_stress'], overrides={'mace': {'parameters': {'train_stress': 'on'}}}
        )
    # a zero weight, or `off`, is fine; a bad mode is refused by the schema
    assert (
        MaceTrainCalculation.validate_extra(
            {**_mace_inputs(mace_train_code, frames, stress_weight=0.0), 'train': frames['no_stress']}
        )
        is None
    )
    _assert_rejected(MaceTrainCalculation, _mace_inputs(mace_train_code, frames, train_stress='yes'), 'train_stress')


def test_protocols_train_stress_where_the_data_have_it(mace_train_code, dp_code, frames, tmp_path):
    """The protocols weigh the stress (MACE loss `stress`, DeePMD virial prefactors) with `train_stress: auto`: the
    term is on for a set with stress labels and dropped, without error, for a set with none."""
    for protocol in ('fast', 'balanced', 'stringent'):
        mace = MaceTrainBaseWorkChain.get_plain_protocol_inputs(protocol)['mace']['parameters']
        assert (mace['loss'], mace['stress_weight'], mace['train_stress']) == ('stress', 10.0, 'auto')
        if mace.get('swa'):
            assert mace['swa_stress_weight'] == 10.0
        deepmd = DeepmdTrainBaseWorkChain.get_plain_protocol_inputs(protocol)['deepmd']['parameters']
        assert (deepmd['start_pref_v'], deepmd['limit_pref_v'], deepmd['train_stress']) == (0.02, 1.0, 'auto')
    cases = (('train', True), ('mixed', True), ('no_stress', False))
    for index, (name, expected) in enumerate(cases):
        builder = MaceTrainBaseWorkChain.get_builder_from_protocol(mace_train_code, frames[name])
        inputs = {**dict(builder.mace._inputs(prune=True)), 'valid': frames['valid']}
        inputs.pop('valid_fraction', None)
        folder_path = tmp_path / f'mace_{index}'
        folder_path.mkdir()
        calcinfo, folder = _prepare(MaceTrainCalculation, inputs, folder_path)
        arguments = calcinfo.codes_info[0].cmdline_params
        split = json.loads(open(folder.get_abs_path('ilmlff_split.json')).read())
        assert split['stress_trained'] is expected, name
        if expected:
            assert '--loss=stress' in arguments and '--stress_weight=10.0' in arguments
            assert '--stress_key=REF_stress' in arguments
        else:
            assert '--loss=weighted' in arguments and not any(a.startswith('--stress_weight') for a in arguments)
        assert not any(a.startswith('--train_stress') for a in arguments)
        # the model is evaluated on the stress wherever a frame has one (the valid frames all have)
        assert '--compute_stress' in calcinfo.append_text

        builder = DeepmdTrainBaseWorkChain.get_builder_from_protocol(dp_code, frames[name])
        inputs = {**dict(builder.deepmd._inputs(prune=True)), 'valid': frames['valid']}
        inputs.pop('valid_fraction', None)
        folder_path = tmp_path / f'deepmd_{index}'
        folder_path.mkdir()
        _, folder = _prepare(DeepmdTrainCalculation, inputs, folder_path)
        loss = json.loads(open(folder.get_abs_path('input.json')).read())['loss']
        split = json.loads(open(folder.get_abs_path('ilmlff_split.json')).read())
        assert split['stress_trained'] is expected, name
        assert (loss.get('start_pref_v'), loss.get('limit_pref_v')) == ((0.02, 1.0) if expected else (None, None))


def test_mixed_set_job_files(mace_train_code, dp_code, frames, tmp_path):
    """A set mixing frames with and without stress: MACE's train.xyz has REF_stress only on the frames that have one
    (mace 0.3.16 weighs the others' stress 0); DeePMD gets one system with virial.npy and one without, the virial
    being -stress x volume in eV."""
    inputs = {**_mace_inputs(mace_train_code, frames), 'train': frames['mixed']}
    (tmp_path / 'mace').mkdir()
    calcinfo, folder = _prepare(MaceTrainCalculation, inputs, tmp_path / 'mace')
    assert '--loss=stress' in calcinfo.codes_info[0].cmdline_params
    assert open(folder.get_abs_path('train.xyz')).read().count('REF_stress') == 12
    assert open(folder.get_abs_path('valid.xyz')).read().count('REF_stress') == 6

    inputs = {
        'code': dp_code,
        'train': frames['mixed'],
        'valid': frames['valid'],
        'parameters': orm.Dict(TINY_DEEPMD),
        'metadata': {'options': job_options()},
    }
    (tmp_path / 'dp').mkdir()
    _, folder = _prepare(DeepmdTrainCalculation, inputs, tmp_path / 'dp')
    data = json.loads(open(folder.get_abs_path('input.json')).read())
    systems = data['training']['training_data']['systems']
    assert len(systems) == 2
    with_virial = [s for s in systems if list((tmp_path / 'dp' / 'sandbox' / s).glob('set.*/virial.npy'))]
    assert len(with_virial) == 1
    root = tmp_path / 'dp' / 'sandbox' / with_virial[0]
    virial = np.load(next(root.glob('set.*/virial.npy'))).reshape(-1, 3, 3)
    boxes = np.load(next(root.glob('set.*/box.npy'))).reshape(-1, 3, 3)
    assert len(virial) == 12
    stress = frames['mixed'].stresses[:12]
    np.testing.assert_allclose(virial, -stress * np.abs(np.linalg.det(boxes))[:, None, None], rtol=1e-12)
    split = json.loads(open(folder.get_abs_path('ilmlff_split.json')).read())
    assert split['stress_trained'] is True and sorted(split['volumes']) == [with_virial[0], 'data/valid/BF4Li']
    assert split['volumes'][with_virial[0]] == pytest.approx([512.0] * 12)
    assert data['loss']['start_pref_v'] == 0.02 and data['loss']['limit_pref_v'] == 1.0


def test_stress_metrics_known_answer():
    """Stress RMSE over the 9 components in meV/Å^3, pressure RMSE in kbar; frames without a reference skipped."""
    from aiida_ilmlff.parsers.training import stress_metrics

    reference = np.zeros((3, 3, 3))
    reference[2] = np.nan  # a frame without a stress label
    predicted = np.zeros((3, 3, 3))
    predicted[0] = np.eye(3) * 1.0e-3  # 1 meV/Å^3 on the diagonal: P = -1e-3 eV/Å^3 = -1.602 kbar
    predicted[2] = 5.0  # ignored
    metrics = stress_metrics(predicted, reference)
    assert metrics['n_stress_frames'] == 2
    assert metrics['stress_rmse'] == pytest.approx(np.sqrt(3 / 18))
    assert metrics['stress_mae'] == pytest.approx(3 / 18)
    assert metrics['pressure_rmse'] == pytest.approx(1.6021766208 / np.sqrt(2))
    empty = stress_metrics(predicted, np.full((3, 3, 3), np.nan))
    assert empty == {'n_stress_frames': 0, 'stress_rmse': None, 'stress_mae': None, 'pressure_rmse': None}


def test_parse_mace_stress_error_table():
    log = (
        '+-------------+---------------------+------------------+-------------------+------------------------+\n'
        '| config_type | RMSE E / meV / atom | RMSE F / meV / A | relative F RMSE % | RMSE Stress / meV / A3 |\n'
        '+-------------+---------------------+------------------+-------------------+------------------------+\n'
        '| train_Default |       12.3          |      456.7       |       34.56       |          7.8           |\n'
    )
    assert parse_error_table(log)['train_Default'] == {
        'energy_rmse': 12.3,
        'force_rmse': 456.7,
        'relative_force_rmse_percent': 34.56,
        'stress_rmse': 7.8,
    }


def test_deepmd_stress_errors_from_virial_detail(tmp_path):
    """dp test's detail.v.out -> stress errors per split: rows of a system without virial.npy are skipped (deepmd-kit
    3.2.0 writes them with a zero reference), stress = -virial / volume; an unknown layout gives no stress errors."""
    from aiida_ilmlff.parsers.deepmd import DeepmdTrainParser

    order = ['data/valid/A', 'data/train/A', 'data/train/A_1']
    split = {
        'order': ['train', 'valid'],
        'frames_per_system': {'data/valid/A': 1, 'data/train/A': 2, 'data/train/A_1': 1},
    }
    split_of = {'data/valid/A': 'valid', 'data/train/A': 'train', 'data/train/A_1': 'train'}
    volumes = {'data/valid/A': [100.0], 'data/train/A': [100.0, 200.0]}
    reference = np.array([np.eye(3).ravel() * 1.0, np.eye(3).ravel() * 2.0, np.eye(3).ravel() * 4.0])
    predicted = reference + np.array([0.0, 0.1, 0.2])[:, None] * np.eye(3).ravel()  # virial errors [eV]
    rows = np.hstack([reference, predicted])
    no_virial_row = np.hstack([np.zeros(9), np.full(9, 7.0)])
    for layout in (np.vstack([rows, no_virial_row]), rows):
        np.savetxt(tmp_path / 'detail.v.out', layout)
        errors = DeepmdTrainParser._stress_errors(order, split, split_of, volumes, tmp_path)
        assert errors['valid']['n_stress_frames'] == 1 and errors['valid']['stress_rmse'] == 0.0
        assert errors['train']['n_stress_frames'] == 2
        # stress errors: 0.1/100 and 0.2/200 eV/Å^3 on the diagonal = 1 meV/Å^3 on 3 of 9 components
        assert errors['train']['stress_rmse'] == pytest.approx(np.sqrt(3 / 9))
        assert errors['train']['pressure_rmse'] == pytest.approx(1.0e-3 * 1602.1766208)
    np.savetxt(tmp_path / 'detail.v.out', rows[:2])
    assert DeepmdTrainParser._stress_errors(order, split, split_of, volumes, tmp_path) == {}
