"""``MLFFModelData`` (entry point ``ilmlff.model``): a deployable MLFF model file with queryable metadata.

The file (a MACE ``.model``, a DeePMD frozen ``.pb`` or ``.pth``) is kept verbatim in the repository, as
``SinglefileData`` does. Metadata not given by the caller are read by running
``python -m aiida_ilmlff.runner.inspect_model PATH ARCHITECTURE`` in a subprocess, the only place where torch
or deepmd-kit are imported: the calling process (the daemon, a notebook) stays free of them.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import typing as t

from aiida import orm
from aiida.common.exceptions import ValidationError

from aiida_ilmlff.common.hashing import sha256_file

__all__ = ('ARCHITECTURES', 'BACKENDS', 'MLFFModelData', 'inspect_model_file')

#: Supported architectures and the backends their files may use.
ARCHITECTURES = ('mace', 'deepmd')
BACKENDS = ('torch', 'tensorflow')
INSPECT_MARKER = 'ILMLFF_INSPECT_JSON '
_DEEPMD_SUFFIX_BACKEND = {'.pb': 'tensorflow', '.pth': 'torch'}


def backend_for(path: str | os.PathLike, architecture: str) -> str:
    """The backend implied by ``architecture`` and the file suffix.

    :raises ValueError: for an unknown architecture or a DeePMD file that is neither ``.pb`` nor ``.pth``.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f'unknown architecture {architecture!r}: choose from {list(ARCHITECTURES)}')
    if architecture == 'mace':
        return 'torch'
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in _DEEPMD_SUFFIX_BACKEND:
        raise ValueError(f'a DeePMD model must be a frozen .pb (TensorFlow) or .pth (PyTorch) file, got {suffix!r}')
    return _DEEPMD_SUFFIX_BACKEND[suffix]


def inspect_model_file(
    path: str | os.PathLike, architecture: str, *, python: str | None = None, timeout: float = 300
) -> dict[str, t.Any]:
    """Read a model's metadata in a subprocess running :mod:`aiida_ilmlff.runner.inspect_model`.

    :param python: the interpreter to run (default: this one, ``sys.executable``).
    :returns: dict with ``architecture``, ``backend``, ``elements`` (sorted), ``type_map``, ``r_cut`` [Å],
        ``dtype`` and, when the file records one, ``seed``.
    :raises RuntimeError: if the subprocess fails (its stderr tail is in the message) or prints no result.
    """
    env = dict(os.environ)
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    env.setdefault('OMP_NUM_THREADS', '1')
    command = [python or sys.executable, '-m', 'aiida_ilmlff.runner.inspect_model', str(path), architecture]
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f'inspecting {path} took more than {timeout} s') from exc
    if process.returncode != 0:
        tail = '\n'.join(process.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f'inspecting {path} as {architecture} failed (exit {process.returncode}):\n{tail}')
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(INSPECT_MARKER):
            return json.loads(line[len(INSPECT_MARKER) :])
    raise RuntimeError(f'inspecting {path} printed no result; stdout tail: {process.stdout[-500:]}')


class MLFFModelData(orm.SinglefileData):
    """A deployable MLFF model file plus queryable attributes.

    Attributes: ``architecture`` (``mace`` or ``deepmd``), ``backend`` (``torch`` or ``tensorflow``),
    ``elements`` (sorted symbols), ``type_map`` (DeePMD type order; for MACE the z-table order as
    symbols), ``r_cut`` [Å], ``dtype`` (``float32``/``float64``), ``sha256`` of the file, ``seed`` (committee
    seed or ``None``), ``filename``. Build with :meth:`from_file` or :meth:`get_or_create`; link it by
    provenance to its training set by creating it in the training CalcJob's parser.
    """

    @classmethod
    def find(cls, sha256: str, architecture: str | None = None) -> MLFFModelData | None:
        """The oldest stored node whose file has this SHA-256 (and architecture, if given), else ``None``."""
        filters: dict[str, t.Any] = {'attributes.sha256': sha256}
        if architecture is not None:
            filters['attributes.architecture'] = architecture
        query = orm.QueryBuilder().append(cls, filters=filters, tag='model').order_by({'model': {'id': 'asc'}})
        result = query.first(flat=True)
        return t.cast(MLFFModelData | None, result)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        architecture: str,
        *,
        elements: t.Sequence[str] | None = None,
        type_map: t.Sequence[str] | None = None,
        r_cut: float | None = None,
        dtype: str | None = None,
        seed: int | None = None,
        inspect: bool = True,
        reuse: bool = False,
        python: str | None = None,
        **kwargs: t.Any,
    ) -> MLFFModelData:
        """A node for the model file at ``path`` (unstored, unless ``reuse`` finds a stored duplicate).

        :param architecture: ``mace`` or ``deepmd``.
        :param elements: element symbols the model covers; :param type_map: type order (DeePMD) or z-table
            order (MACE); :param r_cut: cutoff radius [Å]; :param dtype: ``float32`` or ``float64``;
            :param seed: committee seed. Those left ``None`` are read from the file when ``inspect`` is true
            (one subprocess, see :func:`inspect_model_file`).
        :param reuse: return an existing stored node with the same file SHA-256 and architecture instead of
            a duplicate (no inspection is run then).
        :param python: interpreter for the inspection subprocess.
        :param kwargs: passed to :class:`aiida.orm.Data` (``label``, ``description``).
        :raises FileNotFoundError: if ``path`` is not a file.
        :raises ValueError: for an unknown architecture or suffix, or metadata missing with ``inspect=False``.
        :raises RuntimeError: if the inspection fails.
        """
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'model file {path} not found')
        backend = backend_for(path, architecture)
        sha256 = sha256_file(path)
        if reuse:
            existing = cls.find(sha256, architecture)
            if existing is not None:
                return existing
        metadata: dict[str, t.Any] = {'elements': elements, 'type_map': type_map, 'r_cut': r_cut, 'dtype': dtype}
        if any(value is None for value in metadata.values()) and inspect:
            inspected = inspect_model_file(path, architecture, python=python)
            for key in metadata:
                if metadata[key] is None:
                    metadata[key] = inspected.get(key)
            if seed is None:
                seed = inspected.get('seed')
        if metadata['elements'] is None and metadata['type_map'] is not None:
            metadata['elements'] = list(metadata['type_map'])
        if metadata['type_map'] is None and metadata['elements'] is not None:
            from ase.data import atomic_numbers

            metadata['type_map'] = sorted(metadata['elements'], key=lambda s: atomic_numbers[s])
        missing = [key for key in ('elements', 'r_cut') if metadata[key] is None]
        if missing:
            raise ValueError(f'model metadata {missing} unknown: pass them, or inspect=True to read them from the file')
        node = cls(file=str(path), filename=path.name, **kwargs)
        node.base.attributes.set_many(
            {
                'architecture': architecture,
                'backend': backend,
                'elements': sorted(metadata['elements']),
                'type_map': list(metadata['type_map']),
                'r_cut': float(metadata['r_cut']),
                'dtype': None if metadata['dtype'] is None else str(metadata['dtype']),
                'sha256': sha256,
                'seed': None if seed is None else int(seed),
            }
        )
        return node

    @classmethod
    def get_or_create(cls, path: str | os.PathLike, architecture: str, **kwargs: t.Any) -> MLFFModelData:
        """The stored node for this file: an existing one with the same SHA-256, or a new one, stored.

        Keywords as :meth:`from_file`.
        """
        kwargs['reuse'] = True
        node = cls.from_file(path, architecture, **kwargs)
        return node if node.is_stored else node.store()

    def _validate(self) -> bool:
        super()._validate()
        attributes = self.base.attributes
        if attributes.get('architecture', None) not in ARCHITECTURES:
            raise ValidationError(f'architecture must be one of {list(ARCHITECTURES)}')
        if attributes.get('backend', None) not in BACKENDS:
            raise ValidationError(f'backend must be one of {list(BACKENDS)}')
        for key in ('elements', 'type_map', 'r_cut', 'sha256'):
            if attributes.get(key, None) is None:
                raise ValidationError(f'MLFFModelData lacks the `{key}` attribute: build it with from_file')
        return True

    @property
    def architecture(self) -> str:
        """``mace`` or ``deepmd``."""
        return self.base.attributes.get('architecture')

    @property
    def model_backend(self) -> str:
        """``torch`` or ``tensorflow``."""
        return self.base.attributes.get('backend')

    @property
    def elements(self) -> list[str]:
        """Sorted element symbols."""
        return self.base.attributes.get('elements')

    @property
    def type_map(self) -> list[str]:
        """Type order (DeePMD) or z-table order (MACE), as symbols."""
        return self.base.attributes.get('type_map')

    @property
    def r_cut(self) -> float:
        """Cutoff radius [Å]."""
        return self.base.attributes.get('r_cut')

    @property
    def dtype(self) -> str | None:
        """``float32`` or ``float64``."""
        return self.base.attributes.get('dtype')

    @property
    def sha256(self) -> str:
        """SHA-256 of the model file."""
        return self.base.attributes.get('sha256')

    @property
    def seed(self) -> int | None:
        """Committee seed, or ``None``."""
        return self.base.attributes.get('seed')
