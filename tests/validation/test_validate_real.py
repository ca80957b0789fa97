"""``ilmlff.validate`` on the smallest real case: a CP2K GFN1-xTB AIMD of 2 PYR14BF4 ion pairs as the reference, the
suite's tiny MACE model (trained on xTB labels of such boxes), its NVT by the runner, two a posteriori frames
labelled by CP2K. A few minutes on 2 cores; the numbers are printed, the mechanics asserted."""

from __future__ import annotations

import time

import pytest
from aiida import orm
from aiida.cmdline.utils.common import get_workchain_report
from aiida.engine import run_get_node

from aiida_ilmlff.calculations.functions.box import structure_from_atoms
from aiida_ilmlff.systems import build_ionic_liquid
from aiida_ilmlff.workflows.aimd import AimdWorkChain
from aiida_ilmlff.workflows.dataset import DatasetWorkChain
from aiida_ilmlff.workflows.label import LabelWorkChain
from aiida_ilmlff.workflows.validate import ValidationWorkChain
from tests.fixtures.codes import options

COMPOSITION = {'PYR14': 2, 'BF4': 2}


@pytest.mark.slow
def test_validation_of_a_tiny_mace_against_a_real_aimd(cp2k_code, runner_code, mace_model):
    start = time.perf_counter()
    dataset = DatasetWorkChain.get_builder_from_protocol(cp2k_code, COMPOSITION, protocol='fast')
    aimd = AimdWorkChain.get_builder()
    aimd.structure = structure_from_atoms(build_ionic_liquid(COMPOSITION, 1.0, seed=0))
    aimd.cp2k.cp2k.code = cp2k_code
    aimd.cp2k.cp2k.parameters = dataset.aimd.cp2k.cp2k.parameters
    aimd.cp2k.cp2k.metadata.options = options(900)
    aimd.md = orm.Dict({'steps': 16, 'temperature': 400.0})
    _, aimd_node = run_get_node(aimd)
    assert aimd_node.is_finished_ok, get_workchain_report(aimd_node, 'REPORT')
    reference = aimd_node.outputs.trajectory
    aimd_done = time.perf_counter()

    builder = ValidationWorkChain.get_builder()
    builder.models = {'model_0': mace_model}
    builder.reference = reference
    builder.md.md.code = runner_code
    builder.md.md.parameters = orm.Dict(
        {'thermostat': 'bussi', 'timestep_fs': 0.5, 'tau_t_fs': 50.0, 'steps': 60, 'traj_every': 5, 'seed': 0}
    )
    builder.md.md.metadata.options = options(900)
    builder.md.max_guard_restarts = orm.Int(0)
    builder.a_posteriori_frames = orm.Int(2)
    elements = sorted(set(reference.elements))
    plain = LabelWorkChain.get_plain_protocol_inputs('fast', code=cp2k_code, elements=elements, options=options(900))
    builder.label = LabelWorkChain.plain_inputs_to_nodes(cp2k_code, plain, elements=elements)
    builder.test_force_rmse = orm.Float(300.0)
    _, node = run_get_node(builder)
    report = get_workchain_report(node, 'REPORT')
    print(report)
    print(f'\nwall time: reference AIMD {aimd_done - start:.0f} s, validation {time.perf_counter() - aimd_done:.0f} s')
    validation = node.outputs.validation.get_dict()
    print(validation)
    assert validation['temperature_K'] == 400.0 and validation['composition'] == 'BF4:2 PYR14:2'
    if not validation['md_intact']:  # a finding about the tiny model, recorded as such
        assert node.exit_status == ValidationWorkChain.exit_codes.ERROR_MD_NOT_INTACT.status
        return
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    # every bond type of PYR14+ and BF4- compared with the AIMD's
    assert {'B-F', 'C-H', 'C-N', 'C-C'} <= set(validation['bond_shifts_A'])
    assert all(abs(shift) < 0.2 for shift in validation['bond_shifts_A'].values()), validation['bond_shifts_A']
    # the RDFs of a 70-atom box: half a box width (~4.5 Å) may not reach a first peak; then the reason is on record
    structure = node.outputs.structure.get_dict()
    assert set(structure['rdf']) >= {'PYR14-PYR14', 'PYR14-BF4', 'BF4-BF4', 'PYR14:N-BF4:B'}
    for entry in structure['rdf'].values():
        assert entry['available'] or entry['reason']
    a_posteriori = validation['a_posteriori']
    assert a_posteriori['n_frames'] == 2 and a_posteriori['force_rmse'] > 0
    assert a_posteriori['ratio_to_test'] == pytest.approx(a_posteriori['force_rmse'] / 300.0)
    labelled = node.outputs.a_posteriori
    assert set(labelled.levels_of_theory) == set(reference.levels_of_theory)
    cp2k_jobs = [n for n in node.called_descendants if n.process_label == 'Cp2kCalculation']
    assert len(cp2k_jobs) >= 1
