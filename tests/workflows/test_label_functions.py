"""Parsers, quality control, fingerprint and SCF ladder of the labelling workflow (no external code runs)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from ase import units

from aiida_ilmlff.calculations.functions.labels import quality_control
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.level_of_theory import cp2k_level_of_theory, fingerprint, pw_level_of_theory
from aiida_ilmlff.parsers.cp2k_output import parse_cp2k_forces, parse_cp2k_stdout, parse_cp2k_stress
from aiida_ilmlff.sampling.screening import robust_zscores, screen_frames
from aiida_ilmlff.workflows.cp2k_base import SCF_LADDER, apply_scf_rung, with_walltime

from .conftest import libf4_atoms

FORCES_FILE = """
 ATOMIC FORCES in [a.u.]

 # Atom   Kind   Element          X              Y              Z
      1      1      Li          0.01000000     0.00000000     0.00000000
      2      2      B          -0.03000000     0.00000000     0.00000000
 SUM OF ATOMIC FORCES           0.00000000     0.00000000     0.00000000     0.00000000

 ATOMIC FORCES in [a.u.]

 # Atom   Kind   Element          X              Y              Z
      2      2      B          -0.02000000     0.00000000     0.00000000
      1      1      Li          0.02000000     0.01000000    -0.01000000
 SUM OF ATOMIC FORCES           0.00000000     0.00000000     0.00000000     0.00000000
"""

STRESS_FILE = """
 STRESS| Analytical stress tensor [GPa]
 STRESS|                        x                   y                   z
 STRESS|      x        1.00000000000E+00   2.00000000000E-01   0.00000000000E+00
 STRESS|      y        2.00000000000E-01   2.00000000000E+00   0.00000000000E+00
 STRESS|      z        0.00000000000E+00   0.00000000000E+00   3.00000000000E+00
 STRESS| 1/3 Trace                                             2.00000000000E+00
"""

STDOUT_OK = """
 CP2K| version string:                                       CP2K version 2023.1
  *** SCF run converged in    11 steps ***
  outer SCF loop converged in   1 iterations or   11 steps
 ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:              -22.473322771375365
 The number of warnings for this run is : 0
  **** **  *******  **  PROGRAM STOPPED IN                              /tmp
"""

STDOUT_UNCONVERGED = """
  outer SCF loop FAILED to converge after   11 iterations or  550 steps
 *** WARNING in qs_scf.F:601 :: SCF run NOT converged ***
 ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:              -53.177902176815266
 The number of warnings for this run is : 2
  **** **  *******  **  PROGRAM STOPPED IN                              /tmp
"""

STDOUT_XTB_ABORT = """
 Charge outside chemical range:  Kind Atom=  1     1   Limit=1.05  Charge=  1.06
 *******************************************************************************
 *   ___                                                                       *
 *  /   \\                                                                      *
 * [ABORT]                                                                     *
 *  \\___/                               xTB Charges                            *
 *    |                                                                        *
 *******************************************************************************
 Atomic charges outside chemical range were detected. Switch-off CHECK_ATOMIC_CHARGES keyword in the &xTB
"""


def test_parse_cp2k_forces_last_block_in_atom_order_and_units():
    forces = parse_cp2k_forces(FORCES_FILE, ['Li', 'B'])
    conversion = units.Hartree / units.Bohr
    assert np.allclose(forces, np.array([[0.02, 0.01, -0.01], [-0.02, 0.0, 0.0]]) * conversion)
    assert forces[0, 0] == pytest.approx(0.02 * 51.422, rel=1e-4)  # 1 Ha/bohr = 51.422 eV/A


def test_parse_cp2k_forces_rejects_wrong_order_or_count():
    with pytest.raises(ValueError, match='atom 0 is Li, not B'):
        parse_cp2k_forces(FORCES_FILE, ['B', 'Li'])
    with pytest.raises(ValueError, match='has 2 atoms, the frame has 3'):
        parse_cp2k_forces(FORCES_FILE, ['Li', 'B', 'F'])
    with pytest.raises(ValueError, match='no `ATOMIC FORCES'):
        parse_cp2k_forces('nothing here')


def test_parse_cp2k_stress_units_and_ase_sign():
    stress = parse_cp2k_stress(STRESS_FILE)
    expected = -np.array([[1.0, 0.2, 0.0], [0.2, 2.0, 0.0], [0.0, 0.0, 3.0]]) / 160.21766208
    assert np.allclose(stress, expected, rtol=1e-6)
    with pytest.raises(ValueError):
        parse_cp2k_stress('STRESS| nothing')


def test_parse_cp2k_stdout():
    ok = parse_cp2k_stdout(STDOUT_OK)
    assert ok.scf_converged and ok.completed and not ok.xtb_charge_abort
    assert ok.energy == pytest.approx(-22.473322771375365 * units.Hartree)
    assert ok.version == '2023.1' and ok.n_warnings == 0
    bad = parse_cp2k_stdout(STDOUT_UNCONVERGED)
    assert not bad.scf_converged and bad.energy is not None and bad.n_warnings == 2
    abort = parse_cp2k_stdout(STDOUT_XTB_ABORT)
    assert abort.xtb_charge_abort and 'xTB Charges' in abort.abort_message and abort.energy is None
    assert not parse_cp2k_stdout('exceeded requested execution time').scf_converged


def test_robust_zscores():
    assert np.allclose(robust_zscores([1.0, 1.0]), 0)
    assert np.allclose(robust_zscores([1.0, 1.0, 1.0, 1.0]), 0)
    scores = robust_zscores([0.0, 0.1, -0.1, 0.05, 100.0])
    assert scores[-1] > 100 and np.all(np.abs(scores[:-1]) < 3)


def _frame_arrays(n, rng):
    numbers = [np.array([3, 5, 9, 9, 9, 9])] * n
    positions = [rng.normal(size=(6, 3)) * 2 + 4 for _ in range(n)]
    cells = [np.eye(3) * 8] * n
    energies = list(-600.0 + rng.normal(scale=0.01, size=n))
    forces = [rng.normal(size=(6, 3)) for _ in range(n)]
    return energies, forces, numbers, positions, cells


def test_screen_frames_reasons():
    rng = np.random.default_rng(0)
    energies, forces, numbers, positions, cells = _frame_arrays(10, rng)
    forces[1] = forces[1].copy()
    forces[1][2] = [60.0, 0, 0]
    forces[2] = forces[2].copy()
    forces[2][0, 0] = np.nan
    positions[4] = positions[3].copy()
    energies[5] = -500.0
    converged = [True] * 10
    converged[6] = False
    rejected = screen_frames(energies, forces, numbers, positions, cells, converged=converged)
    assert {i: entry['reason'] for i, entry in rejected.items()} == {
        1: 'max_force',
        2: 'non_finite',
        4: 'duplicate',
        5: 'energy_outlier',
        6: 'scf_not_converged',
    }
    assert rejected[4]['detail'] == 'duplicate of frame 3'
    assert 'atom 2' in rejected[1]['detail']


def test_screen_frames_mixed_compositions_are_not_outliers():
    """Energies of different compositions differ a lot; the per-element fit removes that before the z-score."""
    rng = np.random.default_rng(1)
    mu = {3: -200.0, 5: -80.0, 9: -660.0}
    numbers, energies = [], []
    for i in range(12):
        nums = np.array([3] * (1 + i % 3) + [5] * (1 + i % 2) + [9] * (4 + i % 4))
        numbers.append(nums)
        energies.append(sum(mu[z] for z in nums) + rng.normal(scale=0.01))
    positions = [rng.normal(size=(len(n), 3)) for n in numbers]
    forces = [np.zeros((len(n), 3)) for n in numbers]
    cells = [np.eye(3) * 8] * 12
    assert screen_frames(energies, forces, numbers, positions, cells) == {}
    energies[7] += 5.0
    assert {i: e['reason'] for i, e in screen_frames(energies, forces, numbers, positions, cells).items()} == {
        7: 'energy_outlier'
    }


def _labels(energy, forces, stress=None, converged=True):
    node = orm.ArrayData()
    node.set_array('energy', np.array([energy]))
    node.set_array('forces', np.asarray(forces, dtype=float))
    if stress is not None:
        node.set_array('stress', np.asarray(stress, dtype=float))
    node.base.attributes.set_many({'scf_converged': converged, 'calculation_pk': 1000})
    return node


def test_quality_control_calcfunction():
    frames = FramesData.from_ase([libf4_atoms(i) for i in range(5)])
    rng = np.random.default_rng(2)
    labels = {
        f'frame_{i:06d}': _labels(-600.0 + 0.01 * i, rng.normal(size=(6, 3)), np.eye(3) * 1e-3) for i in (0, 1, 3, 4)
    }
    labels['frame_000003'] = _labels(-600.0, rng.normal(size=(6, 3)), np.eye(3), converged=False)
    failures = {'2': {'reason': 'calculation_failed', 'detail': 'exit 402', 'pk': 7}}
    level = {'fingerprint': 'cp2k/GFN1-xTB:0123456789abcdef', 'method': 'GFN1-xTB', 'engine': 'cp2k'}
    outputs = quality_control(
        frames=frames,
        failures=orm.Dict(failures),
        level_of_theory=orm.Dict(level),
        max_force=orm.Float(50.0),
        max_energy_zscore=orm.Float(10.0),
        duplicate_tolerance=orm.Float(1e-4),
        compute_stress=orm.Bool(True),
        **labels,
    )
    rejected = outputs['rejected'].get_dict()
    assert rejected == {
        '2': failures['2'],
        '3': {'reason': 'scf_not_converged', 'detail': 'CP2K/pw.x reported an unconverged SCF', 'pk': 1000},
    }
    labelled = outputs['labelled']
    assert len(labelled) == 3
    assert np.allclose(labelled.energies, [-600.0, -599.99, -599.96])
    assert np.allclose(labelled.get_stress(1), np.eye(3) * 1e-3)
    assert np.allclose(labelled.positions, frames.select([0, 1, 4]).positions)
    assert set(labelled.levels_of_theory) == {level['fingerprint']}
    summary = outputs['summary'].get_dict()
    assert summary['labelled_indices'] == [0, 1, 4]
    assert summary['rejected_by_reason'] == {'calculation_failed': 1, 'scf_not_converged': 1}
    assert labelled.creator is not None and labelled.creator.process_label == 'quality_control'


def test_cp2k_fingerprint_tracks_physics_not_algorithm():
    base = {
        'FORCE_EVAL': {
            'METHOD': 'QS',
            'DFT': {
                'BASIS_SET_FILE_NAME': 'BASIS_MOLOPT',
                'MGRID': {'CUTOFF': 400, 'REL_CUTOFF': 50},
                'XC': {'XC_FUNCTIONAL': {'_': 'PBE'}, 'VDW_POTENTIAL': {'PAIR_POTENTIAL': {'TYPE': 'DFTD3(BJ)'}}},
                'SCF': {'EPS_SCF': 1e-6, 'OT': {'MINIMIZER': 'DIIS'}},
            },
            'SUBSYS': {'KIND': [{'_': 'H', 'BASIS_SET': 'DZVP-MOLOPT-SR-GTH-q1', 'POTENTIAL': 'GTH-PBE-q1'}]},
        }
    }
    level = cp2k_level_of_theory(base)
    assert level['method'] == 'PBE-D3(BJ)'
    assert level['fingerprint'].startswith('cp2k/PBE-D3(BJ):')

    same = {**base, 'GLOBAL': {'WALLTIME': 100}}
    same['FORCE_EVAL'] = {**base['FORCE_EVAL'], 'DFT': {**base['FORCE_EVAL']['DFT']}}
    same['FORCE_EVAL']['DFT']['SCF'] = {'EPS_SCF': 1e-8, 'OT': {'MINIMIZER': 'CG'}}
    same['FORCE_EVAL']['DFT']['MGRID'] = {'CUTOFF': '400.0', 'REL_CUTOFF': 50.0}
    assert cp2k_level_of_theory(same)['fingerprint'] == level['fingerprint']

    other_cutoff = {**base, 'FORCE_EVAL': {**base['FORCE_EVAL'], 'DFT': {**base['FORCE_EVAL']['DFT']}}}
    other_cutoff['FORCE_EVAL']['DFT']['MGRID'] = {'CUTOFF': 600, 'REL_CUTOFF': 50}
    assert cp2k_level_of_theory(other_cutoff)['fingerprint'] != level['fingerprint']

    other_basis = {
        **base,
        'FORCE_EVAL': {
            **base['FORCE_EVAL'],
            'SUBSYS': {'KIND': [{'_': 'H', 'BASIS_SET': 'TZV2P-MOLOPT-GTH-q1', 'POTENTIAL': 'GTH-PBE-q1'}]},
        },
    }
    assert cp2k_level_of_theory(other_basis)['fingerprint'] != level['fingerprint']

    xtb = {'FORCE_EVAL': {'DFT': {'QS': {'METHOD': 'XTB', 'XTB': {'DO_EWALD': True, 'CHECK_ATOMIC_CHARGES': True}}}}}
    xtb_off = {
        'FORCE_EVAL': {'DFT': {'QS': {'METHOD': 'XTB', 'XTB': {'DO_EWALD': True, 'CHECK_ATOMIC_CHARGES': False}}}}
    }
    assert cp2k_level_of_theory(xtb)['method'] == 'GFN1-xTB'
    assert cp2k_level_of_theory(xtb)['fingerprint'] == cp2k_level_of_theory(xtb_off)['fingerprint']


def test_pw_fingerprint_includes_pseudo_md5():
    class Pseudo:
        def __init__(self, md5):
            self.md5 = md5
            self.functional = 'PBE'

    parameters = {'SYSTEM': {'ecutwfc': 45, 'ecutrho': 360, 'vdw_corr': 'dft-d3', 'dftd3_version': 4}}
    level = pw_level_of_theory(parameters, {'Li': Pseudo('a'), 'F': Pseudo('b')})
    assert level['method'] == 'PBE-D3(BJ)'
    assert pw_level_of_theory(parameters, {'Li': Pseudo('a'), 'F': Pseudo('c')})['fingerprint'] != level['fingerprint']
    assert fingerprint({'a': 1}) == fingerprint({'A': '1.0'})


def test_scf_ladder_rungs():
    parameters = {
        'FORCE_EVAL': {
            'DFT': {
                'SCF': {
                    'SCF_GUESS': 'ATOMIC',
                    'MAX_SCF': 2,
                    'EPS_SCF': 1e-6,
                    'OT': {'MINIMIZER': 'DIIS'},
                    'OUTER_SCF': {'MAX_SCF': 1},
                }
            }
        }
    }
    rung1 = apply_scf_rung(parameters, 1)
    scf = rung1['FORCE_EVAL']['DFT']['SCF']
    assert scf['OT'] == {'MINIMIZER': 'CG', 'LINESEARCH': '2PNT', 'PRECONDITIONER': 'FULL_ALL', 'STEPSIZE': 0.05}
    assert scf['MAX_SCF'] == 50 and scf['OUTER_SCF']['MAX_SCF'] == 20 and scf['SCF_GUESS'] == 'RESTART'
    assert rung1['FORCE_EVAL']['DFT']['RESTART_FILE_NAME'] == './parent_calc/aiida-RESTART.wfn'
    assert parameters['FORCE_EVAL']['DFT']['SCF']['MAX_SCF'] == 2  # input untouched
    rung2 = apply_scf_rung(rung1, 2)['FORCE_EVAL']['DFT']['SCF']
    assert 'OT' not in rung2 and 'OUTER_SCF' not in rung2
    assert rung2['MIXING']['METHOD'] == 'BROYDEN_MIXING' and rung2['SMEAR']['ELECTRONIC_TEMPERATURE'] == 300
    assert len(SCF_LADDER) == 2
    with pytest.raises(ValueError):
        apply_scf_rung(parameters, 3)


def test_walltime_is_95_percent():
    assert with_walltime({}, 1000)['GLOBAL']['WALLTIME'] == 950
    assert with_walltime({'GLOBAL': {'WALLTIME': 10}}, 1000)['GLOBAL']['WALLTIME'] == 10
    assert with_walltime({'A': 1}, None) == {'A': 1}


def test_handlers_enabled_by_default():
    from aiida_ilmlff.workflows.cp2k_base import IlmlffCp2kBaseWorkChain

    handlers = {h.__name__: (h.priority, h.enabled) for h in IlmlffCp2kBaseWorkChain.get_process_handlers()}
    assert handlers == {
        'handle_cancelled_job': (900, True),
        'handle_xtb_atomic_charges': (600, True),
        'handle_scf_monitor': (550, True),
        'stop_on_scf_monitor': (549, True),
        'handle_scf_not_converged': (500, True),
        'accept_capped_optimisation': (402, False),  # on only for ilmlff.aimd's pre-relaxation
        'restart_incomplete_calculation': (401, True),
        'handle_cp2k_abort': (100, True),
    }
