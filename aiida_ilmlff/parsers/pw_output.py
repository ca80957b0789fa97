"""pw.x labels from what aiida-quantumespresso's ``PwParser`` reads (pure numpy, no AiiDA).

``PwParser`` turns pw.x's XML and standard output into ``output_parameters`` (a dict: ``energy`` in eV, the
total energy, or the free energy with smearing; ``convergence_info``; ``warnings``) and an
``output_trajectory`` whose arrays hold the ``forces`` (eV/Å) and ``stress`` (GPa, positive under
compression) of every ionic step. :func:`pw_labels` takes the last step and returns the labels in the units
of every label of this package: energy in eV, forces in eV/Å, stress in eV/Å^3 with the ASE sign
(``stress = (1/V) dE/d(strain)``, positive under tension); 1 GPa = 1/160.21766 eV/Å^3 (ASE, CODATA 2014).
"""

from __future__ import annotations

import typing as t

import numpy as np
from ase import units

__all__ = ('PwLabelError', 'PwLabels', 'pw_labels')


class PwLabelError(ValueError):
    """A label cannot be read; ``status`` is 310 (a label is missing) or 311 (the atom count disagrees)."""

    def __init__(self, message: str, status: int = 310):
        super().__init__(message)
        self.status = status


class PwLabels(t.NamedTuple):
    """The labels of one pw.x single point: energy [eV], forces ``(n, 3)`` [eV/Å], stress ``(3, 3)`` [eV/Å^3]."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    scf_converged: bool
    version: str | None
    n_warnings: int


def pw_labels(parameters: t.Mapping, arrays: t.Mapping[str, np.ndarray], n_atoms: int) -> PwLabels:
    """Read the labels of a pw.x single point from ``PwParser``'s parameters and trajectory arrays.

    :param parameters: the ``output_parameters`` dict. :param arrays: the trajectory's arrays by name
        (``forces`` ``(steps, n, 3)`` eV/Å and, with ``tstress``, ``stress`` ``(steps, 3, 3)`` GPa).
    :param n_atoms: the number of atoms of the structure.
    :raises PwLabelError: (310) without ``energy`` or ``forces``, (311) when the forces have another atom count.
    """
    if 'energy' not in parameters:
        raise PwLabelError('no `energy` in output_parameters')
    if 'forces' not in arrays:
        raise PwLabelError('no `forces` in output_trajectory: set CONTROL.tprnfor')
    forces = np.asarray(arrays['forces'])[-1]
    if forces.shape != (n_atoms, 3):
        raise PwLabelError(f'pw.x forces have shape {forces.shape} for {n_atoms} atoms', 311)
    stress = None
    if 'stress' in arrays:
        stress = -np.asarray(arrays['stress'])[-1] * units.GPa
    converged = parameters.get('convergence_info', {}).get('scf_conv', {}).get('converged', True)
    return PwLabels(
        energy=float(parameters['energy']),
        forces=forces.astype(np.float64),
        stress=stress,
        scf_converged=bool(converged) if converged is not None else True,
        version=parameters.get('code_version'),
        n_warnings=len(parameters.get('warnings', [])),
    )
