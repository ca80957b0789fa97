"""Read an MLFF model file's metadata and print it as JSON: ``python -m aiida_ilmlff.runner.inspect_model PATH ARCH``.

``ARCH`` is ``mace`` or ``deepmd``. The result is printed on one stdout line prefixed with
``ILMLFF_INSPECT_JSON`` (libraries may print other lines): a JSON object with ``architecture``,
``backend`` (``torch`` or ``tensorflow``), ``elements`` (sorted symbols), ``type_map`` (DeePMD type order;
for MACE the z-table order as symbols), ``r_cut`` [Å], ``dtype`` (``float32``, ``float64`` or ``mixed``),
``seed`` (DeePMD descriptor seed, else ``null``) and ``details`` (model class, sizes).

This module imports torch / mace / deepmd-kit and therefore runs only in a subprocess or on a compute node
(``aiida_ilmlff.data.model.MLFFModelData.from_file`` calls it); never import it from the daemon.
Exit status 2 for bad arguments, 3 when the file cannot be read as that architecture.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import typing as t

MARKER = 'ILMLFF_INSPECT_JSON '
_PRECISION = {'default': 'float64', 'float64': 'float64', 'float32': 'float32', 'float16': 'float16'}


def _symbols(numbers: t.Iterable[int]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def inspect_mace(path: str) -> dict[str, t.Any]:
    """Metadata of a MACE model saved with ``torch.save`` (a ``.model`` file) or TorchScript-compiled."""
    import mace  # noqa: F401  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD so e3nn constants load under torch >= 2.6)
    import torch

    try:
        model = torch.load(path, map_location='cpu', weights_only=False)
    except (RuntimeError, AttributeError, ModuleNotFoundError, EOFError, ValueError, pickle.UnpicklingError):
        model = torch.jit.load(path, map_location='cpu')
    numbers = [int(z) for z in model.atomic_numbers.tolist()]
    dtypes = sorted({str(p.dtype).replace('torch.', '') for p in model.parameters() if p.is_floating_point()})
    heads = getattr(model, 'heads', None)
    return {
        'architecture': 'mace',
        'backend': 'torch',
        'elements': sorted(_symbols(numbers)),
        'type_map': _symbols(numbers),
        'r_cut': float(model.r_max),
        'dtype': dtypes[0] if len(dtypes) == 1 else 'mixed',
        'seed': None,
        'details': {
            'model_class': type(model).__name__,
            'num_interactions': int(model.num_interactions) if hasattr(model, 'num_interactions') else None,
            'n_parameters': int(sum(p.numel() for p in model.parameters())),
            'heads': list(heads) if heads is not None else None,
        },
    }


def inspect_deepmd(path: str) -> dict[str, t.Any]:
    """Metadata of a frozen DeePMD model (``.pb``: TensorFlow, ``.pth``: PyTorch backend)."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    from deepmd.infer import DeepPot

    potential = DeepPot(path)
    type_map = list(potential.get_type_map())
    script = potential.get_model_def_script() or {}
    if isinstance(script, str):
        script = json.loads(script)
    precisions = {
        _PRECISION.get(str(part.get('precision', 'default')), str(part.get('precision')))
        for part in (script.get('descriptor') or {}, script.get('fitting_net') or {})
        if isinstance(part, dict)
    }
    seed = (script.get('descriptor') or {}).get('seed')
    return {
        'architecture': 'deepmd',
        'backend': 'torch' if path.endswith('.pth') else 'tensorflow',
        'elements': sorted(type_map),
        'type_map': type_map,
        'r_cut': float(potential.get_rcut()),
        'dtype': precisions.pop() if len(precisions) == 1 else 'mixed',
        'seed': seed if isinstance(seed, int) else None,
        'details': {
            'descriptor': (script.get('descriptor') or {}).get('type'),
            'sel': (script.get('descriptor') or {}).get('sel'),
        },
    }


INSPECTORS = {'mace': inspect_mace, 'deepmd': inspect_deepmd}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the metadata of ``argv = [PATH, ARCH]``; return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[1] not in INSPECTORS:
        print(f'usage: python -m aiida_ilmlff.runner.inspect_model PATH {{{",".join(INSPECTORS)}}}', file=sys.stderr)
        return 2
    path, architecture = argv
    if not os.path.isfile(path):
        print(f'model file {path} not found', file=sys.stderr)
        return 2
    try:
        result = INSPECTORS[architecture](path)
    except Exception as exception:  # any failure to read the file is reported alike
        print(f'cannot read {path} as a {architecture} model: {type(exception).__name__}: {exception}', file=sys.stderr)
        return 3
    sys.stdout.write(MARKER + json.dumps(result) + '\n')
    sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
