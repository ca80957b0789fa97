"""Provenance queries that come up when redoing a figure: QueryBuilder recipes packaged as functions.

Each function is one ``QueryBuilder`` query (see ``docs/provenance.md`` for the queries written out); they
only read the graph. Data provenance follows AiiDA's ``with_descendants``/``with_ancestors`` relations, which
walk the CREATE and INPUT_CALC links (data -> calculation -> data), so a result is reached however many
calcfunctions (merge, split, select) lie in between.
"""

from __future__ import annotations

import typing as t

from aiida import orm

__all__ = (
    'DFT_PROCESS_TYPES',
    'TRAINING_PROCESS_TYPES',
    'dft_calculations_behind',
    'models_trained_on',
    'trajectories_of',
)

#: ``process_type`` of the DFT calculations that label frames.
DFT_PROCESS_TYPES = ('aiida.calculations:cp2k', 'aiida.calculations:quantumespresso.pw')
#: ``process_type`` of the training calculations.
TRAINING_PROCESS_TYPES = ('aiida.calculations:ilmlff.mace.train', 'aiida.calculations:ilmlff.deepmd.train')


def dft_calculations_behind(
    node: orm.Node | int | str, process_types: t.Sequence[str] = DFT_PROCESS_TYPES
) -> list[orm.CalcJobNode]:
    """Every DFT calculation upstream of ``node`` in the data provenance (e.g. behind a density's model).

    :param node: any node (a ``Dict`` of properties, an ``MLFFModelData``, a ``FramesData``), or its pk/uuid.
    :param process_types: the calculation types to return (default: CP2K and pw.x).
    :returns: the ``CalcJobNode`` s, sorted by pk.
    """
    node = node if isinstance(node, orm.Node) else orm.load_node(node)
    qb = orm.QueryBuilder()
    qb.append(orm.Node, filters={'id': node.pk}, tag='target')
    qb.append(
        orm.CalcJobNode,
        with_descendants='target',
        filters={'process_type': {'in': list(process_types)}},
        project='*',
    )
    return sorted({calc.pk: calc for (calc,) in qb.all()}.values(), key=lambda calc: calc.pk)


def models_trained_on(min_neq: int = 0, min_frames: int = 0, architecture: str | None = None) -> list[orm.Data]:
    """Models whose training calculation's ``train`` frames hold at least ``min_neq`` nEQ frames.

    :param min_neq: minimum number of frames of origin ``nEQ`` in the training frames.
    :param min_frames: minimum number of training frames in all.
    :param architecture: ``mace`` or ``deepmd`` to restrict the result.
    :returns: the ``MLFFModelData`` nodes, sorted by pk.
    """
    from aiida_ilmlff.data import FramesData, MLFFModelData

    filters: dict[str, t.Any] = {'attributes.n_frames': {'>=': int(min_frames)}}
    if min_neq > 0:
        filters['attributes.origin_counts.nEQ'] = {'>=': int(min_neq)}
    qb = orm.QueryBuilder()
    qb.append(FramesData, filters=filters, tag='frames')
    qb.append(
        orm.CalcJobNode,
        with_incoming='frames',
        edge_filters={'label': 'train'},
        filters={'process_type': {'in': list(TRAINING_PROCESS_TYPES)}},
        tag='training',
    )
    model_filters = {'attributes.architecture': architecture} if architecture else {}
    qb.append(MLFFModelData, with_incoming='training', filters=model_filters, project='*')
    return sorted({model.pk: model for (model,) in qb.all()}.values(), key=lambda model: model.pk)


def trajectories_of(model: orm.Node | int | str, driving_only: bool = True) -> list[orm.Data]:
    """Every MD trajectory run with ``model`` (the ``trajectory`` outputs of ``ilmlff.md`` calculations).

    :param model: an ``MLFFModelData`` or its pk/uuid.
    :param driving_only: only runs that ``model`` drove (input link ``models__model_0``); ``False`` also returns
        runs where it was a committee member evaluated on the saved frames.
    :returns: ``MDTrajectoryData`` nodes, sorted by pk (segments as the calculations wrote them).
    """
    from aiida_ilmlff.data.trajectory import MDTrajectoryData

    model = model if isinstance(model, orm.Node) else orm.load_node(model)
    edge = {'label': 'models__model_0'} if driving_only else {'label': {'like': 'models__%'}}
    qb = orm.QueryBuilder()
    qb.append(orm.Data, filters={'id': model.pk}, tag='model')
    qb.append(
        orm.CalcJobNode,
        with_incoming='model',
        edge_filters=edge,
        filters={'process_type': 'aiida.calculations:ilmlff.md'},
        tag='md',
    )
    qb.append(MDTrajectoryData, with_incoming='md', edge_filters={'label': 'trajectory'}, project='*')
    return sorted({node.pk: node for (node,) in qb.all()}.values(), key=lambda node: node.pk)
