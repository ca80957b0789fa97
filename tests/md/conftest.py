"""Fixtures of the MD tests alone: in-process runner folders.

The tiny real MACE and DeePMD models, the 2-pair PYR14BF4 box (``box_atoms``, ``md_structure``), ``runner_code``
and ``job_options`` are shared fixtures of :mod:`tests.fixtures` (models cached on disk, see
:mod:`tests.fixtures.models`).
"""

from __future__ import annotations

import shutil

import pytest


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
