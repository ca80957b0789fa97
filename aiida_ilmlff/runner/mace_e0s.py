"""Set the isolated-atom energies (E0s) of a MACE foundation model before it is fine-tuned (compute node).

Why: in a plain fine-tune (``--multiheads_finetuning=False``) mace-torch 0.3.16 copies every tensor of the
foundation model whose shape matches into the new model (``mace.tools.finetuning_utils.load_foundations_elements``),
the ``atomic_energies`` buffer included, so the ``--E0s`` argument is silently ignored whenever the frames have the
foundation's elements. A foundation of another chemistry or level of theory then starts with per-atom energy errors
of eV, and the energy term of the loss wrecks the forces (measured: an EMIM BF4 model fine-tuned on PYR14BF4 at
GFN1-xTB, 18 eV/atom, force RMSE 0.45 -> 1.47 eV/Å in 10 epochs). This script writes the E0s into the foundation
file itself; ``mace_run_train`` then runs with ``--E0s=foundation``.

E0s modes:

- ``estimated``: the foundation's E0s plus the least-squares fit of its energy errors on the training frames to
  their element counts, ``E0_z <- E0_z + x_z`` with ``x = argmin ||N x - (E_ref - E_model)||`` (``N``: frames x
  elements counts; minimal-norm when the frames share one composition). The method of mace's ``--E0s=estimated``
  (``mace.data.utils.estimate_e0s_from_foundation``), which 0.3.16 also overwrites.
- ``average``: the least-squares fit of the reference energies alone (mace's ``average``).
- a JSON ``{symbol: energy}`` [eV]: isolated-atom energies at the labelling level of theory.

Run by :class:`~aiida_ilmlff.calculations.mace.MaceTrainCalculation` with the Python beside ``mace_run_train`` (it
needs torch, mace, ASE and numpy, and nothing of AiiDA): ``python mace_e0s.py --e0s MODE --frames train.xyz
--model foundation.model --record e0s.json [--dtype float64]``. The record (JSON) holds ``mode``, ``before`` and
``after`` (symbol -> eV) and the per-atom energy RMSE on the frames before and after [meV/atom].
"""

from __future__ import annotations

import argparse
import json
import sys
import typing as t

import numpy as np

__all__ = ('fit_e0s', 'main')


def fit_e0s(counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares ``x`` of ``counts @ x = target`` (minimal norm if ``counts`` is rank-deficient).

    :param counts: ``(n_frames, n_elements)`` atoms of each element per frame. :param target: ``(n_frames,)`` eV.
    :returns: ``(n_elements,)`` eV per atom.
    """
    solution, *_ = np.linalg.lstsq(np.asarray(counts, dtype=float), np.asarray(target, dtype=float), rcond=None)
    return solution


def _rmse_per_atom(residual: np.ndarray, n_atoms: np.ndarray) -> float:
    return float(np.sqrt(np.mean((residual / n_atoms) ** 2)) * 1000.0)


def main(argv: t.Sequence[str] | None = None) -> int:
    """Rewrite ``--model`` with the E0s of ``--e0s``; write ``--record``. Returns 0, or 1 with a message on stderr."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--e0s', required=True, help="'estimated', 'average' or a JSON {symbol: eV}")
    parser.add_argument('--frames', required=True, help='extended XYZ with REF_energy [eV]')
    parser.add_argument('--model', required=True, help='the foundation model file, rewritten in place')
    parser.add_argument('--record', required=True, help='JSON record written here')
    parser.add_argument('--dtype', default='float64')
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    import torch
    from ase.data import chemical_symbols
    from ase.io import read

    model = torch.load(args.model, map_location='cpu', weights_only=False)
    buffer = model.atomic_energies_fn.atomic_energies
    if buffer.ndim > 1 and buffer.shape[0] != 1:
        print(f'mace_e0s: a model of {buffer.shape[0]} heads is not supported', file=sys.stderr)
        return 1
    zs = [int(z) for z in model.atomic_numbers]
    before = buffer.reshape(-1).detach().cpu().numpy().astype(float)
    frames = read(args.frames, index=':')
    counts = np.array([[int(np.sum(atoms.numbers == z)) for z in zs] for atoms in frames], dtype=float)
    n_atoms = counts.sum(axis=1)
    reference = np.array([float(atoms.info['REF_energy']) for atoms in frames])

    from mace.calculators import MACECalculator

    calculator = MACECalculator(model_paths=args.model, device='cpu', default_dtype=args.dtype)
    predicted = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calculator
        predicted.append(float(atoms.get_potential_energy()))
    predicted = np.array(predicted)

    if args.e0s == 'estimated':
        after = before + fit_e0s(counts, reference - predicted)
    elif args.e0s == 'average':
        after = fit_e0s(counts, reference)
    else:
        given = json.loads(args.e0s)
        missing = [chemical_symbols[z] for z in zs if chemical_symbols[z] not in given]
        if missing:
            print(f'mace_e0s: no E0 for {missing}', file=sys.stderr)
            return 1
        after = np.array([float(given[chemical_symbols[z]]) for z in zs])
    with torch.no_grad():
        buffer.copy_(torch.as_tensor(after, dtype=buffer.dtype).reshape(buffer.shape))
    torch.save(model, args.model)

    shifted = predicted + counts @ (after - before)
    record = {
        'mode': args.e0s if args.e0s in ('estimated', 'average') else 'given',
        'before': {chemical_symbols[z]: float(e) for z, e in zip(zs, before)},
        'after': {chemical_symbols[z]: float(e) for z, e in zip(zs, after)},
        'n_frames': len(frames),
        'energy_rmse_before_meV_per_atom': _rmse_per_atom(reference - predicted, n_atoms),
        'energy_rmse_after_meV_per_atom': _rmse_per_atom(reference - shifted, n_atoms),
    }
    with open(args.record, 'w', encoding='utf8') as handle:
        json.dump(record, handle, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
