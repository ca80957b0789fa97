"""Progress monitors (``ilmlff.mace.progress``, ``ilmlff.deepmd.progress``, ``ilmlff.md.progress``).

The pure readers run on the real files of the parser tests (``data/mace_train``: a 4-epoch ``mace_run_train``
log; ``data/deepmd_train``: a 200-step ``dp --tf train`` ``lcurve.out``; ``data/runner_md/completed``: the
``thermo.csv`` and ``deviation.csv`` of a 20-step committee MD), whole, cut where a running job would be, and with
a half-written last line. The monitors run through the real local transport on a stored CalcJob node whose remote
work directory is a temporary folder that the test fills as a job would; their lines are read back with
``verdi process report``'s own function.
"""

from __future__ import annotations

import shutil

import pytest

from aiida_ilmlff.calculations import progress
from aiida_ilmlff.calculations.progress import (
    PROGRESS_EXTRA,
    PROGRESS_MONITORS,
    deepmd_progress,
    deepmd_progress_monitor,
    mace_progress,
    mace_progress_monitor,
    md_progress,
    md_progress_monitor,
)

from .conftest import DATA

MACE_LOG = (DATA / 'mace_train' / 'logs' / 'mace_run-3.log').read_text()
LCURVE = (DATA / 'deepmd_train' / 'lcurve.out').read_text()
THERMO = (DATA / 'runner_md' / 'completed' / 'thermo.csv').read_text()
DEVIATION = (DATA / 'runner_md' / 'completed' / 'deviation.csv').read_text()


def _upto(text: str, marker: str) -> str:
    """``text`` up to and including the line that contains ``marker``."""
    lines = text.splitlines(keepends=True)
    index = next(k for k, line in enumerate(lines) if marker in line)
    return ''.join(lines[: index + 1])


def test_mace_progress_on_the_real_log():
    """The last validation line, its epoch counted from 1 of ``max_num_epochs``, and the end of training."""
    assert mace_progress(MACE_LOG, 4) == (
        'MACE epoch 4/4: validation loss=7.01, RMSE_E_per_atom=659.8 meV, RMSE_F=645.2 meV / A; training complete'
    )
    running = _upto(MACE_LOG, 'Epoch 1:')
    assert mace_progress(running, 4) == (
        'MACE epoch 2/4: validation loss=21.93, RMSE_E_per_atom=835.5 meV, RMSE_F=1144 meV / A'
    )
    assert mace_progress(running, None).startswith('MACE epoch 2: ')
    # a half-written next line (no newline yet) is not read
    assert mace_progress(running + '2026-12-04 15:47:06.130 INFO: Epoch 2: head: Default, loss=10.7', 4) == (
        mace_progress(running, 4)
    )
    assert mace_progress(_upto(MACE_LOG, 'Initial:'), 4).startswith('MACE before training: validation loss=33.53,')
    assert mace_progress(_upto(MACE_LOG, 'Started training'), 4) is None
    assert mace_progress('', 4) is None and mace_progress(None) is None


def test_deepmd_progress_on_the_real_lcurve():
    """The last complete row of ``lcurve.out`` by its header's names; no header or no row: no line."""
    assert deepmd_progress(LCURVE, 200) == (
        'DeePMD step 200/200: rmse_val=3.61, rmse_trn=5.8, rmse_e_val=0.305, rmse_e_trn=0.272, rmse_f_val=1.06, '
        'rmse_f_trn=1.74, lr=1e-05 (rmse_e eV/atom, rmse_f eV/Å)'
    )
    lines = LCURVE.splitlines(keepends=True)
    tail = lines[0] + ''.join(lines[-3:-1])  # what the monitor reads mid-run: the header and the last rows
    assert deepmd_progress(tail, 200).startswith('DeePMD step 180/200: rmse_val=5.49, ')
    assert deepmd_progress(tail + '    200      3.61e+00    5.8', 200) == deepmd_progress(tail, 200)
    assert deepmd_progress(''.join(lines[-3:]), 200) is None  # rows without the header
    assert deepmd_progress(''.join(lines[:2]), 200) is None  # the header alone


def test_md_progress_on_the_real_thermo_and_deviation():
    """Step, simulated time, temperature, total energy, pressure, density; a committee adds the force deviation."""
    assert md_progress(THERMO, 20, 1.0) == (
        'MD step 20/20, t 20 fs of 20 fs: T 254.2 K, E_tot -3032.879 eV, P -2750 bar, density 0.95 g/cm^3'
    )
    assert md_progress(THERMO, 20, 1.0, DEVIATION).endswith('; max force deviation 1.814 eV/Å (step 20)')
    lines = THERMO.splitlines(keepends=True)
    half = ''.join(lines[-3:-1]) + lines[-1][:12]
    assert md_progress(half, None).startswith('MD step 15, t 15 fs: T 393.7 K,')
    assert md_progress(lines[0], 20) is None  # the header alone
    assert md_progress('', 20) is None


@pytest.fixture
def running_job(aiida_localhost, tmp_path):
    """A stored ``ilmlff.md``-like CalcJob node on ``localhost`` whose remote work directory is ``tmp_path``."""
    from aiida import orm
    from aiida.common.links import LinkType

    def make(process_type: str, parameters: dict) -> orm.CalcJobNode:
        node = orm.CalcJobNode(computer=aiida_localhost, process_type=f'aiida.calculations:{process_type}')
        node.set_remote_workdir(str(tmp_path))
        node.base.links.add_incoming(orm.Dict(parameters).store(), LinkType.INPUT_CALC, 'parameters')
        node.set_option('resources', {'num_machines': 1, 'num_mpiprocs_per_machine': 1})
        return node.store()

    return make


def _report_lines(node) -> list[str]:
    from aiida import orm

    return [log.message for log in orm.Log.collection.get_logs_for(node)]


def test_monitors_report_each_new_line_once_through_the_transport(running_job, tmp_path, aiida_localhost):
    """Through the local transport, as the engine calls them: no file, no line; each new line once; a half-written
    row changes nothing; the lines are what ``verdi process report`` prints; the job is never stopped."""
    from aiida.cmdline.utils.common import get_calcjob_report

    node = running_job('ilmlff.md', {'ensemble': 'nvt', 'steps': 20, 'timestep_fs': 1.0})
    thermo = tmp_path / 'thermo.csv'
    with aiida_localhost.get_transport() as transport:
        assert md_progress_monitor(node, transport) is None
        assert _report_lines(node) == []
        lines = THERMO.splitlines(keepends=True)
        thermo.write_text(''.join(lines[:3]))
        assert md_progress_monitor(node, transport) is None
        md_progress_monitor(node, transport)  # nothing new
        thermo.write_text(''.join(lines[:3]) + lines[3][:10])  # a row being written
        md_progress_monitor(node, transport)
        thermo.write_text(''.join(lines))
        shutil.copy(DATA / 'runner_md' / 'completed' / 'deviation.csv', tmp_path / 'deviation.csv')
        md_progress_monitor(node, transport)
    reported = _report_lines(node)
    assert reported == [md_progress(''.join(lines[:3]), 20, 1.0), md_progress(THERMO, 20, 1.0, DEVIATION)]
    assert reported[0].startswith('MD step 5/20, t 5 fs of 20 fs: T 280.3 K, E_tot -3032.947 eV')
    assert node.base.extras.get(PROGRESS_EXTRA) == reported[-1]
    report = get_calcjob_report(node)
    assert all(line in report for line in reported), report


def test_training_monitors_read_the_files_where_the_job_runs(running_job, tmp_path, aiida_localhost):
    """``mace_run_train``'s log under ``logs/`` (named by the seed) and DeePMD's ``lcurve.out``."""
    mace = running_job('ilmlff.mace.train', {'seed': 3, 'max_num_epochs': 4})
    deepmd = running_job('ilmlff.deepmd.train', {'numb_steps': 200})
    with aiida_localhost.get_transport() as transport:
        mace_progress_monitor(mace, transport)
        deepmd_progress_monitor(deepmd, transport)
        (tmp_path / 'logs').mkdir()
        (tmp_path / 'logs' / 'mace_run-3.log').write_text(MACE_LOG)
        (tmp_path / 'lcurve.out').write_text(LCURVE)
        mace_progress_monitor(mace, transport)
        deepmd_progress_monitor(deepmd, transport)
    assert _report_lines(mace) == [mace_progress(MACE_LOG, 4)]
    assert _report_lines(deepmd) == [deepmd_progress(LCURVE, 200)]


def test_a_broken_transport_never_stops_the_job(running_job):
    """Every error of the transport or the node is swallowed: the monitor returns None and reports nothing."""

    class Broken:
        def exec_command_wait(self, *args, **kwargs):
            raise OSError('connection reset by peer')

    node = running_job('ilmlff.md', {'ensemble': 'nvt', 'steps': 20})
    for monitor in (mace_progress_monitor, deepmd_progress_monitor, md_progress_monitor):
        assert monitor(node, Broken()) is None
    assert _report_lines(node) == []


@pytest.mark.parametrize('plugin', sorted(PROGRESS_MONITORS))
def test_entry_points_are_valid_monitors(plugin):
    """aiida-core accepts each entry point as a monitor (signature ``node, transport``) with a poll interval."""
    from aiida.engine.processes.calcjobs.monitors import CalcJobMonitor

    monitor = CalcJobMonitor(entry_point=PROGRESS_MONITORS[plugin], minimum_poll_interval=30)
    function = monitor.load_entry_point()
    assert function is getattr(progress, function.__name__) and function.__name__.endswith('_progress_monitor')


def test_the_demo_prints_each_new_progress_line_once(running_job, capsys):
    """``examples/_pipeline_demo.py`` (``make demo``) prints a job's progress line when it changes, once."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / 'examples' / '_pipeline_demo.py'
    spec = importlib.util.spec_from_file_location('pipeline_demo', path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)

    node = running_job('ilmlff.md', {'ensemble': 'nvt', 'steps': 20})
    node.base.extras.set(PROGRESS_EXTRA, 'MD step 5/20')
    shown: dict = {}
    demo._print_progress([node], shown)
    demo._print_progress([node], shown)
    node.base.extras.set(PROGRESS_EXTRA, 'MD step 10/20')
    demo._print_progress([node], shown)
    label = f'{node.process_label}<{node.pk}>'
    assert capsys.readouterr().out.splitlines() == [f'    {label}: MD step 5/20', f'    {label}: MD step 10/20']
