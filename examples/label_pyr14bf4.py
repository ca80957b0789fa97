#!/usr/bin/env python
"""Label four rattled frames of a 2-ion-pair PYR14BF4 box with CP2K GFN1-xTB (protocol ``fast``).

Builds the box with :func:`aiida_ilmlff.systems.build_ionic_liquid` (70 atoms, liquid density), rattles it
four times (0.05 Å), stores the frames as a ``FramesData`` and submits ``ilmlff.label`` to the daemon. It
uses the AiiDA profile found through ``AIIDA_PATH`` and the code ``cp2k@localhost`` registered by
``aiida-ilmlff setup``::

    export AIIDA_PATH=$PWD                # config in ./.aiida, made by `aiida-ilmlff setup`
    verdi daemon start
    .venv/bin/python examples/label_pyr14bf4.py
    verdi process list -a -p1              # watch it
    verdi process report <PK>              # handlers, rejected frames

Options: ``--protocol`` (``fast``, ``balanced``, ``stringent``), ``--code`` (default ``cp2k@localhost``),
``--threads`` (OpenMP threads per CP2K run, default 1), ``--max-concurrent`` (default 2), ``--run`` to run in
this process instead of submitting to the daemon.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Build, store and submit; print the work chain's pk and how to follow it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--protocol', default='fast', help='fast | balanced | stringent')
    parser.add_argument('--code', default='cp2k@localhost', help='label of the CP2K code')
    parser.add_argument('--threads', type=int, default=1, help='OpenMP threads per CP2K run')
    parser.add_argument('--max-concurrent', type=int, default=2, help='CP2K runs at the same time')
    parser.add_argument('--run', action='store_true', help='run in this process instead of the daemon')
    args = parser.parse_args(argv)

    from aiida import load_profile, orm
    from aiida.common.exceptions import InvalidOperation
    from aiida.engine import run_get_node, submit

    load_profile()

    from aiida_ilmlff.data import FramesData
    from aiida_ilmlff.systems import build_ionic_liquid
    from aiida_ilmlff.workflows.label import LabelWorkChain

    try:
        code = orm.load_code(args.code)
    except Exception as exception:  # any failure: explain how to get the code
        print(f'code `{args.code}` not found ({exception}); run `aiida-ilmlff setup` first', file=sys.stderr)
        return 2

    box = build_ionic_liquid({'PYR14': 2, 'BF4': 2}, density=1.2, seed=0)
    images = []
    for seed in range(4):
        atoms = box.copy()
        atoms.rattle(stdev=0.05, seed=seed)
        atoms.info.update({'origin': 'nEQ', 'perturbation': {'kind': 'rattle', 'stdev': 0.05, 'seed': seed}})
        images.append(atoms)
    frames = FramesData.from_ase(images, label='PYR14BF4 x2, rattled').store()
    print(f'FramesData<{frames.pk}>: {len(frames)} frames of {len(box)} atoms, box {box.cell.lengths()[0]:.2f} A')

    builder = LabelWorkChain.get_builder_from_protocol(
        code,
        frames,
        protocol=args.protocol,
        overrides={'max_concurrent': args.max_concurrent},
        options={'environment_variables': {'OMP_NUM_THREADS': str(args.threads)}},
    )
    if args.run:
        results, node = run_get_node(builder)
        print(f'LabelWorkChain<{node.pk}> finished with exit status {node.exit_status}')
        print(results['summary'].get_dict())
        return 0 if node.is_finished_ok else 1
    try:
        node = submit(builder)
    except InvalidOperation as exception:
        print(f'cannot submit: {exception}\nstart the daemon (`verdi daemon start`) or pass --run', file=sys.stderr)
        return 2
    print(f'submitted LabelWorkChain<{node.pk}> (protocol {args.protocol}, code {code.full_label})')
    print(f'watch it with:  verdi process list -a -p1   and   verdi process report {node.pk}')
    print(f'results:        verdi node show {node.pk}   (outputs: labelled, rejected, summary)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
