"""MLFFModelData: metadata by subprocess inspection (tiny MACE and DeePMD models built here), dedup by sha256."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from aiida import orm

from aiida_ilmlff.data import FramesData, MLFFModelData

HEAVY = ('torch', 'mace', 'deepmd', 'tensorflow', 'e3nn')

MAKE_MACE = textwrap.dedent(
    """
    import sys
    import numpy as np
    from mace import modules  # imported before e3nn: it allows e3nn's constants to load under torch >= 2.6
    import torch
    from e3nn import o3

    torch.set_default_dtype(torch.float64)
    block = modules.interaction_classes['RealAgnosticResidualInteractionBlock']
    model = modules.ScaleShiftMACE(
        r_max=4.5, num_bessel=4, num_polynomial_cutoff=3, max_ell=1, interaction_cls=block,
        interaction_cls_first=block, num_interactions=1, num_elements=3, hidden_irreps=o3.Irreps('8x0e'),
        MLP_irreps=o3.Irreps('4x0e'), atomic_energies=np.zeros(3), avg_num_neighbors=5.0, atomic_numbers=[1, 6, 7],
        correlation=1, gate=torch.nn.functional.silu, atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    )
    torch.save(model, sys.argv[1])
    """
)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS='1', TF_CPP_MIN_LOG_LEVEL='3')
    env['PATH'] = f'{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get("PATH", "")}'
    env.update(DP_INTRA_OP_PARALLELISM_THREADS='1', DP_INTER_OP_PARALLELISM_THREADS='1')
    return env


@pytest.fixture(scope='module')
def mace_model(tmp_path_factory) -> pathlib.Path:
    """A tiny untrained ScaleShiftMACE (H, C, N; r_max 4.5 Å; float64) saved with torch.save, built in a subprocess."""
    path = tmp_path_factory.mktemp('mace') / 'tiny.model'
    result = subprocess.run(
        [sys.executable, '-c', MAKE_MACE, str(path)], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return path


@contextlib.contextmanager
def heavy_imports_blocked():
    """Make importing torch / mace / deepmd / tensorflow in this process fail: inspection must use a subprocess."""
    with pytest.MonkeyPatch.context() as patch:
        for name in HEAVY:
            if name not in sys.modules:
                patch.setitem(sys.modules, name, None)
        yield


@pytest.fixture
def no_heavy_imports():
    """:func:`heavy_imports_blocked` for a whole test."""
    with heavy_imports_blocked():
        yield


def test_mace_inspected_in_subprocess_and_deduplicated(mace_model, no_heavy_imports):
    node = MLFFModelData.from_file(mace_model, 'mace', seed=3)
    assert node.architecture == 'mace'
    assert node.model_backend == 'torch'
    assert node.elements == ['C', 'H', 'N']
    assert node.type_map == ['H', 'C', 'N']  # z-table order
    assert node.r_cut == pytest.approx(4.5)
    assert node.dtype == 'float64'
    assert node.seed == 3
    assert node.filename == 'tiny.model'
    assert node.sha256 == __import__('hashlib').sha256(mace_model.read_bytes()).hexdigest()
    node.store()
    assert node.get_content('rb') == mace_model.read_bytes()

    # the same file again: the stored node comes back (no inspection, no duplicate)
    again = MLFFModelData.get_or_create(mace_model, 'mace')
    assert again.uuid == node.uuid
    assert MLFFModelData.from_file(mace_model, 'mace', reuse=True).uuid == node.uuid
    copy = mace_model.parent / 'renamed.model'
    shutil.copy(mace_model, copy)
    assert MLFFModelData.get_or_create(copy, 'mace').uuid == node.uuid
    query = orm.QueryBuilder().append(MLFFModelData, filters={'attributes.sha256': node.sha256})
    assert query.count() == 1


def test_explicit_metadata_without_inspection(tmp_path, no_heavy_imports):
    path = tmp_path / 'model.pb'
    path.write_bytes(b'not really a graph')
    node = MLFFModelData.from_file(path, 'deepmd', elements=['H', 'B', 'F'], r_cut=6.0, inspect=False)
    assert node.model_backend == 'tensorflow'
    assert node.elements == ['B', 'F', 'H']
    assert node.type_map == ['H', 'B', 'F']  # only elements known: ordered by atomic number
    assert node.dtype is None and node.seed is None
    stored = MLFFModelData.get_or_create(path, 'deepmd', elements=['H'], r_cut=1.0, inspect=False)
    assert stored.is_stored
    assert MLFFModelData.get_or_create(path, 'deepmd', inspect=False).uuid == stored.uuid
    with pytest.raises(ValueError, match=r"\['elements', 'r_cut'\] unknown"):
        MLFFModelData.from_file(path, 'deepmd', inspect=False)


def test_bad_arguments(tmp_path):
    path = tmp_path / 'model.bin'
    path.write_bytes(b'x')
    with pytest.raises(ValueError, match='unknown architecture'):
        MLFFModelData.from_file(path, 'nequip', inspect=False)
    with pytest.raises(ValueError, match=r'frozen \.pb'):
        MLFFModelData.from_file(path, 'deepmd', inspect=False)
    with pytest.raises(FileNotFoundError):
        MLFFModelData.from_file(tmp_path / 'missing.model', 'mace')
    from aiida.common.exceptions import ValidationError

    with pytest.raises(ValidationError, match='architecture'):
        MLFFModelData(file=str(path)).store()


def test_inspection_failure_is_reported(tmp_path):
    path = tmp_path / 'broken.model'
    path.write_bytes(b'\x00garbage')
    with pytest.raises(RuntimeError, match=r'cannot read .* as a mace model'):
        MLFFModelData.from_file(path, 'mace')


@pytest.mark.slow
def test_deepmd_trained_on_exported_frames(tmp_path):
    """Export frames as DeePMD npy, train 10 steps with ``dp --tf``, freeze, and inspect the .pb."""
    rng = np.random.default_rng(0)
    frames = FramesData.from_arrays(
        [6, 1, 1, 1, 1],
        rng.random((6, 5, 3)) * 6,
        np.eye(3) * 6,
        energy=rng.normal(size=6),
        forces=rng.normal(size=(6, 5, 3)),
        origin='EQ',
    )
    frames.export(tmp_path / 'data', 'deepmd')
    config = {
        'model': {
            'type_map': ['C', 'H'],
            'descriptor': {
                'type': 'se_e2_a',
                'sel': [4, 8],
                'rcut_smth': 1.0,
                'rcut': 3.5,
                'neuron': [4, 8],
                'axis_neuron': 2,
                'seed': 11,
                'precision': 'float32',
            },
            'fitting_net': {'neuron': [8], 'seed': 12, 'precision': 'float32'},
        },
        'learning_rate': {'type': 'exp', 'start_lr': 1e-3, 'decay_steps': 5, 'stop_lr': 1e-4},
        'loss': {'type': 'ener'},
        'training': {
            'training_data': {'systems': ['data/CH4'], 'batch_size': 1},
            'numb_steps': 10,
            'seed': 13,
            'disp_freq': 5,
            'save_freq': 10,
        },
    }
    (tmp_path / 'input.json').write_text(json.dumps(config))
    dp = str(pathlib.Path(sys.executable).parent / 'dp')
    for command in ([dp, '--tf', 'train', 'input.json'], [dp, '--tf', 'freeze', '-o', 'tiny.pb']):
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    with heavy_imports_blocked():
        node = MLFFModelData.from_file(tmp_path / 'tiny.pb', 'deepmd')
    assert node.model_backend == 'tensorflow'
    assert node.type_map == ['C', 'H']
    assert node.elements == ['C', 'H']
    assert node.r_cut == pytest.approx(3.5)
    assert node.dtype == 'float32'
    assert node.seed == 11
