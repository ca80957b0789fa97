"""``ilmlff.pipeline``'s foundation-model path with the real codes (issue 17, item 5).

A tiny MACE trained on another ionic liquid (EMIM BF4, labelled with CP2K GFN1-xTB: :func:`foundation_frames`) plays
the foundation model (MACE-MPA-0 or OMAT-0 cannot be downloaded here). The pipeline, given the suite's PYR14BF4 frames
labelled at the same level of theory and ``architectures: []``, compares it as it is and fine-tuned with
mace_run_train's ``--foundation_model`` on the PYR14BF4 training set: both rows with errors on one test set, MD
properties (or their flags), and `aiida-ilmlff report` reprints the table from the graph.
"""

from __future__ import annotations

import time

import pytest
from aiida.engine import run_get_node

from aiida_ilmlff.analysis.comparison import format_comparison_table
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.pipeline import PipelineWorkChain
from tests.fixtures.boxes import PYR14BF4
from tests.fixtures.models import ELEMENTS, R_CUT, model_node

from .conftest import ONE_THREAD, RELAXED_GUARDS

KEY = 'emim_bf4'

#: No committee is trained (``architectures: []``); the fine-tune runs 10 epochs in batches of 2; NPT and NVT runs of
#: 100 and 200 steps with relaxed guards (the plumbing is under test, as in test_pipeline_real).
OVERRIDES = {
    'validation': False,
    'test_fraction': 0.25,
    'meta_parameters': {
        'architectures': [],
        'finetune_overrides': {'mace': {'parameters': {'max_num_epochs': 10, 'batch_size': 2, 'valid_batch_size': 4}}},
        'properties_overrides': {
            'max_npt_stages': 1,
            'analysis': {'discard_ps': 0.02},
            'npt': {
                'md': {
                    'parameters': {'guards': RELAXED_GUARDS, 'steps': 100, 'checkpoint_every': 50, 'tau_p_fs': 500.0}
                }
            },
            'nvt': {'md': {'parameters': {'guards': RELAXED_GUARDS, 'steps': 200, 'checkpoint_every': 100}}},
        },
    },
}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_foundation_model_as_is_and_fine_tuned(
    pipeline_codes, labelled_frames_file, foundation_mace_file, aiida_profile, tmp_path
):
    """EMIM BF4 model -> fine-tuned on PYR14BF4 through `foundation_models`: two rows, the fine-tuned one better."""
    foundation = model_node(foundation_mace_file, 'mace', 'float64')
    assert foundation.elements == ELEMENTS  # EMIM BF4 has the elements of PYR14BF4
    frames = FramesData.from_file(labelled_frames_file, 'extxyz', origin='EQ', level_of_theory='GFN1-xTB').store()
    codes = {key: pipeline_codes[key] for key in ('mace', 'runner')}
    builder = PipelineWorkChain.get_builder_from_protocol(
        codes,
        PYR14BF4,
        protocol='fast',
        overrides=OVERRIDES,
        options={'environment_variables': ONE_THREAD},
        frames=frames,
        foundation_models={KEY: foundation},
    )
    assert 'mace' not in builder._inputs(prune=True) and 'deepmd' not in builder._inputs(prune=True)
    start = time.perf_counter()
    _, node = run_get_node(builder)
    print(f'ilmlff.pipeline foundation as is + fine-tuned: {time.perf_counter() - start:.0f} s wall')
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    comparison = node.outputs.comparison.get_dict()
    table = format_comparison_table(comparison)
    print(table)
    as_is, tuned = comparison['rows'][f'foundation_{KEY}'], comparison['rows'][f'finetuned_{KEY}']
    assert set(comparison['rows']) == {f'foundation_{KEY}', f'finetuned_{KEY}'}
    assert as_is['label'] == f'{KEY} (as is)' and tuned['label'] == f'{KEY} (fine-tuned)'
    test = node.outputs.test_set
    for row in (as_is, tuned):
        assert row['n_test_frames'] == test.n_frames >= 2 and row['committee_size'] == 1, row
        assert row['force_rmse'] > 0, row
        # every number of a row is a result or flagged (as in test_pipeline_real)
        if row['broken'] or row['unstable']:
            assert row['density'] is None and any('no density, D or structure' in flag for flag in row['flags'])
    # Fine-tuning on the target liquid's frames beats the other liquid's model on the target's test set (measured
    # 2026-12-07: force RMSE 438 meV/Å (21 %) as is, 227 meV/Å (11 %) fine-tuned; before the E0s step the fine-tune
    # made it worse, 496 meV/Å, because mace kept the EMIM BF4 E0s, 18 eV/atom off for PYR14BF4).
    assert tuned['force_rmse'] < as_is['force_rmse'], (tuned['force_rmse'], as_is['force_rmse'])

    # Provenance: the fine-tuned model was trained from the foundation model on the pipeline's training set.
    finetune = node.base.links.get_outgoing(link_label_filter=f'finetune_{KEY}').one().node
    (calc,) = [child for child in finetune.called if child.process_label == 'MaceTrainCalculation']
    assert calc.inputs.foundation_model.uuid == foundation.uuid
    assert calc.inputs.train.uuid == node.outputs.training_set.uuid
    tuned_model = node.outputs.models[f'finetuned_{KEY}']['model_0']
    assert tuned_model.r_cut == R_CUT and tuned_model.sha256 != foundation.sha256
    log = calc.outputs.retrieved.base.repository.get_object_content(_training_log(calc))
    assert 'Using foundation model foundation.model as initial checkpoint.' in log
    # the E0s step (the pipeline's fine-tune protocol: `estimated`) moved the foundation's E0s onto PYR14BF4's energies
    e0s = calc.outputs.metrics['foundation_e0s']
    # fitted on the job's train.xyz: the training set less mace's validation frames
    assert e0s['mode'] == 'estimated' and 0 < e0s['n_frames'] <= node.outputs.training_set.n_frames
    assert e0s['energy_rmse_after_meV_per_atom'] < 0.01 * e0s['energy_rmse_before_meV_per_atom'], e0s

    # aiida-ilmlff report reprints both rows from the graph.
    from click.testing import CliRunner

    from aiida_ilmlff.cli import cli

    result = CliRunner().invoke(cli, ['report', str(node.pk), '-o', str(tmp_path / 'figures')])
    assert result.exit_code == 0, result.output
    assert table in result.output


def _training_log(calc) -> str:
    """The name of mace_run_train's log among the retrieved files (``logs/<name>-<seed>.log``)."""
    repository = calc.outputs.retrieved.base.repository
    names = [
        f'logs/{name}'
        for name in repository.list_object_names('logs')
        if name.endswith('.log') and not name.endswith('_debug.log')
    ]
    assert len(names) == 1, names
    return names[0]
