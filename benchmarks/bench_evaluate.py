"""Benchmark: ``ilmlff-runner evaluate`` with MACE frame by frame (ASE calculator) against batched (MACE graphs).

Frames: the 33 GFN1-xTB PYR14BF4 frames of the test fixtures (70 atoms, periodic; ``frames.xyz`` of
``tests/fixtures/models.py``), repeated ``--copies`` times, plus as many 35-atom frames cut from them (the first
35 atoms of each, same cell), so that a batch holds graphs of two sizes. Model: the tiny MACE model of the MD
tests (8 channels, L=0, r_max 4 Å, float64, ZBL; ``mace_3.model``), from ``$ILMLFF_MD_CACHE/<recipe>`` or the pytest
cache, or ``--mace``. The cost does not depend on how well it is trained.

Both variants run :func:`aiida_ilmlff.runner.evaluate.predict` (the code the ``ilmlff.evaluate`` CalcJob runs)
in the same process on the same frames with the same calculator object: ``batch_size`` 1 is the per-frame ASE path,
each other value of ``--batch-sizes`` the batched path. One warm-up pass per variant, then ``--repeats`` rounds
that alternate the variants; the median of each is reported, in wall and in CPU seconds (the CPU figure is the
robust one on a shared machine), graph building included and model loading excluded. The script also checks that
every batched prediction equals the per-frame one (energy relative 1e-9, forces and stress absolute 1e-9).

Usage: ``.venv/bin/python benchmarks/bench_evaluate.py [--threads 1] [--repeats 3] [--copies 2]
[--batch-sizes 1 2 4 8 16 64]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cache_file(name: str, given: pathlib.Path | None) -> pathlib.Path:
    from tests.fixtures.models import RECIPE_VERSION

    if given is not None:
        return given
    folders = []
    if os.environ.get('ILMLFF_MD_CACHE'):
        folders.append(pathlib.Path(os.environ['ILMLFF_MD_CACHE']) / RECIPE_VERSION)
    folders.append(ROOT / '.pytest_cache' / 'd' / f'ilmlff-{RECIPE_VERSION}')
    for folder in folders:
        if (folder / name).exists():
            return folder / name
    sys.exit(f'no {name}: run `pytest tests/md` once (it builds it) or pass it on the command line')


def _frames(path: pathlib.Path, copies: int) -> list:
    from ase.io import read

    frames = read(str(path), index=':')
    small = [atoms[:35] for atoms in frames]
    return [atoms.copy() for _ in range(copies) for atoms in frames] + small


def _timed(model, calculator, frames, batch_size: int):
    from aiida_ilmlff.runner.evaluate import predict

    cpu = time.process_time()
    energy, forces, stress, wall = predict(model, calculator, frames, batch_size)
    return wall, time.process_time() - cpu, (energy, forces, stress)


def _check(reference, result, batch_size: int) -> None:
    energy, forces, stress = result
    if not np.allclose(energy, reference[0], rtol=1e-9, atol=0.0):
        raise AssertionError(f'batch_size {batch_size}: energies differ from the per-frame ones')
    if max(float(np.abs(a - b).max()) for a, b in zip(forces, reference[1])) > 1e-9:
        raise AssertionError(f'batch_size {batch_size}: forces differ from the per-frame ones')
    if not np.allclose(stress, reference[2], rtol=0.0, atol=1e-9, equal_nan=True):
        raise AssertionError(f'batch_size {batch_size}: stresses differ from the per-frame ones')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--copies', type=int, default=2, help='copies of the 33 70-atom frames')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 2, 4, 8, 16, 64])
    parser.add_argument('--mace', type=pathlib.Path)
    parser.add_argument('--frames', type=pathlib.Path)
    args = parser.parse_args()

    from aiida_ilmlff.runner.calculators import configure_threads, load_calculator

    configure_threads(args.threads)
    model_path = _cache_file('mace_3.model', args.mace)
    frames = _frames(_cache_file('frames.xyz', args.frames), args.copies)
    n_atom_frames = sum(len(atoms) for atoms in frames)
    model = {'key': 'model_0', 'architecture': 'mace', 'path': str(model_path)}
    calculator = load_calculator(model, threads=args.threads, dtype='float64')
    sizes = sorted(set(args.batch_sizes) | {1})
    reference = _timed(model, calculator, frames, 1)[2]  # warm-up of the per-frame path, and the reference
    for size in sizes[1:]:
        _check(reference, _timed(model, calculator, frames, size)[2], size)  # warm-up and equality
    times: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    for _ in range(args.repeats):
        for size in sizes:
            times[size].append(_timed(model, calculator, frames, size)[:2])
    print(f'{len(frames)} frames ({n_atom_frames} atom-frames), threads {args.threads}: {times}', file=sys.stderr)
    base_wall = statistics.median(t[0] for t in times[1])
    base_cpu = statistics.median(t[1] for t in times[1])
    print('| variant | batch_size | wall s | CPU s | atom-frames/s (wall) | atom-frames/s (CPU) | speed-up (wall) |')
    print('|---|---|---|---|---|---|---|')
    for size in sizes:
        wall = statistics.median(t[0] for t in times[size])
        cpu = statistics.median(t[1] for t in times[size])
        variant = 'per frame (ASE)' if size == 1 else 'batched'
        print(
            f'| {variant} | {size} | {wall:.2f} | {cpu:.2f} | {n_atom_frames / wall:.0f} | {n_atom_frames / cpu:.0f} '
            f'| {base_wall / wall:.2f} |'
        )
    print(f'(per-frame CPU s: {base_cpu:.2f})', file=sys.stderr)


if __name__ == '__main__':
    main()
