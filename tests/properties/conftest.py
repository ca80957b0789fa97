"""Fixtures of the ``ilmlff.properties`` tests alone (the tiny MACE model, box and runner code come from
:mod:`tests.fixtures`, cached in the same folder as the MD tests' so nothing is trained twice)."""

from __future__ import annotations

import pytest

from tests.fixtures.models import ELEMENTS


@pytest.fixture
def model_stub(aiida_profile, tmp_path):
    """A stored MLFFModelData of a placeholder file covering B C F H N (for builders that are not run)."""
    from aiida_ilmlff.data import MLFFModelData

    path = tmp_path / 'stub.model'
    path.write_bytes(b'stub')
    return MLFFModelData.from_file(path, 'mace', elements=ELEMENTS, r_cut=4.0, dtype='float64', inspect=False).store()
