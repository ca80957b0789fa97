"""Data of the parser tests: real output files under ``tests/parsers/data/<case>/`` (how each case was produced
is in the module that uses it). The ``parse_folder`` fixture is in ``tests/fixtures/parsers.py``.
"""

from __future__ import annotations

import pathlib

DATA = pathlib.Path(__file__).resolve().parent / 'data'
