"""``ilmlff.dataset`` builder and validation: bad input fails before submission, clearly, storing nothing."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.data.level_of_theory import cp2k_level_of_theory
from aiida_ilmlff.workflows.aimd import md_parameters
from aiida_ilmlff.workflows.dataset import DatasetWorkChain
from tests.fixtures import count_nodes
from tests.fixtures.boxes import PYR14BF4


def test_fast_builder(cp2k_code):
    """``fast`` gives a CP2K GFN1-xTB AIMD with the labelling FORCE_EVAL: both fingerprints are equal."""
    builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='fast')
    assert builder.n_eq.value == 24 and builder.n_neq.value == 24
    assert builder.temperature.value == 450.0
    assert builder.aimd.md['temperature'] == 450.0 and builder.aimd.md['steps'] == 300
    aimd_params = builder.aimd.cp2k.cp2k.parameters.get_dict()
    label_params = builder.label.cp2k.cp2k.parameters.get_dict()
    md = md_parameters(aimd_params, builder.aimd.md.get_dict())
    assert md['GLOBAL']['RUN_TYPE'] == 'MD' and md['MOTION']['MD']['THERMOSTAT']['TYPE'] == 'CSVR'
    aimd_fingerprint = cp2k_level_of_theory(md)['fingerprint']
    assert aimd_fingerprint == cp2k_level_of_theory(label_params)['fingerprint']
    assert aimd_fingerprint.startswith('cp2k/GFN1-xTB:')
    assert builder.label.max_concurrent.value == 2
    assert builder.aimd.cp2k.cp2k.metadata.options.environment_variables == {'OMP_NUM_THREADS': '1'}


def test_box_density_follows_the_ions(cp2k_code):
    """Without `box_density` the boxes are built at the composition's reference density at `temperature`:
    PYR14BF4 at 450 K 1.20 g/cm^3, PYR14TFSI at 298 K 1.40 g/cm^3 (not PYR14BF4's number); an override wins;
    without `temperature` each liquid gets its own default (PYR14BF4 450 K, PYR14TFSI 298.15 K)."""
    from aiida_ilmlff.systems.composition import reference_density

    bf4 = DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='fast')
    assert bf4.box_density.value == pytest.approx(1.20, abs=1e-3)
    tfsi = {'PYR14': 1, 'TFSI': 1}
    builder = DatasetWorkChain.get_builder_from_protocol(
        cp2k_code, tfsi, protocol='fast', overrides={'temperature': 298.15}
    )
    assert builder.box_density.value == pytest.approx(reference_density(tfsi, 298.15), abs=1e-4)
    assert builder.box_density.value == pytest.approx(1.40, abs=1e-3)
    # Without a temperature, PYR14TFSI (liquid at room temperature) is simulated at 298.15 K, not PYR14BF4's 450 K.
    default = DatasetWorkChain.get_builder_from_protocol(cp2k_code, tfsi, protocol='fast')
    assert default.temperature.value == 298.15 and default.aimd.md['temperature'] == 298.15
    assert default.box_density.value == pytest.approx(1.40, abs=1e-3)
    assert bf4.temperature.value == 450.0
    given = DatasetWorkChain.get_builder_from_protocol(cp2k_code, tfsi, protocol='fast', overrides={'box_density': 1.3})
    assert given.box_density.value == 1.3


def test_fast_tfsi_dataset_runs_aimd_and_labels_at_minimal_basis_dft(cp2k_code):
    """GFN1-xTB does not converge for TFSI: the `fast` data set of LiTFSI/PYR14TFSI runs its AIMD and labels its
    nEQ frames at `fast-dft` (PBE-D3(BJ)/SZV-MOLOPT-SR-GTH, DZVP on S), one level of theory for both; PYR14BF4
    stays xTB."""
    builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, {'Li': 1, 'PYR14': 2, 'TFSI': 3}, protocol='fast')
    aimd = md_parameters(builder.aimd.cp2k.cp2k.parameters.get_dict(), builder.aimd.md.get_dict())
    label = builder.label.cp2k.cp2k.parameters.get_dict()
    fingerprint = cp2k_level_of_theory(label)['fingerprint']
    assert fingerprint.startswith('cp2k/PBE-D3(BJ):') and cp2k_level_of_theory(aimd)['fingerprint'] == fingerprint
    assert {kind['BASIS_SET'] for kind in label['FORCE_EVAL']['SUBSYS']['KIND']} == {
        *(f'SZV-MOLOPT-SR-GTH-q{q}' for q in (1, 3, 4, 5, 6, 7)),
        'DZVP-MOLOPT-SR-GTH-q6',  # S (q6 O stays minimal)
    }
    assert 'label protocol fast-dft' in builder.metadata.description


@pytest.mark.parametrize(
    ('overrides', 'expected'),
    [
        ({'n_eq': 0, 'n_neq': 0}, '`n_eq` + `n_neq` = 0'),
        ({'neq': {'generators': {'strain': {'max_strain': 0.5}}}}, '`strain.max_strain` = 0.5 (50 %)'),
        ({'neq': {'generators': {'strain': {'max_strain': 0.7}}}}, 'strains must be in (0, 50 %)'),
        ({'neq': {'generators': {'density': {'factor_min': 0.2}}}}, 'strains must stay below 50 %'),
        ({'neq': {'generators': {'wobble': {}}}}, 'unknown generator `wobble`'),
        ({'neq': {'generators': {'hot_md': {'weight': 1.0}}}}, 'needs a high-temperature trajectory'),
        ({'aimd': {'md': {'timestep_fs': 5.0}}}, 'too long for hydrogen'),
        ({'neq': {'min_distance': 0.0}}, '`neq.min_distance` must be > 0 A'),
        ({'temperature': -1.0}, '`temperature` must be positive (K)'),
        ({'temperature': 25.0}, '`temperature` = 25 K is outside any ionic liquid (200-1000 K'),
        ({'neq': {'min_distanse': 1.0}}, 'unknown key `neq.min_distanse`'),
        (
            {'meta_parameters': {'label_overrides': {'max_concurent': 1}}},
            'meta_parameters.label_overrides.max_concurent',
        ),
        ({'eq': {'sampling': {'method': 'best'}}}, '`eq.sampling`: `method` must be one of'),
    ],
)
def test_bad_protocol_input_raises_before_anything_is_stored(cp2k_code, overrides, expected):
    """Invalid overrides raise ValueError in get_builder_from_protocol, naming the input; nothing is stored."""
    before = count_nodes()
    with pytest.raises(ValueError) as info:
        DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='fast', overrides=overrides)
    assert expected in str(info.value), str(info.value)
    assert count_nodes() == before


def _bad_builder(cp2k_code, **changes):
    builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='fast')
    for key, value in changes.items():
        target = builder
        *path, name = key.split('.')
        for part in path:
            target = target[part]
        node_class, content = value
        target[name] = getattr(orm, node_class)(content)
    return builder


@pytest.mark.parametrize(
    ('changes', 'expected'),
    [
        ({'n_eq': ('Int', 0), 'n_neq': ('Int', 0)}, '`n_eq` + `n_neq` = 0'),
        ({'neq.generators': ('Dict', {'strain': {'max_strain': 0.55}})}, '`strain.max_strain` = 0.55 (55 %)'),
        ({'composition': ('Dict', {'PYR14': 2, 'BF4': 1})}, 'not charge-neutral'),
    ],
)
def test_bad_builder_fails_on_submission_storing_nothing(cp2k_code, changes, expected):
    """A builder edited into invalid input is refused by the port validator: no process node, no input stored."""
    builder = _bad_builder(cp2k_code, **changes)
    before = count_nodes()
    with pytest.raises(ValueError) as info:
        run_get_node(builder)
    assert expected in str(info.value), str(info.value)
    assert count_nodes() == before


def test_trajectory_with_other_species_is_refused(cp2k_code, extxyz_trajectory):
    """An extxyz trajectory of PYR14BF4 offered for a PYR14TFSI composition: species mismatch, named clearly."""
    trajectory = orm.SinglefileData(str(extxyz_trajectory))
    before = count_nodes()
    with pytest.raises(ValueError) as info:
        DatasetWorkChain.get_builder_from_protocol(
            cp2k_code, {'PYR14': 2, 'TFSI': 2}, protocol='fast', trajectory=trajectory, trajectory_format='extxyz'
        )
    message = str(info.value)
    assert 'do not match the composition' in message and 'B: 2 vs 0' in message, message
    assert count_nodes() == before

    builder = DatasetWorkChain.get_builder_from_protocol(
        cp2k_code, PYR14BF4, protocol='fast', trajectory=trajectory, trajectory_format='extxyz'
    )
    assert 'aimd' not in builder._inputs(prune=True)
    builder.composition = orm.Dict({'PYR14': 2, 'TFSI': 2})
    with pytest.raises(ValueError, match='do not match the composition'):
        run_get_node(builder)
    assert count_nodes() == before


def test_box_beyond_the_level_of_theory_and_wrong_codes(cp2k_code, aiida_code_installed):
    """40 ion pairs (1400 atoms) for GFN1-xTB `fast`, or a non-CP2K AIMD code: refused by the builder, by name."""
    runner = aiida_code_installed(label='runner-as-aimd', default_calc_job_plugin='ilmlff.md')
    before = count_nodes()
    with pytest.raises(ValueError, match=r'1400 atoms, more than the 1000'):
        DatasetWorkChain.get_builder_from_protocol(cp2k_code, {'PYR14': 40, 'BF4': 40}, protocol='fast')
    with pytest.raises(ValueError, match=r'`codes.aimd`: code `runner-as-aimd.*` runs plugin `ilmlff.md`'):
        DatasetWorkChain.get_builder_from_protocol({'label': cp2k_code, 'aimd': runner}, PYR14BF4)
    assert count_nodes() == before


def test_unknown_protocol_and_codes(cp2k_code):
    with pytest.raises(ValueError, match='unknown protocol `quick`'):
        DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='quick')
    with pytest.raises(ValueError, match='unknown key'):
        DatasetWorkChain.get_builder_from_protocol({'labeller': cp2k_code}, PYR14BF4)
    with pytest.raises(ValueError, match='charge-neutral'):
        DatasetWorkChain.get_builder_from_protocol(cp2k_code, {'PYR14': 1})


@pytest.mark.parametrize('protocol', ['fast', 'balanced', 'stringent'])
def test_every_protocol_builds_with_matching_levels_of_theory(cp2k_code, protocol):
    builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, {'PYR14': 10, 'BF4': 10}, protocol=protocol)
    aimd = md_parameters(builder.aimd.cp2k.cp2k.parameters.get_dict(), builder.aimd.md.get_dict())
    label = builder.label.cp2k.cp2k.parameters.get_dict()
    assert cp2k_level_of_theory(aimd)['fingerprint'] == cp2k_level_of_theory(label)['fingerprint']
    assert builder.n_eq.value + builder.n_neq.value > 0
    description = DatasetWorkChain.get_available_protocols()[protocol]['description']
    assert description and builder.metadata.description.startswith(f'ilmlff.dataset ({protocol})')


def test_hot_trajectory_frames_alone_are_a_valid_mix(cp2k_code, pyr14bf4_box):
    from aiida_ilmlff.data import FramesData
    from aiida_ilmlff.workflows.dataset import validate_inputs

    off = {name: {'weight': 0} for name in ('rattle', 'strain', 'density', 'close_contact', 'thermal')}
    overrides = {'neq': {'generators': {**off, 'hot_md': {'weight': 1.0}}}}
    with pytest.raises(ValueError, match='needs a high-temperature trajectory'):
        DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, overrides=overrides)
    builder = DatasetWorkChain.get_builder_from_protocol(
        cp2k_code, PYR14BF4, overrides={'neq': {'generators': {'rattle': {'weight': 1.0}}}}
    )
    builder.neq.generators = orm.Dict({**off, 'hot_md': {'weight': 1.0}})
    message = validate_inputs(builder._inputs(prune=True))
    assert 'needs a high-temperature trajectory' in message and 'every generator has weight 0' not in message
    builder.neq.hot_frames = FramesData.from_ase([pyr14bf4_box()])
    assert validate_inputs(builder._inputs(prune=True)) is None


#: LiTFSI in PYR14TFSI at two Li+ fractions (x = 0 and x = 1/3), the smallest boxes of issue 18.
LITFSI_SERIES = [{'PYR14': 2, 'TFSI': 2}, {'Li': 1, 'PYR14': 2, 'TFSI': 3}]


def test_compositions_builder_labels_every_composition_alike(cp2k_code):
    """Two compositions: one List input, no single-box inputs, the level of theory of all their elements (TFSI:
    `fast-dft`) checked against the largest box, the temperature of the liquids (298.15 K)."""
    builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, compositions=LITFSI_SERIES, protocol='fast')
    assert builder.compositions.get_list() == LITFSI_SERIES
    assert 'composition' not in builder and 'box_density' not in builder
    assert builder.temperature.value == 298.15
    label = builder.label.cp2k.cp2k.parameters.get_dict()
    assert cp2k_level_of_theory(label)['fingerprint'].startswith('cp2k/PBE-D3(BJ):')
    assert {kind['_'] for kind in label['FORCE_EVAL']['SUBSYS']['KIND']} >= {'Li', 'S', 'F'}


@pytest.mark.parametrize(
    ('kwargs', 'expected'),
    [
        ({'compositions': [{'PYR14': 2, 'TFSI': 2}]}, '`compositions` has 1 entry: give two or more'),
        (
            {'compositions': [{'PYR14': 2, 'TFSI': 2}, {'Li': 1, 'PYR14': 2, 'TFSI': 2}]},
            '`compositions[1]`: composition Li:1 PYR14:2 TFSI:2 is not charge-neutral',
        ),
        (
            {'compositions': [{'PYR14': 2, 'TFSI': 2}, {'Li': 1, 'PYR14': 2, 'TFSI': 3}, {'PYR14': 1, 'TFSI': 1}]},
            '`compositions[2]` (PYR14:1 TFSI:1) is the same liquid as `compositions[0]` (PYR14:2 TFSI:2)',
        ),
        ({'compositions': LITFSI_SERIES, 'overrides': {'box_density': 1.4}}, '`box_density` (overrides) is for one'),
        ({'compositions': LITFSI_SERIES, 'composition': PYR14BF4}, 'give `compositions` or `composition`'),
        ({'compositions': [{'PYR14': 2, 'TFSI': 2}, {'Qq': 1, 'TFSI': 1}]}, '`compositions[1]`: unknown ion'),
    ],
)
def test_bad_compositions_raise_before_anything_is_stored(cp2k_code, kwargs, expected):
    """A list of one, a non-neutral entry, the same liquid twice, single-box inputs with the list: ValueError naming
    the entry, nothing stored."""
    before = count_nodes()
    with pytest.raises(ValueError) as info:
        DatasetWorkChain.get_builder_from_protocol(cp2k_code, protocol='fast', **kwargs)
    assert expected in str(info.value), str(info.value)
    assert count_nodes() == before


def test_edited_compositions_are_refused_on_submission(cp2k_code):
    """A builder edited to a duplicate composition, or given a box density with the list, is refused by the port
    validator: no process node, no input stored."""
    for change, expected in (
        (
            lambda b: setattr(b, 'compositions', orm.List([*LITFSI_SERIES, {'Li': 2, 'PYR14': 4, 'TFSI': 6}])),
            'same liquid',
        ),
        (lambda b: setattr(b, 'box_density', orm.Float(1.4)), '`box_density` belong to one composition'),
    ):
        builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, compositions=LITFSI_SERIES, protocol='fast')
        change(builder)
        before = count_nodes()
        with pytest.raises(ValueError) as info:
            run_get_node(builder)
        assert expected in str(info.value), str(info.value)
        assert count_nodes() == before
