"""``aiida-ilmlff frames``: show and export ``FramesData`` nodes, in the style of ``verdi data``."""

from __future__ import annotations

import click
from aiida.cmdline.params import arguments, types
from aiida.cmdline.utils import decorators, echo

FRAMES_ARGUMENT = arguments.DATA(
    'frames_node', nargs=1, type=types.DataParamType(sub_classes=('aiida.data:ilmlff.frames',))
)


@click.group('frames')
@click.option('-p', '--profile', 'profile_name', default=None, help='AiiDA profile to load (default: the default one).')
def frames(profile_name: str | None) -> None:
    """Inspect and export frame sets (FramesData, entry point ilmlff.frames)."""
    if profile_name is not None:
        from aiida import load_profile

        load_profile(profile_name, allow_switch=True)


def summary_rows(node) -> list[tuple[str, str]]:
    """The ``frames show`` table of a ``FramesData`` node: (property, value) pairs."""
    attributes = node.base.attributes
    origins = attributes.get('origin_counts')
    n_frames = attributes.get('n_frames')
    return [
        ('PK / UUID', f'{node.pk} / {node.uuid}'),
        ('label', node.label or '-'),
        ('frames', str(n_frames)),
        ('atoms per frame', ', '.join(str(n) for n in attributes.get('n_atoms'))),
        ('atoms in all', str(attributes.get('n_atoms_total'))),
        ('elements', ' '.join(attributes.get('elements'))),
        ('origins', ', '.join(f'{k}: {v}' for k, v in origins.items()) or '-'),
        ('labelled', f'{attributes.get("labelled")} ({attributes.get("n_labelled")}/{n_frames} with energy+forces)'),
        ('stress', f'{attributes.get("n_stress")}/{n_frames} frames'),
        ('level of theory', ', '.join(attributes.get('level_of_theory')) or '- (unlabelled)'),
        ('sha256', attributes.get('sha256')),
    ]


@frames.command('show')
@FRAMES_ARGUMENT
@decorators.with_dbenv()
def frames_show(frames_node) -> None:
    """Summarise a FramesData: frames, atoms, elements, origins, labels and level of theory."""
    from tabulate import tabulate

    echo.echo(tabulate(summary_rows(frames_node), tablefmt='plain'))


@frames.command('export')
@FRAMES_ARGUMENT
@click.argument('path', type=click.Path(dir_okay=True, file_okay=True))
@click.option(
    '-F',
    '--format',
    'fmt',
    type=click.Choice(['extxyz', 'deepmd']),
    default='extxyz',
    show_default=True,
    help='extxyz: one file with MACE keys (REF_energy, REF_forces, REF_stress); deepmd: a folder of npy systems.',
)
@click.option('-f', '--overwrite', is_flag=True, help='Replace PATH if it exists.')
@decorators.with_dbenv()
def frames_export(frames_node, path: str, fmt: str, overwrite: bool) -> None:
    """Write a FramesData to PATH as extxyz or DeePMD npy systems."""
    try:
        written = frames_node.export(path, fmt, overwrite=overwrite)
    except (FileExistsError, ValueError) as exception:
        echo.echo_critical(str(exception))
    echo.echo_success(f'wrote {len(frames_node)} frames of FramesData<{frames_node.pk}> to {written} ({fmt})')
