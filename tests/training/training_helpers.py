"""Constants and small helpers shared by the training tests (imported by module name: tests/training is on sys.path)."""

from __future__ import annotations

import pathlib
import sys

from aiida_ilmlff.runner.calculators import thread_environment

BIN = pathlib.Path(sys.executable).parent

#: One thread everywhere (torch, TensorFlow, DeePMD, BLAS), passed to every job.
THREADS_ENV = {**thread_environment(1), 'TF_CPP_MIN_LOG_LEVEL': '2'}
LEVEL_OF_THEORY = 'cp2k/gfn1-xtb (fast)'


def job_options(**extra) -> dict:
    """``metadata.options`` of a tiny single-core job on localhost."""
    return {
        'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
        'withmpi': False,
        'max_wallclock_seconds': 600,
        'environment_variables': dict(THREADS_ENV),
        **extra,
    }


#: Tiny MACE hyperparameters (float64 so that evaluations can be compared to 1e-10).
TINY_MACE = {
    'r_max': 4.0,
    'num_channels': 8,
    'max_L': 0,
    'correlation': 2,
    'num_interactions': 2,
    'max_num_epochs': 4,
    'batch_size': 4,
    'valid_batch_size': 8,
    'default_dtype': 'float64',
    'seed': 3,
    'ema': True,
    'ema_decay': 0.9,
    'lr': 0.01,
}

#: Tiny DeePMD hyperparameters.
TINY_DEEPMD = {
    'neuron': [4, 8],
    'axis_neuron': 4,
    'fitting_neuron': [16, 16],
    'numb_steps': 200,
    'decay_steps': 40,
    'stop_lr': 1.0e-5,
    'disp_freq': 20,
    'save_freq': 100,
    'batch_size': 4,
    'seed': 5,
}


def localhost_code(label: str, executable: str, plugin: str):
    """Get or create the InstalledCode ``label`` on a ``localhost`` computer (usable from any fixture scope)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer('localhost')
    except NotExistent:
        computer = orm.Computer(
            label='localhost',
            hostname='localhost',
            transport_type='core.local',
            scheduler_type='core.direct',
            workdir='/tmp/ilmlff-test-work',
        ).store()
        computer.set_minimum_job_poll_interval(0)
        computer.set_default_mpiprocs_per_machine(1)
        computer.configure()
    found = orm.QueryBuilder().append(orm.InstalledCode, filters={'label': label}).first(flat=True)
    if found is not None:
        return found
    return orm.InstalledCode(
        label=label, computer=computer, filepath_executable=executable, default_calc_job_plugin=plugin
    ).store()
