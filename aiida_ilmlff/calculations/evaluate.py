"""``ilmlff.evaluate``: one or more MLFF models on a FramesData -> energies, forces, errors, committee deviation.

Runs ``ilmlff-runner evaluate evaluate.json`` on the compute node (the ``ilmlff-runner`` code registered by
``aiida-ilmlff setup``; settings, output files and exit statuses: :mod:`aiida_ilmlff.runner.contract`). The
frames go to the job folder as extended XYZ, each model file is copied verbatim from its node, and an
``evaluate.json`` lists them. The parser reads the predictions and computes, in numpy, the errors against
the reference labels (when the frames have them: absolute and relative force errors, per element and per origin,
the pressure error, energies raw and aligned by per-element offsets), the committee force deviation and a parity
plot.
"""

from __future__ import annotations

import json
import pathlib
import typing as t

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from aiida_ilmlff.data import FramesData, MLFFModelData
from aiida_ilmlff.runner.contract import DEVICES, DTYPES, EVALUATE_BATCH_SIZE, EVALUATE_OUTPUTS, evaluate_settings

__all__ = ('EvaluateCalculation',)

INPUT_FILE = 'evaluate.json'
FRAMES_FILE = 'frames.xyz'
OUTPUT_FILE = EVALUATE_OUTPUTS['predictions']
SUMMARY_FILE = EVALUATE_OUTPUTS['summary']
STDOUT = 'evaluate.out'
STDERR = 'evaluate.err'

PARAMETER_KEYS = {
    'device': 'cpu or cuda (MACE models; DeePMD uses the device its build finds)',
    'dtype': 'float32 or float64: precision of MACE evaluation (default: each model dtype, else float64)',
    'plot': 'bool, default True: store a parity-plot PNG when the frames are labelled',
    'batch_size': f'int >= 1, default {EVALUATE_BATCH_SIZE}: frames per model call (MACE: one batched graph of frames '
    'of any sizes; DeePMD: frames of one atom ordering); 1 evaluates frame by frame through the ASE calculators',
}


def validate_models(value: t.Mapping | None, _) -> str | None:
    """Port validator: at least one model."""
    if not value:
        return '`models` is empty: give at least one MLFFModelData'
    return None


def validate_parameters(value: orm.Dict | None, _) -> str | None:
    """Port validator: only the keys of :data:`PARAMETER_KEYS`, with valid values."""
    if value is None:
        return None
    parameters = value.get_dict()
    unknown = sorted(set(parameters) - set(PARAMETER_KEYS))
    if unknown:
        return f'unknown evaluate parameter(s) {unknown}; accepted: {sorted(PARAMETER_KEYS)}'
    if parameters.get('device', 'cpu') not in DEVICES:
        return f'`device` must be {" or ".join(map(repr, DEVICES))}, got {parameters["device"]!r}'
    if parameters.get('dtype') not in (None, *DTYPES):
        return f'`dtype` must be {" or ".join(map(repr, DTYPES))}, got {parameters["dtype"]!r}'
    if not isinstance(parameters.get('plot', True), bool):
        return '`plot` must be a bool'
    batch_size = parameters.get('batch_size', EVALUATE_BATCH_SIZE)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        return (
            f'`batch_size` must be an integer >= 1 (frames per model call), got {batch_size!r}: use e.g. '
            f'{EVALUATE_BATCH_SIZE}, or 1 to evaluate frame by frame'
        )
    return None


def validate_inputs(inputs: t.Mapping, _) -> str | None:
    """Every element of the frames must be known to every model."""
    frames = inputs.get('frames')
    models = inputs.get('models') or {}
    if frames is None:
        return None
    for key, model in models.items():
        missing = sorted(set(frames.elements) - set(model.elements))
        if missing:
            return f'model `{key}` (elements {model.elements}) cannot evaluate the elements {missing} of `frames`'
    return None


class EvaluateCalculation(CalcJob):
    """Evaluate MLFF models on frames with the compute-node runner.

    Outputs: ``predictions`` (ArrayData: ``energy`` (M, N) eV, ``forces`` (M, T, 3) eV/Å, ``stress`` (M, N, 3, 3)
    eV/Å^3 (ASE sign; nan for non-periodic frames), ``n_atoms`` (N,), ``numbers`` (T,), and for M > 1
    ``force_deviation_max`` (N,) eV/Å, the dpgen committee deviation max_i sqrt(<|F_i - <F_i>|^2>) over models, and
    ``energy_deviation_per_atom`` (N,) eV/atom); ``metrics`` (Dict: per model ``errors`` and ``committee_mean``
    when labels exist, as :func:`~aiida_ilmlff.parsers.evaluate.detailed_errors`: energy and force RMSE/MAE,
    ``force_rmse_relative``, ``per_element``, ``per_origin``, ``pressure_rmse_kbar`` over ``n_stress_frames``,
    ``energy_rmse_aligned_meV_per_atom``; deviation summary, throughput);
    ``parity`` (ArrayData) and ``parity_plot`` (PNG SinglefileData) when the frames are labelled.
    """

    @classmethod
    def define(cls, spec):
        """Define the ports of the evaluation job."""
        super().define(spec)
        spec.input('frames', valid_type=FramesData, help='Frames to evaluate; their labels, if any, are the reference.')
        spec.input_namespace(
            'models',
            valid_type=MLFFModelData,
            dynamic=True,
            validator=validate_models,
            help='The models (one, or a committee), by key; the key names the model in the outputs.',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            required=False,
            validator=validate_parameters,
            help='Evaluation settings: ' + '; '.join(f'`{k}`: {v}' for k, v in PARAMETER_KEYS.items()),
        )
        spec.inputs.validator = validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {
            'num_machines': 1,
            'num_mpiprocs_per_machine': 1,
        }
        spec.inputs['metadata']['options']['withmpi'].default = False
        spec.inputs['metadata']['options']['parser_name'].default = 'ilmlff.evaluate'

        spec.output('predictions', valid_type=orm.ArrayData, help='Per-frame energies and per-atom forces.')
        spec.output(
            'metrics',
            valid_type=orm.Dict,
            help='Errors per model and of the committee mean (energy raw and aligned by per-element offsets, force '
            'absolute and relative, per element, per origin, pressure in kbar), committee deviation, throughput.',
        )
        spec.output('parity', valid_type=orm.ArrayData, required=False, help='Reference vs predicted values.')
        spec.output('parity_plot', valid_type=orm.SinglefileData, required=False, help='Parity plot (PNG).')
        spec.default_output_node = 'metrics'

        spec.exit_code(300, 'ERROR_NO_RETRIEVED_FOLDER', message='The retrieved folder is missing.')
        spec.exit_code(
            310, 'ERROR_MISSING_OUTPUT', message='The runner wrote no predictions: {detail}', invalidates_cache=True
        )
        spec.exit_code(311, 'ERROR_INCONSISTENT_OUTPUT', message='The predictions do not match the inputs: {detail}')
        spec.exit_code(400, 'ERROR_OUT_OF_WALLTIME', message='The evaluation was stopped by the walltime limit.')
        spec.exit_code(500, 'ERROR_NON_FINITE_PREDICTION', message='A model predicted NaN or infinite values: {detail}')

    def prepare_for_submission(self, folder):
        """Write the frames, the model list and the runner command."""
        self.inputs.frames.export(pathlib.Path(folder.abspath) / FRAMES_FILE, 'extxyz')
        parameters = self.inputs.parameters.get_dict() if 'parameters' in self.inputs else {}
        folder.get_subfolder('models', create=True)
        local_copy_list = []
        models = []
        for key in sorted(self.inputs.models):
            node = self.inputs.models[key]
            suffix = pathlib.PurePosixPath(node.filename).suffix
            path = f'models/{key}{suffix}'
            local_copy_list.append((node.uuid, node.filename, path))
            models.append(
                {
                    'key': key,
                    'path': path,
                    'architecture': node.architecture,
                    'dtype': parameters.get('dtype') or node.dtype or 'float64',
                    'uuid': node.uuid,
                }
            )
        config = evaluate_settings(
            FRAMES_FILE,
            models,
            device=parameters.get('device', 'cpu'),
            output=OUTPUT_FILE,
            summary=SUMMARY_FILE,
            batch_size=parameters.get('batch_size', EVALUATE_BATCH_SIZE),
        )
        with folder.open(INPUT_FILE, 'w') as handle:
            json.dump(config, handle, indent=1)

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['evaluate', INPUT_FILE]
        codeinfo.stdout_name = STDOUT
        codeinfo.stderr_name = STDERR

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = local_copy_list
        calcinfo.retrieve_list = [SUMMARY_FILE, STDOUT, STDERR]
        calcinfo.retrieve_temporary_list = [OUTPUT_FILE]
        return calcinfo
