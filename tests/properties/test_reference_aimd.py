"""The reference AIMD as a trajectory (:func:`aiida_ilmlff.calculations.functions.reference.aimd_trajectory`): the
Li+ solvation and TFSI conformer analyses of the models' MD run on it unchanged and give the known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiida import orm

from aiida_ilmlff.calculations.functions.properties import analyse_li_environment, analyse_tfsi_conformers
from aiida_ilmlff.calculations.functions.reference import aimd_trajectory
from aiida_ilmlff.data import FramesData
from tests.analysis.test_li_tfsi_known_answers import EDGE, li_tfsi4


def _aimd_frames(n_frames: int = 6, **changes) -> FramesData:
    """Li+(TFSI-)4 as an AIMD run of ``n_frames`` frames 0.5 fs apart, with small thermal noise."""
    positions, numbers, mol_id = li_tfsi4()
    rng = np.random.default_rng(0)
    frames = np.stack([positions + rng.normal(0, 0.01, positions.shape) for _ in range(n_frames)])
    kwargs = {
        'n_atoms': [len(numbers)] * n_frames,
        'mol_id': np.tile(mol_id, n_frames),
        'molecules': [['Li'] + ['TFSI'] * 4] * n_frames,
        'origin': 'EQ',
        'perturbation': [json.dumps({'generator': 'cp2k_aimd', 'time_fs': 0.5 * k}) for k in range(n_frames)],
    }
    kwargs.update(changes)
    return FramesData.from_arrays(np.tile(numbers, n_frames), frames.reshape(-1, 3), np.eye(3) * EDGE, **kwargs)


def test_reference_aimd_gives_the_known_answers(aiida_profile):
    """Li-O CN 4, four monodentate TFSI, one cluster of one Li+ with four TFSI-; four TFSI classified."""
    trajectory = aimd_trajectory(_aimd_frames())
    assert trajectory.base.attributes.get('n_frames', 6) == 6
    analysis = orm.Dict({'discard_ps': 0.0, 'li_cutoff_A': 2.6})
    li = analyse_li_environment(trajectory, analysis).get_dict()
    assert li['available'] and li['ligand'] == 'TFSI:O'
    assert li['ligand_cn'] == pytest.approx(4.0) and li['anion_cn'] == pytest.approx(4.0)
    assert li['denticity_distribution'] == [1.0] and li['compositions'] == {'1Li4A': 6}
    conformers = analyse_tfsi_conformers(trajectory, analysis).get_dict()
    assert conformers['n_molecules'] == 4 and conformers['n_frames'] == 6
    assert 0.0 <= conformers['cis_fraction'] <= 1.0


@pytest.mark.parametrize(
    ('changes', 'message'),
    [
        ({'perturbation': ''}, 'has no `time_fs`'),
        ({'mol_id': None}, 'no molecule indices'),
    ],
)
def test_frames_that_are_not_one_aimd_run_are_refused(aiida_profile, changes, message):
    with pytest.raises(ValueError, match=message):
        aimd_trajectory(_aimd_frames(**changes))
