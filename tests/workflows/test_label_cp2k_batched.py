"""``ilmlff.label`` with ``frames_per_job`` > 1: several frames in one CP2K job (``REFTRAJ``), real CP2K (GFN1-xTB).

The frames are 35-atom PYR14BF4 boxes (one ion pair, :func:`tests.fixtures.boxes.inserted_pyr14bf4_box`), rattled;
one frame of the batch is strained by 2 % so that the batch needs ``VARIABLE_VOLUME`` and its cell file.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida_cp2k.calculations import Cp2kCalculation

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.label import LabelWorkChain
from tests.fixtures.boxes import inserted_pyr14bf4_box

#: Outer SCF loops limited to 2 (of 20): a frame far from the previous one cannot converge in the batch. The
#: quality control is relaxed so that the crushed frame, labelled alone, is kept (its forces exceed 50 eV/Å).
LIMITED_SCF = {
    'cp2k': {'cp2k': {'parameters': {'FORCE_EVAL': {'DFT': {'SCF': {'OUTER_SCF': {'MAX_SCF': 2}}}}}}},
    'quality_control': {'max_force': 1.0e4, 'max_energy_zscore': 1.0e6},
}


def _pyr14bf4_frames(n: int = 4, crushed: int | None = None, strained: int | None = None) -> list:
    """``n`` rattled 35-atom PYR14BF4 frames; frame ``strained`` strained by 2 %; frame ``crushed`` has its atom 1
    0.25 Å from atom 0 (its SCF needs many more iterations than the others)."""
    box = inserted_pyr14bf4_box(1, seed=0, volume_per_pair=400.0, min_gap=1.8)
    frames = []
    for i in range(n):
        atoms = box.copy()
        atoms.rattle(0.05, seed=i)
        if i == strained:
            atoms.set_cell(atoms.cell[:] * 1.02, scale_atoms=True)
        if i == crushed:
            bond = atoms.positions[1] - atoms.positions[0]
            atoms.positions[1] = atoms.positions[0] + 0.25 * bond / np.linalg.norm(bond)
        atoms.info['origin'] = 'nEQ'
        frames.append(atoms)
    return frames


def _calcjobs(node: orm.ProcessNode) -> list[orm.CalcJobNode]:
    return sorted((n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)), key=lambda n: n.pk)


def _label(code, frames, options, overrides=None, **inputs):
    builder = LabelWorkChain.get_builder_from_protocol(
        code, frames, protocol='fast', overrides=overrides, options=options
    )
    for key, value in inputs.items():
        builder[key] = orm.Int(value)
    start = time.monotonic()
    results, node = run_get_node(builder)
    return results, node, time.monotonic() - start


@pytest.mark.slow
def test_batch_in_one_cp2k_job_equals_single_points(cp2k_code, serial_options):
    """Four frames (two cells) labelled by ONE Cp2kCalculation equal the single-point labels (1e-6 eV, 1e-4 eV/Å)."""
    frames = FramesData.from_ase(_pyr14bf4_frames(4, strained=1)).store()
    batched, node, batched_wall = _label(cp2k_code, frames, serial_options, frames_per_job=4, max_concurrent=1)
    assert node.is_finished_ok, node.exit_message
    single, single_node, single_wall = _label(cp2k_code, frames, serial_options, frames_per_job=1, max_concurrent=4)
    assert single_node.is_finished_ok, single_node.exit_message
    print(f'4 frames of 35 atoms: batched {batched_wall:.1f} s wall (1 job), one job per frame {single_wall:.1f} s')

    calcs = _calcjobs(node)
    assert len(calcs) == 1 and calcs[0].process_class is Cp2kCalculation
    parameters = calcs[0].inputs.parameters.get_dict()
    reftraj = parameters['MOTION']['MD']['REFTRAJ']
    assert parameters['GLOBAL']['RUN_TYPE'] == 'MD' and parameters['MOTION']['MD']['STEPS'] == 3
    assert reftraj['LAST_SNAPSHOT'] == 4 and reftraj['VARIABLE_VOLUME'] is True
    assert calcs[0].inputs.trajectory.base.attributes.get('frame_indices') == [0, 1, 2, 3]
    extractions = [n for n in node.called if n.process_label == 'extract_cp2k_batch_labels']
    assert len(extractions) == 1

    summary = batched['summary'].get_dict()
    assert summary['n_labelled'] == 4 and summary['n_rejected'] == 0
    assert summary['n_jobs'] == 1 and summary['n_batches'] == 1 and summary['n_relabelled_singly'] == 0
    labelled, reference = batched['labelled'], single['labelled']
    assert summary['level_of_theory'] == single['summary']['level_of_theory']
    assert np.max(np.abs(labelled.energies - reference.energies)) < 1e-6
    assert np.max(np.abs(labelled.forces - reference.forces)) < 1e-4
    assert np.max(np.abs(labelled.stresses - reference.stresses)) < 1e-6
    assert abs(labelled.stresses[1].trace() - labelled.stresses[0].trace()) > 1e-4  # the strained frame differs
    # provenance: labelled frame -> the CalcJob that labelled it (attribute, and a QueryBuilder query)
    assert labelled.base.attributes.get('label_calculations') == {str(i): calcs[0].uuid for i in range(4)}
    query = orm.QueryBuilder().append(
        orm.CalcJobNode, filters={'uuid': labelled.base.attributes.get('label_calculations')['2']}, project='id'
    )
    assert query.one()[0] == calcs[0].pk
    graph = orm.QueryBuilder()  # the docs' recipe through the graph (docs/labelling.md)
    graph.append(orm.Data, filters={'uuid': labelled.uuid}, tag='labelled')
    graph.append(orm.CalculationNode, with_outgoing='labelled', tag='qc')
    graph.append(orm.ArrayData, with_outgoing='qc', tag='labels')
    graph.append(orm.CalculationNode, with_outgoing='labels', tag='extract')
    graph.append(orm.FolderData, with_outgoing='extract', tag='retrieved')
    graph.append(orm.CalcJobNode, with_outgoing='retrieved', project='id')
    assert graph.distinct().all(flat=True) == [calcs[0].pk]
    singles = {n.uuid for n in _calcjobs(single_node)}
    assert set(reference.base.attributes.get('label_calculations').values()) == singles and len(singles) == 4


@pytest.mark.slow
def test_unconverged_frame_of_a_batch_is_labelled_again_alone(cp2k_code, serial_options):
    """Frame 3 of a batch cannot converge with 2 outer SCF loops: it is labelled again alone (SCF ladder), the others
    keep their batch labels, the counts are right and no frame is labelled twice."""
    frames = FramesData.from_ase(_pyr14bf4_frames(4, crushed=3)).store()
    results, node, _ = _label(
        cp2k_code, frames, serial_options, overrides=LIMITED_SCF, frames_per_job=4, max_concurrent=1
    )
    assert node.is_finished_ok, node.exit_message
    calcs = _calcjobs(node)
    batch = calcs[0]
    assert batch.process_class is Cp2kCalculation
    extraction = next(n for n in node.called if n.process_label == 'extract_cp2k_batch_labels')
    labels = extraction.outputs.result
    assert labels.base.attributes.get('frame_indices') == [0, 1, 2]
    assert labels.base.attributes.get('unconverged') == [3]
    # the frame went through the single-point path: its own IlmlffCp2kBaseWorkChain
    singles = [n for n in node.called if n.process_label == 'IlmlffCp2kBaseWorkChain']
    assert len(singles) == 1 and singles[0].is_finished_ok
    assert [link.link_label for link in node.base.links.get_outgoing(node_class=type(singles[0])).all()] == [
        'frame_000003'
    ]
    summary = results['summary'].get_dict()
    assert summary['n_frames'] == 4
    assert summary['n_relabelled_singly'] == 1 and list(summary['relabelled_singly']) == ['3']
    assert 'SCF not converged' in summary['relabelled_singly']['3']
    assert summary['n_jobs'] == 2 and summary['n_batches'] == 1
    assert summary['n_labelled'] + summary['n_rejected'] == 4
    assert results['rejected'].get_dict() == {}
    assert summary['n_labelled'] == 4 and summary['labelled_indices'] == [0, 1, 2, 3]
    owners = results['labelled'].base.attributes.get('label_calculations')
    assert [owners[str(k)] for k in range(3)] == [batch.uuid] * 3
    # frame 3: labelled by the last CalcJob of its single point (rung 1 of the SCF ladder), not by the batch
    assert owners['3'] == calcs[-1].uuid and calcs[-1].process_class is Cp2kCalculation
    assert calcs[-1].inputs.parameters['GLOBAL']['RUN_TYPE'] == 'ENERGY_FORCE'
    assert len(calcs) == 3  # the batch, the failed single point, the single point of rung 1


@pytest.mark.slow
def test_batch_is_cached(cp2k_code, serial_options):
    """Labelling the same frames twice in batches with caching on runs CP2K once: the second batch is a cache hit."""
    from aiida.manage.caching import enable_caching

    frames = FramesData.from_ase(_pyr14bf4_frames(3)).store()
    with enable_caching(identifier='aiida.calculations:cp2k'):
        first, node1, _ = _label(cp2k_code, frames, serial_options, frames_per_job=3)
        second, node2, _ = _label(cp2k_code, frames, serial_options, frames_per_job=3)
    assert node1.is_finished_ok and node2.is_finished_ok
    (calc1,), (calc2,) = _calcjobs(node1), _calcjobs(node2)
    assert calc2.base.caching.get_cache_source() == calc1.uuid
    assert np.array_equal(first['labelled'].energies, second['labelled'].energies)
