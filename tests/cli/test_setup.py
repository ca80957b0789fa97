"""``aiida-ilmlff setup`` / ``codes`` / ``--version`` on a throw-away AIIDA_PATH (subprocesses)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

BIN = pathlib.Path(sys.executable).parent


def run(args, aiida_path, check=False):
    env = {**os.environ, 'AIIDA_PATH': str(aiida_path)}
    result = subprocess.run(
        [str(BIN / 'aiida-ilmlff'), *args], capture_output=True, text=True, env=env, check=False, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def config(aiida_path) -> dict:
    path = pathlib.Path(aiida_path) / '.aiida' / 'config.json'
    return json.loads(path.read_text()) if path.exists() else {}


def test_version(tmp_path):
    from aiida_ilmlff import __version__

    result = run(['--version'], tmp_path, check=True)
    assert __version__ in result.stdout


@pytest.fixture(scope='module')
def configured(tmp_path_factory):
    """A configuration made by one ``aiida-ilmlff setup`` run."""
    path = tmp_path_factory.mktemp('aiida_cli')
    first = run(['setup'], path, check=True)
    return path, first


def test_setup_creates_profile_computer_codes(configured):
    path, first = configured
    assert 'profile    ilmlff: created (sqlite, zeromq)' in first.stdout
    for label in ('cp2k', 'pw', 'mace-train', 'dp'):
        assert f'code       {label}@localhost: created' in first.stdout, first.stdout
    profile = config(path)['profiles']['ilmlff']
    assert profile['storage']['backend'] == 'core.sqlite_dos'
    assert profile['process_control']['backend'] == 'core.zeromq'


def test_setup_is_idempotent(configured):
    path, _ = configured
    before = config(path)
    second = run(['setup'], path, check=True)
    assert 'created' not in second.stdout, second.stdout
    assert config(path) == before


def test_codes_answer(configured):
    path, _ = configured
    result = run(['codes'], path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    for label in ('cp2k', 'pw', 'mace-train', 'dp'):
        assert ' ok ' in lines[f'{label}@localhost'], result.stdout
    assert 'CP2K version' in lines['cp2k@localhost']


def test_setup_unknown_computer_fails_cleanly(configured):
    path, _ = configured
    before = config(path)
    result = run(['setup', '--computer', 'no-such-cluster'], path)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0, result.stderr
    assert 'computer `no-such-cluster` does not exist' in result.stderr
    assert config(path) == before


def test_setup_unreachable_postgres_fails_cleanly(tmp_path):
    result = run(['setup', '-p', 'pg', '--db-backend', 'postgres', '--postgres-port', '1'], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0, result.stderr
    assert 'PostgreSQL is not reachable at 127.0.0.1:1' in result.stderr
    assert 'pg' not in config(tmp_path).get('profiles', {})


def test_setup_bad_executable_option(tmp_path):
    result = run(['setup', '--executable', 'nonsense'], tmp_path)
    assert result.returncode == 2
    assert '--executable expects LABEL=PATH' in result.stderr
    result = run(['setup', '--executable', 'vasp=/bin/true'], tmp_path)
    assert result.returncode == 2
    assert 'unknown code label `vasp`' in result.stderr
    assert not config(tmp_path).get('profiles')


def test_setup_bad_computer_config_fails_cleanly(tmp_path):
    """A computer YAML with a misspelt key is refused in one line, before the profile is created."""
    path = tmp_path / 'cluster.yaml'
    path.write_text('setup: {label: c, hostname: h, transport: core.ssh_async, scheduler: core.slurm, workdir: /w}\n')
    result = run(['setup', '-p', 'p', '--computer-config', str(path)], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0, result.stderr
    assert f'computer file `{path}`: unknown key(s) `setup.workdir`' in result.stderr
    assert not config(tmp_path).get('profiles')


def test_new_profile_reuses_dft_labels(configured):
    """A profile made by ``setup`` caches the DFT CalcJobs (labels reused across pipelines), never training."""
    from aiida_ilmlff.caching import CACHED_CALCJOBS, NOT_CACHED_CALCJOBS

    path, first = configured
    assert 'caching    cp2k, quantumespresso.pw: enabled' in first.stdout, first.stdout
    options = config(path)['profiles']['ilmlff']['options']
    assert options['caching.enabled_for'] == list(CACHED_CALCJOBS)
    assert options['caching.disabled_for'] == list(NOT_CACHED_CALCJOBS)


def test_new_profile_waits_for_the_daemon(configured):
    """A profile made by ``setup`` gives the daemon's workers DAEMON_TIMEOUT s to stop (``verdi daemon stop``), where
    AiiDA's default of 2 s timed out on a loaded machine; a second run keeps the value and says it."""
    from aiida_ilmlff.daemon_recovery import DAEMON_TIMEOUT

    path, first = configured
    assert f'daemon     client timeout {DAEMON_TIMEOUT} s' in first.stdout, first.stdout
    assert config(path)['profiles']['ilmlff']['options']['daemon.timeout'] == DAEMON_TIMEOUT
    second = run(['setup'], path, check=True)
    assert f'daemon     client timeout {DAEMON_TIMEOUT} s' in second.stdout, second.stdout
    # An existing profile is left as its owner set it; a shorter timeout gets a hint.
    env = {**os.environ, 'AIIDA_PATH': str(path)}
    lowered = subprocess.run(
        [str(BIN / 'verdi'), '-p', 'ilmlff', 'config', 'set', 'daemon.timeout', '2'], env=env, capture_output=True
    )
    assert lowered.returncode == 0, lowered.stderr
    try:
        third = run(['setup'], path, check=True)
        assert f'verdi config set daemon.timeout {DAEMON_TIMEOUT}' in third.stdout, third.stdout
        assert config(path)['profiles']['ilmlff']['options']['daemon.timeout'] == 2
    finally:
        subprocess.run(
            [str(BIN / 'verdi'), '-p', 'ilmlff', 'config', 'set', 'daemon.timeout', str(DAEMON_TIMEOUT)],
            env=env,
            check=True,
            capture_output=True,
        )
