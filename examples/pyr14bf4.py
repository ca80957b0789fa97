#!/usr/bin/env python
"""``make demo``: PYR14BF4 from composition to a MACE vs DeePMD comparison, one ``ilmlff.pipeline`` on the daemon.

The pipeline (protocol ``fast``, 2 ion pairs, 450 K: PYR14BF4 melts at ~424 K) makes a data set of EQ frames
(CP2K GFN1-xTB AIMD) and nEQ frames (perturbed, labelled by GFN1-xTB single points), holds out a shared test
set, trains committees of tiny MACE and DeePMD models on the rest, evaluates them on the test set, runs NPT
until the density converges and then NVT with each, and compares force/energy errors, density and the
self-diffusion coefficients of PYR14+ and BF4-. Progress is printed while it runs (``verdi process list``
works meanwhile); the table is printed at the end and the figures are written to ``demo-output/``.
``aiida-ilmlff report PK`` prints the same table again from the graph.

The numbers of the ``fast`` protocol are not physics (70 atoms, tiny models, picoseconds): they show every
stage working. ``--protocol``-level choices are in ``aiida_ilmlff/workflows/protocols/pipeline.yaml``.
``--active-learning`` adds ``ilmlff.active_learning`` (protocol ``fast``) between the data set and the training
(``make demo DEMO_ARGS=--active-learning``); its iterations are printed under the table.
"""

from __future__ import annotations

import argparse
import sys

from _pipeline_demo import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ion-pairs', type=int, default=2, help='PYR14BF4 ion pairs per box (default 2)')
    parser.add_argument('--temperature', type=float, default=450.0, help='K (default 450: above the melting point)')
    parser.add_argument('--output', default='demo-output', help='folder for the figures and comparison.json')
    parser.add_argument('--keep-daemon', action='store_true', help='leave the daemon running afterwards')
    parser.add_argument(
        '--active-learning',
        action='store_true',
        help='grow the training set by ilmlff.active_learning (protocol fast) before the committees are trained',
    )
    args = parser.parse_args(argv)
    composition = {'PYR14': args.ion_pairs, 'BF4': args.ion_pairs}
    overrides = {'active_learning': True} if args.active_learning else None
    return run(composition, args.temperature, args.output, overrides=overrides, keep_daemon=args.keep_daemon)


if __name__ == '__main__':
    sys.exit(main())
