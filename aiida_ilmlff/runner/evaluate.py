"""Evaluate one or more MLFF models on a set of frames (runs on the compute node).

This is the command behind the ``ilmlff.evaluate`` CalcJob: console script ``ilmlff-evaluate`` (or
``python -m aiida_ilmlff.runner.evaluate``). It is the only place of the evaluation path that imports
torch / mace (MACE models) and deepmd / tensorflow (DeePMD frozen ``.pb`` models), and it imports each
only when a model of that architecture is evaluated.

Input: a JSON file (``evaluate.json``)::

    {
      "frames": "frames.xyz",                       # extended XYZ, read with ase.io.read(':')
      "models": [{"key": "model_0", "path": "models/model_0.model", "architecture": "mace",
                  "dtype": "float64"}, ...],          # architecture: mace | deepmd
      "device": "cpu",                              # cpu | cuda (MACE only; DeePMD uses its build)
      "output": "predictions.npz",
      "summary": "evaluate_summary.json"
    }

Output: ``predictions.npz`` (plain numeric/string arrays, no pickle) with

- ``energy``: (n_models, n_frames) predicted total energies [eV]
- ``forces``: (n_models, n_atoms_total, 3) predicted forces [eV/Å], frames concatenated in order
- ``n_atoms``: (n_frames,) atoms per frame; ``numbers``: (n_atoms_total,) atomic numbers
- ``model_keys``: (n_models,) the model keys in the order of the first axis

and ``evaluate_summary.json`` with the wall time [s] of each model (loading excluded) and the package
versions used. Exit status 0 on success, 2 on a bad input file, 3 when a model cannot be evaluated.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

__all__ = ('evaluate_models', 'main')


def _read_frames(path: pathlib.Path):
    from ase.io import read

    return read(str(path), index=':')


def _evaluate_mace(model: dict, frames, device: str) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Energies (eV) and forces (eV/Å) of ``frames`` with a MACE model file, through MACECalculator."""
    from mace.calculators import MACECalculator

    calculator = MACECalculator(model_paths=model['path'], device=device, default_dtype=model.get('dtype') or 'float64')
    energies = np.empty(len(frames))
    forces = []
    start = time.perf_counter()
    for i, atoms in enumerate(frames):
        work = atoms.copy()
        work.calc = calculator
        energies[i] = work.get_potential_energy()
        forces.append(np.asarray(work.get_forces(), dtype=float))
    return energies, forces, time.perf_counter() - start


def _evaluate_deepmd(model: dict, frames) -> tuple[np.ndarray, list[np.ndarray], float]:
    """Energies (eV) and forces (eV/Å) with a frozen DeePMD model, frames batched by atom ordering."""
    from deepmd.infer import DeepPot

    potential = DeepPot(model['path'])
    type_map = list(potential.get_type_map())
    energies = np.empty(len(frames))
    forces: list[np.ndarray | None] = [None] * len(frames)
    groups: dict[tuple, list[int]] = {}
    for i, atoms in enumerate(frames):
        symbols = tuple(atoms.get_chemical_symbols())
        missing = sorted(set(symbols) - set(type_map))
        if missing:
            raise ValueError(f'model {model["key"]}: elements {missing} are not in its type_map {type_map}')
        groups.setdefault(symbols, []).append(i)
    start = time.perf_counter()
    for symbols, indices in groups.items():
        atom_types = [type_map.index(s) for s in symbols]
        coords = np.array([frames[i].positions.reshape(-1) for i in indices])
        if all(frames[i].pbc.all() for i in indices):
            cells = np.array([frames[i].cell.array.reshape(-1) for i in indices])
        else:
            cells = None
        energy, force, _ = potential.eval(coords, cells, atom_types)
        energy = np.asarray(energy).reshape(len(indices))
        force = np.asarray(force).reshape(len(indices), len(symbols), 3)
        for j, i in enumerate(indices):
            energies[i] = energy[j]
            forces[i] = force[j]
    return energies, forces, time.perf_counter() - start


def evaluate_models(config: dict, workdir: pathlib.Path) -> dict:
    """Evaluate every model of ``config`` (see the module docstring) on its frames; write the outputs.

    :param config: the parsed ``evaluate.json``.
    :param workdir: folder that relative paths in ``config`` refer to.
    :returns: the summary written to ``config['summary']``.
    :raises ValueError: on an unknown architecture or an element missing from a model.
    """
    frames = _read_frames(workdir / config['frames'])
    device = config.get('device', 'cpu')
    n_atoms = np.array([len(atoms) for atoms in frames], dtype=int)
    numbers = np.concatenate([atoms.numbers for atoms in frames]) if frames else np.zeros(0, int)
    energies, forces, summary = [], [], {'models': {}, 'n_frames': len(frames), 'n_atoms': int(n_atoms.sum())}
    for model in config['models']:
        model = dict(model, path=str(workdir / model['path']))
        if model['architecture'] == 'mace':
            energy, force, seconds = _evaluate_mace(model, frames, device)
        elif model['architecture'] == 'deepmd':
            energy, force, seconds = _evaluate_deepmd(model, frames)
        else:
            raise ValueError(f'unknown architecture {model["architecture"]!r} (mace, deepmd)')
        energies.append(energy)
        forces.append(np.concatenate(force) if force else np.zeros((0, 3)))
        summary['models'][model['key']] = {
            'architecture': model['architecture'],
            'seconds': seconds,
            'atom_frames_per_second': float(n_atoms.sum() / seconds) if seconds > 0 else None,
        }
    np.savez(
        workdir / config.get('output', 'predictions.npz'),
        energy=np.array(energies, dtype=float).reshape(len(config['models']), len(frames)),
        forces=np.array(forces, dtype=float).reshape(len(config['models']), int(n_atoms.sum()), 3),
        n_atoms=n_atoms,
        numbers=numbers,
        model_keys=np.array([m['key'] for m in config['models']], dtype=str),
    )
    summary['versions'] = _versions()
    (workdir / config.get('summary', 'evaluate_summary.json')).write_text(json.dumps(summary, indent=2))
    return summary


def _versions() -> dict:
    from importlib import metadata

    versions = {}
    for name in ('mace-torch', 'torch', 'deepmd-kit', 'tensorflow-cpu', 'ase'):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``ilmlff-evaluate [evaluate] evaluate.json``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'evaluate':
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog='ilmlff-evaluate', description=__doc__.splitlines()[0])
    parser.add_argument('input', help='the evaluate.json file written by the ilmlff.evaluate CalcJob')
    args = parser.parse_args(argv)
    path = pathlib.Path(args.input)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exception:
        print(f'ilmlff-evaluate: cannot read {path}: {exception}', file=sys.stderr)
        return 2
    try:
        summary = evaluate_models(config, path.resolve().parent)
    except (ValueError, RuntimeError, OSError) as exception:
        print(f'ilmlff-evaluate: {type(exception).__name__}: {exception}', file=sys.stderr)
        return 3
    print(json.dumps({'ilmlff-evaluate': 'done', **{k: summary[k] for k in ('n_frames', 'n_atoms')}}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
