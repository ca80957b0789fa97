"""The contract between the daemon and the compute-node runner: settings, parameters, outputs, exit statuses.

This is the only part of :mod:`aiida_ilmlff.runner` that daemon-side code (the ``ilmlff.md`` and
``ilmlff.evaluate`` CalcJobs, their parsers, the work chains) imports. It imports no AiiDA, ASE, torch, mace,
deepmd or TensorFlow; only the standard library and numpy. The engine (:mod:`~aiida_ilmlff.runner.md`,
:mod:`~aiida_ilmlff.runner.evaluate`, :mod:`~aiida_ilmlff.runner.integrators`,
:mod:`~aiida_ilmlff.runner.guards`, :mod:`~aiida_ilmlff.runner.calculators`) implements it.

``ilmlff-runner md md.json``
----------------------------

Settings (``md.json``, written by the CalcJob with :func:`md_settings`)::

    {
      "format": "ilmlff-md-settings", "version": 1, "engine": "ase",
      "structure": "structure.extxyz",   # extended XYZ, ``mol_id`` per atom, ``molecules`` in the comment
      "models": [{"key": "model_0", "path": "model_0.model", "architecture": "mace", "dtype": "float64"}, ...],
      "parameters": {...},               # the MD parameters: PARAMETERS, checked by validate_parameters
      "restart": null,                   # or a checkpoint JSON written by an earlier run
      "threads": 1, "device": "cpu",
      "max_wall_s": null,                # stop cleanly (exit 10) before this many seconds of wall time
      "bond_reference": null             # or a checkpoint of an earlier run: the bond guard keeps its bonds
    }

Model 0 drives the dynamics; the others (a committee) are evaluated on every saved frame. Outputs
(:data:`MD_OUTPUTS`, in the working directory):

- ``trajectory.h5``: every ``traj_every`` steps, the HDF5 format of :mod:`aiida_ilmlff.analysis.trajectory`
  (time fs, unwrapped positions Å, cell Å, potential energy eV, velocities Å/fs with ``save_velocities``;
  observables ``temperature`` K and, for a committee, ``max_force_deviation`` eV/Å).
- ``thermo.csv``: every ``thermo_every`` steps, the columns :data:`THERMO_COLUMNS` (units in the names;
  pressure = virial + ideal gas).
- ``deviation.csv`` (committee only), one row per saved frame, the columns :data:`DEVIATION_COLUMNS`:
  max/min/avg over atoms of the per-atom force deviation sqrt(mean_k |F_k - <F>|^2) [eV/Å] (DP-GEN's
  definition) and ``devi_e``, the standard deviation of the model energies over the number of atoms [eV/atom].
- ``checkpoint.json`` (format :data:`CHECKPOINT_FORMAT`): positions Å, velocities Å/fs, cell, step, time fs,
  integrator state, V0 [Å^3], the ``bond`` guard's bonds (``bonds``: pairs of atom indices, ``bond_lengths_A``:
  their lengths in the starting frame); after an early stop it holds the last good saved frame.
- ``final.extxyz``: the checkpoint's structure, with ``mol_id`` and momenta; ``failure.extxyz``: the state
  that tripped a guard.
- ``status.json``: ``status`` (one of :data:`MD_STATUSES`), ``exit_status``, ``reason``, steps done, the
  guard that tripped (``guard``: ``name``, ``step``, ``time_fs``, ``value``, ``threshold``, ``atoms``, ``message``;
  the ``bond`` guard adds ``bond``: atom indices ``i``/``j``, ``elements``, ``molecule`` index and ``species``
  name, ``length_A``, ``reference_length_A``, ``stretch``), ``bond_guard`` (bonds watched, threshold, or why
  off), timings.

Exit statuses: :data:`EXIT_OK` 0 completed, :data:`EXIT_BAD_INPUT` 2, :data:`EXIT_MODEL_LOAD` 3 (a model
cannot be loaded), :data:`EXIT_CALCULATOR_ERROR` 4, :data:`EXIT_WALLTIME` 10 (``max_wall_s`` or
SIGTERM/SIGUSR1/SIGINT), 11-16 a guard (:data:`GUARDS`, each mapped to an ``ilmlff.md`` exit code 500-505).

``ilmlff-runner evaluate evaluate.json``
----------------------------------------

Settings (``evaluate.json``, written with :func:`evaluate_settings`)::

    {
      "frames": "frames.xyz",            # extended XYZ, read with ase.io.read(':')
      "models": [{"key": "model_0", "path": "models/model_0.model", "architecture": "mace",
                  "dtype": "float64"}, ...],
      "device": "cpu",                   # cpu | cuda (MACE; DeePMD uses the device its build finds)
      "output": "predictions.npz",
      "summary": "evaluate_summary.json",
      "threads": 2,                      # optional: torch threads (MACE); absent: as the environment sets them
      "batch_size": 8                    # optional (default EVALUATE_BATCH_SIZE): frames per model call (MACE:
                                         # one batched graph of frames of any sizes; DeePMD: frames of one atom
                                         # ordering); 1: frame by frame through each model's ASE calculator
    }

Outputs (:data:`EVALUATE_OUTPUTS`): ``predictions.npz`` (no pickle) with the arrays :data:`PREDICTION_ARRAYS`:
``energy`` (n_models, n_frames) eV, ``forces`` (n_models, n_atoms_total, 3) eV/Å (frames concatenated),
``stress`` (n_models, n_frames, 3, 3) eV/Å^3 (ASE sign; nan for frames not periodic in all three directions),
``n_atoms`` (n_frames,), ``numbers`` (n_atoms_total,), ``model_keys`` (n_models,); and
``evaluate_summary.json``: per model its architecture, wall time ``seconds`` (loading excluded) and
``atom_frames_per_second``; ``n_frames``, ``n_atoms``, ``batch_size`` and the package ``versions``. Exit statuses:
:data:`EXIT_OK`, :data:`EXIT_BAD_INPUT` (unreadable settings, ``batch_size`` not an integer >= 1),
:data:`EXIT_MODEL_LOAD` (a model cannot be loaded or evaluated).
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

__all__ = (
    'ARCHITECTURES',
    'BOND_PERCEPTION_SCALE',
    'CHECKPOINT_FORMAT',
    'DEVIATION_COLUMNS',
    'DEVICES',
    'DTYPES',
    'ENSEMBLES',
    'EVALUATE_BATCH_SIZE',
    'EVALUATE_OUTPUTS',
    'EXIT_BAD_INPUT',
    'EXIT_CALCULATOR_ERROR',
    'EXIT_MODEL_LOAD',
    'EXIT_OK',
    'EXIT_WALLTIME',
    'GUARDS',
    'GUARD_DEFAULTS',
    'INITIAL_VELOCITIES',
    'MAX_TIMESTEP_FS',
    'MD_OUTPUTS',
    'MD_SETTINGS_FORMAT',
    'MD_STATUSES',
    'PARAMETERS',
    'PREDICTION_ARRAYS',
    'REQUIRED_PARAMETERS',
    'THERMOSTATS',
    'THERMO_COLUMNS',
    'Guard',
    'Parameter',
    'broken_bond',
    'evaluate_settings',
    'guard_for_exit_status',
    'md_settings',
    'resolve_parameters',
    'validate_guards',
    'validate_parameters',
)

#: Model architectures the runner loads (MACE ``.model`` through torch, DeePMD frozen ``.pb`` through TensorFlow).
ARCHITECTURES = ('mace', 'deepmd')
#: Devices of the runner (``cuda`` applies to MACE; DeePMD uses the device its TensorFlow build finds).
DEVICES = ('cpu', 'cuda')
#: Floating-point precisions of MACE evaluation.
DTYPES = ('float32', 'float64')

# ---------------------------------------------------------------------------------------------- exit statuses

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_MODEL_LOAD = 3
EXIT_CALCULATOR_ERROR = 4
EXIT_WALLTIME = 10

# ---------------------------------------------------------------------------------------------- MD files

MD_SETTINGS_FORMAT = 'ilmlff-md-settings'
CHECKPOINT_FORMAT = 'ilmlff-md-checkpoint'

#: Output file names of ``ilmlff-runner md``, relative to the working directory.
MD_OUTPUTS = {
    'trajectory': 'trajectory.h5',
    'thermo': 'thermo.csv',
    'deviation': 'deviation.csv',
    'checkpoint': 'checkpoint.json',
    'final': 'final.extxyz',
    'status': 'status.json',
    'failure': 'failure.extxyz',
}
#: Values of ``status`` in ``status.json``: still running (or killed), all steps done, stopped for the wall
#: time, stopped by a guard, failed (exit status 2, 3 or 4).
MD_STATUSES = ('running', 'completed', 'walltime', 'guard', 'error')

#: Columns of ``thermo.csv`` (units in the names).
THERMO_COLUMNS = (
    'step',
    'time_fs',
    'temperature_K',
    'potential_energy_eV',
    'kinetic_energy_eV',
    'total_energy_eV',
    'pressure_bar',
    'volume_A3',
    'density_g_cm3',
)
#: Columns of ``deviation.csv``: force deviations in eV/Å, ``devi_e`` in eV/atom.
DEVIATION_COLUMNS = ('step', 'time_fs', 'max_devi_f', 'min_devi_f', 'avg_devi_f', 'devi_e')

# ---------------------------------------------------------------------------------------------- evaluate files

#: Default output file names of ``ilmlff-runner evaluate`` (the settings may name others).
EVALUATE_OUTPUTS = {'predictions': 'predictions.npz', 'summary': 'evaluate_summary.json'}
#: Default frames per model call of ``ilmlff-runner evaluate`` (``batch_size`` of the settings; 1: frame by frame).
EVALUATE_BATCH_SIZE = 8
#: Arrays of ``predictions.npz``.
PREDICTION_ARRAYS = ('energy', 'forces', 'stress', 'n_atoms', 'numbers', 'model_keys')

# ---------------------------------------------------------------------------------------------- guards


@dataclasses.dataclass(frozen=True)
class Guard:
    """One physics guard of the MD: its name, the runner's exit status and the ``ilmlff.md`` exit code it maps to.

    The checks themselves are :class:`aiida_ilmlff.runner.guards.GuardChecker`.
    """

    name: str
    runner_status: int
    exit_status: int
    exit_label: str
    message: str


#: The guards, in the order they are checked. Thresholds: :data:`GUARD_DEFAULTS`.
#:
#: =================  ======================================  ==============  ======  ===============================
#: guard              trips when                              default         runner  ``ilmlff.md`` exit code
#: =================  ======================================  ==============  ======  ===============================
#: ``non_finite``     energy, a force or a position is NaN    always on       11      500 ``ERROR_NON_FINITE``
#:                    or infinite
#: ``max_force``      any \\|F_i\\| > threshold               20 eV/Å         12      501 ``ERROR_FORCE_TOO_LARGE``
#: ``temperature``    T > factor x target temperature         5               13      502 ``ERROR_TEMPERATURE_TOO_HIGH``
#: ``min_distance``   two atoms closer than threshold         0.5 Å           14      503 ``ERROR_ATOMS_TOO_CLOSE``
#:                    (minimum image)
#: ``volume``         \\|V / V0 - 1\\| > threshold (V0: the   0.5 (50 %)      15      504 ``ERROR_VOLUME_CHANGE``
#:                    volume at step 0 of the simulation)
#: ``bond``           a covalent bond of the starting frame   1.5 (x its      16      505 ``ERROR_BOND_BROKEN``
#:                    is longer than threshold x its length   starting
#:                    in that frame (minimum image)           length)
#: =================  ======================================  ==============  ======  ===============================
#:
#: The ``bond`` guard: the bonds are the pairs of one molecule (``mol_id`` of the structure) closer than
#: :data:`BOND_PERCEPTION_SCALE` x the sum of their covalent radii (ASE) in the starting frame of the
#: simulation (step 0; a restart takes them and their lengths from the checkpoint). A stretch past
#: ``max_bond_stretch`` means a molecule came apart (dissociated), not a thermal vibration: a C-H bond at 600 K
#: fluctuates by a few per cent. Without ``mol_id`` the guard is off (``status.json`` says so).
GUARDS: dict[str, Guard] = {
    guard.name: guard
    for guard in (
        Guard('non_finite', 11, 500, 'ERROR_NON_FINITE', 'The energy, a force or a position became NaN or infinite.'),
        Guard('max_force', 12, 501, 'ERROR_FORCE_TOO_LARGE', 'An atomic force exceeded the `max_force_eV_A` guard.'),
        Guard(
            'temperature',
            13,
            502,
            'ERROR_TEMPERATURE_TOO_HIGH',
            'The temperature exceeded `max_temperature_factor` times the target temperature.',
        ),
        Guard(
            'min_distance', 14, 503, 'ERROR_ATOMS_TOO_CLOSE', 'Two atoms came closer than the `min_distance_A` guard.'
        ),
        Guard(
            'volume',
            15,
            504,
            'ERROR_VOLUME_CHANGE',
            'The cell volume changed by more than `max_volume_change` from its initial value.',
        ),
        Guard(
            'bond',
            16,
            505,
            'ERROR_BOND_BROKEN',
            'A covalent bond of the starting structure stretched past `max_bond_stretch` times its starting length: '
            'a molecule came apart.',
        ),
    )
}

#: Two atoms of one molecule are bonded (for the ``bond`` guard) when closer than this factor times the sum of
#: their covalent radii in the starting frame; the same criterion as
#: :data:`aiida_ilmlff.systems.checks.BOND_SCALE` (box checks) and :mod:`aiida_ilmlff.sampling.molecules`.
BOND_PERCEPTION_SCALE = 1.2

#: Default thresholds: the keys of the ``guards`` block of the MD parameters (``null`` switches a guard off);
#: ``distance_every``: steps between two checks of the minimum distance; ``bond_every``: steps between two checks
#: of the bonds (both are also checked on every saved frame, so no saved frame escapes them).
GUARD_DEFAULTS: dict[str, float | int | None] = {
    'max_force_eV_A': 20.0,
    'max_temperature_factor': 5.0,
    'min_distance_A': 0.5,
    'max_volume_change': 0.5,
    'max_bond_stretch': 1.5,
    'distance_every': 1,
    'bond_every': 1,
}


def broken_bond(status: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
    """The bond that tripped the ``bond`` guard, from a run's ``status.json`` (``output_parameters``), or ``None``.

    :returns: ``bond`` of the guard (``i``, ``j``, ``elements``, ``molecule``, ``species``, ``length_A``,
        ``reference_length_A``, ``stretch``, ``label``) with the guard's ``step``, ``time_fs`` and ``threshold``
        (the ``max_bond_stretch`` in force).
    """
    guard = (status or {}).get('guard') or {}
    if guard.get('name') != 'bond' or not isinstance(guard.get('bond'), dict):
        return None
    return {
        **guard['bond'],
        'step': guard.get('step'),
        'time_fs': guard.get('time_fs'),
        'threshold': guard.get('threshold'),
    }


def guard_for_exit_status(status: int) -> Guard | None:
    """The guard whose runner exit status is ``status``, or ``None``."""
    for guard in GUARDS.values():
        if guard.runner_status == status:
            return guard
    return None


def validate_guards(value: t.Any) -> list[str]:
    """Error messages for a ``guards`` block (empty when it is valid); messages name ``parameters.guards.<key>``."""
    if not isinstance(value, dict):
        return [f'`parameters.guards` must be a dict, got {type(value).__name__}']
    errors = []
    unknown = sorted(set(value) - set(GUARD_DEFAULTS))
    if unknown:
        errors.append(f'`parameters.guards`: unknown keys {unknown}; known: {sorted(GUARD_DEFAULTS)}')
    for key in ('max_force_eV_A', 'max_temperature_factor', 'min_distance_A', 'max_volume_change'):
        if key not in value or value[key] is None:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
            errors.append(f'`parameters.guards.{key}` must be a positive number or null (off), got {number!r}')
    stretch = value.get('max_bond_stretch')
    if stretch is not None:
        if isinstance(stretch, bool) or not isinstance(stretch, (int, float)) or not math.isfinite(stretch):
            errors.append(f'`parameters.guards.max_bond_stretch` must be a number > 1 or null (off), got {stretch!r}')
        elif stretch <= 1:
            errors.append(
                f'`parameters.guards.max_bond_stretch` must be > 1 (a factor on the starting bond length: 1.5 stops '
                f'a run when a bond is 1.5 times as long as at the start), got {stretch!r}; null switches it off'
            )
    for key in ('distance_every', 'bond_every'):
        if key in value:
            every = value[key]
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                errors.append(f'`parameters.guards.{key}` must be an integer >= 1, got {every!r}')
    return errors


# ---------------------------------------------------------------------------------------------- MD parameters

ENSEMBLES = ('nve', 'nvt', 'npt', 'npt_berendsen')
THERMOSTATS = ('langevin', 'bussi')
INITIAL_VELOCITIES = ('maxwell_boltzmann', 'from_structure', 'zero')
MAX_TIMESTEP_FS = 5.0


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One key of the MD parameters: accepted types, default, bounds, choices and a line of help."""

    types: tuple[type, ...]
    default: t.Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None

    def check(self, name: str, value: t.Any) -> str | None:
        """The error message for ``value`` of key ``name``, or ``None``."""
        label = f'`parameters.{name}`'
        if isinstance(value, bool) and bool not in self.types:
            return f'{label} must be {self._types()}, got a bool'
        if not isinstance(value, self.types) and not (float in self.types and isinstance(value, int)):
            return f'{label} must be {self._types()}, got {type(value).__name__} {value!r}'
        if self.choices is not None and value not in self.choices:
            return f'{label} must be one of {list(self.choices)}, got {value!r}'
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return f'{label} must be finite, got {value!r}'
            if self.minimum is not None:
                if self.exclusive_minimum and value <= self.minimum:
                    return f'{label} must be > {self.minimum}, got {value!r}'
                if value < self.minimum:
                    return f'{label} must be >= {self.minimum}, got {value!r}'
            if self.maximum is not None and value > self.maximum:
                return f'{label} must be <= {self.maximum}, got {value!r}'
        return None

    def _types(self) -> str:
        names = {int: 'an integer', float: 'a number', str: 'a string', bool: 'a bool', dict: 'a dict'}
        return ' or '.join(names.get(kind, kind.__name__) for kind in self.types)


#: The MD parameters (the ``parameters`` of ``md.json`` and of the ``ilmlff.md`` CalcJob): units in the key names.
PARAMETERS: dict[str, Parameter] = {
    'ensemble': Parameter((str,), None, 'nve, nvt, npt (isotropic MTK) or npt_berendsen (required)', ENSEMBLES),
    'steps': Parameter((int,), None, 'total MD steps of the simulation, counted from step 0 (required)', None, 1),
    'timestep_fs': Parameter((float,), 1.0, 'time step in fs, at most 5', None, 0.0, True, MAX_TIMESTEP_FS),
    'temperature_K': Parameter((float,), None, 'target temperature in K (required except for nve)', None, 0.0, True),
    'initial_temperature_K': Parameter(
        (float,), None, 'temperature of the Maxwell-Boltzmann velocities in K (default: temperature_K)', None, 0.0
    ),
    'pressure_bar': Parameter((float,), None, 'target pressure in bar (required for npt and npt_berendsen)'),
    'thermostat': Parameter((str,), 'langevin', 'nvt thermostat: langevin or bussi', THERMOSTATS),
    'friction_per_fs': Parameter((float,), 0.01, 'Langevin friction in 1/fs', None, 0.0, True),
    'tau_t_fs': Parameter(
        (float,), 100.0, 'thermostat time constant in fs (bussi, npt, npt_berendsen)', None, 0.0, True
    ),
    'tau_p_fs': Parameter((float,), 1000.0, 'barostat time constant in fs (npt, npt_berendsen)', None, 0.0, True),
    'compressibility_per_bar': Parameter(
        (float,), 4.57e-5, 'isothermal compressibility in 1/bar (npt_berendsen)', None, 0.0, True
    ),
    'tchain': Parameter((int,), 3, 'Nose-Hoover thermostat chain length (npt)', None, 1),
    'pchain': Parameter((int,), 3, 'barostat chain length (npt)', None, 1),
    'initial_velocities': Parameter(
        (str,), 'maxwell_boltzmann', 'maxwell_boltzmann, from_structure (its momenta) or zero', INITIAL_VELOCITIES
    ),
    'seed': Parameter((int,), 0, 'seed of the initial velocities and of the stochastic thermostats', None, 0),
    'traj_every': Parameter((int,), 10, 'steps between saved trajectory frames', None, 1),
    'thermo_every': Parameter((int,), 10, 'steps between thermo rows', None, 1),
    'checkpoint_every': Parameter((int,), 1000, 'steps between checkpoints (a multiple of traj_every)', None, 1),
    'save_velocities': Parameter((bool,), False, 'store velocities in the trajectory'),
    'traj_dtype': Parameter((str,), 'float32', 'storage type of trajectory positions', DTYPES),
    'dtype': Parameter((str,), None, 'MACE default_dtype (default: the model file dtype, else float64)', DTYPES),
    'guards': Parameter((dict,), None, 'guard thresholds, see GUARDS and GUARD_DEFAULTS'),
}
REQUIRED_PARAMETERS = ('ensemble', 'steps')


def validate_parameters(parameters: t.Any) -> list[str]:
    """All problems of an MD ``parameters`` mapping, as messages naming ``parameters.<key>`` (empty if valid)."""
    if not isinstance(parameters, dict):
        return [f'`parameters` must be a dict, got {type(parameters).__name__}']
    errors = []
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        errors.append(f'`parameters`: unknown keys {unknown}; known: {sorted(PARAMETERS)}')
    for key in REQUIRED_PARAMETERS:
        if parameters.get(key) is None:
            errors.append(f'`parameters.{key}` is required ({PARAMETERS[key].help})')
    for key, value in parameters.items():
        if key in PARAMETERS and value is not None:
            message = PARAMETERS[key].check(key, value)
            if message:
                errors.append(message)
    if 'guards' in parameters and parameters['guards'] is not None:
        errors += validate_guards(parameters['guards'])
    if errors:
        return errors
    ensemble = parameters['ensemble']
    temperature = parameters.get('temperature_K')
    if ensemble != 'nve' and temperature is None:
        errors.append(f'`parameters.temperature_K` is required for ensemble `{ensemble}`: set the target in K')
    if ensemble in ('npt', 'npt_berendsen') and parameters.get('pressure_bar') is None:
        errors.append(
            f'`parameters.pressure_bar` is required for ensemble `{ensemble}`: set the target pressure in bar '
            '(1.01325 bar = 1 atm)'
        )
    if ensemble in ('nve', 'nvt') and parameters.get('pressure_bar') is not None:
        errors.append(f'`parameters.pressure_bar` is only used by the npt ensembles, not by `{ensemble}`: remove it')
    if ensemble == 'nve' and temperature is None and parameters.get('initial_velocities') == 'maxwell_boltzmann':
        if parameters.get('initial_temperature_K') is None:
            errors.append('`parameters`: nve with Maxwell-Boltzmann velocities needs `initial_temperature_K`')
    traj_every = parameters.get('traj_every', PARAMETERS['traj_every'].default)
    checkpoint_every = parameters.get('checkpoint_every', PARAMETERS['checkpoint_every'].default)
    if checkpoint_every % traj_every:
        errors.append(
            f'`parameters.checkpoint_every` ({checkpoint_every}) must be a multiple of `traj_every` ({traj_every}): '
            'checkpoints are taken on saved frames'
        )
    return errors


def resolve_parameters(parameters: dict) -> dict:
    """``parameters`` with every default filled in (``guards`` too); temperatures and time step as floats.

    :raises ValueError: listing every problem found by :func:`validate_parameters`.
    """
    errors = validate_parameters(parameters)
    if errors:
        raise ValueError('invalid MD parameters:\n- ' + '\n- '.join(errors))
    resolved = {key: spec.default for key, spec in PARAMETERS.items()}
    resolved.update({key: value for key, value in parameters.items() if value is not None})
    resolved['guards'] = {**GUARD_DEFAULTS, **(parameters.get('guards') or {})}
    if resolved['initial_temperature_K'] is None:
        resolved['initial_temperature_K'] = resolved['temperature_K'] or 0.0
    for key in ('timestep_fs', 'temperature_K', 'initial_temperature_K', 'pressure_bar'):
        if resolved[key] is not None:
            resolved[key] = float(resolved[key])
    return resolved


# ---------------------------------------------------------------------------------------------- settings files


def md_settings(
    structure: str,
    models: list[dict[str, t.Any]],
    parameters: dict[str, t.Any],
    *,
    restart: str | None = None,
    engine: str = 'ase',
    threads: int = 1,
    device: str = 'cpu',
    max_wall_s: float | None = None,
    bond_reference: str | None = None,
) -> dict[str, t.Any]:
    """The content of ``md.json`` (see the module docstring); file paths are relative to the job folder.

    :param models: one entry per model, the first drives the dynamics: ``key``, ``path``, ``architecture``
        (:data:`ARCHITECTURES`), ``dtype``; other keys (``uuid``, ``sha256``) are carried along for the parser.
    :param max_wall_s: seconds of wall time after which the runner stops cleanly (exit 10), or ``None``.
    :param bond_reference: a checkpoint of an earlier run of the same box whose ``bonds`` and
        ``bond_lengths_A`` the ``bond`` guard keeps (instead of perceiving them in the structure), or ``None``.
    """
    return {
        'format': MD_SETTINGS_FORMAT,
        'version': 1,
        'engine': engine,
        'structure': structure,
        'models': models,
        'parameters': parameters,
        'restart': restart,
        'threads': int(threads),
        'device': device,
        'max_wall_s': max_wall_s,
        'bond_reference': bond_reference,
    }


def evaluate_settings(
    frames: str,
    models: list[dict[str, t.Any]],
    *,
    device: str = 'cpu',
    output: str = EVALUATE_OUTPUTS['predictions'],
    summary: str = EVALUATE_OUTPUTS['summary'],
    threads: int | None = None,
    batch_size: int = EVALUATE_BATCH_SIZE,
) -> dict[str, t.Any]:
    """The content of ``evaluate.json`` (see the module docstring); file paths are relative to the job folder.

    :param models: one entry per model: ``key``, ``path``, ``architecture`` (:data:`ARCHITECTURES`), ``dtype``.
    :param threads: torch intra-op threads of MACE models; ``None`` (the key is left out): as the job's
        environment variables set them.
    :param batch_size: frames per model call (>= 1; 1: frame by frame through the ASE calculators).
    :raises ValueError: ``batch_size`` is not an integer >= 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f'`batch_size` must be an integer >= 1 (frames per model call), got {batch_size!r}')
    settings = {
        'frames': frames,
        'models': models,
        'device': device,
        'output': output,
        'summary': summary,
        'batch_size': batch_size,
    }
    if threads is not None:
        settings['threads'] = int(threads)
    return settings
