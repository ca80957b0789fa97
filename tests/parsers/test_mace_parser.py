"""``ilmlff.mace.train`` parser on the real output of one tiny ``mace_run_train`` job (``data/mace_train/``).

The files come from :mod:`tests.parsers.generate_data` (24/6/6 Li+ BF4- frames labelled by CP2K GFN1-xTB,
``TINY_MACE``: 8 channels, L=0, 4 epochs, float64, seed 3): the training log, the results JSON lines, the split
record, ``mace_eval_configs``'s log and (retrieved temporary) ``eval_output.xyz``. The model file is not kept (the
parser only hashes it): a stand-in is put in its place. Failure modes are made by removing or cutting real files.
"""

from __future__ import annotations

import pytest

from aiida_ilmlff.parsers.mace import MaceTrainParser, parse_error_table, parse_results_lines
from tests.fixtures.regression import node_summary, rounded
from tests.fixtures.training import TINY_MACE

from .conftest import DATA

FOLDER = DATA / 'mace_train'
MODEL = {'mace.model': b'stand-in for the trained MACE model (the parser only hashes it)'}
TEMPORARY = ('eval_output.xyz',)
LOG = 'logs/mace_run-3.log'


def _parse(parse_folder, extra=None, exit_status=None):
    from aiida import orm

    return parse_folder(
        MaceTrainParser,
        'ilmlff.mace.train',
        FOLDER,
        inputs={'parameters': orm.Dict(TINY_MACE)},
        temporary=TEMPORARY,
        exit_status=exit_status,
        extra={**MODEL, **(extra or {})},
    )


def test_real_training_is_parsed(parse_folder, data_regression):
    """Metrics per split (from eval_output.xyz), MACE's own error table, the learning curve and the model node."""
    results, calcfunction = _parse(parse_folder)
    assert calcfunction.exit_status == 0, calcfunction.exit_message
    model = results['model']
    assert model.architecture == 'mace' and model.elements == ['B', 'F', 'Li'] and model.type_map == ['Li', 'B', 'F']
    metrics = results['metrics'].get_dict()
    assert metrics['split']['n_frames'] == {'train': 24, 'valid': 6, 'test': 6}
    assert metrics['n_epochs'] == TINY_MACE['max_num_epochs']
    data_regression.check(
        {
            'metrics': node_summary(results['metrics']),
            'learning_curve': node_summary(results['learning_curve']),
            'model': {
                key: rounded(model.base.attributes.get(key))
                for key in ('architecture', 'elements', 'type_map', 'r_cut', 'dtype', 'seed')
            },
        }
    )


def test_pure_readers_on_the_real_files(data_regression):
    """``parse_results_lines`` and ``parse_error_table`` straight from the files (no AiiDA)."""
    curve = parse_results_lines((FOLDER / 'results' / 'mace_run-3_train.txt').read_text())
    table = parse_error_table((FOLDER / LOG).read_text())
    assert set(table) >= {'train_Default', 'valid_Default'}
    data_regression.check({'curve': rounded(curve), 'error_table': rounded(table)})


@pytest.mark.parametrize(
    ('case', 'change', 'status', 'fragment'),
    [
        ('model missing', {'mace.model': None}, 312, 'mace.model'),
        ('evaluation missing', {'eval_output.xyz': None}, 313, 'eval_output.xyz not found'),
        ('log cut before Done', 'cut_log', 320, 'Training failed'),
        ('results missing', {'results/mace_run-3_train.txt': None}, 311, 'results/mace_run-<seed>_train.txt'),
        ('log missing, traceback in stderr', {LOG: None}, 320, 'Training failed'),
    ],
)
def test_failure_modes_on_real_files(parse_folder, case, change, status, fragment):
    """Each missing or cut file maps onto its exit code (see docs/exit_codes.md)."""
    if change == 'cut_log':
        lines = (FOLDER / LOG).read_text().splitlines()
        done = max(i for i, line in enumerate(lines) if 'Done' in line)
        change = {LOG: ('\n'.join(lines[:done]) + '\n').encode()}
    _, calcfunction = _parse(parse_folder, extra=change)
    assert calcfunction.exit_status == status, (case, calcfunction.exit_message)
    assert fragment in calcfunction.exit_message, (case, calcfunction.exit_message)


def test_walltime_keeps_the_learning_curve(parse_folder):
    """A job stopped by the scheduler's wall time (120) becomes 400 and still outputs its learning curve."""
    results, calcfunction = _parse(parse_folder, exit_status=120)
    assert calcfunction.exit_status == 400 and 'learning_curve' in results
