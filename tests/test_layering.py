"""Layering of the package (DESIGN.md sections 2-3): the pure science and the runner's contract import no AiiDA.

``systems/``, ``sampling/``, ``analysis/``, ``common/`` and ``runner/contract.py`` are plain numpy/ASE/scipy code,
unit-testable without a profile and importable on a compute node without AiiDA. Each is imported, with every
one of its modules, in a fresh interpreter that must not load ``aiida``. The other boundary (the daemon never
loads torch, mace, deepmd or tensorflow) is checked by ``tests/test_repository.py``.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'aiida_ilmlff'

#: Packages (every module under them) and single modules that must not import ``aiida``.
PURE = ('aiida_ilmlff.common', 'aiida_ilmlff.systems', 'aiida_ilmlff.sampling', 'aiida_ilmlff.analysis')
PURE_MODULES = ('aiida_ilmlff.runner.contract', 'aiida_ilmlff.runner.mace_e0s')


def _modules(package: str) -> list[str]:
    root = PACKAGE.parent / package.replace('.', '/')
    names = []
    for path in sorted(root.rglob('*.py')):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        names.append('.'.join(parts))
    return names


def _loaded_aiida_modules(modules: list[str]) -> list[str]:
    code = (
        'import importlib, json, sys\n'
        f'for name in {modules!r}:\n'
        '    importlib.import_module(name)\n'
        'print(json.dumps(sorted(m for m in sys.modules if m == "aiida" or m.startswith("aiida."))))\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('package', PURE)
def test_pure_packages_import_no_aiida(package):
    """Importing every module of the package loads no ``aiida`` module."""
    modules = _modules(package)
    assert modules, f'{package} has no modules'
    assert _loaded_aiida_modules(modules) == [], f'{package} imports aiida'


@pytest.mark.parametrize('module', PURE_MODULES)
def test_runner_contract_imports_no_aiida(module):
    """The runner's contract, which both the daemon and the compute node import, loads no ``aiida`` module."""
    assert (PACKAGE.parent / (module.replace('.', '/') + '.py')).exists()
    assert _loaded_aiida_modules([module]) == []
