"""``examples/study_pyr14bf4.py --quick`` on a fresh profile with its daemon: every stage of the study, for real.

The smallest study (CP2K GFN1-xTB data sets of PYR14BF4 and of EMIM BF4, the foundation MACE, pipelines (a) EQ only,
(b) EQ + nEQ with the foundation as is and fine-tuned, (c) with active learning, the 550 K NVT runs) runs through
the daemon as a user runs it; then ``--report`` prints the same table from the graph alone. Its numbers are not
physics (a handful of frames per model): the test checks that every row is there, on one shared test set, and
that each number is a number or says why not. Left out of ``make test``; ``make test-study`` runs it.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from tests.fixtures.daemon import daemon_profile, run

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'examples'


@pytest.mark.study
@pytest.mark.timeout(3600)
def test_quick_study_runs_every_stage_and_reports_from_the_graph(tmp_path):
    with daemon_profile('sqlite-zeromq', tmp_path, name='studytest') as profile:
        output = tmp_path / 'study.json'
        command = [sys.executable, EXAMPLES / 'study_pyr14bf4.py', '--quick', '--label', 'test', '--keep-daemon']
        result = run([*command, '--json', str(output)], profile.env, timeout=3300)
        print(result.stdout[-6000:])
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        study = json.loads(output.read_text())
        assert output.with_suffix('.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

        variants = {(row['variant'], row['model']) for row in study['rows']}
        for variant in ('(a) EQ', '(b) EQ+nEQ', '(c) +AL'):
            assert {(variant, 'MACE'), (variant, 'DeePMD')} <= variants, variants
        assert {('(d) as is', 'MACE'), ('(d) fine-tuned', 'MACE')} <= variants, variants
        for row in study['rows']:
            assert row['force_rmse'] > 0 and 0 < row['force_rmse_relative'] < 10, row
            assert row['intact_450K'] is not None and row['intact_550K'] is not None, row
        # (a) trained on fewer frames than (b) (the EQ frames of the same training part); (c) on (b)'s and what its
        # active learning added (models of a handful of frames may add none: the report says so)
        n_train = {row['variant']: row['n_train'] for row in study['rows']}
        assert n_train['(a) EQ'] < n_train['(b) EQ+nEQ'] <= n_train['(c) +AL'], n_train
        active_learning = study['active_learning']
        assert active_learning['iterations'], active_learning
        rows = active_learning['iterations']
        assert rows[0]['n_train_before'] == n_train['(b) EQ+nEQ'], (n_train, rows)
        assert rows[-1]['n_train_after'] == n_train['(c) +AL'], (n_train, rows)
        assert set(study['wall_s']) >= {'foundation', 'b', 'a_and_c', 'stability_550K', 'total'}

        # the table again from the graph alone
        again = run([sys.executable, EXAMPLES / 'study_pyr14bf4.py', '--report', 'test'], profile.env, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        table = [line for line in again.stdout.splitlines() if line.startswith('| (')]
        assert len(table) == len(study['rows']) and all(line in result.stdout for line in table)
        assert 'EQ + nEQ needed (MACE): ' in again.stdout and 'MACE beats DeePMD on the same data: ' in again.stdout
