"""``ilmlff.label``: DFT (or GFN-xTB) labels for a ``FramesData``, with quality control.

The frames are labelled by a labelling engine (:mod:`aiida_ilmlff.workflows.engines`) chosen by the code's
plugin: CP2K (plugin ``cp2k``, namespace ``cp2k``) runs one
:class:`~aiida_ilmlff.workflows.cp2k_base.IlmlffCp2kBaseWorkChain` single point per frame, pw.x (plugin
``quantumespresso.pw``, namespace ``qe``) one ``PwBaseWorkChain``. Frames are submitted in rounds of
``max_concurrent`` sub-processes so that a campaign of 10,000 frames never floods the daemon. With
``frames_per_job`` > 1 (CP2K) one sub-process is a ``Cp2kCalculation`` that labels a batch of up to
``frames_per_job`` frames sharing atom count and species order (``REFTRAJ``); a frame its batch did not label
(SCF not converged, a failed batch) is labelled again alone through the single-point path with its SCF ladder
(``summary['relabelled_singly']``). The engine reads energies, forces (and, with ``compute_stress``, the stress)
from each finished sub-process through one calcfunction per sub-process, then
:func:`~aiida_ilmlff.calculations.functions.labels.quality_control` keeps the frames that pass and lists the
others with their reason.

Outputs: ``labelled`` (``FramesData``: energy [eV], forces [eV/Å], stress [eV/Å^3, ASE sign] when asked,
each frame carrying the level-of-theory fingerprint; attribute ``label_calculations``: labelled-frame index ->
uuid of the CalcJob that labelled it), ``rejected`` (``Dict``: frame index ->
``{'reason', 'detail', 'pk'}``) and ``summary`` (``Dict``: counts, reasons, fingerprint, thresholds).

Exit codes: 310 the frames could not be turned into structures, 320 the quality-control calcfunction failed,
330 no frame was labelled (every frame rejected: ``rejected`` and ``summary`` are attached), 502 more than
``max_rejected_fraction`` of the frames were rejected (a guard on the frames; all outputs attached). A failed
single point is not a failure of the work chain: its frame is rejected with the reason.

Inputs as plain data: :meth:`LabelWorkChain.get_plain_protocol_inputs` returns the protocol inputs as plain
values, :func:`check_inputs` validates plain values (the port validator calls it on the nodes), and
:meth:`LabelWorkChain.plain_inputs_to_nodes` turns them into nodes; ``get_builder_from_protocol`` chains them.
"""

from __future__ import annotations

import typing as t

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_

from aiida_ilmlff.calculations.functions.labels import frames_to_structures, quality_control
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.engines import (
    ENGINES,
    LabellingEngine,
    engine_by_name,
    engine_for_code,
)
from aiida_ilmlff.workflows.protocols import ProtocolMixin, recursive_merge
from aiida_ilmlff.workflows.protocols.checks import check_max_atoms
from aiida_ilmlff.workflows.protocols.plain import to_plain

__all__ = ('LabelWorkChain', 'check_inputs', 'validate_inputs')

#: Scalar inputs of the work chain and their plain check.
_QC_THRESHOLDS = ('max_force', 'max_energy_zscore', 'duplicate_tolerance')


# --------------------------------------------------------------------------------------------- plain checks


def _frames_without_cell(frames: FramesData) -> list[int]:
    cells = np.asarray(frames.cells, dtype=np.float64).reshape(-1, 3, 3)
    volumes = np.abs(np.linalg.det(cells))
    return [int(i) for i in np.flatnonzero(~(volumes > 1e-6))]


def check_frames(frames: FramesData) -> str | None:
    """The frames problem every protocol cares about (no frame, a missing cell), as a message naming ``frames``."""
    if len(frames) == 0:
        return '`frames`: no frames to label'
    missing = _frames_without_cell(frames)
    if missing:
        shown = ', '.join(str(i) for i in missing[:10]) + (' ...' if len(missing) > 10 else '')
        return (
            f'`frames`: {len(missing)} frame(s) have no cell (zero volume): {shown}. Labelling is periodic '
            '(CP2K with Ewald/GPW, pw.x plane waves): give every frame a cell, e.g. `atoms.set_cell(...)`.'
        )
    return None


def check_frames_per_job(value: t.Any, engine: t.Any = None) -> str | None:
    """``frames_per_job`` must be an integer >= 1, and 1 for an engine that labels one frame per job."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        return f'`frames_per_job` must be an integer >= 1 (1: one frame per job), got {value!r}'
    if value > 1 and engine is not None and not engine.supports_batches:
        return (
            f'`frames_per_job`: the {engine.code_description} engine labels one frame per job; set `frames_per_job` '
            f'to 1, got {value}'
        )
    return None


def check_max_concurrent(value: t.Any) -> str | None:
    """``max_concurrent`` must be at least 1."""
    if value is not None and value < 1:
        return f'`max_concurrent` must be >= 1, got {value}'
    return None


def check_rejected_fraction(value: t.Any) -> str | None:
    """``max_rejected_fraction`` must be in [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        return f'`max_rejected_fraction` must be in [0, 1], got {value}'
    return None


def check_threshold(name: str, value: t.Any) -> str | None:
    """A quality-control threshold ``quality_control.<name>`` must be positive."""
    if value is not None and not value > 0:
        return f'`quality_control.{name}` must be > 0, got {value}'
    return None


def check_inputs(values: t.Mapping, context: t.Mapping | None = None) -> str | None:
    """Check the inputs of ``ilmlff.label`` given as plain values; return a message naming the input, or ``None``.

    Exactly one engine namespace (``cp2k`` or ``qe``); ``max_concurrent`` >= 1, ``max_rejected_fraction`` in
    [0, 1], positive thresholds; the engine's code of the engine's plugin; the engine's inputs able to label
    the elements (CP2K: GFN1-xTB parameters or ``KIND`` sections; pw.x: a pseudopotential per element).

    :param values: the inputs (nodes are turned into plain values with :func:`to_plain`; ``frames`` and codes
        may stay nodes): the ports of the work chain, or :meth:`LabelWorkChain.get_plain_protocol_inputs`.
    :param context: what a parent sets at run time: ``elements`` (the elements of the frames to come) when
        ``frames`` is not given.
    """
    context = dict(context or {})
    namespaces = [engine for engine in ENGINES.values() if engine.namespace in values]
    if len(namespaces) != 1:
        given = ', '.join(f'`{engine.namespace}`' for engine in namespaces) or 'none'
        names = ' or '.join(f'`{engine.namespace}`' for engine in ENGINES.values())
        return f'give exactly one engine namespace, {names}; got {given}'
    engine = namespaces[0]
    plain = {key: value for key, value in values.items() if key not in {e.namespace for e in ENGINES.values()}}
    plain = to_plain(plain)
    for message in (
        check_max_concurrent(plain.get('max_concurrent')),
        check_frames_per_job(plain.get('frames_per_job'), engine),
        check_rejected_fraction(plain.get('max_rejected_fraction')),
        *(check_threshold(name, (plain.get('quality_control') or {}).get(name)) for name in _QC_THRESHOLDS),
    ):
        if message:
            return message
    elements = context.get('elements')
    frames = values.get('frames')
    if isinstance(frames, FramesData):
        message = check_frames(frames)
        if message:
            return message
        elements = set(frames.elements)
    namespace = engine.plain_values(values[engine.namespace])
    code = (namespace.get(engine.calculation_namespace) or {}).get('code')
    if code is not None and getattr(code, 'default_calc_job_plugin', None) not in (None, engine.plugin):
        return (
            f'`{engine.namespace}.{engine.calculation_namespace}.code`: code `{code.full_label}` runs plugin '
            f'`{code.default_calc_job_plugin}`, but the {engine.code_description} engine needs `{engine.plugin}`'
        )
    return engine.validate_values(namespace, elements)


def validate_inputs(value: t.Mapping, _: t.Any) -> str | None:
    """Port validator of the whole input namespace: :func:`check_inputs` on the nodes."""
    return check_inputs(value)


def validate_positive_int(value: orm.Int, _: t.Any) -> str | None:
    """``max_concurrent`` must be at least 1."""
    return check_max_concurrent(value.value) if value is not None else None


def validate_frames_per_job(value: orm.Int, _: t.Any) -> str | None:
    """``frames_per_job`` must be at least 1."""
    return check_frames_per_job(value.value) if value is not None else None


def validate_fraction(value: orm.Float, _: t.Any) -> str | None:
    """``max_rejected_fraction`` must be in [0, 1]."""
    return check_rejected_fraction(value.value) if value is not None else None


def validate_positive_float(value: orm.Float, port: t.Any) -> str | None:
    """Quality-control thresholds must be positive."""
    return check_threshold(port.name, value.value) if value is not None else None


# --------------------------------------------------------------------------------------------- work chain


class LabelWorkChain(ProtocolMixin, WorkChain):
    """Label the frames of a ``FramesData`` with CP2K or pw.x single points and keep those that pass QC.

    Build it with :meth:`get_builder_from_protocol`; see the module docstring for outputs and exit codes,
    and ``docs/labelling.md`` for the protocols, the SCF ladder and the quality control.
    """

    _protocol_file = 'label.yaml'

    @classmethod
    def define(cls, spec):
        """Define the process specification."""
        super().define(spec)
        spec.input(
            'frames',
            valid_type=FramesData,
            help='The frames to label (positions in Å with a cell per frame; any existing labels are replaced).',
        )
        for engine in ENGINES.values():
            spec.expose_inputs(
                engine.process_class,
                namespace=engine.namespace,
                exclude=engine.exclude,
                namespace_options={'required': False, 'populate_defaults': False, 'help': engine.namespace_help},
            )
        spec.input(
            'max_concurrent',
            valid_type=orm.Int,
            default=lambda: orm.Int(10),
            validator=validate_positive_int,
            help='Largest number of sub-processes (labelling jobs) in flight at the same time: the size of a round.',
        )
        spec.input(
            'frames_per_job',
            valid_type=orm.Int,
            default=lambda: orm.Int(1),
            validator=validate_frames_per_job,
            help='Frames labelled by one CP2K job (REFTRAJ over a batch sharing species order); 1: one single point '
            'per frame. A frame whose SCF did not converge in its batch is labelled again alone (SCF ladder).',
        )
        spec.input(
            'compute_stress',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='Also compute the stress tensor (CP2K analytical stress, GFN1-xTB included; pw.x tstress) and store '
            'it [eV/Å^3, ASE sign]; on by default and in every protocol (the models train with it).',
        )
        spec.input(
            'max_rejected_fraction',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.5),
            validator=validate_fraction,
            help='Fail with exit code 502 (outputs still attached) when a larger fraction of frames is rejected.',
        )
        spec.input_namespace('quality_control', help='Thresholds of the quality control.')
        spec.input(
            'quality_control.max_force',
            valid_type=orm.Float,
            default=lambda: orm.Float(50.0),
            validator=validate_positive_float,
            help='Reject a frame if any atomic force norm exceeds this value [eV/Å].',
        )
        spec.input(
            'quality_control.max_energy_zscore',
            valid_type=orm.Float,
            default=lambda: orm.Float(10.0),
            validator=validate_positive_float,
            help='Reject a frame whose energy per atom has a robust z-score above this value (median/MAD of '
            'the residual after fitting per-element reference energies).',
        )
        spec.input(
            'quality_control.duplicate_tolerance',
            valid_type=orm.Float,
            default=lambda: orm.Float(1.0e-4),
            validator=validate_positive_float,
            help='Frames with the same species whose cell and positions agree within this tolerance [Å] are '
            'duplicates; the first is kept.',
        )
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            while_(cls.should_submit_batch)(
                cls.submit_batch,
                cls.inspect_batch,
            ),
            cls.run_quality_control,
            cls.results,
        )

        spec.output(
            'labelled',
            valid_type=FramesData,
            required=False,
            help='The frames that passed quality control, with energy [eV], forces [eV/Å], stress [eV/Å^3] if '
            'asked, and the level-of-theory fingerprint on every frame.',
        )
        spec.output(
            'rejected',
            valid_type=orm.Dict,
            help='Frame index (str) -> {reason, detail, pk}: every frame that was not labelled, and why.',
        )
        spec.output(
            'summary',
            valid_type=orm.Dict,
            help='Counts, rejection reasons, labelled indices, level of theory and thresholds.',
        )

        spec.exit_code(
            310, 'ERROR_FRAMES_UNREADABLE', message='The frames could not be turned into structures: {message}'
        )
        spec.exit_code(320, 'ERROR_QUALITY_CONTROL_FAILED', message='The quality-control calcfunction failed.')
        spec.exit_code(330, 'ERROR_NO_FRAME_LABELLED', message='No frame passed: every frame was rejected.')
        spec.exit_code(
            502,
            'ERROR_TOO_MANY_REJECTED',
            message='{n_rejected} of {n_frames} frames were rejected, more than `max_rejected_fraction`.',
        )

    # ----------------------------------------------------------------------------------------- protocol

    @classmethod
    def get_plain_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        code: orm.AbstractCode | None = None,
        engine: str | None = None,
        elements: t.Iterable[str] = (),
        max_atoms: int | None = None,
        options: t.Mapping | None = None,
    ) -> dict:
        """The protocol inputs for ``elements`` as plain values (no nodes are made or stored).

        Returns ``max_concurrent``, ``frames_per_job`` (1 for an engine that does not batch, unless overridden),
        ``compute_stress``, ``max_rejected_fraction``, ``quality_control`` and the
        namespace of the engine (``cp2k`` or ``qe``) as numbers, strings, lists and dicts: CP2K's ``KIND``
        sections of a DFT protocol are filled in; for pw.x the family's recommended cutoffs and
        ``conv_thr = conv_thr_per_atom x max_atoms`` are set, and ``qe.pseudo_family`` names the family whose
        pseudopotentials :meth:`plain_inputs_to_nodes` takes.

        :param protocol: ``fast``, ``balanced`` or ``stringent`` (default ``fast``); see ``label.yaml``.
        :param overrides: nested dict merged over the protocol inputs (ports, plus ``meta_parameters``:
            ``cp2k_kinds`` element -> [basis, potential], ``pseudo_family``, ``conv_thr_per_atom``).
        :param code: the code (its plugin chooses the engine); or ``engine`` (``cp2k`` or ``qe``) without a code.
        :param elements: the elements of the frames to label. :param max_atoms: atoms of the largest frame
            (pw.x ``conv_thr``; checked against the protocol's ``meta_parameters.max_atoms``); default: the
            number of elements (and no check).
        :param options: merged into ``metadata.options`` of the calculations (resources, walltime, ...).
        :raises ValueError: for an unknown protocol, engine or override key (naming its path), a code of a
            plugin no engine supports, an element without basis set/potential (CP2K DFT), xTB parameters
            (CP2K xTB) or pseudopotential (pw.x), a missing pseudopotential family, ``max_atoms`` above the
            protocol's.
        """
        engine_class = cls._engine_class(code, engine)
        protocol = cls.resolve_protocol(protocol, overrides, code=code, engine=engine, elements=elements)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        meta = inputs.pop('meta_parameters')
        if max_atoms is not None:
            message = check_max_atoms(int(max_atoms), meta.get('max_atoms'), '`frames`: the largest frame', protocol)
            if message:
                raise ValueError(message)
        elements = sorted(set(elements))
        others = {e.namespace for e in ENGINES.values()} - {engine_class.namespace}
        values = {key: value for key, value in inputs.items() if key not in others}
        if not engine_class.supports_batches and 'frames_per_job' not in (overrides or {}):
            values['frames_per_job'] = 1  # the protocol's batch size is for engines that batch (CP2K)
        namespace = engine_class.protocol_values(
            values[engine_class.namespace],
            meta,
            elements=elements,
            max_atoms=int(max_atoms) if max_atoms is not None else len(elements),
            protocol=protocol,
        )
        if options:
            calc = namespace[engine_class.calculation_namespace]
            metadata = calc.setdefault('metadata', {})
            metadata['options'] = recursive_merge(metadata.get('options', {}), options)
        values[engine_class.namespace] = namespace
        return values

    @classmethod
    def resolve_protocol(
        cls,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        *,
        code: orm.AbstractCode | None = None,
        engine: str | None = None,
        elements: t.Iterable[str] = (),
    ) -> str:
        """The protocol that labels frames of ``elements`` with the engine of ``code`` (or ``engine``).

        ``protocol`` itself, except for CP2K when the frames hold one of the protocol's
        ``meta_parameters.cp2k_xtb_unconverged_elements``: then its ``cp2k_fallback_protocol``. ``fast`` (GFN1-xTB)
        names S and ``fast-dft`` (PBE-D3(BJ)/SZV-MOLOPT-SR-GTH, DZVP-MOLOPT-SR-GTH on S), because GFN1-xTB's SCF does
        not converge for TFSI in CP2K 2023.1 (label.yaml gives the measurement). ``overrides`` may set both keys
        (``[]`` keeps xTB).

        :raises ValueError: an unknown protocol or fallback protocol, an unknown engine.
        """
        engine_class = cls._engine_class(code, engine)
        protocol = cls.check_protocol(protocol)
        if engine_class.namespace != 'cp2k':
            return protocol
        meta = cls.get_protocol_inputs(protocol, overrides)['meta_parameters']
        fallback = meta.get('cp2k_fallback_protocol')
        if fallback and set(elements) & set(meta.get('cp2k_xtb_unconverged_elements') or ()):
            return cls.check_protocol(fallback)
        return protocol

    @classmethod
    def get_protocol_max_atoms(cls, protocol: str | None = None, overrides: t.Mapping | None = None) -> int | None:
        """The largest frame (atoms) that ``protocol`` labels (``meta_parameters.max_atoms``; ``None``: no limit)."""
        value = cls.get_protocol_inputs(cls.check_protocol(protocol), overrides)['meta_parameters'].get('max_atoms')
        return int(value) if value is not None else None

    @classmethod
    def plain_inputs_to_nodes(
        cls, code: orm.AbstractCode, inputs: t.Mapping, *, elements: t.Iterable[str] = ()
    ) -> dict:
        """The inputs of :meth:`get_plain_protocol_inputs` as nodes (unstored; ``frames`` not set).

        :param code: the engine's code, set as ``<namespace>.<calculation>.code``.
        :param elements: the elements of the frames (pw.x: the family's pseudopotentials of these elements).
        """
        engine_class = cls._engine_class(code, None)
        converters = {
            'max_concurrent': orm.Int,
            'frames_per_job': orm.Int,
            'compute_stress': orm.Bool,
            'max_rejected_fraction': orm.Float,
        }
        nodes: dict[str, t.Any] = {}
        for key, value in inputs.items():
            if key in converters:
                nodes[key] = converters[key](value)
            elif key == 'quality_control':
                nodes[key] = {name: orm.Float(threshold) for name, threshold in value.items()}
            elif key == engine_class.namespace:
                nodes[key] = engine_class.to_inputs(code, value, sorted(set(elements)))
            else:
                nodes[key] = value
        return nodes

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode | str,
        frames: FramesData,
        *,
        protocol: str | None = None,
        overrides: t.Mapping | None = None,
        options: t.Mapping | None = None,
        **kwargs: t.Any,
    ):
        """Return a builder for ``frames`` labelled with ``code`` at the level of ``protocol``.

        :param code: the CP2K (plugin ``cp2k``) or pw.x (plugin ``quantumespresso.pw``) code, or its label.
        :param frames: the ``FramesData`` to label (every frame needs a cell).
        :param protocol: ``fast``, ``balanced`` or ``stringent`` (default ``fast``); see ``label.yaml``.
        :param overrides: nested dict merged over the protocol inputs (see :meth:`get_plain_protocol_inputs`);
            an unknown key at any depth is a ``ValueError`` naming its path.
        :param options: merged into ``metadata.options`` of the calculations (resources, walltime, ...).
        :param kwargs: ``engine`` (``cp2k`` or ``qe``) for a code without a default plugin.
        :raises ValueError: for an unknown protocol, engine or override key, a code of another plugin, frames
            without a cell, an element without basis set/potential (CP2K) or pseudopotential (pw.x), a missing
            pseudo family. :raises TypeError: for an unknown keyword argument.
        """
        engine = kwargs.pop('engine', None)
        if kwargs:
            raise TypeError(f'get_builder_from_protocol: unknown keyword argument(s) {", ".join(sorted(kwargs))}')
        if isinstance(code, str):
            code = orm.load_code(code)
        if not isinstance(code, orm.AbstractCode):
            raise ValueError(f'`code`: expected an AiiDA code or its label, got {type(code).__name__}')
        engine_class = cls._engine_class(code, engine)
        if not isinstance(frames, FramesData):
            raise ValueError(f'`frames`: expected a FramesData, got {type(frames).__name__}')
        message = check_frames(frames)
        if message:
            raise ValueError(message)
        protocol = cls.check_protocol(protocol)
        elements = sorted(frames.elements)
        values = cls.get_plain_protocol_inputs(
            protocol,
            overrides,
            code=code,
            engine=engine,
            elements=elements,
            max_atoms=int(np.max(frames.n_atoms_per_frame)),
            options=options,
        )
        message = check_inputs(values, {'elements': elements})
        if message:
            raise ValueError(message)

        builder = cls.get_builder()
        builder.frames = frames
        for key, value in cls.plain_inputs_to_nodes(code, values, elements=elements).items():
            builder[key] = value
        builder.metadata.description = (
            f'ilmlff.label: {len(frames)} frames, engine {engine_class.name}, protocol {protocol}'
        )
        return builder

    @staticmethod
    def _engine_class(code: orm.AbstractCode | None, engine: str | None) -> type[LabellingEngine]:
        """The engine of ``code`` (by its plugin), or of the name ``engine`` (which must agree with the code)."""
        if code is None:
            if engine is None:
                raise ValueError('`code`: give the labelling code (CP2K or pw.x), or `engine`')
            return engine_by_name(engine)
        return engine_for_code(code, engine)

    # ----------------------------------------------------------------------------------------- outline

    def _engine(self) -> LabellingEngine:
        """The engine of this run, built from its namespace's inputs."""
        engine_class = engine_by_name(self.ctx.engine)
        inputs = AttributeDict(self.exposed_inputs(engine_class.process_class, namespace=engine_class.namespace))
        return engine_class(
            inputs, compute_stress=self.inputs.compute_stress.value, frames_per_job=self.inputs.frames_per_job.value
        )

    def setup(self):
        """Choose the engine, the level of theory and the queue of frames."""
        engine_class = next(e for e in ENGINES.values() if e.namespace in self.inputs)
        self.ctx.engine = engine_class.name
        level = self._engine().level_of_theory()
        self.ctx.level_of_theory = level
        self.ctx.todo = list(range(len(self.inputs.frames)))
        self.ctx.batches = []  # batches of frames still to label (frames_per_job > 1)
        self.ctx.single = []  # frames to label again alone after their batch (frames_per_job > 1)
        self.ctx.relabelled = {}  # frame index (str) -> why it is labelled again alone
        self.ctx.n_jobs = 0
        self.ctx.n_batches = 0
        self.ctx.jobs = {}
        self.ctx.failures = {}
        self.ctx.labels = {}
        per_job = self.inputs.frames_per_job.value
        if per_job > 1:
            self.ctx.batches = self._engine().batches(self.inputs.frames, self.ctx.todo)
            self.ctx.todo = []
        self.report(
            f'labelling {len(self.inputs.frames)} frames with {self.ctx.engine} ({level["method"]}, level of theory '
            f'{level["fingerprint"]}), {per_job} per job, at most {self.inputs.max_concurrent.value} jobs at a time'
        )

    def should_submit_batch(self) -> bool:
        """Whether frames are left to submit."""
        return bool(self.ctx.todo or self.ctx.batches or self.ctx.single)

    def _next_groups(self, engine: LabellingEngine) -> list[list[int]]:
        """The groups of frames of the next round: ``max_concurrent`` jobs, frames labelled again alone first."""
        if self.ctx.todo:  # one frame per job: the engine's round and groups
            size = engine.round_size(self.inputs.max_concurrent.value)
            batch, self.ctx.todo = self.ctx.todo[:size], self.ctx.todo[size:]
            return engine.group(batch)
        n_jobs = self.inputs.max_concurrent.value
        singles, self.ctx.single = self.ctx.single[:n_jobs], self.ctx.single[n_jobs:]
        n_batches = n_jobs - len(singles)
        batches, self.ctx.batches = self.ctx.batches[:n_batches], self.ctx.batches[n_batches:]
        return [[int(i)] for i in singles] + [list(b) for b in batches]

    def submit_batch(self):
        """Submit the sub-processes of the next round: ``max_concurrent`` of them (frames grouped by the engine)."""
        engine = self._engine()
        groups = self._next_groups(engine)
        alone = sorted(group[0] for group in groups if len(group) == 1)
        structures = None
        if engine.needs_structures and alone:
            try:
                outputs = frames_to_structures(
                    self.inputs.frames, orm.List(alone), metadata={'call_link_label': f'structures_{alone[0]:06d}'}
                )
            except Exception as exception:  # the calcfunction excepted: stop with 310
                return self.exit_codes.ERROR_FRAMES_UNREADABLE.format(message=str(exception))
            structures = {index: outputs[f'frame_{index:06d}'] for index in alone}
        prepared = []  # every group is prepared before anything is submitted
        for group in groups:
            link_label = engine.link_label(group)
            try:
                inputs = engine.prepare(self.inputs.frames, group, structures)
            except Exception as exception:  # a batch that cannot be prepared (e.g. mixed species): stop with 310
                return self.exit_codes.ERROR_FRAMES_UNREADABLE.format(message=str(exception))
            inputs.setdefault('metadata', {})
            inputs.metadata = {**dict(inputs.metadata), 'call_link_label': link_label}
            prepared.append((link_label, group, inputs))
        futures, jobs = {}, {}
        for link_label, group, inputs in prepared:
            futures[link_label] = self.submit(engine.process_class_for(group), **inputs)
            jobs[link_label] = list(group)
            self.ctx.n_batches += int(len(group) > 1)
        self.ctx.n_jobs += len(futures)
        self.ctx.jobs = jobs
        if self.inputs.frames_per_job.value == 1:
            first, last = groups[0][0], groups[-1][-1]
            self.report(f'submitted frames {first}..{last} ({len(futures)} work chains); {len(self.ctx.todo)} left')
        else:
            n_frames = sum(len(group) for group in groups)
            n_alone = sum(len(group) == 1 for group in groups)
            left = sum(len(b) for b in self.ctx.batches) + len(self.ctx.single)
            self.report(
                f'submitted {n_frames} frames in {len(futures)} jobs ({len(futures) - n_alone} batches, {n_alone} '
                f'single points); {left} frames left to submit'
            )
        return ToContext(**futures)

    def inspect_batch(self):
        """Read the labels of the frames of the finished sub-processes; record the failures."""
        engine = self._engine()
        rebatch, n_alone = [], len(self.ctx.relabelled)
        for link_label, indices in self.ctx.jobs.items():
            node = self.ctx[link_label]
            outcomes = engine.outcomes(node, indices)
            if sorted(outcomes) != sorted(int(i) for i in indices):  # never drop a frame silently
                raise RuntimeError(f'{link_label}: outcomes for frames {sorted(outcomes)}, expected {sorted(indices)}')
            for index, outcome in outcomes.items():
                key = str(index)
                if key in self.ctx.labels or key in self.ctx.failures:  # never label a frame twice
                    raise RuntimeError(f'frame {index} already has an outcome ({link_label})')
                if outcome.labels is not None:
                    self.ctx.labels[key] = outcome.labels.pk
                elif outcome.retry is not None and outcome.retry_batched:
                    rebatch.append(int(index))
                elif outcome.retry is not None and len(indices) > 1 and key not in self.ctx.relabelled:
                    self.ctx.relabelled[key] = outcome.retry
                    self.ctx.single.append(int(index))
                else:
                    self.ctx.failures[key] = outcome.failure or {
                        'reason': 'calculation_failed',
                        'detail': outcome.retry,
                        'pk': node.pk,
                    }
            del self.ctx[link_label]
        self.ctx.jobs = {}
        if rebatch:  # the frames a batch stopped by its wall time did not reach: batched again, first
            self.ctx.batches = engine.batches(self.inputs.frames, sorted(rebatch)) + self.ctx.batches
        if rebatch:
            self.report(f'{len(rebatch)} frames not reached by batches stopped by their wall time: batched again')
        if len(self.ctx.relabelled) > n_alone:
            self.report(
                f'{len(self.ctx.relabelled) - n_alone} frames not labelled by their batch: labelled again alone '
                f'({len(self.ctx.relabelled)} so far)'
            )

    def run_quality_control(self):
        """Run the quality-control calcfunction over all labels."""
        labels, batches = {}, set()
        for index, pk in sorted(self.ctx.labels.items(), key=lambda item: int(item[0])):
            node = orm.load_node(pk)
            if node.base.attributes.get('frame_indices', None) is None:
                labels[f'frame_{int(index):06d}'] = node
            elif pk not in batches:  # a batch's labels: once, under its first frame
                batches.add(pk)
                labels[f'batch_{int(index):06d}'] = node
        qc = self.inputs.quality_control
        try:
            outputs, process = quality_control.run_get_node(
                frames=self.inputs.frames,
                failures=orm.Dict(self.ctx.failures),
                level_of_theory=orm.Dict(self.ctx.level_of_theory),
                max_force=qc.max_force,
                max_energy_zscore=qc.max_energy_zscore,
                duplicate_tolerance=qc.duplicate_tolerance,
                compute_stress=self.inputs.compute_stress,
                accounting=orm.Dict(
                    {
                        'frames_per_job': self.inputs.frames_per_job.value,
                        'n_jobs': self.ctx.n_jobs,
                        'n_batches': self.ctx.n_batches,
                        'relabelled_singly': self.ctx.relabelled,
                    }
                ),
                metadata={'call_link_label': 'quality_control'},
                **labels,
            )
        except Exception as exception:  # the calcfunction excepted: stop with 320
            self.report(f'quality control failed: {exception}')
            return self.exit_codes.ERROR_QUALITY_CONTROL_FAILED
        if not process.is_finished_ok:
            return self.exit_codes.ERROR_QUALITY_CONTROL_FAILED
        self.ctx.qc = outputs

    def results(self):
        """Attach ``labelled``, ``rejected`` and ``summary``; fail if too many frames were rejected."""
        outputs = self.ctx.qc
        for name in ('labelled', 'rejected', 'summary'):
            if name in outputs:
                self.out(name, outputs[name])
        summary = outputs['summary'].get_dict()
        n_frames, n_rejected = summary['n_frames'], summary['n_rejected']
        self.report(
            f'labelled {summary["n_labelled"]} of {n_frames} frames; rejected {n_rejected} '
            f'({", ".join(f"{k}: {v}" for k, v in summary["rejected_by_reason"].items()) or "none"})'
        )
        if summary['n_labelled'] == 0:
            return self.exit_codes.ERROR_NO_FRAME_LABELLED
        if n_rejected > self.inputs.max_rejected_fraction.value * n_frames:
            return self.exit_codes.ERROR_TOO_MANY_REJECTED.format(n_rejected=n_rejected, n_frames=n_frames)
        return None
