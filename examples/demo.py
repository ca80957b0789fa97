#!/usr/bin/env python
"""``make demo``: PYR14BF4 from a box to MACE and DeePMD committees, submitted to the daemon.

The most complete slice of the aiida-ilmlff pipeline that exists so far, every step a process in one
provenance graph:

1. build a 2-ion-pair PYR14BF4 box (``build_ionic_liquid_box`` calcfunction; 70 atoms, 1.2 g/cm^3);
2. make non-equilibrium (nEQ) frames from it: Gaussian rattles of several widths;
3. label them with CP2K GFN1-xTB (``ilmlff.label``, protocol ``fast``);
4. split the labelled frames once (``split_frames``: train / valid / test, seeded);
5. train a MACE and a DeePMD committee (``ilmlff.train``, protocol ``fast``) on the same split;
6. print a comparison table (energy and force RMSE on the shared held-out test set) and write it to
   ``demo-output/``.

Progress is printed while it waits; ``verdi process list`` works meanwhile. Uses the profile found
through ``AIIDA_PATH`` (``make demo`` sets it) and the codes registered by ``aiida-ilmlff setup``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time


def wait(node, what: str, poll: float = 5.0) -> None:
    """Block until ``node`` terminates, printing its state changes; raise if it did not finish ok."""
    last = None
    while not node.is_terminated:
        state = f'{node.process_state.value}'
        children = node.called_descendants if hasattr(node, 'called_descendants') else []
        running = sum(1 for child in children if not child.is_terminated)
        line = f'  {what} <{node.pk}>: {state}, {len(children)} sub-processes ({running} running)'
        if line != last:
            print(line, flush=True)
            last = line
        time.sleep(poll)
    if not node.is_finished_ok:
        raise SystemExit(
            f'{what} <{node.pk}> ended with exit status {node.exit_status}: {node.exit_message}\n'
            f'see `verdi process report {node.pk}`'
        )
    print(f'  {what} <{node.pk}>: finished ok', flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ion-pairs', type=int, default=2, help='PYR14BF4 ion pairs in the box')
    parser.add_argument('--n-frames', type=int, default=16, help='nEQ frames to label')
    parser.add_argument('--committee', type=int, default=2, help='models per committee')
    parser.add_argument('--output', default='demo-output', help='folder for the table')
    args = parser.parse_args(argv)

    from aiida import load_profile, orm
    from aiida.engine import submit
    from aiida.engine.daemon.client import get_daemon_client

    profile = load_profile()
    client = get_daemon_client()
    if not client.is_daemon_running:
        print(f'starting the daemon of profile {profile.name}', flush=True)
        client.start_daemon()

    from aiida_ilmlff.calculations.functions.box import build_box
    from aiida_ilmlff.calculations.functions.frames import split_frames
    from aiida_ilmlff.data import FramesData
    from aiida_ilmlff.workflows.label import LabelWorkChain
    from aiida_ilmlff.workflows.train import TrainWorkChain

    one_core = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'withmpi': False}

    print('1. box', flush=True)
    structure = build_box({'PYR14': args.ion_pairs, 'BF4': args.ion_pairs}, density=1.2, seed=0)
    print(f'  StructureData <{structure.pk}>: {len(structure.sites)} atoms, {structure.get_formula()}')

    print('2. nEQ frames (Gaussian rattles)', flush=True)
    box = structure.get_ase()
    box.arrays['mol_id'] = structure.base.attributes.get('mol_id')
    images = []
    for i in range(args.n_frames):
        sigma = (0.02, 0.05, 0.08, 0.11)[i % 4]
        atoms = box.copy()
        atoms.rattle(stdev=sigma, seed=i)
        atoms.info.update(
            {'origin': 'nEQ', 'perturbation': {'kind': 'rattle', 'sigma': sigma, 'seed': i}, 'source': structure.uuid}
        )
        images.append(atoms)
    frames = FramesData.from_ase(images, label='demo: PYR14BF4 rattled').store()
    print(f'  FramesData <{frames.pk}>: {len(frames)} frames')

    print('3. label with CP2K GFN1-xTB (ilmlff.label, fast)', flush=True)
    builder = LabelWorkChain.get_builder_from_protocol(
        orm.load_code('cp2k@localhost'), frames, protocol='fast', overrides={'max_concurrent': 2}, options=one_core
    )
    label = submit(builder)
    wait(label, 'LabelWorkChain')
    labelled = label.outputs.labelled
    print(f'  labelled FramesData <{labelled.pk}>: {len(labelled)} frames')

    print('4. split (train / valid / test)', flush=True)
    split = split_frames(labelled, orm.List([0.7, 0.15, 0.15]), orm.Int(0))
    print('  ' + ', '.join(f'{key} {len(node)}' for key, node in split.items()))

    print('5. train MACE and DeePMD committees (ilmlff.train, fast)', flush=True)
    trainings = {}
    for architecture, code in (('mace', 'mace-train@localhost'), ('deepmd', 'dp@localhost')):
        builder = TrainWorkChain.get_builder_from_protocol(
            orm.load_code(code),
            split['train'],
            protocol='fast',
            architecture=architecture,
            valid=split['valid'],
            test=split['test'],
            committee_size=args.committee,
            options=one_core,
        )
        trainings[architecture] = submit(builder)
    for architecture, node in trainings.items():
        wait(node, f'TrainWorkChain[{architecture}]')

    print('6. comparison on the shared held-out test set', flush=True)
    rows = []
    for architecture, node in trainings.items():
        committee = node.outputs.metrics['committee']
        test = committee.get('test', {})
        rows.append(
            {
                'model': architecture,
                'members': len(node.outputs.models),
                'energy_rmse_meV_atom': test.get('energy_rmse', {}).get('mean'),
                'force_rmse_meV_A': test.get('force_rmse', {}).get('mean'),
                'workchain': node.pk,
            }
        )
    header = f'{"model":8s} {"members":>7s} {"E RMSE (meV/atom)":>18s} {"F RMSE (meV/A)":>15s} {"pk":>6s}'
    print(header)
    for row in rows:
        energy = row['energy_rmse_meV_atom']
        force = row['force_rmse_meV_A']
        print(
            f'{row["model"]:8s} {row["members"]:7d} {energy if energy is None else f"{energy:.2f}":>18} '
            f'{force if force is None else f"{force:.1f}":>15} {row["workchain"]:6d}'
        )
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / 'comparison.json').write_text(json.dumps(rows, indent=2))
    print(f'written {output / "comparison.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
