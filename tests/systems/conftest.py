"""Fixtures of the systems tests: the 10-pair PYR14BF4 and LiTFSI boxes (timed builds), and a clean ion registry."""

from __future__ import annotations

import time

import pytest

from aiida_ilmlff.systems import build_ionic_liquid, ions


@pytest.fixture
def clean_registry():
    """Forget ions registered by the test (library ions stay)."""
    before = dict(ions._REGISTERED)
    yield
    ions._REGISTERED.clear()
    ions._REGISTERED.update(before)


@pytest.fixture(scope='session')
def pyr14bf4_box_10():
    """PYR14BF4, 10 ion pairs at 1.2 g/cm^3, seed 0, with its build time in ``info['build_time_s']``."""
    start = time.perf_counter()
    atoms = build_ionic_liquid({'PYR14': 10, 'BF4': 10}, 1.2, seed=0)
    atoms.info['build_time_s'] = time.perf_counter() - start
    return atoms


@pytest.fixture(scope='session')
def litfsi_box():
    """LiTFSI in PYR14TFSI (x = 0.2, 10 anions) at 1.42 g/cm^3, seed 0."""
    start = time.perf_counter()
    atoms = build_ionic_liquid({'Li': 2, 'PYR14': 8, 'TFSI': 10}, 1.42, seed=0)
    atoms.info['build_time_s'] = time.perf_counter() - start
    return atoms
