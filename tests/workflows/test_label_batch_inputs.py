"""``frames_per_job`` (batched CP2K labelling): bad input fails before submission; the pure pieces (batch input,
grouping by species order, reading every evaluation of a REFTRAJ output) without running CP2K."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import run as launch  # validation happens when the process is instantiated, as in submit()
from ase import Atoms

from aiida_ilmlff.calculations.functions.labels import check_batch
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.parsers.cp2k_output import HARTREE_PER_BOHR_TO_EV_PER_A, HARTREE_TO_EV, parse_cp2k_evaluations
from aiida_ilmlff.workflows.engines import Cp2kEngine
from aiida_ilmlff.workflows.engines.cp2k import cp2k_batch_parameters, group_by_species
from aiida_ilmlff.workflows.label import LabelWorkChain, check_inputs
from tests.fixtures import count_nodes

from .conftest import libf4_atoms


def _reordered(atoms: Atoms) -> Atoms:
    """``atoms`` with its first two atoms swapped (same composition, another species order)."""
    order = [1, 0, *range(2, len(atoms))]
    return atoms[order]


@pytest.fixture
def frames():
    return FramesData.from_ase([libf4_atoms(0), libf4_atoms(1)]).store()


@pytest.mark.parametrize('value', [0, -3])
def test_frames_per_job_below_one_fails_before_submission(cp2k_code, frames, value):
    before = count_nodes()
    with pytest.raises(ValueError, match=r'`frames_per_job` must be an integer >= 1'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, overrides={'frames_per_job': value})
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames)
    with pytest.raises(ValueError, match=r'`frames_per_job` must be an integer >= 1'):
        builder.frames_per_job = orm.Int(value)
    assert count_nodes() == before


def test_frames_per_job_from_the_protocols(cp2k_code, frames):
    assert LabelWorkChain.get_builder_from_protocol(cp2k_code, frames).frames_per_job.value == 20
    assert LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='balanced').frames_per_job.value == 16
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, overrides={'frames_per_job': 1})
    assert builder.frames_per_job.value == 1
    # `fast` frames with S (TFSI) fall back to `fast-dft`, minutes of CP2K a frame: one frame per job
    tfsi = LabelWorkChain.get_plain_protocol_inputs('fast', engine='cp2k', elements=['C', 'F', 'N', 'O', 'S'])
    assert tfsi['frames_per_job'] == 1
    descriptions = LabelWorkChain.get_available_protocols()
    assert 'frames per job' in descriptions['balanced']['description']
    assert '`frames_per_job` 20' in descriptions['fast']['description']


def test_pw_engine_refuses_batches():
    values = LabelWorkChain.get_plain_protocol_inputs('fast', engine='cp2k', elements=['Li', 'B', 'F'])
    qe = {key: value for key, value in values.items() if key != 'cp2k'}
    qe['qe'] = {'pw': {'parameters': {}}}
    assert check_inputs({**qe, 'frames_per_job': 1}) is None
    message = check_inputs({**qe, 'frames_per_job': 4})
    assert message.startswith('`frames_per_job`: the pw.x (Quantum ESPRESSO) engine labels one frame per job')


def test_frame_without_cell_fails_before_a_batched_submission(cp2k_code, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, overrides={'frames_per_job': 4})
    builder.frames = FramesData.from_ase([libf4_atoms(2), Atoms('LiF', positions=[[0, 0, 0], [1.6, 0, 0]])]).store()
    before = count_nodes()
    with pytest.raises(ValueError, match=r'`frames`: 1 frame\(s\) have no cell .*: 1\.'):
        launch(builder)
    assert count_nodes() == before


def test_mixed_species_orders_are_never_one_batch(aiida_profile):
    mixed = FramesData.from_ase([libf4_atoms(0), _reordered(libf4_atoms(1)), libf4_atoms(2), libf4_atoms(3)]).store()
    with pytest.raises(ValueError, match=r'`frames`: frame 1 does not have the species order of frame 0'):
        check_batch(mixed, [0, 1, 2])
    check_batch(mixed, [0, 2, 3])
    # the engine groups frames by species order: the reordered frame is a batch of its own
    engine = Cp2kEngine(AttributeDict({'cp2k': {'parameters': orm.Dict({})}}), compute_stress=True, frames_per_job=2)
    assert engine.batches(mixed, range(4)) == [[0, 2], [1], [3]]
    # a batch given by hand with mixed orders fails before anything is made or submitted
    before = count_nodes()
    with pytest.raises(ValueError, match=r'species order'):
        engine.prepare(mixed, [0, 1], None)
    assert count_nodes() == before


def test_group_by_species_keeps_order_and_size():
    numbers = {0: [3, 5], 1: [5, 3], 2: [3, 5], 3: [3, 5], 4: [3, 5, 9], 5: [3, 5]}
    assert group_by_species(numbers, range(6), 3) == [[0, 2], [1], [3, 5], [4]]  # 4 frames: 2 + 2, not 3 + 1
    assert group_by_species(numbers, [5, 3], 50) == [[5, 3]]
    sizes = [len(batch) for batch in group_by_species({i: [1] for i in range(21)}, range(21), 20)]
    assert sizes == [10, 11]  # ceil(21 / 20) jobs of equal size, not 20 + 1
    batches = group_by_species({i: [1] for i in range(100)}, range(100), 20)
    assert [len(b) for b in batches] == [20] * 5 and [i for b in batches for i in b] == list(range(100))


def test_cp2k_batch_parameters():
    parameters = {'GLOBAL': {'RUN_TYPE': 'ENERGY_FORCE'}, 'FORCE_EVAL': {'METHOD': 'QS'}, 'motion': {'MD': {}}}
    params = cp2k_batch_parameters(parameters, True, 5, variable_cell=True)
    assert params['GLOBAL']['RUN_TYPE'] == 'MD'
    md = params['MOTION']['MD']
    assert md['ENSEMBLE'] == 'REFTRAJ' and md['STEPS'] == 4
    assert md['REFTRAJ'] == {
        'TRAJ_FILE_NAME': 'aiida-reftraj.xyz',
        'EVAL_ENERGY_FORCES': True,
        'EVAL_FORCES': True,
        'FIRST_SNAPSHOT': 1,
        'LAST_SNAPSHOT': 5,
        'STRIDE': 1,
        'VARIABLE_VOLUME': True,
        'CELL_FILE_NAME': 'aiida-reftraj.cell',
    }
    assert 'motion' not in params
    printing = params['FORCE_EVAL']['PRINT']
    assert printing['FORCES'] == {'_': 'ON', 'EACH': {'MD': 1}}
    assert printing['STRESS_TENSOR'] == {'_': 'ON', 'EACH': {'MD': 1}}
    assert params['FORCE_EVAL']['STRESS_TENSOR'] == 'ANALYTICAL'
    fixed = cp2k_batch_parameters(parameters, False, 2, variable_cell=False)
    assert 'VARIABLE_VOLUME' not in fixed['MOTION']['MD']['REFTRAJ'] and 'STRESS_TENSOR' not in fixed['FORCE_EVAL']
    assert parameters['GLOBAL']['RUN_TYPE'] == 'ENERGY_FORCE'  # not changed in place


def _evaluation(energy: float, forces: list, stress: bool = True, converged: bool = True, step: int = 2) -> str:
    scf = (
        '  *** SCF run converged in 6 steps ***\n'
        if converged
        else ' *** WARNING in qs_scf.F:601 :: SCF run NOT converged ***\n'
    )
    text = f' SCF WAVEFUNCTION OPTIMIZATION\n{scf}\n ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:   {energy:.12f}\n\n'
    text += ' ATOMIC FORCES in [a.u.]\n\n # Atom   Kind   Element          X              Y              Z\n'
    for i, (element, row) in enumerate(forces, start=1):
        text += f'      {i}      1      {element}   {row[0]:.8f}   {row[1]:.8f}   {row[2]:.8f}\n'
    text += ' SUM OF ATOMIC FORCES           0.0 0.0 0.0 0.0\n\n'
    if stress:
        text += ' STRESS| Analytical stress tensor [GPa]\n STRESS|   x   y   z\n'
        for axis in 'xyz':
            text += f' STRESS|      {axis}       1.0E+00   0.0E+00   0.0E+00\n'
    return text + f'\n MD| Step number    {step}\n'


def test_parse_cp2k_evaluations_of_a_reftraj_output():
    forces = [('Li', [0.1, 0.0, -0.1]), ('F', [-0.1, 0.0, 0.1])]
    text = (
        _evaluation(-10.0, forces)
        + _evaluation(-10.5, forces, converged=False)
        + _evaluation(-11.0, forces, stress=False)
        + ' SCF WAVEFUNCTION OPTIMIZATION\n  (killed here)\n'
    )
    evaluations = parse_cp2k_evaluations(text, ['Li', 'F'])
    assert len(evaluations) == 3  # the running fourth is not complete
    assert [e.scf_converged for e in evaluations] == [True, False, True]
    assert np.allclose([e.energy for e in evaluations], np.array([-10.0, -10.5, -11.0]) * HARTREE_TO_EV)
    assert np.allclose(evaluations[0].forces[0], np.array([0.1, 0.0, -0.1]) * HARTREE_PER_BOHR_TO_EV_PER_A)
    assert evaluations[0].stress[0, 0] < 0 and evaluations[2].stress is None
    with pytest.raises(ValueError, match='atom order does not match'):
        parse_cp2k_evaluations(text, ['F', 'Li'])


class _Outputs(dict):
    def __getattr__(self, name):
        return self[name]


class _FinishedBatch:
    """What ``Cp2kEngine.outcomes`` reads of a finished batched ``Cp2kCalculation``: exit status, outputs, inputs."""

    process_label = 'Cp2kCalculation'
    pk = 12345

    def __init__(self, exit_status: int, retrieved=None, trajectory=None):
        self.exit_status = exit_status
        self.exit_message = 'stopped' if exit_status else ''
        self.is_finished_ok = exit_status == 0
        self.outputs = _Outputs({'retrieved': retrieved} if retrieved is not None else {})
        self.inputs = _Outputs({'trajectory': trajectory} if trajectory is not None else {})


def _batch_of_four():
    from aiida_ilmlff.calculations.functions.labels import frames_to_reftraj

    frames = FramesData.from_ase([libf4_atoms(i) for i in range(8)]).store()
    return frames_to_reftraj(frames, orm.List([4, 5, 6, 7]))['trajectory']  # frames 4..7 of a larger set


def _retrieved(text: str) -> orm.FolderData:
    import io

    folder = orm.FolderData()
    folder.base.repository.put_object_from_filelike(io.BytesIO(text.encode()), 'aiida.out')
    return folder.store()


def test_failed_batch_sends_every_frame_back_alone(aiida_profile):
    engine = Cp2kEngine(AttributeDict({'cp2k': {'parameters': orm.Dict({})}}), compute_stress=True, frames_per_job=4)
    outcomes = engine.outcomes(_FinishedBatch(304), [4, 5, 6, 7])
    assert sorted(outcomes) == [4, 5, 6, 7]
    assert all(o.labels is None and o.failure is None and not o.retry_batched for o in outcomes.values())
    assert all('batch Cp2kCalculation<12345> failed (exit status 304' in o.retry for o in outcomes.values())


def test_batch_stopped_by_its_walltime_keeps_its_labels_and_rebatches_the_rest(aiida_profile):
    """Frame 4 labelled, frame 5 unconverged (alone), frame 6 running when the job stopped and 7 not reached
    (both into another batch); one extraction node carries frame 4's row."""
    forces = [('Li', [0.1, 0.0, -0.1]), ('B', [0.0, 0.0, 0.0])] + [('F', [0.0, 0.1, 0.0])] * 4
    text = _evaluation(-10.0, forces) + _evaluation(-10.5, forces, converged=False) + ' SCF WAVEFUNCTION OPTIMIZATION\n'
    text += ' *** exceeded requested execution time ***\n'
    trajectory = _batch_of_four()
    engine = Cp2kEngine(AttributeDict({'cp2k': {'parameters': orm.Dict({})}}), compute_stress=True, frames_per_job=4)
    node = _FinishedBatch(400, retrieved=_retrieved(text), trajectory=trajectory)
    outcomes = engine.outcomes(node, [4, 5, 6, 7])
    assert sorted(outcomes) == [4, 5, 6, 7]
    labels = outcomes[4].labels
    assert labels.base.attributes.get('frame_indices') == [4]
    assert labels.base.attributes.get('unconverged') == [5] and labels.base.attributes.get('missing') == [6, 7]
    assert labels.get_array('forces').shape == (1, 6, 3) and labels.get_array('stress').shape == (1, 3, 3)
    assert outcomes[5].retry.startswith('SCF not converged') and not outcomes[5].retry_batched
    assert all(outcomes[i].retry_batched and 'stopped by its wall time' in outcomes[i].retry for i in (6, 7))
