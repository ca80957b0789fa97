"""``ilmlff.md`` inputs: validators fail before submission (nothing stored); what the CalcJob writes for the runner."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.io import read

from aiida_ilmlff.calculations.md import MDCalculation, ordered_models
from aiida_ilmlff.data import FramesData, MLFFModelData
from tests.fixtures import count_nodes

NVT = {'ensemble': 'nvt', 'steps': 10, 'temperature_K': 400.0, 'timestep_fs': 1.0}


@pytest.fixture
def fake_model(aiida_profile, tmp_path):
    """``fake_model(elements, key)``: a stored MLFFModelData of a placeholder file (metadata given, not inspected)."""

    def factory(elements=('B', 'C', 'F', 'H', 'N'), name='tiny.model'):
        path = tmp_path / name
        path.write_bytes(b'placeholder ' + name.encode())
        return MLFFModelData.from_file(
            path, 'mace', elements=list(elements), r_cut=4.0, dtype='float64', inspect=False
        ).store()

    return factory


@pytest.fixture
def md_inputs(runner_code, md_structure, fake_model, job_options):
    """Valid inputs of an ``ilmlff.md`` dry run."""
    return {
        'code': runner_code,
        'structure': md_structure,
        'models': {'model_0': fake_model()},
        'parameters': orm.Dict(NVT),
        'metadata': {'options': job_options},
    }


@pytest.mark.parametrize(
    ('change', 'fragment'),
    [
        ({'temperature_K': -10.0}, '`parameters.temperature_K` must be > 0.0'),
        ({'ensemble': 'npt'}, '`parameters.pressure_bar` is required for ensemble `npt`'),
        ({'timestep_fs': 6.0}, '`parameters.timestep_fs` must be <= 5.0'),
        ({'guards': {'max_bond_stretch': 1.0}}, '`parameters.guards.max_bond_stretch` must be > 1'),
    ],
    ids=['negative-temperature', 'npt-without-pressure', 'timestep-above-5fs', 'bond-threshold-at-1'],
)
def test_bad_parameters_fail_before_submission(md_inputs, change, fragment):
    """Each bad parameter fails at process creation with a message naming the input; nothing is stored."""
    md_inputs['parameters'] = orm.Dict({**NVT, **change})
    before = count_nodes()
    with pytest.raises(ValueError, match='parameters') as excinfo:
        run_get_node(MDCalculation, **md_inputs)
    assert fragment in str(excinfo.value)
    assert count_nodes() == before
    assert not md_inputs['parameters'].is_stored


def test_models_must_cover_the_structure_elements(md_inputs, fake_model):
    """A committee member without B and F fails before submission, naming `models.<key>` and the elements."""
    md_inputs['models'] = {'model_0': fake_model(), 'model_1': fake_model(('C', 'H', 'N'), 'cation_only.model')}
    before = count_nodes()
    with pytest.raises(ValueError, match=r"`models.model_1` does not cover the elements \['B', 'F'\]"):
        run_get_node(MDCalculation, **md_inputs)
    assert count_nodes() == before


def _checkpoint_node(n_atoms):
    from aiida_ilmlff.runner.contract import CHECKPOINT_FORMAT

    node = orm.SinglefileData(io.BytesIO(b'{}'), filename='checkpoint.json')
    node.base.attributes.set_many({'format': CHECKPOINT_FORMAT, 'n_atoms': n_atoms})
    return node


def test_other_input_checks(md_inputs, fake_model):
    """No model, an unknown engine, bad settings, frame_index with a StructureData: clear messages."""
    cases = [
        ({'models': {}}, '`models`: give at least one'),
        ({'engine': orm.Str('lammps')}, "unknown MD engine 'lammps'"),
        ({'settings': orm.Dict({'threads': 0})}, '`settings.threads` must be an integer >= 1'),
        ({'settings': orm.Dict({'cores': 2})}, "`settings`: unknown keys ['cores']"),
        ({'frame_index': orm.Int(0)}, '`frame_index` is only used when `structure` is a FramesData'),
        (
            {'parameters': orm.Dict({**NVT, 'initial_velocities': 'from_structure'})},
            'a StructureData has no velocities',
        ),
        ({'bond_reference': _checkpoint_node(12)}, '`bond_reference` holds 12 atoms but `structure` has 70'),
        ({'bond_reference': orm.SinglefileData(io.BytesIO(b'{}'), filename='x.json')}, 'must be the `checkpoint`'),
    ]
    for change, fragment in cases:
        with pytest.raises(ValueError) as excinfo:
            run_get_node(MDCalculation, **{**md_inputs, **change})
        assert fragment in str(excinfo.value), (change, str(excinfo.value))


def test_dry_run_writes_the_runner_inputs(md_inputs, fake_model, box_atoms):
    """The runner gets md.json (ordered models, parameters, wall-time budget) and the structure with mol_id."""
    md_inputs['models'] = {'model_10': fake_model(name='c.model'), 'model_2': fake_model(name='b.model')}
    md_inputs['metadata'] = {**md_inputs['metadata'], 'dry_run': True, 'store_provenance': False}
    md_inputs['settings'] = orm.Dict({'threads': 2})
    _, node = run_get_node(MDCalculation, **md_inputs)
    folder = node.dry_run_info['folder']
    settings = json.loads(open(f'{folder}/md.json').read())
    assert [m['key'] for m in settings['models']] == ['model_2', 'model_10']
    assert settings['models'][0]['path'] == 'model_2.model'
    assert settings['parameters'] == NVT and settings['threads'] == 2 and settings['engine'] == 'ase'
    assert settings['max_wall_s'] == pytest.approx(900 - 45)
    atoms = read(f'{folder}/structure.extxyz')
    np.testing.assert_array_equal(atoms.arrays['mol_id'], box_atoms.arrays['mol_id'])
    assert atoms.info['molecules'].split() == list(box_atoms.info['molecules'])
    assert [key for key, _ in ordered_models(md_inputs['models'])] == ['model_2', 'model_10']


def test_framesdata_frame_as_structure(md_inputs, box_atoms):
    """A FramesData frame is accepted (frame_index in range), with its molecule ids."""
    frames = FramesData.from_ase([box_atoms, box_atoms]).store()
    md_inputs.update(structure=frames, frame_index=orm.Int(1))
    md_inputs['metadata'] = {**md_inputs['metadata'], 'dry_run': True, 'store_provenance': False}
    _, node = run_get_node(MDCalculation, **md_inputs)
    atoms = read(f'{node.dry_run_info["folder"]}/structure.extxyz')
    np.testing.assert_array_equal(atoms.arrays['mol_id'], box_atoms.arrays['mol_id'])
    with pytest.raises(ValueError, match='`frame_index` 5 is out of range'):
        run_get_node(MDCalculation, **{**md_inputs, 'frame_index': orm.Int(5)})
