"""``aiida-ilmlff frames plot PK``: energy-per-atom and max-force distributions per origin of a data set, as a PNG.

Registered on the ``frames`` group of :mod:`aiida_ilmlff.cli.frames` by :func:`register`.
"""

from __future__ import annotations

import pathlib

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo

__all__ = ('frames_of', 'plot_dataset', 'register')


def frames_of(node):
    """The ``FramesData`` of ``node``: the node itself, or the ``frames`` output of an ``ilmlff.dataset`` run.

    :raises ValueError: if ``node`` is neither.
    """
    from aiida import orm

    from aiida_ilmlff.data import FramesData

    if isinstance(node, FramesData):
        return node
    if isinstance(node, orm.ProcessNode) and 'frames' in node.outputs and isinstance(node.outputs.frames, FramesData):
        return node.outputs.frames
    raise ValueError(f'{type(node).__name__}<{node.pk}> is neither a FramesData nor a process with a `frames` output')


def plot_dataset(node, path, title: str | None = None) -> pathlib.Path:
    """Write the label-distribution figure of a data set node (``FramesData`` or ``ilmlff.dataset`` run) to ``path``.

    :raises ValueError: for another node type, or a data set without labelled frames.
    """
    from aiida_ilmlff.sampling.figures import plot_label_distributions
    from aiida_ilmlff.sampling.stats import frame_observables

    frames = frames_of(node)
    energy_per_atom, max_force = frame_observables(frames.offsets, frames.energies, frames.forces)
    if title is None:
        counts = ', '.join(f'{k}: {v}' for k, v in frames.base.attributes.get('origin_counts').items())
        title = f'FramesData<{frames.pk}> ({counts})'
    return plot_label_distributions([str(o) for o in frames.origins], energy_per_atom, max_force, path, title=title)


@click.command('plot')
@arguments.NODE('node')
@click.option(
    '-o',
    '--output',
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help='PNG file to write (default: frames_<PK>.png in the current folder).',
)
@click.option('-t', '--title', default=None, help='Figure title (default: the node and its origin counts).')
@decorators.with_dbenv()
def frames_plot(node, output: str | None, title: str | None) -> None:
    """Plot energy-per-atom and max-force distributions per origin of a FramesData (or ilmlff.dataset run)."""
    path = pathlib.Path(output) if output else pathlib.Path(f'frames_{node.pk}.png')
    try:
        written = plot_dataset(node, path, title)
    except ValueError as exception:
        echo.echo_critical(str(exception))
    echo.echo_success(f'wrote {written}')


def register(group: click.Group) -> None:
    """Add the ``plot`` command to the ``frames`` group."""
    group.add_command(frames_plot)
