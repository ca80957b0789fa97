"""``ilmlff.properties`` inputs: protocols give valid builders; bad input fails before submission, naming the fix."""

from __future__ import annotations

import pytest
from aiida import orm

from aiida_ilmlff.workflows.properties import PropertiesWorkChain, structure_molecules


def _inputs(builder) -> dict:
    return builder._inputs(prune=True)


def _error(builder) -> str | None:
    message = PropertiesWorkChain.spec().inputs.validate(_inputs(builder))
    return None if message is None else str(message)


@pytest.fixture
def builder(runner_code, md_structure, model_stub, job_options):
    return PropertiesWorkChain.get_builder_from_protocol(
        runner_code, md_structure, models=[model_stub], protocol='fast', options=job_options
    )


def test_protocols_give_valid_builders(runner_code, md_structure, model_stub):
    """Every protocol validates; temperature and pressure land in both stages; overrides win."""
    for protocol in PropertiesWorkChain.get_available_protocols():
        builder = PropertiesWorkChain.get_builder_from_protocol(
            runner_code, md_structure, models=model_stub, protocol=protocol
        )
        assert _error(builder) is None, protocol
        assert builder.npt.md.parameters['ensemble'] in ('npt', 'npt_berendsen')
        assert builder.nvt.md.parameters['ensemble'] == 'nvt'
        assert 'code' not in builder.npt.md and 'structure' not in builder.nvt.md
    builder = PropertiesWorkChain.get_builder_from_protocol(
        runner_code,
        md_structure,
        models={'model_0': model_stub},
        protocol='fast',
        overrides={'nvt': {'md': {'parameters': {'steps': 3000}}}, 'analysis': {'viscosity_Pa_s': 0.05}},
        temperature_K=400.0,
        pressure_bar=2.0,
    )
    assert builder.temperature.value == 400.0 and builder.pressure.value == 2.0
    npt, nvt = builder.npt.md.parameters.get_dict(), builder.nvt.md.parameters.get_dict()
    assert npt['temperature_K'] == nvt['temperature_K'] == 400.0
    assert npt['pressure_bar'] == 2.0 and 'pressure_bar' not in nvt
    assert npt['steps'] == 500 and nvt['steps'] == 3000 and npt['dtype'] == 'float32'
    assert builder.analysis['viscosity_Pa_s'] == 0.05 and builder.max_npt_stages.value == 3
    assert _error(builder) is None
    fast = PropertiesWorkChain.get_protocol_inputs('fast')
    assert fast['density_convergence']['tolerance_g_cm3'] == 0.02
    with pytest.raises(ValueError, match='`protocol`: unknown protocol `quick`'):
        PropertiesWorkChain.get_builder_from_protocol(runner_code, md_structure, models=model_stub, protocol='quick')


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'analysis': {'rdf_pair': [['Li', 'TFSI:O']]}}, "`analysis`: unknown keys ['rdf_pair']"),
        ({'density_convergence': {'tolerance': 0.01}}, "`density_convergence`: unknown keys ['tolerance']"),
        ({'density_convergence': {'min_stages': 1}}, '`density_convergence.min_stages` must be an integer >= 2'),
        ({'temperature': -5.0}, '`temperature` must be positive'),
        ({'temperature': 0.0}, '`temperature` must be positive'),
        ({'temperature': 25.0}, '`temperature` = 25 K is outside any ionic liquid'),
        ({'temperature': 1500.0}, '`temperature` = 1500 K is outside any ionic liquid'),
        ({'analysis': {'diffusion_species': ['TFSI']}}, "`analysis.diffusion_species`: ['TFSI'] not in the structure"),
        ({'analysis': {'rdf_pairs': [['Li', 'BF4:F']]}}, "'Li' is neither a species"),
        ({'analysis': {'rdf_pairs': [['PYR14', 'BF4:Cl']]}}, "element 'Cl' is not in the structure"),
        ({'analysis': {'msd_fit_window_ps': [0.5, 5.0]}}, 'the fit window is longer than the trajectory'),
        ({'analysis': {'msd_fit_window_ps': [2.0, 1.0]}}, '`analysis.msd_fit_window_ps` must be [start, end]'),
        ({'analysis': {'discard_ps': 3.0}}, 'leaves nothing of the 1.2 ps NVT production run'),
        ({'analysis': {'viscosity_Pa_s': 0.0}}, '`analysis.viscosity_Pa_s` must be a positive number'),
        ({'analysis': {'cn_cutoffs_A': {'Li-BF4': 2.5}}}, "no RDF pair named ['Li-BF4']"),
        ({'max_npt_stages': 0}, '`max_npt_stages` must be >= 1'),
        ({'npt': {'ensemble': 'nvt'}}, "`npt.md.parameters.ensemble` must be one of ['npt', 'npt_berendsen']"),
        ({'nvt': {'ensemble': 'nve'}}, "`nvt.md.parameters.ensemble` must be one of ['nvt']"),
        ({'npt': {'temperature_K': 300.0}}, '`npt.md.parameters.temperature_K` (300.0) differs from `temperature`'),
        ({'npt': {'pressure_bar': 10.0}}, '`npt.md.parameters.pressure_bar` (10.0) differs from `pressure`'),
    ],
)
def test_bad_input_names_the_input(builder, change, message):
    """Each mistake gives one clear message from the input validation (nothing runs)."""
    for key, value in change.items():
        if key in ('analysis', 'density_convergence'):
            builder[key] = orm.Dict(value)
        elif key in ('npt', 'nvt'):
            parameters = builder[key].md.parameters.get_dict()
            parameters.update(value)
            if value.get('ensemble') in ('nvt', 'nve'):
                parameters.pop('pressure_bar', None)
            builder[key].md.parameters = orm.Dict(parameters)
        elif key == 'max_npt_stages':
            builder[key] = orm.Int(value)
        else:  # the port validator refuses it on assignment already
            with pytest.raises(ValueError, match=message):
                builder[key] = orm.Float(value)
            return
    error = _error(builder)
    assert error is not None and message in error, error


@pytest.mark.parametrize(('stage', 'value'), [('npt', 1.0), ('nvt', 0.5)])
def test_bond_threshold_at_or_below_one_is_refused(builder, stage, value):
    """A bond-guard threshold <= 1 (it would stop every run at its first vibration) is refused when it is set."""
    parameters = builder[stage].md.parameters.get_dict()
    parameters['guards'] = {**parameters.get('guards', {}), 'max_bond_stretch': value}
    with pytest.raises(
        ValueError, match=r'`parameters.guards.max_bond_stretch` must be > 1 \(a factor on the starting'
    ):
        builder[stage].md.parameters = orm.Dict(parameters)


def test_structure_without_molecule_ids(builder, box_atoms, model_stub):
    """Per-species diffusion (the default) needs molecule ids; element pairs without diffusion do not."""
    bare = orm.StructureData(ase=box_atoms)
    assert structure_molecules(bare) == (None, ['B', 'C', 'F', 'H', 'N'])
    builder.structure = bare
    error = _error(builder)
    assert 'diffusion per species is asked' in error and 'set `analysis.diffusion_species` to []' in error
    builder.analysis = orm.Dict({'diffusion_species': [], 'rdf_pairs': [['B', 'N']]})
    assert _error(builder) is None
    builder.analysis = orm.Dict({'diffusion_species': [], 'rdf_pairs': [['BF4', 'N']]})
    assert 'needs molecule ids' in _error(builder)


def test_models_must_cover_the_elements(builder, tmp_path):
    from aiida_ilmlff.data import MLFFModelData

    path = tmp_path / 'partial.model'
    path.write_bytes(b'stub')
    partial = MLFFModelData.from_file(path, 'mace', elements=['C', 'H', 'N'], r_cut=4.0, inspect=False).store()
    builder.models = {'model_0': partial}
    assert "`models.model_0` does not cover the elements ['B', 'F']" in _error(builder)


def test_wrong_code_and_temperature_fail_in_the_builder(runner_code, md_structure, model_stub, aiida_code_installed):
    """A training code given as the runner, or a temperature in degrees Celsius: refused by the builder."""
    dp = aiida_code_installed(label='dp-as-runner', default_calc_job_plugin='ilmlff.deepmd.train')
    with pytest.raises(ValueError, match=r'`code`: code `dp-as-runner.*` runs plugin `ilmlff.deepmd.train`'):
        PropertiesWorkChain.get_builder_from_protocol(dp, md_structure, models=model_stub)
    with pytest.raises(ValueError, match='outside any ionic liquid'):
        PropertiesWorkChain.get_builder_from_protocol(runner_code, md_structure, models=model_stub, temperature_K=25.0)
    with pytest.raises(ValueError, match=r'unknown key `nvt.md.paramters`'):
        PropertiesWorkChain.get_builder_from_protocol(
            runner_code, md_structure, models=model_stub, overrides={'nvt': {'md': {'paramters': {}}}}
        )


def test_bad_input_stores_nothing(builder):
    """Launching with bad input raises before the process starts and stores no process node."""
    from aiida.engine import run_get_node

    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    builder.analysis = orm.Dict({'msd_window_ps': [1.0, 2.0]})
    with pytest.raises(ValueError, match="`analysis`: unknown keys \\['msd_window_ps'\\]"):
        run_get_node(builder)
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_frames_structure_is_accepted(builder, box_atoms):
    from aiida_ilmlff.data import FramesData

    frames = FramesData.from_ase([box_atoms])
    species, elements = structure_molecules(frames)
    assert species == ['PYR14', 'PYR14', 'BF4', 'BF4'] and 'B' in elements
    builder.structure = frames
    assert _error(builder) is None
