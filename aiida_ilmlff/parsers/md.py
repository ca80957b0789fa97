"""Parser of ``ilmlff.md``: the runner's status, thermo log, trajectory, committee deviation, checkpoint.

Every output that exists is attached, whatever the outcome, so that a run stopped by a guard or by the wall
time still gives its frames and its checkpoint (the restart point of :class:`~aiida_ilmlff.workflows.md.
MDBaseWorkChain`). The exit code follows ``status.json`` (see :mod:`aiida_ilmlff.runner.contract`); the parser
reads only the retrieved folder and the retrieved temporary folder (``trajectory.h5`` and
``checkpoint.json`` are stored once, as output nodes, not twice).
"""

from __future__ import annotations

import io
import json
import pathlib
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_ilmlff.data.trajectory import MDTrajectoryData
from aiida_ilmlff.runner.contract import CHECKPOINT_FORMAT, EXIT_BAD_INPUT, EXIT_MODEL_LOAD, GUARDS, MD_OUTPUTS

__all__ = ('MDParser', 'read_csv_columns')

_SCHEDULER_OUT_OF_WALLTIME = 120


def read_csv_columns(text: str) -> dict[str, np.ndarray]:
    """Columns of a runner CSV log (header line, then numbers) as arrays; ``step`` as int64.

    :raises ValueError: a malformed row.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError('empty file (no header)')
    columns = lines[0].split(',')
    rows = [line.split(',') for line in lines[1:]]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(columns):
            raise ValueError(f'line {number} has {len(row)} fields, expected {len(columns)}')
    data = np.array(rows, dtype=float).reshape(len(rows), len(columns))
    result = {}
    for i, name in enumerate(columns):
        result[name] = data[:, i].astype(np.int64) if name == 'step' else data[:, i]
    return result


class MDParser(Parser):
    """Attach the outputs of ``ilmlff-runner md`` and return the exit code its ``status.json`` implies."""

    def _retrieved_text(self, name: str) -> str | None:
        if name not in self.retrieved.base.repository.list_object_names():
            return None
        return self.retrieved.base.repository.get_object_content(name, mode='r')

    def _array_output(self, name: str, filename: str) -> ExitCode | None:
        text = self._retrieved_text(filename)
        if text is None:
            return None
        try:
            columns = read_csv_columns(text)
        except ValueError as exc:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{filename}: {exc}')
        node = orm.ArrayData()
        for column, values in columns.items():
            node.set_array(column, values)
        node.base.attributes.set('columns', list(columns))
        self.out(name, node)
        return None

    def _final_structure(self) -> ExitCode | None:
        from ase.io import read

        text = self._retrieved_text(MD_OUTPUTS['final'])
        if text is None:
            return None
        try:
            atoms = read(io.StringIO(text), format='extxyz')
        except Exception as exc:
            return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{MD_OUTPUTS["final"]}: {exc}')
        structure = orm.StructureData(ase=atoms)
        if 'mol_id' in atoms.arrays:
            structure.base.attributes.set('mol_id', [int(i) for i in atoms.arrays['mol_id']])
        molecules = atoms.info.get('molecules')
        if molecules is not None:
            structure.base.attributes.set('molecules', str(molecules).split())
        for key in ('step', 'time_fs'):
            if key in atoms.info:
                structure.base.attributes.set(key, atoms.info[key])
        self.out('final_structure', structure)
        return None

    def _temporary_outputs(self, folder: pathlib.Path | None, models: list[str]) -> ExitCode | None:
        if folder is None:
            return None
        path = folder / MD_OUTPUTS['trajectory']
        if path.is_file():
            try:
                self.out('trajectory', MDTrajectoryData.from_file(path, models=models))
            except (OSError, ValueError) as exc:
                return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{MD_OUTPUTS["trajectory"]}: {exc}')
        path = folder / MD_OUTPUTS['checkpoint']
        if path.is_file():
            try:
                checkpoint = json.loads(path.read_text())
                if checkpoint.get('format') != CHECKPOINT_FORMAT:
                    raise ValueError(f'not an {CHECKPOINT_FORMAT} file')
            except ValueError as exc:
                return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{MD_OUTPUTS["checkpoint"]}: {exc}')
            node = orm.SinglefileData(file=str(path), filename=MD_OUTPUTS['checkpoint'])
            node.base.attributes.set_many(
                {
                    'format': CHECKPOINT_FORMAT,
                    'step': int(checkpoint['step']),
                    'time_fs': float(checkpoint['time_fs']),
                    'timestep_fs': float(checkpoint['timestep_fs']),
                    'ensemble': checkpoint.get('ensemble'),
                    'n_atoms': len(checkpoint['numbers']),
                }
            )
            self.out('checkpoint', node)
        return None

    def parse(self, **kwargs: t.Any) -> ExitCode:
        """Attach every available output, then return the exit code of the run."""
        temporary = kwargs.get('retrieved_temporary_folder')
        folder = pathlib.Path(temporary) if temporary else None
        if folder is not None and not folder.is_dir():
            return self.exit_codes.ERROR_NO_RETRIEVED_TEMPORARY_FOLDER

        status_text = self._retrieved_text(MD_OUTPUTS['status'])
        status: dict[str, t.Any] | None = None
        if status_text is not None:
            try:
                status = json.loads(status_text)
            except ValueError as exc:
                return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'{MD_OUTPUTS["status"]}: {exc}')
        settings_text = self._retrieved_text(self.node.get_option('input_filename') or 'md.json')
        models = [m.get('uuid') for m in json.loads(settings_text).get('models', [])] if settings_text else []

        for step in (
            lambda: self._temporary_outputs(folder, models),
            lambda: self._array_output('thermo', MD_OUTPUTS['thermo']),
            lambda: self._array_output('deviation', MD_OUTPUTS['deviation']),
            self._final_structure,
        ):
            exit_code = step()
            if exit_code is not None:
                return exit_code
        if status is not None:
            self.out('output_parameters', orm.Dict(status))

        scheduler_walltime = self.node.exit_status == _SCHEDULER_OUT_OF_WALLTIME
        state = None if status is None else status.get('status')
        if state in (None, 'running'):
            if scheduler_walltime and 'checkpoint' in self.outputs:
                return self.exit_codes.ERROR_OUT_OF_WALLTIME
            if state is None:
                return self.exit_codes.ERROR_STATUS_MISSING
            return self.exit_codes.ERROR_RUNNER_INTERRUPTED
        reason = str(status.get('reason', ''))
        if state == 'walltime':
            return self.exit_codes.ERROR_OUT_OF_WALLTIME
        if state == 'guard':
            name = (status.get('guard') or {}).get('name')
            guard = GUARDS.get(name)
            if guard is None:
                return self.exit_codes.ERROR_OUTPUT_PARSING.format(message=f'unknown guard {name!r} in status.json')
            self.logger.warning(reason)
            return getattr(self.exit_codes, guard.exit_label).format(message=reason)
        if state == 'error':
            runner_status = status.get('exit_status')
            if runner_status == EXIT_BAD_INPUT:
                return self.exit_codes.ERROR_INVALID_INPUT.format(message=reason)
            if runner_status == EXIT_MODEL_LOAD:
                return self.exit_codes.ERROR_MODEL_LOAD.format(message=reason)
            return self.exit_codes.ERROR_CALCULATOR.format(message=reason)
        for output, filename in (
            ('trajectory', MD_OUTPUTS['trajectory']),
            ('thermo', MD_OUTPUTS['thermo']),
            ('final_structure', MD_OUTPUTS['final']),
            ('checkpoint', MD_OUTPUTS['checkpoint']),
        ):
            if output not in self.outputs:
                return self.exit_codes.ERROR_MISSING_OUTPUT.format(filename=filename)
        return ExitCode(0)
