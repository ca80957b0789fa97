"""The labelling-engine interface of ``ilmlff.label``: one class per reference code.

An engine knows everything that depends on the code that labels the frames; ``ilmlff.label`` knows none
of it (it batches frames, runs the quality control and attaches the outputs). An engine:

* names the CalcJob plugin its code must have (:attr:`LabellingEngine.plugin`), the sub-process it runs
  (:attr:`LabellingEngine.process_class`) and the input namespace of ``ilmlff.label`` that exposes that
  sub-process's inputs (:attr:`LabellingEngine.namespace`);
* builder side, plain data only (class methods, no node is created): turns the protocol's engine section
  into plain values (:meth:`LabellingEngine.protocol_values`), validates plain values
  (:meth:`LabellingEngine.validate_values`) and turns them into the namespace's nodes at the end
  (:meth:`LabellingEngine.to_inputs`);
* run side (an instance built from the namespace's inputs, one per work-chain step): the level of theory
  (:meth:`LabellingEngine.level_of_theory`), how many frames a round takes
  (:meth:`LabellingEngine.round_size`) and how they are grouped into sub-processes
  (:meth:`LabellingEngine.group`: one frame per sub-process), the inputs of one sub-process for a group of
  frames (:meth:`LabellingEngine.prepare`), the per-frame outcome of a finished sub-process
  (:meth:`LabellingEngine.outcomes`, from :meth:`LabellingEngine.extract` when it finished ok and
  :meth:`LabellingEngine.classify_failure` when not);
* batches (engines with :attr:`LabellingEngine.supports_batches`, ``frames_per_job`` > 1): the batches of
  several frames (:meth:`LabellingEngine.batches`) and the sub-process of a group
  (:meth:`LabellingEngine.process_class_for`: a batch may run another process than a single frame).

Outcomes are per frame, so a batched engine can report that one frame of its batch did not converge while
the others are labelled: that frame's outcome is a ``retry`` and the work chain labels it again alone.
Failure entries are ``{'reason', 'detail', 'pk', ...}`` with a reason of
:data:`aiida_ilmlff.calculations.functions.labels.REASONS`.
"""

from __future__ import annotations

import abc
import dataclasses
import typing as t

from aiida import orm

__all__ = ('FrameOutcome', 'LabellingEngine', 'last_calculation')


@dataclasses.dataclass
class FrameOutcome:
    """The result of labelling one frame: ``labels`` (an ``ArrayData`` with ``energy`` ``(1,)`` eV, ``forces``
    ``(n, 3)`` eV/Å, optionally ``stress`` ``(3, 3)`` eV/Å^3; or the ``ArrayData`` of a whole batch, whose
    attribute ``frame_indices`` gives the frame of each row), ``failure`` (``{'reason', 'detail', 'pk', ...}``) or
    ``retry`` (the frame goes back to the queue: alone, or in another batch with ``retry_batched``).
    """

    labels: orm.ArrayData | None = None
    failure: dict | None = None
    #: Not labelled by its batch, to be labelled again: why (e.g. its SCF did not converge in the batch).
    retry: str | None = None
    #: With ``retry``: whether the frame may go into another batch (a batch stopped by its wall time after
    #: labelling some frames) rather than alone through the single-frame path (with the SCF ladder).
    retry_batched: bool = False


def last_calculation(node: orm.ProcessNode) -> orm.CalcJobNode | None:
    """The most recent ``CalcJobNode`` called by the work chain ``node`` (``None`` if none; ``node`` if a CalcJob)."""
    if isinstance(node, orm.CalcJobNode):
        return node
    calcs = [c for c in node.called if isinstance(c, orm.CalcJobNode)]
    return max(calcs, key=lambda c: c.ctime) if calcs else None


class LabellingEngine(abc.ABC):
    """A reference code that labels frames for ``ilmlff.label`` (see the module docstring).

    :param inputs: the inputs of the engine's namespace of ``ilmlff.label`` (``exposed_inputs``: nodes).
    :param compute_stress: whether the stress must be computed and extracted.
    """

    #: Short name: ``level_of_theory()['engine']`` and the ``engine`` keyword of the builder.
    name: t.ClassVar[str]
    #: The CalcJob plugin (``default_calc_job_plugin``) the engine's code must have.
    plugin: t.ClassVar[str]
    #: What the code is, for messages (e.g. ``CP2K``).
    code_description: t.ClassVar[str]
    #: The sub-process that labels one group of frames (a work chain such as ``PwBaseWorkChain``).
    process_class: t.ClassVar[type]
    #: The input namespace of ``ilmlff.label`` that exposes :attr:`process_class`.
    namespace: t.ClassVar[str]
    #: The namespace of :attr:`process_class` holding the CalcJob's inputs (``metadata.options`` go there).
    calculation_namespace: t.ClassVar[str]
    #: Ports of :attr:`process_class` not exposed (set per sub-process by :meth:`prepare`).
    exclude: t.ClassVar[tuple[str, ...]] = ()
    #: Help of the exposed namespace.
    namespace_help: t.ClassVar[str] = ''
    #: Whether :meth:`prepare` needs one ``StructureData`` per frame (made by ``frames_to_structures``).
    needs_structures: t.ClassVar[bool] = True

    #: Whether the engine labels several frames in one job (``frames_per_job`` > 1 is refused otherwise).
    supports_batches: t.ClassVar[bool] = False

    def __init__(self, inputs: t.Mapping[str, t.Any], *, compute_stress: bool, frames_per_job: int = 1):
        self.inputs = inputs
        self.compute_stress = bool(compute_stress)
        self.frames_per_job = int(frames_per_job)
        self._shared: dict[str, orm.Dict] = {}

    def shared_dict(self, name: str, value: dict) -> orm.Dict:
        """One ``Dict`` of ``value`` per engine instance (one work-chain step), shared by its sub-processes."""
        if name not in self._shared:
            self._shared[name] = orm.Dict(value)
        return self._shared[name]

    # ------------------------------------------------------------------------------------------ builder

    @classmethod
    @abc.abstractmethod
    def protocol_values(
        cls, values: dict, meta: t.Mapping, *, elements: t.Sequence[str], max_atoms: int, protocol: str
    ) -> dict:
        """Complete the protocol's engine section (plain values, already merged with the overrides).

        :param values: the engine namespace of the protocol inputs (changed in place and returned).
        :param meta: the protocol's ``meta_parameters``. :param elements: the elements to label.
        :param max_atoms: atoms of the largest frame. :param protocol: the protocol name (for messages).
        :return: the namespace as plain values (numbers, strings, lists, dicts; no nodes).
        :raises ValueError: naming the input and the fix when the protocol cannot label ``elements``.
        """

    @classmethod
    @abc.abstractmethod
    def validate_values(cls, values: t.Mapping, elements: t.Iterable[str] | None = None) -> str | None:
        """Check the engine namespace given as plain values; return a message naming the input, or ``None``.

        :param values: the namespace (``Dict`` nodes already turned into dicts).
        :param elements: the elements of the frames (``None``: element coverage not checked).
        """

    @classmethod
    @abc.abstractmethod
    def to_inputs(cls, code: orm.AbstractCode, values: t.Mapping, elements: t.Sequence[str]) -> dict:
        """Turn the plain namespace values into the namespace's inputs (nodes, unstored), with ``code``."""

    @classmethod
    def plain_values(cls, inputs: t.Mapping) -> dict:
        """The namespace's inputs (nodes) as the plain values :meth:`validate_values` reads.

        ``parameters`` and ``settings`` of the calculation namespace become dicts; the rest (code,
        pseudopotentials, basis sets) is kept as given.
        """
        calc = dict(inputs.get(cls.calculation_namespace, {}) or {})
        for key in ('parameters', 'settings'):
            if isinstance(calc.get(key), orm.Dict):
                calc[key] = calc[key].get_dict()
        return {**dict(inputs), cls.calculation_namespace: calc}

    @staticmethod
    def restart_values_to_nodes(inputs: dict) -> dict:
        """``max_iterations`` -> ``Int``, ``clean_workdir`` and ``resubmit_cancelled`` -> ``Bool`` (ports of a
        ``BaseRestartWorkChain``; ``resubmit_cancelled``: :class:`~aiida_ilmlff.workflows.cancelled.CancelledJobMixin`).
        """
        if 'max_iterations' in inputs:
            inputs['max_iterations'] = orm.Int(inputs['max_iterations'])
        if 'clean_workdir' in inputs:
            inputs['clean_workdir'] = orm.Bool(inputs['clean_workdir'])
        if 'resubmit_cancelled' in inputs:
            inputs['resubmit_cancelled'] = orm.Bool(inputs['resubmit_cancelled'])
        return inputs

    # ------------------------------------------------------------------------------------------ run

    @abc.abstractmethod
    def level_of_theory(self) -> dict:
        """``{'engine', 'method', 'settings', 'fingerprint'}`` of the labels this engine produces.

        See :mod:`aiida_ilmlff.data.level_of_theory`.
        """

    def round_size(self, max_concurrent: int) -> int:
        """How many frames one round of the work chain takes with one frame per sub-process (``max_concurrent``).

        With ``frames_per_job`` > 1 a round is ``max_concurrent`` sub-processes of :meth:`batches`."""
        return int(max_concurrent)

    def group(self, indices: t.Sequence[int]) -> list[list[int]]:
        """Split the frame indices of one round into the groups labelled by one sub-process each.

        One frame per sub-process (the default). A batched engine returns groups of several frames.
        """
        return [[int(index)] for index in indices]

    def batches(self, frames: t.Any, indices: t.Sequence[int]) -> list[list[int]]:
        """The batches of frames ``indices``, one sub-process each: one frame per batch for an engine that labels one
        frame per job (the default); a :attr:`supports_batches` engine groups several (``frames_per_job``)."""
        return self.group(indices)

    def process_class_for(self, indices: t.Sequence[int]) -> type:
        """The sub-process that labels ``indices``: :attr:`process_class` (a batched engine may use another)."""
        return self.process_class

    def link_label(self, indices: t.Sequence[int]) -> str:
        """The call link label of the sub-process that labels ``indices`` (``frame_<index:06d>`` for one frame)."""
        if len(indices) == 1:
            return f'frame_{indices[0]:06d}'
        return f'frames_{indices[0]:06d}_{indices[-1]:06d}'

    @abc.abstractmethod
    def prepare(
        self,
        frames: t.Any,
        indices: t.Sequence[int],
        structures: t.Mapping[int, orm.StructureData] | None,
    ) -> dict:
        """The inputs of one sub-process of :meth:`process_class` that labels frames ``indices``.

        :param frames: the ``FramesData`` being labelled. :param indices: the frames of this sub-process
            (one group of :meth:`group`). :param structures: frame index -> ``StructureData`` (when
            :attr:`needs_structures`), else ``None``.
        :return: the inputs (``metadata.call_link_label`` is set by the work chain).
        """

    @abc.abstractmethod
    def extract(self, node: orm.ProcessNode, indices: t.Sequence[int]) -> dict[int, FrameOutcome]:
        """Read the labels of the frames ``indices`` from the sub-process ``node`` that finished ok.

        Runs the extraction calcfunction(s) (provenance); a frame whose labels cannot be read gets a
        ``parse_failed`` failure.
        """

    @abc.abstractmethod
    def classify_failure(self, node: orm.ProcessNode) -> dict:
        """Why the sub-process ``node`` failed: ``{'reason', 'detail', 'pk', 'workchain_pk', 'exit_status'}``.

        ``reason`` is ``scf_not_converged`` when the SCF failed (after the engine's restarts), else
        ``calculation_failed``; ``pk`` is the last calculation's.
        """

    def outcomes(self, node: orm.ProcessNode, indices: t.Sequence[int]) -> dict[int, FrameOutcome]:
        """Per-frame outcome of the sub-process ``node`` that labelled ``indices``.

        :meth:`extract` when it finished ok; otherwise every frame of the group gets the failure of
        :meth:`classify_failure` (a batched engine overrides this to keep the frames that were labelled).
        """
        if node.is_finished_ok:
            return self.extract(node, indices)
        failure = self.classify_failure(node)
        return {int(index): FrameOutcome(failure=dict(failure)) for index in indices}

    # ------------------------------------------------------------------------------------------ helpers

    @staticmethod
    def failure_detail(node: orm.ProcessNode) -> tuple[str, orm.CalcJobNode | None]:
        """A one-line account of the failed sub-process ``node`` and its last calculation."""
        calc = last_calculation(node)
        status = node.exit_status
        detail = (
            f'{node.process_label}<{node.pk}> exit status {status}: {node.exit_message or node.process_state.value}'
        )
        if calc is not None:
            detail += f'; last calculation {calc.process_label}<{calc.pk}> exit status {calc.exit_status}'
            if calc.exit_message:
                detail += f': {calc.exit_message}'
        return detail, calc

    @staticmethod
    def failure_entry(node: orm.ProcessNode, reason: str, detail: str, calc: orm.CalcJobNode | None) -> dict:
        """The failure dict of :meth:`classify_failure`."""
        return {
            'reason': reason,
            'detail': detail,
            'pk': calc.pk if calc is not None else node.pk,
            'workchain_pk': node.pk,
            'exit_status': node.exit_status,
        }

    @staticmethod
    def run_extraction(function: t.Callable, index: int, calc: orm.CalcJobNode | None, **inputs) -> FrameOutcome:
        """Run the extraction calcfunction ``function`` for frame ``index``; a failure rejects the frame."""
        pk = calc.pk if calc is not None else None
        try:
            labels, process = function.run_get_node(**inputs, metadata={'call_link_label': f'extract_{index:06d}'})
        except Exception as exception:  # an excepted extraction rejects only this frame
            return FrameOutcome(failure={'reason': 'parse_failed', 'detail': str(exception), 'pk': pk})
        if not process.is_finished_ok:
            return FrameOutcome(
                failure={
                    'reason': 'parse_failed',
                    'detail': f'[{process.exit_status}] {process.exit_message}',
                    'pk': pk,
                }
            )
        return FrameOutcome(labels=labels)
