"""House rules of DESIGN.md checked on the repository itself: lint, docs, import boundaries, entry points."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'aiida_ilmlff'
BIN = pathlib.Path(sys.executable).parent
HEAVY = ('torch', 'mace', 'deepmd', 'tensorflow', 'e3nn', 'keras')


def _daemon_side_modules() -> list[str]:
    modules = []
    for path in sorted(PACKAGE.rglob('*.py')):
        relative = path.relative_to(ROOT).with_suffix('')
        if 'runner' in relative.parts:
            continue
        parts = list(relative.parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        modules.append('.'.join(parts))
    return [*modules, 'aiida_ilmlff.runner.contract']  # the one runner module the daemon imports


def test_no_heavy_imports_outside_runner():
    """Static check: no import statement of torch/mace/deepmd/tensorflow outside ``runner/``."""
    offenders = []
    for path in sorted(PACKAGE.rglob('*.py')):
        if 'runner' in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f'{path.relative_to(ROOT)}:{node.lineno} {n}' for n in names if n.split('.')[0] in HEAVY]
    assert not offenders, offenders


def test_daemon_side_modules_do_not_load_heavy_packages():
    """Dynamic check: importing every module the daemon may import loads none of the heavy packages."""
    code = (
        'import importlib, json, sys\n'
        f'for name in {_daemon_side_modules()!r}:\n'
        '    importlib.import_module(name)\n'
        f'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_entry_points_load():
    """Every ``ilmlff.*`` entry point of the distribution loads, and each name starts with ``ilmlff.``."""
    from importlib.metadata import distribution

    entry_points = [ep for ep in distribution('aiida-ilmlff').entry_points if ep.group.startswith('aiida.')]
    for entry_point in entry_points:
        assert entry_point.name.startswith('ilmlff.'), entry_point
        entry_point.load()


def test_calcjob_and_parser_share_names():
    from importlib.metadata import distribution

    eps = distribution('aiida-ilmlff').entry_points
    calculations = {ep.name for ep in eps if ep.group == 'aiida.calculations'}
    parsers = {ep.name for ep in eps if ep.group == 'aiida.parsers'}
    assert parsers <= calculations, parsers - calculations


def test_ruff_clean():
    result = subprocess.run(
        [str(BIN / 'ruff'), 'check', '.'], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [str(BIN / 'sphinx-build'), '-W', '-q', '-b', 'html', 'docs', str(tmp_path / 'html')],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
