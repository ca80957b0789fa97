"""``ilmlff.label`` with real CP2K (GFN1-xTB, protocol ``fast``) on Li+ BF4- frames (6 atoms, 8 Å box)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from aiida import orm
from aiida.cmdline.utils.common import get_workchain_report
from aiida.engine import run_get_node

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.label import LabelWorkChain

from .conftest import libf4_atoms

#: Tight SCF for finite differences: energies to ~1e-10 Ha.
TIGHT_SCF = {
    'cp2k': {
        'cp2k': {
            'parameters': {
                'FORCE_EVAL': {
                    'DFT': {
                        'QS': {'EPS_DEFAULT': 1.0e-14},
                        'SCF': {'EPS_SCF': 1.0e-10, 'OUTER_SCF': {'EPS_SCF': 1.0e-10}},
                    }
                }
            }
        }
    }
}


def _calcjobs(node: orm.ProcessNode) -> list[orm.CalcJobNode]:
    return sorted((n for n in node.called_descendants if isinstance(n, orm.CalcJobNode)), key=lambda n: n.pk)


def _label(code, frames, options, overrides=None, **kwargs):
    builder = LabelWorkChain.get_builder_from_protocol(
        code, frames, protocol='fast', overrides=overrides, options=options
    )
    for key, value in kwargs.items():
        builder[key] = value
    return run_get_node(builder)


@pytest.mark.slow
def test_label_three_frames_fast_and_finite_differences(cp2k_code, libf4_frames, serial_options):
    """Three frames labelled; forces equal -dE/dx by central differences (h = 1e-3 Å).

    The wall time is printed, not asserted (speed belongs in benchmarks/bench_label.py and docs/benchmarks.md).
    """
    frames = libf4_frames(3)
    start = time.monotonic()
    # one single point per frame (the batched path's labels equal these: test_label_cp2k_batched.py)
    results, node = _label(
        cp2k_code, frames, serial_options, overrides=TIGHT_SCF, max_concurrent=orm.Int(3), frames_per_job=orm.Int(1)
    )
    elapsed = time.monotonic() - start
    assert node.is_finished_ok, node.exit_message
    print(f'labelling three 6-atom frames took {elapsed:.1f} s')

    labelled = results['labelled']
    assert len(labelled) == 3
    assert results['rejected'].get_dict() == {}
    summary = results['summary'].get_dict()
    assert summary['n_labelled'] == 3 and summary['labelled_indices'] == [0, 1, 2]
    fingerprint = summary['level_of_theory']
    assert fingerprint.startswith('cp2k/GFN1-xTB:')
    assert set(labelled.levels_of_theory) == {fingerprint}
    assert np.allclose(labelled.positions, frames.positions)
    assert list(labelled.origins) == ['nEQ'] * 3
    calcs = _calcjobs(node)
    assert calcs[0].inputs.parameters['GLOBAL']['WALLTIME'] == 570  # 95 % of max_wallclock_seconds = 600
    assert 'aiida-forces-1_0.xyz' in calcs[0].outputs.retrieved.base.repository.list_object_names()
    # the protocol computes the analytical stress of every frame (eV/Å^3, ASE sign)
    assert node.inputs.compute_stress.value is True
    assert calcs[0].inputs.parameters['FORCE_EVAL']['STRESS_TENSOR'] == 'ANALYTICAL'
    assert 'aiida-stress-1_0.stress_tensor' in calcs[0].outputs.retrieved.base.repository.list_object_names()
    assert labelled.base.attributes.get('has_stress') is True and labelled.base.attributes.get('n_stress') == 3
    stresses = labelled.stresses
    assert stresses.shape == (3, 3, 3) and np.isfinite(stresses).all()
    assert np.abs(stresses).max() > 0.0

    # Central differences of the CP2K energy on the Li atom (index 0) of frame 0, all three directions.
    h = 1.0e-3
    base = libf4_atoms(0)
    displaced = []
    for axis in range(3):
        for sign in (+1, -1):
            atoms = base.copy()
            atoms.positions[0, axis] += sign * h
            displaced.append(atoms)
    fd_results, fd_node = _label(
        cp2k_code, FramesData.from_ase(displaced), serial_options, overrides=TIGHT_SCF, max_concurrent=orm.Int(6)
    )
    assert fd_node.is_finished_ok, fd_node.exit_message
    energies = fd_results['labelled'].energies
    fd_force = -(energies[0::2] - energies[1::2]) / (2 * h)
    analytic = labelled.get_forces(0)[0]
    assert np.max(np.abs(fd_force - analytic)) < 1e-3, (fd_force, analytic)
    # the level of theory is the same for both runs: they can be merged
    assert fd_results['summary']['level_of_theory'] == fingerprint


@pytest.mark.slow
def test_stress_sign_matches_strain_derivative(cp2k_code, serial_options):
    """CP2K's analytical stress, converted, equals (1/V) dE/d(strain) (ASE sign) for a homogeneous xx strain."""
    eps = 1.0e-3
    base = libf4_atoms(1)
    frames = [base]
    for sign in (+1, -1):
        atoms = base.copy()
        strain = np.eye(3)
        strain[0, 0] += sign * eps
        atoms.set_cell(base.cell @ strain, scale_atoms=True)
        frames.append(atoms)
    results, node = _label(
        cp2k_code,
        FramesData.from_ase(frames),
        serial_options,
        overrides=TIGHT_SCF,
        compute_stress=orm.Bool(True),
        max_concurrent=orm.Int(3),
    )
    assert node.is_finished_ok, node.exit_message
    labelled = results['labelled']
    stress = labelled.get_stress(0)
    assert stress.shape == (3, 3)
    energies = labelled.energies
    volume = base.get_volume()
    numerical = (energies[1] - energies[2]) / (2 * eps) / volume
    assert abs(stress[0, 0] - numerical) < 2e-5 + 0.02 * abs(numerical), (stress[0, 0], numerical)


@pytest.mark.slow
def test_scf_failure_handler_recovers(cp2k_code, libf4_frames, serial_options):
    """MAX_SCF 2 makes the SCF fail; the SCF ladder handler fires (process report) and the frame is labelled."""
    frames = libf4_frames(1, seed0=10)
    overrides = {
        'cp2k': {'cp2k': {'parameters': {'FORCE_EVAL': {'DFT': {'SCF': {'MAX_SCF': 2, 'OUTER_SCF': {'MAX_SCF': 1}}}}}}}
    }
    results, node = _label(cp2k_code, frames, serial_options, overrides=overrides)
    assert node.is_finished_ok, node.exit_message
    report = get_workchain_report(node, 'REPORT')
    assert 'SCF ladder rung 1/2' in report
    assert len(results['labelled']) == 1
    calcs = _calcjobs(node)
    assert len(calcs) == 2
    assert 'SCF_GUESS' in calcs[1].inputs.parameters['FORCE_EVAL']['DFT']['SCF']


@pytest.mark.slow
def test_scf_failure_lands_in_rejected(cp2k_code, libf4_frames, serial_options):
    """A frame whose SCF still fails (no restart allowed) is rejected with its reason and pk, never labelled."""
    frames = libf4_frames(1, seed0=20)
    overrides = {
        'cp2k': {
            'max_iterations': 1,
            'cp2k': {'parameters': {'FORCE_EVAL': {'DFT': {'SCF': {'MAX_SCF': 2, 'OUTER_SCF': {'MAX_SCF': 1}}}}}},
        }
    }
    results, node = _label(cp2k_code, frames, serial_options, overrides=overrides)
    assert node.exit_status == LabelWorkChain.exit_codes.ERROR_NO_FRAME_LABELLED.status
    report = get_workchain_report(node, 'REPORT')
    assert 'SCF ladder rung 1/2' in report
    assert 'labelled' not in results
    rejected = results['rejected'].get_dict()
    assert list(rejected) == ['0']
    assert rejected['0']['reason'] == 'scf_not_converged'
    calcs = _calcjobs(node)
    assert rejected['0']['pk'] == calcs[-1].pk
    assert results['summary']['rejected_by_reason'] == {'scf_not_converged': 1}


@pytest.mark.slow
def test_xtb_atomic_charge_abort_is_handled(cp2k_code, serial_options):
    """With CHECK_ATOMIC_CHARGES on, a distorted frame aborts CP2K; the handler switches it off and restarts."""
    atoms = libf4_atoms(3, rattle=0.5, li_distance=2.4)
    overrides = {
        'cp2k': {'cp2k': {'parameters': {'FORCE_EVAL': {'DFT': {'QS': {'XTB': {'CHECK_ATOMIC_CHARGES': True}}}}}}}
    }
    results, node = _label(cp2k_code, FramesData.from_ase([atoms]), serial_options, overrides=overrides)
    assert node.is_finished_ok, node.exit_message
    report = get_workchain_report(node, 'REPORT')
    assert 'CHECK_ATOMIC_CHARGES off' in report
    calcs = _calcjobs(node)
    assert calcs[0].exit_status == 304
    assert calcs[-1].inputs.parameters['FORCE_EVAL']['DFT']['QS']['XTB']['CHECK_ATOMIC_CHARGES'] is False
    assert len(results['labelled']) == 1


@pytest.mark.slow
def test_caching_reuses_cp2k_calculations(cp2k_code, libf4_frames, serial_options):
    """Labelling the same frames twice with caching on reuses the CP2K calculations of the first run."""
    from aiida.manage.caching import enable_caching

    frames = libf4_frames(2, seed0=30)
    with enable_caching(identifier='aiida.calculations:cp2k'):
        # one single point per frame (a cached batch: test_label_cp2k_batched.py::test_batch_is_cached)
        first, node1 = _label(cp2k_code, frames, serial_options, frames_per_job=orm.Int(1))
        second, node2 = _label(cp2k_code, frames, serial_options, max_concurrent=orm.Int(1), frames_per_job=orm.Int(1))
    assert node1.is_finished_ok and node2.is_finished_ok
    report = get_workchain_report(node2, 'REPORT')
    assert 'submitted frames 0..0 (1 work chains); 1 left' in report  # batches of max_concurrent = 1
    assert 'submitted frames 1..1 (1 work chains); 0 left' in report
    calcs1, calcs2 = _calcjobs(node1), _calcjobs(node2)
    assert len(calcs2) == 2
    sources = {calc.base.caching.get_cache_source() for calc in calcs2}
    assert sources == {calc.uuid for calc in calcs1}
    assert np.allclose(first['labelled'].energies, second['labelled'].energies)


@pytest.mark.slow
def test_unknown_keyword_aborts_with_message(cp2k_code, libf4_frames, serial_options):
    """A CP2K input error is not retried: exit 320 with CP2K's message, the frame rejected with that detail."""
    frames = libf4_frames(1, seed0=40)
    overrides = {'cp2k': {'cp2k': {'parameters': {'FORCE_EVAL': {'DFT': {'QS': {'XTB': {'NOT_A_KEYWORD': 1}}}}}}}}
    results, node = _label(cp2k_code, frames, serial_options, overrides=overrides)
    assert node.exit_status == LabelWorkChain.exit_codes.ERROR_NO_FRAME_LABELLED.status
    single_point = next(n for n in node.called if n.process_label == 'IlmlffCp2kBaseWorkChain')
    assert single_point.exit_status == 320
    assert 'NOT_A_KEYWORD' in single_point.exit_message
    assert len(_calcjobs(node)) == 1
    rejected = results['rejected']['0']
    assert rejected['reason'] == 'calculation_failed' and 'NOT_A_KEYWORD' in rejected['detail']


@pytest.mark.slow
def test_fast_labels_tfsi_frames_with_minimal_basis_dft(cp2k_code, serial_options):
    """Li+ TFSI- (16 atoms, 7.0 Å box at 1.4 g/cm^3), protocol ``fast``: frames with S are labelled at ``fast-dft``
    (PBE-D3(BJ)/SZV-MOLOPT-SR-GTH, DZVP on S, 400 Ry), because GFN1-xTB does not converge for TFSI liquids (this
    pair only on the SCF ladder's last rung): both converge, with forces and the analytical stress, and the level
    of theory says PBE (issue 18; ~20 s of CP2K a frame)."""
    from aiida_ilmlff.systems.builder import build_ionic_liquid

    atoms = build_ionic_liquid({'Li': 1, 'TFSI': 1}, 1.4, seed=0)
    rattled = atoms.copy()
    rattled.rattle(0.02, seed=1)
    results, node = _label(cp2k_code, FramesData.from_ase([atoms, rattled]), serial_options, max_concurrent=orm.Int(2))
    assert node.is_finished_ok, get_workchain_report(node, 'REPORT')
    summary = results['summary'].get_dict()
    assert summary['n_labelled'] == 2 and results['rejected'].get_dict() == {}
    assert summary['level_of_theory'].startswith('cp2k/PBE')
    calc = _calcjobs(node)[0]
    kinds = {kind['_']: kind['BASIS_SET'] for kind in calc.inputs.parameters['FORCE_EVAL']['SUBSYS']['KIND']}
    assert kinds['S'] == 'DZVP-MOLOPT-SR-GTH-q6' and kinds['Li'] == 'SZV-MOLOPT-SR-GTH-q3'
    labelled = results['labelled']
    assert np.isfinite(labelled.energies).all() and np.isfinite(labelled.stresses).all()
    forces = np.stack([labelled.get_forces(i) for i in range(2)])
    assert np.isfinite(forces).all() and np.abs(forces).max() > 0.01
    # Energies and forces agree: the energy change from the built geometry to its rattled copy (every atom moved
    # by ~0.02 Å) equals minus the work of the mean force along the displacement (trapezoid rule, error O(dx^3)).
    delta_e = labelled.energies[1] - labelled.energies[0]
    work = -0.5 * np.sum((forces[0] + forces[1]) * (rattled.positions - atoms.positions))
    print(f'Li+ TFSI-: dE {delta_e:.5f} eV, -F.dx {work:.5f} eV')
    assert abs(delta_e) > 0.01 and abs(delta_e - work) < 0.05 * abs(delta_e), (delta_e, work)
