"""Read CP2K's output files: energy and SCF status of the main output, forces, stress (pure text, no AiiDA).

The one home of CP2K's SCF markers (:data:`SCF_NOT_CONVERGED_MARKERS`, :func:`scf_failed`) and of its
other status strings (walltime, the GFN-xTB atomic-charge abort): the labelling engine, the SCF-ladder
handler of ``ilmlff.cp2k.base`` and the AIMD reader (:mod:`aiida_ilmlff.sampling.cp2k_md`) import them here.

Units of the values returned: energy in eV, forces in eV/Å, stress in eV/Å^3 with the ASE sign
(``stress = (1/V) dE/d(strain)``, positive under tension). Conversions use ASE's constants (CODATA 2014):
1 Hartree = 27.211386 eV, 1 bohr = 0.52917721 Å, 1 GPa = 1/160.21766 eV/Å^3. CP2K prints forces in
Hartree/bohr and the stress tensor in GPa with the opposite sign (positive under compression).
"""

from __future__ import annotations

import re
import typing as t

import numpy as np
from ase import units

__all__ = (
    'CP2K_FORCES_FILE',
    'CP2K_OUTPUT_FILE',
    'CP2K_STRESS_FILE',
    'EV_PER_A3_PER_GPA',
    'HARTREE_PER_BOHR_TO_EV_PER_A',
    'HARTREE_TO_EV',
    'SCF_NOT_CONVERGED_MARKERS',
    'SCF_WALLTIME_MARKER',
    'WALLTIME_MARKER',
    'XTB_CHARGE_MARKERS',
    'Cp2kEvaluation',
    'Cp2kOutput',
    'md_step_numbers',
    'optimisation_max_gradients',
    'parse_cp2k_evaluations',
    'parse_cp2k_forces',
    'parse_cp2k_stdout',
    'parse_cp2k_stress',
    'parse_cp2k_stress_per_evaluation',
    'restart_md_step',
    'scf_failed',
    'unconverged_evaluations',
    'xtb_charge_abort',
)

HARTREE_TO_EV = units.Hartree
HARTREE_PER_BOHR_TO_EV_PER_A = units.Hartree / units.Bohr
EV_PER_A3_PER_GPA = units.GPa

#: Files CP2K writes with ``FORCE_EVAL/PRINT/FORCES/FILENAME forces`` and ``.../STRESS_TENSOR/FILENAME stress``
#: for ``PROJECT aiida`` (the project name aiida-cp2k sets) and a single point; and the main output.
CP2K_FORCES_FILE = 'aiida-forces-1_0.xyz'
CP2K_STRESS_FILE = 'aiida-stress-1_0.stress_tensor'
CP2K_OUTPUT_FILE = 'aiida.out'

#: Lines of CP2K's main output that mean an SCF did not converge. CP2K 2023.1 with OT prints them and goes on
#: (exit status 0, an energy and forces reported anyway): such numbers must never become labels.
SCF_NOT_CONVERGED_MARKERS = ('SCF run NOT converged', 'outer SCF loop FAILED')

#: CP2K stopped at ``GLOBAL/WALLTIME``.
WALLTIME_MARKER = 'exceeded requested execution time'

#: CP2K stopped an SCF at ``GLOBAL/WALLTIME`` (it then prints an SCF failure marker too, and stops the run: the
#: evaluation was interrupted, not failed, and is no MD step).
SCF_WALLTIME_MARKER = 'SCF run terminated - exceeded requested execution time'

#: GFN-xTB's ``CHECK_ATOMIC_CHARGES`` abort ("Atomic charges outside chemical range").
XTB_CHARGE_MARKERS = ('Switch-off CHECK_ATOMIC_CHARGES', 'Charge outside chemical range')

_MD_STEP = re.compile(r'MD\|\s+Step number\s+(\d+)')

_FLOAT = r'[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?'
_ENERGY_VALUE = re.compile(r'ENERGY\|\s+Total FORCE_EVAL.*?:\s+(' + _FLOAT + r')')


def scf_failed(text: str) -> bool:
    """Whether ``text`` (CP2K's main output, or a part of it) reports an SCF that did not converge."""
    return any(marker in text for marker in SCF_NOT_CONVERGED_MARKERS)


#: The line CP2K prints after every force evaluation (one per single point, one per MD step).
FORCE_EVAL_ENERGY_LINE = re.compile(r'ENERGY\|\s+Total FORCE_EVAL')


def unconverged_evaluations(text: str) -> list[int]:
    """0-based indices of the force evaluations in ``text`` (CP2K's main output) whose SCF did not converge.

    Evaluation ``k`` is the text between the ``k``-th and ``k+1``-th ``ENERGY| Total FORCE_EVAL`` lines (its SCF
    messages come before its energy line); a trailing evaluation without an energy line yet (a running job, or
    one killed while it ran) is included, so a monitor reading a live output sees the failure as soon as CP2K
    prints it. In an MD run evaluation 0 is the initial step and evaluation ``k`` is MD step ``first_step + k``.
    An SCF that CP2K stopped at its walltime (:data:`SCF_WALLTIME_MARKER`) is not counted: CP2K prints the failure
    marker for it too, but the run ends there and that evaluation never becomes an MD step.
    """
    segments = FORCE_EVAL_ENERGY_LINE.split(text)
    return [k for k, segment in enumerate(segments) if scf_failed(segment) and SCF_WALLTIME_MARKER not in segment]


def xtb_charge_abort(text: str) -> bool:
    """Whether ``text`` (CP2K's main output) reports the GFN-xTB atomic-charge abort."""
    return any(marker in text for marker in XTB_CHARGE_MARKERS)


_STEP_START_VAL = re.compile(r'^\s*STEP_START_VAL\s+(\d+)', re.MULTILINE)


def restart_md_step(text: str) -> int | None:
    """The MD step a CP2K restart file (``<project>-1.restart``) continues from: its ``MOTION/MD/STEP_START_VAL``.

    ``None`` when the file has no such keyword (not an MD restart, or step 0).
    """
    match = _STEP_START_VAL.search(text)
    return int(match.group(1)) if match else None


_OPT_MAX_GRADIENT = re.compile(r'(?:OPT\|\s+Maximum gradient|Max\. gradient\s+=)\s+(' + _FLOAT + r')')


def optimisation_max_gradients(text: str) -> list[float]:
    """The largest force component of every step of a CP2K geometry optimisation, in eV/Å, in order.

    Read from the step summaries of CP2K's main output (``OPT| Maximum gradient`` in CP2K 2023, ``Max. gradient =``
    before; Hartree/bohr). The starting geometry has no summary. Empty when no step was completed.
    """
    return [
        float(v.replace('D', 'E').replace('d', 'e')) * HARTREE_PER_BOHR_TO_EV_PER_A
        for v in _OPT_MAX_GRADIENT.findall(text)
    ]


def md_step_numbers(text: str) -> list[int]:
    """The MD step numbers CP2K's main output reports (``MD| Step number <n>``), in order.

    The step numbers are absolute: a run restarted with ``EXT_RESTART/RESTART_COUNTERS`` goes on from the
    restart file's ``STEP_START_VAL``. The initial evaluation of a run (step 0, or the restart step) has no such
    line. Empty when the run stopped before its first step.
    """
    return [int(n) for n in _MD_STEP.findall(text)]


class Cp2kOutput(t.NamedTuple):
    """What :func:`parse_cp2k_stdout` reads from CP2K's main output.

    ``energy`` [eV] is the last ``ENERGY| Total FORCE_EVAL`` value (``None`` if absent); ``scf_converged`` is
    False when CP2K printed one of :data:`SCF_NOT_CONVERGED_MARKERS` or ran out of its walltime;
    ``completed`` is True when the run reached ``PROGRAM STOPPED IN``; ``xtb_charge_abort`` flags the GFN-xTB
    atomic-charge check; ``abort_message`` is the text of an ``[ABORT]`` box ('' if none).
    """

    energy: float | None
    scf_converged: bool
    completed: bool
    walltime_exceeded: bool
    xtb_charge_abort: bool
    abort_message: str
    n_warnings: int | None
    version: str | None


def parse_cp2k_stdout(text: str) -> Cp2kOutput:
    """Read the energy, SCF convergence and abort status from the text of CP2K's main output file.

    CP2K 2023.1 with OT does not abort when the SCF fails: it prints ``*** WARNING ... SCF run NOT
    converged ***`` and still reports an energy and forces. Such a run is flagged here
    (``scf_converged=False``) so that its numbers never become labels.

    :param text: the content of ``aiida.out``.
    :return: a :class:`Cp2kOutput`.
    """
    energy = None
    for match in re.finditer(r'^\s*ENERGY\|\s+Total FORCE_EVAL.*?:\s+(' + _FLOAT + r')\s*$', text, re.MULTILINE):
        energy = float(match.group(1).replace('D', 'E').replace('d', 'e')) * HARTREE_TO_EV
    unconverged = scf_failed(text)
    walltime = WALLTIME_MARKER in text
    abort = ''
    box = re.search(r'\[ABORT\](.*?)\*{20,}', text, re.DOTALL)
    if box:
        lines = [line.strip(' *|/\\_O') for line in box.group(1).splitlines()]
        abort = ' '.join(line.strip() for line in lines if line.strip())
    warnings_match = re.search(r'The number of warnings for this run is\s*:\s*(\d+)', text)
    version_match = re.search(r'CP2K\|\s+version string:\s+CP2K version\s+(\S+)', text)
    return Cp2kOutput(
        energy=energy,
        scf_converged=not unconverged and not walltime,
        completed='PROGRAM STOPPED IN' in text,
        walltime_exceeded=walltime,
        xtb_charge_abort=xtb_charge_abort(text),
        abort_message=abort,
        n_warnings=int(warnings_match.group(1)) if warnings_match else None,
        version=version_match.group(1) if version_match else None,
    )


def parse_cp2k_forces(text: str, symbols: t.Sequence[str] | None = None) -> np.ndarray:
    """Read the last ``ATOMIC FORCES in [a.u.]`` block of a CP2K forces file; return ``(n, 3)`` eV/Å.

    Rows are put in the order of CP2K's atom index (the order of the coordinate file, which aiida-cp2k
    writes in the order of the ``StructureData`` sites, i.e. the frame's order).

    :param text: content of the file written by ``FORCE_EVAL/PRINT/FORCES`` (``aiida-forces-1_0.xyz``).
    :param symbols: the frame's chemical symbols; when given, the element column must match them atom by atom.
    :raises ValueError: if no block is found, indices are not 1..n, or elements or atom count disagree.
    """
    blocks = re.split(r'ATOMIC FORCES in \[a\.u\.\]', text)
    if len(blocks) < 2:
        raise ValueError('no `ATOMIC FORCES in [a.u.]` block in the CP2K forces file')
    rows = []
    for line in blocks[-1].splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0].isdigit() and parts[1].isdigit():
            rows.append((int(parts[0]), parts[2], [float(value) for value in parts[3:]]))
        elif line.strip().startswith('SUM OF ATOMIC FORCES'):
            break
    if not rows:
        raise ValueError('the last forces block of the CP2K forces file has no atoms')
    rows.sort(key=lambda row: row[0])
    indices = [row[0] for row in rows]
    if indices != list(range(1, len(rows) + 1)):
        raise ValueError('the CP2K forces file does not list atoms 1..n exactly once')
    if symbols is not None:
        if len(symbols) != len(rows):
            raise ValueError(f'the CP2K forces file has {len(rows)} atoms, the frame has {len(symbols)}')
        elements = [re.sub(r'\d+$', '', row[1]) for row in rows]
        mismatched = [i for i, (a, b) in enumerate(zip(elements, symbols)) if a != b]
        if mismatched:
            i = mismatched[0]
            raise ValueError(f'CP2K atom order does not match the frame: atom {i} is {elements[i]}, not {symbols[i]}')
    return np.array([row[2] for row in rows], dtype=np.float64) * HARTREE_PER_BOHR_TO_EV_PER_A


def parse_cp2k_stress(text: str) -> np.ndarray:
    """Read the last stress tensor (GPa) of a CP2K stress file; return ``(3, 3)`` eV/Å^3 with the ASE sign.

    :param text: content of the file written by ``FORCE_EVAL/PRINT/STRESS_TENSOR`` (``*.stress_tensor``).
    :raises ValueError: if no ``STRESS| ... stress tensor [GPa]`` block with x, y, z rows is found.
    """
    blocks = re.split(r'STRESS\|\s+\w+ stress tensor \[GPa\]', text)
    if len(blocks) < 2:
        raise ValueError('no `stress tensor [GPa]` block in the CP2K stress file')
    rows = {}
    for line in blocks[-1].splitlines():
        match = re.match(r'\s*STRESS\|\s+([xyz])\s+(' + _FLOAT + r')\s+(' + _FLOAT + r')\s+(' + _FLOAT + r')', line)
        if match and match.group(1) not in rows:
            rows[match.group(1)] = [float(match.group(k)) for k in (2, 3, 4)]
        if len(rows) == 3:
            break
    if len(rows) != 3:
        raise ValueError('the CP2K stress tensor block does not have x, y and z rows')
    stress_gpa = np.array([rows['x'], rows['y'], rows['z']], dtype=np.float64)
    return -stress_gpa * EV_PER_A3_PER_GPA


def parse_cp2k_stress_per_evaluation(text: str) -> np.ndarray:
    """The stress of every force evaluation printed in CP2K's main output; ``(K, 3, 3)`` eV/Å^3, ASE sign.

    With ``FORCE_EVAL/PRINT/STRESS_TENSOR`` on and no ``FILENAME``, CP2K prints a ``STRESS| ... stress tensor
    [GPa]`` block right after each ``ENERGY| Total FORCE_EVAL`` line (one per MD step). Row ``k`` is the stress of
    evaluation ``k`` (the numbering of :func:`unconverged_evaluations`), ``nan`` where its block is missing.
    """
    segments = FORCE_EVAL_ENERGY_LINE.split(text)[1:]  # segment k follows the energy line of evaluation k
    out = np.full((len(segments), 3, 3), np.nan)
    for k, segment in enumerate(segments):
        head = re.split(r'MD\|\s+Step number|SCF WAVEFUNCTION OPTIMIZATION', segment, maxsplit=1)[0]
        try:
            out[k] = parse_cp2k_stress(head)
        except ValueError:
            continue
    return out


class Cp2kEvaluation(t.NamedTuple):
    """One force evaluation of a CP2K run read by :func:`parse_cp2k_evaluations` (eV, eV/Å, eV/Å^3 ASE sign).

    ``forces`` / ``stress`` are ``None`` when their block is missing after the energy line; ``scf_converged`` is
    False when an SCF failure marker (:data:`SCF_NOT_CONVERGED_MARKERS`) precedes the energy line.
    """

    energy: float
    forces: np.ndarray | None
    stress: np.ndarray | None
    scf_converged: bool


def parse_cp2k_evaluations(text: str, symbols: t.Sequence[str] | None = None) -> list[Cp2kEvaluation]:
    """Every completed force evaluation of CP2K's main output, in order (one per MD step of a REFTRAJ run).

    With ``FORCE_EVAL/PRINT/FORCES`` and ``.../STRESS_TENSOR`` on, without ``FILENAME`` and with ``EACH MD 1``,
    CP2K 2023.1 prints, for each evaluation ``k``, its SCF (with the failure markers when it did not converge),
    the ``ENERGY| Total FORCE_EVAL`` line, then the ``ATOMIC FORCES in [a.u.]`` block and the ``STRESS|
    Analytical stress tensor [GPa]`` block. Evaluation ``k`` is complete once its energy line is printed; an
    evaluation still running (or killed) when the output ends is not returned.

    :param symbols: the chemical symbols of the frames (checked against each forces block, as in
        :func:`parse_cp2k_forces`).
    :raises ValueError: when a forces block does not match ``symbols``.
    """
    segments = FORCE_EVAL_ENERGY_LINE.split(text)
    energies = [
        float(match.group(1).replace('D', 'E').replace('d', 'e')) * HARTREE_TO_EV
        for match in _ENERGY_VALUE.finditer(text)
    ]
    evaluations = []
    for k, energy in enumerate(energies):
        before, after = segments[k], 'ENERGY| Total FORCE_EVAL' + segments[k + 1]
        head = re.split(r'MD\|\s+Step number|SCF WAVEFUNCTION OPTIMIZATION', after, maxsplit=1)[0]
        forces = stress = None
        if 'ATOMIC FORCES in [a.u.]' in head:
            forces = parse_cp2k_forces(head, symbols)
        try:
            stress = parse_cp2k_stress(head)
        except ValueError:
            stress = None
        evaluations.append(Cp2kEvaluation(energy, forces, stress, not scf_failed(before)))
    return evaluations
