"""Exceptions raised by the ion library, the composition checks and the box builder."""

from __future__ import annotations

__all__ = ('BoxBuildError', 'CompositionError', 'PackmolError')


class CompositionError(ValueError):
    """Invalid system specification: unknown ion, bad SMILES, bad count, net charge, density or seed.

    Raised by :func:`~aiida_ilmlff.systems.validate_composition` and friends *before* any conformer is
    generated, Packmol is run or an AiiDA node is stored. The message names the offending input and the fix.
    """


class BoxBuildError(RuntimeError):
    """A valid specification could not be turned into a box (conformer embedding or packing failed)."""


class PackmolError(BoxBuildError):
    """Packmol is missing, failed, timed out or ended without a packing that meets the tolerance.

    The message ends with the tail of Packmol's output.
    """
