"""Calcfunctions of ``ilmlff.validate``: a model's MD against its reference run, and the frames for a posteriori errors.

Node <-> plain-data wrappers: the comparison is :func:`aiida_ilmlff.analysis.validation.structure_agreement`, the
figure :func:`aiida_ilmlff.analysis.figures.plot_rdf_overlay`.
"""

from __future__ import annotations

import json

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase.geometry import wrap_positions

from aiida_ilmlff.analysis.figures import plot_rdf_overlay, png_buffer
from aiida_ilmlff.analysis.validation import structure_agreement, validation_summary
from aiida_ilmlff.common.plain import finite_or_none
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.trajectory import MDTrajectoryData

__all__ = ('a_posteriori_frames', 'collect_validation', 'compare_with_reference')


@calcfunction
def compare_with_reference(
    trajectory: MDTrajectoryData, reference: MDTrajectoryData, analysis: orm.Dict
) -> dict[str, orm.Data]:
    """A model's NVT trajectory against the reference run of the same box (RDFs, bonds, angles).

    :param trajectory: the model's MD (``ilmlff.md``). :param reference: the reference run as an ilmlff trajectory
        (:func:`~aiida_ilmlff.calculations.functions.reference.aimd_trajectory` of the AIMD frames).
    :param analysis: ``discard_ps`` (of the model's run), ``rdf_bins``, ``rdf_r_max_A``, ``rdf_pairs``.
    :returns: ``structure`` (Dict: :func:`~aiida_ilmlff.analysis.validation.structure_agreement` without the
        curves), ``rdf`` (ArrayData: ``r_A``, ``g_<k>`` of the model and ``g_reference_<k>`` per pair k, attribute
        ``pairs``) and ``figure`` (PNG: the model's g(r) over the reference's).
    :raises ValueError: runs of different atoms or molecule indices, too few frames.
    """
    with trajectory.as_path() as path, reference.as_path() as reference_path:
        result = structure_agreement(path, reference_path, analysis.get_dict())
    pairs = list(result['g'])
    arrays = orm.ArrayData()
    arrays.set_array('r_A', np.asarray(result['r']))
    for k, name in enumerate(pairs):
        arrays.set_array(f'g_{k}', np.asarray(result['g'][name]))
        arrays.set_array(f'g_reference_{k}', np.asarray(result['g_reference'][name]))
    arrays.base.attributes.set('pairs', pairs)
    summary = {key: value for key, value in result.items() if key not in ('r', 'g', 'g_reference')}
    summary['units'] = {'peak_position': 'Å', 'distance': 'Å', 'bonds': 'Å', 'angles': 'degrees'}
    figure = plot_rdf_overlay(result['r'], result['g'], result['g_reference'])
    return {
        'structure': orm.Dict(finite_or_none(summary)),
        'rdf': arrays,
        'figure': orm.SinglefileData(png_buffer(figure), filename='rdf_validation.png'),
    }


@calcfunction
def a_posteriori_frames(trajectory: MDTrajectoryData, settings: orm.Dict) -> FramesData:
    """Frames drawn from a model's own MD, to be labelled at the reference level of theory (a posteriori errors).

    :param settings: ``n_frames`` (> 0) evenly spaced frames after ``discard_ps`` [ps] (the last frame included).
    :returns: unlabelled ``FramesData`` (origin ``import``, ``perturbation`` JSON ``{"generator": "a_posteriori",
        "frame", "time_fs"}``, ``source`` = the trajectory's uuid, ``temperature`` = its target, molecules kept).
    :raises ValueError: ``n_frames`` < 1 or more than the frames after ``discard_ps``.
    """
    values = settings.get_dict()
    n_frames = int(values.get('n_frames', 0))
    if n_frames < 1:
        raise ValueError(f'`n_frames` must be >= 1, got {n_frames}')
    with trajectory.open_reader() as reader:
        time = np.asarray(reader.time, dtype=float)
        start = int(np.searchsorted(time, time[0] + 1000.0 * float(values.get('discard_ps', 0.0)) - 1e-6))
        available = len(time) - start
        if n_frames > available:
            raise ValueError(f'{n_frames} a posteriori frames asked for, the trajectory has {available} after discard')
        indices = np.unique(np.linspace(len(time) - 1, start, n_frames).round().astype(int))
        blocks = [reader[int(index)] for index in indices]
        numbers, mol_id = np.asarray(reader.numbers), np.asarray(reader.mol_id)
        molecules = list(reader.molecules) if reader.molecules else ''
    temperature = trajectory.base.attributes.get('temperature_K', None)
    positions = []
    for block in blocks:
        positions.append(wrap_positions(np.asarray(block.positions, dtype=float), block.cell, pbc=True, eps=0.0))
    return FramesData.from_arrays(
        [numbers] * len(blocks),
        positions,
        np.asarray([block.cell for block in blocks], dtype=float),
        True,
        mol_id=[mol_id] * len(blocks),
        origin='import',
        temperature=[float('nan') if temperature is None else float(temperature)] * len(blocks),
        perturbation=[
            json.dumps({'generator': 'a_posteriori', 'frame': int(i), 'time_fs': float(time[i])}) for i in indices
        ],
        source=[trajectory.uuid] * len(blocks),
        molecules=[molecules] * len(blocks),
    )


@calcfunction
def collect_validation(
    state: orm.Dict,
    structure: orm.Dict | None = None,
    metrics: orm.Dict | None = None,
    calibration: orm.Dict | None = None,
) -> orm.Dict:
    """The ``validation`` output of ``ilmlff.validate``: :func:`~aiida_ilmlff.analysis.validation.validation_summary`
    of the state point and MD facts (``state``), the ``structure`` comparison, the a posteriori ``metrics`` and the
    committee ``calibration``, each where the work chain got that far."""
    return orm.Dict(
        finite_or_none(
            validation_summary(
                state.get_dict(),
                structure.get_dict() if structure is not None else None,
                metrics.get_dict() if metrics is not None else None,
                calibration.get_dict() if calibration is not None else None,
            )
        )
    )
