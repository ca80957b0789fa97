"""Inputs as plain values, so that one validator serves a work chain, its builder and the work chains that wrap it.

A work chain's plain-data check (``check_inputs(values, context)``) reads numbers, strings, lists and dicts.
Its port validator calls it on :func:`to_plain` of the nodes; ``get_builder_from_protocol`` calls it on the
protocol inputs before any node is made; a parent work chain (``ilmlff.pipeline``) calls it on its stage
namespace with what it sets at run time passed in ``context`` (e.g. the composition and its elements), or
marked :data:`SET_BY_PARENT` when the value does not exist before the run (the trained models, the training set).
"""

from __future__ import annotations

import collections.abc
import typing as t

__all__ = ('SET_BY_PARENT', 'is_set_by_parent', 'to_plain')


class _SetByParent:
    """The value of an input that a parent work chain sets at run time (checks that need it are skipped)."""

    def __repr__(self) -> str:
        return 'SET_BY_PARENT'


#: Stands for an input that the parent work chain fills in at run time (not a node, never submitted).
SET_BY_PARENT = _SetByParent()


def is_set_by_parent(value: t.Any) -> bool:
    """Whether ``value`` is :data:`SET_BY_PARENT`."""
    return value is SET_BY_PARENT


def to_plain(value: t.Any) -> t.Any:
    """``value`` with ``Dict``/``List``/``Int``/``Float``/``Str``/``Bool`` nodes turned into Python values.

    Mappings (port namespaces, ``AttributeDict``) become dicts, recursively. Other nodes (codes, FramesData,
    models, files) are returned as they are: their checks read their attributes.
    """
    from aiida import orm

    if isinstance(value, orm.Dict):
        return value.get_dict()
    if isinstance(value, orm.List):
        return value.get_list()
    if isinstance(value, orm.BaseType):
        return value.value
    if isinstance(value, collections.abc.Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    return value
