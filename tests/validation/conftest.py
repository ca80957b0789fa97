"""Fixtures of the validation tests: the active-learning stand-in codes, and an EMT "AIMD" of a copper box."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.active_learning.conftest import JOB_OPTIONS, standin_codes  # noqa: F401 (fixture)

__all__ = ('JOB_OPTIONS',)

#: 108-atom fcc Cu (a = 3.6 Å, 10.8 Å box: half width 5.4 Å, beyond the first shell at 2.55 Å), each atom its own
#: "molecule" of species Cu, so that the molecule-aware analyses run.
N_CELLS = 3


def emt_run(n_frames: int, temperature: float = 450.0, seed: int = 0, every: int = 5):
    """Frames of an EMT Langevin MD of the Cu box, as ``ilmlff.aimd`` stores an AIMD (time_fs, temperature, level
    of theory, molecules)."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from tests.active_learning.al_standins import LEVEL_OF_THEORY as LEVEL

    atoms = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat((N_CELLS,) * 3)
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
    frames = []
    for index in range(n_frames):
        dynamics.run(every)
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        frame.arrays['mol_id'] = np.arange(len(frame))
        frame.info.update(
            molecules=['Cu'] * len(frame),
            origin='import',
            temperature=temperature,
            level_of_theory=LEVEL,
            perturbation=json.dumps({'step': (index + 1) * every, 'time_fs': (index + 1) * every * 2.0}),
        )
        frames.append(frame)
    return frames


@pytest.fixture
def cu_reference(aiida_profile):
    """A factory ``cu_reference(n_frames=30, temperature=450.0)`` -> stored FramesData of the EMT "AIMD"."""
    from aiida_ilmlff.data import FramesData

    def factory(n_frames: int = 30, temperature: float = 450.0):
        return FramesData.from_ase(emt_run(n_frames, temperature)).store()

    return factory
