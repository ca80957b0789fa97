"""Labelling engines of ``ilmlff.label`` and their registry: the code's CalcJob plugin -> the engine.

``ENGINES`` maps a plugin (``cp2k``, ``quantumespresso.pw``) to its :class:`LabellingEngine` subclass;
:func:`engine_for_code` picks the engine of a code (with a message naming the supported plugins) and
:func:`engine_by_name` / :func:`engine_for_namespace` find one by its short name or its input namespace.
"""

from __future__ import annotations

import typing as t

from .base import FrameOutcome, LabellingEngine, last_calculation
from .cp2k import Cp2kEngine
from .pw import PwEngine

__all__ = (
    'ENGINES',
    'Cp2kEngine',
    'FrameOutcome',
    'LabellingEngine',
    'PwEngine',
    'engine_by_name',
    'engine_for_code',
    'engine_for_namespace',
    'last_calculation',
    'register_engine',
)

#: CalcJob plugin of the code -> labelling engine (one per plugin).
ENGINES: dict[str, type[LabellingEngine]] = {}


def register_engine(engine: type[LabellingEngine]) -> type[LabellingEngine]:
    """Add ``engine`` to :data:`ENGINES` under its plugin (replacing the engine registered for that plugin)."""
    ENGINES[engine.plugin] = engine
    return engine


register_engine(Cp2kEngine)
register_engine(PwEngine)


def _supported() -> str:
    return ', '.join(f'`{plugin}` ({engine.code_description})' for plugin, engine in ENGINES.items())


def engine_by_name(name: str) -> type[LabellingEngine]:
    """The engine whose short name is ``name`` (``cp2k``, ``qe``).

    :raises ValueError: naming ``engine`` and the known names.
    """
    for engine in ENGINES.values():
        if engine.name == name:
            return engine
    names = ', '.join(engine.name for engine in ENGINES.values())
    raise ValueError(f'`engine`: unknown engine `{name}`; choose one of {names}')


def engine_for_namespace(namespace: str) -> type[LabellingEngine]:
    """The engine whose input namespace of ``ilmlff.label`` is ``namespace``."""
    for engine in ENGINES.values():
        if engine.namespace == namespace:
            return engine
    raise KeyError(namespace)


def engine_for_code(code: t.Any, name: str | None = None) -> type[LabellingEngine]:
    """The engine that runs ``code`` (an ``AbstractCode``), chosen by its ``default_calc_job_plugin``.

    :param name: an engine name to use instead (for a code without a default plugin); it must agree with the
        code's plugin when the code has one.
    :raises ValueError: naming ``code`` (a plugin no engine supports, or one that disagrees with ``name``) or
        ``engine`` (an unknown name).
    """
    plugin = code.default_calc_job_plugin
    if name is None:
        if plugin not in ENGINES:
            raise ValueError(
                f'`code`: cannot infer the engine from the default plugin `{plugin}` of code `{code.full_label}`; '
                f'ilmlff.label labels with codes of plugin {_supported()}; use such a code, or pass `engine`'
            )
        return ENGINES[plugin]
    engine = engine_by_name(name)
    if plugin is not None and plugin != engine.plugin:
        raise ValueError(
            f'`code`: code `{code.full_label}` has plugin `{plugin}`, engine `{name}` needs `{engine.plugin}`'
        )
    return engine
