"""``aiida-ilmlff report PK``: the comparison table and figures of a pipeline, from stored nodes only.

Nothing is recomputed: the table is the pipeline's ``comparison`` Dict, the comparison figure is redrawn from it,
the MSD/RDF figure from the ``curves`` ArrayData of each ``ilmlff.properties`` run, and the stored PNG nodes
(``figures`` of the pipeline and of every properties run) are written out as they are.
"""

from __future__ import annotations

import pathlib

import click
from aiida.cmdline.params import arguments
from aiida.cmdline.utils import decorators, echo

PIPELINE_ENTRY_POINT = 'aiida.workflows:ilmlff.pipeline'


def properties_nodes(node) -> dict:
    """Row name -> the ``ilmlff.properties`` work chain the pipeline ``node`` called for it (CALL_WORK links)."""
    from aiida.common.links import LinkType

    called = node.base.links.get_outgoing(link_type=LinkType.CALL_WORK).all()
    return {
        link.link_label[len('properties_') :]: link.node for link in called if link.link_label.startswith('properties_')
    }


def write_figures(node, output_dir: pathlib.Path) -> list[pathlib.Path]:
    """Redraw the comparison and curve figures of pipeline ``node`` into ``output_dir``; copy its stored PNGs.

    :returns: the paths written.
    """
    from aiida_ilmlff.analysis.figures import plot_comparison, plot_curves
    from aiida_ilmlff.calculations.functions.comparison import curves_by_row

    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    comparison = node.outputs.comparison.get_dict()
    path = output_dir / 'comparison.png'
    plot_comparison(comparison, path)
    written.append(path)
    arrays = {}
    for row, child in properties_nodes(node).items():
        if 'curves' in child.outputs:
            for part in ('msd', 'rdf'):
                if part in child.outputs.curves:
                    arrays[f'{row}_{part}'] = child.outputs.curves[part]
        if 'figures' in child.outputs:
            for name, figure in child.outputs.figures.items():
                target = output_dir / f'{row}_{name}.png'
                target.write_bytes(figure.get_content(mode='rb'))
                written.append(target)
    if arrays:
        path = output_dir / 'curves.png'
        plot_curves(curves_by_row(arrays), path)
        written.append(path)
    return written


@click.command('report')
@arguments.PROCESS('pipeline')
@click.option(
    '-o',
    '--output-dir',
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="Write the figures here (comparison.png, curves.png and each model's density/MSD/RDF figures).",
)
@click.option('--json', 'as_json', is_flag=True, help='Print the comparison Dict as JSON instead of the table.')
@decorators.with_dbenv()
def report(pipeline, output_dir: pathlib.Path | None, as_json: bool) -> None:
    """Print the MLFF comparison of an ilmlff.pipeline run and rewrite its figures, from the graph alone."""
    import json

    from aiida_ilmlff.analysis.comparison import format_comparison_table

    process_type = pipeline.process_type or ''
    if process_type != PIPELINE_ENTRY_POINT:
        echo.echo_critical(f'{pipeline.process_label}<{pipeline.pk}> is not an ilmlff.pipeline run ({process_type})')
    if 'comparison' not in pipeline.outputs:
        state = pipeline.process_state.value if pipeline.process_state else 'unknown'
        echo.echo_critical(
            f'ilmlff.pipeline<{pipeline.pk}> has no comparison yet (state {state}, exit status '
            f'{pipeline.exit_status}): see `verdi process report {pipeline.pk}`'
        )
    comparison = pipeline.outputs.comparison.get_dict()
    if as_json:
        echo.echo(json.dumps(comparison, indent=2, sort_keys=True))
    else:
        echo.echo(f'ilmlff.pipeline<{pipeline.pk}>: {pipeline.description or ""}'.rstrip(': '))
        if 'training_set' in pipeline.outputs and 'test_set' in pipeline.outputs:
            training, test = pipeline.outputs.training_set, pipeline.outputs.test_set
            echo.echo(
                f'training set FramesData<{training.pk}> {training.n_frames} frames '
                f'{training.base.attributes.get("origin_counts")}; '
                f'test set FramesData<{test.pk}> {test.n_frames} frames'
            )
        echo.echo(format_comparison_table(comparison))
    if output_dir is not None:
        for path in write_figures(pipeline, output_dir):
            echo.echo_report(f'wrote {path}')
