#!/usr/bin/env python
"""LiTFSI in PYR14TFSI at 298 K through ``ilmlff.pipeline``: the comparison plus Li+ coordination and clusters.

The box holds ``--salt-pairs`` TFSI- anions, a fraction ``--li-fraction`` (the LiTFSI mole fraction x of
(LiTFSI)x(PYR14TFSI)1-x) of them balanced by Li+ and the rest by PYR14+. Besides the table of the PYR14BF4
demo, each model's ``ilmlff.properties`` output has the Li-O(TFSI) coordination number, the Li+ cluster size
distribution and the TFSI cis/trans fractions (``verdi node attributes`` of ``properties.<row>``).

This system is bigger than the PYR14BF4 demo (TFSI has 15 atoms, GFN1-xTB of ~130 atoms): expect about an
hour on 2 cores with the ``fast`` protocol.
"""

from __future__ import annotations

import argparse
import sys

from _pipeline_demo import run


def composition_of(salt_pairs: int, li_fraction: float) -> dict[str, int]:
    """Ion counts of (LiTFSI)x(PYR14TFSI)1-x with ``salt_pairs`` TFSI anions; at least one Li+ and one PYR14+."""
    if not 0.0 < li_fraction < 1.0:
        raise SystemExit(f'--li-fraction must be in (0, 1), got {li_fraction}')
    n_li = min(max(1, round(li_fraction * salt_pairs)), salt_pairs - 1)
    return {'Li': n_li, 'PYR14': salt_pairs - n_li, 'TFSI': salt_pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--salt-pairs', type=int, default=3, help='TFSI anions per box (default 3)')
    parser.add_argument('--li-fraction', type=float, default=1 / 3, help='LiTFSI mole fraction x (default 1/3)')
    parser.add_argument('--temperature', type=float, default=298.0, help='K (default 298: liquid)')
    parser.add_argument('--density', type=float, default=1.4, help='g/cm^3 of the built boxes (default 1.4)')
    parser.add_argument('--output', default='demo-output-litfsi', help='folder for the figures')
    parser.add_argument('--keep-daemon', action='store_true', help='leave the daemon running afterwards')
    args = parser.parse_args(argv)
    composition = composition_of(args.salt_pairs, args.li_fraction)
    print(f'composition: {composition} (x = {composition["Li"] / args.salt_pairs:.2f})', flush=True)
    return run(
        composition,
        args.temperature,
        args.output,
        overrides={'box_density': args.density},
        keep_daemon=args.keep_daemon,
    )


if __name__ == '__main__':
    sys.exit(main())
