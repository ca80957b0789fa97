"""``ilmlff.evaluate`` parser on real ``ilmlff-runner evaluate`` output (``data/runner_evaluate``, see
``make_runner_data.py``): a MACE + DeePMD committee on 4 labelled frames, and a model that lacks an element.

The job's inputs are rebuilt as nodes from the stored files (``frames.xyz`` as the FramesData the CalcJob
exported; the model nodes carry the metadata of the tiny test models, on stand-in files: the parser never
reads a model file). The parsed metrics are compared with the stored ``data_regression`` files.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import uuid

import numpy as np
from aiida import orm
from aiida.common import LinkType
from aiida.engine import ProcessState

from aiida_ilmlff.parsers.evaluate import EvaluateParser
from aiida_ilmlff.runner.contract import EVALUATE_OUTPUTS

from .test_md_parser import _rounded

DATA = pathlib.Path(__file__).resolve().parent / 'data' / 'runner_evaluate'
TYPE_MAP = ['H', 'B', 'C', 'N', 'F']


def _model_node(folder: pathlib.Path, entry: dict):
    """An MLFFModelData like the tiny test model of ``entry`` (architecture, dtype), on a stand-in file."""
    from aiida_ilmlff.data import MLFFModelData

    path = folder / pathlib.PurePosixPath(entry['path']).name
    path.write_text(f'stand-in for {entry["key"]}\n')
    return MLFFModelData.from_file(
        path,
        entry['architecture'],
        elements=sorted(TYPE_MAP),
        type_map=TYPE_MAP,
        r_cut=4.0,
        dtype=entry['dtype'],
        inspect=False,
    )


def parse_runner_evaluate(case: str, tmp_path: pathlib.Path, parameters: dict | None = None):
    """Run :class:`EvaluateParser` on ``data/runner_evaluate/<case>`` with its inputs as nodes.

    :returns: ``(results, calcfunction node)``.
    """
    from aiida_ilmlff.data import FramesData

    source = DATA / case
    settings = json.loads((source / 'evaluate.json').read_text())
    computer = orm.Computer(
        label=f'runner-evaluate-parser-{uuid.uuid4().hex[:12]}',
        hostname='localhost',
        transport_type='core.local',
        scheduler_type='core.direct',
    ).store()
    node = orm.CalcJobNode(computer=computer, process_type='aiida.calculations:ilmlff.evaluate')
    inputs = {'frames': FramesData.from_file(source / 'frames.xyz', 'extxyz')}
    for entry in settings['models']:
        inputs[f'models__{entry["key"]}'] = _model_node(tmp_path, entry)
    if parameters is not None:
        inputs['parameters'] = orm.Dict(parameters)
    for label, value in inputs.items():
        node.base.links.add_incoming(value.store(), link_type=LinkType.INPUT_CALC, link_label=label)
    node.set_process_state(ProcessState.RUNNING)
    node.store()
    retrieved = orm.FolderData()
    for name in ('evaluate.out', 'evaluate.err', EVALUATE_OUTPUTS['summary']):
        if (source / name).is_file():
            retrieved.base.repository.put_object_from_file(str(source / name), name)
    retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
    retrieved.store()
    temporary = tmp_path / 'temporary'
    shutil.copytree(source / 'temporary', temporary) if (source / 'temporary').is_dir() else temporary.mkdir()
    return EvaluateParser.parse_from_node(node, store_provenance=False, retrieved_temporary_folder=str(temporary))


def test_committee_metrics(aiida_profile, tmp_path, data_regression):
    """MACE + DeePMD on 4 labelled frames: predictions, errors per model and of the mean, the deviation, a plot."""
    results, calcfunction = parse_runner_evaluate('committee', tmp_path)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert set(results) == {'predictions', 'metrics', 'parity', 'parity_plot'}
    metrics = results['metrics'].get_dict()
    for entry in metrics['models'].values():
        entry['uuid'] = entry['sha256'] = '<stand-in model node>'
    predictions = results['predictions']
    assert predictions.get_array('forces').shape == (2, 280, 3)
    assert results['parity_plot'].get_content(mode='rb').startswith(b'\x89PNG')
    arrays = {
        name: predictions.get_array(name)
        for name in ('energy', 'n_atoms', 'force_deviation_max', 'energy_deviation_per_atom')
    }
    arrays['forces_rms'] = np.sqrt(np.mean(predictions.get_array('forces') ** 2, axis=(1, 2)))
    keys = predictions.base.attributes.get('model_keys')
    data_regression.check(_rounded({'metrics': metrics, 'predictions': arrays, 'model_keys': keys}))


def test_no_plot_on_request(aiida_profile, tmp_path):
    """``plot: False`` keeps the parity arrays and leaves out the PNG."""
    results, calcfunction = parse_runner_evaluate('committee', tmp_path, parameters={'plot': False})
    assert calcfunction.is_finished_ok
    assert 'parity' in results and 'parity_plot' not in results


def test_unknown_element_quotes_the_runner(aiida_profile, tmp_path):
    """The runner's own error line (a frame element missing from the DeePMD type map) is the exit message."""
    results, calcfunction = parse_runner_evaluate('unknown_element', tmp_path)
    assert calcfunction.exit_status == 310
    assert "elements ['Li'] are not in its type_map" in calcfunction.exit_message
    assert not results


def test_parity_plot_per_element():
    """The force panel has one colour per element (legend: each element's RMSE) when the atomic numbers are given."""
    from aiida_ilmlff.parsers.evaluate import parity_png

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(20, 3))
    predicted = reference + rng.normal(scale=0.1, size=(20, 3))
    energy = rng.normal(size=4)
    plain = parity_png(energy, energy + 0.01, reference, predicted)
    per_element = parity_png(energy, energy + 0.01, reference, predicted, numbers=np.array([1] * 10 + [9] * 10))
    assert plain.startswith(b'\x89PNG') and per_element.startswith(b'\x89PNG')
    assert per_element != plain
    # numbers that do not match the atoms: the plain panel
    assert parity_png(energy, energy + 0.01, reference, predicted, numbers=np.array([1, 9])) == plain
