"""docs/exit_codes.md is what ``tools/exit_codes.py`` generates from the process specs today (fast, no Sphinx)."""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location('ilmlff_exit_codes_tool', ROOT / 'tools' / 'exit_codes.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exit_code_table_is_current():
    """The committed table equals a fresh rendering: regenerate with ``.venv/bin/python tools/exit_codes.py``."""
    tool = _generator()
    committed = tool.TARGET.read_text() if tool.TARGET.exists() else ''
    assert committed == tool.render(), (
        'docs/exit_codes.md is stale (an exit code was added, renumbered or reworded): '
        'run `.venv/bin/python tools/exit_codes.py` and commit the page'
    )


def test_every_process_entry_point_in_table():
    """Every ``ilmlff.*`` CalcJob and WorkChain of pyproject.toml has at least one row or is named in the page."""
    tool = _generator()
    text = tool.TARGET.read_text()
    missing = [name for _, name, _ in tool.entry_points() if f'`{name}`' not in text]
    assert not missing, f'processes without exit codes in docs/exit_codes.md: {missing}'


def test_exit_code_page_in_toctree():
    """docs/exit_codes.md is reachable from docs/index.md."""
    index = (ROOT / 'docs' / 'index.md').read_text()
    assert re.search(r'^exit_codes$', index, re.M), 'docs/exit_codes.md is not in a toctree of docs/index.md'


def _codes():
    """``(entry point, kind, status, label)`` of every own exit code of every ``ilmlff.*`` process."""
    tool = _generator()
    rows = []
    for kind, name, value in tool.entry_points():
        module, attribute = value.split(':')
        cls = getattr(importlib.import_module(module), attribute)
        rows += [(name, kind, code.status, label) for label, code in cls.spec().exit_codes.items()]
    return rows


def test_exit_codes_follow_the_policy():
    """docs/developing.md#exit-codes: sub-process failures are 4xx, a CalcJob's 400 is its wall time, one name
    for one meaning (``ERROR_MISSING_OUTPUT``, never ``ERROR_OUTPUT_MISSING``)."""
    rows = _codes()
    wrong = [row for row in rows if row[3].startswith('ERROR_SUB_PROCESS_FAILED_') and not 400 <= row[2] < 500]
    wrong += [row for row in rows if row[1] == 'CalcJob' and row[2] == 400 and row[3] != 'ERROR_OUT_OF_WALLTIME']
    wrong += [row for row in rows if row[3] == 'ERROR_OUTPUT_MISSING']
    assert not wrong, f'exit codes against the policy: {wrong}'
