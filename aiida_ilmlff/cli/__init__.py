"""The ``aiida-ilmlff`` command line, in the style of ``verdi``."""

from __future__ import annotations

import warnings

import click

from aiida_ilmlff import __version__

# AiiDA announces a new configuration folder on import; for this command that is expected, not news.
warnings.filterwarnings('ignore', message='Creating AiiDA configuration folder')


@click.group('aiida-ilmlff', context_settings={'help_option_names': ['-h', '--help']})
@click.version_option(__version__, '-V', '--version', prog_name='aiida-ilmlff')
def cli():
    """Machine-learning force fields for ionic liquids, with AiiDA provenance."""


def _register_subcommands() -> None:
    """Attach the sub-command groups (each in its own module of this package)."""
    from aiida_ilmlff.cli import setup as _setup

    cli.add_command(_setup.setup)
    cli.add_command(_setup.codes)
    from aiida_ilmlff.cli import frames as _frames
    from aiida_ilmlff.cli import frames_plot as _frames_plot

    cli.add_command(_frames.frames)
    _frames_plot.register(cli.commands['frames'])
    from aiida_ilmlff.cli import report as _report

    cli.add_command(_report.report)
    from aiida_ilmlff.cli import recover as _recover

    cli.add_command(_recover.recover)


_register_subcommands()
