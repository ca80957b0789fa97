"""The production path on this machine: Slurm reached over SSH (``tools/slurm_ssh.sh``; issue 19).

The computer comes from ``docs/computers/slurm-ssh.yaml`` through ``aiida-ilmlff setup --computer-config``,
in the test profile; a real CP2K GFN1-xTB labelling (``ilmlff.label``, protocol ``fast``) and a short runner MD
(``ilmlff.md.base``, the tiny MACE model) run as Slurm jobs. Each CalcJob's ``job_id`` must be a job that Slurm
ran (``scontrol show job``, else the job completion log), in the CalcJob's remote folder below the computer's
work directory, apart from the checkout. Without Slurm and SSH the test fails and says how to start them.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import time

import pytest
from aiida import orm
from aiida.engine import run_get_node

from tests.fixtures.codes import BIN, options

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPUTER_YAML = REPO_ROOT / 'docs' / 'computers' / 'slurm-ssh.yaml'
SSH_HOST = 'ilmlff-slurm'  # the ``Host`` entry tools/slurm_ssh.sh writes to ~/.ssh/config
JOBCOMP_LOG = pathlib.Path('/var/log/slurm/jobcomp.log')
LABEL = 'ilmlff-slurm-test'
START_IT = 'run `sudo bash tools/slurm_ssh.sh` first (.ci/run does)'

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]


def _run(command: list[str], timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope='module')
def slurm_over_ssh():
    """Fail (never skip) unless ``sinfo`` shows a node up and ``ssh ilmlff-slurm`` works without a prompt; the
    remote user name."""
    if shutil.which('sinfo') is None:
        pytest.fail(f'Slurm is not installed here (no `sinfo`): {START_IT}')
    states = _run(['sinfo', '-h', '-N', '-o', '%t'])
    if states.returncode != 0 or not re.search(r'^(idle|mix|alloc|comp)', states.stdout, re.M):
        pytest.fail(f'no Slurm node is up (`sinfo`: {(states.stdout + states.stderr).strip()!r}): {START_IT}')
    ssh = _run(['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', SSH_HOST, 'whoami'])
    if ssh.returncode != 0:
        pytest.fail(f'`ssh {SSH_HOST} whoami` fails ({ssh.stderr.strip()!r}): {START_IT}')
    return ssh.stdout.strip()  # the user the jobs run as (``{username}`` of the work directory)


@pytest.fixture
def slurm_computer(aiida_profile, slurm_over_ssh):
    """The computer of ``docs/computers/slurm-ssh.yaml`` (label ``ilmlff-slurm-test``) and its codes, made by
    ``aiida-ilmlff setup`` in the test profile; a second call changes nothing. The first test of the session that
    uses it creates them (the profile is the session's), the others find them."""
    from aiida.manage import get_manager
    from click.testing import CliRunner

    from aiida_ilmlff.cli.setup import setup

    exists = orm.Computer.collection.count(filters={'label': LABEL}) > 0
    get_manager().get_runner()  # the test profile's runner (with its broker), before the command needs one
    args = [
        '--profile', aiida_profile.name, '--computer', LABEL, '--computer-config', str(COMPUTER_YAML),
        '--executable', f'ilmlff-runner={BIN / "ilmlff-runner"}',
        '--executable', f'mace-train={BIN / "mace_run_train"}', '--executable', f'dp={BIN / "dp"}',
    ]  # fmt: skip
    first = CliRunner().invoke(setup, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    done = 'exists' if exists else 'created'
    assert f'computer   {LABEL}: {done}' in first.output, first.output
    if not exists:
        assert f'computer   {LABEL}: created (core.ssh_async, core.slurm' in first.output, first.output
    assert f'code       cp2k@{LABEL}: {done}' in first.output, first.output
    assert f'code       ilmlff-runner@{LABEL}: {done}' in first.output, first.output
    second = CliRunner().invoke(setup, args, catch_exceptions=False)
    assert second.exit_code == 0 and 'created' not in second.output, second.output
    computer = orm.load_computer(LABEL)
    assert computer.get_minimum_job_poll_interval() == 2.0
    return computer, computer.get_workdir().format(username=slurm_over_ssh)


def _calcjobs(node: orm.ProcessNode) -> list[orm.CalcJobNode]:
    return sorted((n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)), key=lambda n: n.pk)


def _slurm_record(job_id: str) -> str:
    """What Slurm knows of job ``job_id``: ``scontrol show job`` (kept 1 h), else its job completion log line."""
    shown = _run(['scontrol', 'show', 'job', job_id])
    if shown.returncode == 0 and f'JobId={job_id} ' in shown.stdout:
        return shown.stdout
    lines = JOBCOMP_LOG.read_text().splitlines() if JOBCOMP_LOG.exists() else []
    return next((line for line in lines if line.startswith(f'JobId={job_id} ')), '')


def _check_ran_in_slurm(node: orm.ProcessNode, computer: orm.Computer, work_dir: str) -> list[str]:
    """Every CalcJob of ``node`` ran on ``computer`` as a completed Slurm job in its remote folder below
    ``work_dir``; returns the job ids."""
    job_ids = []
    calcs = _calcjobs(node)
    assert calcs, 'no CalcJob ran'
    for calc in calcs:
        assert calc.computer.uuid == computer.uuid
        job_id = calc.get_job_id()
        assert job_id and job_id.isdigit(), f'{calc.process_label}<{calc.pk}> has no Slurm job id: {job_id!r}'
        remote = calc.get_remote_workdir()
        assert remote.startswith(work_dir + '/'), (remote, work_dir)
        assert not pathlib.Path(remote).resolve().is_relative_to(REPO_ROOT), remote
        record = _slurm_record(job_id)
        assert record, f'Slurm does not know job {job_id} of {calc.process_label}<{calc.pk}>'
        assert f'aiida-{calc.pk}' in record, record  # AiiDA names each job aiida-PK
        assert 'JobState=COMPLETED' in record, record
        if 'WorkDir=' in record:
            assert f'WorkDir={remote}' in record, (record, remote)
        job_ids.append(job_id)
    return job_ids


def test_label_and_md_run_as_slurm_jobs_over_ssh(slurm_computer, md_structure, mace_model):
    """One CP2K GFN1-xTB single point (``ilmlff.label``) and one 10-step runner MD (``ilmlff.md.base``)."""
    from aiida_ilmlff.data import FramesData
    from aiida_ilmlff.workflows.label import LabelWorkChain
    from aiida_ilmlff.workflows.md import MDBaseWorkChain
    from tests.workflows.conftest import libf4_atoms

    computer, work_dir = slurm_computer
    assert not pathlib.Path(work_dir).resolve().is_relative_to(REPO_ROOT), work_dir
    cp2k = orm.load_code(f'cp2k@{LABEL}')
    runner = orm.load_code(f'ilmlff-runner@{LABEL}')
    job_options = options(max_wallclock_seconds=600)

    start = time.monotonic()
    frames = FramesData.from_ase([libf4_atoms(0)]).store()
    builder = LabelWorkChain.get_builder_from_protocol(cp2k, frames, protocol='fast', options=job_options)
    results, label_node = run_get_node(builder)
    label_seconds = time.monotonic() - start
    assert label_node.is_finished_ok, label_node.exit_message
    assert len(results['labelled']) == 1
    label_jobs = _check_ran_in_slurm(label_node, computer, work_dir)

    start = time.monotonic()
    parameters = {'steps': 10, 'traj_every': 5, 'thermo_every': 5, 'checkpoint_every': 5, 'temperature_K': 450.0}
    builder = MDBaseWorkChain.get_builder_from_protocol(
        runner,
        md_structure,
        models=[mace_model],
        protocol='fast',
        overrides={'md': {'parameters': parameters, 'metadata': {'options': job_options}}},
    )
    _, md_node = run_get_node(builder)
    md_seconds = time.monotonic() - start
    assert md_node.is_finished_ok, md_node.exit_status
    assert md_node.outputs.trajectory.n_frames == 3
    md_jobs = _check_ran_in_slurm(md_node, computer, work_dir)
    print(
        f'Slurm over SSH: labelling {label_seconds:.1f} s (jobs {label_jobs}), MD {md_seconds:.1f} s (jobs {md_jobs})'
    )
