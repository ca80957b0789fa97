"""Progress monitors: what a running training or MD job has done so far, in ``verdi process report``.

CalcJob monitors (aiida-core's ``monitors`` input, entry-point group ``aiida.calculations.monitors``) that read,
through the transport and in the job's remote work directory, the few last lines of the file where the code
logs its progress, and write one line to the CalcJob node's log (``node.logger.report``: a ``REPORT`` record in
the database, shown by ``verdi process report PK``):

- ``ilmlff.mace.progress`` (``ilmlff.mace.train``): ``logs/mace_run-<seed>.log``, the last ``Initial:``/``Epoch N:``
  validation line (loss, RMSE of the energy per atom [meV], forces [meV/Å] and stress, as MACE prints them) and
  ``Training complete``;
- ``ilmlff.deepmd.progress`` (``ilmlff.deepmd.train``): ``lcurve.out``, the last row (step, losses, energy errors
  [eV/atom], force errors [eV/Å], learning rate);
- ``ilmlff.md.progress`` (``ilmlff.md``): ``thermo.csv``, the last row (step, simulated time [fs], temperature [K],
  total energy [eV], pressure [bar], density [g/cm^3]), and for a committee ``deviation.csv``, the last max force
  deviation [eV/Å].

A line is reported only when it differs from the last one reported for the node (kept in the node's extra
:data:`PROGRESS_EXTRA`, so a restarted daemon does not repeat it). A monitor never stops or fails the job: it
returns ``None`` always, and a missing, empty or half-written file (its last, unterminated line is ignored), an
unreadable number or a transport error only means no line this time. Each call runs one short shell command on
the computer (``tail``/``grep``: the file is never copied). The engine calls the monitors each time it polls the
job, at most every ``minimum_poll_interval`` seconds; the training and MD protocols turn them on, every 10 s with
``fast`` and 300 s with ``balanced``/``stringent`` (``monitors.progress`` of the CalcJob namespace; see
docs/howto_cluster.md). By hand::

    builder.mace.monitors = {'progress': orm.Dict({'entry_point': 'ilmlff.mace.progress', 'minimum_poll_interval': 30})}
"""

from __future__ import annotations

import logging
import math
import shlex
import typing as t

from aiida_ilmlff.runner.contract import DEVIATION_COLUMNS, MD_OUTPUTS, THERMO_COLUMNS

if t.TYPE_CHECKING:
    from aiida.orm import CalcJobNode
    from aiida.transports import Transport

__all__ = (
    'PROGRESS_EXTRA',
    'PROGRESS_MONITORS',
    'deepmd_progress',
    'deepmd_progress_monitor',
    'mace_progress',
    'mace_progress_monitor',
    'md_progress',
    'md_progress_monitor',
    'report_progress',
)

#: Extra of the CalcJob node holding the last progress line reported (and the time it was read, by the daemon).
PROGRESS_EXTRA = 'ilmlff_progress'
#: Progress monitor entry point of each CalcJob plugin.
PROGRESS_MONITORS = {
    'ilmlff.mace.train': 'ilmlff.mace.progress',
    'ilmlff.deepmd.train': 'ilmlff.deepmd.progress',
    'ilmlff.md': 'ilmlff.md.progress',
}

LOGGER = logging.getLogger(__name__)
_MACE_MARKERS = r'(Initial|Epoch [0-9]+): head:|Training complete'


def _complete_lines(text: str | None) -> list[str]:
    """The lines of ``text`` that end with a newline (a file being written may end with a partial line)."""
    return (text or '').split('\n')[:-1]


def _number(value: float) -> str:
    return f'{value:.4g}'


# ------------------------------------------------------------------------------------------------ pure readers


def mace_progress(text: str | None, max_epochs: int | None = None) -> str | None:
    """The progress line of a MACE training from the lines of its log (``logs/mace_run-<seed>.log``).

    :param text: lines of the log (the whole log or its last lines matching :data:`_MACE_MARKERS`).
    :param max_epochs: ``max_num_epochs`` of the job, shown as ``epoch N/max`` (MACE counts epochs from 0; the line
        says how many are done).
    :returns: e.g. ``MACE epoch 4/4: validation loss=7.01, RMSE_E_per_atom=659.8 meV, RMSE_F=645.2 meV / A;
        training complete`` (the metrics as MACE prints them, numbers to 4 digits); ``None`` before the first
        validation line.
    """
    last, complete = None, False
    for line in _complete_lines(text):
        if 'Training complete' in line:
            complete = True
        marker = ' Initial: head: ' if ' Initial: head: ' in line else None
        if marker is None and ' Epoch ' in line and ': head: ' in line:
            marker = ' Epoch '
        if marker is None:
            continue
        head, _, rest = line.partition(': head: ')
        _, _, metrics = rest.partition(', ')
        epoch = None
        if marker == ' Epoch ':
            try:
                epoch = int(head.rsplit(' Epoch ', 1)[1]) + 1
            except ValueError:
                continue
        last, complete = (epoch, metrics), False
    if last is None:
        return None
    epoch, metrics = last
    shown = []
    for item in metrics.split(','):
        key, sep, value = item.partition('=')
        if not sep:
            continue
        number, _, unit = value.strip().partition(' ')
        try:
            number = _number(float(number))
        except ValueError:
            pass
        shown.append(f'{key.strip()}={number}{" " + unit.strip() if unit.strip() else ""}')
    total = f'/{max_epochs}' if max_epochs else ''
    where = 'before training' if epoch is None else f'epoch {epoch}{total}'
    line = f'MACE {where}: validation {", ".join(shown)}'
    return line + ('; training complete' if complete else '')


def deepmd_progress(text: str | None, numb_steps: int | None = None) -> str | None:
    """The progress line of a DeePMD training from ``lcurve.out`` (its ``# step ...`` header and last rows).

    :param text: the header line and the last lines of ``lcurve.out``.
    :param numb_steps: the job's ``numb_steps``, shown as ``step N/numb_steps``.
    :returns: e.g. ``DeePMD step 120/200: rmse_val=7.79, rmse_trn=13.3, rmse_e_val=0.368, ... lr=6.3e-05 (rmse_e
        eV/atom, rmse_f eV/Å)``; ``None`` without a header or a complete row.
    """
    header: list[str] = []
    row: list[float] | None = None
    for line in _complete_lines(text):
        if line.startswith('#'):
            names = line[1:].split()
            if names and names[0] == 'step':
                header = names
            continue
        fields = line.split()
        if header and len(fields) == len(header):
            try:
                row = [float(x) for x in fields]
            except ValueError:
                continue
    if row is None:
        return None
    values = dict(zip(header, row))
    step = int(values.pop('step'))
    total = f'/{numb_steps}' if numb_steps else ''
    shown = ', '.join(f'{name}={_number(value)}' for name, value in values.items())
    return f'DeePMD step {step}{total}: {shown} (rmse_e eV/atom, rmse_f eV/Å)'


def _last_row(text: str | None, columns: t.Sequence[str]) -> dict[str, float] | None:
    """The last complete data row of a ``thermo.csv``/``deviation.csv`` tail as ``{column: value}``."""
    found = None
    for line in _complete_lines(text):
        fields = line.split(',')
        if len(fields) != len(columns) or fields[0] == columns[0]:
            continue
        try:
            values = [float(x) for x in fields]
        except ValueError:
            continue
        if all(math.isfinite(v) or math.isnan(v) for v in values):
            found = dict(zip(columns, values))
    return found


def md_progress(
    thermo: str | None, steps: int | None = None, timestep_fs: float | None = None, deviation: str | None = None
) -> str | None:
    """The progress line of an ``ilmlff-runner md`` run from the last rows of ``thermo.csv`` (and ``deviation.csv``).

    :param thermo: the last lines of ``thermo.csv`` (columns :data:`~aiida_ilmlff.runner.contract.THERMO_COLUMNS`).
    :param steps: the run's ``steps`` (total, counted from step 0); with ``timestep_fs`` [fs] the total time.
    :param deviation: the last lines of ``deviation.csv`` (a committee), or ``None``.
    :returns: e.g. ``MD step 150/2000, t 150 fs of 2000 fs: T 452.1 K, E_tot -3032.947 eV, P -2323 bar, density 0.95
        g/cm^3; max force deviation 0.12 eV/Å``; ``None`` before the first complete row.
    """
    row = _last_row(thermo, THERMO_COLUMNS)
    if row is None:
        return None
    step = int(row['step'])
    head = f'MD step {step}/{steps}' if steps else f'MD step {step}'
    time = f't {_number(row["time_fs"])} fs'
    if steps and timestep_fs:
        time += f' of {_number(steps * timestep_fs)} fs'
    line = (
        f'{head}, {time}: T {row["temperature_K"]:.1f} K, E_tot {row["total_energy_eV"]:.3f} eV, '
        f'P {_number(row["pressure_bar"])} bar, density {row["density_g_cm3"]:.4g} g/cm^3'
    )
    devi = _last_row(deviation, DEVIATION_COLUMNS)
    if devi is not None:
        line += f'; max force deviation {_number(devi["max_devi_f"])} eV/Å (step {int(devi["step"])})'
    return line


# ------------------------------------------------------------------------------------------------ the monitors


def _remote(node: CalcJobNode, transport: Transport, command: str) -> str | None:
    """Stdout of ``command`` run in the job's remote work directory (``None``: no directory or it failed)."""
    workdir = node.get_remote_workdir()
    if workdir is None:
        return None
    status, stdout, _ = transport.exec_command_wait(f'cd {shlex.quote(workdir)} && {{ {command} ; }} 2>/dev/null')
    return stdout if status == 0 else None


def report_progress(node: CalcJobNode, line: str | None) -> bool:
    """Write ``line`` to the log of ``node`` (a ``REPORT`` record) unless it is the last line reported there.

    :returns: whether a line was written. The line is kept in the node's extra :data:`PROGRESS_EXTRA`.
    """
    if not line or node.base.extras.get(PROGRESS_EXTRA, None) == line:
        return False
    node.logger.report(line)
    node.base.extras.set(PROGRESS_EXTRA, line)
    return True


def _parameter(node: CalcJobNode, key: str, default: t.Any = None) -> t.Any:
    parameters = node.inputs.parameters.get_dict() if 'parameters' in node.inputs else {}
    return parameters.get(key, default)


def _guarded(read: t.Callable[[CalcJobNode, Transport], str | None]) -> t.Callable:
    """A monitor around ``read`` (node, transport -> line): reports the line, swallows every error, returns None."""

    def monitor(node: CalcJobNode, transport: Transport) -> None:
        try:
            report_progress(node, read(node, transport))
        except Exception as exception:  # a progress line must never pause or fail the job
            LOGGER.debug('progress monitor of CalcJob<%s>: %s', node.pk, exception)

    monitor.__doc__ = read.__doc__
    monitor.__name__ = monitor.__qualname__ = read.__name__.lstrip('_').replace('_read', '_progress_monitor')
    return monitor


def _mace_read(node: CalcJobNode, transport: Transport) -> str | None:
    """Report the last validation line (epoch, loss, energy and force RMSE) of a running ``ilmlff.mace.train``.

    Entry point ``ilmlff.mace.progress``; returns ``None`` (the job goes on). See the module docstring.
    """
    from aiida_ilmlff.calculations.mace import NAME

    log = shlex.quote(f'logs/{NAME}_run-{int(_parameter(node, "seed", 0))}.log')
    text = _remote(node, transport, f"grep -E '{_MACE_MARKERS}' {log} | tail -n 3")
    return mace_progress(text, _parameter(node, 'max_num_epochs'))


def _deepmd_read(node: CalcJobNode, transport: Transport) -> str | None:
    """Report the last ``lcurve.out`` row (step, losses, learning rate) of a running ``ilmlff.deepmd.train``.

    Entry point ``ilmlff.deepmd.progress``; returns ``None`` (the job goes on). See the module docstring.
    """
    from aiida_ilmlff.calculations.deepmd import DEFAULTS, LCURVE

    text = _remote(node, transport, f"grep -m 1 '^# step' {LCURVE}; tail -n 3 {LCURVE}")
    return deepmd_progress(text, _parameter(node, 'numb_steps', DEFAULTS['numb_steps']))


def _md_read(node: CalcJobNode, transport: Transport) -> str | None:
    """Report the last thermo row (step, time, temperature, energy, pressure, density) of a running ``ilmlff.md``.

    Entry point ``ilmlff.md.progress``; returns ``None`` (the job goes on). See the module docstring.
    """
    thermo, deviation = MD_OUTPUTS['thermo'], MD_OUTPUTS['deviation']
    text = _remote(
        node, transport, f'tail -n 2 {thermo}; echo @@; if [ -f {deviation} ]; then tail -n 2 {deviation}; fi'
    )
    thermo_text, _, deviation_text = (text or '').partition('@@\n')
    return md_progress(
        thermo_text, _parameter(node, 'steps'), _parameter(node, 'timestep_fs', 1.0), deviation_text or None
    )


mace_progress_monitor = _guarded(_mace_read)
deepmd_progress_monitor = _guarded(_deepmd_read)
md_progress_monitor = _guarded(_md_read)
