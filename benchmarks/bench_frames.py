"""Benchmark FramesData: store, load and export a data set the size of the published PYR14BF4 training set.

Run: ``.venv/bin/python benchmarks/bench_frames.py [--frames 30000] [--atoms 350] [--no-export]``.

Builds ``--frames`` random frames of ``--atoms`` atoms (10 PYR14BF4 ion pairs: 350 atoms) with energies,
forces, cells, molecule ids and a EQ/nEQ origin mix; times

* ``create``: ``FramesData.from_arrays`` (validation, HDF5 file, sha256, copy into the node's sandbox),
* ``store``: ``node.store()`` (into the profile's disk-objectstore),
* ``load``: ``load_node(pk)`` on a fresh instance and reading every array (``get_arrays()``),
* ``export``: ``node.export(path, 'extxyz')`` (full-precision text, once),

each of the first three ``--repeat`` times (min and max reported: the machine is shared),

and compares the bytes on disk with the raw float64 bytes of positions, forces, energies and cells.
Everything lives in a temporary AiiDA configuration (``AIIDA_PATH``) with a SQLite profile, deleted at
the end; the user's ``~/.aiida`` is never touched. The page cache stays warm between steps (the file was
just written), as it would be when a workflow stores and reuses a data set.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

# One PYR14BF4 ion pair: PYR14 (C9H20N+, 30 atoms) and BF4- (5 atoms).
PYR14 = [6] * 9 + [1] * 20 + [7]
BF4 = [5, 9, 9, 9, 9]


def make_arrays(n_frames: int, n_atoms: int, seed: int = 0) -> dict:
    """Random frames shaped like PYR14BF4 boxes: positions in a 15 Å cell, forces ~ N(0, 1) eV/Å."""
    pairs = max(1, n_atoms // 35)
    numbers = np.array((PYR14 + BF4) * pairs, dtype=np.int64)[:n_atoms]
    mol_id = np.repeat(np.arange(2 * pairs), [30, 5] * pairs)[:n_atoms]
    rng = np.random.default_rng(seed)
    return {
        'numbers': numbers,
        'positions': rng.random((n_frames, n_atoms, 3)) * 15.0,
        'cells': np.broadcast_to(np.eye(3) * 15.0, (n_frames, 3, 3)).copy(),
        'energy': rng.normal(-50000.0, 10.0, n_frames),
        'forces': rng.normal(0.0, 1.0, (n_frames, n_atoms, 3)),
        'mol_id': mol_id,
        'origin': np.where(np.arange(n_frames) < 0.45 * n_frames, 'EQ', 'nEQ').tolist(),
        'level_of_theory': 'cp2k:pbe-d3bj:dzvp-molopt-sr:400ry',
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=30000)
    parser.add_argument('--atoms', type=int, default=350)
    parser.add_argument('--no-export', action='store_true', help='skip the extxyz export (slowest step)')
    parser.add_argument('--repeat', type=int, default=3, help='runs of create/store and of load (min and max kept)')
    args = parser.parse_args()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix='ilmlff-bench-frames-'))
    os.environ['AIIDA_PATH'] = str(workdir)
    try:
        from aiida import load_profile
        from aiida.manage.configuration import create_profile, get_config

        config = get_config(create=True)
        profile = create_profile(
            config,
            storage_backend='core.sqlite_dos',
            storage_config={'filepath': str(workdir / 'storage')},
            name='bench',
            email='bench@localhost',
            is_test_profile=True,
        )
        config.set_default_profile(profile.name)
        config.store()
        load_profile(profile.name, allow_switch=True)

        from aiida import orm

        from aiida_ilmlff.data import FramesData

        arrays = make_arrays(args.frames, args.atoms)
        raw = sum(arrays[k].nbytes for k in ('positions', 'forces', 'energy', 'cells'))
        results: dict = {
            'frames': args.frames,
            'atoms_per_frame': args.atoms,
            'raw_float64_bytes': raw,
            'load_average_at_start': os.getloadavg(),
        }
        timings: dict[str, list[float]] = {
            'create_s': [],
            'store_s': [],
            'create_and_store_s': [],
            'load_all_arrays_s': [],
        }

        pk = None
        for _ in range(args.repeat):
            start = time.perf_counter()
            node = FramesData.from_arrays(**arrays)
            created = time.perf_counter()
            node.store()
            stored = time.perf_counter()
            timings['create_s'].append(created - start)
            timings['store_s'].append(stored - created)
            timings['create_and_store_s'].append(stored - start)
            results['file_bytes'] = node.base.repository.get_object_size(FramesData.FILENAME)
            results['file_over_raw'] = results['file_bytes'] / raw
            pk = node.pk
            del node
            gc.collect()
        del arrays

        for _ in range(args.repeat):
            start = time.perf_counter()
            frames = orm.load_node(pk).get_arrays()
            timings['load_all_arrays_s'].append(time.perf_counter() - start)
            assert frames.n_frames == args.frames and frames.forces is not None
            del frames
            gc.collect()
        for key, values in timings.items():
            results[key] = {'min': min(values), 'max': max(values), 'runs': len(values)}

        loaded = orm.load_node(pk)
        start = time.perf_counter()
        loaded.get_positions(args.frames // 2)
        results['load_one_frame_s'] = time.perf_counter() - start

        if not args.no_export:
            path = workdir / 'frames.xyz'
            start = time.perf_counter()
            loaded.export(path, 'extxyz')
            results['export_extxyz_s'] = time.perf_counter() - start
            results['extxyz_bytes'] = path.stat().st_size
            results['extxyz_over_raw'] = results['extxyz_bytes'] / raw
            path.unlink()

        results['peak_rss_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        results['cpus'] = os.cpu_count()
        print(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
