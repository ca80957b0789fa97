"""Checks of inputs that cannot be meant, shared by the work chains' plain-data validators.

- a temperature outside any liquid ionic liquid (:data:`LIQUID_TEMPERATURE_K`);
- a code of another plugin than the stage runs (a ``dp`` code given as the MACE training code);
- a box larger than the protocol's level of theory can label (the protocol file's ``max_atoms``).

Each returns the message (naming the input and the fix) or ``None``.
"""

from __future__ import annotations

import typing as t

__all__ = ('LIQUID_TEMPERATURE_K', 'check_code_plugin', 'check_liquid_temperature', 'check_max_atoms')

#: Temperatures [K] at which an ionic liquid can be a liquid. Below 200 K every common IL is a glass or a
#: crystal (the lowest glass transitions, e.g. EMIM/BMIM TFSI, are at 180-190 K); above 1000 K every IL has
#: decomposed (onsets 550-750 K by TGA), so MD there describes no real liquid. A run outside is a typo (a
#: temperature in °C, or a missing digit), not a study.
LIQUID_TEMPERATURE_K = (200.0, 1000.0)


def check_liquid_temperature(value: t.Any, name: str = 'temperature') -> str | None:
    """Message for a temperature [K] that is not positive or outside :data:`LIQUID_TEMPERATURE_K`, else ``None``."""
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        return f'`{name}` must be a number (K), got {value!r}'
    if not temperature > 0:
        return f'`{name}` must be positive (K), got {value}'
    low, high = LIQUID_TEMPERATURE_K
    if not low <= temperature <= high:
        return (
            f'`{name}` = {temperature:g} K is outside any ionic liquid ({low:g}-{high:g} K: below, every IL is a '
            f'glass or a crystal; above, it has decomposed); give the temperature in kelvin'
        )
    return None


def check_code_plugin(code: t.Any, plugins: str | t.Sequence[str], key: str) -> str | None:
    """Message when ``code`` (an AiiDA code) has a default plugin other than ``plugins``, else ``None``.

    :param key: the input or ``codes`` key the code was given as (named in the message).
    """
    from aiida import orm

    if code is None:
        return None
    if not isinstance(code, orm.AbstractCode):
        return f'`{key}`: expected an AiiDA code, got {type(code).__name__}'
    allowed = (plugins,) if isinstance(plugins, str) else tuple(plugins)
    plugin = code.default_calc_job_plugin
    if plugin not in allowed:
        return (
            f'`{key}`: code `{code.full_label}` runs plugin `{plugin}`, but this stage needs '
            f'{" or ".join(f"`{name}`" for name in allowed)}'
        )
    return None


def check_max_atoms(n_atoms: int, max_atoms: int | None, what: str, protocol: str) -> str | None:
    """Message when a box of ``n_atoms`` exceeds the ``max_atoms`` the labelling protocol states, else ``None``."""
    if max_atoms is None or n_atoms <= int(max_atoms):
        return None
    return (
        f'{what} has {n_atoms} atoms, more than the {int(max_atoms)} that the labelling protocol `{protocol}` can '
        'label in reasonable time (`max_atoms` of its protocol file): use fewer ion pairs, or a protocol meant for '
        'larger boxes'
    )
