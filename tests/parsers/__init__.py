"""Parser tests on real output files kept under ``tests/parsers/data``."""
