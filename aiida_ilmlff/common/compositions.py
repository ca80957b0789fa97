"""The composition key of a box: one string per composition, the same wherever frames, tables and queries name it.

A composition is ion name -> number of molecules in one box (``{'Li': 1, 'PYR14': 2, 'TFSI': 3}``). Its key is
``'Li:1 PYR14:2 TFSI:3'``: ``name:count`` sorted by ion name (case-sensitive code-point order), so that the key
of a box built from a composition and the key read back from a frame's per-molecule ion names agree, and a
``QueryBuilder`` filter on ``FramesData`` ``attributes.compositions`` finds every frame set that holds it.
"""

from __future__ import annotations

import collections
import json
import typing as t

__all__ = ('composition_key', 'composition_key_of_molecules', 'composition_keys_of_frames')


def composition_key(counts: t.Mapping[str, t.Any]) -> str:
    """``'name:count ...'`` sorted by ion name, e.g. ``{'TFSI': 3, 'Li': 1, 'PYR14': 2}`` -> ``'Li:1 PYR14:2 TFSI:3'``.

    :param counts: ion name -> number of molecules (an int, or an inline ion definition with a ``count`` key as
        :func:`aiida_ilmlff.systems.validate_composition` accepts).
    :raises ValueError: an empty mapping, or a count that is not a positive integer.
    """
    if not counts:
        raise ValueError('a composition needs at least one ion')
    parts = []
    for name in sorted(counts):
        value = counts[name]
        count = value.get('count') if isinstance(value, t.Mapping) else value
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f'the count of {name} must be a positive integer, got {count!r}')
        parts.append(f'{name}:{count}')
    return ' '.join(parts)


def composition_key_of_molecules(molecules: str | t.Sequence[str]) -> str:
    """The key of one frame from its per-molecule ion names (a list, or ``FramesData``'s JSON text); '' if unknown.

    :param molecules: ``['PYR14', 'PYR14', 'TFSI', 'TFSI']`` or its JSON text; '' or an empty list for a frame
        whose molecules are not known.
    """
    if isinstance(molecules, str):
        if not molecules:
            return ''
        molecules = json.loads(molecules)
    if not molecules:
        return ''
    return composition_key(collections.Counter(str(name) for name in molecules))


def composition_keys_of_frames(molecules: t.Iterable[str]) -> list[str]:
    """The key of every frame from ``FramesData.molecules`` (``(N,)`` JSON texts), '' where unknown.

    Frames of one box share one text, which is parsed once.
    """
    cache: dict[str, str] = {}
    keys = []
    for text in molecules:
        text = str(text)
        if text not in cache:
            cache[text] = composition_key_of_molecules(text)
        keys.append(cache[text])
    return keys
