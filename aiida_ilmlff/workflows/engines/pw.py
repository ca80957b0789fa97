"""The pw.x labelling engine: one aiida-quantumespresso ``PwBaseWorkChain`` SCF per frame.

Plugin ``quantumespresso.pw``, namespace ``qe`` of ``ilmlff.label``. ``CONTROL`` is set to ``calculation
'scf'``, ``tprnfor`` (forces) and ``tstress`` (with ``compute_stress``); each frame gets the pseudopotentials
of its own elements. Labels are read from ``output_parameters`` and ``output_trajectory`` by
:func:`~aiida_ilmlff.calculations.functions.labels.extract_pw_labels`. The protocol's pseudopotentials come
from an aiida-pseudo family (``meta_parameters.pseudo_family``), with its recommended cutoffs unless the
protocol sets ``ecutwfc`` and ``ecutrho``; ``conv_thr`` is ``conv_thr_per_atom`` x atoms of the largest frame.
"""

from __future__ import annotations

import copy
import typing as t

from aiida import orm
from aiida.common import AttributeDict
from aiida.plugins import WorkflowFactory

from aiida_ilmlff.calculations.functions.labels import extract_pw_labels
from aiida_ilmlff.data.level_of_theory import pw_level_of_theory
from aiida_ilmlff.workflows.engines.base import FrameOutcome, LabellingEngine, last_calculation
from aiida_ilmlff.workflows.protocols import recursive_merge

__all__ = ('PW_SCF_FAILURES', 'PwEngine')

PwBaseWorkChain = WorkflowFactory('quantumespresso.pw.base')

#: PwCalculation exit statuses that mean the SCF did not converge (410, 510 in a relaxation, 710 warning).
PW_SCF_FAILURES = {410, 510, 710}


def _pseudo_family(label: str):
    from aiida_pseudo.groups.family import PseudoPotentialFamily

    try:
        return orm.QueryBuilder().append(PseudoPotentialFamily, filters={'label': label}).one()[0]
    except Exception as exception:  # NotExistent or MultipleObjectsError
        raise ValueError(
            f'`meta_parameters.pseudo_family`: pseudopotential family `{label}` is not installed (or not unique): '
            'install it with `aiida-pseudo install sssp` or set another family in `overrides`'
        ) from exception


class PwEngine(LabellingEngine):
    """pw.x SCF single points through aiida-quantumespresso's ``PwBaseWorkChain``."""

    name = 'qe'
    plugin = 'quantumespresso.pw'
    code_description = 'pw.x (Quantum ESPRESSO)'
    namespace = 'qe'
    calculation_namespace = 'pw'
    process_class = PwBaseWorkChain
    exclude = ('pw.structure',)
    namespace_help = (
        'Inputs of the Quantum ESPRESSO engine (PwBaseWorkChain); the structure of each frame is set by the work '
        'chain and `pw.pseudos` is reduced to the elements of the frame.'
    )

    # ------------------------------------------------------------------------------------------ builder

    @classmethod
    def protocol_values(
        cls, values: dict, meta: t.Mapping, *, elements: t.Sequence[str], max_atoms: int, protocol: str
    ) -> dict:
        """Check the pseudopotential family covers ``elements``; set cutoffs, ``conv_thr``, Gamma point.

        The plain values name the family (``pseudo_family``); :meth:`to_inputs` loads its pseudopotentials.
        """
        pw = values['pw']
        label = meta['pseudo_family']
        family = _pseudo_family(label)
        try:
            family.get_pseudos(elements=elements)
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
        parameters.setdefault('ELECTRONS', {}).setdefault('conv_thr', float(meta['conv_thr_per_atom']) * max_atoms)
        pw['settings'] = recursive_merge({'gamma_only': True}, pw.get('settings', {}))
        values['pseudo_family'] = label
        values.setdefault('kpoints', [1, 1, 1])
        return values

    @classmethod
    def validate_values(cls, values: t.Mapping, elements: t.Iterable[str] | None = None) -> str | None:
        """``pw.pseudos`` (or the family of ``pseudo_family``) covers ``elements``."""
        if elements is None:
            return None
        pseudos = (values.get('pw', {}) or {}).get('pseudos')
        if pseudos is None and values.get('pseudo_family'):
            return None  # checked against the family by protocol_values
        missing = sorted(set(elements) - set(pseudos or {}))
        if missing:
            return f'`qe.pw.pseudos`: no pseudopotential for element(s) {", ".join(missing)} present in `frames`'
        return None

    @classmethod
    def to_inputs(cls, code: orm.AbstractCode, values: t.Mapping, elements: t.Sequence[str]) -> dict:
        """``code``, the family's pseudopotentials of ``elements``, ``Dict``/``Int``/``Bool`` nodes, a k-point mesh."""
        inputs = copy.deepcopy(dict(values))
        label = inputs.pop('pseudo_family')
        pw = inputs['pw']
        pw['code'] = code
        pw['pseudos'] = _pseudo_family(label).get_pseudos(elements=elements)
        pw['parameters'] = orm.Dict(pw['parameters'])
        pw['settings'] = orm.Dict(pw['settings'])
        kpoints = orm.KpointsData()
        kpoints.set_kpoints_mesh(list(inputs.pop('kpoints')))
        inputs['kpoints'] = kpoints
        return cls.restart_values_to_nodes(inputs)

    # ------------------------------------------------------------------------------------------ run

    def __init__(self, inputs: t.Mapping[str, t.Any], *, compute_stress: bool, frames_per_job: int = 1):
        super().__init__(inputs, compute_stress=compute_stress, frames_per_job=frames_per_job)
        pw = inputs['pw']
        parameters = pw['parameters'].get_dict()
        control = parameters.setdefault('CONTROL', {})
        control['calculation'] = 'scf'
        control['tprnfor'] = True
        control['tstress'] = self.compute_stress
        self.parameters = parameters
        self.settings = pw['settings'].get_dict() if 'settings' in pw else {}

    def _kpoints_description(self) -> t.Any:
        """``'gamma'``, ``{'mesh', 'offset'}``, an explicit list or ``{'distance'}`` (for the fingerprint)."""
        settings = self.settings
        kpoints: t.Any = 'gamma' if settings.get('gamma_only', settings.get('GAMMA_ONLY')) else 'explicit'
        if 'kpoints' in self.inputs:
            try:
                mesh, offset = self.inputs['kpoints'].get_kpoints_mesh()
                kpoints = 'gamma' if kpoints == 'gamma' else {'mesh': list(mesh), 'offset': list(offset)}
            except AttributeError:
                kpoints = self.inputs['kpoints'].get_kpoints().tolist()
        elif 'kpoints_distance' in self.inputs:
            kpoints = {'distance': self.inputs['kpoints_distance'].value}
        return kpoints

    def level_of_theory(self) -> dict:
        """:func:`~aiida_ilmlff.data.level_of_theory.pw_level_of_theory` of the SCF input."""
        return pw_level_of_theory(self.parameters, dict(self.inputs['pw']['pseudos']), self._kpoints_description())

    def prepare(self, frames, indices, structures) -> dict:
        """Inputs of one SCF: the frame's structure, the labelling parameters, the pseudos of its elements."""
        (index,) = indices
        structure = structures[index]
        inputs = AttributeDict(self.inputs)
        pw = AttributeDict(inputs.pw)
        pw.structure = structure
        pw.parameters = self.shared_dict('parameters', self.parameters)
        pw.pseudos = {kind: pw.pseudos[kind] for kind in structure.get_kind_names()}
        if self.settings:
            pw.settings = self.shared_dict('settings', self.settings)
        inputs.pw = pw
        return inputs

    def extract(self, node, indices) -> dict[int, FrameOutcome]:
        """Run :func:`~aiida_ilmlff.calculations.functions.labels.extract_pw_labels` on the work chain's outputs."""
        (index,) = indices
        calc = last_calculation(node)
        outcome = self.run_extraction(
            extract_pw_labels,
            index,
            calc,
            output_parameters=node.outputs.output_parameters,
            output_trajectory=node.outputs.output_trajectory,
            structure=calc.inputs.structure,
        )
        return {index: outcome}

    def classify_failure(self, node) -> dict:
        """``scf_not_converged`` when the last PwCalculation exited with one of :data:`PW_SCF_FAILURES`."""
        detail, calc = self.failure_detail(node)
        reason = (
            'scf_not_converged' if calc is not None and calc.exit_status in PW_SCF_FAILURES else 'calculation_failed'
        )
        return self.failure_entry(node, reason, detail, calc)
