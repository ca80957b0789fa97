"""docs/developing.md keeps its promises: the number flow names at most 8 files that exist (fast, reads files)."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / 'docs' / 'developing.md'


def _section(title: str) -> str:
    text = PAGE.read_text()
    match = re.search(rf'^## {re.escape(title)}\n(.*?)(?=^## |\Z)', text, re.M | re.S)
    assert match, f'docs/developing.md has no "## {title}" section'
    return match.group(1)


def test_number_flow_is_short_and_real():
    """ "How a number flows" lists, in order, at most 8 files of the package, each of which exists."""
    steps = re.findall(r'^\d+\. `(aiida_ilmlff/[\w/]+\.py)`', _section('How a number flows'), re.M)
    assert 1 <= len(steps) <= 8, steps
    missing = [path for path in steps if not (ROOT / path).is_file()]
    assert not missing, f'files named in "How a number flows" that do not exist: {missing}'


def test_exit_code_policy_and_fixture_modules_are_documented():
    """The exit-code bands are written down, and every module of tests/fixtures is in the fixtures table."""
    policy = _section('Exit codes')
    for band in ('3xx', '400', '4xx', '5xx', 'ERROR_SUB_PROCESS_FAILED_<STAGE>'):
        assert band in policy, band
    tests = _section('Tests')
    modules = sorted(p.name for p in (ROOT / 'tests' / 'fixtures').glob('*.py') if p.name != '__init__.py')
    missing = [name for name in modules if f'`tests/fixtures/{name}`' not in tests]
    assert not missing, f'fixture modules not described in docs/developing.md: {missing}'
