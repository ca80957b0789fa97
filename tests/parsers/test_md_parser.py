"""``ilmlff.md`` parser on real ``ilmlff-runner md`` output files (``data/runner_md``, see ``make_runner_data.py``).

Each case is the retrieved folder of a real run of the tiny test models (plus the retrieved temporary folder,
``temporary/``, with the HDF5 trajectory gzipped). The parsed outputs are compared with the stored
``data_regression`` files next to this module.
"""

from __future__ import annotations

import gzip
import pathlib
import shutil
import uuid

import numpy as np
import pytest
from aiida import orm
from aiida.common import LinkType
from aiida.engine import ProcessState

from aiida_ilmlff.parsers.md import MDParser, read_csv_columns
from aiida_ilmlff.runner.contract import DEVIATION_COLUMNS, GUARDS, MD_OUTPUTS, THERMO_COLUMNS

DATA = pathlib.Path(__file__).resolve().parent / 'data' / 'runner_md'


def _rounded(value, digits: int = 10):
    """``value`` with floats rounded to ``digits`` significant digits (arrays to lists), for data_regression."""
    if isinstance(value, dict):
        return {str(key): _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item, digits) for item in value]
    if isinstance(value, np.ndarray):
        return _rounded(value.tolist(), digits)
    if isinstance(value, (float, np.floating)):
        return float(f'{float(value):.{digits}g}')
    if isinstance(value, np.integer):
        return int(value)
    return value


def parse_runner_md(case: str, tmp_path: pathlib.Path, exit_status: int | None = None, skip=()):
    """Run :class:`MDParser` on ``data/runner_md/<case>`` as retrieved; returns ``(results, calcfunction node)``.

    :param skip: file names left out of the retrieved folders (to test a missing output).
    """
    source = DATA / case
    computer = orm.Computer(
        label=f'runner-md-parser-{uuid.uuid4().hex[:12]}',
        hostname='localhost',
        transport_type='core.local',
        scheduler_type='core.direct',
    ).store()
    node = orm.CalcJobNode(computer=computer, process_type='aiida.calculations:ilmlff.md')
    node.set_option('input_filename', 'md.json')
    node.set_process_state(ProcessState.RUNNING)
    if exit_status is not None:
        node.set_exit_status(exit_status)
    node.store()
    retrieved = orm.FolderData()
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in skip:
            retrieved.base.repository.put_object_from_file(str(path), path.name)
    retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
    retrieved.store()
    temporary = tmp_path / 'temporary'
    temporary.mkdir(parents=True)
    for path in sorted((source / 'temporary').iterdir()):
        name = path.name.removesuffix('.gz')
        if name in skip:
            continue
        if path.suffix == '.gz':
            with gzip.open(path, 'rb') as packed, open(temporary / name, 'wb') as target:
                shutil.copyfileobj(packed, target)
        else:
            shutil.copy(path, temporary / name)
    return MDParser.parse_from_node(node, store_provenance=False, retrieved_temporary_folder=str(temporary))


def summary(results) -> dict:
    """The parsed outputs as plain data: the status Dict, arrays of the ArrayData, node attributes."""
    data = {'outputs': sorted(results)}
    if 'output_parameters' in results:
        parameters = results['output_parameters'].get_dict()
        data['output_parameters'] = {key: parameters[key] for key in sorted(parameters) if key != 'wall_time_s'}
    for name in ('thermo', 'deviation'):
        if name in results:
            node = results[name]
            data[name] = {
                'columns': node.base.attributes.get('columns'),
                **{key: node.get_array(key) for key in node.get_arraynames()},
            }
    if 'trajectory' in results:
        data['trajectory'] = dict(results['trajectory'].base.attributes.all)  # sha256: of the stored file
    if 'checkpoint' in results:
        data['checkpoint'] = dict(results['checkpoint'].base.attributes.all)
    if 'final_structure' in results:
        structure = results['final_structure']
        data['final_structure'] = {
            'formula': structure.get_formula(),
            'n_sites': len(structure.sites),
            'cell': structure.cell,
            'first_site': list(structure.sites[0].position),
            **{key: structure.base.attributes.get(key) for key in ('mol_id', 'molecules', 'step', 'time_fs')},
        }
    return _rounded(data)


def test_completed_committee_run(aiida_profile, tmp_path, data_regression):
    """A completed NVT run with a committee of two: every output attached, exit status 0."""
    results, calcfunction = parse_runner_md('completed', tmp_path)
    assert calcfunction.is_finished_ok, calcfunction.exit_message
    assert set(results) == {'trajectory', 'thermo', 'deviation', 'final_structure', 'checkpoint', 'output_parameters'}
    assert list(results['thermo'].base.attributes.get('columns')) == list(THERMO_COLUMNS)
    assert list(results['deviation'].base.attributes.get('columns')) == list(DEVIATION_COLUMNS)
    assert results['trajectory'].base.attributes.get('models') == [
        '00000000-0000-4000-8000-000000000000',
        '00000000-0000-4000-8000-000000000001',
    ]
    data_regression.check(summary(results))


def test_guard_run_maps_to_its_exit_code(aiida_profile, tmp_path, data_regression):
    """A run stopped by the ``max_force`` guard: exit code 501 with the guard's reason; the good frame is kept."""
    results, calcfunction = parse_runner_md('guard', tmp_path)
    guard = GUARDS['max_force']
    assert calcfunction.exit_status == guard.exit_status
    assert 'guard `max_force` tripped' in calcfunction.exit_message
    assert results['output_parameters']['exit_status'] == guard.runner_status
    assert 'deviation' not in results
    data_regression.check(summary(results))


def test_missing_checkpoint_is_missing_output(aiida_profile, tmp_path):
    """A completed status without the checkpoint file: ``ERROR_MISSING_OUTPUT`` naming the file."""
    _, calcfunction = parse_runner_md('completed', tmp_path, skip=(MD_OUTPUTS['checkpoint'],))
    assert calcfunction.exit_status == 304
    assert MD_OUTPUTS['checkpoint'] in calcfunction.exit_message


def test_no_status_and_scheduler_walltime(aiida_profile, tmp_path):
    """No status.json: 302; with the scheduler's out-of-walltime and a checkpoint: 400 (continue from it)."""
    _, calcfunction = parse_runner_md('completed', tmp_path / 'a', skip=(MD_OUTPUTS['status'],))
    assert calcfunction.exit_status == 302
    _, calcfunction = parse_runner_md('completed', tmp_path / 'b', exit_status=120, skip=(MD_OUTPUTS['status'],))
    assert calcfunction.exit_status == 400


@pytest.mark.parametrize('case', ['completed', 'guard'])
def test_thermo_csv_reads_back_the_runner_columns(case):
    """:func:`read_csv_columns` reads the real thermo log: the contract's columns, integer steps."""
    columns = read_csv_columns((DATA / case / MD_OUTPUTS['thermo']).read_text())
    assert list(columns) == list(THERMO_COLUMNS)
    assert columns['step'].dtype == np.int64
