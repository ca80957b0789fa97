"""``ilmlff.dataset`` and ``ilmlff.aimd`` with real CP2K GFN1-xTB (protocol ``fast``) on PYR14BF4."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import units

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.dataset import DatasetWorkChain
from tests.fixtures.boxes import PYR14BF4


def _report(node) -> str:
    from aiida.cmdline.utils.common import get_workchain_report

    return get_workchain_report(node, 'REPORT')


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_small_dataset_aimd_and_label_agree(cp2k_code):
    """A tiny run (40 MD steps, 3 EQ + 3 nEQ): AIMD frames and single points share units and level of theory.

    One EQ frame (labelled by the AIMD) is also relabelled by ilmlff.label as part of the data set check: its
    energy and forces from the MD files (Hartree, Hartree/bohr) must equal the single point's (eV, eV/Å).
    """
    overrides = {
        'n_eq': 3,
        'n_neq': 3,
        'aimd': {'md': {'steps': 40}},
        'neq': {'generators': {'rattle': {'weight': 1.0}, 'close_contact': {'weight': 1.0}}},
    }
    builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='fast', overrides=overrides)
    results, node = run_get_node(builder)
    assert node.is_finished_ok, _report(node)
    frames = results['frames']
    assert frames.base.attributes.get('origin_counts') == {'EQ': 3, 'nEQ': 3}
    assert frames.is_labelled and len(frames.base.attributes.get('level_of_theory')) == 1

    # Relabel the EQ frames with single points: same energy and forces as the AIMD files.
    from aiida_ilmlff.workflows.label import LabelWorkChain

    eq = frames.select(np.flatnonzero(frames.origins == 'EQ'))
    # The AIMD printed CP2K's analytical stress at every step (eV/Å^3, ASE sign): every EQ frame carries one, and
    # the AIMD ran with GFN-xTB's CHECK_ATOMIC_CHARGES on, under the SCF monitor.
    assert eq.stresses is not None and np.isfinite(eq.stresses).all()
    pressures_gpa = -np.trace(eq.stresses, axis1=1, axis2=2) / 3 / units.GPa
    assert np.all(np.abs(pressures_gpa) < 20.0), pressures_gpa
    aimd = next(n for n in node.called if n.process_label == 'AimdWorkChain')
    calc = next(n for n in aimd.called_descendants if isinstance(n, orm.CalcJobNode))
    xtb = calc.inputs.parameters.get_dict()['FORCE_EVAL']['DFT']['QS']['XTB']
    assert xtb['CHECK_ATOMIC_CHARGES'] is True and 'scf' in calc.inputs.monitors
    label_builder = LabelWorkChain.get_builder_from_protocol(
        cp2k_code,
        eq.store(),
        protocol='fast',
        overrides={'max_concurrent': 3},
        options={'environment_variables': {'OMP_NUM_THREADS': '1'}},
    )
    relabelled, label_node = run_get_node(label_builder)
    assert label_node.is_finished_ok
    single = relabelled['labelled']
    assert list(single.levels_of_theory) == list(eq.levels_of_theory)
    energy_error = np.abs(single.energies - eq.energies).max()
    force_error = np.abs(single.forces - eq.forces).max()
    if single.stresses is not None:  # the label protocol prints the stress too: the same analytical stress
        stress_error = np.nanmax(np.abs(single.stresses - eq.stresses)) / units.GPa
        print(f'AIMD vs single point: max |dsigma| = {stress_error:.2e} GPa')
        assert stress_error < 0.05
    print(f'\nAIMD vs single point: max |dE| = {energy_error:.2e} eV, max |dF| = {force_error:.2e} eV/A')
    assert energy_error < 2e-4 and force_error < 5e-3


def _cp2k_seconds(node) -> tuple[int, float]:
    """Number of CP2K runs under ``node`` and the sum of their wall times from CP2K's timing report [s]."""
    import re

    total, count = 0.0, 0
    for calc in node.called_descendants:
        if isinstance(calc, orm.CalcJobNode) and 'retrieved' in calc.outputs:
            text = calc.outputs.retrieved.base.repository.get_object_content('aiida.out')
            match = re.search(r'^ CP2K\s+1\s+1\.0\s+\S+\s+\S+\s+\S+\s+(\S+)', text, re.MULTILINE)
            if match:
                total += float(match.group(1))
                count += 1
    return count, total


@pytest.mark.slow
@pytest.mark.protocol  # full size (~6 min), `make test-protocols`: its real paths run in the small tests too
@pytest.mark.timeout(3600)
def test_fast_protocol_pyr14bf4(cp2k_code):
    """``fast`` on PYR14BF4 (2 ion pairs, 70 atoms): >= 20 EQ and >= 20 nEQ labelled frames, found by origin.

    The EQ frames come labelled from CP2K GFN1-xTB NVT AIMD at 450 K; the nEQ frames are labelled by
    ilmlff.label. The nEQ frames must have a larger mean max-force than the EQ frames.
    """
    load_before = os.getloadavg()[0]
    builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='fast')
    start = time.monotonic()
    results, node = run_get_node(builder)
    elapsed = time.monotonic() - start
    assert node.is_finished_ok, _report(node)
    frames = results['frames']
    summary = results['summary'].get_dict()
    counts = frames.base.attributes.get('origin_counts')
    runs, cp2k_seconds = _cp2k_seconds(node)
    print(
        f'\nfast PYR14BF4: {elapsed:.0f} s wall (load average {load_before:.1f} before, '
        f'{os.getloadavg()[0]:.1f} after); {runs} CP2K runs, {cp2k_seconds:.0f} s of CP2K wall time'
    )
    print(f'origin counts {counts}; targets {summary["targets"]}')
    for origin in ('EQ', 'nEQ'):
        force, energy = summary['max_force'][origin], summary['energy_per_atom'][origin]
        print(
            f'{origin:>3}: max force mean {force["mean"]:.3f} std {force["std"]:.3f} min {force["min"]:.3f} '
            f'p50 {force["p50"]:.3f} p95 {force["p95"]:.3f} max {force["max"]:.3f} eV/A; energy/atom mean '
            f'{energy["mean"]:.5f} std {energy["std"]:.5f} eV'
        )
    print('generators', json.dumps(summary['generators']))
    for name, record in results['eq_sampling'].items():
        values = record.get_dict()
        keys = ('n_frames', 'equilibration_index', 'statistical_inefficiency', 'n_uncorrelated', 'spacing', 'method')
        print('EQ sampling', name, {key: values[key] for key in keys})
    print('nEQ rejected', results['neq_rejected'].get_dict()['by_reason'])
    print('label rejected', results['label_rejected'].get_dict())

    assert counts['EQ'] >= 20 and counts['nEQ'] >= 20
    assert frames.is_labelled and len(frames.base.attributes.get('level_of_theory')) == 1
    assert summary['max_force']['nEQ']['mean'] > summary['max_force']['EQ']['mean']
    found = (
        orm.QueryBuilder()
        .append(
            FramesData, filters={'attributes.origin_counts.EQ': {'>=': 20}, 'attributes.origin_counts.nEQ': {'>=': 20}}
        )
        .all(flat=True)
    )
    assert frames.pk in [f.pk for f in found]
    sampling = results['eq_sampling']['aimd_0'].get_dict()
    assert sampling['method'] == 'fps' and sampling['n_selected'] == counts['EQ']
    assert min(sampling['indices']) >= sampling['equilibration_index']
    assert sampling['statistical_inefficiency'] >= 1
    eq_record = json.loads(frames.perturbations[0])
    assert eq_record['equilibration_index'] == sampling['equilibration_index']
    assert eq_record['spacing'] == sampling['spacing']


def _libf4_frames(n: int, seed: int = 0, transient: bool = True):
    """``n`` frames of one Li+ BF4- pair in an 8 Å box (B-F 1.40 Å), rattled, with a decaying energy."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from .conftest import synthetic_energies

    d = 1.40 / np.sqrt(3)
    li = -3.4 / np.sqrt(3)
    base = Atoms(
        'LiBF4', positions=[[li, li, li], [0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]], cell=[8.0] * 3
    )
    base.pbc = True
    base.center()
    rng = np.random.default_rng(seed)
    energies = synthetic_energies(n, transient=6, seed=seed) if transient else -600.0 + rng.normal(0, 0.01, n)
    frames = []
    for k in range(n):
        atoms = base.copy()
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=float(energies[k]))
        frames.append(atoms)
    return frames


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_trajectory_source_and_hot_frames(cp2k_code, tmp_path):
    """EQ source (a): an extxyz trajectory (unlabelled -> relabelled) plus `hot_md` frames from a FramesData."""
    from ase.io import write

    path = tmp_path / 'libf4.extxyz'
    write(path, _libf4_frames(30), format='extxyz')
    hot = FramesData.from_ase(_libf4_frames(20, seed=5, transient=False), temperature=900.0).store()
    overrides = {
        'n_eq': 3,
        'n_neq': 4,
        'neq': {
            'generators': {
                'rattle': {'weight': 1.0},
                'strain': {'weight': 0},
                'density': {'weight': 0},
                'close_contact': {'weight': 1.0, 'floor': 1.8, 'upper': 2.2},
                'thermal': {'weight': 0},
                'hot_md': {'weight': 1.0},
            }
        },
        # seven frames are too few for a robust energy z-score: keep the quality control to forces here
        'meta_parameters': {'label_overrides': {'quality_control': {'max_energy_zscore': 1000.0}}},
    }
    builder = DatasetWorkChain.get_builder_from_protocol(
        cp2k_code,
        {'Li': 1, 'BF4': 1},
        protocol='fast',
        overrides=overrides,
        trajectory=str(path),
        trajectory_format='extxyz',
        hot_frames=hot,
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, _report(node)
    frames = results['frames']
    assert frames.is_labelled
    assert frames.base.attributes.get('origin_counts') == {'EQ': 3, 'nEQ': 4}
    generators = results['summary'].get_dict()['generators']
    assert generators == {'EQ': {'md_sample': 3}, 'nEQ': {'rattle': 2, 'close_contact': 1, 'hot_md': 1}}
    assert set(results['eq_sampling']) == {'trajectory', 'hot_md'}
    record = json.loads(frames.perturbations[0])
    assert record['source_format'] == 'extxyz' and 'equilibration_index' in record
    assert not any(isinstance(n, orm.WorkflowNode) and n.process_label == 'AimdWorkChain' for n in node.called)


@pytest.mark.timeout(900)
def test_two_compositions_make_one_data_set(cp2k_code):
    """PYR14BF4 and LiBF4 in PYR14BF4 (x = 1/2): one ilmlff.dataset per composition, real CP2K GFN1-xTB single
    points of rattled boxes, merged into one frame set whose frames keep their composition; a QueryBuilder filter
    on the composition finds the merged set and the per-composition set, and not the other composition's."""
    compositions = [{'PYR14': 1, 'BF4': 1}, {'Li': 1, 'PYR14': 1, 'BF4': 2}]
    overrides = {'n_eq': 0, 'n_neq': 2, 'neq': {'generators': {'rattle': {'weight': 1.0}}}}
    builder = DatasetWorkChain.get_builder_from_protocol(
        cp2k_code, compositions=compositions, protocol='fast', overrides=overrides
    )
    _, node = run_get_node(builder)
    assert node.is_finished_ok, _report(node)
    frames = node.outputs.frames
    keys = ['BF4:1 PYR14:1', 'BF4:2 Li:1 PYR14:1']
    assert frames.base.attributes.get('compositions') == keys
    assert sorted(frames.composition_keys.tolist()) == [keys[0]] * 2 + [keys[1]] * 2
    assert frames.is_labelled and len(frames.base.attributes.get('level_of_theory')) == 1
    assert sorted(set(frames.n_atoms_per_frame.tolist())) == [35, 41]
    assert node.outputs.summary['compositions'] == {keys[0]: {'nEQ': 2}, keys[1]: {'nEQ': 2}}
    assert set(node.outputs.boxes) == {'composition_0_box_0', 'composition_1_box_0'}
    children = {
        link.link_label: link.node for link in node.base.links.get_outgoing(link_label_filter='composition_%').all()
    }
    assert set(children) == {'composition_0', 'composition_1'} and all(c.is_finished_ok for c in children.values())

    def found(key: str) -> set[int]:
        query = orm.QueryBuilder().append(FramesData, filters={'attributes.compositions': {'contains': [key]}})
        return {n.pk for n in query.all(flat=True)}

    with_lithium = found(keys[1])
    assert frames.pk in with_lithium and children['composition_1'].outputs.frames.pk in with_lithium
    assert children['composition_0'].outputs.frames.pk not in with_lithium
