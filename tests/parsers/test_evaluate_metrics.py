"""Known-answer tests of the evaluation's errors (:mod:`aiida_ilmlff.parsers.evaluate`): relative force errors,
per element and per origin, pressure RMSE in kbar, energies aligned by fitted per-element offsets; and the parser on
runner output whose frames carry stresses (two of four frames with a reference stress)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from aiida_ilmlff.parsers.evaluate import (
    KBAR_PER_EV_A3,
    aligned_energy_errors,
    detailed_errors,
    pressure_errors,
)

from . import test_evaluate_parser

ELEMENTS = {'H': 1, 'C': 6, 'N': 7}


def _frames(rng, n_frames: int = 24, vary: bool = True):
    """Frames of H, C, N with varying (or fixed) composition: numbers, n_atoms, reference energy and forces."""
    numbers, n_atoms = [], []
    for _ in range(n_frames):
        counts = rng.integers(1, 6, size=3) if vary else np.array([4, 2, 1])
        frame = np.repeat([1, 6, 7], counts)
        numbers.append(frame)
        n_atoms.append(len(frame))
    numbers = np.concatenate(numbers)
    forces = rng.normal(scale=1.4, size=(len(numbers), 3))
    energy = rng.normal(scale=2.0, size=n_frames) - 10.0 * np.array(n_atoms)
    return numbers, np.array(n_atoms), energy, forces


def _counts(numbers, n_atoms):
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    return np.array(
        [[np.sum(numbers[offsets[i] : offsets[i + 1]] == z) for z in (1, 6, 7)] for i in range(len(n_atoms))]
    )


def test_shifted_model_gets_the_same_aligned_energy_rmse():
    """A model shifted by constant per-element energies (another reference) keeps its aligned energy RMSE."""
    rng = np.random.default_rng(1)
    numbers, n_atoms, reference, forces = _frames(rng)
    model = reference + rng.normal(scale=0.05, size=len(n_atoms))  # a model with 50 meV/frame noise
    shift = {'H': -13.6, 'C': -1029.0, 'N': -1485.0}  # eV per atom: e.g. VASP PBE against CP2K GTH
    shifted = model + _counts(numbers, n_atoms) @ np.array([shift[e] for e in ('H', 'C', 'N')])
    one = detailed_errors(model, reference, n_atoms, forces, forces, numbers)
    two = detailed_errors(shifted, reference, n_atoms, forces, forces, numbers)
    assert two['energy_rmse'] > 1000 * one['energy_rmse']  # the raw numbers compare references, not models
    assert two['energy_rmse_aligned_meV_per_atom'] == pytest.approx(one['energy_rmse_aligned_meV_per_atom'], rel=1e-6)
    assert two['energy_alignment'] == 'fitted' and two['energy_offsets_unique']
    # The fitted offsets recover the shift (up to the model's own, small, composition-linear part).
    for element, value in shift.items():
        assert two['energy_offsets_eV'][element] == pytest.approx(-value + one['energy_offsets_eV'][element], abs=1e-6)
    # The aligned RMSE of a model without offsets is below its raw RMSE (least squares), and above zero.
    assert 0 < one['energy_rmse_aligned_meV_per_atom'] <= one['energy_rmse']


def test_frames_of_one_composition_fit_one_offset():
    """Frames of one composition: only the total offset is determined; the aligned RMSE is that of the centred
    error, the offsets are not unique."""
    rng = np.random.default_rng(2)
    numbers, n_atoms, reference, _ = _frames(rng, n_frames=10, vary=False)
    error = rng.normal(scale=0.1, size=10)
    result = aligned_energy_errors(reference + 3.0 + error, reference, n_atoms, _counts(numbers, n_atoms), 'HCN')
    centred = (error - error.mean()) / n_atoms * 1000.0
    assert result['energy_rmse_aligned_meV_per_atom'] == pytest.approx(np.sqrt(np.mean(centred**2)))
    assert result['energy_alignment'] == 'fitted' and not result['energy_offsets_unique']


def test_alignment_not_determined_gives_forces_only():
    """As many frames as independent element counts: the residual is 0 by construction, so no aligned number."""
    rng = np.random.default_rng(3)
    numbers, n_atoms, reference, _ = _frames(rng, n_frames=3)
    result = aligned_energy_errors(reference + 1.0, reference, n_atoms, _counts(numbers, n_atoms), 'HCN')
    assert result['energy_rmse_aligned_meV_per_atom'] is None and result['energy_offsets_eV'] is None
    assert result['energy_alignment'].startswith('not determined') and 'forces only' in result['energy_alignment']


def test_relative_force_errors_per_element_and_origin():
    """Force RMSE / RMS of the reference forces, overall, per element and per origin, on constructed errors."""
    rng = np.random.default_rng(4)
    numbers, n_atoms, reference, forces = _frames(rng, n_frames=12)
    scale = {1: 0.1, 6: 0.2, 7: 0.3}
    noise = rng.normal(size=forces.shape) * np.array([scale[z] for z in numbers])[:, None]
    origins = ['EQ'] * 6 + ['nEQ'] * 4 + ['AL'] * 2
    result = detailed_errors(reference, reference, n_atoms, forces + noise, forces, numbers, origins=origins)
    rmse = np.sqrt(np.mean(noise**2))
    assert result['force_rmse'] == pytest.approx(rmse * 1000)
    assert result['force_rms_reference'] == pytest.approx(np.sqrt(np.mean(forces**2)) * 1000)
    assert result['force_rmse_relative'] == pytest.approx(rmse / np.sqrt(np.mean(forces**2)))
    for symbol, z in ELEMENTS.items():
        mask = numbers == z
        entry = result['per_element'][symbol]
        assert entry['n_atoms'] == mask.sum()
        expected = np.sqrt(np.mean(noise[mask] ** 2)) / np.sqrt(np.mean(forces[mask] ** 2))
        assert entry['force_rmse_relative'] == pytest.approx(expected)
    assert result['per_element']['N']['force_rmse'] > result['per_element']['H']['force_rmse']
    assert set(result['per_origin']) == {'EQ', 'nEQ', 'AL'}
    assert [result['per_origin'][o]['n_frames'] for o in ('EQ', 'nEQ', 'AL')] == [6, 4, 2]
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    eq_rows = slice(0, offsets[6])
    assert result['per_origin']['EQ']['force_rmse'] == pytest.approx(np.sqrt(np.mean(noise[eq_rows] ** 2)) * 1000)
    assert result['energy_rmse'] == 0.0 and result['n_stress_frames'] == 0 and result['pressure_rmse_kbar'] is None


def test_pressure_rmse_in_kbar_and_frames_without_stress():
    """An isotropic stress error of 1 meV/Å^3 is a pressure error of 1.602 kbar; frames without a reference stress
    are left out and counted."""
    rng = np.random.default_rng(5)
    reference = rng.normal(scale=0.005, size=(6, 3, 3))
    reference = 0.5 * (reference + reference.transpose(0, 2, 1))
    predicted = reference - 0.001 * np.eye(3)  # pressure = -trace/3: +1 meV/Å^3 of pressure
    reference[4:] = np.nan  # two frames without a stress label
    result = pressure_errors(predicted, reference)
    assert result['n_stress_frames'] == 4
    assert result['pressure_rmse_kbar'] == pytest.approx(1.6021766208, rel=1e-9)
    assert result['pressure_rmse_kbar'] == pytest.approx(0.001 * KBAR_PER_EV_A3)
    assert result['stress_rmse_kbar'] == pytest.approx(np.sqrt(3 / 9) * 0.001 * KBAR_PER_EV_A3)
    none = pressure_errors(predicted, np.full_like(reference, np.nan))
    assert none['n_stress_frames'] == 0 and none['pressure_rmse_kbar'] is None


def test_parser_with_stress(aiida_profile, tmp_path, monkeypatch):
    """Runner output with a predicted ``stress`` and frames of which two carry a reference stress: the metrics Dict
    has the pressure RMSE over those two, per origin and per element errors and the aligned energy RMSE."""
    case = tmp_path / 'data' / 'stress'
    shutil.copytree(test_evaluate_parser.DATA / 'committee', case)
    path = case / 'temporary' / 'predictions.npz'
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    n_models, n_frames = arrays['energy'].shape
    rng = np.random.default_rng(6)
    stress_ref = rng.normal(scale=0.003, size=(n_frames, 3, 3))
    stress_ref = 0.5 * (stress_ref + stress_ref.transpose(0, 2, 1))
    delta = np.array([0.002, -0.001])[:, None, None, None] * np.eye(3)  # model 0: -2 meV/Å^3 of pressure
    arrays['stress'] = np.broadcast_to(stress_ref, (n_models, n_frames, 3, 3)) + delta
    np.savez(path, **arrays)
    lines = (case / 'frames.xyz').read_text().splitlines(keepends=True)
    headers = [k for k, line in enumerate(lines) if line.startswith('Lattice=')]
    for frame, k in enumerate(headers[:2]):  # frames 0 and 1 get a reference stress
        values = ' '.join(f'{v:.10f}' for v in stress_ref[frame].reshape(9))
        lines[k] = re.sub(r'pbc=', f'REF_stress="{values}" pbc=', lines[k])
    (case / 'frames.xyz').write_text(''.join(lines))
    monkeypatch.setattr(test_evaluate_parser, 'DATA', case.parent)

    results, calcfunction = test_evaluate_parser.parse_runner_evaluate('stress', tmp_path)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    metrics = results['metrics'].get_dict()
    assert metrics['n_frames_with_reference_stress'] == 2
    assert results['predictions'].get_array('stress').shape == (n_models, n_frames, 3, 3)
    keys = sorted(metrics['models'])
    for key, expected in zip(keys, (2.0, 1.0), strict=True):
        errors = metrics['models'][key]['errors']
        assert errors['n_stress_frames'] == 2
        assert errors['pressure_rmse_kbar'] == pytest.approx(expected * 1e-3 * KBAR_PER_EV_A3, rel=1e-6)
        assert 0 < errors['force_rmse_relative'] < 1 and set(errors['per_element']) == {'B', 'C', 'F', 'H', 'N'}
        assert errors['per_origin']['import']['n_stress_frames'] == 2
        assert errors['energy_rmse_aligned_meV_per_atom'] <= errors['energy_rmse']
    mean = metrics['committee_mean']
    assert mean['pressure_rmse_kbar'] == pytest.approx(0.5e-3 * KBAR_PER_EV_A3, rel=1e-6)
