"""The ``monitors`` of a CalcJob namespace in the protocols: plain data in, ``Dict`` nodes out.

In a protocol file (and in ``overrides``) a CalcJob's ``monitors`` is a mapping ``key -> settings`` where the
settings are those of aiida-core's ``CalcJobMonitor`` (``entry_point``, ``minimum_poll_interval`` [s],
``kwargs``, ``priority``, ``disabled``), or ``null`` to drop the monitor of that key that the protocol sets, e.g.
``overrides={'md': {'monitors': {'progress': None}}}`` switches the progress lines of ``ilmlff.md`` off.
"""

from __future__ import annotations

import collections.abc
import typing as t

__all__ = ('check_monitors', 'monitors_to_nodes')


def check_monitors(value: t.Any, where: str) -> str | None:
    """A message naming the first bad monitor of the plain ``monitors`` mapping ``value``, or ``None``.

    :param where: the dotted path of ``value`` in the inputs (e.g. ``md.monitors``), used in the message.
    """
    from aiida.engine.processes.calcjobs.monitors import CalcJobMonitor

    if value is None:
        return None
    if not isinstance(value, collections.abc.Mapping):
        return f'`{where}` must be a mapping of monitor name to settings, got {type(value).__name__}'
    for key, settings in value.items():
        if settings is None:
            continue
        if not isinstance(settings, collections.abc.Mapping):
            return (
                f'`{where}.{key}` must be a mapping (entry_point, minimum_poll_interval, ...) or null, got {settings!r}'
            )
        try:
            CalcJobMonitor(**settings)
        except Exception as exception:
            return f'`{where}.{key}`: {exception} (settings: {dict(settings)})'
    return None


def monitors_to_nodes(value: t.Mapping | None, where: str) -> dict:
    """The plain ``monitors`` mapping as ``{key: orm.Dict}``, without the keys set to ``None``.

    :raises ValueError: the message of :func:`check_monitors`.
    """
    from aiida import orm

    message = check_monitors(value, where)
    if message:
        raise ValueError(message)
    return {key: orm.Dict(dict(settings)) for key, settings in (value or {}).items() if settings is not None}
