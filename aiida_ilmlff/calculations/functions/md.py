"""Calcfunctions on ``ilmlff.md`` results: the properties of a model whose MD broke a molecule or became unstable.

Thin layer: the bond (or the tripped guard) comes from the runner's ``status.json`` (``output_parameters``) through
:func:`aiida_ilmlff.runner.contract.broken_bond`.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.runner.contract import broken_bond

__all__ = ('broken_molecule_properties', 'unstable_model_properties')


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
    return orm.Dict(_no_properties('broken', {**bond, 'stage': stage.value}, temperature.value))


#: The keys of a runner guard record kept in ``properties.unstable``.
_GUARD_KEYS = ('name', 'message', 'value', 'threshold', 'step', 'time_fs')


@calcfunction
def unstable_model_properties(output_parameters: orm.Dict, stage: orm.Str, temperature: orm.Float) -> orm.Dict:
    """The ``properties`` of ``ilmlff.properties`` for a model whose MD tripped a guard other than ``bond``
    (``non_finite``, ``max_force``, ``temperature``, ``min_distance``, ``volume``) even after the restarts with
    smaller time steps of ``ilmlff.md.base``: the model is unstable at this state point.

    No property is computed from such a trajectory: ``density_g_cm3`` is ``None`` and ``diffusion`` and
    ``coordination`` are empty. ``unstable`` says what tripped where: the guard's ``name``, ``message``, measured
    ``value`` and ``threshold`` (the guard's units: K, eV/Å, Å or a volume fraction), ``step``, ``time_fs``, and
    ``stage`` (``npt_<k>`` or ``nvt``).

    :param output_parameters: the ``output_parameters`` of the ``ilmlff.md`` calculation that tripped the guard.
    :param stage: the stage of the properties work chain it belonged to.
    :param temperature: K.
    :raises ValueError: the calculation did not stop on a guard, or stopped on the ``bond`` guard (see
        :func:`broken_molecule_properties`).
    """
    guard = output_parameters.get_dict().get('guard') or {}
    if not guard.get('name') or guard.get('name') == 'bond':
        raise ValueError(
            'the calculation did not stop on a guard other than `bond` (`guard.name` of its output_parameters: '
            f'{guard.get("name")!r})'
        )
    record = {key: guard.get(key) for key in _GUARD_KEYS}
    return orm.Dict(
        _no_properties('unstable', {'guard': record.pop('name'), **record, 'stage': stage.value}, temperature.value)
    )


def _no_properties(reason: str, record: dict, temperature_K: float) -> dict:
    """``properties`` with no density, diffusion or coordination, and ``reason`` (``broken``/``unstable``) set."""
    return {
        reason: record,
        'density_g_cm3': None,
        'temperature_K': temperature_K,
        'diffusion': {},
        'coordination': {},
    }
