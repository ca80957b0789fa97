"""Sampling calcfunctions (provenance, recorded metadata), the label summary, the figure and ``frames plot``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiida import orm
from ase.calculators.singlepoint import SinglePointCalculator
from click.testing import CliRunner

from aiida_ilmlff.calculations.functions.sampling import (
    dataset_summary,
    generate_neq_frames,
    import_trajectory,
    sample_frames,
    structures_to_frames,
)
from aiida_ilmlff.data import FramesData
from aiida_ilmlff.sampling import distribution, frame_observables, label_summary
from aiida_ilmlff.sampling.settings import validate_import_settings
from tests.fixtures.boxes import PYR14BF4

from .conftest import synthetic_trajectory


def test_imported_extxyz_becomes_eq_frames_with_cut_and_spacing(extxyz_trajectory):
    """A 50-frame extxyz trajectory -> EQ frames; the equilibration cut and spacing are on every frame and in a Dict."""
    trajectory = orm.SinglefileData(str(extxyz_trajectory)).store()
    outputs = import_trajectory(
        trajectory, orm.Str('extxyz'), orm.Dict(PYR14BF4), settings=orm.Dict({'temperature': 450.0})
    )
    frames, sampling = outputs['frames'], outputs['sampling'].get_dict()
    assert sampling['n_frames'] == 50 and sampling['observable'] == 'energy'
    cut, spacing = sampling['equilibration_index'], sampling['spacing']
    assert cut > 0 and spacing >= 1
    assert sampling['indices'] == list(range(cut, 50, spacing))
    assert len(frames) == sampling['n_selected'] == len(sampling['indices'])
    assert frames.base.attributes.get('origin_counts') == {'EQ': len(frames)}
    assert not frames.base.attributes.get('labelled')  # force-field energies are not labels
    assert set(frames.sources) == {trajectory.uuid} and np.allclose(frames.temperatures, 450.0)
    for k, text in enumerate(frames.perturbations):
        record = json.loads(text)
        assert record['generator'] == 'md_sample' and record['source_format'] == 'extxyz'
        assert record['equilibration_index'] == cut and record['spacing'] == spacing
        assert record['statistical_inefficiency'] == pytest.approx(sampling['statistical_inefficiency'])
        assert record['frame_index'] == sampling['indices'][k]
    assert frames.mol_ids[:70].tolist() == [0] * 30 + [1] * 30 + [2] * 5 + [3] * 5
    assert json.loads(frames.molecules[0]) == ['PYR14', 'PYR14', 'BF4', 'BF4']
    assert frames.creator.process_label == 'import_trajectory'
    found = orm.QueryBuilder().append(FramesData, filters={'attributes.origin_counts.EQ': {'>': 0}, 'id': frames.pk})
    assert found.count() == 1


def test_import_settings_are_validated(extxyz_trajectory):
    assert validate_import_settings({}) == []
    errors = validate_import_settings({'method': 'fps', 'keep_labels': True, 'speed': 3})
    text = ' '.join(errors)
    assert (
        'fps` needs `n_max`' in text and 'level_of_theory' in text and "unknown sampling setting(s) ['speed']" in text
    )
    trajectory = orm.SinglefileData(str(extxyz_trajectory))
    with pytest.raises(ValueError, match='invalid import settings'):
        import_trajectory(trajectory, orm.Str('extxyz'), settings=orm.Dict({'method': 'best'}))


def test_sample_frames_keeps_labels_and_history(pyr14bf4_box):
    images = synthetic_trajectory(pyr14bf4_box(), 60)
    for k, atoms in enumerate(images):
        atoms.info['perturbation'] = {'generator': 'cp2k_aimd', 'step': k}
        atoms.info['level_of_theory'] = 'cp2k/GFN1-xTB:abc'
    trajectory = FramesData.from_ase(images, origin='import', temperature=450.0).store()
    outputs = sample_frames(trajectory, orm.Dict({'n_max': 5}))
    frames = outputs['frames']
    assert len(frames) <= 5 and frames.is_labelled
    record = frames[0].info['perturbation']
    assert record['trajectory_generator'] == 'cp2k_aimd' and record['step'] == record['frame_index']
    assert set(frames.levels_of_theory) == {'cp2k/GFN1-xTB:abc'}
    hot = sample_frames(trajectory, orm.Dict({'n_max': 3, 'origin': 'nEQ'}))['frames']
    assert set(hot.origins) == {'nEQ'} and hot[0].info['perturbation']['generator'] == 'hot_md'


def test_generate_neq_frames_calcfunction(pyr14bf4_box):
    from aiida_ilmlff.calculations.functions.box import structure_from_atoms

    box = structure_from_atoms(pyr14bf4_box()).store()
    sources = structures_to_frames(box_0=box)
    generators = orm.Dict({'rattle': {'weight': 1.0}, 'close_contact': {'weight': 1.0, 'floor': 1.6}})
    outputs = generate_neq_frames(sources, generators, orm.Int(6), orm.Int(7))
    frames, rejected = outputs['frames'], outputs['rejected'].get_dict()
    assert frames.base.attributes.get('origin_counts') == {'nEQ': 6}
    assert rejected['n_made'] == 6 and rejected['made_by_generator'] == {'rattle': 3, 'close_contact': 3}
    assert rejected['n_rejected'] == len(rejected['entries']) == sum(rejected['by_reason'].values())
    assert set(frames.sources) == {sources.uuid}
    generators_seen = {json.loads(p)['generator'] for p in frames.perturbations}
    assert generators_seen == {'rattle', 'close_contact'}
    with pytest.raises(ValueError, match='max_strain'):
        generate_neq_frames(sources, orm.Dict({'strain': {'max_strain': 0.5}}), orm.Int(2), orm.Int(0))


def _labelled_set(box):
    images = []
    rng = np.random.default_rng(0)
    for k in range(10):
        atoms = box.copy()
        origin = 'EQ' if k < 6 else 'nEQ'
        scale = 1.0 if origin == 'EQ' else 5.0
        forces = rng.normal(0.0, scale, (len(box), 3))
        atoms.calc = SinglePointCalculator(atoms, energy=-3000.0 + rng.normal() * scale, forces=forces)
        atoms.info['origin'] = origin
        images.append(atoms)
    return FramesData.from_ase(images, level_of_theory='test').store()


def test_summary_statistics(pyr14bf4_box):
    frames = _labelled_set(pyr14bf4_box())
    summary = dataset_summary(frames, orm.Dict({'EQ': 6, 'nEQ': 4})).get_dict()
    assert summary['counts'] == {'EQ': 6, 'nEQ': 4} and summary['targets'] == {'EQ': 6, 'nEQ': 4}
    for key in ('mean', 'std', 'min', 'max', 'p5', 'p25', 'p50', 'p75', 'p95'):
        assert key in summary['max_force']['EQ'] and key in summary['energy_per_atom']['nEQ']
    assert summary['max_force']['nEQ']['mean'] > summary['max_force']['EQ']['mean']
    assert summary['energy_per_atom']['all']['n'] == 10
    energy, force = frame_observables(frames.offsets, frames.energies, frames.forces)
    assert np.allclose(energy, frames.energies / 70)
    assert np.isclose(force[0], np.linalg.norm(frames.get_forces(0), axis=1).max())
    assert distribution([np.nan])['mean'] is None
    assert label_summary(['EQ'], np.array([1.0]), np.array([2.0]))['max_force']['EQ']['p50'] == 2.0


def test_figure_and_cli(pyr14bf4_box, tmp_path):
    from aiida_ilmlff.cli import cli
    from aiida_ilmlff.cli.frames_plot import plot_dataset

    frames = _labelled_set(pyr14bf4_box())
    path = plot_dataset(frames, tmp_path / 'figure.png')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and path.stat().st_size > 10_000

    result = CliRunner().invoke(cli, ['frames', 'plot', str(frames.pk), '-o', str(tmp_path / 'cli.png')])
    assert result.exit_code == 0, result.output
    assert (tmp_path / 'cli.png').exists() and 'wrote' in result.output

    bad = CliRunner().invoke(cli, ['frames', 'plot', str(orm.Int(3).store().pk)])
    assert bad.exit_code != 0 and 'neither a FramesData' in bad.output
    unlabelled = FramesData.from_ase([pyr14bf4_box()]).store()
    bad = CliRunner().invoke(cli, ['frames', 'plot', str(unlabelled.pk), '-o', str(tmp_path / 'x.png')])
    assert bad.exit_code != 0 and 'no labelled frame' in bad.output
