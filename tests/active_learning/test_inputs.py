"""Inputs of ilmlff.active_learning: protocols, and bad input refused before submission (nothing stored)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida.engine import run_get_node

from aiida_ilmlff.common.geometry import min_pair_distance
from aiida_ilmlff.sampling.selection import (
    SELECTION_DEFAULTS,
    adaptive_lower_level,
    classify,
    correlation,
    last_frames,
    select_indices,
    selection_statistics,
)
from aiida_ilmlff.workflows.active_learning import (
    ActiveLearningWorkChain,
    normalise_stage,
    reference_temperature,
    resolve_stage_temperatures,
)
from tests.fixtures import count_nodes


def test_classification_follows_dpgen():
    """accurate < f_lo <= candidate < f_hi <= failed; nan is failed; the adaptive level never exceeds f_lo."""
    deviation = np.array([0.01, 0.05, 0.1, 0.15, 0.3, np.nan])
    np.testing.assert_array_equal(classify(deviation, 0.05, 0.15), [0, 1, 1, 2, 2, 2])
    low = np.linspace(0.0, 0.04, 101)
    assert adaptive_lower_level(low, 0.05, 0.15, 0.1) == pytest.approx(0.036)
    assert adaptive_lower_level(np.array([0.1, 0.12]), 0.05, 0.15, 0.5) == 0.05


def test_a_run_that_stopped_early_is_not_converged():
    """Every saved frame accurate but one MD stopped early: not converged; the fallback pool is the end of that run,
    the latest frame first, the runs interleaved."""
    run = np.array([0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(last_frames(run, [1], 2), [6, 5])
    np.testing.assert_array_equal(last_frames(run, [0, 1], 2), [2, 6, 1, 5])
    assert last_frames(run, [], 2).size == 0
    deviation = np.full(7, 0.01)
    classes = classify(deviation, 0.05, 0.15)
    runs = [('a', {}), ('b', {})]
    counts = {'f_lo_used': 0.05, 'n_selectable': 0, 'n_rejected_min_distance': 0, 'n_rejected_duplicate': 0}
    intact = selection_statistics(deviation, run, classes, [], runs, SELECTION_DEFAULTS, **counts)
    assert intact['converged'] and intact['truncated_runs'] == []
    broken = selection_statistics(deviation, run, classes, [], runs, SELECTION_DEFAULTS, truncated=['b'], **counts)
    assert broken['ratio_accurate'] == 1.0 and not broken['converged']
    assert broken['truncated_runs'] == ['b']
    assert broken['runs']['b']['truncated'] and not broken['runs']['a']['truncated']


def test_filters_and_correlation():
    """Minimum image distances; near-duplicates of the same run are skipped; Pearson/Spearman."""
    cell = np.eye(3) * 5.0
    assert min_pair_distance(np.array([[0.1, 0, 0], [4.9, 0, 0]]), cell)[0] == pytest.approx(0.2)
    positions = {0: np.zeros((2, 3)), 1: np.full((2, 3), 0.001), 2: np.ones((2, 3))}
    picked, duplicates = select_indices(
        [0, 1, 2], 5, 0, positions.__getitem__, lambda i: cell, lambda i: 0, duplicate_rmsd=0.01
    )
    assert sorted(picked) in ([0, 2], [1, 2]) and len(duplicates) == 1
    picked, _ = select_indices([0, 1, 2], 2, 0, positions.__getitem__, lambda i: cell, lambda i: i, 0.01)
    assert len(picked) == 2
    result = correlation([1, 2, 3, 4], [2, 4, 6, 9])
    assert result['spearman'] == pytest.approx(1.0) and result['pearson'] > 0.98
    assert correlation([1, 2], [1, 2]) == {'pearson': None, 'spearman': None}


def test_stage_normalisation():
    stage = normalise_stage({'temperature_K': 450.0, 'steps': 10})
    assert stage['temperatures_K'] == [450.0] and stage['ensemble'] == 'nvt' and stage['pressures_bar'] == [None]
    with pytest.raises(ValueError, match='needs `pressures_bar`'):
        normalise_stage({'ensemble': 'npt', 'temperatures_K': [450.0], 'steps': 10})


def test_stage_temperatures_relative_to_the_reference():
    """Protocol stages are offsets from the system's temperature: one protocol fits 450 K PYR14BF4 and 298 K TFSI."""
    stages = [{'temperature_offsets_K': [0.0, 50.0], 'steps': 10}, {'temperatures_K': [400.0], 'steps': 10}]
    resolved = resolve_stage_temperatures(stages, 298.0)
    assert resolved[0]['temperatures_K'] == [298.0, 348.0] and 'temperature_offsets_K' not in resolved[0]
    assert resolved[1] == stages[1]
    assert stages[0]['temperature_offsets_K'] == [0.0, 50.0]  # the input is not changed
    with pytest.raises(ValueError, match='pass `temperature`'):
        resolve_stage_temperatures(stages, None)
    with pytest.raises(ValueError, match='not both'):
        resolve_stage_temperatures([{'temperature_offsets_K': [0.0], 'temperatures_K': [300.0], 'steps': 1}], 300.0)
    with pytest.raises(ValueError, match='give numbers'):
        resolve_stage_temperatures([{'temperature_offsets_K': ['hot'], 'steps': 1}], 300.0)
    with pytest.raises(ValueError, match='only resolved by get_builder_from_protocol'):
        normalise_stage({'temperature_offsets_K': [0.0], 'steps': 10})


def test_protocol_stages_follow_the_temperature(standin_codes, copper_structure, aiida_profile):
    """`fast` explores at T and T + 50 K; T defaults to the MD temperature recorded on the EQ frames."""
    from aiida_ilmlff.data import FramesData

    from .al_standins import copper_atoms

    def build(frames, temperature=None):
        builder = ActiveLearningWorkChain.get_builder_from_protocol(
            standin_codes,
            frames,
            structures=copper_structure,
            protocol='fast',
            overrides={'train': {'valid_fraction': 0.5}},
            temperature=temperature,
        )
        return [t for stage in builder.exploration.stages.get_list() for t in stage['temperatures_K']]

    images = copper_atoms(4, 0)
    unrecorded = FramesData.from_ase(images).store()
    assert reference_temperature(unrecorded) is None
    with pytest.raises(ValueError, match='pass `temperature`'):
        build(unrecorded)
    assert build(unrecorded, 298.0) == [298.0, 348.0]
    for atoms in images:
        atoms.info['temperature'] = 450.0
    recorded = FramesData.from_ase(images, origin='EQ').store()
    assert reference_temperature(recorded) == 450.0
    assert build(recorded) == [450.0, 500.0]


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_protocols_build_valid_builders(standin_codes, copper_frames, copper_structure, protocol):
    """Every protocol gives a builder whose inputs validate (labelling kept at `fast`: Cu has no DFT kinds)."""
    builder = ActiveLearningWorkChain.get_builder_from_protocol(
        standin_codes,
        copper_frames(4),
        structures=copper_structure,
        protocol=protocol,
        overrides={'label': {'protocol': 'fast'}, 'train': {'valid_fraction': 0.5}},
        temperature=450.0,
    )
    assert ActiveLearningWorkChain.spec().inputs.validate(builder._inputs(prune=True)) is None
    assert builder.selection.f_lo.value < builder.selection.f_hi.value
    assert builder.train.committee_size.value >= 2
    assert list(builder.exploration.structures) == ['structure_0']
    assert builder.exploration.code.uuid == standin_codes['runner'].uuid
    with pytest.raises(ValueError, match='missing'):
        ActiveLearningWorkChain.get_builder_from_protocol({'train': standin_codes['train']}, None, structures=None)


@pytest.mark.parametrize(
    ('overrides', 'expected'),
    [
        ({'selection': {'f_lo': 0.2, 'f_hi': 0.15}}, 'must be >= 0 and below `selection.f_hi`'),
        ({'selection': {'f_lo': 0.15, 'f_hi': 0.15}}, 'lower f_lo or raise f_hi'),
        ({'train': {'committee_size': 1}}, '`committee_size` is 1: a committee needs at least 2 models'),
        (
            {'exploration': {'stages': [{'ensemble': 'nvt', 'temperatures_K': [300.0]}]}},
            '`exploration.stages[0]`: `steps` is None: every stage needs a positive integer number of MD steps',
        ),
        (
            {'exploration': {'stages': [{'temperatures_K': [300.0], 'steps': 10, 'structures': ['nope']}]}},
            "['nope'] not in `exploration.structures`",
        ),
        ({'conv_accuracy': 1.5}, '`conv_accuracy` must be in (0, 1]'),
        ({'train': {'valid_fraction': 0.1}}, '`frames` cannot be split for training'),
    ],
)
def test_bad_input_fails_before_submission_storing_nothing(standin_builder, overrides, expected):
    """f_lo >= f_hi, a committee of 1, a stage without steps...: refused by the validator, no node stored."""
    before = None
    with pytest.raises(ValueError) as info:
        builder = standin_builder(overrides)  # a committee of 1 is refused by the builder already
        before = count_nodes()
        run_get_node(builder)
    assert expected in str(info.value), str(info.value)
    assert before is None or count_nodes() == before


@pytest.mark.parametrize(
    ('change', 'expected'),
    [
        ({'runner': 'label'}, '`codes.runner`: code `al-standin-cp2k'),
        ({'train': 'runner'}, '`member.mace.code`: code `al-standin-runner'),
    ],
)
def test_codes_of_the_wrong_plugin(standin_codes, copper_frames, copper_structure, change, expected):
    """A CP2K code as the runner, the runner as the MACE training code: refused by the builder, naming the key."""
    codes = dict(standin_codes)
    for key, other in change.items():
        codes[key] = standin_codes[other]
    with pytest.raises(ValueError, match=expected):
        ActiveLearningWorkChain.get_builder_from_protocol(codes, copper_frames(4), structures=copper_structure)


def test_unknown_override_key_names_its_path(standin_builder):
    """A misspelt key at any depth is an error naming the full path, never a warning."""
    with pytest.raises(ValueError, match=r'unknown key `selection.f_low`'):
        standin_builder({'selection': {'f_low': 0.1}})
    with pytest.raises(ValueError, match=r'unknown key `train.member.mace.paramters`'):
        standin_builder({'train': {'member': {'mace': {'paramters': {}}}}})


def test_continuation_models_need_iterations(standin_builder, tmp_path):
    """A continuation committee without the previous run's `iterations` is refused (nothing stored)."""
    from aiida_ilmlff.data import MLFFModelData

    path = tmp_path / 'standin.model'
    path.write_text('{}')
    models = {
        f'model_{k}': MLFFModelData.from_file(path, 'mace', elements=['Cu'], r_cut=4.0, inspect=False) for k in range(2)
    }
    builder = standin_builder()
    builder.continuation.models = models
    before = count_nodes()
    with pytest.raises(ValueError, match=r'needs `continuation\.iterations`'):
        run_get_node(builder)
    assert count_nodes() == before
