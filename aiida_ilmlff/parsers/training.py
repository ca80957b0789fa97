"""What the two training parsers (``ilmlff.mace.train``, ``ilmlff.deepmd.train``) share: reading retrieved files,
the job's context (wall time hit, split, parameters), the last error line of a log and the stress errors."""

from __future__ import annotations

import json
import re
import typing as t

from aiida.common import exceptions
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_ilmlff.parsers.evaluate import KBAR_PER_EV_A3, pressure_errors

__all__ = ('STRESS_UNITS', 'TrainParser', 'last_error', 'stress_metrics')

#: Units of the keys of :func:`stress_metrics`.
STRESS_UNITS = {'stress_rmse': 'meV/Å^3', 'stress_mae': 'meV/Å^3', 'pressure_rmse': 'kbar'}


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


def stress_metrics(predicted: t.Any, reference: t.Any) -> dict[str, t.Any]:
    """Stress errors of predictions against reference labels, over the frames whose reference is finite.

    :param predicted: ``(N, 3, 3)`` (or ``(N, 9)``) eV/Å^3. :param reference: same shape, eV/Å^3 with the same sign
        convention; ``nan`` rows (frames without a stress label) are skipped.
    :returns: ``n_stress_frames``; with at least one frame also ``stress_rmse`` and ``stress_mae`` [meV/Å^3] over the
        9 components, and ``pressure_rmse`` [kbar] of ``P = -trace(stress)/3`` (the pressure error; 1 eV/Å^3 =
        1602.1766 kbar). Errors are ``None`` when no frame has a stress.
    """
    errors = pressure_errors(predicted, reference)
    mev_per_a3 = {key: f'{key}_kbar' for key in ('stress_rmse', 'stress_mae')}
    return {
        'n_stress_frames': errors['n_stress_frames'],
        **{
            key: None if errors[kbar] is None else errors[kbar] / KBAR_PER_EV_A3 * 1000.0
            for key, kbar in mev_per_a3.items()
        },
        'pressure_rmse': errors['pressure_rmse_kbar'],
    }


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
