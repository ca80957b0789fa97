"""``ilmlff.validate`` with stand-in codes: the real ``ilmlff.md`` / ``ilmlff.evaluate`` jobs run EMT-based stand-in
models (the active-learning stand-in runner) on a 108-atom Cu box against an EMT "AIMD"; labelling is EMT."""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.workflows.label import LabelWorkChain
from aiida_ilmlff.workflows.validate import ValidationWorkChain
from tests.active_learning.al_standins import StandInLabel
from tests.fixtures import count_nodes

from .conftest import JOB_OPTIONS

MD_PARAMETERS = {
    'thermostat': 'bussi',
    'timestep_fs': 2.0,
    'tau_t_fs': 100.0,
    'steps': 150,
    'traj_every': 5,
    'thermo_every': 5,
    'checkpoint_every': 100,
    'seed': 0,
}


class StandInValidation(ValidationWorkChain):
    """``ilmlff.validate`` labelling with EMT (the active-learning stand-in labeller)."""

    _label_process = StandInLabel


def _models(tmp_path, amplitude=0.05, n=2):
    models = {}
    for k in range(n):
        path = tmp_path / f'standin_{k}.model'
        q = [[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]][k % 2]
        path.write_text(json.dumps({'amplitude': amplitude, 'q': q}))
        models[f'model_{k}'] = MLFFModelData.from_file(
            path, 'mace', elements=['Cu'], r_cut=4.0, dtype='float64', seed=k, inspect=False
        ).store()
    return models


def _builder(standin_codes, reference, models, **changes):
    builder = StandInValidation.get_builder()
    builder.models = models
    builder.reference = reference
    builder.md.md.code = standin_codes['runner']
    builder.md.md.parameters = orm.Dict({**MD_PARAMETERS, **changes.pop('md', {})})
    builder.md.md.metadata.options = JOB_OPTIONS
    builder.md.max_guard_restarts = orm.Int(0)
    builder.analysis = orm.Dict({'rdf_bins': 80})
    builder.a_posteriori_frames = orm.Int(changes.pop('a_posteriori_frames', 3))
    plain = LabelWorkChain.get_plain_protocol_inputs('fast', code=standin_codes['label'], elements=['Cu'])
    builder.label = LabelWorkChain.plain_inputs_to_nodes(standin_codes['label'], plain, elements=['Cu'])
    builder.test_force_rmse = orm.Float(40.0)
    for key, value in changes.items():
        builder[key] = value
    return builder


def test_validation_against_the_reference(standin_codes, cu_reference, tmp_path):
    """NVT at the reference's state point; RDF, a posteriori errors and calibration on record."""
    reference = cu_reference()
    _, node = run_get_node(_builder(standin_codes, reference, _models(tmp_path)))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    md = node.called[0]
    parameters = md.inputs.md.parameters.get_dict()
    assert parameters['ensemble'] == 'nvt' and parameters['temperature_K'] == 450.0
    assert md.inputs.md.structure.uuid == reference.uuid  # its last frame: the reference's box and density
    validation = node.outputs.validation.get_dict()
    assert validation['md_intact'] is True and validation['temperature_K'] == 450.0
    assert validation['composition'] == 'Cu:108' and validation['committee_size'] == 2
    rdf = validation['rdf']['Cu-Cu']
    # EMT plus a 0.05 eV perturbation: the fcc first shell is where the reference has it
    assert abs(rdf['peak_shift']) < 0.05 and rdf['peak_height_ratio'] == pytest.approx(1.0, abs=0.3)
    assert validation['bond_shifts_A'] == {}  # monatomic "molecules": no bonds
    a_posteriori = validation['a_posteriori']
    assert a_posteriori['n_frames'] == 3 and a_posteriori['force_rmse'] > 0
    assert a_posteriori['ratio_to_test'] == pytest.approx(a_posteriori['force_rmse'] / 40.0)
    assert a_posteriori['calibration_pearson'] is not None or a_posteriori['mean_error_over_deviation'] is not None
    labelled = node.outputs.a_posteriori
    assert len(labelled) == 3 and set(labelled.levels_of_theory) == set(reference.levels_of_theory)
    assert {json.loads(p)['generator'] for p in labelled.perturbations} == {'a_posteriori'}
    assert node.outputs.figure.get_content(mode='rb')[:4] == b'\x89PNG'
    assert 'calibration_plot' in node.outputs


def test_bad_input_is_refused_before_submission(standin_codes, cu_reference, tmp_path):
    """Another temperature, another ensemble, a reference of another level of theory or composition than the
    training set, a reference too short: refused by the validator, nothing stored."""
    reference = cu_reference(n_frames=5)
    models = _models(tmp_path)
    other_level = FramesData.from_ase([atoms for atoms in reference.to_ase()], level_of_theory='another-level').store()
    from ase.build import bulk

    smaller = bulk('Cu', 'fcc', a=3.6, cubic=True)
    smaller.arrays['mol_id'] = [0, 1, 2, 3]
    smaller.info.update(molecules=['Cu'] * 4, level_of_theory=reference.levels_of_theory[0])
    smaller.calc = None
    other_composition = FramesData.from_ase([smaller]).store()
    cases = [
        ({'md': {'temperature_K': 500.0}}, 'the reference AIMD ran at 450 K'),
        ({'md': {'ensemble': 'npt', 'pressure_bar': 1.0}}, "runs NVT in the reference's box"),
        ({'training_set': other_level}, 'compare a model with a reference at its own level'),
        ({'training_set': other_composition}, "the reference AIMD is of composition 'Cu:108'"),
        ({'reference': reference.select([0, 1])}, 'a reference AIMD needs at least 3'),
    ]
    for changes, expected in cases:
        changes = dict(changes)
        before = count_nodes()
        with pytest.raises(ValueError, match=expected):
            run_get_node(_builder(standin_codes, changes.pop('reference', reference), models, **changes))
        assert count_nodes() == before, changes


def test_a_model_whose_md_trips_a_guard_is_a_finding(standin_codes, cu_reference, tmp_path):
    """A stand-in model 100 times too rough: its MD trips a guard; exit 510 with `validation` saying when and why."""
    _, node = run_get_node(
        _builder(standin_codes, cu_reference(n_frames=5), _models(tmp_path, amplitude=5.0), a_posteriori_frames=0)
    )
    assert node.exit_status == ValidationWorkChain.exit_codes.ERROR_MD_NOT_INTACT.status, node.exit_message
    validation = node.outputs.validation.get_dict()
    assert validation['md_intact'] is False and validation['md_exit_status'] >= 500
    # the MD job's own message: which guard, and where (not the work chain's generic text)
    assert 'guard' in validation['md_exit_message'] and 'step' in validation['md_exit_message']
    assert 'persisted after the allowed restarts' not in validation['md_exit_message']
    assert 'structure' not in validation and 'a_posteriori' not in validation
    assert 'trajectory' in node.outputs


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_protocols_build_valid_builders(standin_codes, cu_reference, tmp_path, protocol):
    """Every protocol gives a builder whose inputs validate: NVT at the reference's temperature, no guard restart."""
    reference = cu_reference(n_frames=4, temperature=500.0)
    builder = ValidationWorkChain.get_builder_from_protocol(
        standin_codes,
        list(_models(tmp_path).values()),
        reference,
        protocol=protocol,
        overrides={'label': {'protocol': 'fast'}},
        test_force_rmse=40.0,
    )
    assert ValidationWorkChain.spec().inputs.validate(builder._inputs(prune=True)) is None
    parameters = builder.md.md.parameters.get_dict()
    assert parameters['ensemble'] == 'nvt' and parameters['temperature_K'] == 500.0
    assert builder.md.max_guard_restarts.value == 0 and builder.a_posteriori_frames.value >= 4
    assert list(builder.models) == ['model_0', 'model_1']
    with pytest.raises(ValueError, match=r'unknown key `md.md.paramters`'):
        ValidationWorkChain.get_builder_from_protocol(
            standin_codes, list(_models(tmp_path).values()), reference, overrides={'md': {'md': {'paramters': {}}}}
        )
    with pytest.raises(ValueError, match='missing'):
        ValidationWorkChain.get_builder_from_protocol({'runner': standin_codes['runner']}, [], reference)
