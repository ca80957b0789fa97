"""No trajectory past a failed SCF: the ``ilmlff.cp2k.scf`` monitor, the handlers of ``ilmlff.cp2k.base`` and a real
CP2K AIMD whose SCF cannot converge."""

from __future__ import annotations

import itertools
import re
import types

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.calculations.monitors import SCF_MONITOR_MESSAGE, cp2k_scf_monitor, is_scf_monitor_stop
from aiida_ilmlff.workflows.aimd import MD_DEFAULTS, AimdWorkChain, md_parameters, validate_md
from aiida_ilmlff.workflows.cp2k_base import IlmlffCp2kBaseWorkChain
from tests.fixtures.codes import options

CONVERGED = """ ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:   -55.18
 MD| Step number                                   1
 ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:   -55.17
"""
FAILED = '  *** SCF run NOT converged ***\n'


class _Transport:
    """A stand-in transport serving one file; ``grep_status`` 2 makes the monitor copy the whole file instead."""

    def __init__(self, text: str, grep_status: int = 0):
        self.text, self.grep_status, self.commands = text, grep_status, []

    def isfile(self, path):
        return path.endswith('aiida.out')

    def exec_command_wait(self, command):
        self.commands.append(command)
        return self.grep_status, self.text, ''

    def getfile(self, remote, local):
        with open(local, 'w') as handle:
            handle.write(self.text)


def _node():
    return types.SimpleNamespace(get_remote_workdir=lambda: '/scratch/job', get_option=lambda name: 'aiida.out')


def _pyr14bf4_aimd(cp2k_code, *, md: dict, max_iterations: int, edit=None, relax: dict | None = None):
    """An ``ilmlff.aimd`` builder for one PYR14BF4 ion pair (35 atoms, 1.2 g/cm^3, a built box with its molecule
    attributes) at the `fast` data set's level of theory (GFN1-xTB); ``edit(parameters)`` changes the CP2K
    parameters in place first."""
    from aiida_ilmlff.calculations.functions.box import structure_from_atoms
    from aiida_ilmlff.systems import build_ionic_liquid
    from aiida_ilmlff.workflows.dataset import DatasetWorkChain

    composition = {'PYR14': 1, 'BF4': 1}
    dataset = DatasetWorkChain.get_builder_from_protocol(cp2k_code, composition, protocol='fast')
    parameters = dataset.aimd.cp2k.cp2k.parameters.get_dict()
    if edit is not None:
        edit(parameters)
    builder = AimdWorkChain.get_builder()
    builder.structure = structure_from_atoms(build_ionic_liquid(composition, 1.2, seed=0))
    builder.cp2k.cp2k.code = cp2k_code
    builder.cp2k.cp2k.parameters = orm.Dict(parameters)
    builder.cp2k.cp2k.metadata.options = options(600)
    builder.cp2k.max_iterations = orm.Int(max_iterations)
    builder.md = orm.Dict(md)
    if relax is not None:
        builder.relax = orm.Dict(relax)
    return builder


def _no_outer_scf(max_scf: int, eps_scf: float):
    """An ``edit`` of :func:`_pyr14bf4_aimd`: no outer SCF, ``MAX_SCF`` and ``EPS_SCF`` as given."""

    def edit(parameters):
        scf = parameters['FORCE_EVAL']['DFT']['SCF']
        scf.pop('OUTER_SCF')
        scf.update({'MAX_SCF': max_scf, 'EPS_SCF': eps_scf})

    return edit


@pytest.mark.parametrize('grep_status', [0, 2])
def test_monitor_kills_at_the_first_unconverged_step(grep_status):
    assert cp2k_scf_monitor(_node(), _Transport(CONVERGED, grep_status)) is None
    # Step 2 is being computed and its SCF has just failed: kill now, before its forces move the atoms.
    result = cp2k_scf_monitor(_node(), _Transport(CONVERGED + FAILED, grep_status))
    assert result is not None and result.action.value == 'kill' and result.retrieve and result.parse
    assert result.message.startswith(SCF_MONITOR_MESSAGE) and 'evaluations 2 ' in result.message
    # A stated few may be tolerated.
    assert cp2k_scf_monitor(_node(), _Transport(CONVERGED + FAILED, grep_status), max_unconverged_steps=1) is None


def test_monitor_reads_only_the_lines_it_needs():
    transport = _Transport(CONVERGED)
    cp2k_scf_monitor(_node(), transport)
    assert transport.commands and transport.commands[0].startswith('grep -E ')
    assert "'/scratch/job/aiida.out'" in transport.commands[0] or '/scratch/job/aiida.out' in transport.commands[0]


def test_monitor_entry_point_and_signature():
    from aiida.engine.processes.calcjobs.monitors import CalcJobMonitor

    monitor = CalcJobMonitor(entry_point='ilmlff.cp2k.scf', kwargs={'max_unconverged_steps': 0})
    assert monitor.load_entry_point() is cp2k_scf_monitor
    with pytest.raises(ValueError, match='does not accept'):
        CalcJobMonitor(entry_point='ilmlff.cp2k.scf', kwargs={'steps': 1})


def test_handler_order():
    """The monitor's stop is handled before the generic handlers: ladder first, then the clear failure (510)."""
    handlers = {h.__name__: (h.priority, h.enabled) for h in IlmlffCp2kBaseWorkChain.get_process_handlers()}
    assert handlers['handle_scf_monitor'] == (550, True)
    assert handlers['stop_on_scf_monitor'] == (549, True)
    assert handlers['handle_scf_not_converged'][0] < 549
    # A capped pre-relaxation is accepted only where asked (ilmlff.aimd), before the restart handler would continue it.
    assert handlers['accept_capped_optimisation'] == (402, False)
    assert handlers['restart_incomplete_calculation'][0] < 402 < handlers['handle_scf_not_converged'][0]


def test_md_settings():
    """The MD prints the analytical stress of every step and keeps xTB's charge check on; bad settings are refused."""
    params = {'FORCE_EVAL': {'METHOD': 'QS', 'DFT': {'QS': {'METHOD': 'XTB', 'XTB': {'CHECK_ATOMIC_CHARGES': False}}}}}
    md = md_parameters(params, MD_DEFAULTS)
    assert md['FORCE_EVAL']['STRESS_TENSOR'] == 'ANALYTICAL'
    assert md['FORCE_EVAL']['PRINT']['STRESS_TENSOR'] == {'_': 'ON', 'EACH': {'MD': 1}}
    assert md['FORCE_EVAL']['DFT']['QS']['XTB']['CHECK_ATOMIC_CHARGES'] is True
    assert params['FORCE_EVAL']['DFT']['QS']['XTB']['CHECK_ATOMIC_CHARGES'] is False  # the input is not changed
    off = md_parameters(params, {**MD_DEFAULTS, 'stress': False, 'check_atomic_charges': False})
    assert (
        'STRESS_TENSOR' not in off['FORCE_EVAL']
        and off['FORCE_EVAL']['DFT']['QS']['XTB']['CHECK_ATOMIC_CHARGES'] is False
    )
    assert 'max_unconverged_steps' in validate_md(orm.Dict({'max_unconverged_steps': -1}))
    assert 'check_atomic_charges' in validate_md(orm.Dict({'check_atomic_charges': 'yes'}))


@pytest.mark.timeout(600)
def test_aimd_with_an_scf_that_cannot_converge_stops_at_once(cp2k_code):
    """A real CP2K GFN1-xTB AIMD of one PYR14BF4 ion pair (35 atoms) with MAX_SCF 1, EPS_SCF 1e-9 and no outer SCF:
    step 0 does not converge; the monitor kills the job within its first steps (of 5000), the base work chain
    stops with 510 (the ladder is switched off here, so that the test stays short), the AIMD fails (401) and gives
    no trajectory: no frame of it can enter a data set."""
    builder = _pyr14bf4_aimd(
        cp2k_code, md={'steps': 5000, 'temperature': 450.0}, max_iterations=3, edit=_no_outer_scf(1, 1.0e-9)
    )
    builder.cp2k.handler_overrides = orm.Dict({'handle_scf_monitor': {'enabled': False}})

    results, node = run_get_node(builder)
    assert node.exit_status == AimdWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_MD.status
    assert 'trajectory' not in results
    base = node.called[0]
    assert base.exit_status == IlmlffCp2kBaseWorkChain.exit_codes.ERROR_SCF_NOT_CONVERGED.status
    calcs = [n for n in base.called if isinstance(n, orm.CalcJobNode)]
    assert len(calcs) == 1 and is_scf_monitor_stop(calcs[0]), calcs[0].exit_message
    assert 'evaluations 0' in calcs[0].exit_message  # the initial step already failed
    out = calcs[0].outputs.retrieved.base.repository.get_object_content('aiida.out')
    steps = len(re.findall(r'MD\| Step number', out))
    print(f'\nkilled after {steps} MD steps: {calcs[0].exit_message}')
    assert steps < 500  # of 5000: stopped within its first steps, not after the whole run
    assert 'PROGRAM ENDED' not in out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_aimd_scf_ladder_reruns_the_md_from_its_start(cp2k_code):
    """MAX_SCF 1 without an outer SCF at EPS_SCF 1e-6: the monitor kills the first run at step 0, the ladder's
    first rung (OT CG, 50 x 20 SCF steps) converges and re-runs the MD from step 0; the trajectory holds the
    re-run's frames only, each with its stress."""
    import numpy as np

    builder = _pyr14bf4_aimd(
        cp2k_code, md={'steps': 6, 'temperature': 450.0}, max_iterations=3, edit=_no_outer_scf(1, 1.0e-6)
    )

    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    calcs = sorted((n for n in node.called[0].called if isinstance(n, orm.CalcJobNode)), key=lambda n: n.ctime)
    assert len(calcs) == 2 and is_scf_monitor_stop(calcs[0]) and calcs[1].is_finished_ok
    rerun = calcs[1].inputs.parameters.get_dict()['FORCE_EVAL']['DFT']['SCF']
    assert rerun['OT']['MINIMIZER'] == 'CG' and rerun['MAX_SCF'] >= 50
    assert 'parent_calc_folder' not in calcs[1].inputs  # a re-run from the start, not a continuation
    trajectory, summary = results['trajectory'], results['summary'].get_dict()
    steps = [frame.info['perturbation']['step'] for frame in trajectory.to_ase()]
    assert steps == list(range(7)) and summary['unconverged_steps'] == []
    assert trajectory.stresses.shape == (7, 3, 3) and np.isfinite(trajectory.stresses).all()


def test_remaining_md_steps():
    """CP2K counts STEPS from the restored STEP_START_VAL: a restart asks for the requested total less the last step."""
    from aiida_ilmlff.workflows.cp2k_base import remaining_md_steps

    assert remaining_md_steps({'MOTION': {'MD': {'STEPS': 24}}}, 17) == 7
    assert remaining_md_steps({'motion': {'md': {'steps': '24'}}}, 0) == 24
    assert remaining_md_steps({'MOTION': {'MD': {'STEPS': 24}}}, 24) == 1  # never STEPS 0 (no trajectory)
    assert remaining_md_steps({}, 1) == 2  # CP2K's default of 3 steps


@pytest.mark.timeout(600)
def test_aimd_continues_after_the_walltime_for_the_steps_it_has_left(cp2k_code):
    """A real CP2K GFN1-xTB AIMD of one PYR14BF4 ion pair with GLOBAL/WALLTIME 6 s: CP2K stops cleanly every few
    steps; each restart continues from the last step reached (parent folder, EXT_RESTART) for the steps left, and
    the merged trajectory holds exactly steps 0..N once each (before the fix a restart ran N more steps)."""
    from aiida.cmdline.utils.common import get_workchain_report

    from aiida_ilmlff.parsers.cp2k_output import md_step_numbers, restart_md_step, unconverged_evaluations
    from aiida_ilmlff.workflows.cp2k_base import read_cp2k_stdout, read_retrieved

    n_steps = 16
    builder = _pyr14bf4_aimd(
        cp2k_code,
        md={'steps': n_steps, 'temperature': 450.0},
        max_iterations=20,
        edit=lambda parameters: parameters.setdefault('GLOBAL', {}).update({'WALLTIME': 6}),
    )

    results, node = run_get_node(builder)
    calcs = sorted((n for n in node.called[0].called if isinstance(n, orm.CalcJobNode)), key=lambda n: n.ctime)
    assert node.is_finished_ok, get_workchain_report(node.called[0], 'REPORT') + '\n'.join(
        f'{c.pk} {c.exit_status} {c.exit_message} {read_cp2k_stdout(c)[-3000:]}' for c in calcs[-1:]
    )
    assert len(calcs) >= 2, 'the walltime never stopped the MD: the test did not test the restart'
    for previous, calc in itertools.pairwise(calcs):
        assert calc.inputs.parent_calc_folder.uuid == previous.outputs.remote_folder.uuid
        # The SCF CP2K stopped at its walltime is no SCF failure (it printed the failure marker for it).
        assert 'SCF run terminated' not in read_cp2k_stdout(previous) or not unconverged_evaluations(
            read_cp2k_stdout(previous)
        )
        last = restart_md_step(read_retrieved(previous, 'aiida-1.restart'))
        assert last == md_step_numbers(read_cp2k_stdout(previous))[-1]  # a restart file every step (print_every 1)
        assert calc.inputs.parameters['MOTION']['MD']['STEPS'] == n_steps - last
        assert md_step_numbers(read_cp2k_stdout(calc))[0] == last + 1
    assert md_step_numbers(read_cp2k_stdout(calcs[-1]))[-1] == n_steps
    steps = [frame.info['perturbation']['step'] for frame in results['trajectory'].to_ase()]
    assert steps == list(range(n_steps + 1))
    assert results['summary']['n_runs'] == len(calcs)
    ends = ', '.join(str(md_step_numbers(read_cp2k_stdout(c))[-1]) for c in calcs)
    print(f'\n{len(calcs)} runs, ending at steps {ends}')


def test_relax_settings():
    """The pre-relaxation's CP2K input: GEO_OPT capped at max_steps, the largest force alone decides; bad settings
    are refused before submission."""
    from aiida_ilmlff.parsers.cp2k_output import HARTREE_PER_BOHR_TO_EV_PER_A
    from aiida_ilmlff.workflows.aimd import RELAX_DEFAULTS, relax_parameters, validate_relax

    params = {'GLOBAL': {'run_type': 'ENERGY_FORCE'}, 'MOTION': {'MD': {'STEPS': 3}}, 'FORCE_EVAL': {'METHOD': 'QS'}}
    relax = relax_parameters(params, {'max_steps': 7, 'max_force_eV_A': 0.2})
    assert relax['GLOBAL'] == {'RUN_TYPE': 'GEO_OPT'} and 'MD' not in relax['MOTION']
    geo = relax['MOTION']['GEO_OPT']
    assert geo['MAX_ITER'] == 7 and geo['OPTIMIZER'] == 'BFGS'
    assert geo['MAX_FORCE'] == pytest.approx(0.2 / HARTREE_PER_BOHR_TO_EV_PER_A) == geo['RMS_FORCE']
    assert relax['FORCE_EVAL'] == params['FORCE_EVAL'] and params['GLOBAL'] == {'run_type': 'ENERGY_FORCE'}
    assert validate_relax(orm.Dict(RELAX_DEFAULTS)) is None
    assert 'max_steps' in validate_relax({'max_steps': -1})
    assert 'max_steps' in validate_relax({'max_steps': 2.5})
    assert 'max_force_eV_A' in validate_relax({'max_force_eV_A': 0})
    assert 'optimizer' in validate_relax({'optimizer': 'FIRE'})
    assert 'unknown' in validate_relax({'steps': 3})
    builder = AimdWorkChain.get_builder()
    with pytest.raises(ValueError, match='max_steps'):
        builder.relax = orm.Dict({'max_steps': -1})


@pytest.mark.timeout(600)
def test_aimd_pre_relaxes_a_built_box(cp2k_code):
    """A real CP2K GFN1-xTB pre-relaxation of one PYR14BF4 ion pair, capped at 4 BFGS steps, then 3 AIMD steps: the
    capped optimisation is accepted (not continued), the relaxed box keeps its molecule attributes, the largest
    force falls, and the MD starts from the relaxed positions and the relaxation's wavefunction."""
    import numpy as np
    from aiida.cmdline.utils.common import get_workchain_report

    from aiida_ilmlff.parsers.cp2k_output import optimisation_max_gradients
    from aiida_ilmlff.workflows.cp2k_base import read_cp2k_stdout

    builder = _pyr14bf4_aimd(cp2k_code, md={'steps': 3, 'temperature': 450.0}, max_iterations=3, relax={'max_steps': 4})
    results, node = run_get_node(builder)
    assert node.is_finished_ok, get_workchain_report(node, 'REPORT')
    relax = node.base.links.get_outgoing(link_label_filter='cp2k_relax').one().node
    calcs = [n for n in relax.called if isinstance(n, orm.CalcJobNode)]
    assert len(calcs) == 1, 'a capped pre-relaxation is not continued'
    assert calcs[0].inputs.parameters['MOTION']['GEO_OPT']['MAX_ITER'] == 4
    gradients = optimisation_max_gradients(read_cp2k_stdout(calcs[0]))
    assert 1 <= len(gradients) <= 4 and gradients[-1] < gradients[0], gradients
    relaxed = results['relaxed_structure']
    assert relaxed.base.attributes.get('mol_id') == builder.structure.base.attributes.get('mol_id')
    assert relaxed.base.attributes.get('molecules') == ['PYR14', 'BF4']
    assert np.abs(np.array(relaxed.get_ase().positions) - builder.structure.get_ase().positions).max() > 1e-3
    md = node.base.links.get_outgoing(link_label_filter='cp2k_md').one().node
    first = sorted((n for n in md.called if isinstance(n, orm.CalcJobNode)), key=lambda n: n.ctime)[0]
    assert first.inputs.parent_calc_folder.uuid == calcs[0].outputs.remote_folder.uuid
    assert first.inputs.parameters['FORCE_EVAL']['DFT']['SCF']['SCF_GUESS'] == 'RESTART'
    frames = results['trajectory'].to_ase()
    assert np.allclose(frames[0].positions, relaxed.get_ase().positions, atol=1e-4)
    assert 'pre-relaxed in' in get_workchain_report(node, 'REPORT')
    print(f'\nlargest force {gradients[0]:.2f} -> {gradients[-1]:.2f} eV/A in {len(gradients)} steps')
