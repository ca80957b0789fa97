"""``ilmlff.deepmd.train`` parser on the real output of one tiny ``dp --tf`` job (``data/deepmd_train/``).

The files come from :mod:`tests.parsers.generate_data` (24/6/6 Li+ BF4- frames labelled by CP2K GFN1-xTB,
``TINY_DEEPMD``: se_e2_a, 200 steps, seed 5): the ``-l`` logs and stderr of ``dp train``, ``dp freeze`` and
``dp test``, ``lcurve.out``, ``input.json``, the split record and (retrieved temporary) ``dp test``'s
``detail.e.out`` / ``detail.f.out``. The frozen model is not kept (the parser only hashes it): a stand-in is put
in its place. Failure modes are made by removing or cutting real files.
"""

from __future__ import annotations

import pytest

from aiida_ilmlff.parsers.deepmd import DeepmdTrainParser, parse_lcurve
from tests.fixtures.regression import node_summary, rounded
from tests.fixtures.training import TINY_DEEPMD

from .conftest import DATA

FOLDER = DATA / 'deepmd_train'
MODEL = {'frozen_model.pb': b'stand-in for the frozen DeePMD model (the parser only hashes it)'}
TEMPORARY = ('detail.e.out', 'detail.f.out')


def _parse(parse_folder, extra=None, exit_status=None):
    from aiida import orm

    return parse_folder(
        DeepmdTrainParser,
        'ilmlff.deepmd.train',
        FOLDER,
        inputs={'parameters': orm.Dict(TINY_DEEPMD)},
        temporary=TEMPORARY,
        exit_status=exit_status,
        extra={**MODEL, **(extra or {})},
    )


def test_real_training_is_parsed(parse_folder, data_regression):
    """Metrics per split (from dp test's detail files), the learning curve and the model node."""
    results, calcfunction = _parse(parse_folder)
    assert calcfunction.exit_status == 0, calcfunction.exit_message
    model = results['model']
    assert model.architecture == 'deepmd' and model.type_map == ['B', 'F', 'Li']
    metrics = results['metrics'].get_dict()
    assert metrics['n_steps'] == TINY_DEEPMD['numb_steps']
    assert set(metrics) >= {'train', 'valid', 'test'}
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


def test_test_log_agrees_with_the_detail_files():
    """dp test's own RMSE of the valid system (test.log, eV/Å) equals the one from its detail files' rows."""
    import re

    import numpy as np

    text = (FOLDER / 'test.log').read_text()
    systems = re.findall(r'# testing system : (\S+)', text)
    reported = [float(x) for x in re.findall(r'Force  RMSE\s*:\s*(\S+) eV', text)]
    forces = np.loadtxt(FOLDER / 'detail.f.out', ndmin=2)
    per_system = 6 * np.array([24 if 'train' in s else 6 for s in systems])
    start = 0
    for system, rows, rmse in zip(systems, per_system, reported):
        part = forces[start : start + rows]
        start += rows
        assert np.sqrt(np.mean((part[:, 3:6] - part[:, 0:3]) ** 2)) == pytest.approx(rmse, rel=1e-5), system


def test_lcurve_reader(data_regression):
    """``parse_lcurve`` straight from the file: columns by header name (no AiiDA)."""
    data_regression.check(rounded(parse_lcurve((FOLDER / 'lcurve.out').read_text())))


@pytest.mark.parametrize(
    ('case', 'change', 'status', 'fragment'),
    [
        ('model missing', {'frozen_model.pb': None}, 312, 'frozen_model.pb'),
        ('dp test files missing', {'detail.e.out': None}, 313, 'dp test'),
        ('learning curve missing', {'lcurve.out': None}, 311, 'lcurve.out'),
        ('training log cut', 'cut_log', 320, 'Training failed'),
        ('training log missing', {'train.log': None}, 320, 'Training failed'),
    ],
)
def test_failure_modes_on_real_files(parse_folder, case, change, status, fragment):
    """Each missing or cut file maps onto its exit code (see docs/exit_codes.md)."""
    if change == 'cut_log':
        lines = (FOLDER / 'train.log').read_text().splitlines()
        end = min(i for i, line in enumerate(lines) if 'finished training' in line)
        change = {'train.log': ('\n'.join(lines[:end]) + '\n').encode()}
    _, calcfunction = _parse(parse_folder, extra=change)
    assert calcfunction.exit_status == status, (case, calcfunction.exit_message)
    assert fragment in calcfunction.exit_message, (case, calcfunction.exit_message)


def test_walltime_keeps_the_learning_curve(parse_folder):
    """A job stopped by the scheduler's wall time (120) becomes 400 and still outputs its learning curve."""
    results, calcfunction = _parse(parse_folder, exit_status=120)
    assert calcfunction.exit_status == 400 and 'learning_curve' in results
