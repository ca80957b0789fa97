"""Fixtures of the MD tests: tiny real MACE and DeePMD models, a 2-pair PYR14BF4 box, the runner code.

The models are trained on frames labelled by real CP2K GFN1-xTB single points (see ``md_models.py``); they are
built once and cached under pytest's cache folder (``.pytest_cache/d/ilmlff-md-<recipe>``, or
``$ILMLFF_MD_CACHE``), so a cold session spends about 3-4 minutes on them and later sessions none.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
BIN = pathlib.Path(sys.executable).parent
sys.path.insert(0, str(HERE))

import md_models as model_recipes  # noqa: E402
from md_boxes import pyr14bf4_box  # noqa: E402

ELEMENTS = sorted(model_recipes.TYPE_MAP)
#: The starting box of the MD tests: one of the packings the models were trained on.
BOX = {'n_pairs': 2, 'seed': 0, 'volume_per_pair': 400.0, 'min_gap': 1.8}


@pytest.fixture(scope='session')
def md_cache(pytestconfig) -> pathlib.Path:
    """Folder where the labelled frames and the tiny models are kept between sessions."""
    override = os.environ.get('ILMLFF_MD_CACHE')
    if override:
        path = pathlib.Path(override) / model_recipes.RECIPE_VERSION
        path.mkdir(parents=True, exist_ok=True)
        return path
    return pathlib.Path(pytestconfig.cache.mkdir(f'ilmlff-{model_recipes.RECIPE_VERSION}'))


@pytest.fixture(scope='session')
def labelled_frames_file(md_cache) -> pathlib.Path:
    """Extended XYZ of 12 rattled 2-pair PYR14BF4 boxes with GFN1-xTB ``REF_energy``/``REF_forces``."""
    from md_xtb import cp2k_executable

    if not (md_cache / 'frames.xyz').exists() and cp2k_executable() is None:
        pytest.skip('cp2k.psmp is not installed: cannot label the training frames')
    return model_recipes.labelled_frames(md_cache)


@pytest.fixture(scope='session')
def mace_model_file(md_cache, labelled_frames_file) -> pathlib.Path:
    """A tiny MACE model (8 channels, L=0, r_max 4 Å, float64) trained on the xTB frames."""
    if not (BIN / 'mace_run_train').exists():
        pytest.skip('mace_run_train is not installed')
    return model_recipes.train_mace(labelled_frames_file, md_cache)


@pytest.fixture(scope='session')
def deepmd_model_file(md_cache, labelled_frames_file) -> pathlib.Path:
    """A tiny DeePMD se_e2_a model (TensorFlow, frozen .pb) trained on the xTB frames."""
    if not (BIN / 'dp').exists():
        pytest.skip('dp (deepmd-kit) is not installed')
    return model_recipes.train_deepmd(labelled_frames_file, md_cache)


def _model_node(path: pathlib.Path, architecture: str, dtype: str | None):
    from aiida_ilmlff.data import MLFFModelData

    return MLFFModelData.from_file(
        path,
        architecture,
        elements=ELEMENTS,
        type_map=model_recipes.TYPE_MAP,
        r_cut=model_recipes.R_CUT,
        dtype=dtype,
        inspect=False,
    ).store()


@pytest.fixture
def mace_model(aiida_profile, mace_model_file):
    """The tiny MACE model as a stored MLFFModelData."""
    return _model_node(mace_model_file, 'mace', 'float64')


@pytest.fixture
def deepmd_model(aiida_profile, deepmd_model_file):
    """The tiny DeePMD model as a stored MLFFModelData."""
    return _model_node(deepmd_model_file, 'deepmd', 'float64')


@pytest.fixture(scope='session')
def box_atoms():
    """The 2-pair PYR14BF4 box (70 atoms, ~9.3 Å cubic) with ``mol_id`` and ``molecules``."""
    return pyr14bf4_box(**BOX)


@pytest.fixture
def md_structure(aiida_profile, box_atoms):
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
        label='ilmlff-runner-md-test',
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


@pytest.fixture
def runner_workdir(tmp_path, box_atoms):
    """A folder with ``structure.extxyz`` (the box) for in-process runner tests; returns the folder."""
    from ase.io import write

    atoms = box_atoms.copy()
    atoms.info = {'molecules': ' '.join(box_atoms.info['molecules'])}
    write(str(tmp_path / 'structure.extxyz'), atoms, format='extxyz')
    return tmp_path


@pytest.fixture
def copy_tree():
    """``copy_tree(src, dst)``: copy a folder (for runs that continue in a new folder)."""
    return lambda src, dst: shutil.copytree(src, dst)


@pytest.fixture(scope='session')
def deepmd_calculator(deepmd_model_file):
    """The tiny DeePMD model loaded once in this process (an ASE calculator) for in-process runner tests."""
    from aiida_ilmlff.runner.calculators import configure_threads, load_calculator

    configure_threads(1)
    return load_calculator({'path': str(deepmd_model_file), 'architecture': 'deepmd'})


@pytest.fixture(scope='session')
def mace_calculator(mace_model_file):
    """The tiny MACE model loaded once in this process (an ASE calculator, float64)."""
    from aiida_ilmlff.runner.calculators import configure_threads, load_calculator

    configure_threads(1)
    return load_calculator({'path': str(mace_model_file), 'architecture': 'mace'}, dtype='float64')
