"""Calcfunctions on ``ilmlff.md`` results: the properties of a model whose MD broke a molecule.

Thin layer: the bond comes from the runner's ``status.json`` (``output_parameters``) through
:func:`aiida_ilmlff.runner.contract.broken_bond`.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.runner.contract import broken_bond

__all__ = ('broken_molecule_properties',)


@calcfunction
def broken_molecule_properties(output_parameters: orm.Dict, stage: orm.Str, temperature: orm.Float) -> orm.Dict:
    """The ``properties`` of ``ilmlff.properties`` for a model whose MD tripped the ``bond`` guard.

    No property is computed from such a trajectory: ``density_g_cm3`` is ``None`` and ``diffusion`` and
    ``coordination`` are empty. ``broken`` says which bond broke where: the keys of
    :func:`~aiida_ilmlff.runner.contract.broken_bond` (``i``, ``j``, ``elements``, ``molecule``, ``species``,
    ``length_A``, ``reference_length_A``, ``stretch``, ``label``, ``step``, ``time_fs``, ``threshold``) and
    ``stage`` (``npt_<k>`` or ``nvt``).

    :param output_parameters: the ``output_parameters`` of the ``ilmlff.md`` calculation that tripped the guard.
    :param stage: the stage of the properties work chain it belonged to.
    :param temperature: K.
    :raises ValueError: the calculation did not stop on the ``bond`` guard.
    """
    bond = broken_bond(output_parameters.get_dict())
    if bond is None:
        raise ValueError('the calculation did not stop on the `bond` guard (no `guard.bond` in its output_parameters)')
    return orm.Dict(
        {
            'broken': {**bond, 'stage': stage.value},
            'density_g_cm3': None,
            'temperature_K': temperature.value,
            'diffusion': {},
            'coordination': {},
        }
    )
