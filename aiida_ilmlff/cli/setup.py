"""``aiida-ilmlff setup`` and ``aiida-ilmlff codes``: profile, computer and codes in one idempotent call."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys

import click

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    """Print one line naming the problem to stderr and exit with status 2."""
    click.echo(f'Error: {message}', err=True)
    sys.exit(EXIT_BAD_INPUT)


def _config_dir() -> pathlib.Path:
    from aiida.manage.configuration.settings import AiiDAConfigDir

    return pathlib.Path(AiiDAConfigDir.get())


def _profile_names() -> list[str]:
    from aiida.common.exceptions import ConfigurationError
    from aiida.manage import get_config

    try:
        return get_config(create=True).profile_names
    except ConfigurationError:
        return []


def _reachable(host: str, port: int, timeout: float = 3.0) -> str | None:
    """Return ``None`` when a TCP connection to ``host:port`` opens, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exception:
        return str(exception)


def _create_profile(name: str, backend: str, broker: str, pg_host: str, pg_port: int, pg_user: str) -> None:
    """Create profile ``name``: ``verdi presto`` for SQLite, :func:`_create_postgres_profile` otherwise."""
    if backend == 'postgres':
        _create_postgres_profile(name, broker, pg_host, pg_port, pg_user)
        return
    command = [os.path.join(os.path.dirname(sys.executable), 'verdi'), 'presto', '--profile-name', name]
    if broker == 'zeromq':
        command.append('--use-zeromq')
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
    if result.returncode != 0 or name not in _fresh_profile_names():
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
        fail(f'`verdi presto` could not create profile `{name}`: {lines[-1] if lines else "no output"}')


def _create_postgres_profile(name: str, broker: str, host: str, port: int, superuser: str) -> None:
    """Create a ``core.psql_dos`` profile: a new database role and database, then the profile.

    The database is created with the server's default locale (``TEMPLATE template0``), unlike
    aiida-core's own helper, which hard-codes ``en_US.UTF-8`` and fails on servers that only have
    ``C.UTF-8`` (minimal Debian images). On any failure the role and database are dropped again,
    so nothing is half-created.
    """
    import secrets

    from aiida.manage import get_config
    from aiida.manage.configuration import create_profile
    from aiida.manage.external.postgres import Postgres

    broker_backend, broker_config = 'core.zeromq', None
    if broker == 'rabbitmq':
        from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

        try:
            broker_config = detect_rabbitmq_config()
        except ConnectionError as exception:
            fail(f'RabbitMQ is not reachable: {exception}; start it or use --broker zeromq')
        broker_backend = 'core.rabbitmq'

    postgres = Postgres(interactive=False, quiet=True, dbinfo={'host': host, 'port': port, 'user': superuser})
    if not postgres.is_connected:
        fail(f'cannot connect to PostgreSQL at {host}:{port} as `{superuser}`; check --postgres-user and the server')

    suffix = secrets.token_hex(4)
    dbuser = f'ilmlff_{suffix}'
    dbname = f'ilmlff_{name}_{suffix}'
    password = secrets.token_hex(16)
    created_user = created_db = False
    try:
        postgres.create_dbuser(dbuser, password, 'CREATEDB')
        created_user = True
        postgres.execute(f'CREATE DATABASE "{dbname}" OWNER "{dbuser}" ENCODING \'UTF8\' TEMPLATE template0')
        created_db = True
        config = get_config(create=True)
        storage_config = {
            'database_engine': 'postgresql_psycopg',
            'database_hostname': host,
            'database_port': port,
            'database_name': dbname,
            'database_username': dbuser,
            'database_password': password,
            'repository_uri': (_config_dir() / 'repository' / name).as_uri(),
        }
        create_profile(
            config,
            name=name,
            email=f'{os.environ.get("USER", "aiida")}@localhost',
            storage_backend='core.psql_dos',
            storage_config=storage_config,
            broker_backend=broker_backend,
            broker_config=broker_config,
        )
        config.set_option('runner.poll.interval', 1, scope=name)
        config.set_default_profile(name, overwrite=False)
        config.store()
    except Exception as exception:
        if created_db:
            postgres.drop_db(dbname)
        if created_user:
            postgres.drop_dbuser(dbuser)
        fail(f'could not create the PostgreSQL profile `{name}`: {exception}')


def _fresh_profile_names() -> list[str]:
    from aiida.manage.configuration import reset_config

    reset_config()
    return _profile_names()


@click.command('setup')
@click.option(
    '-p',
    '--profile',
    'profile_name',
    default=None,
    help='Profile to use or create (default: the default profile, else `ilmlff`).',
)
@click.option(
    '--computer',
    'computer_label',
    default=None,
    help='Register the codes on this computer, which must already be set up and configured in AiiDA '
    '(e.g. an SSH + Slurm cluster), or is created from --computer-config. Default: localhost.',
)
@click.option(
    '--computer-config',
    'computer_config',
    default=None,
    type=click.Path(dir_okay=False),
    help='YAML file with the `setup` and `configure` keys of `verdi computer` (e.g. '
    'docs/computers/slurm-ssh.yaml): creates and configures the computer when it does not exist '
    '(--computer, if given, replaces its label).',
)
@click.option(
    '--executable',
    'executables',
    multiple=True,
    metavar='LABEL=PATH',
    help='Use PATH for code LABEL instead of searching (repeatable), e.g. cp2k=/opt/cp2k/bin/cp2k.psmp.',
)
@click.option(
    '--db-backend',
    type=click.Choice(['sqlite', 'postgres']),
    default='sqlite',
    show_default=True,
    help='Storage of a newly created profile: SQLite (no services) or PostgreSQL.',
)
@click.option(
    '--broker',
    type=click.Choice(['zeromq', 'rabbitmq']),
    default='zeromq',
    show_default=True,
    help='Message broker of a newly created profile: ZeroMQ (no services) or RabbitMQ (auto-detected).',
)
@click.option(
    '--postgres-host',
    default='127.0.0.1',
    show_default=True,
    help='PostgreSQL host for --db-backend postgres.',
)
@click.option('--postgres-port', default=5432, show_default=True, type=int, help='PostgreSQL port.')
@click.option(
    '--postgres-user',
    default='postgres',
    show_default=True,
    help='PostgreSQL superuser that creates the database.',
)
@click.option(
    '--protocol',
    type=click.Choice(['fast', 'balanced', 'stringent']),
    default='balanced',
    show_default=True,
    help="With a RabbitMQ broker: warn when its consumer_timeout is shorter than this protocol's longest wall time.",
)
def setup(
    profile_name,
    computer_label,
    computer_config,
    executables,
    db_backend,
    broker,
    postgres_host,
    postgres_port,
    postgres_user,
    protocol,
):
    """Create (or reuse) a profile, a computer and the codes aiida-ilmlff runs. Idempotent.

    Every input is checked before anything is created: a second run changes nothing. The AiiDA
    configuration folder is the one AiiDA would use ($AIIDA_PATH; `make` sets it to .aiida/ in the
    checkout).
    """
    from aiida_ilmlff.codes import CODE_SPECS, find_executable, get_spec, load_existing, register_code

    # 1. Check every input before creating anything.
    config = None
    if computer_config is not None:
        from aiida_ilmlff.computers import read_computer_config

        try:
            config = read_computer_config(computer_config, label=computer_label)
        except ValueError as exception:
            fail(str(exception))
        computer_label = config.label
    overrides: dict[str, str] = {}
    for item in executables:
        label, sep, path = item.partition('=')
        if not sep or not path:
            fail(f'--executable expects LABEL=PATH, got `{item}`')
        try:
            get_spec(label)
        except KeyError as exception:
            fail(f'--executable: {exception.args[0]}')
        overrides[label] = path

    existing = _profile_names()
    if profile_name is None:
        from aiida.manage import get_config

        default = get_config(create=True).default_profile_name if existing else None
        profile_name = default or 'ilmlff'
    create = profile_name not in existing
    if create and db_backend == 'postgres':
        reason = _reachable(postgres_host, postgres_port)
        if reason is not None:
            fail(
                f'PostgreSQL is not reachable at {postgres_host}:{postgres_port} ({reason}); '
                'start it or fix --postgres-host/--postgres-port'
            )
    if create and broker == 'rabbitmq':
        from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

        try:
            detect_rabbitmq_config()
        except ConnectionError as exception:
            fail(f'RabbitMQ is not reachable ({exception}); start it or use --broker zeromq')
    if create and computer_label not in (None, 'localhost') and config is None:
        fail(
            f'computer `{computer_label}` does not exist in the new profile `{profile_name}`: create the '
            'profile first, then create the computer with `verdi computer setup` + `verdi computer configure`'
        )

    if not create:
        from aiida import load_profile, orm
        from aiida.common.exceptions import NotExistent

        load_profile(profile_name, allow_switch=True)
        if computer_label is not None:
            try:
                computer = orm.load_computer(computer_label)
            except NotExistent:
                computer = None
                if config is None:
                    fail(
                        f'computer `{computer_label}` does not exist in profile `{profile_name}`: set it up with '
                        '`verdi computer setup` and `verdi computer configure` (or give --computer-config), '
                        'then run again'
                    )
            if computer is not None and not computer.is_configured and config is None:
                fail(
                    f'computer `{computer_label}` is not configured: '
                    f'run `verdi computer configure {computer.transport_type} {computer_label}`'
                )

    # 2. Profile.
    if create:
        _create_profile(profile_name, db_backend, broker, postgres_host, postgres_port, postgres_user)
        click.echo(f'profile    {profile_name}: created ({db_backend}, {broker})')
    else:
        click.echo(f'profile    {profile_name}: exists')

    from aiida import load_profile, orm
    from aiida.common.exceptions import NotExistent

    load_profile(profile_name, allow_switch=True)

    # 2b. Caching: DFT labels (CP2K, pw.x) reused across pipelines, training never (aiida_ilmlff.caching).
    from aiida.manage import get_config

    from aiida_ilmlff.caching import CACHED_CALCJOBS, configure_caching

    # A new profile gets the settings; an existing one is left as its owner set it (a hint says what is missing).
    cached = ', '.join(identifier.split(':', 1)[1] for identifier in CACHED_CALCJOBS)
    missing = configure_caching(get_config(), profile_name, dry_run=not create)
    if not missing:
        click.echo(f'caching    {cached}: on')
    elif create:
        click.echo(f'caching    {cached}: enabled (labels reused across pipelines; training not cached)')
    else:
        click.echo(
            f'caching    not set in profile `{profile_name}`: {"; ".join(missing)} (reuse DFT labels across '
            'pipelines: `verdi config set --append caching.<setting> <identifier>`, see docs/howto_cluster.md)'
        )

    # 2c. Daemon: its client waits DAEMON_TIMEOUT s for the daemon's answers (a new profile only, as for caching).
    from aiida_ilmlff.daemon_recovery import DAEMON_TIMEOUT

    aiida_config = get_config()
    timeout = aiida_config.get_option('daemon.timeout', scope=profile_name)
    if create and timeout < DAEMON_TIMEOUT:
        aiida_config.set_option('daemon.timeout', DAEMON_TIMEOUT, scope=profile_name)
        aiida_config.store()
        timeout = DAEMON_TIMEOUT
    if timeout < DAEMON_TIMEOUT:
        click.echo(
            f'daemon     client timeout {timeout:g} s in profile `{profile_name}`: `verdi daemon stop` may exit before '
            f'the workers have stopped on a loaded machine (`verdi config set daemon.timeout {DAEMON_TIMEOUT}`)'
        )
    else:
        click.echo(f'daemon     client timeout {timeout:g} s (`verdi config set daemon.timeout`)')

    # 3. Computer.
    label = computer_label or 'localhost'
    try:
        computer = orm.load_computer(label)
        click.echo(f'computer   {label}: exists')
    except NotExistent:
        computer = None
    if computer is not None and config is not None and not computer.is_configured:
        from aiida_ilmlff.computers import configure_computer

        configure_computer(computer, config)
        click.echo(f'computer   {label}: configured ({config.path})')
    elif computer is None and config is not None:
        from aiida_ilmlff.computers import create_computer

        computer = create_computer(config)
        click.echo(f'computer   {label}: created ({computer.transport_type}, {computer.scheduler_type}, {config.path})')
    elif computer is None:
        computer = orm.Computer(
            label='localhost',
            hostname='localhost',
            description='This machine (created by aiida-ilmlff setup)',
            transport_type='core.local',
            scheduler_type='core.direct',
            workdir=str(_config_dir() / 'scratch' / profile_name),
        ).store()
        computer.configure(safe_interval=0)
        computer.set_minimum_job_poll_interval(1)
        computer.set_default_mpiprocs_per_machine(1)
        click.echo('computer   localhost: created')

    # 4. Codes.
    from aiida_ilmlff.computers import open_transport

    with contextlib.ExitStack() as stack:
        try:
            transport = stack.enter_context(open_transport(computer))
        except Exception as exception:
            fail(
                f'cannot connect to computer `{label}` ({computer.transport_type}): {exception}; '
                f'check it with `verdi computer test {label}`'
            )
        for spec in CODE_SPECS:
            code = load_existing(spec, computer)
            if code is not None:
                click.echo(f'code       {spec.label}@{label}: exists ({code.filepath_executable})')
                continue
            executable = overrides.get(spec.label) or find_executable(spec, computer, transport)
            if executable is None:
                click.echo(f'code       {spec.label}@{label}: not found ({" / ".join(spec.candidates)}), skipped')
                continue
            register_code(spec, computer, executable)
            click.echo(f'code       {spec.label}@{label}: created ({executable})')

    # 5. Broker: RabbitMQ's consumer_timeout against the protocol's longest wall time (aiida_ilmlff.broker).
    from aiida.manage import get_manager

    from aiida_ilmlff.broker import broker_check

    checked = broker_check(get_manager().get_profile(), protocol)
    if checked is not None:
        line, warning = checked
        click.echo(f'broker     {"Warning: " if warning else ""}{line}')


@click.command('codes')
@click.option('-p', '--profile', 'profile_name', default=None, help='Profile (default: the default profile).')
@click.option('--computer', 'computer_label', default=None, help='Only the codes on this computer.')
@click.option('--timeout', default=120, show_default=True, help='Seconds each probe may take.')
def codes(profile_name, computer_label, timeout):
    """List the registered aiida-ilmlff codes and whether each executable answers.

    Exits 0 when every listed code answers, 1 otherwise.
    """
    from aiida import load_profile, orm
    from aiida.common.exceptions import ProfileConfigurationError

    from aiida_ilmlff.codes import CODE_SPECS, probe_code

    try:
        load_profile(profile_name, allow_switch=True)
    except ProfileConfigurationError as exception:
        fail(f'{exception}; run `aiida-ilmlff setup` first')

    labels = [spec.label for spec in CODE_SPECS]
    qb = orm.QueryBuilder().append(orm.InstalledCode, filters={'label': {'in': labels}}, project='*')
    found = [code for (code,) in qb.all()]
    if computer_label is not None:
        found = [code for code in found if code.computer.label == computer_label]
    if not found:
        click.echo('no aiida-ilmlff codes registered: run `aiida-ilmlff setup`')
        sys.exit(1)

    rows = []
    all_ok = True
    for code in sorted(found, key=lambda c: (c.computer.label, labels.index(c.label))):
        status = probe_code(code, timeout=timeout)
        all_ok &= status.ok
        rows.append(
            (
                code.full_label,
                str(code.pk),
                status.plugin or '-',
                'ok' if status.ok else 'FAILED',
                status.executable,
                status.message,
            )
        )
    header = ('code', 'pk', 'plugin', 'status', 'executable', 'answer')
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        click.echo('  '.join(cell.ljust(width) for cell, width in zip(row, widths)) + '  ' + row[-1])
    sys.exit(0 if all_ok else 1)
