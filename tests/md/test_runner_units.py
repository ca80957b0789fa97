"""Unit tests of the MD runner that need no model: parameters, guards, the command line, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aiida_ilmlff.common import geometry
from aiida_ilmlff.runner import contract
from aiida_ilmlff.runner import guards as guard_module
from aiida_ilmlff.runner.cli import main as cli_main
from aiida_ilmlff.runner.contract import resolve_parameters, validate_parameters
from aiida_ilmlff.runner.md import run_md

BIN = __import__('pathlib').Path(sys.executable).parent


def test_version_and_dispatch(capsys):
    """``--version`` prints ``ilmlff-runner <version>`` (the setup probe); the console script does too."""
    with pytest.raises(SystemExit) as excinfo:
        cli_main(['--version'])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.startswith('ilmlff-runner ')
    result = subprocess.run([str(BIN / 'ilmlff-runner'), '--version'], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and 'ilmlff-runner' in result.stdout


def test_cli_md_bad_settings_exit_2(tmp_path, capsys):
    """An unreadable settings file: exit status 2 and a status.json that says why."""
    path = tmp_path / 'md.json'
    path.write_text('{not json')
    assert cli_main(['md', str(path)]) == 2
    status = json.loads((tmp_path / 'status.json').read_text())
    assert status['status'] == 'error' and status['exit_status'] == 2
    assert 'cannot read the settings' in status['reason']


@pytest.mark.parametrize(
    ('parameters', 'fragment'),
    [
        ({'ensemble': 'nvt', 'steps': 10, 'temperature_K': -5.0}, '`parameters.temperature_K` must be > 0'),
        ({'ensemble': 'npt', 'steps': 10, 'temperature_K': 300.0}, '`parameters.pressure_bar` is required'),
        ({'ensemble': 'nvt', 'steps': 10, 'temperature_K': 300.0, 'timestep_fs': 6.0}, 'must be <= 5.0'),
        ({'ensemble': 'nvt', 'steps': 10}, '`parameters.temperature_K` is required for ensemble `nvt`'),
        ({'ensemble': 'nvx', 'steps': 10}, '`parameters.ensemble` must be one of'),
        ({'ensemble': 'nvt', 'temperature_K': 300.0}, '`parameters.steps` is required'),
        ({'ensemble': 'nvt', 'steps': 10, 'temperature_K': 300.0, 'stepz': 1}, "unknown keys ['stepz']"),
        ({'ensemble': 'nvt', 'steps': 10, 'temperature_K': 300.0, 'pressure_bar': 1.0}, 'only used by the npt'),
        ({'ensemble': 'nvt', 'steps': 9, 'temperature_K': 3e2, 'traj_every': 3, 'checkpoint_every': 10}, 'multiple'),
        ({'ensemble': 'nvt', 'steps': 9, 'temperature_K': 3e2, 'guards': {'max_force_eV_A': -1}}, 'guards.max_force'),
        ({'ensemble': 'nvt', 'steps': True, 'temperature_K': 3e2}, 'got a bool'),
    ],
)
def test_validate_parameters_messages(parameters, fragment):
    """Each bad parameter set gives a message naming the key and what is wrong."""
    errors = validate_parameters(parameters)
    assert any(fragment in error for error in errors), errors


def test_resolve_parameters_defaults():
    """Defaults fill in; the initial temperature defaults to the target; guards get their defaults."""
    resolved = resolve_parameters({'ensemble': 'nvt', 'steps': 10, 'temperature_K': 400})
    assert resolved['timestep_fs'] == 1.0 and resolved['initial_temperature_K'] == 400.0
    assert resolved['guards'] == contract.GUARD_DEFAULTS
    assert validate_parameters({'ensemble': 'npt', 'steps': 5, 'temperature_K': 300, 'pressure_bar': 1}) == []
    with pytest.raises(ValueError, match='temperature_K'):
        resolve_parameters({'ensemble': 'nvt', 'steps': 10, 'temperature_K': -1})


def _brute_force_min(positions, cell):
    inverse = np.linalg.inv(cell)
    best = np.inf
    for i in range(len(positions)):
        delta = positions[i + 1 :] - positions[i]
        fractional = delta @ inverse
        fractional -= np.round(fractional)
        images = []
        for shift in np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]):
            images.append(np.linalg.norm((fractional + shift) @ cell, axis=1))
        if len(delta):
            best = min(best, np.min(images))
    return best


@pytest.mark.parametrize(
    'cell',
    [np.diag([7.0, 8.0, 9.0]), np.array([[8.0, 0.0, 0.0], [2.5, 7.5, 0.0], [1.0, 1.5, 8.5]])],
    ids=['orthorhombic', 'triclinic'],
)
def test_min_pair_distance_matches_brute_force(cell):
    """The k-d tree search finds the same shortest minimum-image distance as a brute-force search."""
    rng = np.random.default_rng(1)
    positions = rng.uniform(-0.5, 1.5, (60, 3)) @ cell  # some atoms outside the cell
    positions[7] = positions[3] + cell[0] + np.array([0.2, 0.1, -0.1])  # a close pair across the boundary
    expected = _brute_force_min(positions, cell)
    distance, pair = geometry.min_pair_distance(positions, cell, cutoff=1.0)
    assert distance == pytest.approx(expected, abs=1e-9)
    assert pair == (3, 7)
    assert geometry.min_pair_distance(positions, cell, cutoff=0.1) == (float('inf'), None)


def _state(n=4):
    positions = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]], dtype=float)[:n]
    return {
        'step': 5,
        'time_fs': 5.0,
        'energy': -1.0,
        'forces': np.zeros((n, 3)),
        'positions': positions,
        'cell': np.eye(3) * 10,
        'temperature': 300.0,
        'volume': 1000.0,
    }


@pytest.mark.parametrize(
    ('change', 'name', 'runner_status', 'exit_status'),
    [
        ({'energy': float('nan')}, 'non_finite', 11, 500),
        ({'forces': np.array([[0, 0, 25.0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])}, 'max_force', 12, 501),
        ({'temperature': 2100.0}, 'temperature', 13, 502),
        ({'positions': np.array([[0, 0, 0], [0.3, 0, 0], [0, 2, 0], [0, 0, 2]], dtype=float)}, 'min_distance', 14, 503),
        ({'volume': 1600.0}, 'volume', 15, 504),
    ],
)
def test_each_guard_trips_with_its_status(change, name, runner_status, exit_status):
    """Each guard trips on its own condition and maps to its runner status and CalcJob exit code."""
    checker = guard_module.GuardChecker({}, target_temperature=400.0, reference_volume=1000.0)
    assert checker.check(**_state()) is None
    failure = checker.check(**{**_state(), **change})
    assert failure is not None and failure.guard.name == name
    assert failure.guard.runner_status == runner_status and failure.guard.exit_status == exit_status
    assert contract.guard_for_exit_status(runner_status).name == name
    json.dumps(failure.to_dict())


def test_guards_can_be_disabled():
    """``null`` switches a guard off; thresholds are configurable."""
    checker = guard_module.GuardChecker(
        {'max_force_eV_A': None, 'max_volume_change': 0.7}, target_temperature=400.0, reference_volume=1000.0
    )
    state = {**_state(), 'forces': np.full((4, 3), 50.0), 'volume': 1600.0}
    assert checker.check(**state) is None


def test_runner_rejects_bad_parameters(runner_workdir):
    """The runner itself refuses invalid parameters (exit 2) before loading any model."""
    settings = {
        'structure': 'structure.extxyz',
        'models': [{'key': 'model_0', 'path': 'missing.model', 'architecture': 'mace'}],
        'parameters': {'ensemble': 'npt', 'steps': 10, 'temperature_K': 300.0},
    }
    assert run_md(settings, runner_workdir, handle_signals=False) == 2
    status = json.loads((runner_workdir / 'status.json').read_text())
    assert 'pressure_bar' in status['reason']


def test_runner_missing_model_exit_3(runner_workdir):
    """A model file that does not exist: exit 3 (model load)."""
    settings = {
        'structure': 'structure.extxyz',
        'models': [{'key': 'model_0', 'path': 'missing.model', 'architecture': 'mace'}],
        'parameters': {'ensemble': 'nvt', 'steps': 10, 'temperature_K': 300.0},
    }
    assert run_md(settings, runner_workdir, handle_signals=False) == 3
    assert 'not found' in json.loads((runner_workdir / 'status.json').read_text())['reason']


def test_pair_list_matches_a_full_search_along_a_trajectory():
    """The Verlet list gives the full search's answer every step while atoms move and the cell breathes."""
    rng = np.random.default_rng(4)
    cell = np.diag([12.0, 12.0, 12.0])
    positions = rng.uniform(0, 12, (120, 3))
    pair_list = guard_module.PairList(cutoff=1.2, skin=1.0)
    for _ in range(60):
        positions = positions + rng.normal(0, 0.08, positions.shape)
        scale = 1 + rng.normal(0, 0.002)
        positions, cell = positions * scale, cell * scale
        expected = geometry.min_pair_distance(positions, cell, 1.2)
        found = pair_list.min_distance(positions, cell)
        assert found[1] == expected[1] and found[0] == pytest.approx(expected[0], abs=1e-12)
    assert 1 < pair_list.rebuilds < 60


def test_thread_environment_sizes_every_pool():
    """Intra-op pools get the thread count (at least 1), inter-op pools 1; configure_threads applies the same."""
    from aiida_ilmlff.runner.calculators import thread_environment

    env = thread_environment(2)
    assert (
        env['OMP_NUM_THREADS']
        == env['TF_INTRA_OP_PARALLELISM_THREADS']
        == env['DP_INTRA_OP_PARALLELISM_THREADS']
        == '2'
    )
    assert env['TF_INTER_OP_PARALLELISM_THREADS'] == env['DP_INTER_OP_PARALLELISM_THREADS'] == '1'
    assert set(thread_environment(0).values()) == {'1'}


def test_cli_evaluate_bad_settings_exit_2(tmp_path, capsys):
    """``ilmlff-runner evaluate`` with an unreadable settings file: exit status 2 and the reason on stderr."""
    path = tmp_path / 'evaluate.json'
    path.write_text('{not json')
    assert cli_main(['evaluate', str(path)]) == contract.EXIT_BAD_INPUT
    assert 'ilmlff-runner evaluate: cannot read' in capsys.readouterr().err


def test_evaluate_loads_models_through_the_md_loader(tmp_path, monkeypatch):
    """Evaluation asks :func:`calculators.load_calculator` (the MD loader) for each model, then writes the contract's
    arrays: here an EMT stand-in loader, whose predictions must come back unchanged."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import read, write

    from aiida_ilmlff.runner import calculators
    from aiida_ilmlff.runner.evaluate import evaluate_models

    frames = [bulk('Cu', cubic=True).repeat(2) for _ in range(2)]
    frames[1].rattle(0.05, seed=1)
    write(str(tmp_path / 'frames.xyz'), frames, format='extxyz')
    loaded = []
    monkeypatch.setattr(calculators, 'load_calculator', lambda model, **kwargs: loaded.append(model['key']) or EMT())
    models = [{'key': key, 'path': f'{key}.model', 'architecture': 'mace', 'dtype': 'float64'} for key in ('a', 'b')]
    summary = evaluate_models(contract.evaluate_settings('frames.xyz', models), tmp_path)
    assert loaded == ['a', 'b'] and summary['n_frames'] == 2
    with np.load(tmp_path / contract.EVALUATE_OUTPUTS['predictions']) as data:
        assert sorted(data.files) == sorted(contract.PREDICTION_ARRAYS)
        for i, atoms in enumerate(read(str(tmp_path / 'frames.xyz'), index=':')):
            atoms.calc = EMT()
            np.testing.assert_allclose(data['energy'][:, i], atoms.get_potential_energy(), rtol=0, atol=1e-12)
        assert data['forces'].shape == (2, 64, 3)
