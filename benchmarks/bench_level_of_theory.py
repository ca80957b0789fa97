"""Benchmark the CP2K levels of theory of ``ilmlff.label`` on TFSI systems: does the SCF converge, and at what cost.

Run (not a test; minutes per case on one core)::

    .venv/bin/python benchmarks/bench_level_of_theory.py
    .venv/bin/python benchmarks/bench_level_of_theory.py --systems PYR14TFSI-2 --variants fast fast-dft fast-dft-diis

Each system is a box built with :func:`aiida_ilmlff.systems.build_ionic_liquid` at the reference density of its
composition at 298.15 K (seed 0). Each variant is the ``FORCE_EVAL`` of a label protocol, made by
``LabelWorkChain.get_plain_protocol_inputs`` (``--variants``):

* ``fast``: GFN1-xTB as the ``fast`` protocol gives it to frames without S;
* ``fast-xtb-diagonalization``: the same with the SCF ladder's last rung (diagonalisation, Broyden mixing 0.2,
  Fermi-Dirac 300 K, 20 added MOs, 300 steps; ``cp2k_base.apply_scf_rung``);
* ``fast-dft``: the ``fast-dft`` protocol (PBE-D3(BJ)/SZV-MOLOPT-SR-GTH, 400 Ry, OT CG / FULL_ALL);
* ``fast-dft-diis``: the same with ``balanced``'s OT DIIS / FULL_SINGLE_INVERSE;
* ``fast-dft-250``: the same at 250 Ry (REL_CUTOFF 40);
* ``balanced``: PBE-D3(BJ)/DZVP-MOLOPT-SR-GTH, 400 Ry, OT DIIS.

CP2K (``cp2k.psmp``, ``OMP_NUM_THREADS=1``) runs the single point directly, outside AiiDA, with the analytical
stress, under ``/usr/bin/time``. One JSON line per case: atoms, converged or not (CP2K's SCF failure markers), SCF
steps, energy [eV], CPU and wall seconds; and, for each ``fast-dft-250`` case whose ``fast-dft`` ran too, the
RMS and largest force difference [eV/Å] between them. The machine's load average is printed: the reference
machine is shared. Figures: docs/benchmarks.md, "TFSI: a `fast` level of theory".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import re
import subprocess
import tempfile
import time

import numpy as np

#: name -> composition (ion name -> count).
SYSTEMS = {
    'LiTFSI-1': {'Li': 1, 'TFSI': 1},
    'PYR14TFSI-2': {'PYR14': 2, 'TFSI': 2},
    'Li1-PYR14-2-TFSI3': {'Li': 1, 'PYR14': 2, 'TFSI': 3},
}
VARIANTS = ('fast', 'fast-xtb-diagonalization', 'fast-dft', 'fast-dft-diis', 'fast-dft-250', 'balanced')
KEEP_XTB = {'meta_parameters': {'cp2k_xtb_unconverged_elements': []}}


def force_eval(variant: str, elements: list[str], n_atoms: int) -> dict:
    """The CP2K parameters of ``variant`` (see the module docstring) for ``elements``."""
    from aiida_ilmlff.workflows.cp2k_base import SCF_LADDER, apply_scf_rung
    from aiida_ilmlff.workflows.label import LabelWorkChain

    protocol, overrides = {
        'fast': ('fast', KEEP_XTB),
        'fast-xtb-diagonalization': ('fast', KEEP_XTB),
        'balanced': ('balanced', None),
    }.get(variant, ('fast-dft', None))
    plain = LabelWorkChain.get_plain_protocol_inputs(
        protocol, overrides, engine='cp2k', elements=elements, max_atoms=n_atoms
    )
    parameters = copy.deepcopy(plain['cp2k']['cp2k']['parameters'])
    dft = parameters['FORCE_EVAL']['DFT']
    if variant == 'fast-xtb-diagonalization':
        # The SCF ladder's last rung itself (no restart file here: CP2K falls back to the atomic guess).
        parameters = apply_scf_rung(parameters, len(SCF_LADDER))
        dft = parameters['FORCE_EVAL']['DFT']
    elif variant == 'fast-dft-diis':
        dft['SCF']['OT'] = {'MINIMIZER': 'DIIS', 'PRECONDITIONER': 'FULL_SINGLE_INVERSE'}
        dft['SCF']['MAX_SCF'] = 10
    elif variant == 'fast-dft-250':
        dft['MGRID'] = {'CUTOFF': 250, 'REL_CUTOFF': 40}
    parameters['FORCE_EVAL']['STRESS_TENSOR'] = 'ANALYTICAL'
    parameters['FORCE_EVAL']['PRINT'] = {'FORCES': {'_': 'ON'}, 'STRESS_TENSOR': {'_': 'ON'}}
    return parameters


def run_case(atoms, variant: str, workdir: pathlib.Path) -> dict:
    """Write the input of ``variant`` for ``atoms``, run CP2K in ``workdir``, read convergence, energy, forces."""
    from aiida_cp2k.utils import Cp2kInput

    from aiida_ilmlff.parsers.cp2k_output import parse_cp2k_forces, parse_cp2k_stdout

    elements = sorted(set(atoms.get_chemical_symbols()))
    parameters = force_eval(variant, elements, len(atoms))
    subsys = parameters['FORCE_EVAL'].setdefault('SUBSYS', {})
    subsys['CELL'] = {axis: ' '.join(f'{x:.10f}' for x in vector) for axis, vector in zip('ABC', atoms.cell)}
    subsys['COORD'] = {
        ' ': [f'{s} {x:.10f} {y:.10f} {z:.10f}' for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)]
    }
    workdir.mkdir(parents=True)
    (workdir / 'aiida.inp').write_text(Cp2kInput(parameters).render())
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    start = time.monotonic()
    result = subprocess.run(
        ['/usr/bin/time', '-f', '%U %S', 'cp2k.psmp', '-i', 'aiida.inp', '-o', 'aiida.out'],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - start
    user, system = (float(x) for x in result.stderr.strip().splitlines()[-1].split())
    out = (workdir / 'aiida.out').read_text()
    output = parse_cp2k_stdout(out)
    steps = re.findall(r'outer SCF loop converged in\s+\d+ iterations or\s+(\d+) steps', out)
    inner = re.findall(r'SCF run converged in\s+(\d+) steps', out)
    return {
        'converged': result.returncode == 0 and output.scf_converged,
        'scf_steps': int(steps[-1]) if steps else (int(inner[-1]) if inner else None),
        'energy_ev': output.energy,
        'cpu_s': round(user + system, 1),
        'wall_s': round(wall, 1),
        'forces': parse_cp2k_forces(out, atoms.get_chemical_symbols()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--systems', nargs='+', choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument('--variants', nargs='+', choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()

    from aiida_ilmlff.systems.builder import build_ionic_liquid
    from aiida_ilmlff.systems.composition import reference_density

    print(json.dumps({'load_average': os.getloadavg()}))
    with tempfile.TemporaryDirectory(prefix='bench_lot_') as tmp:
        for system in args.systems:
            composition = SYSTEMS[system]
            density = reference_density(composition, 298.15)
            atoms = build_ionic_liquid(composition, density, seed=0)
            results = {}
            for variant in args.variants:
                case = run_case(atoms, variant, pathlib.Path(tmp) / system / variant)
                results[variant] = case
                row = {key: value for key, value in case.items() if key != 'forces'}
                print(
                    json.dumps(
                        {'system': system, 'atoms': len(atoms), 'density': round(density, 3), 'variant': variant, **row}
                    )
                )
            if 'fast-dft' in results and 'fast-dft-250' in results:
                delta = results['fast-dft-250']['forces'] - results['fast-dft']['forces']
                print(
                    json.dumps(
                        {
                            'system': system,
                            'forces_250_vs_400_ry': {
                                'rms_ev_a': round(float(np.sqrt((delta**2).mean())), 3),
                                'max_ev_a': round(float(np.abs(delta).max()), 3),
                            },
                        }
                    )
                )
    print(json.dumps({'load_average': os.getloadavg()}))


if __name__ == '__main__':
    main()
