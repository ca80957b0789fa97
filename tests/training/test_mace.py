"""Real MACE training (tiny, CPU, float64) on CP2K-labelled frames; evaluation; fine-tuning."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.calculations.evaluate import EvaluateCalculation
from aiida_ilmlff.calculations.mace import MaceTrainCalculation
from aiida_ilmlff.data import MLFFModelData
from tests.fixtures.training import TINY_MACE, job_options, localhost_code

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def mace_run(aiida_profile, frames):
    """One tiny MACE training with the stress term (loss `stress`) on train/valid/test (module-scoped: several tests
    read it); the training set mixes frames with a stress (12) and without (12)."""
    code = localhost_code('mace_train')
    inputs = {
        'code': code,
        'train': frames['mixed'],
        'valid': frames['valid'],
        'test': frames['test'],
        'parameters': orm.Dict(TINY_MACE),
        'metadata': {'options': job_options()},
    }
    start = time.perf_counter()
    _, node = run_get_node(MaceTrainCalculation, **inputs)
    print(f'MACE training job: {time.perf_counter() - start:.1f} s wall, load average {os.getloadavg()[0]:.1f}')
    return node


def test_mace_training_outputs(mace_run):
    node = mace_run
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    model = node.outputs.model
    assert isinstance(model, MLFFModelData)
    content = model.base.repository.get_object_content(model.filename, mode='rb')
    assert model.sha256 == hashlib.sha256(content).hexdigest()
    assert model.architecture == 'mace' and model.base.attributes.get('backend') == 'torch'
    assert model.elements == ['B', 'F', 'Li'] and model.type_map == ['Li', 'B', 'F']
    assert model.r_cut == 4.0 and model.dtype == 'float64' and model.seed == TINY_MACE['seed']

    metrics = node.outputs.metrics.get_dict()
    for split, n in (('train', 24), ('valid', 6), ('test', 6)):
        assert metrics[split]['n_frames'] == n
        assert metrics[split]['energy_rmse'] > 0 and metrics[split]['force_rmse'] > 0
        assert set(metrics[split]['force_rmse_per_element']) == {'B', 'F', 'Li'}
    # MACE's own table (0.1 meV precision, EMA weights of the saved model) agrees with ours
    reported = metrics['reported_by_mace']
    assert reported['train_Default']['energy_rmse'] == pytest.approx(metrics['train']['energy_rmse'], abs=0.051)
    assert reported['valid_Default']['force_rmse'] == pytest.approx(metrics['valid']['force_rmse'], abs=0.051)
    assert metrics['n_epochs'] == TINY_MACE['max_num_epochs']
    # the stress term: trained, and the stress error of the saved model over the frames that have a stress
    assert metrics['stress_trained'] is True
    assert metrics['units']['stress_rmse'] == 'meV/Å^3' and metrics['units']['pressure_rmse'] == 'kbar'
    for split, n in (('train', 12), ('valid', 6), ('test', 6)):
        assert metrics[split]['n_stress_frames'] == n
        assert metrics[split]['stress_rmse'] > 0 and metrics[split]['pressure_rmse'] > 0
    assert reported['valid_Default']['stress_rmse'] == pytest.approx(metrics['valid']['stress_rmse'], abs=0.051)
    log = node.outputs.retrieved.base.repository.get_object_content(f'logs/mace_run-{TINY_MACE["seed"]}.log')
    assert 'WeightedEnergyForcesStressLoss' in log and 'stress_weight=10.000' in log

    curve = node.outputs.learning_curve
    assert list(curve.get_array('epoch')) == list(range(TINY_MACE['max_num_epochs']))
    assert np.isfinite(curve.get_array('train_loss')).all()
    assert curve.get_array('valid_force_rmse').shape == (TINY_MACE['max_num_epochs'] + 1,)
    assert np.isfinite(curve.get_array('valid_stress_rmse')).all()


def test_evaluate_reproduces_training_metrics(mace_run, frames, evaluate_code):
    model = mace_run.outputs.model
    inputs = {
        'code': evaluate_code,
        'frames': frames['train'],
        'models': {'mace': model},
        'metadata': {'options': job_options()},
    }
    _, node = run_get_node(EvaluateCalculation, **inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    evaluated = node.outputs.metrics['models']['mace']['errors']
    trained = mace_run.outputs.metrics['train']
    for key in ('energy_rmse', 'force_rmse', 'energy_mae', 'force_mae'):
        assert evaluated[key] == pytest.approx(trained[key], rel=1e-4), key
    for element, value in trained['force_rmse_per_element'].items():
        assert evaluated['force_rmse_per_element'][element] == pytest.approx(value, rel=1e-4)
    predictions = node.outputs.predictions
    assert predictions.get_array('energy').shape == (1, 24)
    assert predictions.get_array('forces').shape == (1, 24 * 6, 3)
    assert node.outputs.parity_plot.filename == 'parity.png'
    assert node.outputs.parity_plot.get_content(mode='rb')[:8] == b'\x89PNG\r\n\x1a\n'


def test_mace_fine_tuning(mace_run, frames, mace_train_code):
    """The tiny model trained above stands in for a foundation model (MACE-MP-0 cannot be downloaded here)."""
    foundation = mace_run.outputs.model
    parameters = {
        'max_num_epochs': 2,
        'batch_size': 4,
        'valid_batch_size': 8,
        'default_dtype': 'float64',
        'seed': 4,
        'lr': 0.001,
        'E0s': 'foundation',
    }
    inputs = {
        'code': mace_train_code,
        'train': frames['valid'],
        'valid': frames['test'],
        'foundation_model': foundation,
        'parameters': orm.Dict(parameters),
        'metadata': {'options': job_options()},
    }
    _, node = run_get_node(MaceTrainCalculation, **inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    tuned = node.outputs.model
    assert tuned.r_cut == foundation.r_cut and tuned.sha256 != foundation.sha256
    log = node.outputs.retrieved.base.repository.get_object_content('logs/mace_run-4.log')
    assert 'Using foundation model foundation.model as initial checkpoint.' in log
    # the fine-tune starts from the foundation weights: its first validation is already as good as the foundation's
    initial = node.outputs.learning_curve.get_array('valid_force_rmse')[0]
    assert initial == pytest.approx(mace_run.outputs.metrics['test']['force_rmse'], rel=1e-6)


def test_mace_restart_from_checkpoint(mace_run, frames, mace_train_code):
    """A job given the remote folder of a finished (or interrupted) one continues from its last checkpoint."""
    epochs = TINY_MACE['max_num_epochs']
    inputs = {
        'code': mace_train_code,
        'train': frames['train'],
        'valid': frames['valid'],
        'parent_folder': mace_run.outputs.remote_folder,
        'parameters': orm.Dict({**TINY_MACE, 'max_num_epochs': epochs + 2}),
        'metadata': {'options': job_options()},
    }
    _, node = run_get_node(MaceTrainCalculation, **inputs)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    log = node.outputs.retrieved.base.repository.get_object_content(f'logs/mace_run-{TINY_MACE["seed"]}.log')
    assert f'Loading checkpoint: ./checkpoints/mace_run-{TINY_MACE["seed"]}_epoch-{epochs - 1}.pt' in log
    # mace-torch 0.3.16 resumes at the epoch of the checkpoint, so that epoch is trained once more
    assert list(node.outputs.learning_curve.get_array('epoch')) == [epochs - 1, epochs, epochs + 1]
