"""Training work chains: the NaN and walltime handlers, and a real committee of tiny MACE models."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common import LinkType
from aiida.engine import ProcessState, run_get_node
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager

from aiida_ilmlff.calculations.evaluate import EvaluateCalculation
from aiida_ilmlff.workflows.train import DeepmdTrainBaseWorkChain, MaceTrainBaseWorkChain, TrainWorkChain
from tests.fixtures.training import TINY_MACE, job_options, localhost_code


def _reports(node) -> list[str]:
    return [log.message for log in orm.Log.collection.get_logs_for(node)]


def _failed_child(exit_status: int, computer, with_remote: bool = True):
    """A stored, finished CalcJobNode with ``exit_status`` and (optionally) a ``remote_folder`` output."""
    node = orm.CalcJobNode(computer=computer, process_type='aiida.calculations:ilmlff.mace.train')
    node.set_process_state(ProcessState.FINISHED)
    node.set_exit_status(exit_status)
    node.set_process_label('MaceTrainCalculation')
    node.store()
    if with_remote:
        remote = orm.RemoteData(computer=computer, remote_path='/tmp/ilmlff-interrupted-job')
        remote.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='remote_folder')
        remote.store()
    return node


def _base_process(process_class, namespace, code, frames, parameters):
    inputs = {
        namespace: {
            'code': code,
            'train': frames['train'],
            'valid': frames['valid'],
            'parameters': orm.Dict(parameters),
            'metadata': {'options': job_options()},
        }
    }
    process = instantiate_process(get_manager().get_runner(), process_class, **inputs)
    process.setup()
    return process


def test_walltime_handler_restarts_from_checkpoint(mace_train_code, frames):
    process = _base_process(MaceTrainBaseWorkChain, 'mace', mace_train_code, frames, TINY_MACE)
    child = _failed_child(400, mace_train_code.computer)
    report = process.handle_out_of_walltime(child)
    assert report is not None and report.exit_code.status == 0
    assert process.ctx.inputs.parent_folder.uuid == child.outputs.remote_folder.uuid
    assert any('restarting from its last checkpoint' in message for message in _reports(process.node))
    # the handler ignores other failures
    assert process.handle_out_of_walltime(_failed_child(320, mace_train_code.computer)) is None


def test_nan_handler_halves_learning_rate(dp_code, frames):
    process = _base_process(DeepmdTrainBaseWorkChain, 'deepmd', dp_code, frames, {'start_lr': 0.004, 'seed': 1})
    process.ctx.inputs.parent_folder = orm.RemoteData(computer=dp_code.computer, remote_path='/tmp/x')
    report = process.handle_nan_loss(_failed_child(410, dp_code.computer))
    assert report is not None
    assert process.ctx.inputs.parameters['start_lr'] == pytest.approx(0.002)
    assert 'parent_folder' not in process.ctx.inputs  # a NaN run restarts from scratch
    assert any('start_lr 0.004 -> 0.002' in message for message in _reports(process.node))


@pytest.mark.slow
def test_nan_loss_run_ends_with_its_exit_code(aiida_profile, frames):
    """An absurd learning rate in float32 gives a NaN loss; the handler halves it; 2 runs are not enough."""
    code = localhost_code('mace_train')
    parameters = {
        **TINY_MACE,
        'num_channels': 4,
        'num_interactions': 1,
        'max_num_epochs': 1,
        'default_dtype': 'float32',
        'lr': 1.0e6,
    }
    inputs = {
        'max_iterations': orm.Int(2),
        'mace': {
            'code': code,
            'train': frames['train'],
            'valid': frames['valid'],
            'parameters': orm.Dict(parameters),
            'metadata': {'options': job_options()},
        },
    }
    _, node = run_get_node(MaceTrainBaseWorkChain, **inputs)
    assert node.exit_status == MaceTrainBaseWorkChain.exit_codes.ERROR_NAN_LOSS.status, node.exit_message
    children = sorted(node.called, key=lambda n: n.ctime)
    assert [child.exit_status for child in children] == [410, 410]
    assert children[1].inputs.parameters['lr'] == pytest.approx(5.0e5)
    messages = _reports(node)
    assert any('lr 1e+06 -> 500000' in message for message in messages), messages
    assert any('still not finite' in message for message in messages), messages


@pytest.mark.slow
def test_committee_of_two_mace_models_and_deviation(aiida_profile, frames):
    code = localhost_code('mace_train')
    builder = TrainWorkChain.get_builder_from_protocol(
        code,
        frames['all'],
        protocol='fast',
        overrides={'member': {'mace': {'parameters': {**TINY_MACE, 'max_num_epochs': 2}}}},
        committee_size=2,
        options=job_options(),
    )
    builder.valid_fraction = orm.Float(0.2)
    _, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    models = node.outputs.models
    assert sorted(models) == ['model_0', 'model_1']
    assert {models['model_0'].seed, models['model_1'].seed} == {TINY_MACE['seed'], TINY_MACE['seed'] + 1}
    assert models['model_0'].sha256 != models['model_1'].sha256
    split = node.outputs.split
    assert split['train'].n_frames == 29 and split['valid'].n_frames == 7
    for member in node.called:
        if member.process_label == 'MaceTrainBaseWorkChain':
            assert member.inputs.mace.train.uuid == split['train'].uuid
            # the CP2K frames carry a stress: every member trains the stress term and reports its error
            member_metrics = member.outputs.metrics.get_dict()
            assert member_metrics['stress_trained'] is True
            assert member_metrics['valid']['n_stress_frames'] == 7 and member_metrics['valid']['stress_rmse'] > 0
    metrics = node.outputs.metrics.get_dict()
    assert metrics['committee']['valid']['force_rmse']['n'] == 2

    # the project's runner code, as `aiida-ilmlff setup` registers it: `ilmlff-runner evaluate evaluate.json`
    evaluate = localhost_code('evaluate')
    _, evaluation = run_get_node(
        EvaluateCalculation,
        code=evaluate,
        frames=frames['test'],
        models=dict(models),
        metadata={'options': job_options()},
    )
    assert evaluation.is_finished_ok, evaluation.exit_message
    predictions = evaluation.outputs.predictions
    deviation = predictions.get_array('force_deviation_max')
    forces = predictions.get_array('forces')
    assert deviation.shape == (6,) and (deviation > 0).all()
    per_atom = np.sqrt(np.mean(np.sum((forces - forces.mean(axis=0)) ** 2, axis=-1), axis=0))
    assert deviation[0] == pytest.approx(per_atom[:6].max())
    assert evaluation.outputs.metrics['force_deviation']['max'] == pytest.approx(deviation.max())
