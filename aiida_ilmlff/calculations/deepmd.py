"""``ilmlff.deepmd.train``: train a DeePMD-kit model (TensorFlow backend) and freeze it, in one job.

The code is ``dp`` (deepmd-kit 3.2.0). The job runs, one after the other (``CodeRunMode.SERIAL``):

1. ``dp --tf train input.json`` (``--restart model.ckpt`` when continuing from ``parent_folder``),
2. ``dp --tf freeze -o frozen_model.pb``,
3. ``dp --tf compress`` into ``compressed_model.pb`` when the parameter ``compress`` is true,
4. ``dp --tf test`` of the deployable model on every split at once (``-s data``; ``detail.*`` files, full
   precision; the parser maps the rows back to the splits by system).

``input.json`` is built from a flat ``parameters`` Dict (keys in :data:`SCHEMA`) on top of the protocol
defaults: an ``se_e2_a`` descriptor whose ``sel`` (maximum neighbours per type within ``rcut``) is counted
from the frames of every split with ASE's neighbour list and multiplied by ``sel_factor`` (1.2); the
``type_map`` is the sorted elements. The frames are written as DeePMD npy systems with
``FramesData.export(..., 'deepmd')``: frames with a stress go to systems with ``virial.npy``
(``virial = -stress x volume`` [eV]), frames without one to systems without it, so a mixed set trains the virial
term only on the frames that have one (deepmd-kit sets ``find_virial = 0`` for a system without ``virial.npy``).
"""

from __future__ import annotations

import json
import math
import pathlib
import typing as t

import numpy as np
from aiida.common import datastructures

from aiida_ilmlff.calculations.training import (
    SPLIT_FILE,
    STRESS_MODES,
    BaseTrainCalculation,
    Option,
    ParameterSchema,
    stress_decision,
)
from aiida_ilmlff.data import MLFFModelData

__all__ = ('DeepmdTrainCalculation', 'count_sel')

INPUT_FILE = 'input.json'
LCURVE = 'lcurve.out'
FROZEN = 'frozen_model.pb'
COMPRESSED = 'compressed_model.pb'
CHECKPOINT = 'model.ckpt'

_NUMBER = (float, int)

#: The keys accepted in ``parameters`` (flat; mapped onto input.json by :func:`build_input`).
SCHEMA = ParameterSchema(
    {
        'descriptor': Option((str,), 'descriptor type', choices=('se_e2_a',)),
        'rcut': Option(_NUMBER, 'descriptor cutoff radius [Å]', minimum=1.0),
        'rcut_smth': Option(_NUMBER, 'start of the smooth cutoff [Å]', minimum=0.0),
        'sel': Option((str, list), "'auto' (counted from the frames x sel_factor) or max neighbours per type"),
        'sel_factor': Option(_NUMBER, 'safety factor on the counted neighbours for sel=auto', minimum=1.0),
        'neuron': Option((list,), 'embedding-net widths, e.g. [25, 50, 100]'),
        'axis_neuron': Option((int,), 'axis (sub-matrix) size of the descriptor', minimum=1),
        'type_one_side': Option((bool,), 'one embedding net per neighbour type only'),
        'resnet_dt': Option((bool,), 'timestep-like residual scaling in the embedding net'),
        'fitting_neuron': Option((list,), 'fitting-net widths, e.g. [240, 240, 240]'),
        'fitting_resnet_dt': Option((bool,), 'timestep-like residual scaling in the fitting net'),
        'precision': Option((str,), 'network precision', choices=('float64', 'float32')),
        'start_lr': Option(_NUMBER, 'initial learning rate (exponential decay)', minimum=0.0),
        'stop_lr': Option(_NUMBER, 'final learning rate', minimum=0.0),
        'decay_steps': Option((int,), 'steps between learning-rate decays', minimum=1),
        'start_pref_e': Option(_NUMBER, 'initial energy prefactor of the loss', minimum=0.0),
        'limit_pref_e': Option(_NUMBER, 'final energy prefactor', minimum=0.0),
        'start_pref_f': Option(_NUMBER, 'initial force prefactor', minimum=0.0),
        'limit_pref_f': Option(_NUMBER, 'final force prefactor', minimum=0.0),
        'start_pref_v': Option(_NUMBER, 'initial virial prefactor (frames with a stress label only)', minimum=0.0),
        'limit_pref_v': Option(_NUMBER, 'final virial prefactor', minimum=0.0),
        'train_stress': Option(
            (str,),
            "'on' (prefactors as given; a virial prefactor > 0 with no stress label in `train` is refused), 'auto' "
            "(the virial term only when a frame of `train` has a stress; the protocols' default), 'off' (never)",
            choices=STRESS_MODES,
        ),
        'numb_steps': Option((int,), 'training steps (batches)', minimum=1),
        'batch_size': Option((str, int), "frames per batch, or 'auto'"),
        'disp_freq': Option((int,), 'steps between lcurve.out lines', minimum=1),
        'save_freq': Option((int,), 'steps between checkpoints', minimum=1),
        'seed': Option((int,), 'random seed (initialisation, batches, the valid_fraction split)', minimum=0),
        'compress': Option((bool,), 'also compress the frozen model (dp compress); the compressed one is stored'),
    }
)

DEFAULTS: dict[str, t.Any] = {
    'descriptor': 'se_e2_a',
    'rcut': 6.0,
    'rcut_smth': 0.5,
    'sel': 'auto',
    'sel_factor': 1.2,
    'neuron': [25, 50, 100],
    'axis_neuron': 16,
    'type_one_side': False,
    'resnet_dt': False,
    'fitting_neuron': [240, 240, 240],
    'fitting_resnet_dt': True,
    'precision': 'float64',
    'start_lr': 1.0e-3,
    'stop_lr': 3.51e-8,
    'decay_steps': 5000,
    'start_pref_e': 0.02,
    'limit_pref_e': 1.0,
    'start_pref_f': 1000.0,
    'limit_pref_f': 1.0,
    'start_pref_v': 0.0,
    'limit_pref_v': 0.0,
    'numb_steps': 400000,
    'batch_size': 'auto',
    'disp_freq': 1000,
    'save_freq': 10000,
    'seed': 0,
    'compress': False,
    'train_stress': 'on',
}


def count_sel(frames_list: t.Sequence, type_map: t.Sequence[str], rcut: float) -> list[int]:
    """Maximum number of neighbours of each type within ``rcut`` [Å] over every atom of every frame.

    :param frames_list: FramesData nodes (or anything with ``to_ase()``).
    :returns: one count per entry of ``type_map`` (periodic images included, ASE ``neighbor_list``).
    """
    from ase.neighborlist import neighbor_list

    counts = np.zeros(len(type_map), dtype=int)
    index = {symbol: k for k, symbol in enumerate(type_map)}
    for frames in frames_list:
        for atoms in frames.to_ase():
            i, j = neighbor_list('ij', atoms, float(rcut))
            if i.size == 0:
                continue
            types = np.array([index[s] for s in atoms.get_chemical_symbols()])
            per_pair = np.zeros((len(atoms), len(type_map)), dtype=int)
            np.add.at(per_pair, (i, types[j]), 1)
            counts = np.maximum(counts, per_pair.max(axis=0))
    return [int(c) for c in counts]


def virial_weighted(parameters: t.Mapping) -> bool:
    """Whether ``parameters`` (merged with :data:`DEFAULTS`) give the virial term a prefactor > 0."""
    return bool(parameters['start_pref_v'] or parameters['limit_pref_v'])


def build_input(
    parameters: t.Mapping, type_map: list[str], sel: list[int], systems: t.Mapping, use_stress: bool = True
) -> dict:
    """The DeePMD ``input.json`` for ``parameters`` (already merged with :data:`DEFAULTS`); the virial prefactors
    are written only with ``use_stress`` (the virial term is trained)."""
    p = dict(parameters)
    seed = int(p['seed'])
    data: dict[str, t.Any] = {
        'model': {
            'type_map': list(type_map),
            'descriptor': {
                'type': p['descriptor'],
                'rcut': float(p['rcut']),
                'rcut_smth': float(p['rcut_smth']),
                'sel': list(sel),
                'neuron': list(p['neuron']),
                'axis_neuron': int(p['axis_neuron']),
                'type_one_side': bool(p['type_one_side']),
                'resnet_dt': bool(p['resnet_dt']),
                'precision': p['precision'],
                'seed': seed,
            },
            'fitting_net': {
                'neuron': list(p['fitting_neuron']),
                'resnet_dt': bool(p['fitting_resnet_dt']),
                'precision': p['precision'],
                'seed': seed,
            },
        },
        'learning_rate': {
            'type': 'exp',
            'start_lr': float(p['start_lr']),
            'stop_lr': float(p['stop_lr']),
            'decay_steps': int(p['decay_steps']),
        },
        'loss': {
            'type': 'ener',
            **{key: float(p[key]) for key in ('start_pref_e', 'limit_pref_e', 'start_pref_f', 'limit_pref_f')},
        },
        'training': {
            'training_data': {'systems': systems['train'], 'batch_size': p['batch_size']},
            'validation_data': {'systems': systems['valid'], 'batch_size': p['batch_size']},
            'numb_steps': int(p['numb_steps']),
            'seed': seed,
            'disp_file': LCURVE,
            'disp_freq': int(p['disp_freq']),
            'save_freq': int(p['save_freq']),
            'save_ckpt': CHECKPOINT,
        },
    }
    if use_stress and virial_weighted(p):
        data['loss'].update(start_pref_v=float(p['start_pref_v']), limit_pref_v=float(p['limit_pref_v']))
    return data


class DeepmdTrainCalculation(BaseTrainCalculation):
    """Train, freeze (and optionally compress) a DeePMD-kit se_e2_a model with ``dp --tf``.

    Outputs: ``model`` (MLFFModelData ``.pb``: architecture ``deepmd``, backend ``tensorflow``, type_map,
    r_cut [Å], dtype, sha256, seed), ``metrics`` (errors per split from ``dp test`` in meV/atom and meV/Å,
    per element), ``learning_curve`` (ArrayData: the ``lcurve.out`` columns). Exit codes: those of
    :class:`BaseTrainCalculation` plus 314 (compression failed).
    """

    SCHEMA = SCHEMA

    @classmethod
    def define(cls, spec):
        """Define the ports of the DeePMD training job."""
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'ilmlff.deepmd.train'
        spec.output('model', valid_type=MLFFModelData, help='The frozen (or compressed) DeePMD model (.pb).')
        spec.exit_code(314, 'ERROR_COMPRESSION_FAILED', message='`dp compress` failed: {detail}')

    @classmethod
    def validate_extra(cls, inputs: t.Mapping) -> str | None:
        """``sel`` list length, ``rcut_smth < rcut`` and virial terms needing stress labels."""
        parameters = {**DEFAULTS, **inputs['parameters'].get_dict()}
        if parameters['rcut_smth'] >= parameters['rcut']:
            return f'`rcut_smth` ({parameters["rcut_smth"]}) must be smaller than `rcut` ({parameters["rcut"]})'
        elements = set(inputs['train'].elements)
        for port in ('valid', 'test'):
            if port in inputs:
                elements |= set(inputs[port].elements)
        sel = parameters['sel']
        if isinstance(sel, str) and sel != 'auto':
            return f"`sel` must be 'auto' or a list of integers, got {sel!r}"
        if isinstance(sel, list) and (len(sel) != len(elements) or not all(isinstance(s, int) for s in sel)):
            return f'`sel` needs one integer per element of the type map {sorted(elements)}, got {sel}'
        if isinstance(parameters['batch_size'], str) and parameters['batch_size'] != 'auto':
            return f"`batch_size` must be an integer or 'auto', got {parameters['batch_size']!r}"
        _, problem = stress_decision(
            inputs['train'],
            virial_weighted(parameters),
            parameters['train_stress'],
            '`parameters.start_pref_v`/`limit_pref_v`',
        )
        return problem

    def use_stress(self) -> bool:
        """Whether this job trains the virial term (:func:`~aiida_ilmlff.calculations.training.stress_decision`)."""
        parameters = {**DEFAULTS, **self.inputs.parameters.get_dict()}
        use, _ = stress_decision(self.inputs.train, virial_weighted(parameters), parameters['train_stress'], '')
        return use

    def model_filename(self) -> str:
        """The deployable model file: ``compressed_model.pb`` when compressing, else ``frozen_model.pb``."""
        return COMPRESSED if self.inputs.parameters.get_dict().get('compress') else FROZEN

    def _codeinfo(self, arguments: list[str], name: str) -> datastructures.CodeInfo:
        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['--tf', *arguments, '-l', f'{name}.log']
        codeinfo.stdout_name = f'{name}.out'
        codeinfo.stderr_name = f'{name}.err'
        return codeinfo

    def prepare_for_submission(self, folder):
        """Write the npy systems, ``input.json`` and the serial list of ``dp`` commands."""
        splits, record = self.get_splits()
        type_map = self.elements_of(splits)
        parameters = {**DEFAULTS, **self.inputs.parameters.get_dict()}
        systems: dict[str, list[str]] = {}
        symbols: dict[str, list[str]] = {}
        frames_per_system: dict[str, int] = {}
        volumes: dict[str, list[float]] = {}
        for name, frames in splits.items():
            root = pathlib.Path(folder.abspath) / 'data' / name
            frames.export(root, 'deepmd', type_map=type_map)
            systems[name] = []
            for type_raw in sorted(root.rglob('type.raw')):
                relative = type_raw.parent.relative_to(folder.abspath).as_posix()
                systems[name].append(relative)
                types = np.loadtxt(type_raw, dtype=int, ndmin=1)
                symbols[relative] = [type_map[int(k)] for k in types]
                frames_per_system[relative] = sum(
                    int(np.load(coord, mmap_mode='r').shape[0]) for coord in type_raw.parent.glob('set.*/coord.npy')
                )
                if any(type_raw.parent.glob('set.*/virial.npy')):
                    boxes = [np.load(box).reshape(-1, 3, 3) for box in sorted(type_raw.parent.glob('set.*/box.npy'))]
                    volumes[relative] = np.abs(np.linalg.det(np.concatenate(boxes))).tolist()
        if parameters['sel'] == 'auto':
            counted = count_sel(list(splits.values()), type_map, parameters['rcut'])
            sel = [max(1, math.ceil(c * parameters['sel_factor'])) for c in counted]
            record['sel_counted'] = counted
        else:
            sel = list(parameters['sel'])
        record.update(
            type_map=type_map,
            sel=sel,
            systems=systems,
            symbols=symbols,
            frames_per_system=frames_per_system,
            volumes=volumes,
            stress_trained=self.use_stress(),
            order=[n for n in ('train', 'valid', 'test') if n in splits],
            model_file=self.model_filename(),
        )
        with folder.open(INPUT_FILE, 'w') as handle:
            json.dump(build_input(parameters, type_map, sel, systems, self.use_stress()), handle, indent=1)
        with folder.open(SPLIT_FILE, 'w') as handle:
            handle.write(self.split_json(record))

        train = ['train', INPUT_FILE]
        calcinfo = datastructures.CalcInfo()
        calcinfo.remote_copy_list = []
        if 'parent_folder' in self.inputs:
            parent = self.inputs.parent_folder
            remote = pathlib.PurePosixPath(parent.get_remote_path())
            calcinfo.remote_copy_list += [
                (parent.computer.uuid, str(remote / f'{CHECKPOINT}*'), '.'),
                (parent.computer.uuid, str(remote / 'checkpoint'), '.'),
            ]
            train += ['--restart', CHECKPOINT]
        codes = [
            self._codeinfo(train, 'train'),
            self._codeinfo(['freeze', '-o', FROZEN], 'freeze'),
        ]
        if parameters['compress']:
            codes.append(self._codeinfo(['compress', '-i', FROZEN, '-o', COMPRESSED, '-t', INPUT_FILE], 'compress'))
        codes.append(
            self._codeinfo(['test', '-m', self.model_filename(), '-s', 'data', '-n', '0', '-d', 'detail'], 'test')
        )
        calcinfo.codes_info = codes
        calcinfo.codes_run_mode = datastructures.CodeRunMode.SERIAL
        calcinfo.local_copy_list = []
        calcinfo.retrieve_list = [
            self.model_filename(),
            INPUT_FILE,
            LCURVE,
            SPLIT_FILE,
            *[f'{code.stdout_name[:-4]}.log' for code in codes],
            *[code.stderr_name for code in codes],
        ]
        calcinfo.retrieve_temporary_list = ['detail.e.out', 'detail.f.out', 'detail.v.out']
        return calcinfo
