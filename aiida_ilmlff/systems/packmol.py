"""Run Packmol (>= 20.15, periodic ``pbc`` keyword) in a temporary directory.

The binary is the one of the ``packmol`` PyPI wheel (a dependency of this package); ``$ILMLFF_PACKMOL``
overrides it, and a ``packmol`` on ``PATH`` is the last resort.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from .errors import PackmolError

__all__ = ('find_packmol', 'packmol_version', 'run_packmol')

#: Packmol's exit status when it cannot reach the tolerance (``STOP 173``).
PACKING_FAILED = 173
#: Characters of Packmol output quoted in error messages.
TAIL_CHARS = 2500


def find_packmol() -> str:
    """Path of the Packmol executable: ``$ILMLFF_PACKMOL``, the ``packmol`` wheel's binary, or ``PATH``.

    :raises PackmolError: none found.
    """
    override = os.environ.get('ILMLFF_PACKMOL')
    if override:
        if not os.access(override, os.X_OK):
            raise PackmolError(f'$ILMLFF_PACKMOL={override!r} is not an executable file')
        return override
    try:
        from packmol.cli import get_binary_path

        return str(get_binary_path())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which('packmol')
    if found is None:
        raise PackmolError(
            'Packmol not found: install the `packmol` wheel (pip install packmol) or set $ILMLFF_PACKMOL'
        )
    return found


def packmol_version() -> str:
    """Version of the installed ``packmol`` wheel, or ``'unknown'`` for a binary from elsewhere."""
    if os.environ.get('ILMLFF_PACKMOL'):
        return 'unknown'
    try:
        return importlib.metadata.version('packmol')
    except importlib.metadata.PackageNotFoundError:
        return 'unknown'


def _write_xyz(path: pathlib.Path, atoms: Atoms, title: str) -> None:
    lines = [str(len(atoms)), title]
    for symbol, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions):
        lines.append(f'{symbol:<2s} {x:16.8f} {y:16.8f} {z:16.8f}')
    path.write_text('\n'.join(lines) + '\n', encoding='ascii')


def _tail(text: str) -> str:
    text = text or ''
    return text[-TAIL_CHARS:]


def run_packmol(
    molecules: Sequence[tuple[Atoms, int]],
    box_length: float,
    *,
    tolerance: float = 2.0,
    seed: int = 0,
    timeout: float = 600.0,
    nloop: int | None = None,
) -> np.ndarray:
    """Pack copies of molecules into the periodic cube ``[0, box_length]^3`` with Packmol.

    Packmol's ``pbc`` keyword makes the distance tolerance hold across the cell faces (minimum image).
    Molecules are written in the order given, ``count`` copies each; atoms of a copy keep their order.

    :param molecules: ``(template, count)`` pairs; template coordinates in Å.
    :param box_length: cube edge in Å.
    :param tolerance: minimum distance in Å between atoms of different molecules.
    :param seed: Packmol random seed (same input and seed give the same output).
    :param timeout: seconds before Packmol is killed.
    :param nloop: Packmol's maximum number of optimisation loops (``None``: Packmol's default).
    :returns: positions in Å, shape (sum of count * n_atoms, 3).
    :raises PackmolError: Packmol not found, timed out, exited with an error or without reaching the
        tolerance ("ENDED WITHOUT PERFECT PACKING"), or wrote an unexpected file; the message ends with the
        tail of Packmol's output.
    """
    binary = find_packmol()
    expected_symbols = []
    for template, count in molecules:
        expected_symbols.extend(template.get_chemical_symbols() * count)
    length = f'{box_length:.8f}'
    lines = [
        f'tolerance {tolerance:.6f}',
        'filetype xyz',
        'output packed.xyz',
        f'seed {int(seed)}',
        f'pbc 0. 0. 0. {length} {length} {length}',
    ]
    if nloop is not None:
        lines.append(f'nloop {int(nloop)}')
    with tempfile.TemporaryDirectory(prefix='ilmlff-packmol-') as tmp:
        workdir = pathlib.Path(tmp)
        for index, (template, count) in enumerate(molecules):
            _write_xyz(workdir / f'molecule_{index}.xyz', template, f'molecule {index}')
            lines += [f'structure molecule_{index}.xyz', f'  number {int(count)}', 'end structure']
        (workdir / 'packmol.inp').write_text('\n'.join(lines) + '\n', encoding='ascii')
        try:
            with open(workdir / 'packmol.inp', 'rb') as stdin:
                result = subprocess.run(
                    [binary], stdin=stdin, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False
                )
        except subprocess.TimeoutExpired as exception:
            output = (
                exception.stdout.decode(errors='replace') if isinstance(exception.stdout, bytes) else exception.stdout
            )
            raise PackmolError(
                f'Packmol did not finish within {timeout} s (lower the density or the number of molecules, or raise '
                f'the timeout); output tail:\n{_tail(output)}'
            ) from exception
        except OSError as exception:
            raise PackmolError(f'Packmol could not be started ({binary}): {exception}') from exception
        output = (result.stdout or '') + (result.stderr or '')
        packed = workdir / 'packed.xyz'
        if result.returncode != 0 or 'Success!' not in output or not packed.is_file():
            reason = (
                'ended without a packing that meets the tolerance (lower the density, the tolerance or the number '
                'of molecules)'
                if 'WITHOUT PERFECT PACKING' in output or result.returncode == PACKING_FAILED
                else 'failed'
            )
            raise PackmolError(f'Packmol {reason}, exit code {result.returncode}; output tail:\n{_tail(output)}')
        text = packed.read_text(encoding='ascii', errors='replace').splitlines()
    try:
        n_atoms = int(text[0].split()[0])
        rows = [line.split() for line in text[2 : 2 + n_atoms]]
        symbols = [row[0] for row in rows]
        positions = np.array([[float(value) for value in row[1:4]] for row in rows])
    except (IndexError, ValueError) as exception:
        raise PackmolError(f'could not read Packmol output: {exception}; output tail:\n{_tail(output)}') from exception
    if symbols != expected_symbols:
        raise PackmolError(
            f'Packmol wrote {len(symbols)} atoms that do not match the {len(expected_symbols)} atoms requested; '
            f'output tail:\n{_tail(output)}'
        )
    return positions
