"""ASE calculators for MLFF model files: the one loader of ``ilmlff-runner md`` and ``evaluate`` (compute node).

MACE models go through ``mace.calculators.MACECalculator`` (torch); DeePMD frozen ``.pb`` models through
``deepmd.calculator.DP`` (TensorFlow backend). Each package is imported only when a model of its
architecture is loaded, and :func:`configure_threads` must run before the first import so the thread pools
of OpenMP, torch and TensorFlow get the requested size.
"""

from __future__ import annotations

import os
import pathlib
import typing as t

from .contract import ARCHITECTURES

__all__ = ('ARCHITECTURES', 'configure_threads', 'load_calculator', 'package_versions', 'thread_environment')

_THREAD_VARIABLES = (
    'OMP_NUM_THREADS',
    'MKL_NUM_THREADS',
    'OPENBLAS_NUM_THREADS',
    'TF_INTRA_OP_PARALLELISM_THREADS',
    'DP_INTRA_OP_PARALLELISM_THREADS',
)
_INTER_OP_VARIABLES = ('TF_INTER_OP_PARALLELISM_THREADS', 'DP_INTER_OP_PARALLELISM_THREADS')


def thread_environment(threads: int = 1) -> dict[str, str]:
    """The environment variables that size the thread pools of OpenMP, BLAS, TensorFlow and DeePMD.

    Intra-op pools get ``threads`` (at least 1), inter-op pools 1. Pass it as ``metadata.options.
    environment_variables`` of jobs that share a node (e.g. ``make demo``: 4 trainings on 2 cores), where each
    package would otherwise start a pool as large as the machine. Needs no torch/TensorFlow (daemon-safe).

    :returns: variable name -> value, e.g. ``{'OMP_NUM_THREADS': '1', ...}``.
    """
    threads = max(1, int(threads))
    environment = {name: str(threads) for name in _THREAD_VARIABLES}
    environment.update({name: '1' for name in _INTER_OP_VARIABLES})
    return environment


def configure_threads(threads: int) -> None:
    """Set the thread-count environment (:func:`thread_environment`) of this process to ``threads``.

    Call before torch, tensorflow or deepmd are imported; torch's own pool is set in :func:`load_calculator`.
    """
    os.environ.update(thread_environment(threads))
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _load_mace(path: pathlib.Path, dtype: str, device: str, threads: int | None):
    import torch

    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set once in this process
            pass
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(path), device=device, default_dtype=dtype)


def _load_deepmd(path: pathlib.Path):
    if path.suffix != '.pb':
        raise ValueError(
            f'{path.name}: the runner loads DeePMD models through the TensorFlow backend, which needs a frozen '
            '.pb file (dp --tf freeze)'
        )
    from deepmd.calculator import DP

    return DP(model=str(path))


def load_calculator(model: dict[str, t.Any], device: str = 'cpu', threads: int | None = 1, dtype: str | None = None):
    """An ASE calculator for one model entry of the runner settings.

    :param model: ``{'path': file, 'architecture': 'mace' | 'deepmd', 'dtype': 'float32' | 'float64' | None}``.
    :param device: ``cpu`` or ``cuda`` (MACE; DeePMD uses the device its TensorFlow build finds).
    :param threads: torch intra-op threads (MACE); ``None`` leaves torch's thread pools as they are.
    :param dtype: MACE ``default_dtype``; ``None`` takes the model entry's, else ``float64``.
    :raises ValueError: unknown architecture or a DeePMD file that is not a frozen ``.pb``.
    :raises FileNotFoundError: the model file is missing.
    """
    path = pathlib.Path(model['path'])
    if not path.is_file():
        raise FileNotFoundError(f'model file {path} not found')
    architecture = model.get('architecture')
    if architecture == 'mace':
        return _load_mace(path, dtype or model.get('dtype') or 'float64', device, threads)
    if architecture == 'deepmd':
        return _load_deepmd(path)
    raise ValueError(f'model {path.name}: unknown architecture {architecture!r}; choose from {list(ARCHITECTURES)}')


def package_versions(architectures: t.Iterable[str]) -> dict[str, str]:
    """Versions of ase, numpy and of the packages the given architectures used (already imported ones)."""
    from importlib import metadata

    names = ['ase', 'numpy', 'h5py']
    if 'mace' in architectures:
        names += ['torch', 'mace-torch']
    if 'deepmd' in architectures:
        names += ['deepmd-kit', 'tensorflow-cpu']
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
