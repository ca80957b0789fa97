"""Shared pieces of the analysis library: physical constants, errors and the result base class.

The amu/Å^3 -> g/cm^3 constant lives in :mod:`aiida_ilmlff.common.units`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = (
    'ANGSTROM2_PER_FS_TO_M2_PER_S',
    'BOLTZMANN_J_PER_K',
    'AnalysisResult',
    'WrappedCoordinatesError',
)

#: Boltzmann constant in J/K (exact, SI 2019).
BOLTZMANN_J_PER_K = 1.380649e-23
#: 1 Å^2/fs = 1e-20 m^2 / 1e-15 s = 1e-5 m^2/s.
ANGSTROM2_PER_FS_TO_M2_PER_S = 1.0e-5


class WrappedCoordinatesError(ValueError):
    """Raised when an analysis that needs unwrapped coordinates is given wrapped ones.

    Wrapped coordinates are detected by a jump of more than half a cell vector (in fractional
    coordinates) between consecutive frames, which unwrapped MD trajectories sampled finely
    enough never show.
    """


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): _to_builtin(val) for key, val in value.items()}
    if isinstance(value, list | tuple):
        return [_to_builtin(val) for val in value]
    return value


@dataclasses.dataclass(frozen=True)
class AnalysisResult:
    """Base class of the result dataclasses: adds :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-serialisable builtins (arrays become lists), e.g. for an AiiDA ``Dict``."""
        return {field.name: _to_builtin(getattr(self, field.name)) for field in dataclasses.fields(self)}
