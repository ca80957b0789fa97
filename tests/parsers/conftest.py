"""Fixtures of the parser tests: run a parser on a folder of real output files, as AiiDA would after a job.

The files live under ``tests/parsers/data/<case>/`` (how each case was produced is in the module that uses it).
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

DATA = pathlib.Path(__file__).resolve().parent / 'data'


@pytest.fixture
def parse_folder(aiida_profile, tmp_path):
    """``parse_folder(parser_class, entry_point, files, inputs=None, temporary=(), exit_status=None, extra=None)``.

    Runs ``parser_class.parse_from_node`` on a stored CalcJobNode of ``entry_point`` with ``inputs`` (unstored
    nodes, linked as inputs) whose ``retrieved`` FolderData holds ``files`` (a folder, or ``{name: path}``);
    names in ``temporary`` go to the retrieved temporary folder instead; ``extra`` ``{name: bytes}`` adds or
    replaces files. ``exit_status`` is the scheduler's (e.g. 120 for wall time). Returns ``(outputs, calcfunction
    node)``; nothing is stored in the provenance of the parse.
    """
    from aiida import orm
    from aiida.common import LinkType
    from aiida.engine import ProcessState

    def parse(parser_class, entry_point, files, inputs=None, temporary=(), exit_status=None, extra=None):
        if isinstance(files, (str, pathlib.Path)):
            root = pathlib.Path(files)
            files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob('*')) if p.is_file()}
        computer = orm.Computer(
            label=f'parser-test-{tmp_path.name}',
            hostname='localhost',
            transport_type='core.local',
            scheduler_type='core.direct',
        ).store()
        node = orm.CalcJobNode(computer=computer, process_type=f'aiida.calculations:{entry_point}')
        for label, value in (inputs or {}).items():
            node.base.links.add_incoming(value.store(), link_type=LinkType.INPUT_CALC, link_label=label)
        node.set_process_state(ProcessState.RUNNING)
        if exit_status is not None:
            node.set_exit_status(exit_status)
        node.store()
        temporary_folder = tmp_path / 'temporary'
        temporary_folder.mkdir()
        retrieved = orm.FolderData()
        contents = {name: path.read_bytes() for name, path in files.items()}
        contents.update(extra or {})
        for name, content in contents.items():
            if content is None:
                continue
            if name in temporary:
                (temporary_folder / name).write_bytes(content)
            else:
                retrieved.base.repository.put_object_from_bytes(content, name)
        retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
        retrieved.store()
        try:
            return parser_class.parse_from_node(
                node, store_provenance=False, retrieved_temporary_folder=str(temporary_folder)
            )
        finally:
            shutil.rmtree(temporary_folder, ignore_errors=True)

    return parse
