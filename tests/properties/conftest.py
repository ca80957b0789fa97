"""Fixtures of the ``ilmlff.properties`` tests: the tiny MACE model and 2-pair PYR14BF4 box of the MD tests.

The fixtures are those of ``tests/md/conftest.py``, imported, so the models are cached in the SAME folder as the MD
tests (``.pytest_cache/d/ilmlff-<RECIPE_VERSION>`` or ``$ILMLFF_MD_CACHE``) and nothing is trained twice.
"""

from __future__ import annotations

import pytest

# The MD tests' fixtures, shared: the same cache folder, frames, tiny MACE model, box, runner code and job options.
from tests.md.conftest import (  # noqa: F401
    ELEMENTS,
    box_atoms,
    job_options,
    labelled_frames_file,
    mace_model,
    mace_model_file,
    md_cache,
    md_structure,
    runner_code,
)


@pytest.fixture
def model_stub(aiida_profile, tmp_path):
    """A stored MLFFModelData of a placeholder file covering B C F H N (for builders that are not run)."""
    from aiida_ilmlff.data import MLFFModelData

    path = tmp_path / 'stub.model'
    path.write_bytes(b'stub')
    return MLFFModelData.from_file(path, 'mace', elements=ELEMENTS, r_cut=4.0, dtype='float64', inspect=False).store()
