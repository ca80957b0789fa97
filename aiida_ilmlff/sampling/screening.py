"""Screening of labelled frames: which DFT labels may enter a training set, and why the others may not.

Pure numpy (no AiiDA). :func:`screen_frames` applies, in order, the SCF, finiteness, largest-force,
duplicate and energy-outlier checks of ``ilmlff.label``'s quality control; the outlier check compares
energies per atom across compositions through :func:`composition_residuals` (per-element reference
energies fitted by least squares) and :func:`robust_zscores` (median/MAD).
"""

from __future__ import annotations

import typing as t

import numpy as np

__all__ = ('composition_residuals', 'robust_zscores', 'screen_frames')


def robust_zscores(values: np.ndarray) -> np.ndarray:
    """Robust z-scores ``0.6745 (x - median) / MAD`` (MAD: median absolute deviation).

    Returns zeros when fewer than three values are given or the MAD is zero (no spread to judge by).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 3:
        return np.zeros_like(values)
    median = np.median(values)
    mad = np.median(np.abs(values - median))
    if mad <= 0 or not np.isfinite(mad):
        return np.zeros_like(values)
    return 0.6745 * (values - median) / mad


def composition_residuals(energies: np.ndarray, numbers: t.Sequence[np.ndarray]) -> np.ndarray:
    """Energy per atom left after a least-squares fit of per-element reference energies (eV/atom).

    With one composition this is the deviation from the mean energy per atom; with several it removes the
    composition dependence, so that frames of different ion mixtures can be compared.
    """
    elements = sorted({int(z) for nums in numbers for z in nums})
    counts = np.array([[np.count_nonzero(nums == z) for z in elements] for nums in numbers], dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return (energies - counts @ coefficients) / counts.sum(axis=1)


def screen_frames(
    energies: t.Sequence[float],
    forces: t.Sequence[np.ndarray],
    numbers: t.Sequence[np.ndarray],
    positions: t.Sequence[np.ndarray],
    cells: t.Sequence[np.ndarray],
    *,
    stresses: t.Sequence[np.ndarray | None] | None = None,
    converged: t.Sequence[bool] | None = None,
    max_force: float = 50.0,
    max_energy_zscore: float = 10.0,
    duplicate_tolerance: float = 1e-4,
) -> dict[int, dict]:
    """Return ``{position in the input sequence: {'reason': ..., 'detail': ...}}`` for the frames to drop.

    Checks, in order (a frame gets the first reason that applies): SCF not converged; non-finite energy,
    forces or stress; any atomic force norm above ``max_force`` [eV/Å]; a duplicate of an earlier frame
    (same atomic numbers, and cell and positions equal within ``duplicate_tolerance`` [Å]; the first one is
    kept); an energy-per-atom outlier, judged among the frames that passed the other checks by the robust
    z-score of the residual energy per atom after fitting per-element reference energies (so mixed
    compositions are fine), threshold ``max_energy_zscore``.

    :param energies: ``(N,)`` eV. :param forces: N arrays ``(n_i, 3)`` eV/Å.
    :param numbers: N arrays ``(n_i,)`` atomic numbers. :param positions: N arrays ``(n_i, 3)`` Å.
    :param cells: N arrays ``(3, 3)`` Å. :param stresses: N arrays ``(3, 3)`` eV/Å^3 or ``None`` entries.
    :param converged: N bools (all True if omitted).
    """
    n = len(energies)
    rejected: dict[int, dict] = {}
    converged = [True] * n if converged is None else list(converged)
    stresses = [None] * n if stresses is None else list(stresses)
    for i in range(n):
        if not converged[i]:
            rejected[i] = {'reason': 'scf_not_converged', 'detail': 'CP2K/pw.x reported an unconverged SCF'}
            continue
        values = [np.atleast_1d(energies[i]), np.asarray(forces[i])]
        if stresses[i] is not None:
            values.append(np.asarray(stresses[i]))
        if not all(np.all(np.isfinite(value)) for value in values):
            rejected[i] = {'reason': 'non_finite', 'detail': 'nan or inf in energy, forces or stress'}
            continue
        norms = np.linalg.norm(np.asarray(forces[i]), axis=1)
        if norms.size and norms.max() > max_force:
            atom = int(norms.argmax())
            rejected[i] = {
                'reason': 'max_force',
                'detail': f'|F| = {norms.max():.2f} eV/A on atom {atom} exceeds {max_force:g} eV/A',
            }

    seen: dict[tuple, list[int]] = {}
    scale = max(duplicate_tolerance, 1e-12)
    for i in range(n):
        if i in rejected:
            continue
        key = (
            tuple(np.asarray(numbers[i]).tolist()),
            tuple(np.round(np.asarray(cells[i]) / scale).astype(np.int64).ravel()),
        )
        for j in seen.get(key, []):
            if np.allclose(positions[i], positions[j], atol=duplicate_tolerance, rtol=0) and np.allclose(
                cells[i], cells[j], atol=duplicate_tolerance, rtol=0
            ):
                rejected[i] = {'reason': 'duplicate', 'detail': f'duplicate of frame {j}'}
                break
        else:
            seen.setdefault(key, []).append(i)

    remaining = [i for i in range(n) if i not in rejected]
    if len(remaining) >= 3:
        residuals = composition_residuals(
            np.array([energies[i] for i in remaining], dtype=np.float64), [np.asarray(numbers[i]) for i in remaining]
        )
        scores = robust_zscores(residuals)
        for i, score, residual in zip(remaining, scores, residuals):
            if abs(score) > max_energy_zscore:
                rejected[i] = {
                    'reason': 'energy_outlier',
                    'detail': f'robust z-score {score:.1f} of the energy per atom (residual {residual:.4f} eV/atom)',
                }
    return rejected
