"""Real DeePMD training (tiny se_e2_a, TensorFlow backend, CPU) on CP2K-labelled frames, and its evaluation."""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.calculations.deepmd import DeepmdTrainCalculation
from aiida_ilmlff.calculations.evaluate import EvaluateCalculation
from tests.fixtures.training import TINY_DEEPMD, job_options, localhost_code

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def deepmd_run(aiida_profile, frames):
    """One tiny DeePMD training with the virial term and a test split (module-scoped); the training set mixes frames
    with a stress (12, one system with virial.npy) and without (12, a system without)."""
    code = localhost_code('dp')
    inputs = {
        'code': code,
        'train': frames['mixed'],
        'valid': frames['valid'],
        'test': frames['test'],
        'parameters': orm.Dict(TINY_DEEPMD),
        'metadata': {'options': job_options()},
    }
    start = time.perf_counter()
    _, node = run_get_node(DeepmdTrainCalculation, **inputs)
    print(f'DeePMD training job: {time.perf_counter() - start:.1f} s wall, load average {os.getloadavg()[0]:.1f}')
    return node


def test_deepmd_training_outputs(deepmd_run):
    node = deepmd_run
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = node.outputs.model
    content = model.base.repository.get_object_content(model.filename, mode='rb')
    assert model.filename == 'frozen_model.pb'
    assert model.sha256 == hashlib.sha256(content).hexdigest()
    assert model.architecture == 'deepmd' and model.base.attributes.get('backend') == 'tensorflow'
    assert model.type_map == ['B', 'F', 'Li'] and model.r_cut == 6.0 and model.seed == TINY_DEEPMD['seed']

    metrics = node.outputs.metrics.get_dict()
    for split, n in (('train', 24), ('valid', 6), ('test', 6)):
        assert metrics[split]['n_frames'] == n and metrics[split]['n_atoms'] == 6 * n
        assert metrics[split]['energy_rmse'] > 0 and metrics[split]['force_rmse'] > 0
        assert set(metrics[split]['force_rmse_per_element']) == {'B', 'F', 'Li'}
    assert metrics['n_steps'] == TINY_DEEPMD['numb_steps']
    assert len(metrics['sel']) == 3 and all(s >= 1 for s in metrics['sel'])

    curve = node.outputs.learning_curve
    assert list(curve.get_array('step')) == list(range(0, TINY_DEEPMD['numb_steps'] + 1, TINY_DEEPMD['disp_freq']))
    assert np.isfinite(curve.get_array('rmse_f_trn')).all()
    # the last lcurve line is the training-batch error at the last step; dp test's agrees in magnitude
    data = json.loads(node.outputs.retrieved.base.repository.get_object_content('input.json'))
    assert data['model']['descriptor']['sel'] == metrics['sel']
    # the virial term: trained on the frames with a stress; stress errors of the frozen model from dp test's virials
    assert data['loss']['start_pref_v'] == TINY_DEEPMD['start_pref_v'] and metrics['stress_trained'] is True
    assert len(data['training']['training_data']['systems']) == 2
    for split, n in (('train', 12), ('valid', 6), ('test', 6)):
        assert metrics[split]['n_stress_frames'] == n
        assert metrics[split]['stress_rmse'] > 0 and metrics[split]['pressure_rmse'] > 0
    # lcurve's virial error is nan for a batch of the system without virial.npy (no reference), finite otherwise
    assert np.isfinite(curve.get_array('rmse_v_trn')).any()
    # known answer: dp test's own virial RMSE of the valid system [eV] is our stress RMSE x the box volume (8 Å)^3
    log = node.outputs.retrieved.base.repository.get_object_content('test.log')
    valid_block = log.split('# testing system : data/valid/BF4Li')[1]
    dp_virial_rmse = float(valid_block.split('Virial RMSE        :')[1].split()[0])
    assert metrics['valid']['stress_rmse'] * 512.0 / 1000.0 == pytest.approx(dp_virial_rmse, rel=1e-5)


def test_evaluate_reproduces_deepmd_metrics(deepmd_run, frames, evaluate_code):
    model = deepmd_run.outputs.model
    inputs = {
        'code': evaluate_code,
        'frames': frames['train'],
        'models': {'dp': model},
        'metadata': {'options': job_options()},
    }
    _, node = run_get_node(EvaluateCalculation, **inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    evaluated = node.outputs.metrics['models']['dp']['errors']
    trained = deepmd_run.outputs.metrics['train']
    for key in ('energy_rmse', 'force_rmse', 'energy_mae', 'force_mae'):
        assert evaluated[key] == pytest.approx(trained[key], rel=1e-4), key
    for element, value in trained['force_rmse_per_element'].items():
        assert evaluated['force_rmse_per_element'][element] == pytest.approx(value, rel=1e-4)
