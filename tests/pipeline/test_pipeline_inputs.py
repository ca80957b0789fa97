"""Bad input to ``ilmlff.pipeline`` fails before anything is submitted or stored, with a clear message."""

from __future__ import annotations

import pytest
from aiida import orm

from aiida_ilmlff.workflows.pipeline import PipelineWorkChain, validate_inputs
from tests.fixtures import count_nodes
from tests.fixtures.boxes import PYR14BF4


@pytest.fixture
def codes(aiida_code_installed, aiida_localhost):
    """Stand-in codes (``/bin/true``): only the builder and the validators run here."""
    plugins = {'label': 'cp2k', 'mace': 'ilmlff.mace.train', 'deepmd': 'ilmlff.deepmd.train', 'runner': 'ilmlff.md'}
    return {
        key: aiida_code_installed(
            label=f'{key}-inputs',
            default_calc_job_plugin=plugin,
            computer=aiida_localhost,
            filepath_executable='/bin/true',
        )
        for key, plugin in plugins.items()
    }


def _model(tmp_path, elements, architecture='mace'):
    from aiida_ilmlff.data import MLFFModelData

    suffix = '.model' if architecture == 'mace' else '.pb'
    path = tmp_path / f'model-{"".join(elements)}{suffix}'
    path.write_bytes(b'not a real model: only its attributes are read here ' + ''.join(elements).encode())
    return MLFFModelData.from_file(path, architecture, elements=elements, r_cut=5.0, inspect=False).store()


def test_protocol_builder_is_valid(codes):
    """The fast builder passes the pipeline validator (each stage's own validator included) and stores nothing."""
    before = count_nodes()
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, protocol='fast')
    assert validate_inputs(builder._inputs(prune=True)) is None
    assert builder.mace.committee_size.value == 2 and builder.deepmd.committee_size.value == 2
    assert builder.temperature.value == 450.0
    assert builder.properties.nvt.md.parameters['temperature_K'] == 450.0
    # The held-out test set of `fast`: 25 fs segments of its 150 fs AIMD, 10 fs apart from training frames.
    assert builder.test_gap_fs.value == 10.0 and builder.test_block_fs.value == 25.0
    # Models trained on stress: the NPT barostat has its normal coupling again (tau_p 1 ps, not 10 ps).
    assert builder.properties.npt.md.parameters['tau_p_fs'] == 1000.0
    assert 'composition' not in builder.dataset
    with_al = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, active_learning=True, temperature_K=470.0)
    assert validate_inputs(with_al._inputs(prune=True)) is None
    assert with_al.temperature.value == 470.0
    assert count_nodes() == before


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'composition': {'PYR14': 2, 'BF4': 1}}, 'not charge-neutral'),
        ({'composition': {'PYR14': 2, 'XYZ9': 2}}, 'XYZ9'),
        ({'composition': PYR14BF4, 'protocol': 'quick'}, 'unknown protocol `quick`'),
        ({'composition': PYR14BF4, 'overrides': {'test_fraction': 0.95}}, 'test_fraction'),
        ({'composition': PYR14BF4, 'overrides': {'test_gap_fs': -5.0}}, r'`test_gap_fs` must be >= 0 fs'),
        ({'composition': PYR14BF4, 'overrides': {'test_block_fs': 0.0}}, r'`test_block_fs` must be > 0 fs'),
        ({'composition': PYR14BF4, 'temperature_K': 1500.0}, '`temperature` = 1500 K is outside any ionic liquid'),
        ({'composition': PYR14BF4, 'temperature_K': 25.0}, r'outside any ionic liquid \(200-1000 K'),
        ({'composition': {'PYR14': 40, 'BF4': 40}}, '1400 atoms, more than the 1000'),
        ({'composition': PYR14BF4, 'overrides': {'meta_parameters': {'committee_size': 1}}}, 'at least 2 models'),
        (
            {'composition': PYR14BF4, 'overrides': {'meta_parameters': {'dataset_overrides': {'n_eqq': 3}}}},
            'unknown key `meta_parameters.dataset_overrides.n_eqq`',
        ),
        (
            {
                'composition': PYR14BF4,
                'overrides': {'meta_parameters': {'deepmd_overrides': {'member': {'deepmd': {'paramters': {}}}}}},
            },
            'unknown key `meta_parameters.deepmd_overrides.member.deepmd.paramters`',
        ),
        ({'composition': PYR14BF4, 'overrides': {'densty': 1.1}}, 'unknown key `densty`'),
    ],
)
def test_bad_input_fails_before_submission(codes, kwargs, message):
    """A non-neutral composition, an unknown ion or protocol, a bad test fraction, gap or block: ValueError, nothing
    stored."""
    before = count_nodes()
    with pytest.raises(ValueError, match=message):
        builder = PipelineWorkChain.get_builder_from_protocol(codes, **kwargs)
        problem = validate_inputs(builder._inputs(prune=True))
        if problem:
            raise ValueError(problem)
    assert count_nodes() == before


def test_foundation_model_missing_an_element(codes, tmp_path):
    """A foundation model without boron cannot describe PYR14BF4: refused by name, before submission."""
    model = _model(tmp_path, ['C', 'F', 'H', 'N'])
    before = count_nodes()
    with pytest.raises(ValueError, match=r"foundation_models.mp0.*lacks \['B'\]"):
        PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, foundation_models={'mp0': model})
    assert count_nodes() == before
    deepmd = _model(tmp_path, ['B', 'C', 'F', 'H', 'N'], architecture='deepmd')
    with pytest.raises(ValueError, match='only MACE foundation models'):
        PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, foundation_models={'dp': deepmd})


def test_namespaces_and_overrides(codes):
    """One `member` namespace per committee, of its own architecture; overrides reach it; box_density is set."""
    overrides = {
        'box_density': 1.1,
        'meta_parameters': {'deepmd_overrides': {'member': {'deepmd': {'parameters': {'numb_steps': 7}}}}},
    }
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, overrides=overrides)
    assert builder.box_density.value == 1.1
    assert builder.deepmd.member['deepmd']['parameters']['numb_steps'] == 7
    assert 'mace' not in builder.deepmd.member and 'deepmd' not in builder.mace.member
    assert builder.mace.member['mace']['code'].uuid == codes['mace'].uuid
    assert 'architecture' not in builder.mace


def test_evaluate_batch_size_from_the_protocol(codes):
    """`meta_parameters.evaluate_batch_size` reaches ilmlff.evaluate's `batch_size`; a value < 1 is refused by the
    evaluate port's validator, by name, before submission."""
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4)
    assert builder.evaluate.parameters['batch_size'] == 8
    overrides = {'meta_parameters': {'evaluate_batch_size': 1}}
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, overrides=overrides)
    assert builder.evaluate.parameters['batch_size'] == 1
    before = count_nodes()
    with pytest.raises(ValueError, match='`batch_size` must be an integer >= 1'):
        overrides = {'meta_parameters': {'evaluate_batch_size': 0}}
        PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, overrides=overrides)
    assert count_nodes() == before


@pytest.mark.parametrize(
    ('swap', 'message'),
    [
        ({'mace': 'deepmd'}, r'`codes.mace`: code `deepmd-inputs.*` runs plugin `ilmlff.deepmd.train`'),
        ({'runner': 'label'}, r'`codes.runner`: code `label-inputs.*` runs plugin `cp2k`'),
        ({'label': 'runner'}, r'`codes.label`: code `runner-inputs.*` runs plugin `ilmlff.md`'),
    ],
)
def test_codes_of_the_wrong_plugin(codes, swap, message):
    """A dp code given as the MACE training code (and the like) is refused, naming the key, storing nothing."""
    before = count_nodes()
    with pytest.raises(ValueError, match=message):
        PipelineWorkChain.get_builder_from_protocol({**codes, **{k: codes[v] for k, v in swap.items()}}, PYR14BF4)
    assert count_nodes() == before


def test_codes_and_stages(codes):
    """Unknown code keys, no training code and no runner are named; the validator names a missing data source."""
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['cp2k'\]"):
        PipelineWorkChain.get_builder_from_protocol({**codes, 'cp2k': codes['label']}, PYR14BF4)
    with pytest.raises(ValueError, match='training code'):
        PipelineWorkChain.get_builder_from_protocol({'label': codes['label'], 'runner': codes['runner']}, PYR14BF4)
    with pytest.raises(ValueError, match='runner'):
        PipelineWorkChain.get_builder_from_protocol({k: v for k, v in codes.items() if k != 'runner'}, PYR14BF4)
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4)
    inputs = builder._inputs(prune=True)
    inputs.pop('dataset')
    assert 'either `frames`' in validate_inputs(inputs)
    inputs = builder._inputs(prune=True)
    inputs['temperature'] = orm.Float(-5.0)
    assert 'temperature' in validate_inputs(inputs)


def test_submit_refuses_invalid_builder(codes):
    """The port validator runs on submission too: a negative temperature is refused and no process is stored."""
    from aiida.engine import run

    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4)
    builder.temperature = orm.Float(-1.0)
    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match='temperature'):
        run(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_committees_are_launched_with_their_architecture_and_members(codes, monkeypatch):
    """run_training gives each committee the training set, its architecture and its `member` inputs."""
    import numpy as np
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_ilmlff.data import FramesData
    from aiida_ilmlff.workflows.train import TrainWorkChain

    frames = []
    for k in range(6):
        atoms = Atoms('BCFHN', positions=[[2.0 * i, 0.1 * k, 0.0] for i in range(5)], cell=[12.0] * 3, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 * k, forces=np.zeros((5, 3)))
        frames.append(atoms)
    training_set = FramesData.from_ase(frames).store()
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, protocol='fast')
    process = instantiate_process(get_manager().get_runner(), PipelineWorkChain, **builder._inputs(prune=True))
    launched = {}
    monkeypatch.setattr(process, '_launch', lambda cls, inputs, key: launched.update({key: (cls, inputs)}))
    process.setup()
    process.ctx.training_set = training_set
    process.run_training()
    assert sorted(launched) == ['train_deepmd', 'train_mace']
    for name in ('mace', 'deepmd'):
        cls, inputs = launched[f'train_{name}']
        assert cls is TrainWorkChain and inputs['architecture'].value == name
        assert inputs['train'].uuid == training_set.uuid
        assert list(inputs['member']) == [name, 'max_iterations', 'resubmit_cancelled']
        assert inputs['member'][name]['code'].uuid == codes[name].uuid


def test_stage_four_error_line():
    """The report line of each row's test-set errors: model 0's force RMSE (absolute, relative), energy (raw,
    aligned) and pressure RMSE with the frames it used; `n/a` where a number is not determined."""
    from aiida_ilmlff.workflows.pipeline import _error_line

    errors = {
        'force_rmse': 172.8,
        'force_rmse_relative': 0.1234,
        'energy_rmse': 3.2,
        'energy_rmse_aligned_meV_per_atom': None,
        'pressure_rmse_kbar': 4.25,
        'n_stress_frames': 10,
    }
    line = _error_line({'models': {'model_1': {'errors': {}}, 'model_0': {'errors': errors}}})
    assert line == (
        'test-set force RMSE 172.8 meV/Å (relative 0.123), energy RMSE 3.20 meV/atom (aligned n/a), '
        'pressure RMSE 4.25 kbar over 10 frames with a reference stress'
    )
    assert _error_line({'models': {'model_0': {}}}) == 'no reference labels on the test set'


def test_temperature_and_box_density_follow_the_ions(codes):
    """Without a temperature or density, the protocol takes the ions' own: PYR14TFSI is liquid at 298.15 K at its
    measured 1.40 g/cm^3; PYR14BF4 is simulated at 450 K (it melts at ~424 K) at 1.20 g/cm^3."""
    from aiida_ilmlff.systems.density import reference_density

    tfsi = PipelineWorkChain.get_builder_from_protocol(codes, {'PYR14': 1, 'TFSI': 1}, protocol='fast')
    assert tfsi.temperature.value == 298.15
    assert tfsi.box_density.value == pytest.approx(reference_density({'PYR14': 1, 'TFSI': 1}, 298.15), abs=1e-4)
    assert 1.3 < tfsi.box_density.value < 1.5
    assert tfsi.properties.nvt.md.parameters['temperature_K'] == 298.15
    bf4 = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, protocol='fast')
    assert bf4.temperature.value == 450.0 and bf4.box_density.value == pytest.approx(1.2, abs=0.01)
    given = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, overrides={'box_density': 1.1})
    assert given.box_density.value == 1.1


#: LiTFSI in PYR14TFSI at x = 0 and x = 1/3 (issue 18's smallest compositions).
LITFSI_SERIES = [{'PYR14': 2, 'TFSI': 2}, {'Li': 1, 'PYR14': 2, 'TFSI': 3}]


def test_compositions_builder(codes):
    """Two compositions: one `compositions` List, no single-box inputs, the liquids' temperature, the data set over
    both (labelled at the TFSI level of theory), and the builder passes the validator; nothing stored."""
    before = count_nodes()
    builder = PipelineWorkChain.get_builder_from_protocol(codes, compositions=LITFSI_SERIES, protocol='fast')
    assert validate_inputs(builder._inputs(prune=True)) is None
    assert builder.compositions.get_list() == LITFSI_SERIES
    assert 'composition' not in builder and 'box_density' not in builder
    assert builder.temperature.value == 298.15
    assert 'compositions' not in builder.dataset and 'box_density' not in builder.dataset
    assert 'PYR14:2 TFSI:2; Li:1 PYR14:2 TFSI:3 at 298.15 K' in builder.metadata.description
    with_al = PipelineWorkChain.get_builder_from_protocol(codes, compositions=LITFSI_SERIES, active_learning=True)
    assert validate_inputs(with_al._inputs(prune=True)) is None
    assert count_nodes() == before


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'compositions': LITFSI_SERIES[:1]}, r'`compositions` has 1 entry: give two or more'),
        (
            {'compositions': [*LITFSI_SERIES, {'Li': 1, 'PYR14': 1, 'TFSI': 1}]},
            r'`compositions\[2\]`: composition Li:1 PYR14:1 TFSI:1 is not charge-neutral',
        ),
        (
            {'compositions': [*LITFSI_SERIES, {'PYR14': 3, 'TFSI': 3}]},
            r'`compositions\[2\]` \(PYR14:3 TFSI:3\) is the same liquid as `compositions\[0\]`',
        ),
        ({'compositions': LITFSI_SERIES, 'composition': PYR14BF4}, 'not both'),
        (
            {'compositions': LITFSI_SERIES, 'overrides': {'box_density': 1.4}},
            '`box_density` \\(overrides\\) is for one',
        ),
    ],
)
def test_bad_compositions_fail_before_submission(codes, kwargs, message):
    """A list of one, a non-neutral entry, the same liquid twice, a single composition or box density with the list:
    ValueError naming the entry, nothing stored."""
    before = count_nodes()
    with pytest.raises(ValueError, match=message):
        PipelineWorkChain.get_builder_from_protocol(codes, **kwargs)
    assert count_nodes() == before


def test_foundation_model_missing_an_element_of_one_composition(codes, tmp_path):
    """A model without Li covers neat PYR14TFSI but not the Li+ composition: refused, naming that composition."""
    model = _model(tmp_path, ['C', 'F', 'H', 'N', 'O', 'S'])
    before = count_nodes()
    with pytest.raises(ValueError, match=r"lacks \['Li'\] of composition Li:1 PYR14:2 TFSI:3"):
        PipelineWorkChain.get_builder_from_protocol(codes, compositions=LITFSI_SERIES, foundation_models={'mp0': model})
    assert count_nodes() == before


def test_edited_compositions_are_refused_on_submission(codes):
    """A builder edited to a duplicate composition, or given a box density or an MD box with the list: the port
    validator refuses it on submission, no process node and no input stored."""
    from aiida.engine import run_get_node

    from aiida_ilmlff.systems import build_ionic_liquid

    def duplicate(builder):
        builder.compositions = orm.List([*LITFSI_SERIES, {'Li': 2, 'PYR14': 4, 'TFSI': 6}])

    def density(builder):
        builder.box_density = orm.Float(1.4)

    def box(builder):
        atoms = build_ionic_liquid({'PYR14': 1, 'TFSI': 1}, density=1.0, seed=1)
        builder.md_structure = orm.StructureData(ase=atoms)

    for change, message in ((duplicate, 'same liquid'), (density, '`box_density`'), (box, '`md_structure`')):
        builder = PipelineWorkChain.get_builder_from_protocol(codes, compositions=LITFSI_SERIES, protocol='fast')
        change(builder)
        before = count_nodes()
        with pytest.raises(ValueError, match=message):
            run_get_node(builder)
        assert count_nodes() == before


def test_tfsi_fast_protocol_is_sized_to_its_level_of_theory(codes):
    """`fast` labels TFSI at `fast-dft`: the data set gets a 24-step AIMD with an hour of walltime, 8 EQ and 4 nEQ
    frames per composition, the test split 1 fs blocks 0.25 fs apart and a validation fraction of 0.2; PYR14BF4
    keeps xTB's sizes; the caller's overrides win."""
    tfsi = PipelineWorkChain.get_builder_from_protocol(codes, compositions=LITFSI_SERIES, protocol='fast')
    assert (tfsi.dataset.n_eq.value, tfsi.dataset.n_neq.value, tfsi.dataset.aimd.md['steps']) == (8, 4, 24)
    assert tfsi.dataset.aimd.cp2k.cp2k.metadata.options.max_wallclock_seconds == 3600
    assert (tfsi.test_block_fs.value, tfsi.test_gap_fs.value) == (1.0, 0.25)
    assert tfsi.mace.valid_fraction.value == tfsi.deepmd.valid_fraction.value == 0.2
    bf4 = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, protocol='fast')
    assert (bf4.dataset.n_eq.value, bf4.dataset.aimd.md['steps'], bf4.test_block_fs.value) == (24, 300, 25.0)
    assert bf4.mace.valid_fraction.value == 0.1
    # Built TFSI boxes are pre-relaxed at `fast-dft` before their AIMD; xTB's PYR14BF4 boxes at `fast` are not.
    assert tfsi.dataset.aimd.relax.get_dict() == {'max_steps': 10, 'max_force_eV_A': 0.25, 'optimizer': 'BFGS'}
    assert bf4.dataset.aimd.relax['max_steps'] == 0
    with pytest.raises(ValueError, match=r'relax\.max_steps'):
        PipelineWorkChain.get_builder_from_protocol(
            codes,
            compositions=LITFSI_SERIES,
            protocol='fast',
            overrides={'meta_parameters': {'dataset_overrides': {'aimd': {'relax': {'max_steps': -2}}}}},
        )
    given = PipelineWorkChain.get_builder_from_protocol(
        codes,
        compositions=LITFSI_SERIES,
        protocol='fast',
        overrides={
            'test_block_fs': 3.0,
            'meta_parameters': {'dataset_overrides': {'n_eq': 5}, 'mace_overrides': {'valid_fraction': 0.3}},
        },
    )
    assert (given.test_block_fs.value, given.test_gap_fs.value, given.dataset.n_eq.value) == (3.0, 0.25, 5)
    assert (given.mace.valid_fraction.value, given.deepmd.valid_fraction.value) == (0.3, 0.2)
    assert given.dataset.aimd.md['steps'] == 24


def _eq_frames(origin: str = 'EQ', n: int = 24, **kwargs):
    """``n`` labelled frames of 5 atoms with PYR14BF4's elements (enough for the committees' validation split; only
    their attributes are read here)."""
    import numpy as np

    from aiida_ilmlff.data import FramesData

    return FramesData.from_arrays(
        np.tile([1, 5, 6, 7, 9], (n, 1)),
        np.random.default_rng(0).uniform(0, 5, (n, 5, 3)),
        np.tile(np.eye(3) * 10.0, (n, 1, 1)),
        energy=np.linspace(-1.0, -1.1, n),
        forces=np.zeros((n, 5, 3)),
        origin=[origin] * n,
        **kwargs,
    ).store()


def test_training_origins(codes):
    """`training_origins` goes to the builder; an unknown origin, or one `frames` does not have, is refused."""
    frames = _eq_frames()
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, frames=frames, training_origins=['EQ'])
    assert builder.training_origins.get_list() == ['EQ']
    assert validate_inputs(builder._inputs(prune=True)) is None
    before = count_nodes()
    for origins, message in (
        (['EQQ'], r"give one or more of \['EQ', 'nEQ', 'AL', 'import'\], not \['EQQ'\]"),
        (['AL'], r"`training_origins` \['AL'\]: `frames` has no frame of these origins"),
    ):
        with pytest.raises(ValueError, match=message):
            PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, frames=frames, training_origins=origins)
    assert count_nodes() == before


def test_validation_with_frames_needs_a_reference_and_labels(codes):
    """Given `frames`, a pipeline validates only against a given `reference`, with the `label` code's labels."""
    frames = _eq_frames()
    builder = PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, frames=frames)
    assert 'validation' not in builder._inputs(prune=True)  # no reference: nothing to validate against
    builder.validation.a_posteriori_frames = orm.Int(1)
    assert '`validation` with `frames`: give `validation.reference`' in validate_inputs(builder._inputs(prune=True))
    without_label = {key: code for key, code in codes.items() if key != 'label'}
    with pytest.raises(ValueError, match='validating against `reference` needs the `label` code'):
        PipelineWorkChain.get_builder_from_protocol(without_label, PYR14BF4, frames=frames, reference=frames)


def test_foundation_models_alone(codes, tmp_path):
    """`architectures: []` trains no committee: only the foundation rows (as is, fine-tuned), E0s `estimated`."""
    model = _model(tmp_path, ['B', 'C', 'F', 'H', 'N'])
    builder = PipelineWorkChain.get_builder_from_protocol(
        codes, PYR14BF4, foundation_models={'mp0': model}, overrides={'meta_parameters': {'architectures': []}}
    )
    inputs = builder._inputs(prune=True)
    assert 'mace' not in inputs and 'deepmd' not in inputs and set(inputs['foundation_models']) == {'mp0'}
    assert builder.finetune.mace.parameters['E0s'] == 'estimated'
    with pytest.raises(ValueError, match='give a `mace` and/or `deepmd` training code'):
        PipelineWorkChain.get_builder_from_protocol(
            codes, PYR14BF4, overrides={'meta_parameters': {'architectures': []}}
        )


@pytest.mark.parametrize(
    ('molecules', 'level', 'message'),
    [
        (['EMIM', 'BF4'], 'xtb', r'is an AIMD of BF4:1 EMIM:1, not of the composition BF4:2 PYR14:2'),
        (['PYR14', 'PYR14', 'BF4', 'BF4'], 'pbe', r'is of level of theory pbe, which no frame of `frames` has'),
    ],
)
def test_reference_of_another_liquid_or_level_of_theory(codes, molecules, level, message):
    """A reference AIMD of another composition or level of theory than the data set: refused before submission."""
    import json

    frames = _eq_frames(level_of_theory=['xtb'] * 24)
    reference = _eq_frames(n=4, level_of_theory=[level] * 4, molecules=[json.dumps(molecules)] * 4)
    before = count_nodes()
    with pytest.raises(ValueError, match=message):
        PipelineWorkChain.get_builder_from_protocol(codes, PYR14BF4, frames=frames, reference=reference)
    assert count_nodes() == before
