"""Benchmark: MLFF training seconds per epoch versus frames x atoms, and evaluation throughput.

Runs the same commands the training CalcJobs run (``mace_run_train``, ``dp --tf train``), outside AiiDA,
with the ``fast`` protocol hyperparameters (MACE 16x0e, 2 interactions, r_max 4 A, float64, batch 4;
DeePMD se_e2_a [8, 16] / [32, 32], batch 4), on rattled PYR14BF4 ion-pair boxes (35 atoms per pair) labelled
by ASE's Lennard-Jones calculator (the labels do not change the cost). Then evaluates the trained models
with the project's runner (``aiida_ilmlff.runner.evaluate``, as ``ilmlff.evaluate`` does) and reports
atom-frames per second.

Usage: ``.venv/bin/python benchmarks/bench_training.py [--threads 2] [--quick]``; prints a Markdown table.
Seconds per epoch for DeePMD = its reported seconds per batch x batches per epoch (frames / batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = pathlib.Path(sys.executable).parent
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MACE_FAST = [
    '--model=MACE',
    '--num_channels=16',
    '--max_L=0',
    '--r_max=4.0',
    '--num_interactions=2',
    '--correlation=2',
    '--default_dtype=float64',
    '--batch_size=4',
    '--valid_batch_size=8',
    '--E0s=average',
    '--energy_key=REF_energy',
    '--forces_key=REF_forces',
    '--ema',
    '--ema_decay=0.99',
    '--device=cpu',
    '--seed=0',
]


def make_frames(n_pairs: int, n_frames: int, seed: int = 0):
    """``n_frames`` rattled PYR14BF4 boxes of ``n_pairs`` ion pairs, labelled by Lennard-Jones (eV, eV/A)."""
    from ase.calculators.lj import LennardJones
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_ilmlff.systems import build_ionic_liquid

    base = build_ionic_liquid({'PYR14': n_pairs, 'BF4': n_pairs}, density=1.2, seed=seed)
    rng = np.random.default_rng(seed)
    calculator = LennardJones(sigma=2.0, epsilon=0.01, rc=4.0, smooth=True)
    frames = []
    for _ in range(n_frames):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = calculator
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def write_extxyz(path: pathlib.Path, frames) -> None:
    from ase.io import write

    out = []
    for atoms in frames:
        copy = atoms.copy()
        copy.info['REF_energy'] = atoms.get_potential_energy()
        copy.arrays['REF_forces'] = atoms.get_forces()
        out.append(copy)
    write(str(path), out, format='extxyz')


def write_deepmd(path: pathlib.Path, frames, type_map) -> None:
    system = path / 'set.000'
    system.mkdir(parents=True)
    types = [type_map.index(s) for s in frames[0].get_chemical_symbols()]
    np.savetxt(path / 'type.raw', types, fmt='%d')
    (path / 'type_map.raw').write_text('\n'.join(type_map) + '\n')
    np.save(system / 'coord.npy', np.array([a.positions.reshape(-1) for a in frames]))
    np.save(system / 'box.npy', np.array([a.cell.array.reshape(-1) for a in frames]))
    np.save(system / 'energy.npy', np.array([a.get_potential_energy() for a in frames]))
    np.save(system / 'force.npy', np.array([a.get_forces().reshape(-1) for a in frames]))


def _stamp(line: str) -> float:
    import datetime

    return datetime.datetime.strptime(line[:23], '%Y-%m-%d %H:%M:%S.%f').timestamp()


def bench_mace(workdir: pathlib.Path, frames, epochs: int, env) -> tuple[float, pathlib.Path]:
    workdir.mkdir(parents=True)
    n_valid = max(2, len(frames) // 10)
    write_extxyz(workdir / 'train.xyz', frames[n_valid:])
    write_extxyz(workdir / 'valid.xyz', frames[:n_valid])
    command = [str(BIN / 'mace_run_train'), '--name=mace', f'--max_num_epochs={epochs}', *MACE_FAST]
    command += ['--train_file=train.xyz', '--valid_file=valid.xyz']
    subprocess.run(command, cwd=workdir, env=env, check=True, capture_output=True)
    log = next((workdir / 'logs').glob('*run-0.log')).read_text().splitlines()
    start = _stamp(next(line for line in log if 'Started training' in line))
    end = _stamp(next(line for line in log if 'Training complete' in line))
    return (end - start) / epochs, workdir / 'mace.model'


def bench_deepmd(workdir: pathlib.Path, frames, steps: int, env) -> tuple[float, pathlib.Path]:
    workdir.mkdir(parents=True)
    type_map = sorted(set(frames[0].get_chemical_symbols()))
    n_valid = max(2, len(frames) // 10)
    write_deepmd(workdir / 'train', frames[n_valid:], type_map)
    write_deepmd(workdir / 'valid', frames[:n_valid], type_map)
    from aiida_ilmlff.calculations.deepmd import DEFAULTS, build_input, count_sel

    class _Frames:
        def to_ase(self):
            return frames

    sel = [max(1, int(np.ceil(1.2 * c))) for c in count_sel([_Frames()], type_map, 6.0)]
    parameters = {
        **DEFAULTS,
        'neuron': [8, 16],
        'axis_neuron': 4,
        'fitting_neuron': [32, 32],
        'numb_steps': steps,
        'batch_size': 4,
        'disp_freq': steps,
        'save_freq': steps,
        'decay_steps': 50,
    }
    data = build_input(parameters, type_map, sel, {'train': ['train'], 'valid': ['valid']})
    (workdir / 'input.json').write_text(json.dumps(data))
    subprocess.run(
        [str(BIN / 'dp'), '--tf', 'train', 'input.json', '-l', 'train.log'],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(BIN / 'dp'), '--tf', 'freeze', '-o', 'model.pb'], cwd=workdir, env=env, check=True, capture_output=True
    )
    per_batch = float(re.search(r'average training time: ([\d.]+) s/batch', (workdir / 'train.log').read_text())[1])
    batches_per_epoch = (len(frames) - n_valid) / 4
    return per_batch * batches_per_epoch, workdir / 'model.pb'


def bench_evaluate(workdir: pathlib.Path, frames, model: pathlib.Path, architecture: str, env) -> float:
    workdir.mkdir(parents=True)
    from ase.io import write

    write(str(workdir / 'frames.xyz'), frames, format='extxyz')
    config = {
        'frames': 'frames.xyz',
        'models': [{'key': 'm', 'path': str(model), 'architecture': architecture, 'dtype': 'float64'}],
        'device': 'cpu',
    }
    (workdir / 'evaluate.json').write_text(json.dumps(config))
    subprocess.run(
        [sys.executable, '-m', 'aiida_ilmlff.runner.evaluate', 'evaluate.json'],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
    )
    summary = json.loads((workdir / 'evaluate_summary.json').read_text())
    return summary['models']['m']['atom_frames_per_second']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--quick', action='store_true', help='smallest case only')
    args = parser.parse_args()
    env = dict(os.environ)
    for key in (
        'OMP_NUM_THREADS',
        'MKL_NUM_THREADS',
        'TF_INTRA_OP_PARALLELISM_THREADS',
        'DP_INTRA_OP_PARALLELISM_THREADS',
    ):
        env[key] = str(args.threads)
    env.update(TF_INTER_OP_PARALLELISM_THREADS='1', DP_INTER_OP_PARALLELISM_THREADS='1', TF_CPP_MIN_LOG_LEVEL='3')
    load_before = os.getloadavg()[0]
    cases = [(1, 20), (1, 40), (2, 20)] if not args.quick else [(1, 20)]
    rows = []
    with tempfile.TemporaryDirectory(prefix='ilmlff-bench-') as tmp:
        tmp = pathlib.Path(tmp)
        for n_pairs, n_frames in cases:
            frames = make_frames(n_pairs, n_frames)
            n_atoms = len(frames[0])
            tag = f'{n_pairs}p{n_frames}f'
            t0 = time.perf_counter()
            mace_epoch, mace_model = bench_mace(tmp / f'mace_{tag}', frames, 3, env)
            dp_epoch, dp_model = bench_deepmd(tmp / f'dp_{tag}', frames, 100, env)
            mace_eval = bench_evaluate(tmp / f'eval_mace_{tag}', frames, mace_model, 'mace', env)
            dp_eval = bench_evaluate(tmp / f'eval_dp_{tag}', frames, dp_model, 'deepmd', env)
            rows.append((n_frames, n_atoms, mace_epoch, dp_epoch, mace_eval, dp_eval, time.perf_counter() - t0))
    print(f'threads={args.threads}, 1-min load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}')
    print(
        '| frames | atoms/frame | frames x atoms | MACE s/epoch | DeePMD s/epoch | MACE eval atom-frames/s '
        '| DeePMD eval atom-frames/s |'
    )
    print('|---|---|---|---|---|---|---|')
    for n_frames, n_atoms, mace_epoch, dp_epoch, mace_eval, dp_eval, _ in rows:
        print(
            f'| {n_frames} | {n_atoms} | {n_frames * n_atoms} | {mace_epoch:.2f} | {dp_epoch:.3f} | '
            f'{mace_eval:.0f} | {dp_eval:.0f} |'
        )


if __name__ == '__main__':
    main()
