"""Fixtures of the active-learning tests: stand-in codes and builders (fast tests), real codes (the tiny run)."""

from __future__ import annotations

import os
import pathlib
import stat
import sys

import pytest

from tests.fixtures.codes import options

HERE = pathlib.Path(__file__).resolve().parent
#: ``metadata.options`` of every job: one core, one thread everywhere.
JOB_OPTIONS = options()


@pytest.fixture
def standin_codes(aiida_localhost, tmp_path_factory):
    """``{'train', 'runner', 'label'}``: the stand-in runner script, and placeholder training/CP2K codes.

    The training and labelling codes never run (their work chains are swapped for stand-ins); the runner
    runs the real ``ilmlff.md`` / ``ilmlff.evaluate`` jobs with stand-in models (``al_standin_runner.py``).
    """
    from aiida import orm

    aiida_localhost.set_minimum_job_poll_interval(0.0)
    folder = tmp_path_factory.mktemp('standin')
    script = folder / 'ilmlff-runner-standin'
    runner = HERE / 'al_standin_runner.py'
    script.write_text(f'#!{sys.executable}\nimport runpy, sys\nsys.exit(runpy.run_path({str(runner)!r})["main"]())\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def code(label, executable, plugin):
        existing = orm.QueryBuilder().append(orm.InstalledCode, filters={'label': label}).first(flat=True)
        if existing is not None and existing.filepath_executable == pathlib.PurePosixPath(executable):
            return existing
        return orm.InstalledCode(
            label=label, computer=aiida_localhost, filepath_executable=str(executable), default_calc_job_plugin=plugin
        ).store()

    return {
        'runner': code(f'al-standin-runner-{os.getpid()}-{folder.name}', script, 'ilmlff.md'),
        'train': code('al-standin-train', '/bin/true', 'ilmlff.mace.train'),
        'label': code('al-standin-cp2k', '/bin/true', 'cp2k'),
    }


@pytest.fixture
def copper_frames(aiida_profile):
    """A factory ``copper_frames(n=4, seed=0)`` -> stored FramesData of EMT-labelled 8-atom Cu boxes."""
    from aiida_ilmlff.data import FramesData

    from .al_standins import copper_atoms

    return lambda n=4, seed=0: FramesData.from_ase(copper_atoms(n, seed)).store()


@pytest.fixture
def copper_structure(aiida_profile):
    """The unrattled 8-atom fcc Cu box as a StructureData (the exploration's starting structure)."""
    from aiida import orm
    from ase.build import bulk

    return orm.StructureData(ase=bulk('Cu', 'fcc', a=3.6, cubic=True).repeat((2, 1, 1)))


STANDIN_OVERRIDES = {
    'max_iterations': 4,
    'conv_accuracy': 0.8,
    # DP-GEN's absolute levels and its 320 on no candidate (the `fast` protocol is relative, with the fallback)
    'selection': {
        'task_max': 4,
        'duplicate_rmsd': 0.0,
        'min_distance': 1.5,
        'trust_levels': 'absolute',
        'f_lo': 0.05,
        'f_hi': 0.15,
        'fallback_to_failed': False,
    },
    'train': {'committee_size': 2, 'valid_fraction': 0.5},
    'exploration': {
        'parameters': {'traj_every': 5, 'thermo_every': 5, 'checkpoint_every': 100, 'timestep_fs': 2.0},
        'stages': [{'ensemble': 'nvt', 'temperatures_K': [300.0], 'steps': 100}],
        'max_guard_restarts': 0,
    },
}


@pytest.fixture
def standin_builder(standin_codes, copper_frames, copper_structure):
    """A factory ``standin_builder(overrides=None, frames=None)`` -> builder of ``StandInActiveLearning``."""
    from aiida_ilmlff.workflows.protocols import recursive_merge

    from .al_standins import StandInActiveLearning

    def factory(overrides=None, frames=None):
        return StandInActiveLearning.get_builder_from_protocol(
            standin_codes,
            frames if frames is not None else copper_frames(4),
            structures={'cu': copper_structure},
            protocol='fast',
            overrides=recursive_merge(STANDIN_OVERRIDES, overrides or {}),
            options=JOB_OPTIONS,
        )

    return factory
