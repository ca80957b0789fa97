"""Benchmark: ``ilmlff-runner evaluate`` with MACE frame by frame (ASE calculator) against batched (MACE graphs).

Frames: the 33 GFN1-xTB PYR14BF4 frames of the test fixtures (70 atoms, periodic; ``frames.xyz`` of
``tests/fixtures/models.py``), repeated ``--copies`` times, plus as many 35-atom frames cut from them (the first
35 atoms of each, same cell), so that a batch holds graphs of two sizes. Model: the tiny MACE model of the MD
tests (8 channels, L=0, r_max 4 Å, float64, ZBL; ``mace_3.model``), from ``$ILMLFF_MD_CACHE/<recipe>`` or the pytest
cache, or ``--mace``. The cost does not depend on how well it is trained.

Both variants run :func:`aiida_ilmlff.runner.evaluate.predict` (the code the ``ilmlff.evaluate`` CalcJob runs)
in the same process on the same frames with the same calculator objects: ``batch_size`` 1 is the per-frame ASE path,
each other value of ``--batch-sizes`` the batched path, each at every precision of ``--dtypes`` (MACE's
``default_dtype``: the float64 model cast to float32 is what ``ilmlff.evaluate``'s ``dtype: float32`` parameter
runs). The baseline of every speed-up is the per-frame path in float64 (the default of ``ilmlff.evaluate`` for a
float64 model). One warm-up pass per variant, then ``--repeats`` rounds that alternate the variants; the median of
each is reported, in wall and in CPU seconds (the CPU figure is the robust one on a shared machine), graph building
included and model loading excluded. The script also checks that every batched prediction equals the per-frame one
of its precision (float64: energy relative 1e-9, forces and stress absolute 1e-9; float32: energy relative 1e-6,
forces 1e-4 eV/Å, stress 1e-6 eV/Å^3) and prints how far float32 lies from float64.

Usage: ``.venv/bin/python benchmarks/bench_evaluate.py [--threads 1] [--repeats 3] [--copies 2]
[--batch-sizes 1 2 4 8 16 64] [--dtypes float64 float32]``; prints a Markdown table.
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


#: Largest differences accepted between a batched and the per-frame prediction of one precision: energy
#: (relative), forces (eV/Å), stress (eV/Å^3).
TOLERANCES = {'float64': (1e-9, 1e-9, 1e-9), 'float32': (1e-6, 1e-4, 1e-6)}


def _deviations(result, reference) -> tuple[float, float, float]:
    """Largest |difference| of energies (relative), forces (eV/Å) and stresses (eV/Å^3, periodic frames)."""
    energy = float(np.max(np.abs(result[0] - reference[0]) / np.abs(reference[0])))
    forces = max(float(np.abs(a - b).max()) for a, b in zip(result[1], reference[1]))
    stress = float(np.nanmax(np.abs(result[2] - reference[2])))
    return energy, forces, stress


def _check(reference, result, variant: str, dtype: str) -> None:
    for name, deviation, tolerance in zip(
        ('energies', 'forces', 'stresses'), _deviations(result, reference), TOLERANCES[dtype]
    ):
        if not deviation <= tolerance:
            raise AssertionError(
                f'{variant}: {name} differ from the per-frame ones by {deviation:.2e} > {tolerance:.0e}'
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--copies', type=int, default=2, help='copies of the 33 70-atom frames')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 2, 4, 8, 16, 64])
    parser.add_argument('--dtypes', nargs='+', choices=sorted(TOLERANCES), default=['float64', 'float32'])
    parser.add_argument('--mace', type=pathlib.Path)
    parser.add_argument('--frames', type=pathlib.Path)
    args = parser.parse_args()

    from aiida_ilmlff.runner.calculators import configure_threads, load_calculator

    configure_threads(args.threads)
    model_path = _cache_file('mace_3.model', args.mace)
    frames = _frames(_cache_file('frames.xyz', args.frames), args.copies)
    n_atom_frames = sum(len(atoms) for atoms in frames)
    model = {'key': 'model_0', 'architecture': 'mace', 'path': str(model_path)}
    dtypes = ['float64'] + [dtype for dtype in dict.fromkeys(args.dtypes) if dtype != 'float64']
    calculators = {dtype: load_calculator(model, threads=args.threads, dtype=dtype) for dtype in dtypes}
    sizes = sorted(set(args.batch_sizes) | {1})
    variants = [(dtype, size) for dtype in dtypes for size in sizes]
    references = {}
    for dtype, size in variants:  # warm-up of every variant; the per-frame one is its precision's reference
        result = _timed(model, calculators[dtype], frames, size)[2]
        if size == 1:
            references[dtype] = result
        else:
            _check(references[dtype], result, f'{dtype} batch_size {size}', dtype)
    for dtype in dtypes[1:]:
        energy, forces, stress = _deviations(references[dtype], references['float64'])
        print(
            f'{dtype} against float64, per frame: energy {energy:.1e} relative, forces {forces:.1e} eV/Å, '
            f'stress {stress:.1e} eV/Å^3 (largest)',
            file=sys.stderr,
        )
    times: dict[tuple[str, int], list[tuple[float, float]]] = {variant: [] for variant in variants}
    for _ in range(args.repeats):
        for variant in variants:
            times[variant].append(_timed(model, calculators[variant[0]], frames, variant[1])[:2])
    print(f'{len(frames)} frames ({n_atom_frames} atom-frames), threads {args.threads}: {times}', file=sys.stderr)
    base_wall = statistics.median(t[0] for t in times['float64', 1])
    base_cpu = statistics.median(t[1] for t in times['float64', 1])
    print(
        '| variant | dtype | batch_size | wall s | CPU s | atom-frames/s (wall) | atom-frames/s (CPU) '
        '| speed-up (wall) | speed-up (CPU) |'
    )
    print('|---|---|---|---|---|---|---|---|---|')
    for dtype, size in variants:
        wall = statistics.median(t[0] for t in times[dtype, size])
        cpu = statistics.median(t[1] for t in times[dtype, size])
        variant = 'per frame (ASE)' if size == 1 else 'batched'
        print(
            f'| {variant} | {dtype} | {size} | {wall:.2f} | {cpu:.2f} | {n_atom_frames / wall:.0f} '
            f'| {n_atom_frames / cpu:.0f} | {base_wall / wall:.2f} | {base_cpu / cpu:.2f} |'
        )


if __name__ == '__main__':
    main()
