"""``aiida-ilmlff frames show`` and ``aiida-ilmlff frames export`` through click's CliRunner."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from aiida_ilmlff.cli import cli
from aiida_ilmlff.data import FramesData


def test_frames_show(ase_frames):
    node = FramesData.from_ase(ase_frames, label='pyr14bf4-test').store()
    result = CliRunner().invoke(cli, ['frames', 'show', str(node.pk)])
    assert result.exit_code == 0, result.output
    assert 'frames' in result.output and ' 8' in result.output
    assert 'B C F H N' in result.output
    assert 'EQ: 2, nEQ: 2, AL: 2, import: 2' in result.output
    assert 'True (8/8 with energy+forces)' in result.output
    assert 'cp2k:gfn1-xtb:abc123' in result.output
    assert node.uuid in result.output
    # by UUID too, as verdi accepts
    assert CliRunner().invoke(cli, ['frames', 'show', node.uuid]).exit_code == 0


def test_frames_export_both_formats(ase_frames, tmp_path):
    node = FramesData.from_ase(ase_frames).store()
    runner = CliRunner()
    result = runner.invoke(cli, ['frames', 'export', str(node.pk), str(tmp_path / 'f.xyz')])
    assert result.exit_code == 0, result.output
    back = FramesData.from_file(tmp_path / 'f.xyz', 'extxyz')
    assert np.array_equal(back.forces, node.forces)

    result = runner.invoke(cli, ['frames', 'export', str(node.pk), str(tmp_path / 'dp'), '--format', 'deepmd'])
    assert result.exit_code == 0, result.output
    assert (tmp_path / 'dp' / 'BF4' / 'type.raw').is_file()

    result = runner.invoke(cli, ['frames', 'export', str(node.pk), str(tmp_path / 'f.xyz')])
    assert result.exit_code != 0
    assert 'overwrite' in result.output
    result = runner.invoke(cli, ['frames', 'export', str(node.pk), str(tmp_path / 'f.xyz'), '--overwrite'])
    assert result.exit_code == 0, result.output


def test_frames_show_rejects_other_nodes():
    from aiida import orm

    other = orm.Int(5).store()
    result = CliRunner().invoke(cli, ['frames', 'show', str(other.pk)])
    assert result.exit_code != 0
