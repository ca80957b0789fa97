"""Evaluate one or more MLFF models on a set of frames: ``ilmlff-runner evaluate evaluate.json`` (compute node).

The command behind the ``ilmlff.evaluate`` CalcJob. Settings, output files and exit statuses are the contract
in :mod:`aiida_ilmlff.runner.contract` (``evaluate.json`` -> ``predictions.npz`` and
``evaluate_summary.json``; ``predictions.npz`` also holds ``stress`` (n_models, n_frames, 3, 3) eV/Å^3, ASE
sign, nan for frames that are not periodic). Models are loaded by the runner's one loader,
:func:`aiida_ilmlff.runner.calculators.load_calculator`, as for the MD; MACE models are then evaluated frame
by frame through their ASE calculator, DeePMD models through the calculator's ``DeepPot`` with the frames
batched by atom ordering. torch / mace and deepmd / tensorflow are imported only when a model of their
architecture is loaded.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import typing as t

import numpy as np

from .contract import EVALUATE_OUTPUTS, EXIT_BAD_INPUT, EXIT_MODEL_LOAD, EXIT_OK

__all__ = ('evaluate_models', 'main', 'predict')


def _read_frames(path: pathlib.Path):
    from ase.io import read

    return read(str(path), index=':')


def _periodic(atoms) -> bool:
    """Whether a frame has a stress: periodic in all three directions with a finite, non-zero volume."""
    return bool(np.all(atoms.pbc)) and abs(float(atoms.cell.volume)) > 1e-9


def _predict_each(calculator, frames) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """Energies (eV), forces (eV/Å) and stresses (3x3 eV/Å^3, ASE sign; nan for non-periodic frames) of
    ``frames``, one ASE calculation per frame."""
    energies = np.empty(len(frames))
    stresses = np.full((len(frames), 3, 3), np.nan)
    forces = []
    start = time.perf_counter()
    for i, atoms in enumerate(frames):
        work = atoms.copy()
        work.calc = calculator
        energies[i] = work.get_potential_energy()
        forces.append(np.asarray(work.get_forces(), dtype=float))
        if _periodic(work) and 'stress' in getattr(calculator, 'implemented_properties', ('stress',)):
            stresses[i] = np.asarray(work.get_stress(voigt=False), dtype=float)
    return energies, forces, stresses, time.perf_counter() - start


def _predict_deepmd(potential, frames, key: str) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """Energies (eV), forces (eV/Å) and stresses (eV/Å^3) with a DeePMD ``DeepPot``, frames batched by atom
    ordering and periodicity. The stress of a periodic frame is ``-(W + W^T) / 2 / V`` from the virial ``W`` [eV]
    (the sign and symmetrisation of ``deepmd.calculator.DP``); nan for non-periodic frames."""
    type_map = list(potential.get_type_map())
    energies = np.empty(len(frames))
    stresses = np.full((len(frames), 3, 3), np.nan)
    forces: list[np.ndarray | None] = [None] * len(frames)
    groups: dict[tuple, list[int]] = {}
    for i, atoms in enumerate(frames):
        symbols = tuple(atoms.get_chemical_symbols())
        missing = sorted(set(symbols) - set(type_map))
        if missing:
            raise ValueError(f'model {key}: elements {missing} are not in its type_map {type_map}')
        groups.setdefault((symbols, _periodic(atoms)), []).append(i)
    start = time.perf_counter()
    for (symbols, periodic), indices in groups.items():
        atom_types = [type_map.index(s) for s in symbols]
        coords = np.array([frames[i].positions.reshape(-1) for i in indices])
        cells = np.array([frames[i].cell.array.reshape(-1) for i in indices]) if periodic else None
        energy, force, virial = potential.eval(coords, cells, atom_types)[:3]
        energy = np.asarray(energy).reshape(len(indices))
        force = np.asarray(force).reshape(len(indices), len(symbols), 3)
        virial = np.asarray(virial).reshape(len(indices), 3, 3)
        for j, i in enumerate(indices):
            energies[i] = energy[j]
            forces[i] = force[j]
            if periodic:
                stresses[i] = -0.5 * (virial[j] + virial[j].T) / abs(frames[i].cell.volume)
    return energies, forces, stresses, time.perf_counter() - start


def predict(model: dict[str, t.Any], calculator, frames) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """Predictions of one loaded model on ``frames`` (a list of ASE ``Atoms``).

    :param model: the model entry of the settings (``key``, ``architecture``).
    :param calculator: its calculator from :func:`~aiida_ilmlff.runner.calculators.load_calculator`; a DeePMD
        calculator (``deepmd.calculator.DP``) is evaluated in batches through its ``DeepPot`` (``.dp``).
    :returns: energies (n_frames,) eV, forces [(n_atoms_i, 3) eV/Å per frame], stresses (n_frames, 3, 3) eV/Å^3
        in ASE's sign (positive under tension; pressure = -trace/3), nan for frames that are not periodic in
        all three directions, and the wall time [s].
    :raises ValueError: a frame has an element the DeePMD model's type map lacks.
    """
    potential = getattr(calculator, 'dp', None) if model.get('architecture') == 'deepmd' else None
    if potential is not None:
        return _predict_deepmd(potential, frames, model['key'])
    return _predict_each(calculator, frames)


def evaluate_models(config: dict, workdir: pathlib.Path) -> dict:
    """Evaluate every model of ``config`` (see the module docstring) on its frames; write the outputs.

    :param config: the parsed ``evaluate.json``.
    :param workdir: folder that relative paths in ``config`` refer to.
    :returns: the summary written to ``config['summary']``.
    :raises ValueError: on an unknown architecture or an element missing from a model.
    :raises FileNotFoundError: a model file is missing.
    """
    from . import calculators

    frames = _read_frames(workdir / config['frames'])
    device = config.get('device', 'cpu')
    n_atoms = np.array([len(atoms) for atoms in frames], dtype=int)
    numbers = np.concatenate([atoms.numbers for atoms in frames]) if frames else np.zeros(0, int)
    energies, forces, stresses = [], [], []
    summary = {'models': {}, 'n_frames': len(frames), 'n_atoms': int(n_atoms.sum())}
    for model in config['models']:
        model = dict(model, path=str(workdir / model['path']))
        calculator = calculators.load_calculator(model, device=device, threads=config.get('threads'))
        energy, force, stress, seconds = predict(model, calculator, frames)
        energies.append(energy)
        stresses.append(stress)
        forces.append(np.concatenate(force) if force else np.zeros((0, 3)))
        summary['models'][model['key']] = {
            'architecture': model['architecture'],
            'seconds': seconds,
            'atom_frames_per_second': float(n_atoms.sum() / seconds) if seconds > 0 else None,
        }
    np.savez(
        workdir / config.get('output', EVALUATE_OUTPUTS['predictions']),
        energy=np.array(energies, dtype=float).reshape(len(config['models']), len(frames)),
        forces=np.array(forces, dtype=float).reshape(len(config['models']), int(n_atoms.sum()), 3),
        stress=np.array(stresses, dtype=float).reshape(len(config['models']), len(frames), 3, 3),
        n_atoms=n_atoms,
        numbers=numbers,
        model_keys=np.array([m['key'] for m in config['models']], dtype=str),
    )
    summary['versions'] = calculators.package_versions([m['architecture'] for m in config['models']])
    (workdir / config.get('summary', EVALUATE_OUTPUTS['summary'])).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: t.Sequence[str] | None = None) -> int:
    """``ilmlff-runner evaluate EVALUATE.json``: evaluate in the settings' folder; return the exit status."""
    parser = argparse.ArgumentParser(prog='ilmlff-runner evaluate', description='Evaluate MLFF models on frames.')
    parser.add_argument('input', help='the evaluate.json file written by the ilmlff.evaluate CalcJob')
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    path = pathlib.Path(args.input)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exception:
        print(f'ilmlff-runner evaluate: cannot read {path}: {exception}', file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        summary = evaluate_models(config, path.resolve().parent)
    except (ValueError, RuntimeError, OSError) as exception:
        print(f'ilmlff-runner evaluate: {type(exception).__name__}: {exception}', file=sys.stderr)
        return EXIT_MODEL_LOAD
    print(json.dumps({'ilmlff-runner evaluate': 'done', **{k: summary[k] for k in ('n_frames', 'n_atoms')}}))
    return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
