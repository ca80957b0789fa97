"""``ilmlff-runner evaluate`` batches MACE frames (``batch_size`` > 1) with the results of the per-frame ASE path
(``batch_size`` 1): a committee of two tiny MACE models (the fixtures' model and a copy with perturbed weights) on
70-atom and 35-atom periodic frames and one frame without a cell, in one file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ase.io import read, write

from aiida_ilmlff.runner import evaluate
from aiida_ilmlff.runner.evaluate import evaluate_models, main


def _perturbed_copy(source, target) -> None:
    import torch

    model = torch.load(str(source), map_location='cpu', weights_only=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point():
                parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    torch.save(model, str(target))


def _run(folder, frames_file, models_folder, batch_size: int) -> dict:
    folder.mkdir()
    shutil.copy(frames_file, folder / 'frames.xyz')
    shutil.copytree(models_folder, folder / 'models')
    config = {
        'frames': 'frames.xyz',
        'models': [
            {'key': f'model_{k}', 'path': f'models/model_{k}.model', 'architecture': 'mace', 'dtype': 'float64'}
            for k in range(2)
        ],
        'threads': 1,
        'batch_size': batch_size,
    }
    summary = evaluate_models(config, folder)
    assert summary['batch_size'] == batch_size
    with np.load(folder / 'predictions.npz') as data:
        return {key: data[key] for key in ('energy', 'forces', 'stress', 'n_atoms')}


def test_batched_mace_equals_per_frame(tmp_path, labelled_frames_file, mace_model_file, monkeypatch):
    batched_calls = []
    original = evaluate._predict_mace
    monkeypatch.setattr(
        evaluate, '_predict_mace', lambda *args: batched_calls.append(args[2]) or original(*args), raising=True
    )
    frames = read(str(labelled_frames_file), index=':4')
    molecule = frames[3][:35]
    molecule.pbc = False
    molecule.cell = np.zeros((3, 3))
    mixed = [frames[0], frames[1][:35], frames[2], molecule, frames[3][:35], frames[1]]
    write(str(tmp_path / 'frames.xyz'), mixed, format='extxyz')
    models = tmp_path / 'models'
    models.mkdir()
    shutil.copy(mace_model_file, models / 'model_0.model')
    _perturbed_copy(mace_model_file, models / 'model_1.model')

    each = _run(tmp_path / 'each', tmp_path / 'frames.xyz', models, 1)
    assert batched_calls == []
    batched = _run(tmp_path / 'batched', tmp_path / 'frames.xyz', models, 4)  # batches of 4 + 2 mixed frames
    assert batched_calls == [4, 4]  # each model through MACE's batched graphs, not the ASE fallback

    assert list(each['n_atoms']) == [70, 35, 70, 35, 35, 70]
    assert each['energy'].shape == (2, 6)
    assert not np.allclose(each['energy'][0], each['energy'][1])  # two different models
    np.testing.assert_allclose(batched['energy'], each['energy'], rtol=1e-9, atol=0.0)
    np.testing.assert_allclose(batched['forces'], each['forces'], rtol=0.0, atol=1e-9)
    np.testing.assert_allclose(batched['stress'], each['stress'], rtol=0.0, atol=1e-10, equal_nan=True)
    assert np.isnan(batched['stress'][:, 3]).all() and np.isfinite(np.delete(batched['stress'], 3, axis=1)).all()


@pytest.mark.parametrize('batch_size', [0, -3, 2.5, True])
def test_runner_rejects_a_bad_batch_size(tmp_path, batch_size):
    settings = {'frames': 'frames.xyz', 'models': [], 'batch_size': batch_size}
    (tmp_path / 'evaluate.json').write_text(json.dumps(settings))
    assert main([str(tmp_path / 'evaluate.json')]) == 2  # EXIT_BAD_INPUT, before any frame or model is read
