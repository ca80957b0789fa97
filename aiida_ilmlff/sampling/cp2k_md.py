"""Read a CP2K molecular-dynamics run (``RUN_TYPE MD``) from its output files: frames labelled at every printed step.

Pure text parsing (numpy, ASE units; no AiiDA). Files of ``PROJECT aiida`` (the name aiida-cp2k sets):

``aiida-pos-1.xyz``
    positions in Å, one XYZ block per printed step; comment ``i = <step>, time = <fs>, E = <Hartree>``.
``aiida-frc-1.xyz``
    forces in Hartree/bohr (atomic units), same layout; converted to eV/Å.
``aiida-1.ener``
    one row per step: step, time [fs], kinetic energy [Hartree], temperature [K], potential energy
    [Hartree], conserved quantity [Hartree], CPU time [s]. The potential energy (converted to eV) is the label.
``aiida.out``
    the main output: a force evaluation whose SCF did not converge (the markers of
    :mod:`aiida_ilmlff.parsers.cp2k_output`) marks its step as unconverged; neither it nor any later step of the
    trajectory becomes a label (they were propagated with unconverged forces). With
    ``FORCE_EVAL/PRINT/STRESS_TENSOR`` on it also holds the analytical stress of every step (GPa, CP2K's sign),
    converted to eV/Å^3 with the ASE sign (positive under tension).

Conversions use ASE's constants (CODATA 2014), as :mod:`aiida_ilmlff.parsers.cp2k_output`:
1 Hartree = 27.211386 eV, 1 Hartree/bohr = 51.422067 eV/Å.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing as t

import numpy as np
from ase import units

from aiida_ilmlff.parsers.cp2k_output import (
    md_step_numbers,
    parse_cp2k_stress_per_evaluation,
    unconverged_evaluations,
)

__all__ = (
    'CP2K_ENER_FILE',
    'CP2K_FRC_FILE',
    'CP2K_POS_FILE',
    'Cp2kMdRun',
    'after_first_unconverged',
    'aimd_summary',
    'labelled_steps',
    'md_step_stresses',
    'merge_runs',
    'parse_cp2k_ener',
    'parse_cp2k_md',
    'parse_cp2k_xyz_trajectory',
    'step_perturbations',
    'unconverged_md_steps',
)

CP2K_POS_FILE = 'aiida-pos-1.xyz'
CP2K_FRC_FILE = 'aiida-frc-1.xyz'
CP2K_ENER_FILE = 'aiida-1.ener'

_COMMENT = re.compile(r'i\s*=\s*(-?\d+)\s*,\s*time\s*=\s*([-+0-9.EeDd]+)(?:\s*,\s*E\s*=\s*([-+0-9.EeDd]+))?')


@dataclasses.dataclass
class Cp2kMdRun:
    """One CP2K MD run read from its files (``T`` printed steps, ``n`` atoms).

    Attributes:
        steps: ``(T,)`` MD step numbers. times: ``(T,)`` fs. symbols: ``(n,)`` element symbols.
        positions: ``(T, n, 3)`` Å. forces: ``(T, n, 3)`` eV/Å (``nan`` where the force file lacks the step).
        energies: ``(T,)`` potential energy in eV (from the ener file; the XYZ comment where absent).
        temperatures: ``(T,)`` instantaneous temperature in K (``nan`` if unknown).
        conserved: ``(T,)`` conserved quantity in eV (``nan`` if unknown).
        unconverged: ``(T,)`` bool, the SCF of the step did not converge.
        stresses: ``(T, 3, 3)`` eV/Å^3, ASE sign (``nan`` where the output printed none).
    """

    steps: np.ndarray
    times: np.ndarray
    symbols: list[str]
    positions: np.ndarray
    forces: np.ndarray
    energies: np.ndarray
    temperatures: np.ndarray
    conserved: np.ndarray
    unconverged: np.ndarray
    stresses: np.ndarray | None = None

    def __post_init__(self):
        if self.stresses is None:
            self.stresses = np.full((len(self.steps), 3, 3), np.nan)


def _float(text: str) -> float:
    return float(text.replace('D', 'E').replace('d', 'e'))


def parse_cp2k_xyz_trajectory(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """``(steps, times_fs, comment_energies_Ha, symbols, values)`` of a CP2K XYZ trajectory (positions or forces).

    ``values`` is ``(T, n, 3)`` in the file's unit (Å for positions, Hartree/bohr for forces).

    :raises ValueError: for a truncated block, a bad comment line, or frames with other atoms than the first.
    """
    lines = text.splitlines()
    steps, times, energies, frames = [], [], [], []
    symbols: list[str] | None = None
    k = 0
    while k < len(lines):
        if not lines[k].strip():
            k += 1
            continue
        try:
            count = int(lines[k].split()[0])
        except (ValueError, IndexError) as exception:
            raise ValueError(f'line {k + 1}: expected an atom count, got {lines[k]!r}') from exception
        if k + 2 + count > len(lines):
            break  # a block cut short (run killed while writing): ignore it
        match = _COMMENT.search(lines[k + 1])
        if match is None:
            raise ValueError(f'line {k + 2}: not a CP2K trajectory comment: {lines[k + 1]!r}')
        block = [line.split() for line in lines[k + 2 : k + 2 + count]]
        if any(len(row) < 4 for row in block):
            if k + 2 + count >= len(lines):
                break  # the last line was cut short
            raise ValueError(f'a line of the block at line {k + 1} has fewer than 4 columns')
        frame_symbols = [re.sub(r'\d+$', '', row[0]) for row in block]
        if symbols is None:
            symbols = frame_symbols
        elif frame_symbols != symbols:
            raise ValueError(f'frame at step {match.group(1)} has other atoms than the first frame')
        steps.append(int(match.group(1)))
        times.append(_float(match.group(2)))
        energies.append(_float(match.group(3)) if match.group(3) else np.nan)
        frames.append([[_float(v) for v in row[1:4]] for row in block])
        k += 2 + count
    if symbols is None:
        raise ValueError('the CP2K trajectory file holds no frame')
    return (
        np.asarray(steps, dtype=np.int64),
        np.asarray(times, dtype=np.float64),
        np.asarray(energies, dtype=np.float64),
        symbols,
        np.asarray(frames, dtype=np.float64),
    )


def parse_cp2k_ener(text: str) -> dict[str, np.ndarray]:
    """Columns of a CP2K ``.ener`` file: ``step``, ``time`` [fs], ``kinetic`` [Ha], ``temperature`` [K],
    ``potential`` [Ha], ``conserved`` [Ha], ``cpu_time`` [s].

    :raises ValueError: if a data row has fewer than 6 columns.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        parts = line.split()
        if len(parts) < 6:
            raise ValueError(f'line {number} of the ener file has {len(parts)} columns, expected 7')
        rows.append([_float(v) for v in parts[:7]] + [np.nan] * (7 - min(len(parts), 7)))
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    names = ('step', 'time', 'kinetic', 'temperature', 'potential', 'conserved', 'cpu_time')
    columns = {name: data[:, k] for k, name in enumerate(names)}
    columns['step'] = columns['step'].astype(np.int64)
    return columns


def _evaluation_steps(stdout: str, first_step: int) -> list[int]:
    """MD step of each force evaluation of a run: ``first_step``, then the ``MD| Step number <n>`` that follow."""
    return [int(first_step), *md_step_numbers(stdout)]


def unconverged_md_steps(stdout: str, first_step: int) -> set[int]:
    """MD steps whose force evaluation had an unconverged SCF, read from CP2K's main output.

    The first force evaluation of a run is its initial step ``first_step``; every later one is followed by
    ``MD| Step number <n>``. An evaluation failed when its SCF messages (before its ``ENERGY| Total FORCE_EVAL``
    line) contain one of CP2K's SCF failure markers
    (:func:`~aiida_ilmlff.parsers.cp2k_output.unconverged_evaluations`; a last evaluation cut short by a killed
    job counts as the step after the last numbered one).
    """
    numbers = _evaluation_steps(stdout, first_step)
    failed = set()
    for k in unconverged_evaluations(stdout):
        failed.add(numbers[k] if k < len(numbers) else numbers[-1] + (k - len(numbers) + 1))
    return failed


def md_step_stresses(stdout: str, first_step: int) -> dict[int, np.ndarray]:
    """MD step -> analytical stress ``(3, 3)`` eV/Å^3 (ASE sign) of every evaluation that printed one."""
    numbers = _evaluation_steps(stdout, first_step)
    stresses = parse_cp2k_stress_per_evaluation(stdout)
    return {numbers[k]: stresses[k] for k in range(min(len(numbers), len(stresses))) if np.isfinite(stresses[k]).all()}


def parse_cp2k_md(pos_text: str, frc_text: str | None, ener_text: str | None, stdout: str | None = None) -> Cp2kMdRun:
    """Read one CP2K MD run (see the module docstring); units converted to Å, eV, eV/Å.

    :param pos_text: content of ``aiida-pos-1.xyz``. :param frc_text: of ``aiida-frc-1.xyz`` (``None``: no forces).
    :param ener_text: of ``aiida-1.ener`` (``None``: energies from the XYZ comments).
    :param stdout: of ``aiida.out`` (``None``: SCF convergence not checked).
    :raises ValueError: if the files disagree on atoms, or a file cannot be read.
    """
    steps, times, comment_energies, symbols, positions = parse_cp2k_xyz_trajectory(pos_text)
    n_frames = len(steps)
    forces = np.full_like(positions, np.nan)
    if frc_text:
        f_steps, _, _, f_symbols, f_values = parse_cp2k_xyz_trajectory(frc_text)
        if f_symbols != symbols:
            raise ValueError('the forces file lists other atoms than the positions file')
        lookup = {int(s): k for k, s in enumerate(f_steps)}
        for k, step in enumerate(steps):
            if int(step) in lookup:
                forces[k] = f_values[lookup[int(step)]] * (units.Hartree / units.Bohr)
    energies = comment_energies * units.Hartree
    temperatures = np.full(n_frames, np.nan)
    conserved = np.full(n_frames, np.nan)
    first_step = int(steps[0])
    if ener_text:
        columns = parse_cp2k_ener(ener_text)
        if len(columns['step']):
            first_step = int(columns['step'][0])
        lookup = {int(s): k for k, s in enumerate(columns['step'])}
        for k, step in enumerate(steps):
            row = lookup.get(int(step))
            if row is not None:
                energies[k] = columns['potential'][row] * units.Hartree
                temperatures[k] = columns['temperature'][row]
                conserved[k] = columns['conserved'][row] * units.Hartree
    unconverged = np.zeros(n_frames, dtype=bool)
    stresses = np.full((n_frames, 3, 3), np.nan)
    if stdout:
        failed = unconverged_md_steps(stdout, first_step)
        unconverged = np.array([int(s) in failed for s in steps], dtype=bool)
        by_step = md_step_stresses(stdout, first_step)
        for k, step in enumerate(steps):
            if int(step) in by_step:
                stresses[k] = by_step[int(step)]
    return Cp2kMdRun(
        steps=steps,
        times=times,
        symbols=symbols,
        positions=positions,
        forces=forces,
        energies=energies,
        temperatures=temperatures,
        conserved=conserved,
        unconverged=unconverged,
        stresses=stresses,
    )


def merge_runs(runs: list[Cp2kMdRun]) -> Cp2kMdRun:
    """Join consecutive runs of one MD (restarts) by step number.

    A run that starts at step ``s`` supersedes every frame of the earlier runs from step ``s`` on: a restart after
    the walltime continues where the last run stopped, and a run re-done from its own start (the SCF ladder of
    ``ilmlff.cp2k.base``) replaces the failed run completely, so no frame of a run that went on after an
    unconverged step survives past the point where the re-run took over.

    :raises ValueError: if ``runs`` is empty or the runs hold other atoms.
    """
    if not runs:
        raise ValueError('no CP2K MD run to merge')
    chosen: dict[int, tuple[int, int]] = {}
    for r, run in enumerate(runs):
        if run.symbols != runs[0].symbols:
            raise ValueError(f'restart {r} of the MD holds other atoms than the first run')
        if len(run.steps):
            start = int(run.steps[0])
            chosen = {step: where for step, where in chosen.items() if step < start}
        for k, step in enumerate(run.steps):
            chosen[int(step)] = (r, k)
    order = sorted(chosen)

    def take(name: str) -> np.ndarray:
        return np.asarray([getattr(runs[r], name)[k] for r, k in (chosen[s] for s in order)])

    return Cp2kMdRun(
        steps=np.asarray(order, dtype=np.int64),
        times=take('times'),
        symbols=list(runs[0].symbols),
        positions=take('positions'),
        forces=take('forces'),
        energies=take('energies'),
        temperatures=take('temperatures'),
        conserved=take('conserved'),
        unconverged=take('unconverged').astype(bool),
        stresses=take('stresses').reshape(-1, 3, 3),
    )


def after_first_unconverged(run: Cp2kMdRun) -> np.ndarray:
    """``(T,)`` bool: the steps at or after the first step whose SCF did not converge (all False if none did)."""
    bad = np.asarray(run.unconverged, dtype=bool)
    return np.cumsum(bad) > 0


def labelled_steps(run: Cp2kMdRun) -> np.ndarray:
    """``(T,)`` bool: the steps that give a label: before the first unconverged step (a trajectory propagated with
    unconverged forces is not a sample of the level of theory), with finite energy and forces."""
    finite = np.isfinite(run.energies) & np.isfinite(run.forces).all(axis=(1, 2))
    return ~after_first_unconverged(run) & finite


def step_perturbations(run: Cp2kMdRun, index: t.Sequence[int]) -> list[dict[str, t.Any]]:
    """The ``perturbation`` record of each step in ``index``: generator ``cp2k_aimd``, step, time [fs] and the
    instantaneous temperature [K] (``None`` if unknown)."""
    return [
        {
            'generator': 'cp2k_aimd',
            'step': int(run.steps[k]),
            'time_fs': float(run.times[k]),
            'instantaneous_temperature': None if math.isnan(run.temperatures[k]) else float(run.temperatures[k]),
        }
        for k in index
    ]


def aimd_summary(
    run: Cp2kMdRun, n_atoms: int, *, n_runs: int, temperature: float | None, level_of_theory: str
) -> dict[str, t.Any]:
    """Summary of a CP2K AIMD: steps printed and labelled, unconverged and unlabelled steps, temperature
    statistics [K], drift of the conserved quantity [meV/atom/ps] and the mean potential energy [eV].

    :param n_atoms: atoms of the system. :param n_runs: runs merged. :param temperature: K, the thermostat target.
    :raises ValueError: no step gives a label.
    """
    good = labelled_steps(run)
    if not good.any():
        raise ValueError('no MD step has a converged SCF with energy and forces')
    finite_t = run.temperatures[good][np.isfinite(run.temperatures[good])]
    conserved = run.conserved[good]
    drift = None
    if np.isfinite(conserved).sum() > 1 and run.times[good][-1] > run.times[good][0]:
        drift = float((conserved[-1] - conserved[0]) / n_atoms / (run.times[good][-1] - run.times[good][0]) * 1000)
    return {
        'n_steps_printed': len(run.steps),
        'n_frames': int(good.sum()),
        'first_step': int(run.steps[0]),
        'last_step': int(run.steps[-1]),
        'time_fs': [float(run.times[0]), float(run.times[-1])],
        'unconverged_steps': [int(s) for s in run.steps[run.unconverged]],
        'first_unconverged_step': int(run.steps[run.unconverged][0]) if run.unconverged.any() else None,
        'n_steps_after_unconverged': int((after_first_unconverged(run) & ~run.unconverged).sum()),
        'steps_without_labels': [int(s) for s in run.steps[~good & ~after_first_unconverged(run)]],
        'n_frames_with_stress': int(np.isfinite(run.stresses[good]).all(axis=(1, 2)).sum()),
        'n_runs': n_runs,
        'temperature_mean': float(finite_t.mean()) if finite_t.size else None,
        'temperature_std': float(finite_t.std()) if finite_t.size else None,
        'temperature_target': temperature,
        'conserved_drift_meV_per_atom_per_ps': drift,
        'potential_energy_mean_eV': float(run.energies[good].mean()),
        'level_of_theory': level_of_theory,
        'units': {
            'energy': 'eV',
            'forces': 'eV/Angstrom',
            'positions': 'Angstrom',
            'time': 'fs',
            'stress': 'eV/Angstrom^3',
        },
    }
