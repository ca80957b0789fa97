"""``aiida_ilmlff.computers``: the computer YAML files are checked whole before anything is stored."""

from __future__ import annotations

import pathlib

import pytest

from aiida_ilmlff.computers import read_computer_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_slurm_ssh_yaml_is_a_complete_computer():
    """docs/computers/slurm-ssh.yaml: SSH + Slurm, a work directory apart from the checkout, every option set."""
    config = read_computer_config(ROOT / 'docs' / 'computers' / 'slurm-ssh.yaml')
    assert config.label == 'ilmlff-slurm'
    assert (config.setup['transport'], config.setup['scheduler']) == ('core.ssh_async', 'core.slurm')
    assert not pathlib.Path(config.setup['work_dir'].format(username='x')).is_relative_to(ROOT)
    assert config.configure['host'] == 'ilmlff-slurm' and config.configure['safe_interval'] == 1.0
    assert config.configure['max_io_allowed'] == 8  # given; the options left out get the transport's defaults
    assert 'use_sftp' in config.configure
    assert config.minimum_job_poll_interval == 2.0
    assert read_computer_config(ROOT / 'docs' / 'computers' / 'slurm-ssh.yaml', label='other').label == 'other'


@pytest.mark.parametrize(
    ('text', 'message'),
    [
        ('label: x\n', 'needs a `setup:` mapping'),
        ('setup: {label: x}\nconfigur: {}\n', "unknown top-level key(s) ['configur']"),
        ('setup: {label: x, hostname: h, transport: core.ssh, scheduler: core.slurm, work_dir: /w, wrkdir: 1}\n',
         '`setup.wrkdir`'),
        ('setup: {label: x, hostname: h, transport: core.ssh, scheduler: core.slurm}\n', '`setup.work_dir` is missing'),
        ('setup: {label: x, hostname: h, transport: core.shh, scheduler: core.slurm, work_dir: /w}\n',
         '`setup.transport`'),
        ('setup: {label: x, hostname: h, transport: core.ssh, scheduler: core.slurm, work_dir: /w}\n'
         'configure: {host: h}\n', '`configure.host` is not an option of transport `core.ssh`'),
        ('setup: {label: x, hostname: h, transport: core.ssh, scheduler: core.slurm, work_dir: /w}\n'
         'minimum_job_poll_interval: soon\n', '`minimum_job_poll_interval` must be a number'),
    ],
)  # fmt: skip
def test_bad_computer_files_name_the_key(tmp_path, text, message):
    path = tmp_path / 'computer.yaml'
    path.write_text(text)
    with pytest.raises(ValueError) as excinfo:
        read_computer_config(path)
    assert message in str(excinfo.value) and str(path) in str(excinfo.value)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        read_computer_config(tmp_path / 'nope.yaml')
