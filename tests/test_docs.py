"""The reference and protocol pages cover what the package declares (fast: reads files, imports modules, no Sphinx).

The full Sphinx build (``-W``) is ``tests/test_repository.py::test_docs_build_without_warnings`` (slow).
"""

from __future__ import annotations

import importlib
import pathlib
import re
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
PROTOCOL_DIR = ROOT / 'aiida_ilmlff' / 'workflows' / 'protocols'
GROUPS = ('aiida.calculations', 'aiida.workflows', 'aiida.data')

#: ``.. aiida-calcjob:: Class`` / ``.. aiida-workchain:: Class`` followed by ``:module: package.module``.
PROCESS_DIRECTIVE = re.compile(r'\.\. aiida-(calcjob|workchain):: (\w+)\n\s+:module: ([\w.]+)')
#: ``.. autoclass:: package.module.Class``.
AUTOCLASS_DIRECTIVE = re.compile(r'\.\. autoclass:: ([\w.]+)')
#: HTML comments (where directives of modules that do not import yet wait, marked TODO).
HTML_COMMENT = re.compile(r'<!--.*?-->', re.S)


def _entry_points() -> list[tuple[str, str, str]]:
    """``(group, name, 'module:Class')`` of every entry point of :data:`GROUPS` in pyproject.toml."""
    declared = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['entry-points']
    return [(group, name, value) for group in GROUPS for name, value in declared.get(group, {}).items()]


def _reference() -> str:
    return (DOCS / 'reference.md').read_text()


def _documented_classes(text: str) -> set[str]:
    """``module:Class`` of every process and autoclass directive in ``text`` (commented-out ones included)."""
    classes = {f'{module}:{name}' for _, name, module in PROCESS_DIRECTIVE.findall(text)}
    classes |= {'{}:{}'.format(*path.rsplit('.', 1)) for path in AUTOCLASS_DIRECTIVE.findall(text)}
    return classes


@pytest.mark.parametrize(('group', 'name', 'value'), _entry_points(), ids=[ep[1] for ep in _entry_points()])
def test_entry_point_in_reference(group, name, value):
    """Every calculation, work chain and data entry point is named in docs/reference.md and has a directive there.

    A directive may sit in a ``<!-- TODO ... -->`` comment while its module is being written; the
    class it names must still be the one pyproject.toml declares.
    """
    text = _reference()
    assert f'`{name}`' in text, f'entry point `{name}` ({group}) is not mentioned in docs/reference.md'
    assert value in _documented_classes(text), (
        f'docs/reference.md has no aiida-calcjob/aiida-workchain/autoclass directive for {value} '
        f'(entry point `{name}`); add one (inside a TODO comment if the module does not import yet)'
    )


def test_active_reference_directives_import():
    """Directives outside comments name classes that import: the docs build would fail on them otherwise."""
    text = HTML_COMMENT.sub('', _reference())
    failures = []
    for path in sorted(_documented_classes(text)):
        module, name = path.split(':')
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exception:
            failures.append(f'{path}: {exception!r}')
    assert not failures, failures


def test_every_protocol_file_in_protocols_page():
    """Every protocol YAML file is named in docs/protocols.md by its path below workflows/protocols/."""
    text = (DOCS / 'protocols.md').read_text()
    files = sorted(path.relative_to(PROTOCOL_DIR).as_posix() for path in PROTOCOL_DIR.rglob('*.yaml'))
    assert files, f'no protocol files found under {PROTOCOL_DIR}'
    missing = [name for name in files if f'`{name}`' not in text]
    assert not missing, f'protocol files not described in docs/protocols.md: {missing}'


def test_doc_pages_are_in_a_toctree():
    """reference, protocols and howto_cluster are reachable from the index."""
    index = (DOCS / 'index.md').read_text()
    for page in ('reference', 'protocols', 'howto_cluster'):
        assert re.search(rf'^{page}$', index, re.M), f'docs/{page}.md is not in a toctree of docs/index.md'


def _command_paths(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command of a click group, as the words after ``aiida-ilmlff`` (groups and their sub-commands)."""
    import click

    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
    return paths


def test_every_cli_command_in_reference():
    """Every ``aiida-ilmlff`` command has its ``--help`` in the hand-written CLI section of docs/reference.md.

    (sphinx-click is not a docs dependency, so the help texts are copied; this catches a new command.)
    """
    from aiida_ilmlff.cli import cli

    text = _reference()
    missing = [' '.join(path) for path in _command_paths(cli) if f'$ aiida-ilmlff {" ".join(path)} --help' not in text]
    assert not missing, f'commands without their --help in docs/reference.md: {missing}'
