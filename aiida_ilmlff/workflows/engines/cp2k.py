"""The CP2K labelling engine: one ``IlmlffCp2kBaseWorkChain`` single point (``ENERGY_FORCE``) per frame, or
one ``Cp2kCalculation`` per batch of frames (``frames_per_job`` > 1).

Plugin ``cp2k`` (aiida-cp2k), namespace ``cp2k`` of ``ilmlff.label``. The single point runs with the SCF
ladder and the GFN-xTB charge-check handler of :mod:`aiida_ilmlff.workflows.cp2k_base`; CP2K's
``GLOBAL/WALLTIME`` is 95 % of the scheduler's. Forces are printed to
:data:`~aiida_ilmlff.parsers.cp2k_output.CP2K_FORCES_FILE` and, with ``compute_stress``, the analytical
stress to :data:`~aiida_ilmlff.parsers.cp2k_output.CP2K_STRESS_FILE`; both are retrieved and read by
:func:`~aiida_ilmlff.calculations.functions.labels.extract_cp2k_labels`.

Batches (``frames_per_job`` > 1): the frames are grouped by species order (a batch shares atom count and species
order) and cut into batches of ``frames_per_job``; each batch is one ``Cp2kCalculation`` that runs
``RUN_TYPE MD`` with ``ENSEMBLE REFTRAJ`` over the batch's frames (:func:`cp2k_batch_parameters`: the reference
trajectory made by :func:`~aiida_ilmlff.calculations.functions.labels.frames_to_reftraj`, ``EVAL_ENERGY_FORCES``
and ``EVAL_FORCES``, ``VARIABLE_VOLUME`` with the cell file when the cells differ, ``STEPS`` = frames - 1) and
prints each frame's energy, forces and stress into ``aiida.out``; one
:func:`~aiida_ilmlff.calculations.functions.labels.extract_cp2k_batch_labels` reads them all. A frame whose SCF
did not converge, and every frame of a batch that failed, is labelled again alone (single point with the SCF
ladder); the frames a batch stopped by its wall time did not reach go into another batch when the batch labelled
some frames, else alone. A batch of one frame is a single point.
"""

from __future__ import annotations

import copy
import itertools
import typing as t

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida_cp2k.calculations import Cp2kCalculation

from aiida_ilmlff.calculations.functions.labels import (
    check_batch,
    extract_cp2k_batch_labels,
    extract_cp2k_labels,
    frames_to_reftraj,
)
from aiida_ilmlff.data.level_of_theory import case_insensitive_get, cp2k_level_of_theory
from aiida_ilmlff.parsers.cp2k_output import CP2K_FORCES_FILE, CP2K_STRESS_FILE, scf_failed
from aiida_ilmlff.workflows.cp2k_base import IlmlffCp2kBaseWorkChain, read_cp2k_stdout, with_walltime
from aiida_ilmlff.workflows.engines.base import FrameOutcome, LabellingEngine, last_calculation

__all__ = ('XTB_MAX_Z', 'Cp2kEngine', 'cp2k_batch_parameters', 'cp2k_labelling_parameters', 'group_by_species')

#: Elements with GFN1-xTB parameters in CP2K (H to Rn).
XTB_MAX_Z = 86


def cp2k_labelling_parameters(parameters: dict, stress: bool) -> dict:
    """Return CP2K ``parameters`` set up for a labelling single point (a copy).

    ``RUN_TYPE ENERGY_FORCE``; forces printed to ``aiida-forces-1_0.xyz``; with ``stress`` the analytical
    stress tensor printed to ``aiida-stress-1_0.stress_tensor``.
    """
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


def cp2k_batch_parameters(parameters: dict, stress: bool, n_frames: int, variable_cell: bool) -> dict:
    """Return CP2K ``parameters`` (of a labelling single point) set up to label ``n_frames`` frames in one run.

    ``RUN_TYPE MD`` with ``MOTION/MD/ENSEMBLE REFTRAJ`` over aiida-cp2k's ``aiida-reftraj.xyz`` (snapshots 1 to
    ``n_frames``, ``STEPS`` = ``n_frames`` - 1: the first snapshot is the initial step), ``EVAL_ENERGY_FORCES``
    and ``EVAL_FORCES`` (without the latter CP2K 2023.1 computes energies only: no forces, no stress), with
    ``variable_cell`` ``VARIABLE_VOLUME`` and ``aiida-reftraj.cell``. Forces and, with ``stress``, the analytical
    stress of every step are printed into the main output (``FORCE_EVAL/PRINT/FORCES`` and ``STRESS_TENSOR``,
    ``EACH MD 1``, no file name): in REFTRAJ ``MOTION/PRINT/STRESS`` holds only zeros. The MD trajectory,
    velocity and restart files are off.
    """
    params = cp2k_labelling_parameters(parameters, stress)
    params['GLOBAL']['RUN_TYPE'] = 'MD'
    printing = params['FORCE_EVAL']['PRINT']
    printing['FORCES'] = {'_': 'ON', 'EACH': {'MD': 1}}
    if stress:
        printing['STRESS_TENSOR'] = {'_': 'ON', 'EACH': {'MD': 1}}
    reftraj = {
        'TRAJ_FILE_NAME': Cp2kCalculation._DEFAULT_INPUT_TRAJECT_XYZ_FILE_NAME,
        'EVAL_ENERGY_FORCES': True,
        'EVAL_FORCES': True,
        'FIRST_SNAPSHOT': 1,
        'LAST_SNAPSHOT': int(n_frames),
        'STRIDE': 1,
    }
    if variable_cell:
        reftraj['VARIABLE_VOLUME'] = True
        reftraj['CELL_FILE_NAME'] = Cp2kCalculation._DEFAULT_INPUT_CELL_FILE_NAME
    motion = {}
    for key in [k for k in params if str(k).upper() == 'MOTION']:
        motion = {k: v for k, v in params.pop(key).items() if str(k).upper() not in ('MD', 'PRINT')}
    motion['MD'] = {'ENSEMBLE': 'REFTRAJ', 'STEPS': int(n_frames) - 1, 'REFTRAJ': reftraj}
    motion['PRINT'] = {name: {'_': 'OFF'} for name in ('TRAJECTORY', 'VELOCITIES', 'RESTART', 'RESTART_HISTORY')}
    params['MOTION'] = motion
    return params


def group_by_species(numbers: t.Mapping[int, t.Sequence[int]], indices: t.Sequence[int], size: int) -> list[list[int]]:
    """Cut frames ``indices`` into batches of at most ``size`` frames that share atom count and species order.

    The ``n`` frames of one species order go into ``ceil(n / size)`` batches of equal size (give or take one
    frame), so that concurrent jobs take about the same time: 21 frames with ``size`` 20 are batches of 11 and
    10, not 20 and 1.

    :param numbers: atomic numbers of the frames (``numbers[i]`` for frame ``i``).
    :return: the batches, frames in their order, batches in the order of their first frame.
    """
    groups: dict[tuple, list[int]] = {}
    for index in indices:
        groups.setdefault(tuple(int(z) for z in numbers[int(index)]), []).append(int(index))
    batches = []
    for group in groups.values():
        n_batches = -(-len(group) // size)
        bounds = [round(k * len(group) / n_batches) for k in range(n_batches + 1)]
        batches.extend(group[start:stop] for start, stop in itertools.pairwise(bounds))
    return sorted(batches, key=lambda batch: batch[0])


def _kind_elements(parameters: t.Mapping) -> set[str]:
    """Elements covered by the ``FORCE_EVAL/SUBSYS/KIND`` sections (``ELEMENT`` or the kind name)."""
    kinds = case_insensitive_get(parameters, 'FORCE_EVAL', 'SUBSYS', 'KIND') or []
    if isinstance(kinds, t.Mapping):
        kinds = [kinds]
    elements = set()
    for kind in kinds:
        element = case_insensitive_get(kind, 'ELEMENT') or str(kind.get('_', ''))
        elements.add(str(element).strip().capitalize())
    return elements


def is_xtb(parameters: t.Mapping) -> bool:
    """Whether the CP2K input uses GFN-xTB (``FORCE_EVAL/DFT/QS/METHOD XTB``)."""
    return str(case_insensitive_get(parameters, 'FORCE_EVAL', 'DFT', 'QS', 'METHOD') or '').upper() == 'XTB'


def check_elements(parameters: t.Mapping, elements: t.Iterable[str], basissets: t.Iterable[str] = ()) -> str | None:
    """Whether the CP2K input can label ``elements`` (xTB parameters, or KIND sections / basis-set inputs)."""
    elements = set(elements)
    if is_xtb(parameters):
        from ase.data import atomic_numbers

        unsupported = sorted(e for e in elements if atomic_numbers.get(e, 999) > XTB_MAX_Z)
        if unsupported:
            return f'`frames`: GFN1-xTB in CP2K has no parameters for element(s) {", ".join(unsupported)}'
        return None
    covered = _kind_elements(parameters) | set(basissets)
    missing = sorted(elements - covered)
    if missing:
        return (
            f'`cp2k.cp2k.parameters`: no FORCE_EVAL/SUBSYS/KIND section (basis set and potential) for element(s) '
            f'{", ".join(missing)} present in `frames`; add them (or use a protocol whose `cp2k_kinds` cover them)'
        )
    return None


class Cp2kEngine(LabellingEngine):
    """CP2K single points through :class:`~aiida_ilmlff.workflows.cp2k_base.IlmlffCp2kBaseWorkChain`."""

    name = 'cp2k'
    plugin = 'cp2k'
    code_description = 'CP2K'
    namespace = 'cp2k'
    calculation_namespace = 'cp2k'
    supports_batches = True
    process_class = IlmlffCp2kBaseWorkChain
    exclude = ('cp2k.structure',)
    namespace_help = (
        'Inputs of the CP2K engine (IlmlffCp2kBaseWorkChain, a Cp2kBaseWorkChain with the SCF ladder); the '
        'structure of each frame is set by the work chain.'
    )

    # ------------------------------------------------------------------------------------------ builder

    @classmethod
    def protocol_values(
        cls, values: dict, meta: t.Mapping, *, elements: t.Sequence[str], max_atoms: int, protocol: str
    ) -> dict:
        """Add the ``KIND`` sections of a DFT protocol (``meta_parameters.cp2k_kinds``); xTB needs none."""
        calc = values['cp2k']
        parameters = calc['parameters']
        kinds_table = meta.get('cp2k_kinds')
        if not is_xtb(parameters):
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
            message = check_elements(parameters, elements)
            if message:
                raise ValueError(message)
        return values

    @classmethod
    def validate_values(cls, values: t.Mapping, elements: t.Iterable[str] | None = None) -> str | None:
        """``cp2k.parameters`` is given and covers ``elements`` (xTB, or KIND sections / ``basissets``)."""
        calc = values.get('cp2k', {}) or {}
        parameters = calc.get('parameters')
        if parameters is None:
            return '`cp2k.cp2k.parameters`: required for the CP2K engine'
        if elements is None:
            return None
        return check_elements(parameters, elements, calc.get('basissets', {}) or {})

    @classmethod
    def to_inputs(cls, code: orm.AbstractCode, values: t.Mapping, elements: t.Sequence[str]) -> dict:
        """``code``, ``parameters``/``settings`` as ``Dict``, ``max_iterations`` ``Int``, ``clean_workdir`` ``Bool``."""
        inputs = copy.deepcopy(dict(values))
        calc = inputs['cp2k']
        calc['code'] = code
        calc['parameters'] = orm.Dict(calc['parameters'])
        if 'settings' in calc:
            calc['settings'] = orm.Dict(calc['settings'])
        return cls.restart_values_to_nodes(inputs)

    # ------------------------------------------------------------------------------------------ run

    def __init__(self, inputs: t.Mapping[str, t.Any], *, compute_stress: bool, frames_per_job: int = 1):
        super().__init__(inputs, compute_stress=compute_stress, frames_per_job=frames_per_job)
        calc = inputs['cp2k']
        parameters = cp2k_labelling_parameters(calc['parameters'].get_dict(), self.compute_stress)
        options = (calc.get('metadata', {}) or {}).get('options', {}) or {}
        self.parameters = with_walltime(parameters, options.get('max_wallclock_seconds'))
        settings = calc['settings'].get_dict() if 'settings' in calc else {}
        retrieve = list(settings.get('additional_retrieve_list', []))
        for name in (CP2K_FORCES_FILE, *([CP2K_STRESS_FILE] if self.compute_stress else [])):
            if name not in retrieve:
                retrieve.append(name)
        settings['additional_retrieve_list'] = retrieve
        self.settings = settings

    def level_of_theory(self) -> dict:
        """:func:`~aiida_ilmlff.data.level_of_theory.cp2k_level_of_theory` of the single-point input."""
        calc = self.inputs['cp2k']
        return cp2k_level_of_theory(self.parameters, calc.get('basissets'), calc.get('pseudos'))

    # ------------------------------------------------------------------------------------------ batches

    def batches(self, frames, indices) -> list[list[int]]:
        """Batches of up to ``frames_per_job`` frames sharing species order (:func:`group_by_species`)."""
        frames.get_arrays()
        numbers = {int(i): frames.get_numbers(int(i)) for i in indices}
        return group_by_species(numbers, indices, self.frames_per_job)

    def process_class_for(self, indices) -> type:
        """``Cp2kCalculation`` for a batch of several frames, :attr:`process_class` for one frame."""
        return Cp2kCalculation if len(indices) > 1 else self.process_class

    def _prepare_batch(self, frames, indices) -> dict:
        """Inputs of the ``Cp2kCalculation`` that labels the frames ``indices`` (REFTRAJ over their trajectory).

        :raises ValueError: when the frames do not share atom count and species order (before submission).
        """
        check_batch(frames, indices)
        outputs = frames_to_reftraj(
            frames, orm.List([int(i) for i in indices]), metadata={'call_link_label': f'reftraj_{indices[0]:06d}'}
        )
        cells = np.array([frames.get_cell(int(i)) for i in indices])
        variable = bool(np.ptp(cells, axis=0).max() > 0.0)
        parameters = cp2k_batch_parameters(self.parameters, self.compute_stress, len(indices), variable)
        ours = (CP2K_FORCES_FILE, CP2K_STRESS_FILE)
        settings = {key: value for key, value in self.settings.items() if key != 'additional_retrieve_list'}
        retrieve = [name for name in self.settings.get('additional_retrieve_list', []) if name not in ours]
        if retrieve:
            settings['additional_retrieve_list'] = retrieve
        skip = ('structure', 'trajectory', 'parent_calc_folder', 'parameters', 'settings')
        calc = {key: value for key, value in dict(self.inputs['cp2k']).items() if key not in skip}
        calc['structure'] = outputs['structure']
        calc['trajectory'] = outputs['trajectory']
        calc['parameters'] = self.shared_dict(f'batch_parameters_{len(indices)}_{variable}', parameters)
        if settings:
            calc['settings'] = self.shared_dict('batch_settings', settings)
        return AttributeDict(calc)

    def _batch_outcomes(self, node, indices) -> dict[int, FrameOutcome]:
        """Per-frame outcome of a batched ``Cp2kCalculation`` (see the module docstring)."""
        indices = [int(i) for i in indices]
        walltime = node.exit_status == Cp2kCalculation.exit_codes.ERROR_OUT_OF_WALLTIME.status
        what = f'{node.process_label}<{node.pk}>'
        if not (node.is_finished_ok or walltime) or 'retrieved' not in node.outputs:
            state = node.exit_message or node.process_state.value
            reason = f'batch {what} failed (exit status {node.exit_status}: {state})'
            return {index: FrameOutcome(retry=reason) for index in indices}
        try:
            labels, process = extract_cp2k_batch_labels.run_get_node(
                retrieved=node.outputs.retrieved,
                trajectory=node.inputs.trajectory,
                metadata={'call_link_label': f'extract_{indices[0]:06d}_{indices[-1]:06d}'},
            )
        except Exception as exception:  # an excepted extraction: the frames are labelled again alone
            return {index: FrameOutcome(retry=f'labels of batch {what} unreadable: {exception}') for index in indices}
        if not process.is_finished_ok:
            reason = f'labels of batch {what} unreadable: [{process.exit_status}] {process.exit_message}'
            return {index: FrameOutcome(retry=reason) for index in indices}
        labelled = [int(index) for index in labels.base.attributes.get('frame_indices')]
        outcomes = {index: FrameOutcome(labels=labels) for index in labelled}
        for index in labels.base.attributes.get('unconverged'):
            outcomes[int(index)] = FrameOutcome(retry=f'SCF not converged in batch {what}')
        stopped = 'stopped by its wall time' if walltime else 'ended'
        for index in labels.base.attributes.get('missing'):
            outcomes[int(index)] = FrameOutcome(
                retry=f'not reached: batch {what} {stopped} before this frame',
                retry_batched=walltime and bool(labelled),
            )
        return outcomes

    def outcomes(self, node, indices) -> dict[int, FrameOutcome]:
        """A batch: :meth:`_batch_outcomes`; one frame: as every engine (extraction or failure)."""
        if len(indices) > 1:
            return self._batch_outcomes(node, indices)
        return super().outcomes(node, indices)

    # ------------------------------------------------------------------------------------------ single points

    def prepare(self, frames, indices, structures) -> dict:
        """Inputs of one sub-process: a single point (the frame's structure and the labelling input) for one frame,
        a batched ``Cp2kCalculation`` (:meth:`_prepare_batch`) for several."""
        if len(indices) > 1:
            return self._prepare_batch(frames, indices)
        (index,) = indices
        inputs = AttributeDict(self.inputs)
        calc = AttributeDict(inputs.cp2k)
        calc.structure = structures[index]
        calc.parameters = self.shared_dict('parameters', self.parameters)
        if self.settings:
            calc.settings = self.shared_dict('settings', self.settings)
        inputs.cp2k = calc
        return inputs

    def extract(self, node, indices) -> dict[int, FrameOutcome]:
        """Run :func:`~aiida_ilmlff.calculations.functions.labels.extract_cp2k_labels` on the retrieved files."""
        (index,) = indices
        calc = last_calculation(node)
        outcome = self.run_extraction(
            extract_cp2k_labels, index, calc, retrieved=node.outputs.retrieved, structure=calc.inputs.structure
        )
        return {index: outcome}

    def classify_failure(self, node) -> dict:
        """``scf_not_converged`` for exit 510 of the work chain, or a last run that aborted on (450) or printed
        an SCF failure marker; ``calculation_failed`` otherwise."""
        detail, calc = self.failure_detail(node)
        reason = 'calculation_failed'
        if node.exit_status == IlmlffCp2kBaseWorkChain.exit_codes.ERROR_SCF_NOT_CONVERGED.status:
            reason = 'scf_not_converged'
        elif calc is not None and calc.exit_status in (0, 450):
            if calc.exit_status == 450 or scf_failed(read_cp2k_stdout(calc)):
                reason = 'scf_not_converged'
        return self.failure_entry(node, reason, detail, calc)
