"""``ilmlff.md``: molecular dynamics with one or a committee of MLFF models, run by ``ilmlff-runner md``.

The CalcJob writes the structure (extended XYZ with ``mol_id``/``molecules``), copies the model files and an
optional restart checkpoint, and writes ``md.json`` for the runner. The MD parameters, the settings file, the
outputs and their units are the runner's contract (:mod:`aiida_ilmlff.runner.contract`), the only part of the
runner imported here. The ``engine`` input names the MD engine (only ``ase`` so far) so that another engine can
be added without changing the work chains that call this one. Nothing here imports torch, mace, deepmd or
tensorflow.
"""

from __future__ import annotations

import json
import re
import typing as t

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.data.box_atoms import box_atoms
from aiida_ilmlff.data.trajectory import MDTrajectoryData
from aiida_ilmlff.runner.contract import (
    CHECKPOINT_FORMAT,
    DEVICES,
    GUARDS,
    MD_OUTPUTS,
    md_settings,
    validate_parameters,
)

__all__ = ('ENGINES', 'SETTINGS', 'MDCalculation', 'ordered_models', 'structure_elements')

ENGINES = ('ase',)
#: Keys of the ``settings`` Dict: execution options that do not change the physics.
SETTINGS = {
    'threads': 'threads for torch / TensorFlow / OpenMP on the compute node (default 1)',
    'device': 'cpu (default) or cuda (MACE)',
    'max_wall_s': 'stop cleanly after this many seconds of wall time (default: max_wallclock_seconds minus the margin)',
    'walltime_margin_s': 'seconds kept free before max_wallclock_seconds (default: 5 % of it, at least 30 s)',
}


def _natural_key(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', key)]


def ordered_models(models: t.Mapping[str, MLFFModelData]) -> list[tuple[str, MLFFModelData]]:
    """The ``models`` namespace as ``(key, node)`` pairs in natural key order (``model_2`` before ``model_10``).

    The first model drives the dynamics; the others are evaluated on the saved frames (committee deviation).
    """
    return [(key, models[key]) for key in sorted(models, key=_natural_key)]


def structure_elements(structure: orm.Data, frame_index: int | None = None) -> list[str]:
    """Sorted element symbols of a ``StructureData`` or of frame ``frame_index`` of a ``FramesData``."""
    if isinstance(structure, FramesData):
        if frame_index is None:
            return list(structure.elements)
        return sorted(set(structure[frame_index].get_chemical_symbols()))
    return sorted(structure.get_symbols_set())


def validate_parameters_port(value: orm.Dict | None, _) -> str | None:
    """Validate the ``parameters`` input with :func:`aiida_ilmlff.runner.contract.validate_parameters`."""
    if value is None:
        return None
    errors = validate_parameters(value.get_dict())
    if errors:
        return 'invalid `parameters` of ilmlff.md:\n- ' + '\n- '.join(errors)
    return None


def validate_settings(value: orm.Dict | None, _) -> str | None:
    """Validate the ``settings`` input: known keys (:data:`SETTINGS`), positive numbers, a known device."""
    if value is None:
        return None
    settings = value.get_dict()
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        return f'`settings`: unknown keys {unknown}; known: {sorted(SETTINGS)}'
    threads = settings.get('threads', 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        return f'`settings.threads` must be an integer >= 1, got {threads!r}'
    if settings.get('device', 'cpu') not in DEVICES:
        return f'`settings.device` must be {" or ".join(map(repr, DEVICES))}, got {settings["device"]!r}'
    for key in ('max_wall_s', 'walltime_margin_s'):
        number = settings.get(key)
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0):
            return f'`settings.{key}` must be a positive number of seconds, got {number!r}'
    return None


def validate_engine(value: orm.Str | None, _) -> str | None:
    """The ``engine`` must be one of :data:`ENGINES`."""
    if value is not None and value.value not in ENGINES:
        return f'`engine`: unknown MD engine {value.value!r}; available: {list(ENGINES)}'
    return None


def validate_models(value: t.Mapping | None, _) -> str | None:
    """At least one model; every model MACE or DeePMD with known elements."""
    if not value:
        return '`models`: give at least one MLFFModelData (the first, in key order, drives the dynamics)'
    for key, node in value.items():
        if not node.base.attributes.get('elements', None):
            return f'`models.{key}`: the model has no `elements` attribute: create it with MLFFModelData.from_file'
    return None


def validate_inputs(inputs: t.Mapping, ctx) -> str | None:
    """Cross-checks: models cover the structure's elements; ``frame_index`` only with (and within) FramesData."""
    structure = inputs.get('structure')
    frame_index = inputs.get('frame_index')
    if structure is None:
        return None
    if frame_index is not None:
        if not isinstance(structure, FramesData):
            return '`frame_index` is only used when `structure` is a FramesData'
        n_frames = len(structure)
        if not -n_frames <= frame_index.value < n_frames:
            return f'`frame_index` {frame_index.value} is out of range for the {n_frames} frames of `structure`'
    index = None
    if isinstance(structure, FramesData):
        index = -1 if frame_index is None else frame_index.value
    elements = structure_elements(structure, index)
    for key, node in (inputs.get('models') or {}).items():
        covered = set(node.base.attributes.get('elements', None) or [])
        missing = sorted(set(elements) - covered)
        if missing:
            return (
                f'`models.{key}` does not cover the elements {missing} of `structure` '
                f'(model elements: {sorted(covered)}; structure elements: {elements}): use a model trained on them'
            )
    parameters = inputs.get('parameters')
    if parameters is not None and isinstance(structure, orm.StructureData):
        if parameters.get('initial_velocities') == 'from_structure':
            return '`parameters.initial_velocities` is `from_structure` but a StructureData has no velocities'
    restart = inputs.get('restart')
    if restart is not None:
        n_atoms = restart.base.attributes.get('n_atoms', None)
        expected = len(structure[index]) if isinstance(structure, FramesData) else len(structure.sites)
        if n_atoms is not None and n_atoms != expected:
            return f'`restart` holds {n_atoms} atoms but `structure` has {expected}'
    reference = inputs.get('bond_reference')
    if reference is not None:
        expected = len(structure[index]) if isinstance(structure, FramesData) else len(structure.sites)
        if reference.base.attributes.get('format', None) != CHECKPOINT_FORMAT:
            return f'`bond_reference` must be the `checkpoint` output of an ilmlff.md run ({CHECKPOINT_FORMAT})'
        n_atoms = reference.base.attributes.get('n_atoms', None)
        if n_atoms is not None and n_atoms != expected:
            return (
                f'`bond_reference` holds {n_atoms} atoms but `structure` has {expected}: give the checkpoint of a '
                'run of this box'
            )
    return None


class MDCalculation(CalcJob):
    """MD with MLFF models (MACE, DeePMD; a committee for the force deviation) through ``ilmlff-runner md``."""

    _INPUT_FILE = 'md.json'
    _STRUCTURE_FILE = 'structure.extxyz'
    _RESTART_FILE = 'restart.json'
    _BOND_REFERENCE_FILE = 'bond_reference.json'
    _STDOUT = 'runner.out'
    _STDERR = 'runner.err'

    @classmethod
    def define(cls, spec):
        """Define inputs, outputs and exit codes."""
        super().define(spec)
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['withmpi'].default = False
        options['parser_name'].default = 'ilmlff.md'
        options['input_filename'].default = cls._INPUT_FILE
        options['output_filename'].default = cls._STDOUT

        spec.input(
            'engine',
            valid_type=orm.Str,
            default=lambda: orm.Str('ase'),
            validator=validate_engine,
            help=f'MD engine that integrates the equations of motion; one of {list(ENGINES)}.',
        )
        spec.input(
            'structure',
            valid_type=(orm.StructureData, FramesData),
            help='Starting structure: a periodic StructureData (attributes `mol_id`, one per site, and `molecules`, '
            'one name per molecule, are kept) or a FramesData (frame `frame_index`, default the last).',
        )
        spec.input(
            'frame_index',
            valid_type=orm.Int,
            required=False,
            help='Frame of a FramesData `structure` to start from (negative counts from the end; default -1).',
        )
        spec.input_namespace(
            'models',
            valid_type=MLFFModelData,
            dynamic=True,
            validator=validate_models,
            help='MLFF models by key; the first in natural key order (model_0, model_1, ...) drives the dynamics, '
            'the others form a committee evaluated on every saved frame (force deviation).',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=validate_parameters_port,
            help='MD parameters: ensemble (nve, nvt, npt, npt_berendsen), steps, timestep_fs (<= 5), temperature_K, '
            'pressure_bar (npt), thermostat, damping times, seed, output strides, guards; see '
            '`aiida_ilmlff.runner.contract.PARAMETERS`.',
        )
        spec.input(
            'restart',
            valid_type=orm.SinglefileData,
            required=False,
            help='Checkpoint of an earlier run (its `checkpoint` output): positions, velocities, cell, step, time and '
            'thermostat state to continue from.',
        )
        spec.input(
            'bond_reference',
            valid_type=orm.SinglefileData,
            required=False,
            help='Checkpoint of an earlier run of the same box (e.g. the last NPT stage for an NVT production): the '
            '`bond` guard keeps its bonds and their starting lengths (those of the first structure of that chain of '
            'runs) instead of perceiving them in `structure`. A `restart` checkpoint takes precedence.',
        )
        spec.input(
            'settings',
            valid_type=orm.Dict,
            required=False,
            validator=validate_settings,
            help=f'Execution settings: {", ".join(f"{k} ({v})" for k, v in SETTINGS.items())}.',
        )
        spec.inputs.validator = validate_inputs

        spec.output(
            'trajectory',
            valid_type=MDTrajectoryData,
            help='Saved frames (HDF5: time fs, unwrapped positions, cell, energy, observables).',
        )
        spec.output(
            'thermo',
            valid_type=orm.ArrayData,
            help='Thermo log, one array per column: step, time_fs, temperature_K, potential_energy_eV, '
            'kinetic_energy_eV, total_energy_eV, pressure_bar, volume_A3, density_g_cm3.',
        )
        spec.output(
            'final_structure',
            valid_type=orm.StructureData,
            help='Structure of the checkpoint (the last step, or the last good frame after an early stop), with '
            '`mol_id`/`molecules` attributes.',
        )
        spec.output(
            'deviation',
            valid_type=orm.ArrayData,
            required=False,
            help='Committee deviation per saved frame: step, time_fs, max_devi_f, min_devi_f, avg_devi_f (eV/A), '
            'devi_e (eV/atom).',
        )
        spec.output(
            'checkpoint',
            valid_type=orm.SinglefileData,
            help='Restart checkpoint (JSON): give it as `restart` to continue.',
        )
        spec.output(
            'output_parameters',
            valid_type=orm.Dict,
            help='Run summary: status, reason, steps done, checkpoint step/time, guard details, timings.',
        )
        spec.default_output_node = 'output_parameters'

        spec.exit_code(
            301, 'ERROR_NO_RETRIEVED_TEMPORARY_FOLDER', message='The retrieved temporary folder could not be accessed.'
        )
        spec.exit_code(
            302, 'ERROR_STATUS_MISSING', message='The runner wrote no status.json: it did not start or was killed.'
        )
        spec.exit_code(
            303,
            'ERROR_RUNNER_INTERRUPTED',
            message='The runner stopped without finishing (status `running`), and the scheduler reported no wall time.',
        )
        spec.exit_code(304, 'ERROR_MISSING_OUTPUT', message='The output file `{filename}` is missing.')
        spec.exit_code(305, 'ERROR_OUTPUT_PARSING', message='An output file could not be parsed: {message}')
        spec.exit_code(310, 'ERROR_INVALID_INPUT', message='The runner rejected its input: {message}')
        spec.exit_code(311, 'ERROR_MODEL_LOAD', message='A model could not be loaded: {message}')
        spec.exit_code(312, 'ERROR_CALCULATOR', message='The calculator failed during the MD: {message}')
        spec.exit_code(
            400,
            'ERROR_OUT_OF_WALLTIME',
            message='The run stopped for the wall-time limit before all steps; continue from the `checkpoint` output.',
        )
        for guard in GUARDS.values():
            spec.exit_code(guard.exit_status, guard.exit_label, message=f'{guard.message} {{message}}')

    def _structure_atoms(self):
        """The starting structure as ASE ``Atoms`` with ``arrays['mol_id']`` and ``info['molecules']`` if known."""
        import numpy as np

        structure = self.inputs.structure
        if isinstance(structure, FramesData):
            atoms = structure[self.inputs.frame_index.value if 'frame_index' in self.inputs else -1]
        else:
            atoms = box_atoms(structure)
        atoms.calc = None
        info = {}
        if 'molecules' in atoms.info and atoms.info['molecules'] is not None:
            info['molecules'] = ' '.join(str(name) for name in atoms.info['molecules'])
        atoms.info = info
        if 'mol_id' in atoms.arrays and np.any(np.asarray(atoms.arrays['mol_id']) < 0):
            del atoms.arrays['mol_id']
        return atoms

    def _max_wall(self, settings: dict) -> float | None:
        if settings.get('max_wall_s') is not None:
            return float(settings['max_wall_s'])
        walltime = self.inputs.metadata.options.get('max_wallclock_seconds')
        if not walltime:
            return None
        margin = settings.get('walltime_margin_s') or max(30.0, 0.05 * walltime)
        budget = walltime - margin
        return float(budget if budget > 0 else 0.5 * walltime)

    def prepare_for_submission(self, folder):
        """Write ``structure.extxyz`` and ``md.json``; copy the models and the restart checkpoint."""
        from ase.io import write

        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        atoms = self._structure_atoms()
        with folder.open(self._STRUCTURE_FILE, 'w') as handle:
            write(handle, atoms, format='extxyz')

        local_copy_list = []
        models = []
        for key, node in ordered_models(self.inputs.models):
            suffix = '.' + node.filename.rsplit('.', 1)[-1] if '.' in node.filename else ''
            target = f'{key}{suffix}'
            local_copy_list.append((node.uuid, node.filename, target))
            models.append(
                {
                    'key': key,
                    'path': target,
                    'architecture': node.architecture,
                    'dtype': node.dtype,
                    'uuid': node.uuid,
                    'sha256': node.sha256,
                }
            )
        restart = None
        if 'restart' in self.inputs:
            local_copy_list.append((self.inputs.restart.uuid, self.inputs.restart.filename, self._RESTART_FILE))
            restart = self._RESTART_FILE
        bond_reference = None
        if 'bond_reference' in self.inputs:
            reference = self.inputs.bond_reference
            local_copy_list.append((reference.uuid, reference.filename, self._BOND_REFERENCE_FILE))
            bond_reference = self._BOND_REFERENCE_FILE

        runner_settings = md_settings(
            self._STRUCTURE_FILE,
            models,
            self.inputs.parameters.get_dict(),
            restart=restart,
            engine=self.inputs.engine.value,
            threads=int(settings.get('threads', 1)),
            device=settings.get('device', 'cpu'),
            max_wall_s=self._max_wall(settings),
            bond_reference=bond_reference,
        )
        with folder.open(self._INPUT_FILE, 'w') as handle:
            json.dump(runner_settings, handle, indent=1, allow_nan=False)

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['md', self._INPUT_FILE]
        codeinfo.stdout_name = self._STDOUT
        codeinfo.stderr_name = self._STDERR

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_list = [
            self._STDOUT,
            self._STDERR,
            self._INPUT_FILE,
            MD_OUTPUTS['status'],
            MD_OUTPUTS['thermo'],
            MD_OUTPUTS['deviation'],
            MD_OUTPUTS['final'],
            MD_OUTPUTS['failure'],
        ]
        calcinfo.retrieve_temporary_list = [MD_OUTPUTS['trajectory'], MD_OUTPUTS['checkpoint']]
        return calcinfo
