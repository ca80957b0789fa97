"""Molecular dynamics with MLFF models through ASE: ``ilmlff-runner md md.json`` (runs on the compute node).

The run loop behind the ``ilmlff.md`` CalcJob. Settings, parameters, output files and exit statuses are
the contract in :mod:`aiida_ilmlff.runner.contract`; the integrators are in
:mod:`~aiida_ilmlff.runner.integrators`, the guards in :mod:`~aiida_ilmlff.runner.guards`, the model loading
in :mod:`~aiida_ilmlff.runner.calculators`.

Initial velocities: Maxwell-Boltzmann at ``initial_temperature_K`` (default ``temperature_K``) from ``seed``,
zero centre-of-mass momentum, rescaled to that temperature exactly. ``steps`` counts the whole simulation;
a run restarted from a checkpoint at step k runs steps k+1 .. ``steps`` (strides count from the restart). On
any early stop the checkpoint holds the last good *saved frame*, so a restart resumes on the trajectory's
time grid. Outputs are written as the run goes (trajectory frames in blocks of :data:`FRAME_BLOCK`).

This module imports numpy only at import time; ASE, torch, mace, deepmd and tensorflow load when a run starts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import pathlib
import signal
import sys
import time
import traceback
import typing as t

import numpy as np

from aiida_ilmlff.common.units import AMU_A3_TO_G_CM3

from .contract import (
    CHECKPOINT_FORMAT,
    DEVIATION_COLUMNS,
    EXIT_BAD_INPUT,
    EXIT_CALCULATOR_ERROR,
    EXIT_MODEL_LOAD,
    EXIT_OK,
    EXIT_WALLTIME,
    MD_OUTPUTS,
    THERMO_COLUMNS,
    resolve_parameters,
)
from .guards import BondWatch, GuardChecker, GuardFailure
from .integrators import PASS_FORCES, integrator_state, make_integrator, restore_integrator_state, uses_fixcom

__all__ = ('FRAME_BLOCK', 'InputError', 'MDRun', 'load_settings', 'main', 'run_md')

#: Saved frames queued in memory before one block write to the HDF5 file (also written at every checkpoint).
FRAME_BLOCK = 20

# ---------------------------------------------------------------------------------------------- small files


def _write_json(path: pathlib.Path, data: dict, indent: int | None = 1) -> None:
    """Write ``data`` atomically (temporary file, then rename); ``indent=None`` for the fast compact form."""
    temporary = path.with_name(path.name + '.tmp')
    temporary.write_text(json.dumps(data, indent=indent, allow_nan=True))
    temporary.replace(path)


class _CsvLog:
    """A plain CSV file written row by row (``%.10g``)."""

    def __init__(self, path: pathlib.Path, columns: t.Sequence[str]) -> None:
        self.handle = open(path, 'w', encoding='utf-8')
        self.handle.write(','.join(columns) + '\n')
        self.rows = 0

    def write(self, step: int, *values: float) -> None:
        self.handle.write(f'{step},' + ','.join(f'{value:.10g}' for value in values) + '\n')
        self.rows += 1

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


# ---------------------------------------------------------------------------------------------- the run


@dataclasses.dataclass
class Snapshot:
    """A good MD state (the last saved frame): what a checkpoint holds."""

    step: int
    time_fs: float
    positions: np.ndarray
    momenta: np.ndarray
    cell: np.ndarray
    integrator: dict


class InputError(ValueError):
    """A problem with the settings, the structure or the checkpoint (exit status 2)."""


def _read_structure(path: pathlib.Path):
    from ase.io import read

    atoms = read(str(path), format='extxyz')
    if not all(atoms.pbc):
        raise InputError(f'{path}: the MD runner needs a 3D periodic structure (pbc = {atoms.pbc.tolist()})')
    if atoms.cell.volume <= 0:
        raise InputError(f'{path}: the cell has no volume')
    return atoms


def _molecule_arrays(atoms) -> tuple[np.ndarray | None, list[str] | None]:
    mol_id = atoms.arrays.get('mol_id')
    molecules = atoms.info.get('molecules')
    if isinstance(molecules, str):
        molecules = json.loads(molecules) if molecules.startswith('[') else molecules.split()
    if mol_id is not None:
        mol_id = np.asarray(mol_id, dtype=np.int64)
        used = np.unique(mol_id)
        if used.min() < 0 or len(used) != used.max() + 1:
            mol_id = np.searchsorted(used, mol_id).astype(np.int64)
            molecules = None
        if molecules is not None and len(molecules) != int(mol_id.max()) + 1:
            molecules = None
    return mol_id, (list(molecules) if molecules is not None else None)


class MDRun:
    """One MD run as described by the settings JSON (see the contract); :meth:`run` returns the exit status."""

    def __init__(self, settings: dict, workdir: pathlib.Path, calculators: t.Sequence | None = None) -> None:
        self.settings = settings
        self._given_calculators = list(calculators) if calculators is not None else None
        self.workdir = workdir
        self.outputs = {key: workdir / name for key, name in MD_OUTPUTS.items()}
        self.started = time.perf_counter()
        self.stop_signal: int | None = None
        self.status: dict[str, t.Any] = {'status': 'running', 'exit_status': None}

    # -- helpers

    def _on_signal(self, signum, _frame) -> None:
        self.stop_signal = signum

    def _write_status(self, **updates: t.Any) -> None:
        self.status.update(updates)
        self.status['wall_time_s'] = time.perf_counter() - self.started
        _write_json(self.outputs['status'], self.status)

    def _checkpoint(self, snapshot: Snapshot) -> None:
        from ase import units

        masses = self.atoms.get_masses()[:, None]
        _write_json(
            self.outputs['checkpoint'],
            {
                'format': CHECKPOINT_FORMAT,
                'version': 1,
                'step': snapshot.step,
                'time_fs': snapshot.time_fs,
                'timestep_fs': self.parameters['timestep_fs'],
                'ensemble': self.parameters['ensemble'],
                'numbers': self.atoms.numbers.tolist(),
                'masses': self.atoms.get_masses().tolist(),
                'positions': snapshot.positions.tolist(),
                'velocities': (snapshot.momenta / masses * units.fs).tolist(),
                'cell': snapshot.cell.tolist(),
                'mol_id': None if self.mol_id is None else self.mol_id.tolist(),
                'molecules': self.molecules,
                'reference_volume_A3': self.reference_volume,
                **(self.bonds.to_checkpoint() if self.bonds is not None else {}),
                'integrator': snapshot.integrator,
                'units': {'positions': 'angstrom', 'velocities': 'angstrom/fs', 'time': 'fs', 'masses': 'amu'},
            },
            indent=None,
        )

    def _snapshot(self, step: int, time_fs: float) -> Snapshot:
        return Snapshot(
            step,
            time_fs,
            self.atoms.get_positions(),
            self.atoms.get_momenta(),
            np.array(self.atoms.get_cell()),
            integrator_state(self.dyn),
        )

    def _write_structure(self, path: pathlib.Path, snapshot: Snapshot | None, step: int, time_fs: float) -> None:
        from ase.io import write

        atoms = self.atoms.copy()
        atoms.set_constraint()
        atoms.calc = None
        if snapshot is not None:
            atoms.set_cell(snapshot.cell, scale_atoms=False)
            atoms.set_positions(snapshot.positions)
            atoms.set_momenta(snapshot.momenta)
        if self.mol_id is not None:
            atoms.arrays['mol_id'] = self.mol_id
        for key in list(atoms.info):
            if key not in ('molecules',):
                del atoms.info[key]
        if self.molecules is not None:
            atoms.info['molecules'] = ' '.join(self.molecules)
        atoms.info['step'] = step
        atoms.info['time_fs'] = time_fs
        write(str(path), atoms, format='extxyz')

    # -- set-up

    def _setup(self) -> None:
        from ase import units
        from ase.md.velocitydistribution import Stationary, thermalize_momenta

        settings = self.settings
        try:
            self.parameters = resolve_parameters(dict(settings.get('parameters') or {}))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        parameters = self.parameters
        if not settings.get('models'):
            raise InputError('the settings name no model')
        self.atoms = atoms = _read_structure(self.workdir / settings['structure'])
        self.mol_id, self.molecules = _molecule_arrays(atoms)
        atoms.set_constraint()
        if uses_fixcom(parameters):
            from ase.constraints import FixCom

            atoms.set_constraint(FixCom())
        restart = settings.get('restart')
        self.checkpoint = None
        if restart:
            self.checkpoint = checkpoint = json.loads((self.workdir / restart).read_text())
            if checkpoint.get('format') != CHECKPOINT_FORMAT:
                raise InputError(f'{restart} is not an {CHECKPOINT_FORMAT} file')
            if checkpoint['numbers'] != atoms.numbers.tolist():
                raise InputError(f'{restart}: its atoms differ from those of the structure')
            atoms.set_cell(np.array(checkpoint['cell']), scale_atoms=False)
            atoms.set_positions(np.array(checkpoint['positions']))
            masses = atoms.get_masses()[:, None]
            atoms.set_momenta(np.array(checkpoint['velocities']) / units.fs * masses)
            if checkpoint.get('mol_id') is not None:
                self.mol_id = np.asarray(checkpoint['mol_id'], dtype=np.int64)
                self.molecules = checkpoint.get('molecules')
            self.first_step = int(checkpoint['step'])
            self.first_time = float(checkpoint['time_fs'])
            self.reference_volume = float(checkpoint['reference_volume_A3'])
        else:
            self.first_step, self.first_time = 0, 0.0
            self.reference_volume = float(atoms.get_volume())
            mode = parameters['initial_velocities']
            temperature = parameters['initial_temperature_K']
            if mode == 'maxwell_boltzmann' and temperature > 0:
                velocity_rng = np.random.default_rng([parameters['seed'], 0])
                thermalize_momenta(atoms, temperature_K=temperature, rng=velocity_rng)
                Stationary(atoms)
                atoms.set_momenta(atoms.get_momenta() * math.sqrt(temperature / atoms.get_temperature()))
            elif mode == 'zero' or (mode == 'maxwell_boltzmann' and temperature == 0):
                atoms.set_momenta(np.zeros((len(atoms), 3)))
            elif not atoms.has('momenta'):
                raise InputError('`initial_velocities` is `from_structure` but the structure has no momenta')
        if self.first_step >= parameters['steps']:
            raise InputError(
                f'the checkpoint is at step {self.first_step}, not before `steps` = {parameters["steps"]}: '
                'nothing to do'
            )
        self.timestep_fs = parameters['timestep_fs']
        self.total_mass = float(atoms.get_masses().sum())
        self._setup_bonds()

    def _setup_bonds(self) -> None:
        """The bonds of the ``bond`` guard: from the checkpoint of a restart, else from the ``bond_reference``
        checkpoint of the settings, else perceived in the starting frame."""
        self.bonds: BondWatch | None = None
        if self.parameters['guards']['max_bond_stretch'] is None:
            self.bond_guard = {'off': '`max_bond_stretch` is null'}
            return
        if self.mol_id is None:
            self.bond_guard = {'off': 'the structure has no `mol_id` (molecule of every atom)'}
            return
        checkpoint, source = self.checkpoint or {}, 'checkpoint'
        if checkpoint.get('bonds') is None and self.settings.get('bond_reference'):
            name = self.settings['bond_reference']
            checkpoint, source = json.loads((self.workdir / name).read_text()), 'bond_reference'
            if checkpoint.get('format') != CHECKPOINT_FORMAT:
                raise InputError(f'{name} (bond_reference) is not an {CHECKPOINT_FORMAT} file')
            if checkpoint.get('numbers') != self.atoms.numbers.tolist():
                raise InputError(f'{name} (bond_reference): its atoms differ from those of the structure')
        if checkpoint.get('bonds') is not None:
            self.bonds = BondWatch(
                np.array(checkpoint['bonds'], dtype=np.int64).reshape(-1, 2),
                checkpoint['bond_lengths_A'],
                self.atoms.numbers,
                self.mol_id,
                self.molecules,
            )
        else:
            self.bonds = BondWatch.from_frame(
                self.atoms.numbers, self.atoms.positions, self.atoms.cell.array, self.mol_id, self.molecules
            )
            source = f'frame at step {self.first_step}'
        self.bond_guard = {
            'bonds': len(self.bonds.pairs),
            'max_bond_stretch': self.parameters['guards']['max_bond_stretch'],
            'bond_every': self.parameters['guards']['bond_every'],
            'reference': source,
        }

    def _load_models(self) -> None:
        if self._given_calculators is not None:
            if len(self._given_calculators) != len(self.settings['models']):
                raise InputError('give one calculator per model of the settings')
            self.calculators = self._given_calculators
            return
        from .calculators import configure_threads, load_calculator

        threads = int(self.settings.get('threads') or 1)
        configure_threads(threads)
        device = self.settings.get('device') or 'cpu'
        self.calculators = [
            load_calculator(model, device=device, threads=threads, dtype=self.parameters['dtype'])
            for model in self.settings['models']
        ]

    # -- measurements

    def _state(self, after_step: bool = False) -> tuple[float, np.ndarray, float, float]:
        """Potential energy [eV], raw (unconstrained) forces [eV/Å], kinetic energy [eV] and temperature [K].

        ``after_step``: read the calculator's results directly. Every supported integrator ends its step with a
        force evaluation at the final positions and cell (only momenta change afterwards), so the results are
        current; this saves ASE's comparison of the atoms with the calculator's copy (~0.1 ms for 300 atoms).
        """
        atoms = self.atoms
        results = atoms.calc.results if after_step else {}
        if 'energy' in results and 'forces' in results:
            energy = float(results['energy'])
            forces = np.asarray(results['forces'])
        else:
            energy = float(atoms.get_potential_energy())
            forces = atoms.get_forces(apply_constraint=False)
        kinetic = float(atoms.get_kinetic_energy())
        return energy, forces, kinetic, 2.0 * kinetic / (self.degrees_of_freedom * self.kB)

    def _volume(self) -> float:
        if self.constant_cell:
            return self.initial_volume
        return float(abs(np.linalg.det(self.atoms.cell.array)))

    def _thermo_row(self, step: int, time_fs: float, energy: float, kinetic: float, temperature: float) -> None:
        from ase import units

        volume = self._volume()
        stress = self.atoms.calc.results.get('stress')
        if stress is None:
            try:
                stress = self.atoms.get_stress(voigt=True)
            except Exception:  # a calculator without stress: the column stays NaN
                stress = np.full(6, np.nan)
        stress = np.asarray(stress).ravel()
        trace = stress[0] + stress[1] + stress[2] if stress.size == 6 else np.trace(stress.reshape(3, 3))
        pressure = (-float(trace) / 3.0 + 2.0 * kinetic / (3.0 * volume)) / units.bar
        density = self.total_mass / volume * AMU_A3_TO_G_CM3
        self.thermo.write(step, time_fs, temperature, energy, kinetic, energy + kinetic, pressure, volume, density)

    def _deviation(self, energy: float, forces: np.ndarray) -> tuple[float, float, float, float]:
        all_forces = [forces]
        energies = [energy]
        for calculator in self.calculators[1:]:
            all_forces.append(np.asarray(calculator.get_property('forces', self.atoms), dtype=float))
            energies.append(float(calculator.get_property('energy', self.atoms)))
        stacked = np.stack(all_forces)
        per_atom = np.sqrt(np.mean(np.sum((stacked - stacked.mean(axis=0)) ** 2, axis=2), axis=0))
        devi_e = float(np.std(energies)) / len(self.atoms)
        return float(per_atom.max()), float(per_atom.min()), float(per_atom.mean()), devi_e

    def _save_frame(self, step: int, time_fs: float, energy: float, forces: np.ndarray, temperature: float) -> None:
        """Queue one trajectory frame (and its committee deviation); written in blocks by :meth:`_write_frames`."""
        from ase import units

        frame = {
            'time': time_fs,
            'positions': self.atoms.get_positions(),
            'cell': self.atoms.cell.array.copy(),
            'energy': energy,
            'temperature': temperature,
        }
        if self.deviation is not None:
            values = self._deviation(energy, forces)
            self.deviation.write(step, time_fs, *values)
            frame['max_force_deviation'] = values[0]
        if self.parameters['save_velocities']:
            frame['velocities'] = self.atoms.get_velocities() * units.fs
        self.pending_frames.append(frame)
        if len(self.pending_frames) >= FRAME_BLOCK:
            self._write_frames()

    def _write_frames(self) -> None:
        """Append the queued frames to the trajectory as one block (one HDF5 write per dataset)."""
        frames, self.pending_frames = self.pending_frames, []
        if not frames:
            return
        observables = {'temperature': np.array([f['temperature'] for f in frames])}
        if self.deviation is not None:
            observables['max_force_deviation'] = np.array([f['max_force_deviation'] for f in frames])
        self.writer.append(
            np.array([f['time'] for f in frames]),
            np.stack([f['positions'] for f in frames]),
            np.stack([f['cell'] for f in frames]),
            velocities=np.stack([f['velocities'] for f in frames]) if 'velocities' in frames[0] else None,
            energy=np.array([f['energy'] for f in frames]),
            observables=observables,
        )

    def _flush(self) -> None:
        """Write the queued frames and flush every output file to disk."""
        self._write_frames()
        self.writer.flush()
        self.thermo.flush()
        if self.deviation is not None:
            self.deviation.flush()

    # -- main loop

    def run(self, handle_signals: bool = True) -> int:
        """Run the MD; return the exit status (0 completed, 2, 3, 4, 10, 11-16; see the contract).

        :param handle_signals: stop cleanly on SIGTERM, SIGUSR1 and SIGINT (as for the wall time); the previous
            handlers are put back at the end.
        """
        try:
            self._setup()
        except (InputError, OSError, KeyError, ValueError) as exc:
            return self._fail(EXIT_BAD_INPUT, 'error', f'bad input: {exc}')
        self._write_status(first_step=self.first_step, steps=self.parameters['steps'])
        try:
            self._load_models()
        except Exception as exc:
            return self._fail(EXIT_MODEL_LOAD, 'error', f'cannot load a model: {exc}', traceback.format_exc())
        previous = {}
        if handle_signals:
            for name in ('SIGTERM', 'SIGUSR1', 'SIGINT'):
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    previous[number] = signal.signal(number, self._on_signal)
        try:
            return self._run()
        except Exception as exc:
            snapshot = getattr(self, 'last_good', None)
            if snapshot is not None:
                self._checkpoint(snapshot)
                self._write_structure(self.outputs['final'], snapshot, snapshot.step, snapshot.time_fs)
            return self._fail(EXIT_CALCULATOR_ERROR, 'error', f'MD failed: {exc}', traceback.format_exc())
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            if getattr(self, 'pending_frames', None) and getattr(self, 'writer', None) is not None:
                with contextlib.suppress(Exception):
                    self._write_frames()
            for log in ('writer', 'thermo', 'deviation'):
                handle = getattr(self, log, None)
                if handle is not None:
                    handle.close()

    def _fail(self, exit_status: int, status: str, message: str, details: str | None = None) -> int:
        print(message, file=sys.stderr)
        if details:
            print(details, file=sys.stderr)
        self._write_status(status=status, exit_status=exit_status, reason=message)
        return exit_status

    def _run(self) -> int:
        from ase import units

        from aiida_ilmlff.analysis.trajectory import TrajectoryWriter

        parameters = self.parameters
        atoms = self.atoms
        rng = np.random.default_rng([parameters['seed'], 1])
        atoms.calc = self.calculators[0]
        self.dyn = dyn = make_integrator(atoms, parameters, rng)
        self.degrees_of_freedom = atoms.get_number_of_degrees_of_freedom()
        self.kB = units.kB
        self.constant_cell = parameters['ensemble'] in ('nve', 'nvt')
        self.initial_volume = float(atoms.get_volume())
        # integrators whose step starts from the forces at the current positions take the last step's forces
        # back (no second comparison of the atoms); NPTBerendsen rescales the positions first and MTK has no
        # such argument, so they evaluate the forces themselves
        takes_forces = type(dyn).__name__ in PASS_FORCES
        restored = restore_integrator_state(dyn, (self.checkpoint or {}).get('integrator'))
        target = parameters['temperature_K'] or parameters['initial_temperature_K']
        guards = GuardChecker(parameters['guards'], target, self.reference_volume, self.bonds)
        committee = len(self.calculators) > 1
        observables = {'temperature': 'K'}
        if committee:
            observables['max_force_deviation'] = 'eV/angstrom'
        models = self.settings['models']
        self.writer = TrajectoryWriter(
            self.outputs['trajectory'],
            atoms.numbers,
            atoms.get_masses(),
            self.mol_id,
            self.molecules,
            dtype=parameters['traj_dtype'],
            velocities=parameters['save_velocities'],
            energy=True,
            observables=observables,
            flush_every=10**9,
            overwrite=True,
            metadata={
                'ensemble': parameters['ensemble'],
                'timestep_fs': self.timestep_fs,
                'temperature_K': float('nan') if parameters['temperature_K'] is None else parameters['temperature_K'],
                'pressure_bar': float('nan') if parameters['pressure_bar'] is None else parameters['pressure_bar'],
                'traj_every': parameters['traj_every'],
                'first_step': self.first_step,
                'start_time_fs': self.first_time,
                'models': json.dumps([model.get('key', str(i)) for i, model in enumerate(models)]),
                'engine': 'ase',
            },
        )
        self.pending_frames: list[dict] = []
        self.thermo = _CsvLog(self.outputs['thermo'], THERMO_COLUMNS)
        self.deviation = _CsvLog(self.outputs['deviation'], DEVIATION_COLUMNS) if committee else None

        first, last, dt = self.first_step, parameters['steps'], self.timestep_fs
        traj_every, thermo_every = parameters['traj_every'], parameters['thermo_every']
        checkpoint_every = parameters['checkpoint_every']
        distance_every, bond_every = guards.distance_every, guards.bond_every
        max_wall = self.settings.get('max_wall_s')
        fresh = self.checkpoint is None

        energy, forces, kinetic, temperature = self._state()
        failure = guards.check(
            first, self.first_time, energy, forces, atoms.positions, atoms.cell.array, temperature, self._volume()
        )
        if failure is not None:
            self.last_good = None
            return self._guard_stop(failure, None)
        if fresh:
            self._thermo_row(first, self.first_time, energy, kinetic, temperature)
            self._save_frame(first, self.first_time, energy, forces, temperature)
        self.last_good = self._snapshot(first, self.first_time)
        self._write_status(
            integrator=type(dyn).__name__,
            integrator_state_restored=restored,
            first_time_fs=self.first_time,
            bond_guard=self.bond_guard,
        )
        print(
            f'ilmlff-runner md: {parameters["ensemble"]} ({type(dyn).__name__}), {len(atoms)} atoms, '
            f'steps {first} -> {last}, dt {dt} fs, {len(self.calculators)} model(s)',
            flush=True,
        )
        loop_start = time.perf_counter()
        loop_cpu_start = time.process_time()
        step = first
        stop_reason = 'completed'
        forces_md = None  # the constrained forces an integrator returns, passed back to its next step
        for step in range(first + 1, last + 1):
            forces_md = dyn.step(forces_md) if takes_forces else dyn.step()
            dyn.nsteps += 1
            segment = step - first
            time_fs = self.first_time + segment * dt
            energy, forces, kinetic, temperature = self._state(after_step=True)
            saving = segment % traj_every == 0
            failure = guards.check(
                step,
                time_fs,
                energy,
                forces,
                atoms.positions,
                atoms.cell.array,
                temperature,
                self._volume(),
                check_distance=saving or segment % distance_every == 0,
                check_bonds=saving or segment % bond_every == 0,
            )
            if failure is not None:
                return self._guard_stop(failure, step)
            if segment % thermo_every == 0:
                self._thermo_row(step, time_fs, energy, kinetic, temperature)
            if saving:
                self._save_frame(step, time_fs, energy, forces, temperature)
                self.last_good = self._snapshot(step, time_fs)
                self.thermo.flush()  # the progress monitor reads both: a thermo row comes with its deviation row
                if self.deviation is not None:
                    self.deviation.flush()
                if segment % checkpoint_every == 0:
                    self._flush()
                    self._checkpoint(self.last_good)
                if max_wall is not None and step < last:
                    elapsed = time.perf_counter() - self.started
                    per_block = (time.perf_counter() - loop_start) / segment * traj_every
                    if elapsed + 1.5 * per_block > max_wall:
                        stop_reason = 'walltime'
                        break
            if self.stop_signal is not None:
                stop_reason = 'walltime'
                break
        loop_time = time.perf_counter() - loop_start
        loop_cpu = time.process_time() - loop_cpu_start
        steps_done = step - first
        if stop_reason == 'completed':
            final = self._snapshot(step, self.first_time + steps_done * dt)
        else:
            final = self.last_good
        self._flush()
        self._checkpoint(final)
        self._write_structure(self.outputs['final'], final, final.step, final.time_fs)
        exit_status = EXIT_OK if stop_reason == 'completed' else EXIT_WALLTIME
        reason = 'all steps done'
        if stop_reason == 'walltime':
            reason = (
                f'stopped on signal {self.stop_signal}'
                if self.stop_signal is not None
                else f'stopped before the wall-time limit of {max_wall} s'
            ) + f' at step {step}; checkpoint at step {final.step}'
        self._write_status(
            status=stop_reason,
            exit_status=exit_status,
            reason=reason,
            last_step=step,
            steps_done=steps_done,
            checkpoint_step=final.step,
            checkpoint_time_fs=final.time_fs,
            n_frames=self.writer.n_frames,
            n_thermo=self.thermo.rows,
            loop_time_s=loop_time,
            loop_cpu_s=loop_cpu,
            steps_per_second=steps_done / loop_time if loop_time > 0 else None,
            bond_guard=self._bond_guard_status(),
        )
        print(f'ilmlff-runner md: {stop_reason} at step {step} ({reason})', flush=True)
        return exit_status

    def _guard_stop(self, failure: GuardFailure, step: int | None) -> int:
        """Stop on a tripped guard: flush, write the failing state, checkpoint the last good frame."""
        self._write_structure(self.outputs['failure'], None, failure.step, failure.time_fs)
        snapshot = self.last_good
        if snapshot is not None:
            self._flush()
            self._checkpoint(snapshot)
            self._write_structure(self.outputs['final'], snapshot, snapshot.step, snapshot.time_fs)
        message = f'guard `{failure.guard.name}` tripped: {failure.message}'
        print(f'ilmlff-runner md: {message}', file=sys.stderr, flush=True)
        self._write_status(
            status='guard',
            exit_status=failure.guard.runner_status,
            reason=message,
            guard=failure.to_dict(),
            last_step=step if step is not None else self.first_step,
            steps_done=0 if step is None else step - self.first_step - 1,
            checkpoint_step=None if snapshot is None else snapshot.step,
            checkpoint_time_fs=None if snapshot is None else snapshot.time_fs,
            n_frames=self.writer.n_frames,
            n_thermo=self.thermo.rows,
            bond_guard=self._bond_guard_status(),
        )
        return failure.guard.runner_status

    def _bond_guard_status(self) -> dict:
        """``bond_guard`` of ``status.json``: what is watched, and the checks' count and cost (``check_us``)."""
        status = dict(self.bond_guard)
        if self.bonds is not None:
            status['checks'] = self.bonds.checks
            status['check_s'] = self.bonds.seconds
            status['check_us'] = 1e6 * self.bonds.seconds / self.bonds.checks if self.bonds.checks else None
        return status


def load_settings(path: pathlib.Path) -> dict:
    """The settings JSON at ``path``.

    :raises InputError: unreadable, not a JSON object, or missing ``structure``/``models``.
    """
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f'cannot read the settings {path}: {exc}') from exc
    if not isinstance(settings, dict):
        raise InputError(f'{path}: the settings must be a JSON object')
    missing = [key for key in ('structure', 'models', 'parameters') if key not in settings]
    if missing:
        raise InputError(f'{path}: missing settings {missing}')
    return settings


def run_md(
    settings: dict,
    workdir: str | pathlib.Path = '.',
    handle_signals: bool = True,
    calculators: t.Sequence | None = None,
) -> int:
    """Run the MD of ``settings`` (the ``md.json`` content) in ``workdir``; return the exit status.

    Relative paths in ``settings`` are relative to ``workdir``, where the outputs
    (:data:`~aiida_ilmlff.runner.contract.MD_OUTPUTS`) are written.

    :param calculators: ASE calculators already loaded in this process, one per entry of ``settings['models']``
        (same order), used instead of loading the model files (benchmarks, tests, notebooks).
    """
    return MDRun(settings, pathlib.Path(workdir), calculators).run(handle_signals=handle_signals)


def main(argv: t.Sequence[str] | None = None) -> int:
    """``ilmlff-runner md SETTINGS.json``: run the MD in the folder of the settings file; return the exit status."""
    parser = argparse.ArgumentParser(prog='ilmlff-runner md', description='MLFF molecular dynamics with ASE.')
    parser.add_argument('settings', type=pathlib.Path, help='the settings JSON (see aiida_ilmlff.runner.contract)')
    args = parser.parse_args(argv)
    workdir = args.settings.resolve().parent
    try:
        settings = load_settings(args.settings)
    except InputError as exc:
        print(f'ilmlff-runner md: {exc}', file=sys.stderr)
        status = {'status': 'error', 'exit_status': EXIT_BAD_INPUT, 'reason': str(exc)}
        _write_json(workdir / MD_OUTPUTS['status'], status)
        return EXIT_BAD_INPUT
    return run_md(settings, workdir)


if __name__ == '__main__':
    sys.exit(main())
