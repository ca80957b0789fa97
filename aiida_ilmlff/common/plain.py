"""Plain, JSON-ready values for ``Dict`` nodes and JSON files."""

from __future__ import annotations

import typing as t

import numpy as np

__all__ = ('finite_or_none',)


def finite_or_none(value: t.Any) -> t.Any:
    """``value`` with every non-finite float (nan, inf) replaced by ``None``, recursively through dicts, lists and
    tuples (tuples become lists); numpy floats and integers become Python ``float`` and ``int``."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
