"""Tiny real MLFF models for the MD tests: CP2K GFN1-xTB labels on rattled PYR14BF4 boxes, then MACE and DeePMD.

Everything is single-threaded and small (a cold build takes 3-4 minutes on one free core: 12 xTB single points
and a 60-step xTB MD of 70 atoms, MACE 8 channels L=0 for 30 epochs, DeePMD se_e2_a for 100 steps). Results
are cached in a folder keyed by :data:`RECIPE_VERSION` so that later test sessions reuse them.

The two models play different roles. MACE (with ZBL pair repulsion) is trained until its forces are close to
xTB's (RMSE ~0.3 eV/Å): it is stable at 400 K with 1 fs and blows up with 5 fs (the guard tests). DeePMD is
deliberately under-trained (100 steps, fast-decaying learning rate): its forces are small and smooth, an
almost ideal gas that is stable with any time step, but whose atoms may pass through each other (tests that
run it for hundreds of steps switch the ``min_distance`` guard off). A tiny DeePMD trained longer on these 33
frames has holes and heats to thousands of K within 50 fs; with a ZBL pair table (DP-ZBL) it stays bonded but
heats to ~600 K at 1 fs: neither would test the thermostat.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from ase import Atoms
from ase.io import read, write
from md_boxes import pyr14bf4_box
from md_xtb import xtb_md_frames, xtb_single_point

from aiida_ilmlff.runner.calculators import thread_environment

#: Change when the recipe below changes (frames, hyperparameters): the cache is keyed by it.
RECIPE_VERSION = 'md-tiny-v2'
BIN = pathlib.Path(sys.executable).parent
TYPE_MAP = ['H', 'B', 'C', 'N', 'F']
R_CUT = 4.0
THREADS_ENV = {**thread_environment(1), 'TF_CPP_MIN_LOG_LEVEL': '3'}


def training_frames(n_boxes: int = 3, n_rattles: int = 4, seed: int = 0) -> list[Atoms]:
    """Rattled (0.02-0.12 Å) and strained (±3 %) 2-pair PYR14BF4 boxes of several random packings (unlabelled)."""
    rng = np.random.default_rng(seed)
    frames = []
    for box in range(n_boxes):
        atoms = pyr14bf4_box(2, seed=box, volume_per_pair=400.0, min_gap=1.8)
        for _ in range(n_rattles):
            frame = atoms.copy()
            frame.set_cell(frame.cell * rng.uniform(0.97, 1.03), scale_atoms=True)
            frame.positions += rng.normal(0.0, rng.uniform(0.02, 0.12), frame.positions.shape)
            frames.append(frame)
    return frames


def labelled_frames(folder: pathlib.Path) -> pathlib.Path:
    """``folder/frames.xyz``: GFN1-xTB ``REF_energy``/``REF_forces`` frames (cached).

    12 rattled and strained boxes of three packings (single points) and 21 frames of a 30 fs xTB NVT run at
    500 K from the first packing, the box the MD tests start from: the thermal frames keep the tiny models
    stable in MD at 400 K.
    """
    path = folder / 'frames.xyz'
    if path.exists():
        return path
    labelled = []
    for i, frame in enumerate(training_frames()):
        labelled.append(xtb_single_point(frame, folder / 'cp2k' / f'{i:03d}'))
    start = pyr14bf4_box(2, seed=0, volume_per_pair=400.0, min_gap=1.8)
    labelled += xtb_md_frames(start, folder / 'cp2k' / 'md')
    for atoms in labelled:
        atoms.info = {'REF_energy': atoms.get_potential_energy()}
        atoms.arrays['REF_forces'] = atoms.get_forces()
        for key in list(atoms.arrays):
            if key not in ('numbers', 'positions', 'REF_forces'):
                del atoms.arrays[key]
        atoms.calc = None
    write(str(path.with_suffix('.tmp.xyz')), labelled, format='extxyz')
    path.with_suffix('.tmp.xyz').replace(path)
    return path


def _run(command: list[str], cwd: pathlib.Path) -> None:
    env = dict(os.environ, **THREADS_ENV)
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f'{command[0]} failed:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}')


def train_mace(
    frames: pathlib.Path, folder: pathlib.Path, seed: int = 3, dtype: str = 'float64', epochs: int = 30
) -> pathlib.Path:
    """A tiny MACE model (8 channels, L=0, r_max 4 Å, ZBL pair repulsion) trained on ``frames``; returns its path."""
    path = folder / f'mace_{seed}.model'
    if path.exists():
        return path
    work = folder / f'mace_{seed}'
    work.mkdir(parents=True, exist_ok=True)
    _run(
        [
            str(BIN / 'mace_run_train'),
            '--name=tiny',
            f'--train_file={frames}',
            '--valid_fraction=0.2',
            '--energy_key=REF_energy',
            '--forces_key=REF_forces',
            '--E0s=average',
            '--model=MACE',
            f'--r_max={R_CUT}',
            '--num_channels=8',
            '--max_L=0',
            '--correlation=2',
            '--num_interactions=2',
            f'--max_num_epochs={epochs}',
            '--pair_repulsion',
            '--batch_size=2',
            '--valid_batch_size=4',
            f'--default_dtype={dtype}',
            f'--seed={seed}',
            '--lr=0.01',
            '--device=cpu',
            '--model_dir=.',
            '--checkpoints_dir=checkpoints',
            '--results_dir=results',
            '--log_dir=logs',
        ],
        work,
    )
    (work / 'tiny.model').replace(path)
    return path


def train_deepmd(frames: pathlib.Path, folder: pathlib.Path, seed: int = 5, steps: int = 100) -> pathlib.Path:
    """A tiny DeePMD se_e2_a model (TensorFlow, ``steps`` steps, frozen ``.pb``) trained on ``frames``."""
    path = folder / f'deepmd_{seed}.pb'
    if path.exists():
        return path
    work = folder / f'deepmd_{seed}'
    data = work / 'data'
    (data / 'set.000').mkdir(parents=True, exist_ok=True)
    images = read(str(frames), index=':')
    symbols = images[0].get_chemical_symbols()
    (data / 'type_map.raw').write_text('\n'.join(TYPE_MAP) + '\n')
    (data / 'type.raw').write_text('\n'.join(str(TYPE_MAP.index(s)) for s in symbols) + '\n')
    np.save(data / 'set.000' / 'coord.npy', np.array([a.positions.ravel() for a in images]))
    np.save(data / 'set.000' / 'box.npy', np.array([np.asarray(a.cell).ravel() for a in images]))
    np.save(data / 'set.000' / 'energy.npy', np.array([a.info['REF_energy'] for a in images]))
    np.save(data / 'set.000' / 'force.npy', np.array([a.arrays['REF_forces'].ravel() for a in images]))
    config = {
        'model': {
            'type_map': TYPE_MAP,
            'descriptor': {
                'type': 'se_e2_a',
                'rcut': R_CUT,
                'rcut_smth': 0.5,
                'sel': [60, 4, 40, 4, 20],
                'neuron': [4, 8],
                'axis_neuron': 4,
                'seed': seed,
            },
            'fitting_net': {'neuron': [16, 16], 'seed': seed},
        },
        'learning_rate': {'type': 'exp', 'start_lr': 0.001, 'stop_lr': 1e-5, 'decay_steps': 20},
        'loss': {'start_pref_e': 0.02, 'limit_pref_e': 1, 'start_pref_f': 1000, 'limit_pref_f': 1},
        'training': {
            'training_data': {'systems': ['data'], 'batch_size': 2},
            'numb_steps': steps,
            'seed': seed,
            'disp_freq': 100,
            'save_freq': steps,
        },
    }
    (work / 'input.json').write_text(json.dumps(config, indent=1))
    _run([str(BIN / 'dp'), '--tf', 'train', 'input.json'], work)
    _run([str(BIN / 'dp'), '--tf', 'freeze', '-o', 'frozen.pb'], work)
    (work / 'frozen.pb').replace(path)
    return path
