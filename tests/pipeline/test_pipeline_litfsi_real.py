"""``ilmlff.pipeline`` over two compositions of LiTFSI/PYR14TFSI with the real codes, at the smallest size.

PYR14TFSI (one ion pair, 45 atoms) and Li 1 + PYR14 1 + TFSI 2 (x(LiTFSI) = 1/2, 61 atoms): CP2K AIMD at the
`fast` level of theory for TFSI (`fast-dft`, PBE-D3(BJ)/SZV-MOLOPT-SR-GTH, DZVP on S), one data set of both
compositions whose held-out test set holds blocks of each, MACE and DeePMD committees trained once on both, test
errors, MD properties and a comparison row per composition and model, with the Li+ solvation and TFSI conformer
results; ``aiida-ilmlff report`` prints the same table from the graph and a QueryBuilder query finds the frames by
composition. The reference AIMD of each composition is analysed as the models' MD. Models of a few frames are not
physical: the test checks that every number is computed or flagged. Marker ``litfsi``: left out of ``make test``,
run by ``make test-litfsi`` (``.ci/run`` runs it after ``make test-faults``).
"""

from __future__ import annotations

import re
import sys
import time

import pytest
from aiida import orm
from aiida.cmdline.utils.common import get_workchain_report
from aiida.engine import run_get_node

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.aimd import HOT_AIMD_FACTOR
from aiida_ilmlff.workflows.pipeline import PipelineWorkChain

from .conftest import ONE_THREAD, smallest_overrides

NEAT, LITHIUM = {'PYR14': 1, 'TFSI': 1}, {'Li': 1, 'PYR14': 1, 'TFSI': 2}
NEAT_KEY, LITHIUM_KEY = 'PYR14:1 TFSI:1', 'Li:1 PYR14:1 TFSI:2'
#: The smallest two-composition pipeline, sized to 10 minutes on 2 cores: a 5-step AIMD (2.5 fs) per composition at
#: `fast-dft` gives 4 EQ frames after the first step (no nEQ frame: a single point of the 61-atom box costs
#: ~60 OT steps of 2.5 s from an atomic guess, measured with two jobs on 2 cores); 1 fs test blocks 0.25 fs apart
#: from the training frames; committees of 2; short NPT and NVT runs. (250 Ry would be cheaper, but the OT of the
#: 61-atom box then stagnates at a gradient of 3.4e-5: measured, not used.) No pre-relaxation of the boxes
#: (`fast-dft` relaxes them for 10 steps): its first SCF alone would cost what the AIMD does; the relaxation has its
#: own real test (tests/workflows/test_aimd_scf.py) and ran in the example (docs/litfsi.md).
AIMD_STEPS = 5
SMALLEST_LITFSI = smallest_overrides(
    test_fraction=0.3,
    test_block_fs=1.0,
    test_gap_fs=0.25,
    dataset={
        'n_eq': 4,
        'n_neq': 0,
        'aimd': {'md': {'steps': AIMD_STEPS}, 'relax': {'max_steps': 0}},
        'eq': {'sampling': {'equilibration': 1}},
    },
    max_npt_stages=1,
    discard_ps=0.02,
    npt_steps=100,
    nvt_steps=200,
)


@pytest.mark.slow
@pytest.mark.litfsi  # left out of make test (14.5 min alone); make test-litfsi and .ci/run run it
@pytest.mark.timeout(1200)
def test_litfsi_two_compositions(pipeline_codes, aiida_profile, tmp_path):
    """Two compositions, one model per architecture, every Li+ and TFSI output, the report, a query by composition."""
    builder = PipelineWorkChain.get_builder_from_protocol(
        pipeline_codes,
        compositions=[NEAT, LITHIUM],
        protocol='fast',
        overrides=SMALLEST_LITFSI,
        options={'environment_variables': ONE_THREAD},
    )
    start = time.perf_counter()
    _, node = run_get_node(builder)
    wall = time.perf_counter() - start
    report = get_workchain_report(node, 'REPORT')
    print(report)
    print(f'ilmlff.pipeline LiTFSI/PYR14TFSI two compositions: {wall:.0f} s wall', file=sys.stderr)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    # An AIMD far hotter than its thermostat (a built box that was not relaxed) says so.
    for mean in re.findall(r'AimdWorkChain\|results\]: \d+ frames from steps \S+; mean T (\d+) K', report):
        hot = f'warning: mean T {mean} K is more than' in report
        assert hot == (float(mean) > HOT_AIMD_FACTOR * 298.15), mean

    # One data set of both compositions at one level of theory; the test set holds frames of each.
    dataset, test = node.outputs.dataset, node.outputs.test_set
    assert dataset.base.attributes.get('compositions') == [LITHIUM_KEY, NEAT_KEY]
    assert dataset.base.attributes.get('level_of_theory')[0].startswith('cp2k/PBE-D3(BJ):')
    split = node.outputs.test_split.get_dict()
    assert set(split['test_by_composition']) == {NEAT_KEY, LITHIUM_KEY}, split
    assert split['leak_free']
    assert sorted(set(test.composition_keys.tolist())) == [LITHIUM_KEY, NEAT_KEY]
    # Both committees trained once, on the very same training set of both compositions.
    for name in ('mace', 'deepmd'):
        train = node.base.links.get_outgoing(link_label_filter=f'train_{name}').one().node
        assert train.inputs.train.uuid == node.outputs.training_set.uuid

    # A comparison row per composition and model, with the errors on that composition's test frames.
    comparison = node.outputs.comparison.get_dict()
    assert set(comparison['rows']) == {'mace_c0', 'mace_c1', 'deepmd_c0', 'deepmd_c1'}
    assert set(comparison['ions']) == {'Li', 'PYR14', 'TFSI'}
    for name, row in comparison['rows'].items():
        key = NEAT_KEY if name.endswith('_c0') else LITHIUM_KEY
        assert row['composition'] == key and row['label'].endswith(f'[{key}]')
        evaluated = node.outputs.evaluation[name]
        frames = evaluated.creator.inputs.frames
        assert set(frames.composition_keys.tolist()) == {key} and row['n_test_frames'] == len(frames)
        assert row['force_rmse'] > 0
        failed = row['broken'] or row['unstable']
        properties = node.outputs.properties[name].get_dict()
        # The TFSI conformers of every run, the Li+ solvation of the Li+ composition: computed, or the row says
        # why not (a broken or unstable MD has no structure at all).
        if failed:
            assert row['li_solvation'] is None and row['tfsi_cis_fraction'] is None
            assert any('no density, D or structure' in flag for flag in row['flags'])
            continue
        assert 0.0 <= row['tfsi_cis_fraction'] <= 1.0
        assert set(properties['tfsi_conformers']) >= {'cis_fraction', 'trans_fraction', 'n_molecules'}
        if key == NEAT_KEY:
            assert row['li_solvation'] is None and 'li_clusters' not in properties
            assert row['D']['Li']['value'] is None and row['D']['Li']['regime'] is None
        elif properties['li_clusters'].get('available') is False:  # no first shell in the Li-O g(r): said why
            assert row['li_solvation'] is None
            assert any(flag.startswith('Li+ solvation: the Li-TFSI:O g(r)') for flag in row['flags']), row['flags']
        else:
            li = properties['li_clusters']
            assert set(li) >= {
                'ligand_cn',
                'anion_cn',
                'anion_cn_distribution',
                'denticity_distribution',
                'cluster_sizes',
                'cluster_fraction',
                'mean_cluster_size',
                'lifetime_continuous_ps',
                'lifetime_intermittent_ps',
            }
            assert li['ligand'] == 'TFSI:O' and row['li_solvation']['ligand_cn'] == li['ligand_cn']
            assert abs(sum(li['anion_cn_distribution']) - 1.0) < 1e-9
            for kind in ('continuous', 'intermittent'):
                value = row['li_solvation'][f'lifetime_{kind}_ps']
                flagged = any(f'{kind} lifetime' in flag for flag in row['flags'])
                assert flagged or (value is not None and not row['li_solvation'][f'lifetime_{kind}_lower_bound'])
        # D of every ion of the composition: a value from a diffusive MSD, or flagged.
        for ion in key.replace(':', ' ').split()[::2]:
            cell = row['D'][ion]
            assert cell['value'] is None or cell['regime'] == 'diffusive', (ion, cell)
            if cell['value'] is None:
                assert any(flag.startswith(f'D {ion}') for flag in row['flags']), (ion, row['flags'])

    # The reference AIMD of each composition (the data set's CP2K run), analysed as the models' MD: TFSI conformers
    # of both, the Li+ solvation of the Li+ composition (or why not).
    references = comparison['references']
    assert set(references) == {NEAT_KEY, LITHIUM_KEY}
    for key, reference in references.items():
        assert 0.0 <= reference['tfsi_cis_fraction'] <= 1.0 and reference['n_frames'] == AIMD_STEPS + 1
        if key == NEAT_KEY:
            assert reference['li_solvation'] is None and not reference['flags']
        else:
            assert reference['li_solvation'] is not None or reference['flags'][0].startswith('Li+ solvation:')
    compare = node.base.links.get_outgoing(link_label_filter='compare_models').one().node
    trajectory = compare.inputs.references.get_dict()[LITHIUM_KEY]['trajectory_uuid']
    assert orm.load_node(trajectory).creator.inputs.frames.base.attributes.get('compositions') == [LITHIUM_KEY]

    # aiida-ilmlff report: the same table, from the graph.
    from click.testing import CliRunner

    from aiida_ilmlff.analysis.comparison import format_comparison_table
    from aiida_ilmlff.cli import cli

    result = CliRunner().invoke(cli, ['report', str(node.pk), '-o', str(tmp_path / 'figures')])
    assert result.exit_code == 0, result.output
    assert format_comparison_table(comparison) in result.output
    assert 'TFSI cis' in result.output

    # The frames of the Li+ composition, found by composition: the merged data set and that composition's own set.
    query = orm.QueryBuilder().append(FramesData, filters={'attributes.compositions': {'contains': [LITHIUM_KEY]}})
    found = {frames.uuid for frames in query.all(flat=True)}
    assert dataset.uuid in found
    neat_only = orm.QueryBuilder().append(
        FramesData,
        filters={'attributes.compositions': {'==': [NEAT_KEY]}, 'attributes.labelled': True},
    )
    assert neat_only.count() >= 1 and dataset.uuid not in {f.uuid for f in neat_only.all(flat=True)}
