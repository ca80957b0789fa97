"""The active-learning loop with stand-in codes: convergence, no candidates, labelling failures, continuation.

Training and labelling are stand-in work chains (``al_standins.py``); the exploration MD and the calibration
evaluation are the real ``ilmlff.md`` / ``ilmlff.evaluate`` jobs run by a stand-in runner script. Each test
takes 10-40 s on the shared 2-core machine.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from aiida import orm
from aiida.cmdline.utils.common import get_workchain_report
from aiida.common.links import LinkType
from aiida.engine import run_get_node

from aiida_ilmlff.workflows.active_learning import ActiveLearningWorkChain

from .al_standins import CONFIG, StandInActiveLearning, StandInTrain


def _calcjobs(node) -> list[orm.CalcJobNode]:
    return [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]


def _table_rows(report: str) -> list[str]:
    return [line.split('|_report_iteration]:')[1] for line in report.splitlines() if '|_report_iteration]:' in line]


def test_converges_with_every_iteration_on_record(standin_builder, monkeypatch):
    """The committee deviation shrinks as the set grows; every iteration leaves its nodes and a report row."""
    monkeypatch.setitem(CONFIG, 'a0', 0.13)
    _, node = run_get_node(standin_builder({'conv_accuracy': 0.9, 'max_iterations': 6}))
    report = get_workchain_report(node, 'REPORT')
    print(report)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    summary = node.outputs.iterations.get_dict()
    records = summary['iterations']
    assert summary['converged'] and summary['status'] == 'converged'
    assert summary['n_iterations'] == len(records) >= 2
    assert records[-1]['converged'] and records[-1]['ratio_accurate'] >= 0.9
    assert all(not r['converged'] for r in records[:-1])

    rows = _table_rows(report)
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        numbers = row.split()
        assert int(numbers[0]) == record['iteration'] and int(numbers[2]) == record['n_frames']
        assert f'{record["n_accurate"]} ({record["ratio_accurate"]:.3f})' in row
        assert f'{record["n_candidate"]} ({record["ratio_candidate"]:.3f})' in row

    task_max = node.inputs.selection.task_max.value
    sizes = [4] + [r['n_train_after'] for r in records]
    assert all(0 <= b - a <= task_max for a, b in itertools.pairwise(sizes))
    assert node.outputs.frames.n_frames == sizes[-1] > 4
    for record in records[:-1]:
        namespace = node.outputs.iteration[f'iter_{record["iteration"]:03d}']
        for name in ('models', 'trajectories', 'statistics', 'deviations', 'selected', 'labelled', 'frames'):
            assert name in namespace, name
        for name in ('calibration', 'calibration_data', 'calibration_plot'):
            assert name in namespace, name
        assert namespace.calibration_plot.get_content(mode='rb')[:4] == b'\x89PNG'
        labelled = namespace.labelled
        assert set(labelled.origins) == {'AL'} and set(labelled.iterations) == {record['iteration']}
        assert namespace.frames.n_frames == record['n_train_after']
        assert namespace.statistics['n_candidate'] == record['n_candidate']
    final = node.outputs.frames
    assert sorted(set(final.origins)) == ['AL', 'nEQ']
    # the converged committee was trained on the final set
    assert summary['models_training_set'] == final.uuid
    assert len(node.outputs.models) == 2


def test_no_candidates_exits_with_advice(standin_builder, monkeypatch):
    """Every frame above f_hi: no candidate, not converged -> 320 with the trust levels named; outputs kept."""
    monkeypatch.setitem(CONFIG, 'a0', 0.5)
    _, node = run_get_node(standin_builder())
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_NO_CANDIDATES.status
    assert 'trust levels need changing' in node.exit_message and 'f_hi' in node.exit_message
    summary = node.outputs.iterations.get_dict()
    assert summary['status'] == 'no_candidates' and not summary['converged']
    assert summary['iterations'][0]['n_failed'] == summary['iterations'][0]['n_frames'] > 0
    assert node.outputs.frames.uuid == node.inputs.frames.uuid
    assert len(node.outputs.models) == 2


def test_labelling_failure_keeps_what_was_labelled(standin_builder, monkeypatch):
    """ilmlff.label rejects one frame per call (exit 502): the iteration goes on with the others."""
    monkeypatch.setitem(CONFIG, 'a0', 0.12)
    monkeypatch.setitem(CONFIG, 'fail', 1)
    _, node = run_get_node(standin_builder({'max_iterations': 2}))
    report = get_workchain_report(node, 'REPORT')
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    first = node.outputs.iterations['iterations'][0]
    assert first['n_selected'] == 4 and first['n_labelled'] == 3 and first['n_label_rejected'] == 1
    assert first['label_exit_status'] == 502
    assert first['n_train_after'] == first['n_train_before'] + 3
    assert 'continuing with the 3 of 4 frames it labelled' in report


def test_labelling_failure_of_every_frame_stops(standin_builder, monkeypatch):
    """No selected frame labelled -> 403; the outputs are the training set and committee before the iteration."""
    monkeypatch.setitem(CONFIG, 'a0', 0.12)
    monkeypatch.setitem(CONFIG, 'fail', 'all')
    _, node = run_get_node(standin_builder())
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_LABEL.status
    assert node.outputs.frames.uuid == node.inputs.frames.uuid
    summary = node.outputs.iterations.get_dict()
    assert summary['status'] == 'labelling_failed'
    assert summary['iterations'][0]['n_labelled'] == 0


def test_continuation_redoes_nothing(standin_builder, monkeypatch):
    """Iteration 3 starts from iteration 2's outputs: no training, MD or evaluation of the first run is redone."""
    monkeypatch.setitem(CONFIG, 'a0', 0.12)
    monkeypatch.setitem(CONFIG, 'power', 0.3)
    _, first = run_get_node(standin_builder({'max_iterations': 2, 'conv_accuracy': 0.99}))
    assert first.is_finished_ok, (first.exit_status, first.exit_message)
    done = first.outputs.iterations.get_dict()
    assert done['n_iterations'] == 2 and not done['converged'] and done['status'] == 'max_iterations'
    # with final_training the committee was retrained on the final set, so the continuation can reuse it
    assert done['models_training_set'] == first.outputs.frames.uuid
    first_jobs = _calcjobs(first)
    assert sorted(j.process_label for j in first_jobs) == ['EvaluateCalculation'] * 2 + ['MDCalculation'] * 2

    builder = StandInActiveLearning.get_builder_continuation(first, max_iterations=3)
    _, second = run_get_node(builder)
    report = get_workchain_report(second, 'REPORT')
    print(report)
    assert second.is_finished_ok, (second.exit_status, second.exit_message)
    assert 'continuing after iteration 2' in report and 'reusing its committee' in report

    second_jobs = _calcjobs(second)
    assert sorted(j.process_label for j in second_jobs) == ['EvaluateCalculation', 'MDCalculation']
    assert not {j.uuid for j in second_jobs} & {j.uuid for j in first_jobs}
    md = next(j for j in second_jobs if j.process_label == 'MDCalculation')
    assert {m.uuid for m in md.inputs.models.values()} == {m.uuid for m in first.outputs.models.values()}
    trainings = [n for n in second.called if n.process_class is StandInTrain]
    assert [n.base.links.get_incoming(link_type=LinkType.CALL_WORK).one().link_label for n in trainings] == [
        'train_final'
    ]

    summary = second.outputs.iterations.get_dict()
    assert [r['iteration'] for r in summary['iterations']] == [1, 2, 3]
    assert summary['iterations'][:2] == done['iterations']
    assert list(second.outputs.iteration) == ['iter_003']
    labelled = second.outputs.iteration.iter_003.labelled
    assert set(labelled.iterations) == {3}
    assert second.outputs.frames.n_frames == first.outputs.frames.n_frames + labelled.n_frames
    np.testing.assert_array_equal(
        second.outputs.frames.iterations[: first.outputs.frames.n_frames], first.outputs.frames.iterations
    )


def test_relative_trust_levels_follow_the_first_committee(standin_builder, monkeypatch):
    """`relative`: f_lo / f_hi in units of the first committee's validation force RMSE, then fixed for the run."""
    monkeypatch.setitem(CONFIG, 'a0', 0.13)
    # 0.05 and 0.15 eV/Å for a first committee of validation force RMSE 0.13 eV/Å (the stand-in's amplitude)
    overrides = {'selection': {'trust_levels': 'relative', 'f_lo': 0.05 / 0.13, 'f_hi': 0.15 / 0.13}}
    _, node = run_get_node(standin_builder({**overrides, 'conv_accuracy': 0.9, 'max_iterations': 6}))
    report = get_workchain_report(node, 'REPORT')
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    summary = node.outputs.iterations.get_dict()
    trust = summary['trust']
    assert trust['mode'] == 'relative' and trust['iteration'] == 1
    assert trust['force_rmse_valid'] == pytest.approx(0.13)
    assert (trust['f_lo'], trust['f_hi']) == pytest.approx((0.05, 0.15))
    records = summary['iterations']
    assert len(records) >= 2 and summary['converged']
    # the levels stay those of the first committee although every later committee is more accurate
    assert all((r['f_lo'], r['f_hi']) == (trust['f_lo'], trust['f_hi']) for r in records)
    assert "x the committee's validation force RMSE 0.13 eV/Å, kept for the whole run" in report
    ratios = [r['ratio_accurate'] for r in records]
    assert ratios[-1] > ratios[0]


def test_every_frame_failed_falls_back_to_the_lowest_deviations(standin_builder, monkeypatch):
    """No frame between the levels: the failed frames of lowest deviation are labelled (not a 320 stop)."""
    monkeypatch.setitem(CONFIG, 'a0', 0.5)
    _, node = run_get_node(standin_builder({'max_iterations': 1, 'selection': {'fallback_to_failed': True}}))
    report = get_workchain_report(node, 'REPORT')
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    record = node.outputs.iterations['iterations'][0]
    assert record['n_failed'] == record['n_frames'] > 0 and record['n_candidate'] == 0
    assert record['selected_from'] == 'failed' and record['n_selected'] == 4 and record['n_labelled'] == 4
    assert '(picked from the failed band)' in report
    namespace = node.outputs.iteration.iter_001
    deviations = namespace.deviations
    selected = deviations.get_array('selected')
    values = deviations.get_array('max_devi_f')
    # the picked frames are the lowest deviations of the frames the minimum-distance filter let through
    passed = ~selected & np.isfinite(values)
    assert values[selected].max() <= np.sort(values[passed])[: 5 * 4].max()
    assert {json.loads(p)['class'] for p in namespace.selected.perturbations} == {'failed'}
    assert node.outputs.frames.n_frames == node.inputs.frames.n_frames + 4


def test_an_exploration_that_stopped_early_does_not_converge(standin_builder, monkeypatch):
    """Every saved frame accurate, but the MD tripped its force guard: not converged (it used to stop 'converged'
    having learnt nothing); the last frames before the trip are labelled instead."""
    monkeypatch.setitem(CONFIG, 'a0', 0.005)
    overrides = {
        'max_iterations': 1,
        'selection': {'fallback_to_failed': True},
        'exploration': {'parameters': {'guards': {'max_force_eV_A': 0.2}}},
    }
    _, node = run_get_node(standin_builder(overrides))
    report = get_workchain_report(node, 'REPORT')
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    record = node.outputs.iterations['iterations'][0]
    assert record['ratio_accurate'] == 1.0 and not record['converged'], record
    assert record['truncated_runs'] and record['selected_from'] == 'truncated'
    assert 0 < record['n_selected'] <= 4 and record['n_labelled'] == record['n_selected']
    assert 'the stage cannot converge on a run that stopped early' in report
    assert '(picked: the last frames before an MD stopped early)' in report
    namespace = node.outputs.iteration.iter_001
    selected = namespace.deviations.get_array('selected')
    frames = namespace.deviations.get_array('frame')
    assert frames[selected].max() == frames.max()  # the last saved frame is among the picked
    assert {json.loads(p)['class'] for p in namespace.selected.perturbations} == {'truncated'}
    summary = node.outputs.iterations.get_dict()
    assert not summary['converged'] and summary['status'] == 'max_iterations'
