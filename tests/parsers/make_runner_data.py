"""Regenerate the real ``ilmlff-runner`` output files under ``tests/parsers/data/runner_*`` (run by hand).

``python tests/parsers/make_runner_data.py MODEL_FOLDER``, where ``MODEL_FOLDER`` holds the tiny test models
``mace_3.model``, ``deepmd_5.pb`` and their training frames ``frames.xyz`` (the cache of
:mod:`tests.fixtures.models`, e.g. ``$ILMLFF_MD_CACHE/md-tiny-v2``). Each case is a job folder set up as the
CalcJob sets it up (settings from :func:`aiida_ilmlff.runner.contract.md_settings` /
:func:`~aiida_ilmlff.runner.contract.evaluate_settings`), then the console script runs in it as a subprocess,
with stdout/stderr redirected as the scheduler does. What the CalcJob retrieves is kept; the model files and
the inputs the parser never reads are not:

- ``runner_md/completed``: NVT (Langevin) at 400 K, 20 steps of 1 fs, a committee of the MACE model (drives)
  and the DeePMD model, on a 2-pair PYR14BF4 box from the box builder.
- ``runner_md/guard``: the same box with a 5 fs step, stopped by the ``max_force`` guard (runner exit 12).
- ``runner_evaluate/committee``: both models on the first 4 frames of ``frames.xyz`` (labelled, GFN1-xTB).
- ``runner_evaluate/unknown_element``: the DeePMD model on a frame with one atom turned into Li, which its type
  map lacks (runner exit 3, no predictions).

Each case's ``temporary/`` holds what the CalcJob retrieves into the retrieved temporary folder; the HDF5
trajectory is gzipped (``trajectory.h5.gz``: its chunks are preallocated, 1.2 MB for 5 frames, mostly zeros).
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / 'data'
BIN = pathlib.Path(sys.executable).parent
ENV = {
    **os.environ,
    'OMP_NUM_THREADS': '1',
    'MKL_NUM_THREADS': '1',
    'OPENBLAS_NUM_THREADS': '1',
    'TF_INTRA_OP_PARALLELISM_THREADS': '1',
    'TF_INTER_OP_PARALLELISM_THREADS': '1',
    'DP_INTRA_OP_PARALLELISM_THREADS': '1',
    'DP_INTER_OP_PARALLELISM_THREADS': '1',
    'TF_CPP_MIN_LOG_LEVEL': '3',
}
#: Fixed stand-ins for the model node uuids that the CalcJob writes into md.json / evaluate.json.
UUIDS = ['00000000-0000-4000-8000-000000000000', '00000000-0000-4000-8000-000000000001']

MD_RETRIEVED = ('runner.out', 'runner.err', 'md.json', 'status.json', 'thermo.csv', 'deviation.csv')
MD_RETRIEVED += ('final.extxyz', 'failure.extxyz')
MD_TEMPORARY = ('trajectory.h5', 'checkpoint.json')


def _box():
    """A 2-pair PYR14BF4 box (70 atoms) as the CalcJob writes it: ``mol_id`` array, ``molecules`` in the comment."""
    from aiida_ilmlff.systems import build_ionic_liquid

    atoms = build_ionic_liquid({'PYR14': 2, 'BF4': 2}, 0.95, seed=0)
    atoms.info = {'molecules': ' '.join(atoms.info['molecules'])}
    return atoms


def _run(folder: pathlib.Path, command: list[str], stdout: str, stderr: str) -> int:
    with open(folder / stdout, 'w') as out, open(folder / stderr, 'w') as err:
        return subprocess.run(command, cwd=folder, env=ENV, stdout=out, stderr=err, check=False).returncode


def _models(models: pathlib.Path, prefix: str = '') -> list[dict]:
    return [
        {'key': 'model_0', 'path': f'{prefix}model_0.model', 'architecture': 'mace', 'dtype': 'float64'},
        {'key': 'model_1', 'path': f'{prefix}model_1.pb', 'architecture': 'deepmd', 'dtype': 'float64'},
    ]


def md_case(name: str, models: pathlib.Path, parameters: dict, committee: bool) -> None:
    """Run one MD case in a scratch folder and keep the retrieved files under ``runner_md/<name>``."""
    from ase.io import write

    from aiida_ilmlff.runner.contract import md_settings

    work = DATA / 'runner_md' / f'.{name}-work'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    write(str(work / 'structure.extxyz'), _box(), format='extxyz')
    shutil.copy(models / 'mace_3.model', work / 'model_0.model')
    entries = _models(models)[: 2 if committee else 1]
    if committee:
        shutil.copy(models / 'deepmd_5.pb', work / 'model_1.pb')
    for entry, uuid in zip(entries, UUIDS):
        entry['uuid'] = uuid
    settings = md_settings('structure.extxyz', entries, parameters, threads=1, max_wall_s=600.0)
    (work / 'md.json').write_text(json.dumps(settings, indent=1, allow_nan=False))
    status = _run(work, [str(BIN / 'ilmlff-runner'), 'md', 'md.json'], 'runner.out', 'runner.err')
    print(f'runner_md/{name}: exit status {status}')
    target = DATA / 'runner_md' / name
    shutil.rmtree(target, ignore_errors=True)
    (target / 'temporary').mkdir(parents=True)
    for filename in MD_RETRIEVED:
        if (work / filename).exists():
            shutil.copy(work / filename, target / filename)
    for filename in MD_TEMPORARY:
        if filename.endswith('.h5'):
            with (
                open(work / filename, 'rb') as source,
                gzip.GzipFile(target / 'temporary' / f'{filename}.gz', 'wb', 9, mtime=0) as gz,
            ):
                shutil.copyfileobj(source, gz)
        elif (work / filename).exists():
            shutil.copy(work / filename, target / 'temporary' / filename)
    shutil.rmtree(work)


def evaluate_case(name: str, models: pathlib.Path, n_frames: int = 4, unknown_element: bool = False) -> None:
    """Run ``ilmlff-runner evaluate`` on the first frames of the training set; keep the outputs."""
    from ase.io import read, write

    from aiida_ilmlff.runner.contract import EVALUATE_OUTPUTS, evaluate_settings

    work = DATA / 'runner_evaluate' / f'.{name}-work'
    shutil.rmtree(work, ignore_errors=True)
    (work / 'models').mkdir(parents=True)
    frames = read(str(models / 'frames.xyz'), index=f':{n_frames}')
    entries = _models(models, 'models/')
    if unknown_element:
        frames[0].numbers[0] = 3
        entries = [{**entries[1], 'key': 'model_0', 'path': 'models/model_0.pb'}]
        shutil.copy(models / 'deepmd_5.pb', work / 'models' / 'model_0.pb')
    else:
        shutil.copy(models / 'mace_3.model', work / 'models' / 'model_0.model')
        shutil.copy(models / 'deepmd_5.pb', work / 'models' / 'model_1.pb')
    write(str(work / 'frames.xyz'), frames, format='extxyz')
    for entry, uuid in zip(entries, UUIDS):
        entry['uuid'] = uuid
    (work / 'evaluate.json').write_text(json.dumps(evaluate_settings('frames.xyz', entries), indent=1))
    status = _run(work, [str(BIN / 'ilmlff-runner'), 'evaluate', 'evaluate.json'], 'evaluate.out', 'evaluate.err')
    print(f'runner_evaluate/{name}: exit status {status}')
    target = DATA / 'runner_evaluate' / name
    shutil.rmtree(target, ignore_errors=True)
    (target / 'temporary').mkdir(parents=True)
    for filename in ('frames.xyz', 'evaluate.json', 'evaluate.out', 'evaluate.err', EVALUATE_OUTPUTS['summary']):
        if (work / filename).exists():
            shutil.copy(work / filename, target / filename)
    if (work / EVALUATE_OUTPUTS['predictions']).exists():
        shutil.copy(work / EVALUATE_OUTPUTS['predictions'], target / 'temporary' / EVALUATE_OUTPUTS['predictions'])
    shutil.rmtree(work)


def main(argv: list[str]) -> None:
    """Regenerate every case from the models in ``argv[0]``."""
    models = pathlib.Path(argv[0])
    nvt = {'ensemble': 'nvt', 'temperature_K': 400.0, 'thermostat': 'langevin', 'friction_per_fs': 0.02, 'seed': 1}
    strides = {'traj_every': 5, 'thermo_every': 5, 'checkpoint_every': 10}
    md_case('completed', models, {**nvt, 'steps': 20, **strides}, committee=True)
    md_case('guard', models, {**nvt, 'steps': 40, 'timestep_fs': 5.0, **strides}, committee=False)
    evaluate_case('committee', models)
    evaluate_case('unknown_element', models, n_frames=1, unknown_element=True)


if __name__ == '__main__':
    main(sys.argv[1:])
