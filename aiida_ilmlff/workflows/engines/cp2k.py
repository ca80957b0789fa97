"""The CP2K labelling engine: one ``IlmlffCp2kBaseWorkChain`` single point (``ENERGY_FORCE``) per frame.

Plugin ``cp2k`` (aiida-cp2k), namespace ``cp2k`` of ``ilmlff.label``. The single point runs with the SCF
ladder and the GFN-xTB charge-check handler of :mod:`aiida_ilmlff.workflows.cp2k_base`; CP2K's
``GLOBAL/WALLTIME`` is 95 % of the scheduler's. Forces are printed to
:data:`~aiida_ilmlff.parsers.cp2k_output.CP2K_FORCES_FILE` and, with ``compute_stress``, the analytical
stress to :data:`~aiida_ilmlff.parsers.cp2k_output.CP2K_STRESS_FILE`; both are retrieved and read by
:func:`~aiida_ilmlff.calculations.functions.labels.extract_cp2k_labels`.
"""

from __future__ import annotations

import copy
import typing as t

from aiida import orm
from aiida.common import AttributeDict

from aiida_ilmlff.calculations.functions.labels import extract_cp2k_labels
from aiida_ilmlff.data.level_of_theory import case_insensitive_get, cp2k_level_of_theory
from aiida_ilmlff.parsers.cp2k_output import CP2K_FORCES_FILE, CP2K_STRESS_FILE, scf_failed
from aiida_ilmlff.workflows.cp2k_base import IlmlffCp2kBaseWorkChain, read_cp2k_stdout, with_walltime
from aiida_ilmlff.workflows.engines.base import FrameOutcome, LabellingEngine, last_calculation

__all__ = ('XTB_MAX_Z', 'Cp2kEngine', 'cp2k_labelling_parameters')

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

    def __init__(self, inputs: t.Mapping[str, t.Any], *, compute_stress: bool):
        super().__init__(inputs, compute_stress=compute_stress)
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

    def prepare(self, frames, indices, structures) -> dict:
        """Inputs of one single point: the namespace's inputs with the frame's structure and the labelling input."""
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
