"""The protocols' progress monitors and ``gpu`` option (issue 19): plain inputs, nodes and the Slurm job script.

Training (``train/mace.yaml``, ``train/deepmd.yaml``) and MD (``md/base.yaml``) turn the progress monitors of
:mod:`aiida_ilmlff.calculations.progress` on (fast: every 10 s, else every 300 s); a user switches them off with
``None``. ``gpu`` adds ``#SBATCH --gres`` and/or ``CUDA_VISIBLE_DEVICES`` and the CUDA device; bad values are refused
when the builder is made, with the key named. No job runs here.
"""

from __future__ import annotations

import pytest

from aiida_ilmlff.workflows.md import MDBaseWorkChain
from aiida_ilmlff.workflows.protocols.gpu import apply_gpu, check_gpu
from aiida_ilmlff.workflows.train import DeepmdTrainBaseWorkChain, MaceTrainBaseWorkChain, TrainWorkChain


@pytest.mark.parametrize(('protocol', 'interval'), [('fast', 10), ('balanced', 300), ('stringent', 300)])
def test_protocols_turn_the_progress_monitors_on(protocol, interval, mace_train_code, dp_code):
    """Each training and MD job of every protocol gets its progress monitor as a ``monitors.progress`` Dict."""
    md = MDBaseWorkChain.plain_inputs_to_nodes(None, MDBaseWorkChain.get_plain_protocol_inputs(protocol))['md']
    assert md['monitors']['progress'].get_dict() == {
        'entry_point': 'ilmlff.md.progress',
        'minimum_poll_interval': interval,
    }
    for base, code, entry_point in (
        (MaceTrainBaseWorkChain, mace_train_code, 'ilmlff.mace.progress'),
        (DeepmdTrainBaseWorkChain, dp_code, 'ilmlff.deepmd.progress'),
    ):
        nodes = base.plain_inputs_to_nodes(code, base.get_plain_protocol_inputs(protocol))[base._namespace]
        assert nodes['monitors']['progress'].get_dict() == {
            'entry_point': entry_point,
            'minimum_poll_interval': interval,
        }
    committee = TrainWorkChain.plain_inputs_to_nodes(
        mace_train_code, TrainWorkChain.get_plain_protocol_inputs(protocol)
    )
    assert committee['member']['mace']['monitors']['progress'].get_dict()['entry_point'] == 'ilmlff.mace.progress'


def test_progress_monitors_can_be_switched_off_or_tuned(mace_train_code):
    """``None`` drops the monitor; another interval is taken; a bad one is refused naming the key."""
    off = MDBaseWorkChain.get_plain_protocol_inputs('fast', {'md': {'monitors': {'progress': None}}})
    assert 'monitors' not in MDBaseWorkChain.plain_inputs_to_nodes(None, off)['md']
    tuned = MDBaseWorkChain.get_plain_protocol_inputs(
        'fast', {'md': {'monitors': {'progress': {'minimum_poll_interval': 60}}}}
    )
    assert (
        MDBaseWorkChain.plain_inputs_to_nodes(None, tuned)['md']['monitors']['progress']['minimum_poll_interval'] == 60
    )
    overrides = {'member': {'mace': {'monitors': {'progress': None}}}}
    committee = TrainWorkChain.get_plain_protocol_inputs('fast', overrides)
    assert 'monitors' not in TrainWorkChain.plain_inputs_to_nodes(mace_train_code, committee)['member']['mace']

    bad = MDBaseWorkChain.get_plain_protocol_inputs(
        'fast', {'md': {'monitors': {'progress': {'minimum_poll_interval': 0}}}}
    )
    with pytest.raises(ValueError, match=r'`md.monitors.progress`: The `minimum_poll_interval` must be a positive'):
        MDBaseWorkChain.plain_inputs_to_nodes(None, bad)
    typo = MaceTrainBaseWorkChain.get_plain_protocol_inputs(
        'fast', {'mace': {'monitors': {'progress': {'entry_point': 'ilmlff.mace.progres'}}}}
    )
    with pytest.raises(ValueError, match=r'`mace.monitors.progress`: .*ilmlff.mace.progres'):
        MaceTrainBaseWorkChain.plain_inputs_to_nodes(mace_train_code, typo)


def test_gpu_option_sets_gres_visible_devices_and_the_device(dp_code):
    """``gpu.gres``: the Slurm line (kept once beside other commands); ``cuda_visible_devices``: the variable; MACE
    and the MD runner on ``cuda``; DeePMD (no device key) unchanged; the meta key is consumed."""
    md = MDBaseWorkChain.get_plain_protocol_inputs('balanced', {'gpu': {'gres': 'gpu:1'}})
    assert 'gpu' not in md
    assert md['md']['metadata']['options']['custom_scheduler_commands'] == '#SBATCH --gres=gpu:1'
    assert md['md']['settings'] == {'threads': 4, 'device': 'cuda'}
    nodes = MDBaseWorkChain.plain_inputs_to_nodes(None, md)['md']
    assert nodes['settings'].get_dict()['device'] == 'cuda'

    mace = MaceTrainBaseWorkChain.get_plain_protocol_inputs(
        'fast',
        {'gpu': {'cuda_visible_devices': 1}, 'mace': {'metadata': {'options': {'custom_scheduler_commands': '#X'}}}},
    )
    options = mace['mace']['metadata']['options']
    assert options['environment_variables'] == {'CUDA_VISIBLE_DEVICES': '1'}
    assert options['custom_scheduler_commands'] == '#X'
    assert mace['mace']['parameters']['device'] == 'cuda'

    deepmd = DeepmdTrainBaseWorkChain.get_plain_protocol_inputs('fast', {'gpu': {'gres': 'gpu:a100:2'}})
    assert deepmd['deepmd']['metadata']['options']['custom_scheduler_commands'] == '#SBATCH --gres=gpu:a100:2'
    assert 'device' not in deepmd['deepmd']['parameters']
    DeepmdTrainBaseWorkChain.plain_inputs_to_nodes(dp_code, deepmd)  # still valid DeePMD parameters

    committee = TrainWorkChain.get_plain_protocol_inputs('fast', {'member': {'gpu': {'gres': 'gpu:1'}}})
    assert committee['member']['mace']['parameters']['device'] == 'cuda'

    calc = {'metadata': {'options': {'custom_scheduler_commands': '#SBATCH --gres=gpu:1'}}}
    apply_gpu(calc, {'gres': 'gpu:1'}, None)
    assert calc['metadata']['options']['custom_scheduler_commands'] == '#SBATCH --gres=gpu:1'


@pytest.mark.parametrize(
    ('gpu', 'message'),
    [
        ({'gres': 'gpu 1'}, r'`gpu.gres` must be a Slurm gres string such as gpu:1'),
        ({'gres': 2}, r'`gpu.gres` must be a Slurm gres string'),
        ({}, r'`gpu` needs `gres` \(Slurm, e.g. gpu:1\) or `cuda_visible_devices`'),
        (
            {'gres': 'gpu:1', 'gpus': 1},
            r'unknown key.*gpus.*known.*cuda_visible_devices, gres',
        ),
        ({'cuda_visible_devices': '0; rm -rf'}, r'`gpu.cuda_visible_devices` must be GPU indices or UUIDs'),
        ('gpu:1', r'`gpu` must be a mapping with `gres` and/or `cuda_visible_devices`'),
    ],
)
def test_bad_gpu_option_is_refused_before_anything_is_made(gpu, message):
    """The validator names the key and the fix; the work chains raise it when the builder's inputs are made."""
    assert check_gpu(gpu) is not None
    with pytest.raises(ValueError, match=message):
        MDBaseWorkChain.get_plain_protocol_inputs('fast', {'gpu': gpu})
    with pytest.raises(ValueError, match=message):
        MaceTrainBaseWorkChain.get_plain_protocol_inputs('fast', {'gpu': gpu})


def test_good_gpu_values():
    assert check_gpu(None) is None
    assert check_gpu({'gres': 'gpu:1'}) is None
    assert check_gpu({'gres': 'gpu:a100:2,mps:100'}) is None
    assert check_gpu({'cuda_visible_devices': '0,1'}) is None
    assert check_gpu({'cuda_visible_devices': 0}) is None


def test_gres_line_reaches_the_slurm_job_script():
    """aiida-core's ``core.slurm`` writes ``custom_scheduler_commands`` among the ``#SBATCH`` lines of the script."""
    from aiida.common.datastructures import CodeRunMode
    from aiida.schedulers.datastructures import JobTemplate, JobTemplateCodeInfo
    from aiida.schedulers.plugins.slurm import SlurmScheduler

    calc = {}
    apply_gpu(calc, {'gres': 'gpu:1'}, ('settings', 'device'))
    template = JobTemplate()
    template.job_resource = SlurmScheduler.create_job_resource(num_machines=1, num_mpiprocs_per_machine=1)
    template.custom_scheduler_commands = calc['metadata']['options']['custom_scheduler_commands']
    template.codes_info = [JobTemplateCodeInfo(cmdline_params=['ilmlff-runner', 'md', 'md.json'])]
    template.codes_run_mode = CodeRunMode.SERIAL
    template.shebang = '#!/bin/bash'
    script = SlurmScheduler().get_submit_script(template)
    lines = script.splitlines()
    assert '#SBATCH --gres=gpu:1' in lines
    assert lines.index('#SBATCH --gres=gpu:1') < next(k for k, line in enumerate(lines) if 'ilmlff-runner' in line)
