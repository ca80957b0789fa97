"""Parsers on hand-made retrieved folders for failures a tiny real run does not produce (NaN losses, runner errors).

The parsers on real output files, and the failure modes made from them, are in ``tests/parsers/``.
"""

from __future__ import annotations

import json

import pytest
from aiida import orm

from aiida_ilmlff.parsers.deepmd import DeepmdTrainParser
from aiida_ilmlff.parsers.evaluate import EvaluateParser
from aiida_ilmlff.parsers.mace import MaceTrainParser
from tests.fixtures.training import TINY_DEEPMD, TINY_MACE

SPLIT = json.dumps({'n_frames': {'train': 4, 'valid': 2}, 'order': ['train', 'valid'], 'model_file': 'mace.model'})


def _parse(parse_folder, parser_class, entry_point, files, inputs=None, exit_status=None):
    """Run ``parser_class`` on a retrieved folder holding ``files`` (name -> text) with ``inputs``."""
    extra = {name: content.encode() for name, content in files.items()}
    return parse_folder(parser_class, entry_point, {}, inputs=inputs, exit_status=exit_status, extra=extra)


def test_mace_nan_loss_gives_410_and_keeps_the_learning_curve(parse_folder):
    results_lines = '\n'.join(
        json.dumps(line)
        for line in (
            {'loss': 4.0, 'rmse_e_per_atom': 0.1, 'rmse_f': 0.5, 'mode': 'eval', 'epoch': None},
            {'loss': float('nan'), 'mode': 'opt', 'epoch': 0},
            {'loss': float('nan'), 'rmse_e_per_atom': float('nan'), 'rmse_f': float('nan'), 'mode': 'eval', 'epoch': 0},
        )
    )
    files = {
        'logs/mace_run-3.log': '2026-01-01 00:00:00.000 INFO: Started training\n2026-01-01 00:00:01.000 INFO: Done\n',
        'results/mace_run-3_train.txt': results_lines,
        'ilmlff_split.json': SPLIT,
    }
    results, calcfunction = _parse(
        parse_folder, MaceTrainParser, 'ilmlff.mace.train', files, {'parameters': orm.Dict({**TINY_MACE, 'lr': 50.0})}
    )
    assert calcfunction.exit_status == 410
    assert 'epoch 0' in calcfunction.exit_message and 'learning rate 50' in calcfunction.exit_message
    assert 'learning_curve' in results and 'model' not in results


@pytest.mark.parametrize('where', ['train.log', 'train.err'])
def test_deepmd_nan_guard_gives_410(parse_folder, where):
    """deepmd-kit 3 aborts by itself on a NaN loss; the parser recognises its message."""
    message = (
        'RuntimeError: NaN detected at batch      10: trn: . Something went wrong, and it is meaningless to continue.\n'
    )
    files = {
        'train.log': '[2026] DEEPMD INFO    training\n' + (message if where == 'train.log' else ''),
        'lcurve.out': '# step rmse_val rmse_trn lr\n      0      4.7e+01    4.6e+01    1.0e+30\n',
        'ilmlff_split.json': json.dumps({'order': ['train', 'valid'], 'model_file': 'frozen_model.pb'}),
    }
    if where == 'train.err':
        files['train.err'] = message
    _, calcfunction = _parse(
        parse_folder,
        DeepmdTrainParser,
        'ilmlff.deepmd.train',
        files,
        {'parameters': orm.Dict({**TINY_DEEPMD, 'start_lr': 1e30})},
    )
    assert calcfunction.exit_status == 410
    assert 'batch 10' in calcfunction.exit_message and '1e+30' in calcfunction.exit_message


def test_evaluate_without_predictions_quotes_the_runner(parse_folder):
    files = {'evaluate.err': "ilmlff-runner evaluate: ValueError: model m0: elements ['Li'] are not in its type_map\n"}
    _, calcfunction = _parse(parse_folder, EvaluateParser, 'ilmlff.evaluate', files)
    assert calcfunction.exit_status == 310 and "elements ['Li']" in calcfunction.exit_message
