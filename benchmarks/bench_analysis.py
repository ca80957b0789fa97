"""Benchmarks of aiida_ilmlff.analysis: MSD and RDF speed against reference codes, streaming memory.

Run once each (they are not tests):

    .venv/bin/python benchmarks/bench_analysis.py msd      # T = 10,000 frames x N = 200, vs MDAnalysis
    .venv/bin/python benchmarks/bench_analysis.py rdf      # 200 frames x 3,000 atoms, vs freud / MDAnalysis
    .venv/bin/python benchmarks/bench_analysis.py memory   # streaming COM MSD of a ~1 GB trajectory file

MDAnalysis (a test dependency) is required for ``msd``; freud (``pip install freud-analysis``) is
optional for ``rdf`` (MDAnalysis InterRDF is timed either way). Timings are the best of ``--repeat``
runs, single process; thread counts are printed. Results go to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from aiida_ilmlff.analysis import TrajectoryWriter, msd, rdf


def best_of(function, repeat: int):
    best, out = float('inf'), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = function()
        best = min(best, time.perf_counter() - start)
    return best, out


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)


def machine() -> dict:
    return {'cpus': os.cpu_count(), 'python': platform.python_version(), 'numpy': np.__version__}


def memory_universe(positions: np.ndarray, box: float):
    import MDAnalysis
    from MDAnalysis.coordinates.memory import MemoryReader

    n_frames, n_atoms, _ = positions.shape
    dims = np.tile([box, box, box, 90.0, 90.0, 90.0], (n_frames, 1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        universe = MDAnalysis.Universe.empty(n_atoms, trajectory=False)
        universe.load_new(positions, format=MemoryReader, dimensions=dims)
    return universe


def bench_msd(repeat: int) -> None:
    import tidynamics
    from MDAnalysis.analysis.msd import EinsteinMSD

    rng = np.random.default_rng(0)
    n_frames, n_particles = 10_000, 200
    positions = np.cumsum(rng.normal(scale=0.2, size=(n_frames, n_particles, 3)), axis=0).astype(np.float32)
    universe = memory_universe(positions, 1000.0)

    ours, curve = best_of(lambda: msd(positions), repeat)
    ours_pp, _ = best_of(lambda: msd(positions, per_particle=True), repeat)

    def mdanalysis():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return EinsteinMSD(universe, select='all', msd_type='xyz', fft=True).run()

    reference_time, reference = best_of(mdanalysis, repeat)
    as64 = positions.astype(np.float64)
    kernel_time, _ = best_of(lambda: [tidynamics.msd(as64[:, n]) for n in range(n_particles)], repeat)
    rel = np.max(np.abs(curve[1:] - reference.results.timeseries[1:]) / reference.results.timeseries[1:])
    report(
        bench='msd',
        frames=n_frames,
        particles=n_particles,
        ours_s=round(ours, 4),
        ours_per_particle_s=round(ours_pp, 4),
        mdanalysis_einstein_fft_s=round(reference_time, 4),
        tidynamics_loop_s=round(kernel_time, 4),
        ratio_vs_mdanalysis=round(ours / reference_time, 4),
        ratio_per_particle_vs_mdanalysis=round(ours_pp / reference_time, 4),
        ratio_vs_tidynamics_loop=round(ours / kernel_time, 4),
        max_relative_difference=float(rel),
        **machine(),
    )


def _interleaved_rdf(freud, as64, positions, box, r_max, n_bins, repeat, block=20):
    """Time our RDF and freud's (1 thread, all threads) on alternating blocks of frames, so that load
    from other processes on a shared machine falls on all of them alike. Returns seconds for all frames."""
    from aiida_ilmlff.analysis import RDFAccumulator

    cell = np.diag([box] * 3)
    fbox = freud.box.Box.cube(box) if freud is not None else None
    contenders = ['ours'] + (['freud_1thread', f'freud_all{os.cpu_count()}threads'] if freud is not None else [])
    best = dict.fromkeys(contenders, float('inf'))
    results = {}
    for _ in range(repeat):
        spent = dict.fromkeys(contenders, 0.0)
        ours = RDFAccumulator(r_max, n_bins, same=True)
        theirs = {}
        if freud is not None:
            theirs = {name: freud.density.RDF(bins=n_bins, r_max=r_max) for name in contenders[1:]}
        for first in range(0, len(positions), block):
            start = time.perf_counter()
            for frame in as64[first : first + block]:
                ours.add_frame(frame, None, cell)
            spent['ours'] += time.perf_counter() - start
            for name, rdf_freud in theirs.items():
                freud.parallel.set_num_threads(1 if name == 'freud_1thread' else 0)
                start = time.perf_counter()
                for frame in positions[first : first + block]:
                    rdf_freud.compute((fbox, frame - box / 2), reset=False)
                spent[name] += time.perf_counter() - start
        best = {name: min(best[name], spent[name]) for name in contenders}
        results = {'ours': ours.result().g, **{name: value.rdf for name, value in theirs.items()}}
    return best, results


def _time_interrdf(positions, box, r_max, n_bins):
    from MDAnalysis.analysis.rdf import InterRDF

    universe = memory_universe(positions, box)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analysis = InterRDF(universe.atoms, universe.atoms, nbins=n_bins, range=(0, r_max), exclusion_block=(1, 1))
        return best_of(analysis.run, 1)


def bench_rdf(repeat: int, frames_mdanalysis: int) -> None:
    rng = np.random.default_rng(1)
    n_frames, n_atoms, density = 200, 3000, 0.1  # atoms / Å^3, an ionic liquid's atom density
    # a float32-representable box, so that MDAnalysis (single-precision box) sees the same cell as we do
    box = float(np.float32((n_atoms / density) ** (1 / 3)))
    positions = (rng.random((n_frames, n_atoms, 3)) * box).astype(np.float32)
    as64 = positions.astype(np.float64)
    cell = np.diag([box] * 3)
    try:
        import freud
    except ImportError:
        freud = None
    for r_max, n_bins in ((10.0, 200), (round(0.49 * box, 2), 300)):
        times, curves = _interleaved_rdf(freud, as64, positions, box, r_max, n_bins, repeat)
        g = curves['ours']
        row = {'bench': 'rdf', 'frames': n_frames, 'atoms': n_atoms, 'box_A': round(box, 3), 'r_max': r_max}
        row['n_bins'] = n_bins
        row['ours_s'] = round(times['ours'], 3)
        for name in times:
            if name != 'ours':
                row[f'{name}_s'] = round(times[name], 3)
                row[f'ratio_vs_{name}'] = round(times['ours'] / times[name], 3)
                row[f'max_abs_difference_vs_{name}'] = float(np.max(np.abs(curves[name] - g)))
        if freud is None:
            row['freud'] = 'not installed'
        if r_max == 10.0 and frames_mdanalysis:
            mda_time, mda = _time_interrdf(positions[:frames_mdanalysis], box, r_max, n_bins)
            _, g_part = rdf(as64[:frames_mdanalysis], None, cell, r_max, n_bins)
            row['mdanalysis_frames'] = frames_mdanalysis
            row['mdanalysis_s_scaled_to_all_frames'] = round(mda_time * n_frames / frames_mdanalysis, 3)
            row['ratio_vs_mdanalysis'] = round(times['ours'] / row['mdanalysis_s_scaled_to_all_frames'], 3)
            nonzero = g_part > 0
            row['max_relative_difference_vs_mdanalysis'] = float(
                np.max(np.abs(g_part - mda.results.rdf)[nonzero] / g_part[nonzero])
            )
        report(**row, **machine())


_CHILD = """
import json, sys, time, tracemalloc


def high_water_mib():
    # VmHWM: peak resident set of this process image (reset at exec, unlike ru_maxrss)
    with open('/proc/self/status') as status:
        return next(int(line.split()[1]) for line in status if line.startswith('VmHWM')) / 1024


import numpy as np
from aiida_ilmlff.analysis import msd_from_trajectory

baseline = high_water_mib()
tracemalloc.start()
start = time.perf_counter()
result = msd_from_trajectory(sys.argv[1], ['cation', 'anion'])
elapsed = time.perf_counter() - start
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({'seconds': elapsed, 'tracemalloc_peak_MiB': peak / 2**20,
                  'peak_rss_MiB': high_water_mib(), 'rss_after_imports_MiB': baseline,
                  'msd_cation_last': float(result.msd['cation'][-1])}))
"""


def bench_memory(target_gb: float, keep: bool) -> None:
    rng = np.random.default_rng(2)
    n_molecules, atoms_per_molecule = 200, 25  # 100 cations + 100 anions, 5,000 atoms
    n_atoms = n_molecules * atoms_per_molecule
    n_frames = int(target_gb * 1e9 / (n_atoms * 3 * 4))
    mol_id = np.repeat(np.arange(n_molecules), atoms_per_molecule)
    molecules = ['cation'] * (n_molecules // 2) + ['anion'] * (n_molecules // 2)
    numbers = np.full(n_atoms, 6)
    masses = np.full(n_atoms, 12.011)
    box = 40.0
    shape = rng.normal(scale=1.5, size=(n_atoms, 3))
    start_positions = np.repeat(rng.random((n_molecules, 3)) * box, atoms_per_molecule, axis=0) + shape
    directory = tempfile.mkdtemp(prefix='ilmlff-bench-', dir='/tmp')
    path = os.path.join(directory, 'big.h5')
    try:
        start = time.perf_counter()
        block = 500
        walk = np.zeros((n_molecules, 3))
        options = {'energy': False, 'flush_every': block}
        with TrajectoryWriter(path, numbers, masses, mol_id, molecules, **options) as out:
            for first in range(0, n_frames, block):
                count = min(block, n_frames - first)
                steps = np.cumsum(rng.normal(scale=0.05, size=(count, n_molecules, 3)), axis=0) + walk
                walk = steps[-1]
                positions = start_positions + np.repeat(steps, atoms_per_molecule, axis=1)
                out.append((first + np.arange(count)) * 10.0, positions, np.diag([box] * 3))
        write_time = time.perf_counter() - start
        size = os.path.getsize(path)
        child = (
            subprocess.run([sys.executable, '-c', _CHILD, path], capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        measured = json.loads(child)
        report(
            bench='streaming_msd_memory',
            file_GB=round(size / 1e9, 3),
            frames=n_frames,
            atoms=n_atoms,
            molecules=n_molecules,
            write_s=round(write_time, 2),
            com_array_MiB=round(n_frames * n_molecules * 3 * 8 / 2**20, 1),
            **{key: (round(value, 2) if isinstance(value, float) else value) for key, value in measured.items()},
            **machine(),
        )
    finally:
        if not keep:
            for name in os.listdir(directory):
                os.remove(os.path.join(directory, name))
            os.rmdir(directory)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument('which', choices=['msd', 'rdf', 'memory', 'all'])
    parser.add_argument('--repeat', type=int, default=3, help='timings are the best of this many runs')
    parser.add_argument('--mdanalysis-frames', type=int, default=50, help='InterRDF frames timed (0: skip)')
    parser.add_argument('--size-gb', type=float, default=1.0, help='size of the streamed trajectory file')
    parser.add_argument('--keep', action='store_true', help='keep the generated trajectory file')
    args = parser.parse_args()
    if args.which in ('msd', 'all'):
        bench_msd(args.repeat)
    if args.which in ('rdf', 'all'):
        bench_rdf(args.repeat, args.mdanalysis_frames)
    if args.which in ('memory', 'all'):
        bench_memory(args.size_gb, args.keep)


if __name__ == '__main__':
    main()
