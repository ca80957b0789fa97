"""Faults of the production path (issue 19, 3c): the SSH server stops for a minute while a CalcJob runs on Slurm.

The test starts an SSH server of its own (``sshd`` on a free port of 127.0.0.1, key authentication with the key
of ``tools/slurm_ssh.sh``), so that stopping it cuts no other test's connection to ``ilmlff-slurm``. A computer
``ilmlff-slurm-outage`` reaches the same Slurm through it with ``core.ssh`` (paramiko: its port is a computer
setting; ``core.ssh_async`` takes the port from ``~/.ssh/config`` only). The back-off under test is the engine's
(``aiida.engine.utils.exponential_backoff_retry`` around every transport task: 20, 40, 80, 160 s, then the
process pauses), the same for every transport.

A runner MD (``ilmlff.md.base``, the tiny MACE model) runs in-process; once its job runs in ``squeue``, a thread
stops the server (the listener and every session it serves) for 60 s and starts it again. The work chain must
finish with one CalcJob (the job was not resubmitted) whose job Slurm completed; the CalcJob's report shows the
failed transport tasks being retried. A minute is inside the back-off (the fourth try comes 20 + 40 + 80 = 140 s
after the first failure): the process must not pause. An outage longer than the back-off (about 5 minutes with
the defaults; the second test shortens the back-off to ~15 s and stops the server for 30 s) pauses the CalcJob,
and the test resumes it as docs/howto_cluster.md tells a user: ``verdi process list --paused``, then
``verdi process play PK`` (subprocesses on the test profile, whose daemon runs that work chain).
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.daemon_recovery import DAEMON_TIMEOUT
from tests.fixtures.codes import BIN
from tests.slurm.test_faults import MD_PARAMETERS, md_builder, report_lines, started_job
from tests.slurm.test_slurm_ssh import _slurm_record, slurm_over_ssh  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

OUTAGE_SECONDS = 60.0
KEY = pathlib.Path(os.environ.get('ILMLFF_SSH_KEY', pathlib.Path.home() / '.ssh' / 'ilmlff_ci_ed25519'))
LABEL = 'ilmlff-slurm-outage'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """The ids of the processes whose parent is ``pid`` (the sessions a listening ``sshd`` forked)."""
    found = []
    for stat in pathlib.Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class Sshd:
    """An ``sshd`` of this test on 127.0.0.1:``port``: :meth:`start`, :meth:`stop` (listener and sessions)."""

    def __init__(self, folder: pathlib.Path):
        self.port = _free_port()
        self.pidfile = folder / 'sshd.pid'
        self.config = folder / 'sshd_config'
        self.config.write_text(
            f'Port {self.port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/ssh_host_ed25519_key\n'
            f'PidFile {self.pidfile}\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n'
            'PasswordAuthentication no\nKbdInteractiveAuthentication no\nAuthorizedKeysFile .ssh/authorized_keys\n'
            'UsePAM no\nMaxStartups 100:30:200\nMaxSessions 100\nSubsystem sftp /usr/lib/openssh/sftp-server\n'
        )

    def start(self) -> None:
        subprocess.run(['/usr/sbin/sshd', '-f', str(self.config)], check=True, timeout=30)
        for _ in range(50):
            with socket.socket() as sock:
                if sock.connect_ex(('127.0.0.1', self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f'sshd did not listen on 127.0.0.1:{self.port}')

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().split()[0])
        sessions = _children(pid)
        for target in [pid, *sessions]:
            try:
                os.kill(target, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for _ in range(50):
            if not any(pathlib.Path(f'/proc/{target}').exists() for target in [pid, *sessions]):
                break
            time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)


@pytest.fixture
def outage_sshd(tmp_path, slurm_over_ssh):  # noqa: F811
    """A running :class:`Sshd` of this test (stopped at the end), and the remote user."""
    if os.geteuid() != 0:
        pytest.fail('the SSH-outage test starts an sshd of its own: run it as root (as .ci/run does)')
    if not KEY.exists():
        pytest.fail(f'no key {KEY}: run `sudo bash tools/slurm_ssh.sh` first')
    server = Sshd(tmp_path)
    server.start()
    yield server, slurm_over_ssh
    server.stop()


@pytest.fixture
def outage_computer(aiida_profile, outage_sshd):
    """Computer ``ilmlff-slurm-outage``: Slurm over ``core.ssh`` to the test's own sshd, with ``ilmlff-runner``."""
    server, user = outage_sshd
    computer = orm.Computer(
        label=f'{LABEL}-{server.port}',
        hostname='127.0.0.1',
        description='Slurm on this machine through the SSH server of the SSH-outage test',
        transport_type='core.ssh',
        scheduler_type='core.slurm',
        workdir='/var/tmp/ilmlff-slurm-work/{username}',
    ).store()
    computer.set_mpirun_command(['srun', '-n', '{tot_num_mpiprocs}'])
    computer.set_default_mpiprocs_per_machine(1)
    computer.set_minimum_job_poll_interval(2)
    computer.set_prepend_text('export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}')
    computer.configure(
        username=user,
        port=server.port,
        key_filename=str(KEY),
        look_for_keys=False,
        allow_agent=False,
        key_policy='AutoAddPolicy',
        load_system_host_keys=False,
        timeout=10,
        safe_interval=1.0,
    )
    code = orm.InstalledCode(
        label='ilmlff-runner',
        computer=computer,
        filepath_executable=str(BIN / 'ilmlff-runner'),
        default_calc_job_plugin='ilmlff.md',
    ).store()
    return computer, code


class Outage(threading.Thread):
    """When the job with Slurm comment ``token`` runs its script, stop ``server`` for ``seconds``, then restart it."""

    def __init__(self, server: Sshd, token: str, seconds: float = OUTAGE_SECONDS, timeout: float = 300.0, play=None):
        super().__init__(daemon=True)
        self.server, self.token, self.seconds, self.timeout, self.play = server, token, seconds, timeout, play
        self.stopped_at: float | None = None
        self.restarted_at: float | None = None
        self.job_id: str | None = None
        self.error: str | None = None
        self.played: list[str] = []  # what ``play`` did, once the server is back

    def run(self):
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline and self.job_id is None:
                self.job_id = started_job(self.token)
                time.sleep(0.3)
            if self.job_id is None:
                self.error = f'no running job with comment {self.token} within {self.timeout:.0f} s'
                return
            self.server.stop()
            self.stopped_at = time.monotonic()
            time.sleep(self.seconds)
            self.server.start()
            self.restarted_at = time.monotonic()
            if self.play is not None:
                self.played = self.play()
        except Exception as exception:  # reported by the test
            self.error = repr(exception)
            if self.stopped_at is not None and self.restarted_at is None:
                self.server.start()


def _log_line(log: orm.Log) -> str:
    """One line for a log entry of a CalcJob: its message and, for an exception, the exception's last line.

    ``verdi process report`` shows an exception's traceback (the DbLog message of ``logger.exception``); the line
    it was logged with (e.g. ``iteration 1 of do_update excepted, retrying after 20 seconds``) is in the metadata.
    """
    text = log.message.strip()
    template, args = log.metadata.get('msg'), log.metadata.get('args')
    if not text.startswith('Traceback') or not isinstance(template, str):
        return text.splitlines()[0] if text else ''
    try:
        message = template % ast.literal_eval(args) if args not in (None, '()', '{}') else template
    except (ValueError, SyntaxError, TypeError):
        message = template
    return f'{message} [{text.splitlines()[-1]}]'


def test_calcjob_survives_a_one_minute_ssh_outage(outage_sshd, outage_computer, md_structure, mace_model):
    server, _ = outage_sshd
    _, runner = outage_computer
    token = f'ilmlff-outage-{uuid.uuid4().hex[:8]}'
    # 200 steps: the job runs for about 20 s of the outage and finishes while the server is down.
    parameters = {**MD_PARAMETERS, 'steps': 200, 'traj_every': 100, 'thermo_every': 100, 'checkpoint_every': 100}
    builder = md_builder(runner, md_structure, mace_model, token, parameters)
    outage = Outage(server, token)
    outage.start()
    start = time.monotonic()
    _, node = run_get_node(builder)  # a paused process would block here (see the module docstring)
    wall = time.monotonic() - start
    outage.join(timeout=OUTAGE_SECONDS + 60)
    assert outage.error is None, outage.error
    assert outage.stopped_at is not None and outage.restarted_at is not None
    down = outage.restarted_at - outage.stopped_at

    (calc,) = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]
    calc_lines = [_log_line(log) for log in orm.Log.collection.get_logs_for(calc, order_by=[{'id': 'asc'}])]
    chain_lines = report_lines(node)
    print(
        f'SSH outage: server down {down:.1f} s from {outage.stopped_at - start:.1f} s after the start; work chain '
        f'{wall:.1f} s in all; job {outage.job_id}',
        f'report of {calc.process_label}<{calc.pk}>:',
        *calc_lines,
        f'report of {node.process_label}<{node.pk}>:',
        *chain_lines,
        sep='\n  ',
    )
    assert node.is_finished_ok, (node.exit_status, node.exit_message, chain_lines, calc_lines)
    assert down >= OUTAGE_SECONDS
    assert calc.get_job_id() == outage.job_id
    assert 'JobState=COMPLETED' in _slurm_record(outage.job_id)
    retried = [line for line in calc_lines if 'excepted, retrying after' in line]
    assert retried, calc_lines  # the engine's back-off, not luck, carried the CalcJob over the outage
    assert not any('maximum attempts' in line for line in calc_lines), calc_lines  # it never gave up and paused
    assert not calc.paused and not node.paused
    assert wall > down
    assert node.outputs.trajectory.n_frames == 3


def _verdi(aiida_profile, *args: str) -> subprocess.CompletedProcess:
    """``verdi -p PROFILE ARGS`` in a subprocess on the test profile, as a user would type it."""
    from aiida.manage.configuration.settings import AiiDAConfigDir

    env = {**os.environ, 'AIIDA_PATH': str(AiiDAConfigDir.get().parent), 'PATH': f'{BIN}:{os.environ["PATH"]}'}
    command = [str(BIN / 'verdi'), '-p', aiida_profile.name, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=DAEMON_TIMEOUT + 60, check=False)


@pytest.fixture
def short_backoff(aiida_profile):
    """The transport back-off of the test profile shortened to 1, 2, 4, 8 s (pause after ~15 s); restored after."""
    from aiida.manage import get_config

    config, name = get_config(), aiida_profile.name
    before = config.get_option('transport.task_retry_initial_interval', scope=name, default=False)
    config.set_option('transport.task_retry_initial_interval', 1, scope=name)
    config.store()
    yield 1 + 2 + 4 + 8
    if before is None:
        config.unset_option('transport.task_retry_initial_interval', scope=name)
    else:
        config.set_option('transport.task_retry_initial_interval', before, scope=name)
    config.store()


def test_calcjob_paused_by_a_long_outage_is_played(
    aiida_profile, short_backoff, outage_sshd, outage_computer, md_structure, mace_model
):
    """An outage longer than the back-off (shortened to ~15 s; outage 30 s) pauses the CalcJob; once the server is
    back, ``verdi process list --paused`` finds it and ``verdi process play PK`` resumes it, as the docs say.

    The work chain runs in the test profile's daemon, as a user's would: ``verdi process play`` reaches processes
    through the broker, and an in-process run is not reachable that way ("Recipient not found").
    """
    from aiida.engine import submit

    server, _ = outage_sshd
    _, runner = outage_computer
    token = f'ilmlff-outage-{uuid.uuid4().hex[:8]}'

    def play() -> list[str]:
        paused: list[str] = []
        for _ in range(60):
            paused = _verdi(aiida_profile, 'process', 'list', '--paused', '-r', '-P', 'pk').stdout.split()
            if paused:
                break
            time.sleep(1)
        done = [f'verdi process list --paused: {" ".join(paused) or "none"}']
        for pk in paused:
            result = _verdi(aiida_profile, 'process', 'play', pk)
            done.append(f'verdi process play {pk}: {" / ".join((result.stdout + result.stderr).strip().splitlines())}')
        return done

    started = _verdi(aiida_profile, 'daemon', 'start', '1')
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        outage = Outage(server, token, seconds=2 * short_backoff, play=play)
        outage.start()
        start = time.monotonic()
        node = submit(md_builder(runner, md_structure, mace_model, token))
        shown = ''
        while time.monotonic() - start < 400:
            shown = _verdi(aiida_profile, 'process', 'show', str(node.pk)).stdout
            if re.search(r'^state\s+(Finished|Excepted|Killed)', shown, re.M | re.I):
                break
            time.sleep(3)
        wall = time.monotonic() - start
    finally:
        stopped = _verdi(aiida_profile, 'daemon', 'stop', '--timeout', str(DAEMON_TIMEOUT))
    outage.join(timeout=120)
    assert outage.error is None, outage.error
    from aiida.manage import get_manager

    get_manager().get_profile_storage().get_session().expire_all()  # the daemon changed the nodes
    node = orm.load_node(node.pk)
    (calc,) = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)]
    calc_lines = [_log_line(log) for log in orm.Log.collection.get_logs_for(calc, order_by=[{'id': 'asc'}])]
    print(
        f'SSH outage past the back-off: server down {outage.restarted_at - outage.stopped_at:.1f} s; work chain '
        f'{wall:.1f} s in all (daemon); job {outage.job_id}',
        *outage.played,
        f'report of {calc.process_label}<{calc.pk}>:',
        *calc_lines,
        f'report of {node.process_label}<{node.pk}>:',
        *report_lines(node),
        sep='\n  ',
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert outage.played[0] == f'verdi process list --paused: {calc.pk}', (outage.played, shown)
    assert f'Request to play Process<{calc.pk}> processed.' in outage.played[1], outage.played
    assert any('maximum attempts 5 of calling' in line for line in calc_lines), calc_lines
    assert node.is_finished_ok, (node.process_state, node.exit_status, node.exit_message)
    assert 'JobState=COMPLETED' in _slurm_record(outage.job_id)
