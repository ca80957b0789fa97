"""The codes aiida-ilmlff runs, and how to find, register and probe them on a computer.

Each code is an AiiDA ``InstalledCode`` labelled as in :data:`CODE_SPECS` (``cp2k``, ``pw``,
``mace-train``, ``dp``, ``ilmlff-runner``). The same logic serves ``aiida-ilmlff setup`` on
``localhost`` and on any computer already configured in AiiDA (an SSH + Slurm cluster, say): the
executable is looked up *through the computer's transport*, so nothing assumes a shared file
system with the compute host.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import typing as t

from aiida_ilmlff.computers import open_transport

if t.TYPE_CHECKING:
    from aiida import orm

__all__ = ('CODE_SPECS', 'CodeSpec', 'CodeStatus', 'find_executable', 'probe_code', 'register_code')


@dataclasses.dataclass(frozen=True)
class CodeSpec:
    """What aiida-ilmlff needs to know about one code.

    :param label: the code label (the full label is ``label@computer``).
    :param candidates: executable names to look for, in order of preference.
    :param plugin: the default CalcJob entry point of the code (set only when installed).
    :param probe: arguments that make the executable answer quickly without real work.
    :param expect: text the probe's output must contain for the code to count as working.
    :param stdin_empty: feed the probe an empty standard input (pw.x reads its input there).
    :param description: one line for ``verdi code show``.
    """

    label: str
    candidates: tuple[str, ...]
    plugin: str
    probe: str
    expect: str
    description: str
    stdin_empty: bool = False
    venv_local: bool = False


CODE_SPECS: tuple[CodeSpec, ...] = (
    CodeSpec(
        label='cp2k',
        candidates=('cp2k.psmp', 'cp2k.ssmp', 'cp2k', 'cp2k.popt'),
        plugin='cp2k',
        probe='--version',
        expect='CP2K version',
        description='CP2K (DFT and GFN-xTB single points, AIMD) through aiida-cp2k',
    ),
    CodeSpec(
        label='pw',
        candidates=('pw.x',),
        plugin='quantumespresso.pw',
        probe='',
        expect='PWSCF',
        description='Quantum ESPRESSO pw.x through aiida-quantumespresso',
        stdin_empty=True,
    ),
    CodeSpec(
        label='mace-train',
        candidates=('mace_run_train',),
        plugin='ilmlff.mace.train',
        probe='--help',
        expect='usage',
        description='MACE training (mace-torch mace_run_train)',
        venv_local=True,
    ),
    CodeSpec(
        label='dp',
        candidates=('dp',),
        plugin='ilmlff.deepmd.train',
        probe='--version',
        expect='DeePMD-kit',
        description='DeePMD-kit command line (TensorFlow backend: dp --tf)',
        venv_local=True,
    ),
    CodeSpec(
        label='ilmlff-runner',
        candidates=('ilmlff-runner',),
        plugin='ilmlff.md',
        probe='--version',
        expect='ilmlff-runner',
        description="aiida-ilmlff's compute-node runner (MLFF MD and evaluation with MACE / DeePMD)",
        venv_local=True,
    ),
)


@dataclasses.dataclass
class CodeStatus:
    """The outcome of probing one code: ``ok`` is True when the executable answered as expected."""

    label: str
    computer: str
    executable: str
    plugin: str | None
    ok: bool
    message: str


def get_spec(label: str) -> CodeSpec:
    """Return the :class:`CodeSpec` of ``label``; raise ``KeyError`` naming the known labels."""
    for spec in CODE_SPECS:
        if spec.label == label:
            return spec
    raise KeyError(f'unknown code label `{label}`; known: {", ".join(s.label for s in CODE_SPECS)}')


def _search_dirs(computer: orm.Computer) -> list[str]:
    """Extra folders searched on ``localhost``: this Python's ``bin`` (the virtual environment)."""
    if computer.transport_type == 'core.local':
        return [os.path.dirname(sys.executable)]
    return []


def find_executable(spec: CodeSpec, computer: orm.Computer, transport=None) -> str | None:
    """Find the absolute path of ``spec``'s executable on ``computer`` through its transport.

    On ``core.local`` computers the current virtual environment's ``bin`` folder is searched first
    for the Python-based codes (``mace_run_train``, ``dp``, the runner), so the codes match the
    packages installed with aiida-ilmlff. Returns ``None`` when no candidate is found.
    """
    if transport is None:
        with open_transport(computer) as opened:
            return find_executable(spec, computer, opened)

    dirs = _search_dirs(computer) if spec.venv_local else []
    for name in spec.candidates:
        for folder in dirs:
            path = os.path.join(folder, name)
            if transport.isfile(path):
                return path
        retval, stdout, _ = transport.exec_command_wait(f'command -v {shlex.quote(name)}')
        if retval == 0 and stdout.strip():
            return stdout.strip().splitlines()[0]
    return None


def _plugin_installed(plugin: str) -> bool:
    from aiida.plugins.entry_point import get_entry_point_names

    return plugin in get_entry_point_names('aiida.calculations')


def register_code(spec: CodeSpec, computer: orm.Computer, executable: str) -> orm.InstalledCode:
    """Store an ``InstalledCode`` ``spec.label@computer`` for ``executable`` and return it.

    The default CalcJob plugin is set when its entry point is installed.
    """
    from aiida import orm

    code = orm.InstalledCode(
        label=spec.label,
        computer=computer,
        filepath_executable=executable,
        default_calc_job_plugin=spec.plugin if _plugin_installed(spec.plugin) else None,
        description=spec.description,
    )
    return code.store()


def load_existing(spec: CodeSpec, computer: orm.Computer) -> orm.InstalledCode | None:
    """Return the code ``spec.label@computer`` when it exists, else ``None``."""
    from aiida import orm

    qb = orm.QueryBuilder()
    qb.append(orm.Computer, filters={'id': computer.pk}, tag='computer')
    qb.append(orm.InstalledCode, with_computer='computer', filters={'label': spec.label}, project='*')
    found = qb.first(flat=True)
    return found


def probe_code(code: orm.InstalledCode, timeout: int = 120, transport=None) -> CodeStatus:
    """Run the code's probe through its computer's transport; report whether it answered.

    The probe (``--version``, ``--help``, or an empty input for pw.x) does no real work. Its output
    must contain the spec's ``expect`` text. ``timeout`` [s] bounds the probe (coreutils ``timeout``).
    """
    spec = get_spec(code.label)
    computer = code.computer
    executable = str(code.filepath_executable)
    if transport is None:
        with open_transport(computer) as opened:
            return probe_code(code, timeout, opened)

    if not transport.isfile(executable):
        return CodeStatus(spec.label, computer.label, executable, code.default_calc_job_plugin, False, 'missing')
    stdin = ' </dev/null' if spec.stdin_empty else ''
    command = f'timeout {int(timeout)} {shlex.quote(executable)} {spec.probe}{stdin} 2>&1'
    retval, stdout, stderr = transport.exec_command_wait(command)
    output = stdout + stderr
    if spec.expect.lower() in output.lower():
        line = next((ln.strip() for ln in output.splitlines() if spec.expect.lower() in ln.lower()), '')
        return CodeStatus(spec.label, computer.label, executable, code.default_calc_job_plugin, True, line[:80])
    tail = output.strip().splitlines()[-1:] or [f'exit status {retval}']
    return CodeStatus(
        spec.label,
        computer.label,
        executable,
        code.default_calc_job_plugin,
        False,
        f'no answer: {tail[0][:80]}',
    )
