"""Benchmark ilmlff.label: labelled PYR14BF4 frames per minute with CP2K, protocols ``fast`` and ``balanced``.

Run (not a test; ``balanced`` takes minutes per frame on 2 cores)::

    .venv/bin/python benchmarks/bench_label.py --protocol fast --pairs 2 --frames 100 --frames-per-job 1 50
    .venv/bin/python benchmarks/bench_label.py --protocol fast --pairs 1 --frames 8
    .venv/bin/python benchmarks/bench_label.py --protocol fast --pairs 2 --frames 8
    .venv/bin/python benchmarks/bench_label.py --protocol balanced --pairs 1 --frames 1 --threads 2 --concurrent 1
    .venv/bin/python benchmarks/bench_label.py --protocol balanced --pairs 2 --frames 1 --threads 2 --concurrent 1

Each run builds a PYR14BF4 box of ``--pairs`` ion pairs (35 atoms per pair) with
:func:`aiida_ilmlff.systems.build_ionic_liquid` at ``--density`` g/cm^3 (or an ``--box`` edge in Å),
rattles it into ``--frames`` frames (0.03 Å) and labels them with ``ilmlff.label`` (run in this process:
the work chain, its CP2K jobs through the ``core.direct`` scheduler, extraction and quality control), with
``--concurrent`` CP2K jobs of ``--threads`` OpenMP threads each, once per value of ``--frames-per-job``
(1: one single point per frame; n > 1: batches of n frames per CP2K job), all in one run on the same frames
(caching is off in the throw-away profile, so every variant runs its own CP2K jobs). Reported, one JSON line
per variant: wall time of the whole work chain, labelled frames per minute, per CP2K job its wall time
(``CP2K`` total of its timing report), CPU time (user + system, from ``/usr/bin/time`` around CP2K) and SCF
steps, the CP2K CalcJobs, the nodes the run added to the database (per labelled frame), and the AiiDA
overhead ratio: work-chain wall time over (sum of CP2K wall times / ``--concurrent``), 1.0 meaning that
AiiDA adds nothing to what CP2K takes with that many jobs at once (issue 15 asks for at most 1.5).
Everything lives in a temporary AiiDA configuration (``AIIDA_PATH``, SQLite profile, deleted at the end);
the user's ``~/.aiida`` is never touched. The machine's load average is printed because the reference
machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import tempfile
import time


def cp2k_stats(calc) -> tuple[float | None, float | None, int | None]:
    """CP2K wall time [s], CPU time (user + system) [s] and SCF steps of one ``Cp2kCalculation``."""
    repository = calc.outputs.retrieved.base.repository
    text = repository.get_object_content('aiida.out')
    total = re.search(r'^\s*CP2K\s+1\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S+)', text, re.MULTILINE)
    steps = re.search(r'outer SCF loop converged in\s+\d+ iterations or\s+(\d+) steps', text)
    if steps is None:
        steps = re.search(r'SCF run converged in\s+(\d+) steps', text)
    cpu = None
    if 'cputime.txt' in repository.list_object_names():
        user, system, _ = repository.get_object_content('cputime.txt').split()[-3:]
        cpu = float(user) + float(system)
    return (
        float(total.group(1)) if total else None,
        cpu,
        int(steps.group(1)) if steps else None,
    )


def main() -> None:
    """Parse the arguments, set up a throw-away profile, label, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--protocol', default='fast', choices=('fast', 'balanced', 'stringent'))
    parser.add_argument('--pairs', type=int, default=1, help='PYR14BF4 ion pairs per frame (35 atoms each)')
    parser.add_argument('--frames', type=int, default=4)
    parser.add_argument('--density', type=float, default=1.2, help='g/cm^3 (liquid PYR14BF4)')
    parser.add_argument('--box', type=float, default=None, help='cubic box edge in Å instead of the density')
    parser.add_argument('--threads', type=int, default=1, help='OpenMP threads per CP2K job')
    parser.add_argument('--concurrent', type=int, default=2, help='CP2K jobs at the same time')
    parser.add_argument('--cp2k', default=shutil.which('cp2k.psmp') or '/usr/bin/cp2k.psmp')
    parser.add_argument(
        '--frames-per-job', type=int, nargs='+', default=[1], help='one labelling run per value (1: per frame)'
    )
    parser.add_argument('--overrides', default=None, help='JSON overrides of the protocol')
    args = parser.parse_args()

    workdir = pathlib.Path(tempfile.mkdtemp(prefix='ilmlff-bench-label-'))
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
        from aiida.engine import run_get_node

        from aiida_ilmlff.data import FramesData
        from aiida_ilmlff.systems import build_ionic_liquid
        from aiida_ilmlff.workflows.label import LabelWorkChain

        computer = orm.Computer(
            label='localhost',
            hostname='localhost',
            workdir=str(workdir / 'work'),
            transport_type='core.local',
            scheduler_type='core.direct',
        ).store()
        computer.configure(safe_interval=0)
        computer.set_minimum_job_poll_interval(0.5)
        # A wrapper records CP2K's CPU time (user + system) next to its output: on a shared machine the CPU
        # time says what the frames cost, the wall time what they took under the load of the moment.
        wrapper = workdir / 'cp2k-timed.sh'
        wrapper.write_text(
            f'#!/bin/sh\nexec /usr/bin/time -f "%U %S %e" -o cputime.txt {args.cp2k} "$@"\n', encoding='utf-8'
        )
        wrapper.chmod(0o755)
        code = orm.InstalledCode(
            label='cp2k', computer=computer, filepath_executable=str(wrapper), default_calc_job_plugin='cp2k'
        ).store()

        box = build_ionic_liquid({'PYR14': args.pairs, 'BF4': args.pairs}, density=args.density, seed=0)
        if args.box:
            box.set_cell([args.box] * 3, scale_atoms=False)
            box.center()
        images = []
        for seed in range(args.frames):
            atoms = box.copy()
            atoms.rattle(stdev=0.03, seed=seed)
            images.append(atoms)
        frames = FramesData.from_ase(images).store()

        for frames_per_job in args.frames_per_job:
            overrides = {
                'max_concurrent': args.concurrent,
                'frames_per_job': frames_per_job,
                'cp2k': {'cp2k': {'settings': {'additional_retrieve_list': ['cputime.txt']}}},
            }
            if args.overrides:
                from aiida_ilmlff.workflows.protocols import recursive_merge

                overrides = recursive_merge(overrides, json.loads(args.overrides))
            builder = LabelWorkChain.get_builder_from_protocol(
                code,
                frames,
                protocol=args.protocol,
                overrides=overrides,
                options={'environment_variables': {'OMP_NUM_THREADS': str(args.threads)}},
            )
            nodes_before = orm.QueryBuilder().append(orm.Node).count()
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            results, node = run_get_node(builder)
            wall = time.perf_counter() - start
            nodes_added = orm.QueryBuilder().append(orm.Node).count() - nodes_before
            calcs = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]
            stats = [cp2k_stats(calc) for calc in calcs if calc.is_finished_ok]
            n_labelled = len(results['labelled']) if 'labelled' in results else 0
            cp2k_wall = sum(s[0] for s in stats if s[0])
            report = {
                'protocol': args.protocol,
                'frames_per_job': frames_per_job,
                'atoms': len(box),
                'box_A': round(float(box.cell.lengths()[0]), 2),
                'frames': args.frames,
                'labelled': n_labelled,
                'threads': args.threads,
                'concurrent': args.concurrent,
                'exit_status': node.exit_status,
                'wall_s': round(wall, 1),
                'frames_per_minute': round(60 * n_labelled / wall, 2),
                'cp2k_calcjobs': len(calcs),
                'nodes_added': nodes_added,
                'nodes_per_labelled_frame': round(nodes_added / n_labelled, 3) if n_labelled else None,
                'cp2k_wall_sum_s': round(cp2k_wall, 1),
                'aiida_overhead_ratio': round(wall / (cp2k_wall / args.concurrent), 2) if cp2k_wall else None,
                'cp2k_wall_s': [round(s[0], 1) if s[0] else None for s in stats],
                'cp2k_cpu_s': [round(s[1], 1) if s[1] else None for s in stats],
                'scf_steps_first_frame': [s[2] for s in stats],
                'load_average_1min': [round(load_before, 2), round(os.getloadavg()[0], 2)],
                'level_of_theory': results['summary']['level_of_theory'],
            }
            print(json.dumps(report), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
