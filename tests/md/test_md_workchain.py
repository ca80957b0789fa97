"""``ilmlff.md.base``: protocols, continuation after the wall time, guard restarts with a halved time step."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.cmdline.utils.common import get_workchain_report
from aiida.engine import run_get_node

from aiida_ilmlff.runner.contract import GUARDS
from aiida_ilmlff.workflows.md import MDBaseWorkChain


def test_protocols_give_valid_builders(runner_code, md_structure, mace_model_stub):
    """Every protocol gives a builder whose inputs validate; keywords and overrides land where they should."""
    for protocol in MDBaseWorkChain.get_available_protocols():
        builder = MDBaseWorkChain.get_builder_from_protocol(
            runner_code, md_structure, models=[mace_model_stub], protocol=protocol
        )
        assert builder.md.parameters['ensemble'] == 'nvt'
        assert MDBaseWorkChain.spec().inputs.validate(builder._inputs(prune=True)) is None
    builder = MDBaseWorkChain.get_builder_from_protocol(
        runner_code,
        md_structure,
        models={'a': mace_model_stub},
        ensemble='npt',
        temperature_K=298.0,
        pressure_bar=1.0,
        overrides={'md': {'parameters': {'steps': 50, 'temperature_K': 310.0}}, 'max_guard_restarts': 1},
    )
    parameters = builder.md.parameters.get_dict()
    assert parameters['ensemble'] == 'npt' and parameters['pressure_bar'] == 1.0
    assert parameters['temperature_K'] == 310.0 and parameters['steps'] == 50  # overrides win over keywords
    assert builder.max_guard_restarts.value == 1 and list(builder.md.models) == ['a']
    assert MDBaseWorkChain.get_protocol_inputs('fast')['md']['parameters']['steps'] == 2000
    with pytest.raises(ValueError, match='`protocol`: unknown protocol `quick`'):
        MDBaseWorkChain.get_builder_from_protocol(runner_code, md_structure, models=mace_model_stub, protocol='quick')


def test_builder_refuses_what_cannot_be_meant(runner_code, md_structure, mace_model_stub, aiida_code_installed):
    """A temperature outside any liquid, a code of another plugin, a misspelt override: refused by name."""
    with pytest.raises(ValueError, match=r'`md\.parameters\.temperature_K` = 2000 K is outside any ionic liquid'):
        MDBaseWorkChain.get_builder_from_protocol(
            runner_code, md_structure, models=mace_model_stub, temperature_K=2000.0
        )
    cp2k = aiida_code_installed(label='cp2k-as-runner', default_calc_job_plugin='cp2k')
    with pytest.raises(ValueError, match=r'`md.code`: code `cp2k-as-runner.*` runs plugin `cp2k`'):
        MDBaseWorkChain.get_builder_from_protocol(cp2k, md_structure, models=mace_model_stub)
    with pytest.raises(ValueError, match=r'unknown key `md.paramters`'):
        MDBaseWorkChain.get_builder_from_protocol(
            runner_code, md_structure, models=mace_model_stub, overrides={'md': {'paramters': {'steps': 5}}}
        )


@pytest.fixture
def mace_model_stub(aiida_profile, tmp_path):
    """A stored MLFFModelData of a placeholder file covering B C F H N (for builders that are not run)."""
    from aiida_ilmlff.data import MLFFModelData

    path = tmp_path / 'stub.model'
    path.write_bytes(b'stub')
    return MLFFModelData.from_file(
        path, 'mace', elements=['B', 'C', 'F', 'H', 'N'], r_cut=4.0, dtype='float64', inspect=False
    ).store()


def _builder(code, structure, model, options, **parameters):
    builder = MDBaseWorkChain.get_builder_from_protocol(
        code,
        structure,
        models=[model],
        protocol='fast',
        overrides={'md': {'parameters': parameters, 'metadata': {'options': options}}},
    )
    return builder


@pytest.mark.slow
def test_walltime_continues_from_the_checkpoint(runner_code, md_structure, deepmd_model, job_options):
    """A run stopped for wall time is continued from its checkpoint; the segments are joined evenly in time."""
    builder = _builder(
        runner_code, md_structure, deepmd_model, job_options, steps=20, traj_every=10, thermo_every=5,
        checkpoint_every=10, temperature_K=400.0, tau_t_fs=25.0,
        guards={'max_bond_stretch': None},  # the under-trained DeePMD breaks molecules (test_runner_md.NO_BOND_GUARD)
    )  # fmt: skip
    builder.md.settings = orm.Dict({'threads': 1, 'max_wall_s': 0.01})
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    calculations = sorted(node.called, key=lambda n: n.ctime)
    md_runs = [c for c in calculations if c.process_label == 'MDCalculation']
    assert [c.exit_status for c in md_runs] == [400, 0]
    assert md_runs[1].inputs.restart.uuid == md_runs[0].outputs.checkpoint.uuid
    report = get_workchain_report(node, 'REPORT')
    assert 'stopped for wall time; continuing from its checkpoint at step 10' in report
    trajectory = node.outputs.trajectory
    assert trajectory.n_frames == 3 and trajectory.base.attributes.get('frame_interval_fs') == pytest.approx(10.0)
    np.testing.assert_array_equal(node.outputs.thermo.get_array('step'), [0, 5, 10, 15, 20])
    assert node.outputs.checkpoint.base.attributes.get('step') == 20


@pytest.mark.slow
def test_guard_failure_halves_the_timestep(runner_code, md_structure, mace_model, job_options):
    """A 5 fs step trips a guard; the work chain restarts from the last good frame at 2.5 fs (in the report)."""
    builder = _builder(
        runner_code, md_structure, mace_model, job_options, steps=60, timestep_fs=5.0, traj_every=2,
        thermo_every=2, checkpoint_every=2, temperature_K=400.0, tau_t_fs=25.0,
    )  # fmt: skip
    builder.max_guard_restarts = orm.Int(1)
    _, node = run_get_node(builder)
    md_runs = sorted((c for c in node.called if c.process_label == 'MDCalculation'), key=lambda n: n.ctime)
    guard_codes = {guard.exit_status for guard in GUARDS.values()}
    assert md_runs[0].exit_status in guard_codes
    assert len(md_runs) == 2
    assert md_runs[1].inputs.parameters['timestep_fs'] == 2.5
    assert md_runs[1].inputs.restart.uuid == md_runs[0].outputs.checkpoint.uuid
    report = get_workchain_report(node, 'REPORT')
    print(report)  # shown with `pytest -s`: which guard tripped, and whether 2.5 fs recovered
    assert 'with the time step halved: 5 fs -> 2.5 fs' in report
    if node.is_finished_ok:
        assert node.outputs.trajectory.base.attributes.get('time_end_fs') == pytest.approx(300.0)
    else:
        assert node.exit_status == md_runs[1].exit_status and node.exit_status in guard_codes
        assert 'giving up' in report


def test_broken_bond_is_handled_like_the_other_guards(runner_code, md_structure, mace_model, job_options):
    """The ``bond`` guard (505) gets the guard handler: one restart from the last good frame with the time step
    halved, on the starting frame's bonds (from the checkpoint); when it trips again the work chain ends with 505.
    The real tiny MACE with the threshold at 1.02x (a thermal stretch of 2 % counts as broken)."""
    builder = _builder(
        runner_code, md_structure, mace_model, job_options, steps=40, timestep_fs=1.0, traj_every=2,
        thermo_every=2, checkpoint_every=2, temperature_K=450.0, guards={'max_bond_stretch': 1.02},
    )  # fmt: skip
    builder.max_guard_restarts = orm.Int(1)
    _, node = run_get_node(builder)
    md_runs = sorted((c for c in node.called if c.process_label == 'MDCalculation'), key=lambda n: n.ctime)
    report = get_workchain_report(node, 'REPORT')
    assert [run.exit_status for run in md_runs] == [505, 505], report
    assert node.exit_status == 505 == MDBaseWorkChain.exit_codes.ERROR_BOND_BROKEN.status
    assert 'tripped the `bond` guard' in report and 'with the time step halved: 1 fs -> 0.5 fs' in report
    assert 'giving up' in report
    second = md_runs[1]
    assert second.inputs.restart.uuid == md_runs[0].outputs.checkpoint.uuid
    assert second.outputs.output_parameters['bond_guard']['reference'] == 'checkpoint'
    assert second.outputs.output_parameters['guard']['bond']['reference_length_A'] > 0
