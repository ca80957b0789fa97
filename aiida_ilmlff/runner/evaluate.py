"""Evaluate one or more MLFF models on a set of frames: ``ilmlff-runner evaluate evaluate.json`` (compute node).

The command behind the ``ilmlff.evaluate`` CalcJob. Settings, output files and exit statuses are the contract
in :mod:`aiida_ilmlff.runner.contract` (``evaluate.json`` -> ``predictions.npz`` and
``evaluate_summary.json``; ``predictions.npz`` also holds ``stress`` (n_models, n_frames, 3, 3) eV/Å^3, ASE
sign, nan for frames that are not periodic). Models are loaded by the runner's one loader,
:func:`aiida_ilmlff.runner.calculators.load_calculator`, as for the MD. With ``batch_size`` > 1 (the settings'
key, default :data:`~aiida_ilmlff.runner.contract.EVALUATE_BATCH_SIZE`) each model runs on batches of frames:
MACE models on MACE's own batched graphs (``AtomicData.from_config`` with the model's z table and r_max, one
``torch_geometric`` batch of up to ``batch_size`` frames of any sizes, as ``mace_eval_configs`` does), DeePMD
models through the calculator's ``DeepPot`` with up to ``batch_size`` frames of one atom ordering per call. With
``batch_size`` 1 every model is evaluated frame by frame through its ASE calculator (the reference path; the
benchmark compares both). torch / mace and deepmd / tensorflow are imported only when a model of their
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

from .contract import EVALUATE_BATCH_SIZE, EVALUATE_OUTPUTS, EXIT_BAD_INPUT, EXIT_MODEL_LOAD, EXIT_OK

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


def _chunks(indices: list[int], size: int) -> t.Iterator[list[int]]:
    for first in range(0, len(indices), size):
        yield indices[first : first + size]


def _predict_mace(calculator, frames, batch_size: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """Energies (eV), forces (eV/Å) and stresses (3x3 eV/Å^3, ASE sign; nan for non-periodic frames) of ``frames``
    with the model of a ``mace.calculators.MACECalculator``, ``batch_size`` frames per model call.

    The graphs are built as the calculator builds one frame's (``config_from_atoms`` with its keys and head,
    ``AtomicData.from_config`` with its z table and r_max, floats cast to the model's dtype) and joined in one
    ``torch_geometric`` batch, so frames of any sizes and species share a batch; the outputs are converted with
    the calculator's units. The results equal :func:`_predict_each`'s to rounding.
    """
    import torch
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools

    model = calculator.models[0]
    dtype = next(model.parameters()).dtype
    keyspec = mace_data.KeySpecification(
        info_keys=calculator.info_keys, arrays_keys={**calculator.arrays_keys, calculator.charges_key: 'charges'}
    )
    compute_stress = calculator.model_type in ('MACE', 'EnergyDipoleMACE', 'PolarMACE')
    energy_unit = calculator.energy_units_to_eV
    length_unit = calculator.length_units_to_A
    energies = np.empty(len(frames))
    stresses = np.full((len(frames), 3, 3), np.nan)
    forces: list[np.ndarray] = []
    start = time.perf_counter()
    for indices in _chunks(list(range(len(frames))), batch_size):
        with torch_tools.default_dtype(calculator.default_dtype):
            graphs = [
                mace_data.AtomicData.from_config(
                    mace_data.config_from_atoms(frames[i], key_specification=keyspec, head_name=calculator.head),
                    z_table=calculator.z_table,
                    cutoff=calculator.r_max,
                    heads=calculator.available_heads,
                )
                for i in indices
            ]
        batch = torch_geometric.Batch.from_data_list(graphs).to(calculator.device)
        for key in batch.keys:
            value = batch[key]
            if torch.is_tensor(value) and torch.is_floating_point(value):
                batch[key] = value.to(dtype=dtype)
        out = model(batch.to_dict(), compute_stress=compute_stress, training=False)
        energy = out['energy'].detach().cpu().numpy().astype(float) * energy_unit
        force = out['forces'].detach().cpu().numpy().astype(float) * (energy_unit / length_unit)
        stress = out.get('stress') if compute_stress else None
        stress = None if stress is None else stress.detach().cpu().numpy().astype(float) * energy_unit / length_unit**3
        bounds = batch['ptr'].cpu().numpy()
        for j, i in enumerate(indices):
            energies[i] = energy[j]
            forces.append(force[bounds[j] : bounds[j + 1]])
            if stress is not None and _periodic(frames[i]):
                stresses[i] = stress[j]
    return energies, forces, stresses, time.perf_counter() - start


def _predict_deepmd(
    potential, frames, key: str, batch_size: int
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """Energies (eV), forces (eV/Å) and stresses (eV/Å^3) with a DeePMD ``DeepPot``, frames batched by atom
    ordering and periodicity, at most ``batch_size`` frames per call. The stress of a periodic frame is
    ``-(W + W^T) / 2 / V`` from the virial ``W`` [eV] (the sign and symmetrisation of ``deepmd.calculator.DP``);
    nan for non-periodic frames."""
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
    chunks = [(group, chunk) for group, indices in groups.items() for chunk in _chunks(indices, batch_size)]
    for (symbols, periodic), indices in chunks:
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


def predict(
    model: dict[str, t.Any], calculator, frames, batch_size: int = EVALUATE_BATCH_SIZE
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, float]:
    """Predictions of one loaded model on ``frames`` (a list of ASE ``Atoms``).

    :param model: the model entry of the settings (``key``, ``architecture``).
    :param calculator: its calculator from :func:`~aiida_ilmlff.runner.calculators.load_calculator`; a MACE
        calculator is evaluated on MACE's batched graphs, a DeePMD calculator (``deepmd.calculator.DP``) through its
        ``DeepPot`` (``.dp``), both ``batch_size`` frames per model call.
    :param batch_size: frames per model call; 1 evaluates frame by frame through the ASE calculator.
    :returns: energies (n_frames,) eV, forces [(n_atoms_i, 3) eV/Å per frame], stresses (n_frames, 3, 3) eV/Å^3
        in ASE's sign (positive under tension; pressure = -trace/3), nan for frames that are not periodic in
        all three directions, and the wall time [s] (graph building included).
    :raises ValueError: ``batch_size`` < 1, or a frame has an element the DeePMD model's type map lacks.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'batch_size must be an integer >= 1, got {batch_size!r}')
    if batch_size == 1:
        return _predict_each(calculator, frames)
    if model.get('architecture') == 'deepmd':
        potential = getattr(calculator, 'dp', None)
        if potential is not None:
            return _predict_deepmd(potential, frames, model['key'], batch_size)
    elif model.get('architecture') == 'mace' and all(
        hasattr(calculator, name) for name in ('models', 'z_table', 'r_max', 'head', 'available_heads')
    ):
        if len(calculator.models) == 1 and not getattr(calculator, 'use_compile', False):
            return _predict_mace(calculator, frames, batch_size)
    return _predict_each(calculator, frames)


def evaluate_models(config: dict, workdir: pathlib.Path) -> dict:
    """Evaluate every model of ``config`` (see the module docstring) on its frames; write the outputs.

    :param config: the parsed ``evaluate.json``.
    :param workdir: folder that relative paths in ``config`` refer to.
    :returns: the summary written to ``config['summary']``.
    :raises ValueError: on an unknown architecture, an element missing from a model or a ``batch_size`` < 1.
    :raises FileNotFoundError: a model file is missing.
    """
    from . import calculators

    frames = _read_frames(workdir / config['frames'])
    device = config.get('device', 'cpu')
    n_atoms = np.array([len(atoms) for atoms in frames], dtype=int)
    numbers = np.concatenate([atoms.numbers for atoms in frames]) if frames else np.zeros(0, int)
    energies, forces, stresses = [], [], []
    batch_size = config.get('batch_size', EVALUATE_BATCH_SIZE)
    summary = {'models': {}, 'n_frames': len(frames), 'n_atoms': int(n_atoms.sum()), 'batch_size': batch_size}
    for model in config['models']:
        model = dict(model, path=str(workdir / model['path']))
        calculator = calculators.load_calculator(model, device=device, threads=config.get('threads'))
        energy, force, stress, seconds = predict(model, calculator, frames, batch_size)
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
    batch_size = config.get('batch_size', EVALUATE_BATCH_SIZE) if isinstance(config, dict) else None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        print(f'ilmlff-runner evaluate: batch_size must be an integer >= 1, got {batch_size!r}', file=sys.stderr)
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
