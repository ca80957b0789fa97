"""The training, MD and properties stages through Slurm over SSH, with progress lines (issue 19, items 2 and 5).

On the Slurm computer of ``docs/computers/slurm-ssh.yaml`` (made by ``aiida-ilmlff setup --computer-config``, see
:mod:`tests.slurm.test_slurm_ssh`, which runs the CP2K labelling and a runner MD there): a tiny MACE training
(``ilmlff.mace.train.base``, 4 epochs) and a tiny DeePMD training (``ilmlff.deepmd.train.base``, 100 steps) on the
cached GFN1-xTB PYR14BF4 frames, then ``ilmlff.properties`` (two 50-step NPT stages and a 200-step NVT of the
70-atom box: three runner MD jobs) driven by the tested tiny MACE with the MACE model trained here as its
committee (the DeePMD model is checked as a training output: a DeePMD committee member would add a TensorFlow
start, about 20 s, to each MD job). Every stage takes its resources and wall time from its ``fast`` protocol (no
``options`` here): each CalcJob's ``job_id`` must be a completed Slurm job named ``aiida-PK`` in its remote folder
below the computer's work directory, with the protocol's wall time as Slurm's time limit. Only what AiiDA copies
and retrieves travels: the trained model reaches the MD jobs as a repository file.

Progress monitors (:mod:`aiida_ilmlff.calculations.progress`, on by default in the protocols, which every CalcJob
here must carry): the jobs here poll them every second (``minimum_poll_interval`` 1 through ``overrides``, so that
a job of seconds gets lines). Each training and MD CalcJob must show the monitor's lines in ``verdi process report``
(:func:`aiida.cmdline.utils.common.get_calcjob_report`), the last one being the finished state: MACE the last
epoch and ``training complete``, DeePMD the last step, MD the last step and the committee's force deviation.
"""

from __future__ import annotations

import re
import time

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.calculations.progress import PROGRESS_EXTRA, PROGRESS_MONITORS
from tests.slurm import test_slurm_ssh as slurm_ssh
from tests.slurm.test_slurm_ssh import LABEL, _calcjobs, _check_ran_in_slurm, _slurm_record

slurm_over_ssh = slurm_ssh.slurm_over_ssh  # the fixtures of the Slurm computer
slurm_computer = slurm_ssh.slurm_computer

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

EVERY_POLL = {'progress': {'minimum_poll_interval': 1}}
PROGRESS_PREFIX = {'ilmlff.mace.train': 'MACE ', 'ilmlff.deepmd.train': 'DeePMD step ', 'ilmlff.md': 'MD step '}


def _frames(path):
    """The cached labelled PYR14BF4 frames (``REF_*`` keys) as a stored FramesData."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    from aiida_ilmlff.data import FramesData

    images = read(str(path), index=':')
    for atoms in images:
        energy, stress = atoms.info.pop('REF_energy'), atoms.info.pop('REF_stress')
        forces = atoms.arrays.pop('REF_forces')
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
    return FramesData.from_ase(images, origin='EQ', level_of_theory='cp2k-gfn1-xtb').store()


def _seconds(limit: str) -> int:
    """Slurm's ``TimeLimit``: ``[D-]HH:MM:SS`` (``scontrol``) or minutes (the job completion log)."""
    if ':' not in limit:
        return int(limit) * 60
    days, _, clock = limit.rpartition('-')
    hours, minutes, seconds = (int(x) for x in clock.split(':'))
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def _check_protocol_walltimes(node: orm.ProcessNode) -> None:
    """Every CalcJob ran with the wall time of its protocol (its ``max_wallclock_seconds``) as Slurm's limit."""
    for calc in _calcjobs(node):
        limit = re.search(r'TimeLimit=(\S+)', _slurm_record(calc.get_job_id()))
        assert limit and _seconds(limit.group(1)) == calc.get_option('max_wallclock_seconds'), (calc.pk, limit)


def _progress(calc: orm.CalcJobNode) -> list[str]:
    """The progress lines in the log of ``calc`` (what ``verdi process report PK`` prints)."""
    from aiida.cmdline.utils.common import get_calcjob_report

    plugin = calc.process_type.split(':')[-1]
    lines = [log.message for log in orm.Log.collection.get_logs_for(calc) if log.levelname == 'REPORT']
    lines = [line for line in lines if line.startswith(PROGRESS_PREFIX[plugin])]
    report = get_calcjob_report(calc)
    assert all(line in report for line in lines)
    if lines:
        assert calc.base.extras.get(PROGRESS_EXTRA) == lines[-1]
    return lines


def _monitored(calc: orm.CalcJobNode) -> bool:
    plugin = calc.process_type.split(':')[-1]
    monitors = calc.inputs.monitors if 'monitors' in calc.inputs else {}
    return any(m.get_dict()['entry_point'] == PROGRESS_MONITORS[plugin] for m in monitors.values())


def test_training_md_and_properties_run_as_slurm_jobs_with_progress(
    slurm_computer, labelled_frames_file, md_structure, mace_model
):
    from aiida_ilmlff.workflows.properties import PropertiesWorkChain
    from aiida_ilmlff.workflows.protocols import recursive_merge
    from aiida_ilmlff.workflows.train import DeepmdTrainBaseWorkChain, MaceTrainBaseWorkChain

    computer, work_dir = slurm_computer
    frames = _frames(labelled_frames_file)
    timings, printed = {}, []

    trained, nodes = {}, {}
    for name, base, code, calc in (
        (
            'MACE training',
            MaceTrainBaseWorkChain,
            'mace-train',
            {'parameters': {'max_num_epochs': 4, 'num_channels': 8}},
        ),
        ('DeePMD training', DeepmdTrainBaseWorkChain, 'dp', {'parameters': {'numb_steps': 100, 'disp_freq': 10}}),
    ):
        start = time.monotonic()
        overrides = {base._namespace: {**calc, 'monitors': EVERY_POLL}}
        builder = base.get_builder_from_protocol(
            orm.load_code(f'{code}@{LABEL}'), frames, protocol='fast', overrides=overrides
        )
        results, nodes[name] = run_get_node(builder)
        timings[name] = time.monotonic() - start
        assert nodes[name].is_finished_ok, nodes[name].exit_message
        trained[name] = results['model']
    mace_node, deepmd_node = nodes['MACE training'], nodes['DeePMD training']

    # ilmlff.properties (two NPT stages, the fewest, then NVT: three runner MD jobs): the tested tiny MACE drives,
    # the MACE model trained above is its committee (deviation.csv)
    start = time.monotonic()
    poll = {'md': {'monitors': EVERY_POLL}}
    overrides = {
        'max_npt_stages': 2,
        'analysis': {'discard_ps': 0.0},
        'npt': recursive_merge(poll, {'md': {'parameters': {'steps': 50, 'checkpoint_every': 50}}}),
        'nvt': recursive_merge(poll, {'md': {'parameters': {'steps': 200, 'checkpoint_every': 100}}}),
    }
    models = [mace_model, trained['MACE training']]  # no TensorFlow start in the MD jobs: about 20 s each
    builder = PropertiesWorkChain.get_builder_from_protocol(
        orm.load_code(f'ilmlff-runner@{LABEL}'), md_structure, models=models, protocol='fast', overrides=overrides
    )
    _, properties_node = run_get_node(builder)
    timings['properties'] = time.monotonic() - start
    assert properties_node.is_finished_ok, (properties_node.exit_status, properties_node.exit_message)
    assert properties_node.outputs.properties.get_dict()['density_g_cm3']['mean'] > 0

    for name, node in (
        ('MACE training', mace_node),
        ('DeePMD training', deepmd_node),
        ('properties', properties_node),
    ):
        jobs = _check_ran_in_slurm(node, computer, work_dir)
        _check_protocol_walltimes(node)
        printed.append(f'{name}: {timings[name]:.1f} s, Slurm jobs {jobs}')
        for calc in _calcjobs(node):
            if calc.process_type.split(':')[-1] in PROGRESS_MONITORS:
                assert _monitored(calc), f'{calc.process_label}<{calc.pk}> has no progress monitor'
    printed.append(f'total: {sum(timings.values()):.1f} s')

    (mace_calc,) = _calcjobs(mace_node)
    lines = _progress(mace_calc)
    printed += lines
    assert lines and lines[-1].startswith('MACE epoch 4/4: validation loss=') and 'RMSE_F=' in lines[-1], lines
    assert lines[-1].endswith('; training complete'), lines

    (deepmd_calc,) = _calcjobs(deepmd_node)
    lines = _progress(deepmd_calc)
    printed += lines
    assert lines and lines[-1].startswith('DeePMD step 100/100: rmse_val='), lines

    md_calcs = [calc for calc in _calcjobs(properties_node) if calc.process_label == 'MDCalculation']
    assert [calc.inputs.parameters['steps'] for calc in md_calcs] == [50, 100, 200]  # NPT stage 2 continues stage 1
    for calc in md_calcs:
        lines = _progress(calc)
        printed += lines
        steps = calc.inputs.parameters['steps']
        assert lines, f'no progress line for MDCalculation<{calc.pk}>'
        # The monitor runs while the job runs: the last rows may be written between its last poll and the end of the
        # job (seen once in CI: the last line of a 100-step run was at step 80), so the last line is of some step.
        pattern = rf'MD step (\d+)/{steps}, t \1 fs of {steps} fs: T [\d.]+ K, E_tot -?[\d.]+ eV, P -?[\d.e+]+ bar, '
        match = re.match(pattern, lines[-1])
        assert match and 0 < int(match.group(1)) <= steps, lines
        # thermo.csv and deviation.csv are flushed apart, so a poll may see a thermo row whose deviation row is not
        # written yet (seen in CI: step 40 of 50 without it): some line carries the committee's deviation, and it is
        # never of a later step than the thermo row beside it.
        deviations = [
            re.search(r'^MD step (\d+)/.*; max force deviation [\d.e+-]+ eV/Å \(step (\d+)\)$', x) for x in lines
        ]
        deviations = [found for found in deviations if found]
        assert deviations, lines
        assert all(int(found.group(2)) <= int(found.group(1)) for found in deviations), lines
    print('\n'.join(printed))
