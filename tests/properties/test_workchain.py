"""A real ``ilmlff.properties`` run with the ``fast`` protocol: 2-pair PYR14BF4 box, tiny MACE model, 450 K."""

from __future__ import annotations

import math
import time

import pytest
from aiida.cmdline.utils.common import get_workchain_report
from aiida.engine import run_get_node

from aiida_ilmlff.workflows.properties import PropertiesWorkChain

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_fast_protocol_produces_every_output(runner_code, md_structure, mace_model, job_options):
    """NPT stages -> NVT -> analysis; every output exists and is sane. Wall time printed (``pytest -s``)."""
    builder = PropertiesWorkChain.get_builder_from_protocol(
        runner_code, md_structure, models=[mace_model], protocol='fast', options=job_options
    )
    start = time.perf_counter()
    _, node = run_get_node(builder)
    wall = time.perf_counter() - start
    report = get_workchain_report(node, 'REPORT')
    print(report)
    print(f'ilmlff.properties fast: {wall:.1f} s wall')
    for calculation in sorted(node.called_descendants, key=lambda n: n.ctime):
        if calculation.process_label == 'MDCalculation' and 'output_parameters' in calculation.outputs:
            summary = calculation.outputs.output_parameters.get_dict()
            print(
                f'MDCalculation<{calculation.pk}> ({calculation.inputs.parameters["ensemble"]}): '
                f'{summary.get("steps_done")} steps, MD loop {summary.get("loop_time_s") or 0:.1f} s'
            )
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    properties = node.outputs.properties.get_dict()
    density = properties['density_g_cm3']
    assert math.isfinite(density['mean']) and density['mean'] > 0 and density['error'] >= 0
    assert 2 <= density['n_stages'] <= 3 and isinstance(density['converged'], bool)
    assert properties['temperature_K'] == 450.0
    for species in ('PYR14', 'BF4'):
        entry = properties['diffusion'][species]
        if entry['diffusive']:
            assert entry['D_m2_s'] > 0, entry
        else:  # 1.2 ps of a 2-pair box is rarely diffusive: then no D, the regime and the MSD reached instead
            assert entry.get('D_m2_s') is None and entry['regime'] != 'diffusive' and entry['msd_reached_A2'] > 0, entry
            assert f'D({species}): none' in report
        start_ps, end_ps = entry['fit_window_ps']
        assert 0 <= start_ps < end_ps <= 1.0  # 1.2 ps NVT, the first 0.2 ps discarded
    assert set(properties['coordination']) == {'PYR14-PYR14', 'PYR14-BF4', 'BF4-BF4'}
    for entry in properties['coordination'].values():
        assert entry['r_cut_A'] > 0 and entry['cn'] >= 0
    assert 'li_clusters' not in properties and 'tfsi_conformers' not in properties
    assert 'NPT stage 1: density' in report and 'NPT stage 2: density' in report

    curves = node.outputs.curves
    assert set(curves) == {'msd', 'rdf', 'cn'}
    assert curves.msd.get_array('lag_ps').shape == curves.msd.get_array('msd_PYR14').shape
    assert curves.rdf.get_array('g_0').shape == curves.cn.get_array('cn_0').shape == curves.rdf.get_array('r_A').shape
    assert set(node.outputs.figures) == {'density', 'msd', 'rdf'}
    for figure in node.outputs.figures.values():
        assert figure.get_content('rb')[:8] == PNG_MAGIC

    npt, nvt = node.outputs.npt_trajectory, node.outputs.nvt_trajectory
    assert npt.n_frames > 100 and nvt.n_frames == 121 and nvt.base.attributes.get('ensemble') == 'nvt'
    assert nvt.base.attributes.get('species') == {'BF4': 2, 'PYR14': 2}
    # NVT runs at the mean density of the last NPT stage
    with nvt.open_reader() as reader:
        from aiida_ilmlff.analysis import density as density_of

        assert density_of(reader.masses, reader.volumes(0, 1)[0]) == pytest.approx(density['mean'], rel=1e-6)


@pytest.mark.parametrize('stage', ['npt', 'nvt'])
def test_broken_molecule_gives_no_properties(runner_code, md_structure, mace_model, job_options, stage):
    """A model that breaks a bond (here: the real tiny MACE with the bond guard at 1.02x, so that the first thermal
    stretch past 2 % counts as broken) gets no density, diffusion or structure: ``properties.broken`` names the
    bond and the stage, the work chain ends with 511."""
    strict = {'md': {'parameters': {'guards': {'max_bond_stretch': 1.02}}}, 'max_guard_restarts': 0}
    overrides = {stage: strict}
    if stage == 'nvt':  # one short NPT stage first (its density is then *not* reported either)
        overrides['npt'] = {'md': {'parameters': {'steps': 200}}}
        overrides['max_npt_stages'] = 1
    builder = PropertiesWorkChain.get_builder_from_protocol(
        runner_code, md_structure, models=[mace_model], protocol='fast', options=job_options, overrides=overrides
    )
    _, node = run_get_node(builder)
    report = get_workchain_report(node, 'REPORT')
    print(report)
    assert node.exit_status == 511 == PropertiesWorkChain.exit_codes.ERROR_MOLECULE_BROKEN.status, node.exit_message
    properties = node.outputs.properties.get_dict()
    broken = properties['broken']
    assert broken['stage'] == ('npt_1' if stage == 'npt' else 'nvt')
    assert broken['species'] in ('PYR14', 'BF4') and broken['stretch'] > 1.02 == broken['threshold']
    assert properties['density_g_cm3'] is None and properties['diffusion'] == {} and properties['coordination'] == {}
    assert broken['label'] in node.exit_message and 'broke a molecule' in report
    assert 'curves' not in node.outputs and 'nvt_trajectory' not in node.outputs
    analyses = [n for n in node.called_descendants if n.process_label.startswith('analyse_')]
    assert analyses == []
    if stage == 'nvt':  # the NVT bond guard measured against the input box's bonds, carried by the NPT checkpoint
        nvt_runs = [
            n for n in node.called_descendants if n.process_label == 'MDCalculation' and 'bond_reference' in n.inputs
        ]
        assert len(nvt_runs) == 1
        assert nvt_runs[0].outputs.output_parameters['bond_guard']['reference'] == 'bond_reference'


def test_unstable_model_gives_no_properties(runner_code, md_structure, mace_model, job_options):
    """A model whose MD gives up on a guard other than ``bond`` (here: the temperature guard at 1.02 x T, which the
    first thermal fluctuation trips) is unstable: no density, diffusion or structure, ``properties.unstable`` names
    the guard and the stage, the work chain ends with 512."""
    strict = {'md': {'parameters': {'guards': {'max_temperature_factor': 1.02}}}, 'max_guard_restarts': 0}
    builder = PropertiesWorkChain.get_builder_from_protocol(
        runner_code, md_structure, models=[mace_model], protocol='fast', options=job_options, overrides={'npt': strict}
    )
    _, node = run_get_node(builder)
    report = get_workchain_report(node, 'REPORT')
    print(report)
    assert node.exit_status == 512 == PropertiesWorkChain.exit_codes.ERROR_MODEL_UNSTABLE.status, node.exit_message
    properties = node.outputs.properties.get_dict()
    unstable = properties['unstable']
    assert unstable['guard'] == 'temperature' and unstable['stage'] == 'npt_1'
    assert unstable['value'] > unstable['threshold'] > 0 and unstable['step'] >= 1
    assert properties['density_g_cm3'] is None and properties['diffusion'] == {} and properties['coordination'] == {}
    assert 'was unstable' in report and 'temperature' in node.exit_message
    assert 'curves' not in node.outputs and 'nvt_trajectory' not in node.outputs
    # the MD work chain kept the frames saved before the trip as outputs
    md = node.base.links.get_outgoing(link_label_filter='npt_1').one().node
    assert md.exit_status == 502 and md.outputs.trajectory.n_frames >= 1
