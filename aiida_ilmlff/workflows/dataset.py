"""``ilmlff.dataset``: a labelled MLFF training set of an ionic liquid: equilibrated (EQ) and perturbed (nEQ) frames.

Park, Ryu & Lee (arXiv 2503.18249) found that MLFFs of ionic liquids are reliable only when trained on both
equilibrated and non-equilibrated structures. This work chain makes such a set in one provenance graph::

    composition (or a structure) -> boxes (RDKit + Packmol)             build_ionic_liquid_box
      -> EQ frames: one of                                              origin EQ
           (a) an imported trajectory (extxyz, .traj, LAMMPS, GROMACS, ilmlff HDF5)   import_trajectory
           (b) CP2K NVT AIMD at the labelling level of theory (frames come labelled)   ilmlff.aimd + sample_frames
           (c) an existing FramesData trajectory (e.g. MLFF MD)                         sample_frames
         equilibration cut (pymbar) + spacing by the statistical inefficiency (or FPS)
      -> nEQ frames: rattle, strain, density series, close contacts, thermal kicks      generate_neq_frames
         (+ frames of a high-temperature trajectory, ``hot_md``)                        origin nEQ
      -> ilmlff.label for every frame without labels at the labelling level of theory
      -> ``frames`` (one labelled FramesData) + ``summary`` (counts, energy/atom and max-force per origin)

Build it with :meth:`DatasetWorkChain.get_builder_from_protocol`; see ``docs/dataset.md``. Bad input (no frame
asked for, a strain of 50 % or more, a trajectory whose species do not match the composition, ...) is
rejected by the input validator before anything is stored.

Exit codes: 310 box building failed, 330 EQ sampling failed, 340 nEQ generation failed, 360 the labelled parts
could not be merged (levels of theory differ), 370 no labelled frame at all (calcfunctions of the work chain and
fatal outcomes: 3xx); 401 an AIMD failed, 402 the labelling failed (sub-processes: 4xx).
"""

from __future__ import annotations

import copy
import math
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from aiida_ilmlff.calculations.functions.box import build_ionic_liquid_box
from aiida_ilmlff.calculations.functions.frames import merge_frames
from aiida_ilmlff.calculations.functions.sampling import (
    dataset_summary,
    generate_neq_frames,
    import_trajectory,
    sample_frames,
    structures_to_frames,
)
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.level_of_theory import cp2k_level_of_theory
from aiida_ilmlff.sampling import MIN_DISTANCE, TRAJECTORY_FORMATS, validate_generators
from aiida_ilmlff.sampling.perturb import GENERATORS, generator_counts
from aiida_ilmlff.sampling.settings import SAMPLING_SETTINGS, validate_import_settings
from aiida_ilmlff.systems.composition import reference_density
from aiida_ilmlff.systems.density import UNKNOWN_LIQUID_TEMPERATURE, default_temperature
from aiida_ilmlff.workflows.aimd import MD_DEFAULTS, RELAX_DEFAULTS, AimdWorkChain, validate_md, validate_relax
from aiida_ilmlff.workflows.label import LabelWorkChain
from aiida_ilmlff.workflows.protocols import ProtocolMixin, UnknownOverrideError, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import LIQUID_TEMPERATURE_K, check_code_plugin, check_liquid_temperature
from aiida_ilmlff.workflows.protocols.plain import is_set_by_parent, to_plain

__all__ = ('HOT_GENERATOR', 'DatasetWorkChain', 'check_inputs', 'first_aimd_trajectory', 'validate_inputs')

#: Name of the nEQ "generator" that takes frames from a high-temperature trajectory (``neq.hot_*`` inputs).
HOT_GENERATOR = 'hot_md'


# --------------------------------------------------------------------------------------------- validation


def _get(mapping: t.Any, *path: str) -> t.Any:
    node = mapping
    for key in path:
        if node is None:
            return None
        try:
            node = node[key] if key in node else None
        except TypeError:
            return None
    return node


def _structure_element_counts(structure: orm.StructureData) -> dict[str, int]:
    counts: dict[str, int] = {}
    for symbol in structure.get_ase().get_chemical_symbols():
        counts[symbol] = counts.get(symbol, 0) + 1
    return dict(sorted(counts.items()))


def _check_trajectory(value: t.Mapping, namespace: str, file_key: str, format_key: str) -> str | None:
    """Species of a trajectory file against the composition (or structure): read its first frame only."""
    from aiida_ilmlff.sampling import SpeciesMismatchError, check_species, read_first_frame

    trajectory = _get(value, *namespace.split('.'), file_key) if namespace else _get(value, file_key)
    if trajectory is None:
        return None
    section = _get(value, *namespace.split('.')) if namespace else value
    fmt = to_plain(_get(section, format_key))
    where = f'`{namespace}.{format_key}`' if namespace else f'`{format_key}`'
    if fmt is None:
        return f'{where}: give the format of `{namespace}.{file_key}` ({", ".join(TRAJECTORY_FORMATS)})'
    if fmt not in TRAJECTORY_FORMATS:
        return f'{where}: unknown trajectory format `{fmt}`; choose from {", ".join(TRAJECTORY_FORMATS)}'
    settings = to_plain(_get(value, 'eq', 'sampling')) or {}
    topology = _get(section, 'topology')
    try:
        with trajectory.as_path() as path:
            if topology is not None:
                with topology.as_path() as topology_path:
                    first = read_first_frame(
                        path,
                        fmt,
                        topology=topology_path,
                        type_map=settings.get('type_map'),
                        element_map=settings.get('element_map'),
                    )
            else:
                first = read_first_frame(
                    path, fmt, type_map=settings.get('type_map'), element_map=settings.get('element_map')
                )
    except Exception as exception:  # any reader error is a bad input
        return f'`{namespace}.{file_key}`: cannot read it as `{fmt}`: {exception}'
    composition = to_plain(value.get('composition'))
    if is_set_by_parent(composition):
        return None  # checked by the parent, which knows the composition
    what = f'`{namespace}.{file_key}` ({trajectory.filename})'
    try:
        if composition is not None:
            check_species(first, composition, what=what)
        elif value.get('structure') is not None:
            expected = _structure_element_counts(value['structure'])
            found: dict[str, int] = {}
            for symbol in first.get_chemical_symbols():
                found[symbol] = found.get(symbol, 0) + 1
            if dict(sorted(found.items())) != expected:
                return (
                    f'the species of {what} do not match `structure`: element counts {dict(sorted(found.items()))} '
                    f'vs {expected}'
                )
        else:
            return f'{what}: give `composition` (ion -> count of the simulated box) to assign its molecules'
    except SpeciesMismatchError as exception:
        return str(exception)
    except ValueError as exception:
        return f'`composition`: {exception}'
    return None


#: Inputs that belong to one composition, refused with `compositions`.
ONE_COMPOSITION_INPUTS = (
    'composition',
    'structure',
    'box_density',
    'eq.trajectory',
    'eq.frames',
    'neq.hot_trajectory',
    'neq.hot_frames',
)


def _compositions_messages(value: t.Mapping, compositions: t.Any) -> list[str]:
    """What is wrong with ``compositions`` and the inputs given with it (empty when fine)."""
    errors = []
    given = [key for key in ONE_COMPOSITION_INPUTS if _get(value, *key.split('.')) is not None]
    if given:
        errors.append(
            f'`compositions` builds and runs AIMD of a box of every composition: {", ".join(f"`{k}`" for k in given)} '
            'belong to one composition; leave them out (each box gets the reference density of its composition)'
        )
    if not is_set_by_parent(compositions):
        from aiida_ilmlff.systems import CompositionError, validate_compositions

        try:
            validate_compositions(compositions)
        except CompositionError as exception:
            errors.append(str(exception))
    return errors


def first_aimd_trajectory(dataset: orm.WorkflowNode) -> FramesData | None:
    """The ``trajectory`` (FramesData) of the first AIMD (call link ``aimd_0``) of an ``ilmlff.dataset`` run, the
    reference its EQ frames come from; ``None`` when it ran none, or that AIMD did not finish with a trajectory."""
    from aiida.common.links import LinkType

    called = dataset.base.links.get_outgoing(link_type=LinkType.CALL_WORK, link_label_filter='aimd_0').all()
    if not called or not called[0].node.is_finished_ok or 'trajectory' not in called[0].node.outputs:
        return None
    return called[0].node.outputs.trajectory


def check_inputs(values: t.Mapping, context: t.Mapping | None = None) -> str | None:
    """Check the inputs of ``ilmlff.dataset`` as plain values (see the module docstring); ``None`` if fine.

    :param values: the inputs (``Dict``/``Int``/... nodes are turned into plain values; files, frames and codes
        stay nodes), or the plain protocol inputs.
    :param context: what a parent sets at run time (``composition``, ``temperature``, ``box_density``): their
        values, or :data:`~aiida_ilmlff.workflows.protocols.plain.SET_BY_PARENT` when they are not known yet.
    """
    value = {**to_plain(values), **(context or {})}
    errors = []
    composition = to_plain(value.get('composition'))
    structure = value.get('structure')
    compositions = to_plain(value.get('compositions'))
    if compositions is not None:
        errors.extend(_compositions_messages(value, compositions))
    elif composition is not None and structure is not None:
        errors.append('give either `composition` or `structure`, not both')
    elif composition is None and structure is None:
        errors.append(
            "give `composition` (ion name -> count, e.g. {'PYR14': 2, 'BF4': 2}), `compositions` (a list of them) "
            'or a `structure`'
        )
    if composition is not None and not is_set_by_parent(composition):
        from aiida_ilmlff.systems import CompositionError, validate_composition, validate_density

        try:
            validate_composition(composition)
            density = value.get('box_density')
            if density is not None and not is_set_by_parent(density):
                validate_density(to_plain(density))
        except CompositionError as exception:
            errors.append(f'`composition`/`box_density`: {exception}')
    n_eq, n_neq = int(to_plain(value.get('n_eq', 0)) or 0), int(to_plain(value.get('n_neq', 0)) or 0)
    if n_eq < 0 or n_neq < 0:
        errors.append(f'`n_eq` and `n_neq` must be >= 0, got {n_eq} and {n_neq}')
    elif n_eq + n_neq == 0:
        errors.append('`n_eq` + `n_neq` = 0: nothing to generate; ask for at least one EQ or nEQ frame')
    temperature = to_plain(value.get('temperature'))
    if temperature is not None and not is_set_by_parent(temperature):
        message = check_liquid_temperature(temperature)
        if message:
            errors.append(message)
    if int(to_plain(value.get('n_boxes', 1)) or 1) < 1:
        errors.append('`n_boxes` must be >= 1')

    eq = value.get('eq') or {}
    sources = [name for name in ('trajectory', 'frames') if eq.get(name) is not None]
    if len(sources) > 1:
        errors.append('give at most one EQ source: `eq.trajectory` or `eq.frames`')
    has_aimd = _get(value, 'aimd', 'cp2k', 'cp2k', 'code') is not None
    if n_eq > 0 and not sources and not has_aimd:
        errors.append(
            '`n_eq` > 0 needs an EQ source: `eq.trajectory` (a trajectory file), `eq.frames` (a FramesData '
            'trajectory, e.g. from MLFF MD) or the `aimd` namespace (CP2K AIMD; get_builder_from_protocol sets it)'
        )
    sampling = {'n_max': max(n_eq, 1), **(to_plain(eq.get('sampling')) or {})}  # n_max is set from n_eq
    errors.extend(f'`eq.sampling`: {message}' for message in validate_import_settings(sampling))
    if eq.get('trajectory') is not None:
        message = _check_trajectory(value, 'eq', 'trajectory', 'trajectory_format')
        if message:
            errors.append(message)

    neq = value.get('neq') or {}
    floor_value = to_plain(neq.get('min_distance'))
    floor = MIN_DISTANCE if floor_value is None else float(floor_value)
    if not floor > 0:
        errors.append(f'`neq.min_distance` must be > 0 A, got {floor}')
    generators = dict(to_plain(neq.get('generators')) or {})
    hot = generators.pop(HOT_GENERATOR, None)
    if n_neq > 0:
        hot_weight = float((hot or {}).get('weight', 1.0)) if hot is not None else 0.0
        if generators:
            messages = validate_generators(generators, floor)
            if hot_weight > 0:  # the hot-trajectory frames alone are a valid mix
                messages = [m for m in messages if not m.startswith('every generator has weight 0')]
            errors.extend(f'`neq.generators`: {message}' for message in messages)
        has_hot_source = neq.get('hot_trajectory') is not None or neq.get('hot_frames') is not None
        if hot_weight > 0 and not has_hot_source:
            errors.append(
                f'`neq.generators.{HOT_GENERATOR}` needs a high-temperature trajectory: `neq.hot_trajectory` '
                '(a file) or `neq.hot_frames` (a FramesData, e.g. from ilmlff.aimd at high temperature)'
            )
        if not generators and hot is None:
            errors.append('`neq.generators` is empty: give at least one generator for `n_neq` > 0')
        if neq.get('hot_trajectory') is not None:
            message = _check_trajectory(value, 'neq', 'hot_trajectory', 'hot_trajectory_format')
            if message:
                errors.append(message)
    md = value.get('aimd', {}).get('md') if isinstance(value.get('aimd'), t.Mapping) else None
    if md is not None:
        message = validate_md(md)
        if message:
            errors.append(f'`aimd.{message.strip("`")}' if message.startswith('`md') else message)
    relax = value.get('aimd', {}).get('relax') if isinstance(value.get('aimd'), t.Mapping) else None
    if relax is not None:
        message = validate_relax(relax)
        if message:
            errors.append(f'`aimd.{message.lstrip("`")}')
    if errors:
        return 'invalid ilmlff.dataset inputs:\n  - ' + '\n  - '.join(errors)
    return None


def validate_inputs(value: t.Mapping, _: t.Any = None) -> str | None:
    """Port validator of the whole input namespace: :func:`check_inputs`."""
    return check_inputs(value)


# --------------------------------------------------------------------------------------------- work chain


class DatasetWorkChain(ProtocolMixin, WorkChain):
    """EQ + nEQ frames of an ionic liquid, labelled at one level of theory (see the module docstring)."""

    _protocol_file = 'dataset/dataset.yaml'

    @classmethod
    def define(cls, spec):
        """Define the process specification."""
        super().define(spec)
        spec.input(
            'composition',
            valid_type=orm.Dict,
            required=False,
            help='Ion name -> number of molecules of one box, e.g. {"PYR14": 2, "BF4": 2} (or give `structure`).',
        )
        spec.input(
            'compositions',
            valid_type=orm.List,
            required=False,
            help='Several compositions for one data set (instead of `composition`), e.g. [{"PYR14": 2, "TFSI": 2}, '
            '{"Li": 1, "PYR14": 2, "TFSI": 3}]: each runs as an ilmlff.dataset of its own (boxes at its reference '
            'density, AIMD, `n_eq` EQ and `n_neq` nEQ frames per composition, the same labelling), merged into one '
            'frame set whose frames keep their composition (FramesData attribute `compositions`).',
        )
        spec.input(
            'structure',
            valid_type=orm.StructureData,
            required=False,
            help='A ready box (periodic, Å) instead of `composition`; `mol_id`/`molecules` attributes (as set by '
            'the box builder) are needed for rigid strains and close contacts.',
        )
        spec.input(
            'box_density',
            valid_type=orm.Float,
            required=False,
            help='Density of the boxes built from `composition` [g/cm^3]. Default: the reference liquid density of '
            'the composition at `temperature`, aiida_ilmlff.systems.composition.reference_density (experimental '
            'where known, e.g. PYR14TFSI 1.40 g/cm^3 at 298 K; otherwise estimated from ion volumes).',
        )
        spec.input(
            'temperature',
            valid_type=orm.Float,
            default=lambda: orm.Float(450.0),
            help='Temperature of the EQ MD [K] (the AIMD thermostat; recorded on EQ frames). PYR14BF4 melts at '
            f'~424 K: simulate its liquid above that; PYR14TFSI and its LiTFSI mixtures are liquid at 298 K '
            '(get_builder_from_protocol picks aiida_ilmlff.systems.density.default_temperature of the composition '
            'unless given). Must lie in {LIQUID_TEMPERATURE_K[0]:g}-'
            f'{LIQUID_TEMPERATURE_K[1]:g} K: below, every ionic liquid is a glass or a crystal; above, it has '
            'decomposed.',
        )
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Random seed (boxes, MD, nEQ).')
        spec.input(
            'n_boxes',
            valid_type=orm.Int,
            default=lambda: orm.Int(1),
            help='Independent boxes (seeds seed, seed+1, ...) each run by its own AIMD; EQ frames are split evenly.',
        )
        spec.input('n_eq', valid_type=orm.Int, help='Target number of EQ frames (decorrelated MD snapshots).')
        spec.input('n_neq', valid_type=orm.Int, help='Target number of nEQ frames (perturbed frames).')

        spec.input_namespace('eq', help='Where the EQ frames come from and how they are sampled.')
        spec.input(
            'eq.trajectory',
            valid_type=orm.SinglefileData,
            required=False,
            help='EQ source (a): a trajectory file of an equilibrium MD (e.g. a classical force field run).',
        )
        spec.input(
            'eq.trajectory_format',
            valid_type=orm.Str,
            required=False,
            help=f'Format of `eq.trajectory`: one of {", ".join(TRAJECTORY_FORMATS)}.',
        )
        spec.input(
            'eq.topology',
            valid_type=orm.SinglefileData,
            required=False,
            help='GROMACS topology (.gro/.tpr/.pdb) of `eq.trajectory` (format `gromacs`).',
        )
        spec.input(
            'eq.frames',
            valid_type=FramesData,
            required=False,
            help='EQ source (c): an existing FramesData trajectory (e.g. MLFF MD from ilmlff.md.base); its energies '
            'drive the equilibration cut, its labels are kept only at the labelling level of theory.',
        )
        spec.input(
            'eq.sampling',
            valid_type=orm.Dict,
            default=lambda: orm.Dict({'method': 'inefficiency', 'equilibration': 'detect', 'observable': 'auto'}),
            help='Sampling settings (SAMPLING_SETTINGS and, for `eq.trajectory`, IMPORT_SETTINGS of '
            'aiida_ilmlff.calculations.functions.sampling); `n_max` is set from `n_eq`.',
        )
        spec.expose_inputs(
            AimdWorkChain,
            namespace='aimd',
            exclude=('structure',),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'EQ source (b): CP2K NVT AIMD of every box (ilmlff.aimd) at the labelling level of theory; '
                '`md.temperature` is replaced by `temperature`.',
            },
        )

        spec.input_namespace('neq', help='How the nEQ frames are made.')
        spec.input(
            'neq.generators',
            valid_type=orm.Dict,
            default=lambda: orm.Dict({'rattle': {'weight': 1.0}}),
            help='Generator name -> parameters (weight = share of `n_neq`): rattle, strain, density, close_contact, '
            f'thermal (aiida_ilmlff.sampling.GENERATORS) and `{HOT_GENERATOR}` (frames of `neq.hot_*`).',
        )
        spec.input(
            'neq.min_distance',
            valid_type=orm.Float,
            default=lambda: orm.Float(MIN_DISTANCE),
            help='Reject any nEQ frame with two atoms closer than this [Å].',
        )
        spec.input(
            'neq.hot_trajectory',
            valid_type=orm.SinglefileData,
            required=False,
            help=f'A high-temperature trajectory file for the `{HOT_GENERATOR}` frames.',
        )
        spec.input(
            'neq.hot_trajectory_format',
            valid_type=orm.Str,
            required=False,
            help='Format of `neq.hot_trajectory`.',
        )
        spec.input(
            'neq.hot_frames',
            valid_type=FramesData,
            required=False,
            help=f'A high-temperature FramesData trajectory (e.g. ilmlff.aimd at 800 K) for `{HOT_GENERATOR}` frames.',
        )
        spec.expose_inputs(
            LabelWorkChain,
            namespace='label',
            exclude=('frames',),
            namespace_options={
                'help': 'Inputs of ilmlff.label for the frames that need labels (the frames are set here).'
            },
        )
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            if_(cls.has_compositions)(
                cls.run_compositions,
                cls.merge_compositions,
            ).else_(
                if_(cls.should_build_boxes)(cls.build_boxes),
                if_(cls.should_run_aimd)(cls.run_aimd, cls.inspect_aimd),
                cls.sample_eq,
                if_(cls.should_generate_neq)(cls.generate_neq),
                if_(cls.should_label)(cls.run_label, cls.inspect_label),
                cls.results,
            ),
        )

        spec.output(
            'frames',
            valid_type=FramesData,
            help='The labelled data set: EQ frames then nEQ frames (origin per frame; generator and parameters in '
            '`perturbation`); one level of theory.',
        )
        spec.output(
            'summary',
            valid_type=orm.Dict,
            help='Counts by origin, energy-per-atom [eV/atom] and max-force [eV/Å] distributions per origin '
            '(mean, std, min, max, percentiles), generators, targets.',
        )
        spec.output_namespace(
            'eq_sampling', valid_type=orm.Dict, dynamic=True, help='Per EQ source: equilibration cut, spacing, indices.'
        )
        spec.output('neq_rejected', valid_type=orm.Dict, required=False, help='nEQ frames rejected, with reasons.')
        spec.output('label_rejected', valid_type=orm.Dict, required=False, help='Frames rejected by ilmlff.label.')
        spec.output_namespace(
            'boxes',
            valid_type=orm.StructureData,
            dynamic=True,
            help='The boxes that were built: `box_<k>`; with `compositions`, `composition_<i>_box_<k>` (the i-th '
            'composition).',
        )

        spec.exit_code(310, 'ERROR_BOX_FAILED', message='Building a box failed: {message}')
        spec.exit_code(330, 'ERROR_EQ_SAMPLING_FAILED', message='Sampling EQ frames failed: {message}')
        spec.exit_code(340, 'ERROR_NEQ_FAILED', message='Generating nEQ frames failed: {message}')
        spec.exit_code(360, 'ERROR_MERGE_FAILED', message='The labelled parts could not be merged: {message}')
        spec.exit_code(370, 'ERROR_NO_LABELLED_FRAMES', message='No labelled frame came out of the work chain.')
        spec.exit_code(401, 'ERROR_SUB_PROCESS_FAILED_AIMD', message='The AIMD of box {box} failed: {message}')
        spec.exit_code(402, 'ERROR_SUB_PROCESS_FAILED_LABEL', message='ilmlff.label failed: {message}')
        spec.exit_code(
            403,
            'ERROR_SUB_PROCESS_FAILED_COMPOSITION',
            message='The data set of composition {composition} failed: {message}',
        )

    # ----------------------------------------------------------------------------------------- protocol

    @staticmethod
    def _resolve_codes(codes: t.Any) -> tuple[orm.AbstractCode, orm.AbstractCode | None]:
        """``(label code, AIMD code or None)`` from one code or ``{'label': ..., 'aimd': ...}`` (codes or labels).

        :raises ValueError: an unknown key, no labelling code, an AIMD code that is not CP2K (naming the key).
        """

        def load(code):
            return orm.load_code(code) if isinstance(code, (str, int)) else code

        if isinstance(codes, t.Mapping):
            unknown = sorted(set(codes) - {'label', 'aimd', 'cp2k'})
            if unknown:
                raise ValueError(f'`codes`: unknown key(s) {unknown}; use `label` and `aimd`')
            label = load(codes.get('label') or codes.get('cp2k'))
            aimd = load(codes.get('aimd') or codes.get('cp2k'))
        else:
            label = load(codes)
            aimd = None
        if label is None:
            raise ValueError('`codes`: give the labelling code (CP2K or pw.x)')
        if aimd is None and label.default_calc_job_plugin == 'cp2k':
            aimd = label
        message = check_code_plugin(aimd, 'cp2k', 'codes.aimd')
        if message:
            raise ValueError(message)
        return label, aimd

    @staticmethod
    def _elements_and_atoms(
        composition: t.Mapping | None, structure: orm.StructureData | None
    ) -> tuple[dict | None, list[str], int]:
        """``(composition as a dict, elements, atoms per box)``; raises ``ValueError`` naming the input."""
        from aiida_ilmlff.systems import CompositionError, validate_composition

        if composition is not None:
            try:
                spec = validate_composition(composition)
            except CompositionError as exception:
                raise ValueError(f'`composition`: {exception}') from exception
            elements = spec.elements
            return spec.to_dict(), elements, int(spec.n_atoms)
        if structure is not None:
            return None, sorted({kind.symbol for kind in structure.kinds}), len(structure.sites)
        raise ValueError("give `composition` (ion name -> count, e.g. {'PYR14': 2, 'BF4': 2}) or `structure`")

    @staticmethod
    def _compositions_elements_and_atoms(compositions: t.Any) -> tuple[list[dict], list[str], int]:
        """``(compositions as dicts, elements of all, atoms of the largest box)``; raises ``ValueError``."""
        from aiida_ilmlff.systems import CompositionError, validate_compositions

        try:
            specs = validate_compositions(compositions)
        except CompositionError as exception:
            raise ValueError(str(exception)) from exception
        elements = sorted({element for spec in specs for element in spec.elements})
        return [spec.to_dict() for spec in specs], elements, max(int(spec.n_atoms) for spec in specs)

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        codes: t.Any,
        elements: t.Iterable[str],
        n_atoms: int,
        options: t.Mapping | None = None,
        eq_source: str | None = None,
    ) -> dict:
        """The protocol inputs as plain values (no nodes): the ports (``box_density``, ``temperature``, ``seed``,
        ``n_boxes``, ``n_eq``, ``n_neq``, ``eq.sampling``, ``neq.*``), ``label`` (the plain inputs of
        :meth:`LabelWorkChain.get_plain_protocol_inputs` for ``elements``) and, when the EQ frames come from AIMD
        (``eq_source`` None and ``n_eq`` > 0), ``aimd`` (``cp2k``: the labelling level of theory; ``md``; ``relax``:
        the pre-relaxation of each box at that level of theory).
        When the labelling protocol resolves to another one for these elements (``fast`` -> ``fast-dft`` for TFSI),
        the protocol's ``meta_parameters.label_protocol_sizes[<resolved>]`` (frame counts, AIMD steps sized to that
        level of theory's cost) apply under ``overrides``.

        :param codes: as for :meth:`get_builder_from_protocol`. :param elements: of the frames to label.
        :param n_atoms: atoms per box: more than the labelling protocol's ``max_atoms`` is refused.
        :param eq_source: ``trajectory`` or ``frames`` when the EQ frames are given (then no AIMD).
        :raises ValueError: an unknown protocol or override key (naming its path), a code of another plugin, a
            temperature outside any liquid, a box larger than the labelling protocol labels, missing kinds.
        """
        label_code, aimd_code = cls._resolve_codes(codes)
        protocol = cls.check_protocol(protocol)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        meta = inputs['meta_parameters']
        label_overrides = meta.get('label_overrides') or None
        try:  # `fast` -> `fast-dft` for TFSI frames with CP2K
            label_protocol = LabelWorkChain.resolve_protocol(
                meta['label_protocol'], label_overrides, code=label_code, elements=elements
            )
        except UnknownOverrideError as exception:
            raise exception.prefixed('meta_parameters.label_overrides') from None
        sizes = (meta.get('label_protocol_sizes') or {}).get(label_protocol)
        if sizes:  # the protocol's size at that level of theory, under the caller's overrides
            inputs = cls.get_protocol_inputs(protocol, recursive_merge(copy.deepcopy(sizes), dict(overrides or {})))
        meta = inputs.pop('meta_parameters')
        if inputs.get('temperature') is None:  # no composition to follow (a structure, or a parent's call)
            inputs['temperature'] = UNKNOWN_LIQUID_TEMPERATURE
        message = check_liquid_temperature(inputs['temperature'])
        if message:
            raise ValueError(message)
        elements = sorted(set(elements))
        label_options = recursive_merge(meta.get('label_options') or {}, options or {})
        try:
            inputs['label'] = LabelWorkChain.get_plain_protocol_inputs(
                meta['label_protocol'],
                label_overrides,
                code=label_code,
                elements=elements,
                max_atoms=n_atoms,
                options=label_options,
            )
        except UnknownOverrideError as exception:
            raise exception.prefixed('meta_parameters.label_overrides') from None
        if eq_source is None and inputs['n_eq'] > 0:
            if aimd_code is None:
                raise ValueError(
                    '`codes`: EQ frames by AIMD need a CP2K code; give `codes={"label": ..., "aimd": cp2k_code}`, '
                    'or an EQ source (`trajectory=` or `eq_frames=`)'
                )
            aimd_options = recursive_merge(meta.get('aimd_options') or {}, options or {})
            if aimd_code.uuid == label_code.uuid:
                cp2k = copy.deepcopy(inputs['label']['cp2k'])
            else:
                cp2k = LabelWorkChain.get_plain_protocol_inputs(
                    meta['label_protocol'], label_overrides, code=aimd_code, elements=elements, max_atoms=n_atoms
                )['cp2k']
            calc = cp2k['cp2k']
            metadata = calc.setdefault('metadata', {})
            metadata['options'] = recursive_merge(metadata.get('options', {}), aimd_options)
            cp2k['max_iterations'] = int(meta.get('aimd_max_iterations', 5))
            md = {**MD_DEFAULTS, **inputs['aimd']['md'], 'temperature': float(inputs['temperature'])}
            relax = {**RELAX_DEFAULTS, **(inputs['aimd'].get('relax') or {})}
            inputs['aimd'] = {'cp2k': cp2k, 'md': md, 'relax': relax}
        else:
            inputs.pop('aimd', None)
        inputs['meta_parameters'] = {'label_protocol': label_protocol}
        return inputs

    @classmethod
    def plain_inputs_to_nodes(cls, codes: t.Any, inputs: t.Mapping, *, elements: t.Iterable[str]) -> dict:
        """The inputs of :meth:`get_plain_protocol_inputs` as unstored nodes (no composition, structure or EQ/nEQ
        source files).

        :raises ValueError: a code of another plugin.
        """
        label_code, aimd_code = cls._resolve_codes(codes)
        elements = sorted(set(elements))
        nodes: dict[str, t.Any] = {
            'temperature': orm.Float(inputs['temperature']),
            'seed': orm.Int(inputs['seed']),
            'n_boxes': orm.Int(inputs['n_boxes']),
            'n_eq': orm.Int(inputs['n_eq']),
            'n_neq': orm.Int(inputs['n_neq']),
            'eq': {'sampling': orm.Dict(inputs['eq']['sampling'])},
            'neq': {
                'generators': orm.Dict(inputs['neq']['generators']),
                'min_distance': orm.Float(inputs['neq']['min_distance']),
            },
            'label': LabelWorkChain.plain_inputs_to_nodes(label_code, inputs['label'], elements=elements),
        }
        if inputs.get('box_density') is not None:
            nodes['box_density'] = orm.Float(inputs['box_density'])
        if 'aimd' in inputs:
            cp2k = LabelWorkChain.plain_inputs_to_nodes(aimd_code, {'cp2k': inputs['aimd']['cp2k']}, elements=elements)
            nodes['aimd'] = {'cp2k': cp2k['cp2k'], 'md': orm.Dict(inputs['aimd']['md'])}
            if 'relax' in inputs['aimd']:
                nodes['aimd']['relax'] = orm.Dict(inputs['aimd']['relax'])
        return nodes

    @classmethod
    def get_builder_from_protocol(
        cls,
        codes: t.Any,
        composition: t.Mapping | orm.Dict | None = None,
        *,
        protocol: str | None = None,
        overrides: dict | None = None,
        options: dict | None = None,
        structure: orm.StructureData | None = None,
        trajectory: orm.SinglefileData | str | None = None,
        trajectory_format: str | None = None,
        topology: orm.SinglefileData | str | None = None,
        eq_frames: FramesData | None = None,
        hot_trajectory: orm.SinglefileData | str | None = None,
        hot_trajectory_format: str | None = None,
        hot_frames: FramesData | None = None,
        compositions: t.Sequence[t.Mapping] | orm.List | None = None,
    ):
        """A builder for a data set of ``composition`` (or ``structure``, or several ``compositions``) at the level
        of ``protocol``.

        :param codes: the labelling code (CP2K or pw.x; also the AIMD code if it is CP2K), or a mapping with
            ``label`` and ``aimd`` (a CP2K code) codes or labels.
        :param composition: ion name -> count of one box (e.g. ``{'PYR14': 2, 'BF4': 2}``).
        :param protocol: ``fast``, ``balanced`` or ``stringent`` (``dataset/dataset.yaml``).
        :param overrides: nested dict merged over the protocol (ports such as ``n_eq``, ``box_density``,
            ``neq.generators``, ``aimd.md``; ``meta_parameters`` such as ``label_protocol``); an unknown key at any
            depth is a ``ValueError`` naming its path.
        :param options: merged into ``metadata.options`` of every calculation.
        :param structure: a box instead of ``composition``.
        :param trajectory: EQ source (a), a trajectory file (path or ``SinglefileData``) with ``trajectory_format``
            (and ``topology`` for GROMACS); then no AIMD runs.
        :param eq_frames: EQ source (c), a ``FramesData`` trajectory; then no AIMD runs.
        :param hot_trajectory: a high-temperature trajectory file (path or ``SinglefileData``, with
            ``hot_trajectory_format``) for the ``hot_md`` nEQ frames.
        :param hot_frames: a high-temperature ``FramesData`` (e.g. an ``ilmlff.aimd`` run at 800 K) instead.
        :param compositions: two or more compositions instead of ``composition``: ``n_eq``/``n_neq`` frames of each,
            one labelling for all (the level of theory of all their elements, checked against the largest box);
            the temperature defaults to the highest ``default_temperature`` of them.
        :raises ValueError: for invalid input (the messages of :func:`check_inputs`), an unknown protocol or
            override key, codes that do not fit their stage, a temperature outside any liquid, a box larger than
            the labelling protocol can label.
        """
        if isinstance(composition, orm.Dict):
            composition = composition.get_dict()
        if compositions is not None:
            if composition is not None or structure is not None:
                raise ValueError('give `compositions` or `composition`/`structure`, not both')
            compositions, elements, n_atoms = cls._compositions_elements_and_atoms(compositions)
        else:
            composition, elements, n_atoms = cls._elements_and_atoms(composition, structure)
        eq_source = 'trajectory' if trajectory is not None else 'frames' if eq_frames is not None else None
        protocol = cls.check_protocol(protocol)
        if cls.get_protocol_inputs(protocol, overrides).get('temperature') is None:
            if composition is not None:
                overrides = {**(overrides or {}), 'temperature': default_temperature(composition)}
            elif compositions is not None:
                overrides = {**(overrides or {}), 'temperature': max(map(default_temperature, compositions))}
        inputs = cls.get_plain_protocol_inputs(
            protocol, overrides, codes=codes, elements=elements, n_atoms=n_atoms, options=options, eq_source=eq_source
        )
        builder = cls.get_builder()
        for key, value in cls.plain_inputs_to_nodes(codes, inputs, elements=elements).items():
            builder[key] = value
        if compositions is not None:
            builder.compositions = orm.List(compositions)
            if inputs.get('box_density') is not None:
                raise ValueError(
                    '`box_density` (overrides) is for one composition: with `compositions` every box gets the '
                    'reference density of its composition'
                )
        elif composition is not None:
            builder.composition = orm.Dict(composition)
            if inputs.get('box_density') is None:
                builder.box_density = orm.Float(round(reference_density(composition, inputs['temperature']), 4))
        else:
            builder.structure = structure

        if trajectory is not None:
            if isinstance(trajectory, str):
                trajectory = orm.SinglefileData(trajectory)
            builder.eq.trajectory = trajectory
            if trajectory_format is None and str(trajectory.filename).endswith(('.h5', '.hdf5')):
                trajectory_format = 'ilmlff-h5'  # e.g. the MDTrajectoryData of ilmlff.md.base
            if trajectory_format is None:
                raise ValueError(
                    f'`trajectory_format`: give the format of `trajectory` ({", ".join(TRAJECTORY_FORMATS)})'
                )
            builder.eq.trajectory_format = orm.Str(trajectory_format)
            if topology is not None:
                builder.eq.topology = orm.SinglefileData(topology) if isinstance(topology, str) else topology
        elif eq_frames is not None:
            builder.eq.frames = eq_frames

        if hot_trajectory is not None:
            builder.neq.hot_trajectory = (
                orm.SinglefileData(hot_trajectory) if isinstance(hot_trajectory, str) else hot_trajectory
            )
            if hot_trajectory_format is not None:
                builder.neq.hot_trajectory_format = orm.Str(hot_trajectory_format)
        if hot_frames is not None:
            builder.neq.hot_frames = hot_frames

        message = validate_inputs(builder._inputs(prune=True))
        if message:
            raise ValueError(message)
        source = {'trajectory': 'trajectory', 'frames': 'frames'}.get(eq_source, 'CP2K AIMD')
        builder.metadata.description = (
            f'ilmlff.dataset ({protocol}): {inputs["n_eq"]} EQ ({source}) + {inputs["n_neq"]} nEQ frames, '
            f'label protocol {inputs["meta_parameters"]["label_protocol"]}'
        )
        return builder

    # ----------------------------------------------------------------------------------------- outline

    def setup(self):
        """Decide the EQ source and the counts."""
        if 'compositions' in self.inputs:
            self.ctx.compositions = [dict(c) for c in self.inputs.compositions.get_list()]
            self.report(
                f'data set of {len(self.ctx.compositions)} compositions, {self.inputs.n_eq.value} EQ and '
                f'{self.inputs.n_neq.value} nEQ frames each'
            )
            return
        eq = self.inputs.eq
        self.ctx.n_eq = self.inputs.n_eq.value
        self.ctx.n_neq = self.inputs.n_neq.value
        if self.ctx.n_eq == 0:
            self.ctx.eq_source = 'none'
        elif 'trajectory' in eq:
            self.ctx.eq_source = 'trajectory'
        elif 'frames' in eq:
            self.ctx.eq_source = 'frames'
        else:
            self.ctx.eq_source = 'aimd'
        self.ctx.boxes = []
        self.ctx.eq_parts = []
        self.ctx.neq_parts = []
        self.ctx.label_fingerprint = self._label_fingerprint()
        self.report(
            f'data set of {self.ctx.n_eq} EQ frames (source: {self.ctx.eq_source}) and {self.ctx.n_neq} nEQ frames; '
            f'labelling level of theory {self.ctx.label_fingerprint or "(pw.x: EQ frames are relabelled)"}'
        )

    def has_compositions(self) -> bool:
        """Whether the data set spans several compositions (one ilmlff.dataset each)."""
        return 'compositions' in self.ctx

    def run_compositions(self):
        """Submit one ilmlff.dataset per composition, with every other input as given here."""
        from aiida_ilmlff.common import composition_key

        inputs = {key: value for key, value in self.inputs.items() if key not in ('compositions', 'metadata')}
        futures = {}
        for index, composition in enumerate(self.ctx.compositions):
            node = self.submit(
                DatasetWorkChain,
                **inputs,
                composition=orm.Dict(composition),
                metadata={'call_link_label': f'composition_{index}'},
            )
            futures[f'composition_{index}'] = node
            self.report(f'composition {index} ({composition_key(composition)}): DatasetWorkChain<{node.pk}>')
        return ToContext(**futures)

    def merge_compositions(self):
        """Merge the frames of every composition into ``frames``; any composition that failed fails the data set."""
        from aiida_ilmlff.common import composition_key

        parts = []
        for index, composition in enumerate(self.ctx.compositions):
            node = self.ctx[f'composition_{index}']
            if not node.is_finished_ok or 'frames' not in node.outputs:
                return self.exit_codes.ERROR_SUB_PROCESS_FAILED_COMPOSITION.format(
                    composition=composition_key(composition),
                    message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}',
                )
            parts.append(node.outputs.frames)
            for name, box in (node.outputs.boxes if 'boxes' in node.outputs else {}).items():
                self.out(f'boxes.composition_{index}_{name}', box)
            for name, record in (node.outputs.eq_sampling if 'eq_sampling' in node.outputs else {}).items():
                self.out(f'eq_sampling.composition_{index}_{name}', record)
        targets = {'EQ': self.inputs.n_eq.value, 'nEQ': self.inputs.n_neq.value, 'per': 'composition'}
        return self._store_data_set(parts, 'merge_compositions', targets)

    def _store_data_set(self, parts: list[FramesData], label: str, targets: dict):
        """Merge ``parts`` into the ``frames`` output, summarise it into ``summary`` and report the counts; the
        exit code when the parts do not merge (different levels of theory)."""
        try:
            frames = self._merged(parts, label)
        except Exception as exception:  # different levels of theory
            return self.exit_codes.ERROR_MERGE_FAILED.format(message=str(exception))
        summary = dataset_summary(frames, orm.Dict(targets), metadata={'call_link_label': 'summary'})
        self.out('frames', frames)
        self.out('summary', summary)
        values = summary.get_dict()
        forces = values['max_force']
        described = ', '.join(
            f'{origin}: {values["counts"][origin]} frames, mean max force {forces[origin]["mean"]:.2f} eV/A'
            for origin in values['counts']
        )
        by_composition = f'; per composition {values["compositions"]}' if len(values['compositions']) > 1 else ''
        self.report(f'data set FramesData<{frames.pk}>: {described}{by_composition}')
        return None

    def _label_fingerprint(self) -> str | None:
        """Fingerprint of the labelling method when it is CP2K (``None`` for pw.x: always relabel)."""
        label = self.inputs.label
        if 'cp2k' not in label:
            return None
        calc = label.cp2k.cp2k
        return cp2k_level_of_theory(calc.parameters.get_dict(), calc.get('basissets'), calc.get('pseudos'))[
            'fingerprint'
        ]

    def should_build_boxes(self) -> bool:
        """Boxes are needed for AIMD, or as nEQ sources when no EQ frame is asked for."""
        return self.ctx.eq_source in ('aimd', 'none')

    def build_boxes(self):
        """Build ``n_boxes`` boxes from the composition (or take ``structure``)."""
        if 'structure' in self.inputs:
            self.ctx.boxes = [self.inputs.structure]
            return None
        seed = self.inputs.seed.value
        if 'box_density' in self.inputs:
            density = self.inputs.box_density
        else:
            try:
                value = reference_density(self.inputs.composition.get_dict(), self.inputs.temperature.value)
            except ValueError as exception:
                return self.exit_codes.ERROR_BOX_FAILED.format(message=str(exception))
            density = orm.Float(round(value, 4))
            self.report(
                f'box density {density.value} g/cm^3: reference_density of the composition at '
                f'{self.inputs.temperature.value} K (no `box_density` given)'
            )
        for k in range(self.inputs.n_boxes.value):
            try:
                box = build_ionic_liquid_box(
                    self.inputs.composition,
                    density,
                    orm.Int(seed + k),
                    metadata={'call_link_label': f'box_{k}'},
                )
            except Exception as exception:  # the calcfunction excepted: report why
                return self.exit_codes.ERROR_BOX_FAILED.format(message=str(exception))
            self.ctx.boxes.append(box)
            self.out(f'boxes.box_{k}', box)
        self.report(f'built {len(self.ctx.boxes)} box(es) of {len(self.ctx.boxes[0].sites)} atoms')
        return None

    def should_run_aimd(self) -> bool:
        """Whether the EQ frames come from CP2K AIMD."""
        return self.ctx.eq_source == 'aimd'

    def run_aimd(self):
        """Submit one ilmlff.aimd per box at ``temperature``."""
        futures = {}
        md_base = self.inputs.aimd.md.get_dict() if 'md' in self.inputs.aimd else {}
        for k, box in enumerate(self.ctx.boxes):
            inputs = AttributeDict(self.exposed_inputs(AimdWorkChain, namespace='aimd'))
            inputs.structure = box
            inputs.md = orm.Dict(
                {**md_base, 'temperature': self.inputs.temperature.value, 'seed': self.inputs.seed.value + k + 1}
            )
            inputs.metadata = {'call_link_label': f'aimd_{k}'}
            futures[f'aimd_{k}'] = self.submit(AimdWorkChain, **inputs)
        self.report(f'submitted {len(futures)} AIMD run(s) at {self.inputs.temperature.value} K')
        return ToContext(**futures)

    def inspect_aimd(self):
        """Check the AIMD runs."""
        for k in range(len(self.ctx.boxes)):
            node = self.ctx[f'aimd_{k}']
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_SUB_PROCESS_FAILED_AIMD.format(
                    box=k, message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
                )
        return None

    def _sampling_settings(self, n_max: int, origin: str = 'EQ', keys: t.Iterable[str] | None = None) -> orm.Dict:
        settings = dict(self.inputs.eq.sampling.get_dict())
        if keys is not None:
            settings = {k: v for k, v in settings.items() if k in keys}
        settings['n_max'] = int(n_max)
        settings['origin'] = origin
        if origin == 'EQ' and self.ctx.eq_source == 'aimd':
            settings.setdefault('temperature', self.inputs.temperature.value)
        return orm.Dict(settings)

    def sample_eq(self):
        """Cut the equilibration and pick decorrelated EQ frames from every source."""
        source = self.ctx.eq_source
        if source == 'none':
            return None
        eq = self.inputs.eq
        try:
            if source == 'trajectory':
                kwargs = {
                    'trajectory': eq.trajectory,
                    'fmt': eq.trajectory_format,
                    'settings': self._sampling_settings(self.ctx.n_eq),
                    'metadata': {'call_link_label': 'import_eq'},
                }
                if 'composition' in self.inputs:
                    kwargs['composition'] = self.inputs.composition
                if 'topology' in eq:
                    kwargs['topology'] = eq.topology
                outputs = import_trajectory(**kwargs)
                parts = [('trajectory', outputs)]
            elif source == 'frames':
                settings = self._sampling_settings(self.ctx.n_eq, keys=SAMPLING_SETTINGS)
                outputs = sample_frames(eq.frames, settings, metadata={'call_link_label': 'sample_eq'})
                parts = [('frames', outputs)]
            else:
                n_boxes = len(self.ctx.boxes)
                per_box = math.ceil(self.ctx.n_eq / n_boxes)
                settings = self._sampling_settings(per_box, keys=SAMPLING_SETTINGS)
                parts = []
                for k in range(n_boxes):
                    trajectory = self.ctx[f'aimd_{k}'].outputs.trajectory
                    outputs = sample_frames(trajectory, settings, metadata={'call_link_label': f'sample_eq_{k}'})
                    parts.append((f'aimd_{k}', outputs))
        except Exception as exception:  # the calcfunction excepted: report why
            return self.exit_codes.ERROR_EQ_SAMPLING_FAILED.format(message=str(exception))
        for name, outputs in parts:
            self.ctx.eq_parts.append(outputs['frames'])
            self.out(f'eq_sampling.{name}', outputs['sampling'])
            record = outputs['sampling'].get_dict()
            self.report(
                f'EQ {name}: cut {record["equilibration_index"]} of {record["n_frames"]} frames, statistical '
                f'inefficiency {record["statistical_inefficiency"]:.1f}, spacing {record["spacing"]}, '
                f'{record["n_selected"]} frames'
            )
        total = sum(len(frames) for frames in self.ctx.eq_parts)
        if total < self.ctx.n_eq:
            self.report(
                f'only {total} decorrelated EQ frames for the {self.ctx.n_eq} asked: run a longer MD (or more boxes)'
            )
        return None

    def should_generate_neq(self) -> bool:
        """Whether nEQ frames are asked for."""
        return self.ctx.n_neq > 0

    def _merged(self, parts: list[FramesData], label: str, allow_mixed: bool = False) -> FramesData:
        if len(parts) == 1:
            return parts[0]
        named = {f'part_{k:03d}': part for k, part in enumerate(parts)}
        return merge_frames(
            allow_mixed_level_of_theory=orm.Bool(allow_mixed), metadata={'call_link_label': label}, **named
        )

    def generate_neq(self):
        """Perturb the EQ frames (or the boxes) into nEQ frames; take hot-trajectory frames when asked."""
        neq = self.inputs.neq
        generators = dict(neq.generators.get_dict())
        hot = generators.pop(HOT_GENERATOR, None)
        # In the order of GENERATORS (the split of frames breaks ties by order; PostgreSQL re-orders a Dict's keys).
        weights = {
            name: float((generators[name] or {}).get('weight', 1.0)) for name in GENERATORS if name in generators
        }
        if hot is not None:
            weights[HOT_GENERATOR] = float((hot or {}).get('weight', 1.0))
        counts = generator_counts(self.ctx.n_neq, weights)
        n_hot = counts.pop(HOT_GENERATOR, 0)
        n_perturbed = sum(counts.values())
        try:
            if n_perturbed:
                if self.ctx.eq_parts:
                    sources = self._merged(self.ctx.eq_parts, 'merge_eq_sources')
                else:
                    sources = structures_to_frames(
                        **{f'box_{k}': box for k, box in enumerate(self.ctx.boxes)},
                        metadata={'call_link_label': 'boxes_to_frames'},
                    )
                outputs = generate_neq_frames(
                    frames=sources,
                    generators=orm.Dict(generators),
                    n_frames=orm.Int(n_perturbed),
                    seed=self.inputs.seed,
                    min_distance=neq.min_distance,
                    metadata={'call_link_label': 'generate_neq'},
                )
                self.ctx.neq_parts.append(outputs['frames'])
                self.out('neq_rejected', outputs['rejected'])
                rejected = outputs['rejected'].get_dict()
                self.report(
                    f'nEQ: {rejected["n_made"]} of {rejected["n_requested"]} frames made '
                    f'{rejected["made_by_generator"]}; {rejected["n_rejected"]} rejected {rejected["by_reason"]}'
                )
            if n_hot:
                if 'hot_trajectory' in neq:
                    kwargs = {
                        'trajectory': neq.hot_trajectory,
                        'fmt': neq.hot_trajectory_format,
                        'settings': self._sampling_settings(n_hot, origin='nEQ'),
                        'metadata': {'call_link_label': 'import_hot'},
                    }
                    if 'composition' in self.inputs:
                        kwargs['composition'] = self.inputs.composition
                    outputs = import_trajectory(**kwargs)
                else:
                    settings = self._sampling_settings(n_hot, origin='nEQ', keys=SAMPLING_SETTINGS)
                    outputs = sample_frames(neq.hot_frames, settings, metadata={'call_link_label': 'sample_hot'})
                self.ctx.neq_parts.append(outputs['frames'])
                self.out(f'eq_sampling.{HOT_GENERATOR}', outputs['sampling'])
                self.report(f'nEQ: {len(outputs["frames"])} frames from the high-temperature trajectory')
        except Exception as exception:  # the calcfunction excepted: report why
            return self.exit_codes.ERROR_NEQ_FAILED.format(message=str(exception))
        return None

    def _needs_label(self, frames: FramesData) -> bool:
        fingerprints = frames.base.attributes.get('level_of_theory')
        return not (
            frames.base.attributes.get('labelled')
            and self.ctx.label_fingerprint is not None
            and fingerprints == [self.ctx.label_fingerprint]
        )

    def should_label(self) -> bool:
        """Whether any frame needs labels at the labelling level of theory."""
        self.ctx.eq_to_label = [part for part in self.ctx.eq_parts if self._needs_label(part)]
        self.ctx.eq_kept = [part for part in self.ctx.eq_parts if not self._needs_label(part)]
        return bool(self.ctx.eq_to_label or self.ctx.neq_parts)

    def run_label(self):
        """Label the nEQ frames (and EQ frames not yet labelled at the labelling level of theory)."""
        parts = [*self.ctx.eq_to_label, *self.ctx.neq_parts]
        try:
            frames = self._merged(parts, 'merge_to_label', allow_mixed=True)
        except Exception as exception:
            return self.exit_codes.ERROR_MERGE_FAILED.format(message=str(exception))
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.frames = frames
        inputs.metadata = {'call_link_label': 'label'}
        self.report(f'labelling {len(frames)} frames with ilmlff.label')
        return ToContext(label=self.submit(LabelWorkChain, **inputs))

    def inspect_label(self):
        """Keep what the labelling produced; fail only if it produced nothing."""
        node = self.ctx.label
        if 'rejected' in node.outputs:
            self.out('label_rejected', node.outputs.rejected)
        if 'labelled' not in node.outputs:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED_LABEL.format(
                message=f'{node.process_label}<{node.pk}> [{node.exit_status}] {node.exit_message}'
            )
        if not node.is_finished_ok:
            self.report(
                f'ilmlff.label<{node.pk}> finished with [{node.exit_status}] {node.exit_message}; keeping its output'
            )
        self.ctx.labelled = node.outputs.labelled
        return None

    def results(self):
        """Merge the labelled parts into ``frames`` and summarise them."""
        parts = list(self.ctx.eq_kept) if 'eq_kept' in self.ctx else list(self.ctx.eq_parts)
        if 'labelled' in self.ctx:
            parts.append(self.ctx.labelled)
        parts = [part for part in parts if part.base.attributes.get('n_labelled')]
        if not parts:
            return self.exit_codes.ERROR_NO_LABELLED_FRAMES
        return self._store_data_set(parts, 'merge_dataset', {'EQ': self.ctx.n_eq, 'nEQ': self.ctx.n_neq})
