#!/usr/bin/env python
"""LiTFSI in PYR14TFSI at several Li+ fractions through one ``ilmlff.pipeline``: one model over all compositions.

For every LiTFSI mole fraction x of (LiTFSI)x(PYR14TFSI)1-x in ``--li-fractions`` the Li+ and PYR14+ counts follow
:func:`aiida_ilmlff.systems.salt_in_il_composition` (x = 0 is neat PYR14TFSI), with ``--anions`` TFSI- per box or,
by default, the smallest box that holds x exactly. One data set holds AIMD and perturbed frames of every
composition, labelled at the ``fast`` level of theory for TFSI (``fast-dft``: PBE-D3(BJ)/SZV-MOLOPT-SR-GTH; GFN1-xTB
does not converge for TFSI), the test set holds blocks of every composition, MACE and DeePMD committees are trained
once on all of it, and each composition gets its own test errors, MD properties and comparison rows: density, self-
diffusion of Li+, PYR14+ and TFSI-, RDFs and coordination, the Li+ solvation (Li-O(TFSI) coordination, TFSI per Li+,
mono-/bidentate contacts, Li+-TFSI clusters and their lifetimes) and the TFSI cis/trans fraction. ``aiida-ilmlff
report PK`` redraws it from the graph.

At 298 K and this size the run is a workflow check, not a production result: read docs/litfsi.md for what the
numbers mean and the measured time of every stage.
"""

from __future__ import annotations

import argparse
import sys

from _pipeline_demo import run


def compositions_of(li_fractions: list[float], anions: int | None = None) -> list[dict[str, int]]:
    """Ion counts of (LiTFSI)x(PYR14TFSI)1-x, one per fraction: ``anions`` TFSI per box, or (None) the smallest box
    that holds each fraction exactly (x = 0: one ion pair; x = 1/2: Li 1 + PYR14 1 + TFSI 2)."""
    from aiida_ilmlff.systems import CompositionError, salt_in_il_composition

    compositions = []
    for x in li_fractions:
        sizes = [anions] if anions else range(1, 13)
        composition, error = None, None
        for n in sizes:
            try:
                candidate = salt_in_il_composition('Li', 'PYR14', 'TFSI', x, n)
            except CompositionError as exception:
                error = exception
                continue
            if anions or abs(candidate.get('Li', 0) / n - x) < 1e-9:
                composition = candidate
                break
        if composition is None:
            raise SystemExit(f'--li-fractions {x}: {error or "no box of up to 12 anions holds it exactly"}')
        if composition in compositions:
            raise SystemExit(f'--li-fractions {x} gives the same box as another fraction')
        compositions.append(composition)
    if len(compositions) < 2:
        raise SystemExit('give two or more --li-fractions (for one, use the single-composition pipeline)')
    return compositions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--anions', type=int, default=None, help='TFSI anions per box (default: the smallest box of each fraction)'
    )
    parser.add_argument(
        '--li-fractions',
        type=float,
        nargs='+',
        default=[0.0, 0.5],
        help='LiTFSI mole fractions x, 0 <= x < 1 (default 0 0.5: PYR14 1 TFSI 1 and Li 1 PYR14 1 TFSI 2)',
    )
    parser.add_argument('--temperature', type=float, default=None, help='K (default: 298.15, liquid)')
    parser.add_argument('--output', default='demo-output-litfsi', help='folder for the figures')
    parser.add_argument('--keep-daemon', action='store_true', help='leave the daemon running afterwards')
    args = parser.parse_args(argv)
    compositions = compositions_of(args.li_fractions, args.anions)
    for composition in compositions:
        x = composition.get('Li', 0) / (composition.get('Li', 0) + composition['PYR14'])
        print(f'composition: {composition} (x = {x:.2f})', flush=True)
    # No ilmlff.validate here (yet): its a posteriori frames would be labelled at `fast-dft` (1.5-2.5 min each, 4 per
    # model and composition) and its cost in this example has not been measured; `make demo` validates PYR14BF4.
    overrides = {'validation': False}
    return run(compositions, args.temperature, args.output, overrides=overrides, keep_daemon=args.keep_daemon)


if __name__ == '__main__':
    sys.exit(main())
