"""``ilmlff.pipeline``: an ionic liquid from composition to a MACE vs DeePMD comparison, in one provenance graph.

The workflow of Park, Ryu & Lee (arXiv:2503.18249), end to end::

    composition + protocol
      -> ilmlff.dataset            EQ + nEQ frames labelled by DFT (or a ready labelled `frames` input)
      -> hold_out_test_set         one held-out `test` set shared by every model (whole blocks, time gap)
      -> ilmlff.active_learning    optional: grow the training set by committee deviation
      -> ilmlff.train (MACE), ilmlff.train (DeePMD)     committees on the same final training set
         + optional foundation models, fine-tuned (ilmlff.mace.train.base) and run as they are
      -> ilmlff.evaluate           every model on the shared test set
      -> ilmlff.properties         NPT until the density converges, NVT, density/D/RDF/CN per model
      -> compare_models            the comparison table (Dict) and figures

Every stage is a sub-process whose inputs are set here: the stage namespaces (``dataset``,
``active_learning``, ``mace``, ``deepmd``, ``finetune``, ``evaluate``, ``properties``) take the same inputs as
the work chains they run, minus what the pipeline passes from one stage to the next (frames, models,
structures, temperature, box density, architecture). Each namespace is checked by its stage's own plain-data
check (``check_inputs``) with what the pipeline sets at run time marked as such, and the top-level validator
runs the same checks again with the pipeline's values (composition, elements, temperature). ``get_builder_from_
protocol`` fills every namespace from the stages' plain protocol inputs (``pipeline.yaml``) and makes the nodes
last; no stand-in frames, structures or models are made.

Exit codes: 320 the test split failed (a calcfunction of the pipeline); 401-405 a stage failed
(``ERROR_SUB_PROCESS_FAILED_<STAGE>``: dataset, active learning, training, evaluation, properties); 406 some
rows of the comparison failed.
"""

from __future__ import annotations

import contextlib
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import WorkChain, if_

from aiida_ilmlff.calculations.evaluate import EvaluateCalculation
from aiida_ilmlff.calculations.functions.comparison import compare_models, plot_property_curves
from aiida_ilmlff.calculations.functions.frames import hold_out_test_set, select_frames
from aiida_ilmlff.common import composition_key
from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.data.frame_arrays import ORIGINS
from aiida_ilmlff.runner.contract import EVALUATE_BATCH_SIZE
from aiida_ilmlff.sampling.split import BLOCK_SPLIT_DEFAULTS, validate_block_split
from aiida_ilmlff.workflows import active_learning, dataset, properties, train
from aiida_ilmlff.workflows.active_learning import ActiveLearningWorkChain
from aiida_ilmlff.workflows.dataset import DatasetWorkChain
from aiida_ilmlff.workflows.label import LabelWorkChain
from aiida_ilmlff.workflows.md import MDBaseWorkChain
from aiida_ilmlff.workflows.properties import PropertiesWorkChain
from aiida_ilmlff.workflows.protocols import ProtocolMixin, UnknownOverrideError, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import LIQUID_TEMPERATURE_K, check_code_plugin, check_liquid_temperature
from aiida_ilmlff.workflows.protocols.plain import SET_BY_PARENT, to_plain
from aiida_ilmlff.workflows.train import MaceTrainBaseWorkChain, TrainWorkChain
from aiida_ilmlff.workflows.validate import ValidationWorkChain, reference_temperature_of

__all__ = ('ARCHITECTURE_LABELS', 'PipelineWorkChain', 'validate_inputs')

#: Row name and table label of each trained architecture.
ARCHITECTURE_LABELS = {'mace': 'MACE', 'deepmd': 'DeePMD'}
#: Codes of ``get_builder_from_protocol``: key -> what it runs.
CODE_KEYS = {
    'label': 'DFT single points (CP2K `cp2k` or pw.x `quantumespresso.pw`)',
    'aimd': 'CP2K AIMD for the EQ frames (default: `label` when it is CP2K)',
    'mace': '`mace_run_train` (plugin ilmlff.mace.train)',
    'deepmd': '`dp` (plugin ilmlff.deepmd.train)',
    'runner': '`ilmlff-runner` (MD, evaluation)',
}
#: The plugins each code of ``get_builder_from_protocol`` must have.
CODE_PLUGINS = {
    'label': ('cp2k', 'quantumespresso.pw'),
    'aimd': ('cp2k',),
    'mace': ('ilmlff.mace.train',),
    'deepmd': ('ilmlff.deepmd.train',),
    'runner': ('ilmlff.md', 'ilmlff.evaluate'),
}


def _compositions_of(value: t.Mapping) -> list[dict]:
    """The compositions of the pipeline's inputs as plain dicts: ``compositions``, or ``[composition]``.

    :raises ValueError: neither or both given, or an invalid list (:func:`aiida_ilmlff.systems.validate_compositions`:
        a list of one, a non-neutral entry, the same liquid twice).
    """
    composition, compositions = to_plain(value.get('composition')), to_plain(value.get('compositions'))
    if composition is not None and compositions is not None:
        raise ValueError('give `composition` (one box) or `compositions` (a list), not both')
    if compositions is None:
        if composition is None:
            raise ValueError(
                '`composition` is required (ion name -> count, e.g. {"PYR14": 2, "BF4": 2}), or `compositions` '
                '(a list of them for one model over several compositions)'
            )
        return [dict(composition)]
    from aiida_ilmlff.systems import CompositionError, validate_compositions

    try:
        validate_compositions(compositions)
    except CompositionError as exception:
        raise ValueError(str(exception)) from exception
    return [dict(c) for c in compositions]


def _union_facts(compositions: t.Sequence[t.Mapping]) -> tuple[dict[str, int], list[str], int]:
    """``(ion name -> charge, sorted elements, atoms of the largest box)`` over ``compositions``."""
    ions: dict[str, int] = {}
    elements: set[str] = set()
    n_atoms = 0
    for composition in compositions:
        charges, symbols, _, atoms = _composition_facts(composition)
        ions.update(charges)
        elements.update(symbols)
        n_atoms = max(n_atoms, atoms)
    return ions, sorted(elements), n_atoms


def _composition_facts(composition: t.Mapping) -> tuple[dict[str, int], list[str], list[str], int]:
    """``(ion name -> charge, sorted elements, ion name of every molecule, atoms per box)``.

    :raises ValueError: naming `composition` and the reason (unknown ion, not neutral, ...).
    """
    from aiida_ilmlff.systems import CompositionError, validate_composition

    try:
        spec = validate_composition(composition)
    except CompositionError as exception:
        raise ValueError(f'`composition`: {exception}') from exception
    ions = {name: ion.charge for name, ion in spec.ions.items()}
    elements = spec.elements
    species = [name for name, count in spec.counts.items() for _ in range(int(count))]
    return ions, elements, species, int(spec.n_atoms)


#: What the pipeline sets in each stage namespace at run time (marked SET_BY_PARENT in the namespace checks).
_SET_BY_PIPELINE = {
    'dataset': {'composition': SET_BY_PARENT, 'temperature': SET_BY_PARENT, 'box_density': SET_BY_PARENT},
    'active_learning': {'frames': SET_BY_PARENT, 'structures': ['box_0']},
    'mace': {'architecture': 'mace', 'train': SET_BY_PARENT},
    'deepmd': {'architecture': 'deepmd', 'train': SET_BY_PARENT},
    'properties': {'temperature': SET_BY_PARENT, 'models': SET_BY_PARENT},
}
#: The plain-data check of each stage namespace.
_STAGE_CHECKS = {
    'dataset': dataset.check_inputs,
    'active_learning': active_learning.check_inputs,
    'mace': train.check_inputs,
    'deepmd': train.check_inputs,
    'properties': properties.check_inputs,
}


def _namespace_validator(stage: str) -> t.Callable:
    """Port validator of the stage namespace ``stage``: its own check, with what the pipeline sets marked."""

    def validator(value: t.Mapping | None, _: t.Any = None) -> str | None:
        if not value:
            return None
        return _STAGE_CHECKS[stage](value, _SET_BY_PIPELINE[stage])

    validator.__doc__ = f'The `{stage}` namespace: its stage check, with the values the pipeline sets marked.'
    return validator


def _stage_messages(value: t.Mapping, compositions: t.Sequence[t.Mapping]) -> list[str]:
    """Run each stage's plain-data check on its namespace with the pipeline's values as the context (the properties
    check once per composition: each has its own box)."""
    top = to_plain({key: value[key] for key in ('temperature', 'box_density') if key in value})
    if len(compositions) == 1:
        dataset_context = {**_SET_BY_PIPELINE['dataset'], 'composition': dict(compositions[0]), **top}
    else:
        dataset_context = {'compositions': [dict(c) for c in compositions], 'temperature': top.get('temperature')}
    messages = []
    for composition in compositions if value.get('properties') else ():
        _, elements, species, _ = _composition_facts(composition)
        context = {
            **_SET_BY_PIPELINE['properties'],
            **({'temperature': top['temperature']} if 'temperature' in top else {}),
            'species': species,
            'elements': elements,
        }
        message = properties.check_inputs(value['properties'], context)
        if message:  # the first composition the properties do not fit is enough to say what is wrong
            where = f' (composition {composition_key(composition)})' if len(compositions) > 1 else ''
            messages.append(('properties', f'{message}{where}'))
            break
    contexts = {
        'dataset': dataset_context,
        'active_learning': {
            **_SET_BY_PIPELINE['active_learning'],
            **({'frames': value['frames']} if 'frames' in value else {}),
        },
        'mace': {**_SET_BY_PIPELINE['mace'], **({'train': value['frames']} if 'frames' in value else {})},
        'deepmd': {**_SET_BY_PIPELINE['deepmd'], **({'train': value['frames']} if 'frames' in value else {})},
    }
    for stage, check in _STAGE_CHECKS.items():
        if stage != 'properties' and value.get(stage):
            messages.append((stage, check(value[stage], contexts[stage])))
    return [f'`{name}`: {message}' for name, message in messages if message]


def validate_inputs(value: t.Mapping, _: t.Any = None) -> str | None:
    """Top-level validator: the composition(s), the stages asked for and the foundation models' elements."""
    try:
        compositions = _compositions_of(value)
        _, elements, _ = _union_facts(compositions)
    except ValueError as exception:
        return str(exception)
    if len(compositions) > 1:
        given = [key for key in ('box_density', 'md_structure') if key in value]
        if given:
            return (
                f'{", ".join(f"`{key}`" for key in given)}: for one composition; with `compositions` every box is '
                'built at the reference density of its own composition'
            )
    if 'frames' not in value and not value.get('dataset'):
        return 'give either `frames` (a labelled data set) or the `dataset` inputs (ilmlff.dataset) to make one'
    if 'frames' in value:
        frames = value['frames']
        if not frames.base.attributes.get('labelled'):
            return f'`frames` FramesData<{frames.pk}> is not labelled: label it first (ilmlff.label)'
        missing = sorted(set(elements) - set(frames.elements))
        if missing:
            return f'`frames` has no {missing} atoms, but the composition(s) have them'
    architectures = [name for name in ARCHITECTURE_LABELS if value.get(name)]
    foundations = value.get('foundation_models') or {}
    if not architectures and not foundations:
        return 'nothing to compare: give `mace` and/or `deepmd` training inputs, or `foundation_models`'
    fraction = to_plain(value.get('test_fraction', 0.2))
    if not 0.0 < float(fraction) < 0.9:
        return f'`test_fraction` must be in (0, 0.9), got {fraction}'
    messages = validate_block_split(
        fraction,
        to_plain(value.get('test_gap_fs', BLOCK_SPLIT_DEFAULTS['test_gap_fs'])),
        to_plain(value.get('test_block_fs', BLOCK_SPLIT_DEFAULTS['test_block_fs'])),
    )
    if messages:
        return '; '.join(messages)
    message = check_liquid_temperature(to_plain(value.get('temperature', 450.0)))
    if message:
        return message
    for key, model in foundations.items():
        if model.architecture != 'mace':
            return f'`foundation_models.{key}`: only MACE foundation models are supported, got `{model.architecture}`'
        for composition in compositions:
            missing = sorted(set(_composition_facts(composition)[1]) - set(model.elements))
            if missing:
                which = f'composition {composition_key(composition)}' if len(compositions) > 1 else 'the composition'
                return (
                    f'`foundation_models.{key}` (elements {model.elements}) lacks {missing} of {which}: '
                    'it cannot describe this ionic liquid; give a model that covers every element'
                )
    if foundations and not value.get('finetune'):
        return '`foundation_models` need the `finetune` inputs (ilmlff.mace.train.base: code, parameters)'
    origins = value.get('training_origins')
    if origins is not None:
        wanted = origins.get_list()
        unknown = sorted(str(o) for o in set(wanted) - set(ORIGINS))
        if not wanted or unknown:
            return f'`training_origins`: give one or more of {list(ORIGINS)}' + (f', not {unknown}' if unknown else '')
        if 'frames' in value and not set(wanted) & set(value['frames'].base.attributes.get('origin_counts') or {}):
            return f'`training_origins` {wanted}: `frames` has no frame of these origins'
    validation = value.get('validation') or {}
    if 'reference' in validation and len(compositions) > 1:
        return '`validation.reference` is one AIMD of one composition: not with `compositions`'
    if validation and 'frames' in value and not ('reference' in validation and 'label' in validation):
        return (
            '`validation` with `frames`: give `validation.reference` (the AIMD to validate against) and '
            '`validation.label` (its labelling inputs), or leave `validation` out'
        )
    if 'reference' in validation and 'frames' in value:  # the validation's own checks (run_time) made early
        reference, frames = validation['reference'], value['frames']
        wanted = composition_key(compositions[0])
        if reference.composition_keys[0] != wanted:
            return (
                f'`validation.reference` is an AIMD of {reference.composition_keys[0] or "unknown molecules"}, '
                f'not of the composition {wanted}'
            )
        level = reference.levels_of_theory[0]
        if level not in set(frames.levels_of_theory.tolist()):
            return (
                f'`validation.reference` is of level of theory {level or "unknown"}, which no frame of `frames` has: '
                'validate against an AIMD at the level of theory the models are trained on'
            )
    if not value.get('properties'):
        return '`properties` inputs (ilmlff.properties: runner code and MD settings) are required'
    if not value.get('evaluate'):
        return '`evaluate` inputs (ilmlff.evaluate: the runner code) are required'
    messages = _stage_messages(value, compositions)
    return '\n'.join(messages) if messages else None


def _error_line(metrics: dict) -> str:
    """One line of test-set errors of model 0 (the model that drives the MD): force RMSE absolute and relative,
    energy RMSE raw and aligned, pressure RMSE and the frames it used."""
    models = metrics.get('models') or {}
    errors = (models[sorted(models)[0]].get('errors') if models else None) or {}
    if not errors:
        return 'no reference labels on the test set'

    def number(key: str, fmt: str) -> str:
        value = errors.get(key)
        return format(value, fmt) if isinstance(value, (int, float)) else 'n/a'

    return (
        f'test-set force RMSE {number("force_rmse", ".1f")} meV/Å (relative {number("force_rmse_relative", ".3f")}), '
        f'energy RMSE {number("energy_rmse", ".2f")} meV/atom '
        f'(aligned {number("energy_rmse_aligned_meV_per_atom", ".2f")}), '
        f'pressure RMSE {number("pressure_rmse_kbar", ".2f")} kbar over {errors.get("n_stress_frames", 0)} frames '
        f'with a reference stress'
    )


class PipelineWorkChain(ProtocolMixin, WorkChain):
    """Data set -> (active learning) -> MACE and DeePMD committees -> test-set errors, MD properties -> comparison."""

    _protocol_file = 'pipeline.yaml'

    @classmethod
    def define(cls, spec):
        """Define the ports, the outline and the exit codes."""
        super().define(spec)
        spec.input(
            'composition',
            valid_type=orm.Dict,
            required=False,
            help='Ion name -> number of molecules of one box, e.g. {"PYR14": 2, "BF4": 2} (must be neutral); used '
            'for the data-set boxes, the properties box and the per-ion columns of the comparison.',
        )
        spec.input(
            'compositions',
            valid_type=orm.List,
            required=False,
            help='Several compositions instead of `composition`, e.g. LiTFSI in PYR14TFSI at x = 0 and 1/3: '
            '[{"PYR14": 2, "TFSI": 2}, {"Li": 1, "PYR14": 2, "TFSI": 3}]. One data set over all (the test set holds '
            'blocks of every composition), one model per architecture, then evaluation, properties and a comparison '
            'row per composition and model (rows `<model>_c<i>`, labelled with the composition).',
        )
        spec.input(
            'temperature',
            valid_type=orm.Float,
            default=lambda: orm.Float(450.0),
            help='Temperature [K] of the EQ AIMD and of the property MD (PYR14BF4 melts at ~424 K; PYR14TFSI and '
            f'its LiTFSI mixtures are liquid at 298 K). Must lie in {LIQUID_TEMPERATURE_K[0]:g}-'
            f'{LIQUID_TEMPERATURE_K[1]:g} K: below, every ionic liquid is a glass or a crystal; above, it has '
            'decomposed.',
        )
        spec.input(
            'box_density',
            valid_type=orm.Float,
            required=False,
            help="Density [g/cm^3] of the boxes built from `composition` (the NPT stage then finds the model's own). "
            'Default: the reference liquid density of the composition at `temperature` '
            '(aiida_ilmlff.systems.composition.reference_density); not with `compositions`, whose boxes each get '
            'their own.',
        )
        spec.input(
            'frames',
            valid_type=FramesData,
            required=False,
            help='A labelled data set to start from instead of running ilmlff.dataset.',
        )
        spec.expose_inputs(
            DatasetWorkChain,
            namespace='dataset',
            exclude=('composition', 'compositions', 'structure', 'temperature', 'box_density'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'validator': _namespace_validator('dataset'),
                'help': 'Inputs of ilmlff.dataset (EQ + nEQ frames labelled by DFT); composition, temperature '
                "and box_density are the pipeline's.",
            },
        )
        spec.input(
            'test_fraction',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.2),
            help='Fraction of the data set held out as the test set shared by every model, drawn as whole blocks '
            '(AIMD segments with their perturbation families, active-learning iterations); every origin with two '
            'blocks or more is in it. Whole blocks make the fraction coarse: the `test_split` output gives the counts.',
        )
        spec.input(
            'test_gap_fs',
            valid_type=orm.Float,
            default=lambda: orm.Float(BLOCK_SPLIT_DEFAULTS['test_gap_fs']),
            help='Minimum time [fs] between a test frame and any training frame of the same trajectory (>= 0; a '
            "perturbed frame counts at its parent's time). Training frames inside the gap are left out of both sets "
            '(counted in `test_split.n_excluded_by_gap`).',
        )
        spec.input(
            'test_block_fs',
            valid_type=orm.Float,
            default=lambda: orm.Float(BLOCK_SPLIT_DEFAULTS['test_block_fs']),
            help='Length [fs] of one held-out AIMD segment (> 0): the trajectories are cut into segments of this '
            'length, each with the perturbation families of its frames, and the test set takes whole segments.',
        )
        spec.input('split_seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seed of the test split.')
        spec.input(
            'training_origins',
            valid_type=orm.List,
            required=False,
            help=f'Origins ({", ".join(ORIGINS)}) of the frames that train the models, e.g. ["EQ"] for the '
            "paper's EQ-only ablation; default: all. The test set is drawn from the whole data set first, so runs "
            'on the same data set with different `training_origins` share one test set.',
        )
        spec.expose_inputs(
            ActiveLearningWorkChain,
            namespace='active_learning',
            exclude=('frames', 'exploration.structures'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'validator': _namespace_validator('active_learning'),
                'help': 'Optional ilmlff.active_learning on the training part of the data set; its final training '
                'set is what the MACE and DeePMD committees are trained on.',
            },
        )
        for name, label in ARCHITECTURE_LABELS.items():
            spec.expose_inputs(
                TrainWorkChain,
                namespace=name,
                exclude=('train', 'valid', 'test', 'architecture'),
                namespace_options={
                    'required': False,
                    'populate_defaults': False,
                    'validator': _namespace_validator(name),
                    'help': f'Inputs of ilmlff.train for the {label} committee (frames and architecture are set by '
                    f'the pipeline): `committee_size`, `member` (the inputs of each {label} model), ...',
                },
            )
        spec.input_namespace(
            'foundation_models',
            valid_type=MLFFModelData,
            dynamic=True,
            required=False,
            help='User-supplied MACE foundation models (e.g. MACE-MPA-0 or OMAT-0 files as MLFFModelData) by key: '
            'each joins the comparison as it is and fine-tuned on the final training set.',
        )
        spec.expose_inputs(
            MaceTrainBaseWorkChain,
            namespace='finetune',
            exclude=('mace.train', 'mace.valid', 'mace.test', 'mace.foundation_model'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Inputs of ilmlff.mace.train.base for fine-tuning each foundation model.',
            },
        )
        spec.expose_inputs(
            EvaluateCalculation,
            namespace='evaluate',
            exclude=('frames', 'models'),
            namespace_options={'help': 'Inputs of ilmlff.evaluate (the runner code) for the test-set errors.'},
        )
        spec.expose_inputs(
            PropertiesWorkChain,
            namespace='properties',
            exclude=('structure', 'models', 'temperature'),
            namespace_options={
                'validator': _namespace_validator('properties'),
                'help': 'Inputs of ilmlff.properties, run once per model.',
            },
        )
        spec.input(
            'md_structure',
            valid_type=orm.StructureData,
            required=False,
            help="Box for the property MD (with `mol_id`/`molecules`); default: the data set's first box (of each "
            'composition), or a box built from the composition at `box_density`. Not with `compositions`.',
        )
        spec.expose_inputs(
            ValidationWorkChain,
            namespace='validation',
            exclude=('models', 'training_set', 'test_force_rmse'),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': "Optional ilmlff.validate of every row against the data set's AIMD (same box, density and "
                'temperature): NVT with the committee, RDFs, bonds and angles against the AIMD, a posteriori errors '
                "on frames labelled with the data set's labelling inputs. `reference` and `label` are the data "
                "set's AIMD and labelling inputs; with `frames` give both (e.g. the AIMD `trajectory` and the "
                '`label` inputs of the ilmlff.dataset run that made `frames`).',
            },
        )
        spec.inputs['validation']['reference'].required = False
        spec.inputs['validation']['label'].required = False
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            if_(cls.should_run_dataset)(cls.run_dataset, cls.inspect_dataset),
            cls.split_test_set,
            if_(cls.should_run_active_learning)(cls.run_active_learning, cls.inspect_active_learning),
            cls.run_training,
            cls.inspect_training,
            cls.run_evaluation,
            cls.inspect_evaluation,
            cls.run_properties,
            cls.inspect_properties,
            cls.inspect_validation,
            cls.compare,
        )

        spec.output('dataset', valid_type=FramesData, help='The labelled data set (EQ + nEQ).')
        spec.output('training_set', valid_type=FramesData, help='The final training set every model was trained on.')
        spec.output(
            'test_set',
            valid_type=FramesData,
            help='The held-out test set shared by every model (the `test` output of hold_out_test_set).',
        )
        spec.output(
            'test_split',
            valid_type=orm.Dict,
            required=False,
            help='How the test set was held out (the `split` output of hold_out_test_set): its blocks, the gap '
            '`test_gap_fs`, frames left out by the gap, counts per origin, the smallest train-test time distance per '
            'trajectory `min_gap_fs` and `leak_free`.',
        )
        spec.output_namespace(
            'models', valid_type=MLFFModelData, dynamic=True, help='Models by comparison row (`mace`, `deepmd`, ...).'
        )
        spec.output_namespace(
            'evaluation',
            valid_type=orm.Dict,
            dynamic=True,
            help='ilmlff.evaluate metrics on the test set, by row (with `compositions`: by `<row>_c<i>`, on the test '
            'frames of composition i).',
        )
        spec.output_namespace(
            'properties',
            valid_type=orm.Dict,
            dynamic=True,
            help='ilmlff.properties `properties`, by row (with `compositions`: by `<row>_c<i>`).',
        )
        spec.output_namespace(
            'validation',
            valid_type=orm.Dict,
            dynamic=True,
            required=False,
            help='ilmlff.validate `validation` by row (with `compositions`: by `<row>_c<i>`).',
        )
        spec.output(
            'comparison',
            valid_type=orm.Dict,
            help='The comparison table: per row force/energy RMSE, density, D per ion, coordination numbers.',
        )
        spec.output_namespace(
            'figures',
            valid_type=orm.SinglefileData,
            dynamic=True,
            help='PNG figures: `comparison` (bars) and `curves` (MSD and RDF of every model).',
        )
        spec.exit_code(320, 'ERROR_SPLIT_FAILED', message='The test split failed: {message}')
        spec.exit_code(401, 'ERROR_SUB_PROCESS_FAILED_DATASET', message='ilmlff.dataset failed: {message}')
        spec.exit_code(
            402, 'ERROR_SUB_PROCESS_FAILED_ACTIVE_LEARNING', message='ilmlff.active_learning failed: {message}'
        )
        spec.exit_code(
            403, 'ERROR_SUB_PROCESS_FAILED_TRAINING', message='Training failed for {rows}: no model to compare.'
        )
        spec.exit_code(404, 'ERROR_SUB_PROCESS_FAILED_EVALUATION', message='ilmlff.evaluate failed for {rows}.')
        spec.exit_code(
            405, 'ERROR_SUB_PROCESS_FAILED_PROPERTIES', message='ilmlff.properties failed for every model: {rows}.'
        )
        spec.exit_code(
            406, 'ERROR_SOME_ROWS_FAILED', message='The comparison is incomplete: {rows} failed (see the report).'
        )

    # ----------------------------------------------------------------------------------------- protocol

    @classmethod
    def get_builder_from_protocol(
        cls,
        codes: t.Mapping[str, t.Any],
        composition: t.Mapping | orm.Dict | None = None,
        *,
        compositions: t.Sequence[t.Mapping] | orm.List | None = None,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        temperature_K: float | None = None,
        frames: FramesData | None = None,
        foundation_models: t.Mapping[str, MLFFModelData] | None = None,
        active_learning: bool | None = None,
        reference: FramesData | None = None,
        training_origins: t.Sequence[str] | None = None,
    ):
        """A builder for the whole pipeline of ``composition`` at the level of ``protocol``.

        Every stage namespace is filled from that stage's plain protocol inputs (``get_plain_protocol_inputs``);
        nodes are made at the end, and no stand-in frames, structures or models are made.

        :param codes: mapping with ``label`` (CP2K or pw.x), ``mace`` (mace-train), ``deepmd`` (dp) and ``runner``
            (ilmlff-runner) codes or code labels; ``aimd`` optionally (default: ``label`` when it is CP2K).
            ``mace``/``deepmd`` may be left out to train only the other. Each is checked against the plugin its
            stage needs (:data:`CODE_PLUGINS`).
        :param composition: ion name -> count of one box, e.g. ``{'PYR14': 2, 'BF4': 2}``.
        :param compositions: two or more compositions instead of ``composition`` (e.g. LiTFSI in PYR14TFSI at
            several Li+ fractions): one data set of all (``n_eq``/``n_neq`` per composition, labelled at the level
            of theory of all their elements), one model per architecture, properties per composition and model;
            each box at the reference density of its composition; the temperature defaults to the highest
            ``default_temperature`` of them.
        :param protocol: ``fast``, ``balanced`` or ``stringent`` (``pipeline.yaml``): sets the protocols of every
            stage.
        :param overrides: nested mapping merged over the protocol: top-level ports (``test_fraction``,
            ``box_density``, ...) and ``meta_parameters`` (``<stage>_protocol`` / ``<stage>_overrides`` for
            dataset, active_learning, mace, deepmd, finetune, properties; ``committee_size``). The committees'
            overrides are those of ``TrainWorkChain`` (e.g. ``{'member': {'mace': {'parameters': {...}}}}``). An
            unknown key at any depth is a ``ValueError`` naming its full path.
        :param options: ``metadata.options`` merged into every calculation.
        :param temperature_K: temperature of the AIMD and of the property MD [K], within
            :data:`~aiida_ilmlff.workflows.protocols.checks.LIQUID_TEMPERATURE_K`; default: the protocol's
            ``temperature``, or when that is null the ions' own (``systems.density.default_temperature``: 298.15 K
            for PYR14TFSI and its LiTFSI mixtures, 450 K for PYR14BF4). The box density, when the protocol's
            ``box_density`` is null, is ``systems.density.reference_density(composition, temperature)``.
        :param frames: a labelled data set to use instead of running ilmlff.dataset.
        :param foundation_models: key -> MACE MLFFModelData, compared as they are and fine-tuned.
        :param active_learning: run ilmlff.active_learning (default: the protocol's ``active_learning``).
        :param reference: with ``frames``, the AIMD (FramesData of one run) to validate every row against; its
            a posteriori frames are labelled with ``codes['label']`` at the validation protocol's labelling
            protocol. Without it, a pipeline given ``frames`` validates nothing.
        :param training_origins: origins that train the models (e.g. ``['EQ']``); default all.
        :raises ValueError: an unknown protocol or override key, a missing, unknown or wrong-plugin code, a
            non-neutral or unknown composition, a temperature outside any liquid, a box larger than the labelling
            protocol labels, a committee of fewer than 2, a foundation model missing an element of the composition.
        """
        protocol = cls.check_protocol(protocol)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        meta = inputs.pop('meta_parameters')
        if isinstance(composition, orm.Dict):
            composition = composition.get_dict()
        if isinstance(compositions, orm.List):
            compositions = compositions.get_list()
        # raises ValueError with the reason: neither or both given, unknown ion, not neutral, the same liquid twice
        compositions = _compositions_of(
            {'composition': composition, 'compositions': list(compositions) if compositions is not None else None}
        )
        several = len(compositions) > 1
        _, elements, n_atoms = _union_facts(compositions)
        codes = cls._resolve_codes(codes)
        from aiida_ilmlff.systems.density import default_temperature, reference_density

        if temperature_K is not None:
            temperature = float(temperature_K)
        elif inputs.get('temperature') is not None:
            temperature = float(inputs['temperature'])
        else:  # the ions' own: 298.15 K for PYR14TFSI and its LiTFSI mixtures, 450 K for PYR14BF4
            temperature = max(float(default_temperature(c)) for c in compositions)
        message = check_liquid_temperature(temperature)
        if message:
            raise ValueError(message)
        box_density = None
        if several:
            if inputs.get('box_density') is not None:
                raise ValueError(
                    '`box_density` (overrides) is for one composition: with `compositions` every box is built at the '
                    'reference density of its own composition'
                )
        elif inputs.get('box_density') is not None:
            box_density = float(inputs['box_density'])
        else:  # the measured liquid density of the ions where known, else an ion-volume estimate (docs/systems.md)
            box_density = round(float(reference_density(compositions[0], temperature)), 4)
        options = dict(options or {})

        builder = cls.get_builder()
        if several:
            builder.compositions = orm.List(compositions)
        else:
            builder.composition = orm.Dict(dict(compositions[0]))
            builder.box_density = orm.Float(box_density)
        builder.temperature = orm.Float(temperature)
        builder.test_fraction = orm.Float(float(inputs['test_fraction']))
        builder.split_seed = orm.Int(int(inputs['split_seed']))
        builder.test_gap_fs = orm.Float(float(inputs['test_gap_fs']))
        builder.test_block_fs = orm.Float(float(inputs['test_block_fs']))

        sizes: dict = {}
        if frames is not None:
            builder.frames = frames
        else:
            if 'label' not in codes:
                raise ValueError('`codes`: the data set needs a `label` code (CP2K or pw.x), or give `frames`')
            dataset_codes = {key: codes[key] for key in ('label', 'aimd') if key in codes}
            dataset_overrides = recursive_merge(
                meta.get('dataset_overrides') or {},
                {'temperature': temperature, **({'box_density': box_density} if box_density is not None else {})},
            )
            with cls._stage_overrides('dataset'):
                plain = DatasetWorkChain.get_plain_protocol_inputs(
                    meta['dataset_protocol'],
                    dataset_overrides,
                    codes=dataset_codes,
                    elements=elements,
                    n_atoms=n_atoms,
                    options=options or None,
                )
            nodes = DatasetWorkChain.plain_inputs_to_nodes(dataset_codes, plain, elements=elements)
            for key in ('temperature', 'box_density'):
                nodes.pop(key, None)
            builder.dataset = nodes
            # The test split and the validation fraction sized to the data set's level of theory (`fast-dft`: a
            # shorter AIMD, fewer frames), under `overrides`.
            label_protocol = plain['meta_parameters']['label_protocol']
            sizes = dict((meta.get('label_protocol_sizes') or {}).get(label_protocol) or {})
            for key, value in sizes.items():
                if key not in ('test_fraction', 'test_gap_fs', 'test_block_fs', 'valid_fraction'):
                    raise ValueError(
                        f'`meta_parameters.label_protocol_sizes.{label_protocol}.{key}`: only test_fraction, '
                        'test_gap_fs, test_block_fs and valid_fraction are sized by the level of theory'
                    )
                if key != 'valid_fraction' and key not in (overrides or {}):
                    builder[key] = type(builder[key])(value)

        # `architectures: []` trains no committee: only the foundation models are compared (as is, fine-tuned)
        wanted = meta.get('architectures')
        wanted = list(ARCHITECTURE_LABELS) if wanted is None else list(wanted)
        for name in wanted:
            if name not in ARCHITECTURE_LABELS:
                raise ValueError(f'`architectures`: unknown {name!r}; use {list(ARCHITECTURE_LABELS)}')
        architectures = [name for name in wanted if name in codes]
        if not architectures and not foundation_models:
            raise ValueError('`codes`: give a `mace` and/or `deepmd` training code (or `foundation_models`)')
        for name in architectures:
            train_overrides = dict(meta.get(f'{name}_overrides') or {})
            if 'valid_fraction' in sizes and 'valid_fraction' not in train_overrides:
                train_overrides['valid_fraction'] = sizes['valid_fraction']
            with cls._stage_overrides(name):
                plain = TrainWorkChain.get_plain_protocol_inputs(
                    meta.get(f'{name}_protocol') or meta['train_protocol'],
                    train_overrides or None,
                    architecture=name,
                    options=options or None,
                    committee_size=int(meta['committee_size']),
                )
            nodes = TrainWorkChain.plain_inputs_to_nodes(codes[name], plain)
            nodes.pop('architecture')
            builder[name] = nodes

        if foundation_models:
            if 'mace' not in codes:
                raise ValueError('`codes`: fine-tuning foundation models needs the `mace` training code')
            builder.foundation_models = dict(foundation_models)
            with cls._stage_overrides('finetune'):
                plain = MaceTrainBaseWorkChain.get_plain_protocol_inputs(
                    meta.get('finetune_protocol') or meta['train_protocol'],
                    meta.get('finetune_overrides') or None,
                    options=options or None,
                )
            plain['max_iterations'] = int(meta.get('finetune_restarts', 3))
            builder.finetune = MaceTrainBaseWorkChain.plain_inputs_to_nodes(codes['mace'], plain)

        if 'runner' not in codes:
            raise ValueError('`codes`: give the `runner` code (ilmlff-runner) for evaluation and MD')
        builder.evaluate.code = codes['runner']
        evaluate_options = recursive_merge(
            {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'withmpi': False}, options
        )
        builder.evaluate.metadata = {'options': evaluate_options}
        builder.evaluate.parameters = orm.Dict({'batch_size': meta.get('evaluate_batch_size', EVALUATE_BATCH_SIZE)})

        with cls._stage_overrides('properties'):
            plain = PropertiesWorkChain.get_plain_protocol_inputs(
                meta['properties_protocol'],
                meta.get('properties_overrides') or None,
                options=options or None,
                temperature_K=temperature,
            )
        nodes = PropertiesWorkChain.plain_inputs_to_nodes(codes['runner'], plain)
        nodes.pop('temperature')
        builder.properties = nodes

        if frames is not None and reference is not None and 'label' not in codes:
            raise ValueError(
                '`codes`: validating against `reference` needs the `label` code for the a posteriori frames'
            )
        if inputs.get('validation', False) and (frames is None or reference is not None):
            with cls._stage_overrides('validation'):
                plain = ValidationWorkChain.get_plain_protocol_inputs(
                    meta['validation_protocol'],
                    meta.get('validation_overrides') or None,
                    label_code=codes['label'],
                    elements=elements,
                    temperature_K=temperature,
                    options=options or None,
                )
            builder.validation = {
                'md': MDBaseWorkChain.plain_inputs_to_nodes(codes['runner'], plain['md']),
                'analysis': orm.Dict(plain.get('analysis') or {}),
                'a_posteriori_frames': orm.Int(plain['a_posteriori_frames']),
            }
            if frames is not None:  # no data set run to take the AIMD and the labelling inputs from
                builder.validation.reference = reference
                builder.validation.label = LabelWorkChain.plain_inputs_to_nodes(
                    codes['label'], plain['label'], elements=elements
                )
        if training_origins is not None:
            builder.training_origins = orm.List(list(training_origins))

        use_active_learning = inputs.get('active_learning', False) if active_learning is None else active_learning
        if use_active_learning:
            builder.active_learning = cls._active_learning_inputs(codes, elements, n_atoms, meta, options, temperature)

        message = validate_inputs({**builder._inputs(prune=True), **({'frames': frames} if frames else {})})
        if message:
            raise ValueError(message)
        rows = ', '.join(architectures + [f'{key} (as is, fine-tuned)' for key in foundation_models or {}])
        builder.metadata.description = (
            f'ilmlff.pipeline ({protocol}): {"; ".join(composition_key(c) for c in compositions)} at '
            f'{temperature:g} K; {rows}'
        )
        return builder

    @staticmethod
    def _resolve_codes(codes: t.Mapping[str, t.Any]) -> dict[str, orm.AbstractCode]:
        """The codes loaded (labels allowed) and checked against the plugin of their stage (:data:`CODE_PLUGINS`)."""
        if not isinstance(codes, t.Mapping):
            raise ValueError(f'`codes` must be a mapping with keys among {sorted(CODE_KEYS)}')
        unknown = sorted(set(codes) - set(CODE_KEYS))
        if unknown:
            raise ValueError(
                f'`codes`: unknown key(s) {unknown}; use ' + '; '.join(f'`{k}`: {v}' for k, v in CODE_KEYS.items())
            )
        resolved = {
            key: orm.load_code(code) if isinstance(code, (str, int)) else code for key, code in codes.items() if code
        }
        for key, code in resolved.items():
            message = check_code_plugin(code, CODE_PLUGINS[key], f'codes.{key}')
            if message:
                raise ValueError(message)
        return resolved

    @staticmethod
    @contextlib.contextmanager
    def _stage_overrides(stage: str):
        """Report an unknown key of ``meta_parameters.<stage>_overrides`` with its full path."""
        try:
            yield
        except UnknownOverrideError as exception:
            raise exception.prefixed(f'meta_parameters.{stage}_overrides') from None

    @classmethod
    def _active_learning_inputs(cls, codes, elements, n_atoms, meta, options, temperature: float) -> dict:
        """The active-learning inputs; its exploration temperatures are offsets from the pipeline's ``temperature``."""
        architecture = meta.get('active_learning_architecture', 'mace')
        missing = sorted({'label', 'runner', architecture} - set(codes))
        if missing:
            raise ValueError(f'`codes`: active learning needs {missing}')
        al_codes = {'train': codes[architecture], 'runner': codes['runner'], 'label': codes['label']}
        with cls._stage_overrides('active_learning'):
            plain = ActiveLearningWorkChain.get_plain_protocol_inputs(
                meta['active_learning_protocol'],
                meta.get('active_learning_overrides') or None,
                codes=al_codes,
                elements=elements,
                n_atoms=n_atoms,
                options=options or None,
                architecture=architecture,
                temperature=temperature,
            )
        return ActiveLearningWorkChain.plain_inputs_to_nodes(al_codes, plain, elements=elements)

    # ----------------------------------------------------------------------------------------- outline

    def setup(self):
        """Decide the rows of the comparison."""
        self.ctx.compositions = _compositions_of(self.inputs)
        self.ctx.ions, self.ctx.elements, _ = _union_facts(self.ctx.compositions)
        self.ctx.boxes = {}
        self.ctx.rows = {}
        self.ctx.failed = []
        for name, label in ARCHITECTURE_LABELS.items():
            if self.inputs.get(name):
                self.ctx.rows[name] = {'label': label, 'kind': 'trained', 'architecture': name}
        for key in self.inputs.get('foundation_models', {}):
            self.ctx.rows[f'foundation_{key}'] = {
                'label': f'{key} (as is)',
                'kind': 'foundation',
                'architecture': 'mace',
            }
            self.ctx.rows[f'finetuned_{key}'] = {
                'label': f'{key} (fine-tuned)',
                'kind': 'finetuned',
                'architecture': 'mace',
            }
        self.ctx.models = {}
        self.report(f'comparison rows: {", ".join(self.ctx.rows)}')

    def should_run_dataset(self) -> bool:
        """Whether the data set must be made (no `frames` given)."""
        return 'frames' not in self.inputs

    def _several(self) -> bool:
        return len(self.ctx.compositions) > 1

    def _table_rows(self, row: str) -> dict[str, int | None]:
        """The comparison rows of a model row: itself, or ``<row>_c<i>`` per composition i."""
        if not self._several():
            return {row: None}
        return {f'{row}_c{index}': index for index in range(len(self.ctx.compositions))}

    def run_dataset(self):
        """Run ilmlff.dataset for the composition (or the compositions)."""
        inputs = AttributeDict(self.exposed_inputs(DatasetWorkChain, namespace='dataset'))
        if self._several():
            inputs.compositions = self.inputs.compositions
        else:
            inputs.composition = self.inputs.composition
            if 'box_density' in self.inputs:
                inputs.box_density = self.inputs.box_density
        inputs.temperature = self.inputs.temperature
        inputs.metadata = {'call_link_label': 'dataset'}
        node = self._launch(DatasetWorkChain, inputs, 'dataset')
        if node is None:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_DATASET.format(
                message='its inputs were refused (see the report)'
            )
        self.report(f'stage 1/5 data set: launched DatasetWorkChain<{node.pk}>')
        return None

    def inspect_dataset(self):
        """Take the labelled frames of the data set."""
        node = self.ctx.dataset
        if not node.is_finished_ok or 'frames' not in node.outputs:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_DATASET.format(
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
            )
        boxes = node.outputs.boxes if 'boxes' in node.outputs else {}
        self.ctx.reference_aimd = {}
        for index in range(len(self.ctx.compositions)):
            name = f'composition_{index}_box_0' if self._several() else 'box_0'
            if name in boxes:
                self.ctx.boxes[str(index)] = boxes[name]
            # The CP2K AIMD of the composition's first box: the reference for the Li+ and TFSI results.
            parent = node
            if self._several():
                parent = node.base.links.get_outgoing(link_label_filter=f'composition_{index}').one().node
            trajectory = dataset.first_aimd_trajectory(parent)
            if trajectory is not None:
                self.ctx.reference_aimd[str(index)] = trajectory
        return None

    def split_test_set(self):
        """Hold out one test set shared by every model: whole blocks, a time gap away from the training frames."""
        frames = self.inputs.frames if 'frames' in self.inputs else self.ctx.dataset.outputs.frames
        self.out('dataset', frames)
        try:
            result = hold_out_test_set(
                frames,
                self.inputs.test_fraction,
                self.inputs.split_seed,
                test_gap_fs=self.inputs.test_gap_fs,
                test_block_fs=self.inputs.test_block_fs,
                metadata={'call_link_label': 'split_test_set'},
            )
        except Exception as exception:
            return self.exit_codes.ERROR_SPLIT_FAILED.format(message=str(exception))
        self.ctx.training_set, self.ctx.test_set = result['train'], result['test']
        self.out('test_set', self.ctx.test_set)
        if 'training_origins' in self.inputs:  # an ablation: only these origins train, the test set is unchanged
            wanted = set(self.inputs.training_origins.get_list())
            keep = [i for i, origin in enumerate(self.ctx.training_set.origins.tolist()) if origin in wanted]
            if not keep:
                return self.exit_codes.ERROR_SPLIT_FAILED.format(
                    message=f'no training frame of the origins {sorted(wanted)} is left after the split'
                )
            self.report(
                f'training_origins {sorted(wanted)}: {len(keep)} of {self.ctx.training_set.n_frames} training frames'
            )
            self.ctx.training_set = select_frames(
                self.ctx.training_set, orm.List(keep), metadata={'call_link_label': 'training_origins'}
            )
        self.ctx.test_split = result['split']
        self.out('test_split', result['split'])
        split = result['split'].get_dict()
        without = split['origins_without_test_block']
        self.report(
            f'stage 2/5 split: {self.ctx.training_set.n_frames} frames for training, '
            f'{self.ctx.test_set.n_frames} held out as the shared test set FramesData<{self.ctx.test_set.pk}> '
            f'({split["n_test_blocks"]} of {split["n_blocks"]} blocks, {split["test_by_origin"]}); '
            f'{split["n_excluded_by_gap"]} frames left out within the {split["test_gap_fs"]:g} fs gap'
            + (f'; no test block for {without} (a single block each)' if without else '')
        )
        self.ctx.test_sets = {'all': self.ctx.test_set}  # keyed by composition index as str (context keys)
        if self._several():  # the test frames of each composition, for errors per composition
            keys = self.ctx.test_set.composition_keys.tolist()
            for index, composition in enumerate(self.ctx.compositions):
                wanted = composition_key(composition)
                indices = [i for i, key in enumerate(keys) if key == wanted]
                if not indices:
                    self.report(f'composition {index} ({wanted}) has no test frame: no test-set errors for it')
                    continue
                self.ctx.test_sets[str(index)] = select_frames(
                    self.ctx.test_set, orm.List(indices), metadata={'call_link_label': f'test_set_c{index}'}
                )
        return None

    def should_run_active_learning(self) -> bool:
        """Whether active learning was asked for."""
        return bool(self.inputs.get('active_learning'))

    def run_active_learning(self):
        """Grow the training set by active learning, starting from the training part of the data set."""
        inputs = AttributeDict(self.exposed_inputs(ActiveLearningWorkChain, namespace='active_learning'))
        inputs.frames = self.ctx.training_set
        exploration = AttributeDict(inputs.exploration)
        exploration.structures = {f'box_{i}': self._md_structure(i) for i in range(len(self.ctx.compositions))}
        inputs.exploration = exploration
        inputs.metadata = {'call_link_label': 'active_learning'}
        node = self._launch(ActiveLearningWorkChain, inputs, 'active_learning')
        if node is None:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_ACTIVE_LEARNING.format(
                message='inputs refused (see the report)'
            )
        self.report(f'stage 2b active learning: launched ActiveLearningWorkChain<{node.pk}>')
        return None

    def inspect_active_learning(self):
        """Take the final training set of active learning."""
        node = self.ctx.active_learning
        if 'frames' not in node.outputs:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_ACTIVE_LEARNING.format(
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
            )
        if not node.is_finished_ok:
            self.report(f'active learning ended [{node.exit_status}] {node.exit_message}: using its last training set')
        self.ctx.training_set = node.outputs.frames
        self.ctx.active_learning_iterations = node.outputs.iterations if 'iterations' in node.outputs else None
        return None

    def run_training(self):
        """Train the MACE and DeePMD committees and fine-tune the foundation models on the same training set."""
        self.out('training_set', self.ctx.training_set)
        launched = []
        for name in ARCHITECTURE_LABELS:
            if name not in self.ctx.rows:
                continue
            inputs = AttributeDict(self.exposed_inputs(TrainWorkChain, namespace=name))
            inputs.train = self.ctx.training_set
            inputs.architecture = orm.Str(name)
            inputs.metadata = {'call_link_label': f'train_{name}'}
            node = self._launch(TrainWorkChain, inputs, f'train_{name}')
            if node is not None:
                launched.append(f'{ARCHITECTURE_LABELS[name]} TrainWorkChain<{node.pk}>')
        for key, model in self.inputs.get('foundation_models', {}).items():
            inputs = AttributeDict(self.exposed_inputs(MaceTrainBaseWorkChain, namespace='finetune'))
            calc = AttributeDict(inputs.mace)
            calc.train = self.ctx.training_set
            calc.foundation_model = model
            inputs.mace = calc
            inputs.metadata = {'call_link_label': f'finetune_{key}'}
            node = self._launch(MaceTrainBaseWorkChain, inputs, f'train_finetuned_{key}')
            if node is not None:
                launched.append(f'fine-tune {key} MaceTrainBaseWorkChain<{node.pk}>')
        self.report(
            f'stage 3/5 training on FramesData<{self.ctx.training_set.pk}> ({self.ctx.training_set.n_frames} frames): '
            + (', '.join(launched) or 'nothing could be launched')
        )

    def inspect_training(self):
        """Collect the models of every row; a row whose training failed leaves the comparison."""
        for row in list(self.ctx.rows):
            info = self.ctx.rows[row]
            if info['kind'] == 'foundation':
                key = row[len('foundation_') :]
                self.ctx.models[row] = {'model_0': self.inputs.foundation_models[key]}
                continue
            node = self.ctx.get(f'train_{row}')
            if node is None:
                self._drop(row)
                continue
            if info['kind'] == 'finetuned':
                models = {'model_0': node.outputs.model} if 'model' in node.outputs else {}
            else:
                models = dict(node.outputs.models) if 'models' in node.outputs else {}
            if not models:
                self.report(f'{row}: training {node.process_label}<{node.pk}> failed [{node.exit_status}]: dropped')
                self._drop(row)
                continue
            if not node.is_finished_ok:
                self.report(f'{row}: {node.process_label}<{node.pk}> ended [{node.exit_status}]; using its models')
            self.ctx.models[row] = models
        if not self.ctx.rows:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_TRAINING.format(rows=', '.join(self.ctx.failed))
        self.out('models', {row: dict(models) for row, models in self.ctx.models.items()})
        return None

    def _launch(self, process, inputs: t.Mapping, key: str) -> orm.ProcessNode | None:
        """Submit ``process`` into the context as ``key``; a refusal by its input validation is reported, not raised.

        Inputs that only exist at run time (e.g. a training set too small for the validation split) can still be
        invalid; the process is then not created (validation runs before anything is stored) and the row that
        needed it leaves the comparison.
        """
        try:
            node = self.submit(process, **inputs)
        except ValueError as exception:
            self.report(f'{key}: {process.__name__} refused its inputs: {exception}')
            return None
        self.to_context(**{key: node})
        return node

    def _drop(self, row: str) -> None:
        self.ctx.rows.pop(row, None)
        self.ctx.models.pop(row, None)
        self.ctx.failed.append(row)

    def run_evaluation(self):
        """Evaluate every row's models (the whole committee) on the shared test set (per composition with
        `compositions`)."""
        for row, models in self.ctx.models.items():
            for table_row, index in self._table_rows(row).items():
                key = 'all' if index is None else str(index)
                if key not in self.ctx.test_sets:
                    continue
                inputs = AttributeDict(self.exposed_inputs(EvaluateCalculation, namespace='evaluate'))
                inputs.frames = self.ctx.test_sets[key]
                inputs.models = models
                inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': f'evaluate_{table_row}'}
                self._launch(EvaluateCalculation, inputs, f'evaluate_{table_row}')
        self.report(f'stage 4/5 evaluation of {len(self.ctx.models)} model set(s) on the test set')

    def inspect_evaluation(self):
        """Keep the metrics; a row whose evaluation failed leaves the comparison (with `compositions`: the row of
        that composition; the model leaves when none of its rows is left)."""
        metrics = {}
        for row in list(self.ctx.rows):
            for table_row in self._table_rows(row):
                node = self.ctx.get(f'evaluate_{table_row}')
                if node is None:
                    self.ctx.failed.append(f'{table_row} (evaluation)')
                    continue
                if not node.is_finished_ok:
                    self.report(
                        f'{table_row}: evaluation {node.process_label}<{node.pk}> failed [{node.exit_status}]: dropped'
                    )
                    self.ctx.failed.append(f'{table_row} (evaluation)')
                    continue
                metrics[table_row] = node.outputs.metrics
                self.report(f'{table_row}: {_error_line(node.outputs.metrics.get_dict())}')
            if not any(table_row in metrics for table_row in self._table_rows(row)):
                self._drop(row)
        if not metrics:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_EVALUATION.format(rows=', '.join(self.ctx.failed))
        self.out('evaluation', metrics)
        self.ctx.metrics = metrics
        return None

    def _md_structure(self, index: int = 0) -> orm.StructureData:
        """The MD box of composition ``index``: `md_structure`, the data set's first box, or one built here."""
        if 'md_structure' in self.inputs:
            return self.inputs.md_structure
        if str(index) not in self.ctx.boxes:
            from aiida_ilmlff.calculations.functions.box import build_ionic_liquid_box
            from aiida_ilmlff.systems.composition import reference_density

            composition = self.ctx.compositions[index]
            if 'box_density' in self.inputs:
                density = self.inputs.box_density
            else:
                density = orm.Float(round(float(reference_density(composition, self.inputs.temperature.value)), 4))
            self.ctx.boxes[str(index)] = build_ionic_liquid_box(
                orm.Dict(composition),
                density,
                self.inputs.split_seed,
                metadata={'call_link_label': f'build_md_box_c{index}' if self._several() else 'build_md_box'},
            )
        return self.ctx.boxes[str(index)]

    def run_properties(self):
        """Run ilmlff.properties with the driving model (model_0) of every row (in the box of every composition)."""
        for row, models in self.ctx.models.items():
            for table_row, index in self._table_rows(row).items():
                inputs = AttributeDict(self.exposed_inputs(PropertiesWorkChain, namespace='properties'))
                inputs.structure = self._md_structure(index or 0)
                inputs.models = {'model_0': models[sorted(models)[0]]}
                inputs.temperature = self.inputs.temperature
                inputs.metadata = {'call_link_label': f'properties_{table_row}'}
                self._launch(PropertiesWorkChain, inputs, f'properties_{table_row}')
                self._launch_validation(row, table_row, index or 0, models)
        boxes = ', '.join(
            f'StructureData<{box.pk}> ({len(box.sites)} atoms)' for _, box in sorted(self.ctx.boxes.items())
        )
        self.report(
            f'stage 5/5 properties: MD of {boxes} at {self.inputs.temperature.value:g} K with '
            f'{len(self.ctx.models)} model(s)'
        )

    def inspect_properties(self):
        """Keep the properties; rows without them stay in the table with accuracy only."""
        properties = {}
        for table_row in self.ctx.metrics:
            node = self.ctx.get(f'properties_{table_row}')
            if node is None:
                self.ctx.failed.append(f'{table_row} (properties)')
            elif 'properties' in node.outputs:
                properties[table_row] = node.outputs.properties
                if not node.is_finished_ok:
                    self.report(f'{table_row}: properties ended [{node.exit_status}] {node.exit_message}; kept')
            else:
                self.report(f'{table_row}: properties {node.process_label}<{node.pk}> failed [{node.exit_status}]')
                self.ctx.failed.append(f'{table_row} (properties)')
        if not properties:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_PROPERTIES.format(rows=', '.join(self.ctx.rows))
        self.out('properties', properties)
        self.ctx.properties = properties
        return None

    def _launch_validation(self, row: str, table_row: str, index: int, models: t.Mapping) -> None:
        """ilmlff.validate of one table row against the AIMD of its composition, when asked for and there is one."""
        if not self.inputs.get('validation'):
            return
        inputs = AttributeDict(self.exposed_inputs(ValidationWorkChain, namespace='validation'))
        # given (with `frames`), or the data set's AIMD and labelling inputs: the a posteriori frames are labelled
        # exactly as the data set's nEQ frames (same code, level of theory)
        reference = inputs.get('reference') or self.ctx.get('reference_aimd', {}).get(str(index))
        if reference is None:
            return
        inputs.models = dict(models)
        inputs.reference = reference
        if 'label' not in inputs:
            inputs.label = AttributeDict(self.exposed_inputs(DatasetWorkChain, namespace='dataset'))['label']
        md = AttributeDict(inputs.md)
        calc = AttributeDict(md.md)
        calc.parameters = orm.Dict(
            {**calc.parameters.get_dict(), 'ensemble': 'nvt', 'temperature_K': reference_temperature_of(reference)}
        )
        md.md = calc
        inputs.md = md
        if self.ctx.rows[row]['kind'] != 'foundation':
            inputs.training_set = self.ctx.training_set
        metrics = self.ctx.metrics.get(table_row)
        if metrics is not None:
            errors = (metrics.get_dict().get('models', {}).get(sorted(models)[0]) or {}).get('errors') or {}
            if errors.get('force_rmse'):
                inputs.test_force_rmse = orm.Float(errors['force_rmse'])
        inputs.metadata = {'call_link_label': f'validation_{table_row}'}
        self._launch(ValidationWorkChain, inputs, f'validation_{table_row}')

    def inspect_validation(self):
        """Keep each row's validation record (also of an MD that broke: exit 510 attaches it)."""
        validations = {}
        for table_row in self.ctx.metrics:
            node = self.ctx.get(f'validation_{table_row}')
            if node is None:
                continue
            if 'validation' in node.outputs:
                validations[table_row] = node.outputs.validation
            if not node.is_finished_ok:
                self.report(
                    f'{table_row}: validation {node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
                )
        if validations:
            self.out('validation', validations)
        self.ctx.validations = validations

    def _reference_results(self) -> orm.Dict | None:
        """The Li+ solvation and TFSI conformers of each composition's reference AIMD (the data set's CP2K run), by
        composition key; ``None`` when there is none (a given `frames` input, or no Li+ or TFSI)."""
        from aiida_ilmlff.calculations.functions.properties import analyse_li_environment, analyse_tfsi_conformers
        from aiida_ilmlff.calculations.functions.reference import aimd_trajectory

        settings = self.inputs.properties.analysis.get_dict() if 'analysis' in self.inputs.properties else {}
        analysis = orm.Dict({**settings, 'discard_ps': 0.0})  # the AIMD is short: analyse all of it
        li_species, tfsi_species = settings.get('li_species', 'Li'), settings.get('tfsi_species', 'TFSI')
        references: dict[str, dict] = {}
        for index, frames in sorted(self.ctx.get('reference_aimd', {}).items()):
            composition = self.ctx.compositions[int(index)]
            if li_species not in composition and tfsi_species not in composition:
                continue
            key = composition_key(composition)
            suffix = f'_c{index}' if self._several() else ''
            try:
                trajectory = aimd_trajectory(frames, metadata={'call_link_label': f'reference_trajectory{suffix}'})
                entry = {'n_frames': len(frames), 'trajectory_uuid': trajectory.uuid}
                if li_species in composition:
                    entry['li_clusters'] = analyse_li_environment(
                        trajectory, analysis, metadata={'call_link_label': f'reference_li_environment{suffix}'}
                    ).get_dict()
                if tfsi_species in composition:
                    entry['tfsi_conformers'] = analyse_tfsi_conformers(
                        trajectory, analysis, metadata={'call_link_label': f'reference_tfsi_conformers{suffix}'}
                    ).get_dict()
            except Exception as exception:  # a calcfunction that raised: stored as excepted, said here
                self.report(f'reference AIMD of {key}: no Li+/TFSI analysis ({exception})')
                continue
            references[key] = entry
        return orm.Dict(references) if references else None

    def compare(self):
        """Store the comparison table and its figures."""
        inputs: dict[str, orm.Data] = {}
        for row, info in self.ctx.rows.items():
            models = self.ctx.models[row]
            driver = sorted(models)[0]
            for table_row, index in self._table_rows(row).items():
                if table_row not in self.ctx.metrics:
                    continue
                composition = composition_key(self.ctx.compositions[index or 0])
                inputs[f'{table_row}_info'] = orm.Dict(
                    {
                        **info,
                        'label': f'{info["label"]} [{composition}]' if index is not None else info['label'],
                        'composition': composition,
                        'driver': driver,
                        'committee_size': len(models),
                        'model_uuid': models[driver].uuid,
                    }
                )
                inputs[f'{table_row}_evaluation'] = self.ctx.metrics[table_row]
                if table_row in self.ctx.properties:
                    inputs[f'{table_row}_properties'] = self.ctx.properties[table_row]
                if table_row in self.ctx.get('validations', {}):
                    inputs[f'{table_row}_validation'] = self.ctx.validations[table_row]
        references = self._reference_results()
        result = compare_models(
            orm.Dict(self.ctx.ions),
            test_split=self.ctx.test_split,
            **({'references': references} if references is not None else {}),
            **(
                {'active_learning': self.ctx.active_learning_iterations}
                if self.ctx.get('active_learning_iterations') is not None
                else {}
            ),
            **inputs,
            metadata={'call_link_label': 'compare_models'},
        )
        self.out('comparison', result['comparison'])
        figures = {'comparison': result['figure']}
        arrays = {}
        for row in self.ctx.properties:
            node = self.ctx[f'properties_{row}']
            for part in ('msd', 'rdf'):
                if 'curves' in node.outputs and part in node.outputs.curves:
                    arrays[f'{row}_{part}'] = node.outputs.curves[part]
        if arrays:
            figures['curves'] = plot_property_curves(**arrays, metadata={'call_link_label': 'plot_curves'})
        self.out('figures', figures)
        from aiida_ilmlff.analysis.comparison import format_comparison_table

        for line in format_comparison_table(result['comparison'].get_dict()).splitlines():
            self.report(line)
        if self.ctx.failed:
            return self.exit_codes.ERROR_SOME_ROWS_FAILED.format(rows=', '.join(self.ctx.failed))
        return None
