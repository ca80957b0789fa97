"""What the two training parsers (``ilmlff.mace.train``, ``ilmlff.deepmd.train``) share: reading retrieved files,
the job's context (wall time hit, split, parameters) and the last error line of a log."""

from __future__ import annotations

import json
import re
import typing as t

from aiida.common import exceptions
from aiida.engine import ExitCode
from aiida.parsers import Parser

__all__ = ('TrainParser', 'last_error')


def last_error(text: str | None, extra_markers: t.Sequence[str] = ()) -> str:
    """The last line of ``text`` that names an error (``...Error``/``...Exception`` at its start, ``Error:``, or one
    of ``extra_markers``), else its last line, cut to 400 characters; ``'no error message'`` for empty text."""
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    for line in reversed(lines):
        if (
            re.match(r'^[A-Za-z_.]*(Error|Exception)\b', line)
            or 'Error:' in line
            or any(marker in line for marker in extra_markers)
        ):
            return line[:400]
    return lines[-1][:400] if lines else 'no error message'


class TrainParser(Parser):
    """Base of the training parsers: file access on ``self.retrieved`` and the job's context."""

    def _read(self, name: str) -> str | None:
        """The content of the retrieved file ``name``, or ``None`` when it is absent."""
        try:
            return self.retrieved.base.repository.get_object_content(name)
        except (FileNotFoundError, OSError):
            return None

    def _context(self) -> ExitCode | tuple[bool, dict, dict]:
        """``(walltime, split, parameters)``: whether the scheduler stopped the job at its wall time, the split file
        written by the CalcJob (``{}`` when absent) and the ``parameters`` input; an exit code when nothing was
        retrieved."""
        from aiida_ilmlff.calculations.training import SPLIT_FILE

        try:
            _ = self.retrieved
        except exceptions.NotExistent:
            return self.exit_codes.ERROR_NO_RETRIEVED_FOLDER
        walltime = self.node.exit_status == self.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME.status
        split = json.loads(self._read(SPLIT_FILE) or '{}')
        return walltime, split, self.node.inputs.parameters.get_dict()
