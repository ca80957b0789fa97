"""The labelling-engine seam of ``ilmlff.label``: registry, plain-data protocol inputs and the engines' run side
(no external code runs)."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import run as launch

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.parsers.cp2k_output import CP2K_FORCES_FILE, CP2K_STRESS_FILE
from aiida_ilmlff.workflows.engines import (
    ENGINES,
    Cp2kEngine,
    LabellingEngine,
    PwEngine,
    engine_by_name,
    engine_for_code,
)
from aiida_ilmlff.workflows.label import LabelWorkChain, check_inputs

from .conftest import libf4_atoms


def _count_nodes() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def _nodes_in(value) -> list:
    if isinstance(value, orm.Node):
        return [value]
    if isinstance(value, dict):
        return [node for item in value.values() for node in _nodes_in(item)]
    if isinstance(value, (list, tuple)):
        return [node for item in value for node in _nodes_in(item)]
    return []


@pytest.fixture
def frames():
    return FramesData.from_ase([libf4_atoms(0), libf4_atoms(1)]).store()


def test_registry_maps_plugins_to_engines(cp2k_code, pw_code, localhost):
    assert ENGINES == {'cp2k': Cp2kEngine, 'quantumespresso.pw': PwEngine}
    assert all(issubclass(engine, LabellingEngine) for engine in ENGINES.values())
    assert engine_for_code(cp2k_code) is Cp2kEngine and engine_for_code(pw_code) is PwEngine
    assert engine_by_name('qe') is PwEngine
    other = orm.InstalledCode(
        label='lammps-test',
        computer=localhost,
        filepath_executable='/bin/true',
        default_calc_job_plugin='core.arithmetic.add',
    )
    with pytest.raises(ValueError, match=r'`code`: cannot infer .* plugin `cp2k` \(CP2K\), `quantumespresso.pw`'):
        engine_for_code(other)


def test_plain_protocol_inputs_make_no_nodes(cp2k_code):
    before = _count_nodes()
    values = LabelWorkChain.get_plain_protocol_inputs(
        'balanced', code=cp2k_code, elements=['Li', 'B', 'F'], options={'max_wallclock_seconds': 60}
    )
    assert _nodes_in(values) == []
    assert set(values) == {
        'max_concurrent',
        'frames_per_job',
        'compute_stress',
        'max_rejected_fraction',
        'quality_control',
        'cp2k',
    }
    assert values['compute_stress'] is True  # every protocol labels the stress (CP2K analytical, pw.x tstress)
    kinds = values['cp2k']['cp2k']['parameters']['FORCE_EVAL']['SUBSYS']['KIND']
    assert [kind['_'] for kind in kinds] == ['B', 'F', 'Li']
    assert values['cp2k']['cp2k']['metadata']['options']['max_wallclock_seconds'] == 60
    assert check_inputs(values, {'elements': ['Li', 'B', 'F']}) is None
    # the same plain check a parent runs: potassium has no KIND section in these values
    message = check_inputs(values, {'elements': ['K', 'F']})
    assert message.startswith('`cp2k.cp2k.parameters`: no FORCE_EVAL/SUBSYS/KIND section') and 'K present' in message
    assert check_inputs({**values, 'max_concurrent': 0}) == '`max_concurrent` must be >= 1, got 0'
    assert 'exactly one engine namespace' in check_inputs({'max_concurrent': 1})
    nodes = LabelWorkChain.plain_inputs_to_nodes(cp2k_code, values, elements=['Li', 'B', 'F'])
    assert isinstance(nodes['cp2k']['cp2k']['parameters'], orm.Dict) and nodes['cp2k']['cp2k']['code'] is cp2k_code
    assert isinstance(nodes['quality_control']['max_force'], orm.Float)
    assert _count_nodes() == before


def test_plain_protocol_inputs_by_engine_name():
    values = LabelWorkChain.get_plain_protocol_inputs('fast', engine='cp2k', elements=['Li', 'F'])
    assert values['cp2k']['cp2k']['parameters']['FORCE_EVAL']['DFT']['QS']['METHOD'] == 'XTB'
    with pytest.raises(ValueError, match='`engine`: unknown engine `vasp`'):
        LabelWorkChain.get_plain_protocol_inputs('fast', engine='vasp')


@pytest.mark.parametrize(
    ('overrides', 'path'),
    [
        ({'quality_control': {'max_forse': 1.0}}, 'quality_control.max_forse'),
        ({'cp2k': {'max_iteration': 3}}, 'cp2k.max_iteration'),
        ({'meta_parameters': {'pseudo_familly': 'x'}}, 'meta_parameters.pseudo_familly'),
        ({'max_concurent': 3}, 'max_concurent'),
    ],
)
def test_unknown_override_key_names_its_path(cp2k_code, frames, overrides, path):
    before = _count_nodes()
    with pytest.raises(ValueError, match=rf'`overrides`: unknown key `{path}`'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, overrides=overrides)
    assert _count_nodes() == before


def test_free_form_overrides_are_accepted(cp2k_code, frames):
    overrides = {
        'cp2k': {
            'cp2k': {
                'parameters': {'FORCE_EVAL': {'DFT': {'QS': {'XTB': {'USE_HALOGEN_CORRECTION': True}}}}},
                'metadata': {'options': {'resources': {'num_cores_per_mpiproc': 2}}},
            }
        },
        'meta_parameters': {'cp2k_kinds': {'Li': ['A', 'B']}},
    }
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, overrides=overrides)
    xtb = builder.cp2k.cp2k.parameters['FORCE_EVAL']['DFT']['QS']['XTB']
    assert xtb['USE_HALOGEN_CORRECTION'] is True and xtb['DO_EWALD'] is True
    assert builder.cp2k.cp2k.metadata.options.resources['num_cores_per_mpiproc'] == 2


def test_builder_signature_is_keyword_only(cp2k_code, frames):
    with pytest.raises(TypeError):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, 'fast')
    with pytest.raises(TypeError, match='unknown keyword argument\\(s\\) protocl'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocl='fast')


def test_code_of_another_plugin_fails_at_submission(cp2k_code, pw_code, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames)
    builder.cp2k.cp2k.code = pw_code
    before = _count_nodes()
    with pytest.raises(ValueError, match=r'`cp2k.cp2k.code`: code `pw-test@.*` runs plugin `quantumespresso.pw`'):
        launch(builder)
    assert _count_nodes() == before


def _engine_inputs(builder, engine) -> AttributeDict:
    return AttributeDict(builder[engine.namespace]._inputs(prune=True))


def test_cp2k_engine_prepares_one_single_point_per_frame(cp2k_code, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, options={'max_wallclock_seconds': 1000})
    engine = Cp2kEngine(_engine_inputs(builder, Cp2kEngine), compute_stress=True)
    assert engine.group([3, 4, 5]) == [[3], [4], [5]]
    assert engine.link_label([7]) == 'frame_000007'
    level = engine.level_of_theory()
    assert level['engine'] == 'cp2k' and level['fingerprint'].startswith('cp2k/GFN1-xTB:')
    structures = {0: orm.StructureData(ase=libf4_atoms(0)), 1: orm.StructureData(ase=libf4_atoms(1))}
    first, second = (engine.prepare(frames, [i], structures) for i in (0, 1))
    assert first.cp2k.structure is structures[0] and second.cp2k.structure is structures[1]
    assert first.cp2k.parameters is second.cp2k.parameters  # one Dict per round, shared
    parameters = first.cp2k.parameters.get_dict()
    assert parameters['GLOBAL']['RUN_TYPE'] == 'ENERGY_FORCE' and parameters['GLOBAL']['WALLTIME'] == 950
    assert parameters['FORCE_EVAL']['STRESS_TENSOR'] == 'ANALYTICAL'
    assert first.cp2k.settings['additional_retrieve_list'] == [CP2K_FORCES_FILE, CP2K_STRESS_FILE]
    assert first.cp2k.code is cp2k_code and first.max_iterations.value == 5


def test_pw_engine_prepares_scf_with_the_frames_pseudos(pw_code, sssp_family, frames):
    builder = LabelWorkChain.get_builder_from_protocol(pw_code, frames)
    engine = PwEngine(_engine_inputs(builder, PwEngine), compute_stress=False)
    level = engine.level_of_theory()
    assert level['engine'] == 'qe' and level['fingerprint'].startswith('qe/PBE:')
    structure = orm.StructureData(ase=libf4_atoms(0)[1:])  # B F4 only
    inputs = engine.prepare(frames, [0], {0: structure})
    assert set(inputs.pw.pseudos) == {'B', 'F'}
    control = inputs.pw.parameters['CONTROL']
    assert control == {'calculation': 'scf', 'tprnfor': True, 'tstress': False}
    assert inputs.pw.settings.get_dict() == {'gamma_only': True}


def test_box_beyond_the_protocol_is_rejected(cp2k_code):
    """A frame larger than the protocol's ``max_atoms`` fails in the builder, naming the limit and the fix."""
    from ase.build import make_supercell

    assert LabelWorkChain.get_protocol_max_atoms('fast') == 1000
    assert LabelWorkChain.get_protocol_max_atoms('stringent') == 500
    big = make_supercell(libf4_atoms(0), [[6, 0, 0], [0, 6, 0], [0, 0, 6]])  # 1296 atoms
    frames = FramesData.from_ase([big]).store()
    before = _count_nodes()
    with pytest.raises(ValueError, match=r'`frames`: the largest frame has 1296 atoms, more than the 1000 .* `fast`'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames)
    assert _count_nodes() == before
    builder = LabelWorkChain.get_builder_from_protocol(
        cp2k_code, frames, overrides={'meta_parameters': {'max_atoms': 2000}}
    )
    assert builder.frames.pk == frames.pk


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_every_protocol_computes_the_stress(cp2k_code, protocol):
    """The stress is on by default wherever the level of theory gives one: CP2K prints the analytical stress."""
    values = LabelWorkChain.get_plain_protocol_inputs(protocol, code=cp2k_code, elements=['Li', 'B', 'F'])
    assert values['compute_stress'] is True
    engine = Cp2kEngine(LabelWorkChain.plain_inputs_to_nodes(cp2k_code, values)['cp2k'], compute_stress=True)
    assert engine.parameters['FORCE_EVAL']['STRESS_TENSOR'] == 'ANALYTICAL'
    assert engine.parameters['FORCE_EVAL']['PRINT']['STRESS_TENSOR'] == {'_': 'ON', 'FILENAME': 'stress'}
    assert 'aiida-stress-1_0.stress_tensor' in engine.settings['additional_retrieve_list']
