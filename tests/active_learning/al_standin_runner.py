"""Stand-in for the ``ilmlff-runner`` code in the fast active-learning tests.

It is the real runner (``ilmlff-runner md`` and ``evaluate``, so the real ``ilmlff.md`` / ``ilmlff.evaluate``
CalcJobs and parsers are exercised) with one change: the runner's one model loader
(:func:`aiida_ilmlff.runner.calculators.load_calculator`, used by MD and evaluation alike) reads a JSON
"model": EMT plus a smooth, model-specific perturbation of amplitude ``amplitude`` [eV]:
``U_k = amplitude * sum_i sin(q_k . r_i)``, ``|q_k| = 1/Å``. Two models differ by their ``q``, so the committee
force deviation is of the order of ``amplitude`` eV/Å; the reference (the stand-in labeller) is plain EMT.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT


class StandInModel(Calculator):
    """EMT + ``amplitude * sum_i sin(q . r_i)`` (energy eV, forces eV/Å); stress from EMT."""

    implemented_properties = ('energy', 'free_energy', 'forces', 'stress')

    def __init__(self, amplitude: float, q: list[float]) -> None:
        super().__init__()
        self.amplitude = float(amplitude)
        self.q = np.asarray(q, dtype=float)
        self.emt = EMT()

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self.emt
        phase = self.atoms.positions @ self.q
        energy = work.get_potential_energy() + self.amplitude * np.sin(phase).sum()
        forces = work.get_forces() - self.amplitude * np.cos(phase)[:, None] * self.q[None, :]
        self.results = {'energy': energy, 'free_energy': energy, 'forces': forces, 'stress': work.get_stress()}


def load(path: str) -> StandInModel:
    """The stand-in model of a JSON model file."""
    data = json.loads(pathlib.Path(path).read_text())
    return StandInModel(data['amplitude'], data['q'])


def main() -> int:
    """``al_standin_runner {md,evaluate} FILE.json``."""
    from aiida_ilmlff.runner import calculators, cli

    calculators.load_calculator = lambda model, **_: load(model['path'])
    return cli.main()


if __name__ == '__main__':
    sys.exit(main())
