"""``ilmlff.label``: DFT (or GFN-xTB) labels for a ``FramesData``, with quality control.

Each frame becomes one single-point work chain of the chosen engine: CP2K through
:class:`~aiida_ilmlff.workflows.cp2k_base.IlmlffCp2kBaseWorkChain` (aiida-cp2k, namespace ``cp2k``) or
pw.x through aiida-quantumespresso's ``PwBaseWorkChain`` (namespace ``qe``). Frames are submitted in
batches of ``max_concurrent`` so that a campaign of 10,000 frames never floods the daemon. Energies,
forces (and, with ``compute_stress``, the stress) are read from each calculation's retrieved files by a
calcfunction, then :func:`~aiida_ilmlff.calculations.functions.labels.quality_control` keeps the frames
that pass and lists the others with their reason.

Outputs: ``labelled`` (``FramesData``: energy [eV], forces [eV/Å], stress [eV/Å^3, ASE sign] when asked,
each frame carrying the level-of-theory fingerprint), ``rejected`` (``Dict``: frame index ->
``{'reason', 'detail', 'pk'}``) and ``summary`` (``Dict``: counts, reasons, fingerprint, thresholds).

Exit codes: 310 frames could not be turned into structures, 320 quality control failed, 501 no frame
passed, 502 more than ``max_rejected_fraction`` of the frames were rejected (outputs still attached).
"""

from __future__ import annotations

import typing as t

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, while_
from aiida.plugins import WorkflowFactory

from aiida_ilmlff.calculations.functions.labels import (
    CP2K_FORCES_FILE,
    CP2K_STRESS_FILE,
    cp2k_level_of_theory,
    extract_cp2k_labels,
    extract_pw_labels,
    frames_to_structures,
    pw_level_of_theory,
    quality_control,
)
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.cp2k_base import IlmlffCp2kBaseWorkChain, read_cp2k_stdout, with_walltime
from aiida_ilmlff.workflows.protocols import ProtocolMixin, recursive_merge

__all__ = ('ENGINES', 'LabelWorkChain')

PwBaseWorkChain = WorkflowFactory('quantumespresso.pw.base')

#: Engine name -> the default CalcJob plugin of its code.
ENGINES = {'cp2k': 'cp2k', 'qe': 'quantumespresso.pw'}

#: Elements with GFN1-xTB parameters in CP2K (H to Rn).
_XTB_MAX_Z = 86

#: PwCalculation exit statuses that mean the SCF did not converge (410, 510 in a relaxation, 710 warning).
_PW_SCF_FAILURES = {410, 510, 710}


# --------------------------------------------------------------------------------------------- helpers


def _upper_get(mapping: t.Mapping | None, *path: str) -> t.Any:
    node: t.Any = mapping or {}
    for key in path:
        if not isinstance(node, t.Mapping):
            return None
        node = next((v for k, v in node.items() if str(k).upper() == key.upper()), None)
        if node is None:
            return None
    return node


def _cp2k_kind_elements(parameters: t.Mapping) -> set[str]:
    """Elements covered by the ``FORCE_EVAL/SUBSYS/KIND`` sections (``ELEMENT`` or the kind name)."""
    kinds = _upper_get(parameters, 'FORCE_EVAL', 'SUBSYS', 'KIND') or []
    if isinstance(kinds, t.Mapping):
        kinds = [kinds]
    elements = set()
    for kind in kinds:
        element = _upper_get(kind, 'ELEMENT') or str(kind.get('_', ''))
        elements.add(str(element).strip().capitalize())
    return elements


def _is_xtb(parameters: t.Mapping) -> bool:
    return str(_upper_get(parameters, 'FORCE_EVAL', 'DFT', 'QS', 'METHOD') or '').upper() == 'XTB'


def _frames_without_cell(frames: FramesData) -> list[int]:
    cells = np.asarray(frames.cells, dtype=np.float64).reshape(-1, 3, 3)
    volumes = np.abs(np.linalg.det(cells))
    return [int(i) for i in np.flatnonzero(~(volumes > 1e-6))]


def _check_frames(frames: FramesData) -> str | None:
    """The frames problem every protocol cares about (a missing cell), as a message naming ``frames``."""
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


def _check_cp2k_elements(parameters: t.Mapping, elements: t.Iterable[str], namespace: t.Mapping) -> str | None:
    elements = set(elements)
    if _is_xtb(parameters):
        from ase.data import atomic_numbers

        unsupported = sorted(e for e in elements if atomic_numbers.get(e, 999) > _XTB_MAX_Z)
        if unsupported:
            return f'`frames`: GFN1-xTB in CP2K has no parameters for element(s) {", ".join(unsupported)}'
        return None
    covered = _cp2k_kind_elements(parameters) | set(namespace.get('basissets', {}) or {})
    missing = sorted(elements - covered)
    if missing:
        return (
            f'`cp2k.cp2k.parameters`: no FORCE_EVAL/SUBSYS/KIND section (basis set and potential) for element(s) '
            f'{", ".join(missing)} present in `frames`; add them (or use a protocol whose `cp2k_kinds` cover them)'
        )
    return None


def validate_inputs(value: t.Mapping, _: t.Any) -> str | None:
    """Validate the whole input namespace: exactly one engine, frames with a cell, elements covered."""
    engines = [name for name in ENGINES if name in value]
    if len(engines) != 1:
        return (
            f'give exactly one engine namespace, `cp2k` or `qe`; got {", ".join(f"`{e}`" for e in engines) or "none"}'
        )
    frames = value.get('frames')
    if frames is None:
        return None
    message = _check_frames(frames)
    if message:
        return message
    elements = set(frames.elements)
    if engines[0] == 'cp2k':
        calc = value['cp2k'].get('cp2k', {})
        parameters = calc.get('parameters')
        if parameters is None:
            return '`cp2k.cp2k.parameters`: required for the CP2K engine'
        return _check_cp2k_elements(parameters.get_dict(), elements, calc)
    pseudos = value['qe'].get('pw', {}).get('pseudos', {}) or {}
    missing = sorted(elements - set(pseudos))
    if missing:
        return f'`qe.pw.pseudos`: no pseudopotential for element(s) {", ".join(missing)} present in `frames`'
    return None


def validate_positive_int(value: orm.Int, _: t.Any) -> str | None:
    """``max_concurrent`` must be at least 1."""
    if value is not None and value.value < 1:
        return f'`max_concurrent` must be >= 1, got {value.value}'
    return None


def validate_fraction(value: orm.Float, _: t.Any) -> str | None:
    """``max_rejected_fraction`` must be in [0, 1]."""
    if value is not None and not 0.0 <= value.value <= 1.0:
        return f'`max_rejected_fraction` must be in [0, 1], got {value.value}'
    return None


def validate_positive_float(value: orm.Float, port: t.Any) -> str | None:
    """Quality-control thresholds must be positive."""
    if value is not None and not value.value > 0:
        return f'`quality_control.{port.name}` must be > 0, got {value.value}'
    return None


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
        spec.expose_inputs(
            IlmlffCp2kBaseWorkChain,
            namespace='cp2k',
            exclude=('cp2k.structure',),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Inputs of the CP2K engine (IlmlffCp2kBaseWorkChain, a Cp2kBaseWorkChain with the SCF '
                'ladder); the structure of each frame is set by the work chain.',
            },
        )
        spec.expose_inputs(
            PwBaseWorkChain,
            namespace='qe',
            exclude=('pw.structure',),
            namespace_options={
                'required': False,
                'populate_defaults': False,
                'help': 'Inputs of the Quantum ESPRESSO engine (PwBaseWorkChain); the structure of each frame is '
                'set by the work chain and `pw.pseudos` is reduced to the elements of the frame.',
            },
        )
        spec.input(
            'max_concurrent',
            valid_type=orm.Int,
            default=lambda: orm.Int(10),
            validator=validate_positive_int,
            help='Largest number of single-point work chains running at the same time (the batch size).',
        )
        spec.input(
            'compute_stress',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help='Also compute the stress tensor (CP2K analytical stress; pw.x tstress) and store it [eV/Å^3].',
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
        spec.exit_code(501, 'ERROR_NO_FRAME_LABELLED', message='No frame passed: every frame was rejected.')
        spec.exit_code(
            502,
            'ERROR_TOO_MANY_REJECTED',
            message='{n_rejected} of {n_frames} frames were rejected, more than `max_rejected_fraction`.',
        )

    # ----------------------------------------------------------------------------------------- protocol

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode | str,
        frames: FramesData,
        protocol: str | None = None,
        overrides: dict | None = None,
        engine: str | None = None,
        options: dict | None = None,
        **_: t.Any,
    ):
        """Return a builder for ``frames`` labelled with ``code`` at the level of ``protocol``.

        :param code: the CP2K (plugin ``cp2k``) or pw.x (plugin ``quantumespresso.pw``) code, or its label.
        :param frames: the ``FramesData`` to label (every frame needs a cell).
        :param protocol: ``fast``, ``balanced`` or ``stringent`` (default ``fast``); see ``label.yaml``.
        :param overrides: nested dict merged over the protocol inputs (ports, plus ``meta_parameters``:
            ``cp2k_kinds`` element -> [basis, potential], ``pseudo_family``, ``conv_thr_per_atom``).
        :param engine: ``cp2k`` or ``qe``; inferred from the code's default plugin when omitted.
        :param options: merged into ``metadata.options`` of the calculations (resources, walltime, ...).
        :raises ValueError: for an unknown protocol or engine, a code of another plugin, frames without a cell,
            an element without basis set/potential (CP2K) or pseudopotential (pw.x), a missing pseudo family.
        """
        if isinstance(code, str):
            code = orm.load_code(code)
        if not isinstance(code, orm.AbstractCode):
            raise ValueError(f'`code`: expected an AiiDA code or its label, got {type(code).__name__}')
        engine = cls._engine_of(code, engine)
        if not isinstance(frames, FramesData):
            raise ValueError(f'`frames`: expected a FramesData, got {type(frames).__name__}')
        message = _check_frames(frames)
        if message:
            raise ValueError(message)

        protocol = cls.check_protocol(protocol)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        meta = inputs.pop('meta_parameters')
        elements = sorted(frames.elements)

        builder = cls.get_builder()
        builder.frames = frames
        builder.max_concurrent = orm.Int(inputs['max_concurrent'])
        builder.compute_stress = orm.Bool(inputs['compute_stress'])
        builder.max_rejected_fraction = orm.Float(inputs['max_rejected_fraction'])
        for key, value in inputs['quality_control'].items():
            builder.quality_control[key] = orm.Float(value)

        if engine == 'cp2k':
            builder.cp2k = cls._cp2k_inputs(code, inputs['cp2k'], meta, elements, protocol, options)
        else:
            builder.qe = cls._qe_inputs(code, inputs['qe'], meta, frames, elements, options)
        builder.metadata.description = f'ilmlff.label: {len(frames)} frames, engine {engine}, protocol {protocol}'
        return builder

    @staticmethod
    def _engine_of(code: orm.AbstractCode, engine: str | None) -> str:
        plugin = code.default_calc_job_plugin
        if engine is None:
            found = [name for name, entry in ENGINES.items() if entry == plugin]
            if not found:
                raise ValueError(
                    f'`code`: cannot infer the engine from the default plugin `{plugin}` of code `{code.full_label}`; '
                    f'use a code of plugin `cp2k` or `quantumespresso.pw`, or pass `engine`'
                )
            return found[0]
        if engine not in ENGINES:
            raise ValueError(f'`engine`: unknown engine `{engine}`; choose one of {", ".join(ENGINES)}')
        if plugin is not None and plugin != ENGINES[engine]:
            raise ValueError(
                f'`code`: code `{code.full_label}` has plugin `{plugin}`, engine `{engine}` needs `{ENGINES[engine]}`'
            )
        return engine

    @staticmethod
    def _merge_options(namespace: dict, options: dict | None) -> None:
        if options:
            meta = namespace.setdefault('metadata', {})
            meta['options'] = recursive_merge(meta.get('options', {}), options)

    @classmethod
    def _cp2k_inputs(cls, code, inputs: dict, meta: dict, elements: list[str], protocol: str, options) -> dict:
        calc = inputs['cp2k']
        parameters = calc['parameters']
        kinds_table = meta.get('cp2k_kinds')
        if not _is_xtb(parameters):
            if not kinds_table:
                raise ValueError(f'protocol `{protocol}`: a DFT protocol needs `meta_parameters.cp2k_kinds`')
            missing = [e for e in elements if e not in kinds_table]
            if missing:
                raise ValueError(
                    f'`frames`: element(s) {", ".join(missing)} have no basis set/potential in protocol `{protocol}` '
                    f'(covered: {", ".join(kinds_table)}); add them with '
                    "`overrides={'meta_parameters': {'cp2k_kinds': {element: [basis, potential]}}}`"
                )
            subsys = parameters['FORCE_EVAL'].setdefault('SUBSYS', {})
            subsys['KIND'] = [
                {
                    '_': element,
                    'ELEMENT': element,
                    'BASIS_SET': kinds_table[element][0],
                    'POTENTIAL': kinds_table[element][1],
                }
                for element in elements
            ]
        else:
            message = _check_cp2k_elements(parameters, elements, {})
            if message:
                raise ValueError(message)
        cls._merge_options(calc, options)
        calc['code'] = code
        calc['parameters'] = orm.Dict(parameters)
        if 'settings' in calc:
            calc['settings'] = orm.Dict(calc['settings'])
        for key in ('max_iterations',):
            if key in inputs:
                inputs[key] = orm.Int(inputs[key])
        if 'clean_workdir' in inputs:
            inputs['clean_workdir'] = orm.Bool(inputs['clean_workdir'])
        return inputs

    @classmethod
    def _qe_inputs(cls, code, inputs: dict, meta: dict, frames: FramesData, elements: list[str], options) -> dict:
        from aiida_pseudo.groups.family import PseudoPotentialFamily

        pw = inputs['pw']
        label = meta['pseudo_family']
        try:
            family = orm.QueryBuilder().append(PseudoPotentialFamily, filters={'label': label}).one()[0]
        except Exception as exception:  # NotExistent or MultipleObjectsError
            raise ValueError(
                f'`meta_parameters.pseudo_family`: pseudopotential family `{label}` is not installed (or not unique): '
                'install it with `aiida-pseudo install sssp` or set another family in `overrides`'
            ) from exception
        try:
            pseudos = family.get_pseudos(elements=elements)
        except ValueError as exception:
            raise ValueError(
                f'`frames`: family `{label}` has no pseudopotential for some element: {exception}'
            ) from exception
        parameters = pw['parameters']
        system = parameters.setdefault('SYSTEM', {})
        if not ('ecutwfc' in system and 'ecutrho' in system):
            try:
                system['ecutwfc'], system['ecutrho'] = family.get_recommended_cutoffs(
                    elements=tuple(elements), unit='Ry'
                )
            except (ValueError, AttributeError) as exception:
                raise ValueError(
                    f'`meta_parameters.pseudo_family`: `{label}` recommends no cutoffs; set `ecutwfc` and `ecutrho` '
                    'in `overrides`'
                ) from exception
        max_atoms = int(np.max(frames.n_atoms_per_frame))
        parameters.setdefault('ELECTRONS', {}).setdefault('conv_thr', float(meta['conv_thr_per_atom']) * max_atoms)
        cls._merge_options(pw, options)
        pw['code'] = code
        pw['pseudos'] = pseudos
        pw['parameters'] = orm.Dict(parameters)
        settings = recursive_merge({'gamma_only': True}, pw.get('settings', {}))
        pw['settings'] = orm.Dict(settings)
        kpoints = orm.KpointsData()
        kpoints.set_kpoints_mesh([1, 1, 1])
        inputs['kpoints'] = kpoints
        if 'max_iterations' in inputs:
            inputs['max_iterations'] = orm.Int(inputs['max_iterations'])
        if 'clean_workdir' in inputs:
            inputs['clean_workdir'] = orm.Bool(inputs['clean_workdir'])
        return inputs

    # ----------------------------------------------------------------------------------------- outline

    def setup(self):
        """Choose the engine, prepare the shared inputs, the level of theory and the queue of frames."""
        self.ctx.engine = 'cp2k' if 'cp2k' in self.inputs else 'qe'
        stress = self.inputs.compute_stress.value
        if self.ctx.engine == 'cp2k':
            calc = self.inputs.cp2k.cp2k
            parameters = _cp2k_labelling_parameters(calc.parameters.get_dict(), stress)
            options = calc.get('metadata', {}).get('options', {})
            parameters = with_walltime(parameters, options.get('max_wallclock_seconds'))
            settings = calc.settings.get_dict() if 'settings' in calc else {}
            retrieve = list(settings.get('additional_retrieve_list', []))
            for name in (CP2K_FORCES_FILE, *([CP2K_STRESS_FILE] if stress else [])):
                if name not in retrieve:
                    retrieve.append(name)
            settings['additional_retrieve_list'] = retrieve
            level = cp2k_level_of_theory(parameters, calc.get('basissets'), calc.get('pseudos'))
        else:
            pw = self.inputs.qe.pw
            parameters = pw.parameters.get_dict()
            control = parameters.setdefault('CONTROL', {})
            control['calculation'] = 'scf'
            control['tprnfor'] = True
            control['tstress'] = stress
            settings = pw.settings.get_dict() if 'settings' in pw else {}
            kpoints = 'gamma' if settings.get('gamma_only', settings.get('GAMMA_ONLY')) else 'explicit'
            if 'kpoints' in self.inputs.qe:
                try:
                    mesh, offset = self.inputs.qe.kpoints.get_kpoints_mesh()
                    kpoints = 'gamma' if kpoints == 'gamma' else {'mesh': list(mesh), 'offset': list(offset)}
                except AttributeError:
                    kpoints = self.inputs.qe.kpoints.get_kpoints().tolist()
            elif 'kpoints_distance' in self.inputs.qe:
                kpoints = {'distance': self.inputs.qe.kpoints_distance.value}
            level = pw_level_of_theory(parameters, dict(pw.pseudos), kpoints)
        self.ctx.parameters = parameters
        self.ctx.settings = settings
        self.ctx.level_of_theory = level
        self.ctx.todo = list(range(len(self.inputs.frames)))
        self.ctx.batch = []
        self.ctx.failures = {}
        self.ctx.labels = {}
        self.report(
            f'labelling {len(self.ctx.todo)} frames with {self.ctx.engine} ({level["method"]}, level of theory '
            f'{level["fingerprint"]}), at most {self.inputs.max_concurrent.value} at a time'
        )

    def should_submit_batch(self) -> bool:
        """Whether frames are left to submit."""
        return bool(self.ctx.todo)

    def submit_batch(self):
        """Submit the next ``max_concurrent`` frames."""
        size = self.inputs.max_concurrent.value
        batch, self.ctx.todo = self.ctx.todo[:size], self.ctx.todo[size:]
        self.ctx.batch = batch
        try:
            structures = frames_to_structures(
                self.inputs.frames, orm.List(batch), metadata={'call_link_label': f'structures_{batch[0]:06d}'}
            )
        except Exception as exception:  # the calcfunction excepted: stop with 310
            return self.exit_codes.ERROR_FRAMES_UNREADABLE.format(message=str(exception))
        parameters = orm.Dict(self.ctx.parameters)
        settings = orm.Dict(self.ctx.settings) if self.ctx.settings else None
        futures = {}
        for index in batch:
            structure = structures[f'frame_{index:06d}']
            if self.ctx.engine == 'cp2k':
                inputs = AttributeDict(self.exposed_inputs(IlmlffCp2kBaseWorkChain, namespace='cp2k'))
                calc = AttributeDict(inputs.cp2k)
                calc.structure = structure
                calc.parameters = parameters
                if settings is not None:
                    calc.settings = settings
                inputs.cp2k = calc
                process = IlmlffCp2kBaseWorkChain
            else:
                inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='qe'))
                pw = AttributeDict(inputs.pw)
                pw.structure = structure
                pw.parameters = parameters
                pw.pseudos = {kind: pw.pseudos[kind] for kind in structure.get_kind_names()}
                if settings is not None:
                    pw.settings = settings
                inputs.pw = pw
                process = PwBaseWorkChain
            inputs.setdefault('metadata', {})
            inputs.metadata = {**dict(inputs.metadata), 'call_link_label': f'frame_{index:06d}'}
            futures[f'frame_{index:06d}'] = self.submit(process, **inputs)
        first, last = batch[0], batch[-1]
        self.report(f'submitted frames {first}..{last} ({len(batch)} work chains); {len(self.ctx.todo)} left')
        return ToContext(**futures)

    def inspect_batch(self):
        """Read the labels of the finished frames of the batch; record the failures."""
        for index in self.ctx.batch:
            key = f'frame_{index:06d}'
            node = self.ctx[key]
            if node.is_finished_ok:
                self._extract(index, node)
            else:
                self.ctx.failures[str(index)] = self._failure(node)
            del self.ctx[key]

    def _extract(self, index: int, node: orm.WorkflowNode) -> None:
        """Run the engine's extraction calcfunction for frame ``index``; a failure rejects the frame."""
        calc = self._last_calculation(node)
        try:
            if self.ctx.engine == 'cp2k':
                labels, process = extract_cp2k_labels.run_get_node(
                    retrieved=node.outputs.retrieved,
                    structure=calc.inputs.structure,
                    metadata={'call_link_label': f'extract_{index:06d}'},
                )
            else:
                labels, process = extract_pw_labels.run_get_node(
                    output_parameters=node.outputs.output_parameters,
                    output_trajectory=node.outputs.output_trajectory,
                    structure=calc.inputs.structure,
                    metadata={'call_link_label': f'extract_{index:06d}'},
                )
        except Exception as exception:  # an excepted extraction rejects only this frame
            self.ctx.failures[str(index)] = {'reason': 'parse_failed', 'detail': str(exception), 'pk': calc.pk}
            return
        if not process.is_finished_ok:
            self.ctx.failures[str(index)] = {
                'reason': 'parse_failed',
                'detail': f'[{process.exit_status}] {process.exit_message}',
                'pk': calc.pk,
            }
            return
        self.ctx.labels[str(index)] = labels.pk

    @staticmethod
    def _last_calculation(node: orm.WorkflowNode) -> orm.CalcJobNode | None:
        calcs = [c for c in node.called if isinstance(c, orm.CalcJobNode)]
        return max(calcs, key=lambda c: c.ctime) if calcs else None

    def _failure(self, node: orm.WorkflowNode) -> dict:
        """Why a single-point work chain failed: ``{'reason', 'detail', 'pk', 'exit_status', 'workchain_pk'}``."""
        calc = self._last_calculation(node)
        status = node.exit_status
        detail = (
            f'{node.process_label}<{node.pk}> exit status {status}: {node.exit_message or node.process_state.value}'
        )
        reason = 'calculation_failed'
        if calc is not None:
            detail += f'; last calculation {calc.process_label}<{calc.pk}> exit status {calc.exit_status}'
            if calc.exit_message:
                detail += f': {calc.exit_message}'
        if self.ctx.engine == 'cp2k':
            if status == IlmlffCp2kBaseWorkChain.exit_codes.ERROR_SCF_NOT_CONVERGED.status:
                reason = 'scf_not_converged'
            elif calc is not None and calc.exit_status in (0, 450):
                text = read_cp2k_stdout(calc)
                if calc.exit_status == 450 or 'SCF run NOT converged' in text or 'outer SCF loop FAILED' in text:
                    reason = 'scf_not_converged'
        elif calc is not None and calc.exit_status in _PW_SCF_FAILURES:
            reason = 'scf_not_converged'
        return {
            'reason': reason,
            'detail': detail,
            'pk': calc.pk if calc is not None else node.pk,
            'workchain_pk': node.pk,
            'exit_status': status,
        }

    def run_quality_control(self):
        """Run the quality-control calcfunction over all labels."""
        labels = {f'frame_{int(i):06d}': orm.load_node(pk) for i, pk in self.ctx.labels.items()}
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


def _cp2k_labelling_parameters(parameters: dict, stress: bool) -> dict:
    """Return CP2K ``parameters`` set up for a labelling single point.

    ``RUN_TYPE ENERGY_FORCE``; forces printed to ``aiida-forces-1_0.xyz``; with ``stress`` the analytical
    stress tensor printed to ``aiida-stress-1_0.stress_tensor``.
    """
    import copy

    params = copy.deepcopy(parameters)
    glob = params.setdefault('GLOBAL', {})
    glob['RUN_TYPE'] = 'ENERGY_FORCE'
    force_eval = params.setdefault('FORCE_EVAL', {})
    printing = force_eval.setdefault('PRINT', {})
    printing['FORCES'] = {'_': 'ON', 'FILENAME': 'forces'}
    if stress:
        force_eval['STRESS_TENSOR'] = 'ANALYTICAL'
        printing['STRESS_TENSOR'] = {'_': 'ON', 'FILENAME': 'stress'}
    return params
