"""Fixtures of the ``ilmlff.properties`` tests: the tiny MACE model and 2-pair PYR14BF4 box of the MD tests.

The model recipes live in ``tests/md/md_models.py`` (imported by bare name, as ``tests/md/conftest.py`` does) and
their results are cached in the SAME folder as the MD tests (``.pytest_cache/d/ilmlff-<RECIPE_VERSION>`` or
``$ILMLFF_MD_CACHE``), so nothing is trained twice.
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

MD_TESTS = pathlib.Path(__file__).resolve().parents[1] / 'md'
BIN = pathlib.Path(sys.executable).parent
if str(MD_TESTS) not in sys.path:
    sys.path.insert(0, str(MD_TESTS))

import md_models as model_recipes  # noqa: E402
from md_boxes import pyr14bf4_box  # noqa: E402

ELEMENTS = sorted(model_recipes.TYPE_MAP)
#: The box of the MD tests (one of the packings the tiny models were trained on): 2 PYR14BF4 pairs, 70 atoms.
BOX = {'n_pairs': 2, 'seed': 0, 'volume_per_pair': 400.0, 'min_gap': 1.8}


@pytest.fixture(scope='session')
def md_cache(pytestconfig) -> pathlib.Path:
    """The MD tests' cache folder of labelled frames and tiny models."""
    override = os.environ.get('ILMLFF_MD_CACHE')
    if override:
        path = pathlib.Path(override) / model_recipes.RECIPE_VERSION
        path.mkdir(parents=True, exist_ok=True)
        return path
    return pathlib.Path(pytestconfig.cache.mkdir(f'ilmlff-{model_recipes.RECIPE_VERSION}'))


@pytest.fixture(scope='session')
def mace_model_file(md_cache) -> pathlib.Path:
    """The tiny MACE model of the MD tests (trained on GFN1-xTB frames; built once, cached)."""
    from md_xtb import cp2k_executable

    if not (md_cache / 'frames.xyz').exists() and cp2k_executable() is None:
        pytest.skip('cp2k.psmp is not installed: cannot label the training frames')
    if not (BIN / 'mace_run_train').exists():
        pytest.skip('mace_run_train is not installed')
    return model_recipes.train_mace(model_recipes.labelled_frames(md_cache), md_cache)


@pytest.fixture
def mace_model(aiida_profile, mace_model_file):
    """The tiny MACE model as a stored MLFFModelData."""
    from aiida_ilmlff.data import MLFFModelData

    return MLFFModelData.from_file(
        mace_model_file,
        'mace',
        elements=ELEMENTS,
        type_map=model_recipes.TYPE_MAP,
        r_cut=model_recipes.R_CUT,
        dtype='float64',
        inspect=False,
    ).store()


@pytest.fixture
def model_stub(aiida_profile, tmp_path):
    """A stored MLFFModelData of a placeholder file covering B C F H N (for builders that are not run)."""
    from aiida_ilmlff.data import MLFFModelData

    path = tmp_path / 'stub.model'
    path.write_bytes(b'stub')
    return MLFFModelData.from_file(path, 'mace', elements=ELEMENTS, r_cut=4.0, dtype='float64', inspect=False).store()


@pytest.fixture(scope='session')
def box_atoms():
    """The 2-pair PYR14BF4 box (70 atoms, ~9.3 Å cubic) with ``mol_id`` and ``molecules``."""
    return pyr14bf4_box(**BOX)


@pytest.fixture
def box_structure(aiida_profile, box_atoms):
    """The box as a StructureData with the ``mol_id`` and ``molecules`` attributes of the box builder."""
    from aiida import orm

    structure = orm.StructureData(ase=box_atoms)
    structure.base.attributes.set('mol_id', box_atoms.arrays['mol_id'].tolist())
    structure.base.attributes.set('molecules', list(box_atoms.info['molecules']))
    return structure


@pytest.fixture
def runner_code(aiida_code_installed, aiida_localhost):
    """``ilmlff-runner`` of this virtual environment as an InstalledCode on localhost (no poll delay)."""
    executable = BIN / 'ilmlff-runner'
    if not executable.exists():
        pytest.skip('ilmlff-runner is not installed: pip install -e .')
    aiida_localhost.set_minimum_job_poll_interval(0.0)
    return aiida_code_installed(
        label='ilmlff-runner-properties-test',
        default_calc_job_plugin='ilmlff.md',
        computer=aiida_localhost,
        filepath_executable=str(executable),
    )


@pytest.fixture
def job_options():
    """``metadata.options`` of a one-core job with one thread everywhere."""
    return {
        'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
        'withmpi': False,
        'max_wallclock_seconds': 900,
        'environment_variables': dict(model_recipes.THREADS_ENV),
    }
