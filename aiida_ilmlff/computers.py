"""An AiiDA computer from one YAML file: the ``setup`` and ``configure`` steps of ``verdi computer`` together.

The file (e.g. ``docs/computers/slurm-ssh.yaml``) has up to three top-level keys:

``setup``
    what ``verdi computer setup --config`` reads (``label``, ``hostname``, ``transport``, ``scheduler``,
    ``work_dir``, ``mpirun_command``, ...), built with aiida-core's own ``ComputerBuilder``;
``configure``
    what ``verdi computer configure TRANSPORT --config`` reads for the current user (for ``core.ssh_async``:
    ``host``, ``max_io_allowed``, ``backend``, ``use_login_shell``, ``safe_interval``, ...); keys left out get
    the transport's defaults, as in ``verdi computer configure -n``;
``minimum_job_poll_interval``
    optional, seconds between two scheduler queries (AiiDA's default: 10).

Each section can also be given to ``verdi`` as it is. :func:`read_computer_config` checks the whole file before
anything is stored; :func:`create_computer` stores and configures the computer.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing as t

if t.TYPE_CHECKING:
    from aiida import orm

__all__ = ('ComputerConfig', 'configure_computer', 'create_computer', 'read_computer_config')

TOP_LEVEL_KEYS = ('setup', 'configure', 'minimum_job_poll_interval')
SETUP_KEYS = (
    'label',
    'hostname',
    'description',
    'transport',
    'scheduler',
    'shebang',
    'work_dir',
    'mpirun_command',
    'mpiprocs_per_machine',
    'default_memory_per_machine',
    'use_double_quotes',
    'prepend_text',
    'append_text',
)
SETUP_DEFAULTS = {
    'description': '',
    'shebang': '#!/bin/bash',
    'mpirun_command': 'mpirun -np {tot_num_mpiprocs}',
    'mpiprocs_per_machine': None,
    'default_memory_per_machine': None,
    'use_double_quotes': False,
    'prepend_text': '',
    'append_text': '',
}


@dataclasses.dataclass
class ComputerConfig:
    """A checked computer YAML file: ``setup`` and ``configure`` as keyword dictionaries."""

    path: pathlib.Path
    setup: dict
    configure: dict
    minimum_job_poll_interval: float | None = None

    @property
    def label(self) -> str:
        return self.setup['label']


def read_computer_config(path: str | pathlib.Path, label: str | None = None) -> ComputerConfig:
    """Read and check the computer YAML file ``path``; ``label`` replaces the file's ``setup.label``.

    Raises ``ValueError`` with a message that names the file and the key when anything is wrong; loads the
    transport and scheduler plugins to check their names and the ``configure`` keys. Stores nothing.
    """
    import yaml
    from aiida.common.exceptions import EntryPointError
    from aiida.plugins import SchedulerFactory, TransportFactory

    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f'computer file `{path}` does not exist')
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exception:
        raise ValueError(f'computer file `{path}` is not valid YAML: {exception}') from exception
    if not isinstance(content, dict) or not isinstance(content.get('setup'), dict):
        raise ValueError(f'computer file `{path}` needs a `setup:` mapping (the keys of `verdi computer setup`)')
    unknown = sorted(set(content) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f'computer file `{path}`: unknown top-level key(s) {unknown}; known: {list(TOP_LEVEL_KEYS)}')
    setup = {**SETUP_DEFAULTS, **content['setup']}
    if label:
        setup['label'] = label
    unknown = sorted(set(setup) - set(SETUP_KEYS))
    if unknown:
        raise ValueError(f'computer file `{path}`: unknown key(s) `setup.{unknown[0]}`; known: {list(SETUP_KEYS)}')
    for key in ('label', 'hostname', 'transport', 'scheduler', 'work_dir'):
        if not setup.get(key):
            raise ValueError(f'computer file `{path}`: `setup.{key}` is missing')
    try:
        transport_class = TransportFactory(setup['transport'])
    except EntryPointError as exception:
        raise ValueError(f'computer file `{path}`: `setup.transport`: {exception}') from exception
    try:
        SchedulerFactory(setup['scheduler'])
    except EntryPointError as exception:
        raise ValueError(f'computer file `{path}`: `setup.scheduler`: {exception}') from exception

    configure = dict(content.get('configure') or {})
    valid = list(transport_class.get_valid_auth_params())
    unknown = sorted(set(configure) - set(valid))
    if unknown:
        raise ValueError(
            f'computer file `{path}`: `configure.{unknown[0]}` is not an option of transport `{setup["transport"]}`; '
            f'known: {valid}'
        )
    # What `verdi computer configure -n` does: every option not given gets its default (host: the hostname).
    for key, option in transport_class.auth_options.items():
        if key in configure:
            continue
        if 'default' in option:
            configure[key] = option['default']
        elif key == 'host':
            configure[key] = setup['hostname']
    interval = content.get('minimum_job_poll_interval')
    if interval is not None and (not isinstance(interval, (int, float)) or interval < 0):
        raise ValueError(f'computer file `{path}`: `minimum_job_poll_interval` must be a number of seconds >= 0')
    return ComputerConfig(path, setup, configure, None if interval is None else float(interval))


def create_computer(config: ComputerConfig) -> orm.Computer:
    """Store the computer of ``config`` (a new label) and configure it for the default user."""
    from aiida.orm.utils.builders.computer import ComputerBuilder

    computer = ComputerBuilder(**config.setup).new().store()
    configure_computer(computer, config)
    return computer


def configure_computer(computer: orm.Computer, config: ComputerConfig) -> None:
    """Configure ``computer`` for the default user with ``config.configure``; set the job poll interval."""
    computer.configure(**config.configure)
    if config.minimum_job_poll_interval is not None:
        computer.set_minimum_job_poll_interval(config.minimum_job_poll_interval)


def open_transport(computer: orm.Computer):
    """``computer.get_transport()``, usable outside the daemon: a context manager that opens the connection.

    Asynchronous transports (``core.ssh_async``) run their blocking calls on the event loop of AiiDA's runner,
    and a new runner asks the broker for a communicator, which a ZeroMQ profile only has while its daemon runs.
    A command that only reads and copies files (``aiida-ilmlff setup``, ``codes``) needs none: when no runner
    exists yet, one without communicator or persistence is made (an existing runner is used as it is).
    """
    from aiida.manage import get_manager
    from aiida.transports.transport import AsyncTransport

    transport = computer.get_transport()
    if isinstance(transport, AsyncTransport):
        get_manager().get_runner(communicator=None, with_persistence=False)
    return transport
