"""Benchmark: MD runner steps per second against a bare ASE loop with the same calculator (MACE, DeePMD).

System: a 280-atom PYR14BF4 box (8 ion pairs, 1.2 g/cm^3, ``aiida_ilmlff.systems.build_ionic_liquid``), NVT
Langevin at 400 K (friction 0.02/fs, FixCom, 0.5 fs). The bare loop is ``Langevin(...).run(n)`` with nothing
attached. The runner is :func:`aiida_ilmlff.runner.md.run_md` in the same process with the *same* calculator
object, its default guards (every step, minimum distance included) and its outputs: a frame every 10 steps
in the HDF5 trajectory, a thermo row every 10 steps, a checkpoint every 500 (as the ``fast`` protocol).
Runs alternate (bare, runner, ...) and the median of ``--repeats`` is reported, in wall and in CPU seconds
(the CPU figure is the robust one on a shared machine); the runner's time is its own MD-loop time
(``loop_time_s`` and ``loop_cpu_s`` of ``status.json``; model loading and set-up excluded, as for the bare
loop).

Models: the tiny MACE and DeePMD models of the MD tests (``tests/fixtures/models.py``: 8 channels L=0, r_max 4 Å,
float64; DeePMD se_e2_a [4, 8] / [16, 16]), taken from ``$ILMLFF_MD_CACHE/<recipe>`` or the pytest cache, or
given with ``--mace`` / ``--deepmd``. The cost does not depend on how well they are trained.

Usage: ``.venv/bin/python benchmarks/bench_md.py [--threads 1] [--repeats 3] [--steps-mace 100]
[--steps-deepmd 300]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARAMETERS = {
    'ensemble': 'nvt',
    'thermostat': 'langevin',
    'temperature_K': 400.0,
    'friction_per_fs': 0.02,
    'timestep_fs': 0.5,
    'traj_every': 10,
    'thermo_every': 10,
    'checkpoint_every': 500,
    'seed': 0,
}


def _model_paths(args) -> dict[str, pathlib.Path]:
    from tests.fixtures.models import RECIPE_VERSION

    folders = []
    if os.environ.get('ILMLFF_MD_CACHE'):
        folders.append(pathlib.Path(os.environ['ILMLFF_MD_CACHE']) / RECIPE_VERSION)
    folders.append(ROOT / '.pytest_cache' / 'd' / f'ilmlff-{RECIPE_VERSION}')
    found = {'mace': args.mace, 'deepmd': args.deepmd}
    for folder in folders:
        found['mace'] = found['mace'] or (folder / 'mace_3.model' if (folder / 'mace_3.model').exists() else None)
        found['deepmd'] = found['deepmd'] or (folder / 'deepmd_5.pb' if (folder / 'deepmd_5.pb').exists() else None)
    missing = [name for name, path in found.items() if path is None]
    if missing:
        sys.exit(f'no {missing} model: run `pytest tests/md` once (it builds them) or pass --mace/--deepmd')
    return {name: pathlib.Path(path) for name, path in found.items()}


def _box():
    from aiida_ilmlff.systems import build_ionic_liquid

    return build_ionic_liquid({'PYR14': 8, 'BF4': 8}, density=1.2, seed=0)


def _bare(calculator, atoms0, steps: int) -> tuple[float, float]:
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    atoms = atoms0.copy()
    atoms.set_constraint(FixCom())
    thermalize_momenta(atoms, temperature_K=400.0, rng=np.random.default_rng(0))
    Stationary(atoms)
    atoms.calc = calculator
    dyn = Langevin(
        atoms,
        timestep=0.5 * units.fs,
        temperature_K=400.0,
        friction=0.02 / units.fs,
        fixcm=False,
        rng=np.random.default_rng(1),
    )
    atoms.get_forces()
    wall, cpu = time.perf_counter(), time.process_time()
    dyn.run(steps)
    return time.perf_counter() - wall, time.process_time() - cpu


def _runner(calculator, atoms0, steps: int, model: pathlib.Path, architecture: str) -> tuple[float, float, dict]:
    from ase.io import write

    from aiida_ilmlff.runner.md import run_md

    with tempfile.TemporaryDirectory(prefix='bench-md-') as tmpdir:
        folder = pathlib.Path(tmpdir)
        atoms = atoms0.copy()
        atoms.info = {'molecules': ' '.join(atoms0.info['molecules'])}
        write(str(folder / 'structure.extxyz'), atoms, format='extxyz')
        settings = {
            'structure': 'structure.extxyz',
            'models': [{'key': 'model_0', 'path': str(model), 'architecture': architecture}],
            'parameters': {**PARAMETERS, 'steps': steps},
        }
        status_code = run_md(settings, folder, handle_signals=False, calculators=[calculator])
        status = json.loads((folder / 'status.json').read_text())
        if status_code != 0:
            raise RuntimeError(f'the runner stopped early: {status.get("reason")}')
        return status['loop_time_s'], status['loop_cpu_s'], status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--steps-mace', type=int, default=100)
    parser.add_argument('--steps-deepmd', type=int, default=300)
    parser.add_argument('--mace', type=pathlib.Path)
    parser.add_argument('--deepmd', type=pathlib.Path)
    args = parser.parse_args()

    from aiida_ilmlff.runner.calculators import configure_threads, load_calculator

    configure_threads(args.threads)
    paths = _model_paths(args)
    atoms = _box()
    rows = []
    for architecture, steps in (('deepmd', args.steps_deepmd), ('mace', args.steps_mace)):
        calculator = load_calculator(
            {'path': str(paths[architecture]), 'architecture': architecture}, threads=args.threads, dtype='float64'
        )
        probe = atoms.copy()
        probe.calc = calculator
        probe.get_forces()  # warm-up (graph building, first allocation)
        bare, runner = [], []
        for _ in range(args.repeats):
            bare.append(_bare(calculator, atoms, steps))
            runner.append(_runner(calculator, atoms, steps, paths[architecture], architecture)[:2])
        bare_wall = statistics.median(b[0] for b in bare)
        bare_cpu = statistics.median(b[1] for b in bare)
        runner_wall = statistics.median(r[0] for r in runner)
        runner_cpu = statistics.median(r[1] for r in runner)
        rows.append(
            (
                architecture,
                len(atoms),
                steps,
                steps / bare_wall,
                steps / runner_wall,
                bare_wall / runner_wall,
                bare_cpu / runner_cpu,
                1e3 * bare_cpu / steps,
            )
        )
        print(f'{architecture}: bare {bare} runner {runner}', file=sys.stderr, flush=True)
    print('| model | atoms | steps | bare ASE steps/s | runner steps/s | ratio (wall) | ratio (CPU) | ms/step (CPU) |')
    print('|---|---|---|---|---|---|---|---|')
    for row in rows:
        print('| {} | {} | {} | {:.2f} | {:.2f} | {:.3f} | {:.3f} | {:.1f} |'.format(*row))


if __name__ == '__main__':
    main()
