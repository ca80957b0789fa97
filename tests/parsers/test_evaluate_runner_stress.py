"""``ilmlff-runner evaluate`` returns each model's stress: the tiny MACE and DeePMD test models on two periodic
frames of the shared data set. MACE's stress is checked against a finite difference of its energy under strain
(sign and units), DeePMD's batched stress against its own ASE calculator; a frame without a cell gets ``nan``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ase.io import read, write

from aiida_ilmlff.runner.evaluate import evaluate_models


def _strained_energy(atoms, calculator, component: int, h: float) -> float:
    strained = atoms.copy()
    strain = np.eye(3)
    strain[component, component] += h
    strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    strained.calc = calculator
    return float(strained.get_potential_energy())


@pytest.mark.slow  # ~45 s on the shared machine: torch and TensorFlow are loaded
def test_runner_returns_the_stress_of_each_model(tmp_path, labelled_frames_file, mace_model_file, deepmd_model_file):
    frames = read(str(labelled_frames_file), index=':2')
    molecule = frames[0].copy()
    molecule.pbc = False
    molecule.cell = np.zeros((3, 3))
    write(str(tmp_path / 'frames.xyz'), [*frames, molecule], format='extxyz')
    (tmp_path / 'models').mkdir()
    shutil.copy(mace_model_file, tmp_path / 'models' / 'model_0.model')
    shutil.copy(deepmd_model_file, tmp_path / 'models' / 'model_1.pb')
    config = {
        'frames': 'frames.xyz',
        'models': [
            {'key': 'model_0', 'path': 'models/model_0.model', 'architecture': 'mace', 'dtype': 'float64'},
            {'key': 'model_1', 'path': 'models/model_1.pb', 'architecture': 'deepmd', 'dtype': 'float64'},
        ],
        'threads': 1,
    }
    (tmp_path / 'evaluate.json').write_text(json.dumps(config))
    evaluate_models(config, tmp_path)
    with np.load(tmp_path / 'predictions.npz') as data:
        stress, energy = data['stress'], data['energy']
    assert stress.shape == (2, 3, 3, 3)
    assert np.isfinite(stress[:, :2]).all() and np.isnan(stress[:, 2]).all()

    from aiida_ilmlff.runner.calculators import load_calculator

    mace = load_calculator({'path': str(tmp_path / 'models' / 'model_0.model'), 'architecture': 'mace'})
    atoms = frames[0]
    h = 1e-4
    for component in range(3):
        derivative = (_strained_energy(atoms, mace, component, h) - _strained_energy(atoms, mace, component, -h)) / (
            2 * h
        )
        assert stress[0, 0, component, component] == pytest.approx(derivative / atoms.get_volume(), rel=1e-3, abs=1e-6)
    assert energy[0, 0] == pytest.approx(_strained_energy(atoms, mace, 0, 0.0))

    deepmd = load_calculator({'path': str(tmp_path / 'models' / 'model_1.pb'), 'architecture': 'deepmd'})
    for k, atoms in enumerate(frames):
        work = atoms.copy()
        work.calc = deepmd
        assert stress[1, k] == pytest.approx(work.get_stress(voigt=False), rel=1e-6, abs=1e-9)
