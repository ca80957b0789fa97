"""DFT labels: parse CP2K and pw.x results, quality control, and the level-of-theory fingerprint.

Three layers, each usable on its own:

* pure parsers of CP2K text files (:func:`parse_cp2k_stdout`, :func:`parse_cp2k_forces`,
  :func:`parse_cp2k_stress`) and the frame filter :func:`screen_frames` (numpy only, no AiiDA);
* the level-of-theory description and fingerprint (:func:`cp2k_level_of_theory`,
  :func:`pw_level_of_theory`, :func:`fingerprint`);
* calcfunctions that keep the provenance graph complete: :func:`frames_to_structures` (frames ->
  ``StructureData``), :func:`extract_cp2k_labels` and :func:`extract_pw_labels` (one calculation ->
  an ``ArrayData`` of labels), and :func:`quality_control` (labels -> ``labelled`` ``FramesData`` +
  ``rejected`` + ``summary``).

Units of every label produced here: energy in eV, forces in eV/Å, stress in eV/Å^3 with the ASE sign
(``stress = (1/V) dE/d(strain)``, positive under tension). Conversions use ASE's constants (CODATA 2014):
1 Hartree = 27.211386 eV, 1 bohr = 0.52917721 Å, 1 GPa = 1/160.21766 eV/Å^3. CP2K prints forces in
Hartree/bohr and the stress tensor in GPa with the opposite sign (positive under compression), as does
pw.x (aiida-quantumespresso gives it in GPa).
"""

from __future__ import annotations

import hashlib
import json
import re
import typing as t

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction
from ase import units

__all__ = (
    'CP2K_FORCES_FILE',
    'CP2K_STRESS_FILE',
    'EV_PER_A3_PER_GPA',
    'HARTREE_PER_BOHR_TO_EV_PER_A',
    'HARTREE_TO_EV',
    'REASONS',
    'Cp2kOutput',
    'cp2k_level_of_theory',
    'extract_cp2k_labels',
    'extract_pw_labels',
    'fingerprint',
    'frames_to_structures',
    'parse_cp2k_forces',
    'parse_cp2k_stdout',
    'parse_cp2k_stress',
    'pw_level_of_theory',
    'quality_control',
    'robust_zscores',
    'screen_frames',
)

HARTREE_TO_EV = units.Hartree
HARTREE_PER_BOHR_TO_EV_PER_A = units.Hartree / units.Bohr
EV_PER_A3_PER_GPA = units.GPa

#: Files CP2K writes with ``FORCE_EVAL/PRINT/FORCES/FILENAME forces`` and ``.../STRESS_TENSOR/FILENAME stress``
#: for ``PROJECT aiida`` (the project name aiida-cp2k sets) and a single point.
CP2K_FORCES_FILE = 'aiida-forces-1_0.xyz'
CP2K_STRESS_FILE = 'aiida-stress-1_0.stress_tensor'
CP2K_OUTPUT_FILE = 'aiida.out'

#: Why a frame can be rejected (the ``reason`` of an entry of the ``rejected`` output).
REASONS = {
    'calculation_failed': 'the DFT work chain failed (see exit_status and message)',
    'scf_not_converged': 'the SCF did not converge (after the SCF restart ladder)',
    'parse_failed': 'the labels could not be read from the retrieved files',
    'non_finite': 'energy, forces or stress contain nan or inf',
    'max_force': 'an atomic force exceeds `max_force`',
    'energy_outlier': 'the energy per atom is an outlier (robust z-score above `max_energy_zscore`)',
    'duplicate': 'the frame duplicates an earlier frame (same species, cell and positions)',
}

_FLOAT = r'[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?'


# --------------------------------------------------------------------------------------------- CP2K parsers


class Cp2kOutput(t.NamedTuple):
    """What :func:`parse_cp2k_stdout` reads from CP2K's main output.

    ``energy`` [eV] is the last ``ENERGY| Total FORCE_EVAL`` value (``None`` if absent); ``scf_converged`` is
    False when CP2K printed ``SCF run NOT converged``, ``outer SCF loop FAILED`` or ran out of its walltime;
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
    unconverged = 'SCF run NOT converged' in text or 'outer SCF loop FAILED' in text
    walltime = 'exceeded requested execution time' in text
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
        xtb_charge_abort='Switch-off CHECK_ATOMIC_CHARGES' in text or 'Charge outside chemical range' in text,
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


# --------------------------------------------------------------------------------------------- fingerprint


def _normalise(value: t.Any) -> t.Any:
    """Canonical form of a CP2K/QE input value: upper-case trimmed strings, floats for numbers, sorted keys."""
    if isinstance(value, t.Mapping):
        return {str(key).upper(): _normalise(val) for key, val in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_normalise(item) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        lowered = text.lower()
        if lowered in ('t', 'true', '.true.', 'on', 'yes'):
            return True
        if lowered in ('f', 'false', '.false.', 'off', 'no'):
            return False
        try:
            return float(text.replace('D', 'E').replace('d', 'e'))
        except ValueError:
            return text.upper()
    return value


def fingerprint(settings: t.Mapping, prefix: str = '') -> str:
    """Return ``'<prefix>:<16 hex>'``: the first 16 hex digits of the sha256 of ``settings`` as canonical JSON.

    :param settings: the energy-relevant settings (see :func:`cp2k_level_of_theory`); normalised first, so
        ``400``, ``400.0`` and ``'400'`` or ``'pbe'`` and ``'PBE'`` give the same fingerprint.
    :param prefix: a readable tag put in front, e.g. ``cp2k/PBE-D3(BJ)``.
    """
    payload = json.dumps(_normalise(settings), sort_keys=True, separators=(',', ':'))
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return f'{prefix}:{digest}' if prefix else digest


def _get(mapping: t.Mapping, *path: str) -> t.Any:
    """Case-insensitive nested lookup; ``None`` if a key is missing."""
    node: t.Any = mapping
    for key in path:
        if not isinstance(node, t.Mapping):
            return None
        found = {str(k).upper(): v for k, v in node.items()}.get(key.upper())
        if found is None:
            return None
        node = found
    return node


#: Keys of CP2K's ``FORCE_EVAL/DFT/QS/XTB`` and ``.../SCF`` sections that do not change energies.
_CP2K_NON_PHYSICAL = {'CHECK_ATOMIC_CHARGES'}


def cp2k_level_of_theory(
    parameters: t.Mapping, basissets: t.Mapping | None = None, pseudos: t.Mapping | None = None
) -> dict:
    """Describe and fingerprint the reference method of a CP2K input.

    Included: ``FORCE_EVAL/METHOD``; from ``FORCE_EVAL/DFT``: ``QS`` (method, ``EPS_DEFAULT``, the xTB section
    without ``CHECK_ATOMIC_CHARGES``), ``XC`` (functional and dispersion), ``MGRID`` (cutoffs), ``CHARGE``,
    ``MULTIPLICITY``, ``UKS``/``LSD``, ``BASIS_SET_FILE_NAME``, ``POTENTIAL_FILE_NAME``, ``POISSON``,
    ``KPOINTS``, ``SCF/SMEAR``; the ``KIND`` sections' element, basis set and potential names; and, when
    basis sets or pseudopotentials are given as nodes, their md5 (or uuid). Excluded: the SCF algorithm
    (OT/diagonalisation, mixing, thresholds), printing and walltime, which do not define the method. CP2K's
    data files (``BASIS_MOLOPT``, ``GTH_POTENTIALS``) are identified by name: they live on the compute host.

    :param parameters: the CP2K input as aiida-cp2k's nested dict.
    :param basissets: optional mapping kind -> basis-set node (``cp2k.basissets`` input).
    :param pseudos: optional mapping kind -> pseudopotential node (``cp2k.pseudos`` input).
    :return: ``{'engine': 'cp2k', 'method': ..., 'settings': {...}, 'fingerprint': 'cp2k/<method>:<hex>'}``.
    """
    dft = _get(parameters, 'FORCE_EVAL', 'DFT') or {}
    qs = dict(_get(dft, 'QS') or {})
    xtb = _get(qs, 'XTB')
    qs = {key: value for key, value in qs.items() if str(key).upper() != 'XTB'}
    if xtb is not None:
        qs['XTB'] = {k: v for k, v in xtb.items() if str(k).upper() not in _CP2K_NON_PHYSICAL}
    settings: dict[str, t.Any] = {
        'METHOD': _get(parameters, 'FORCE_EVAL', 'METHOD') or 'QS',
        'QS': qs,
        'XC': _get(dft, 'XC'),
        'MGRID': _get(dft, 'MGRID'),
        'CHARGE': _get(dft, 'CHARGE') or 0,
        'MULTIPLICITY': _get(dft, 'MULTIPLICITY') or 1,
        'UKS': bool(_normalise(_get(dft, 'UKS') or _get(dft, 'LSD') or False)),
        'BASIS_SET_FILE_NAME': _get(dft, 'BASIS_SET_FILE_NAME'),
        'POTENTIAL_FILE_NAME': _get(dft, 'POTENTIAL_FILE_NAME'),
        'POISSON': _get(dft, 'POISSON'),
        'KPOINTS': _get(dft, 'KPOINTS'),
        'SMEAR': _get(dft, 'SCF', 'SMEAR'),
    }
    kinds = _get(parameters, 'FORCE_EVAL', 'SUBSYS', 'KIND') or []
    if isinstance(kinds, t.Mapping):
        kinds = [kinds]
    settings['KINDS'] = sorted(
        (
            {
                'KIND': str(kind.get('_', '')),
                'ELEMENT': _get(kind, 'ELEMENT'),
                'BASIS_SET': _get(kind, 'BASIS_SET'),
                'POTENTIAL': _get(kind, 'POTENTIAL'),
            }
            for kind in kinds
        ),
        key=lambda kind: kind['KIND'],
    )
    for name, nodes in (('BASISSET_NODES', basissets), ('PSEUDO_NODES', pseudos)):
        if nodes:
            settings[name] = {
                kind: getattr(node, 'md5', None) or node.base.attributes.get('md5', None) or node.uuid
                for kind, node in sorted(nodes.items())
            }
    qs_method = str(_get(qs, 'METHOD') or 'GPW').upper()
    if qs_method == 'XTB':
        gfn = int(_normalise(_get(xtb or {}, 'GFN_TYPE') or 1))
        method = f'GFN{gfn}-xTB'
    else:
        method = _describe_xc(settings['XC'])
    return {
        'engine': 'cp2k',
        'method': method,
        'settings': settings,
        'fingerprint': fingerprint(settings, f'cp2k/{method}'),
    }


def _describe_xc(xc: t.Mapping | None) -> str:
    """A short label such as ``PBE-D3(BJ)`` for a CP2K ``XC`` section."""
    functional = _get(xc or {}, 'XC_FUNCTIONAL')
    name = 'XC'
    if isinstance(functional, t.Mapping):
        name = str(functional.get('_') or next((k for k in functional if k != '_'), 'XC')).upper()
    elif isinstance(functional, str):
        name = functional.upper()
    pair = _get(xc or {}, 'VDW_POTENTIAL', 'PAIR_POTENTIAL')
    if isinstance(pair, t.Mapping) and _get(pair, 'TYPE'):
        name += '-' + str(_get(pair, 'TYPE')).upper().replace('DFTD', 'D')
    return name


def pw_level_of_theory(parameters: t.Mapping, pseudos: t.Mapping[str, t.Any], kpoints: t.Any = 'gamma') -> dict:
    """Describe and fingerprint the reference method of a pw.x input.

    Included: the pseudopotentials' md5 per element, ``ecutwfc``, ``ecutrho``, ``input_dft``, the dispersion
    (``vdw_corr``, ``dftd3_version``, ``dftd3_threebody``), occupations and smearing, ``nspin``,
    ``tot_charge``, ``assume_isolated`` and the k-points. Excluded: convergence thresholds and mixing.

    :param parameters: the ``pw.parameters`` dict (namelists).
    :param pseudos: element -> ``UpfData`` (or anything with an ``md5`` attribute).
    :param kpoints: a description of the k-points (``'gamma'`` or the mesh as a list).
    :return: ``{'engine': 'qe', 'method': ..., 'settings': {...}, 'fingerprint': 'qe/<method>:<hex>'}``.
    """
    system = {str(k).lower(): v for k, v in (_get(parameters, 'SYSTEM') or {}).items()}
    keys = (
        'ecutwfc',
        'ecutrho',
        'input_dft',
        'vdw_corr',
        'dftd3_version',
        'dftd3_threebody',
        'occupations',
        'smearing',
        'degauss',
        'nspin',
        'tot_charge',
        'assume_isolated',
    )
    settings = {key: system.get(key) for key in keys}
    settings['pseudos'] = {kind: getattr(node, 'md5', None) or str(node) for kind, node in sorted(pseudos.items())}
    settings['kpoints'] = kpoints
    functional = {str(getattr(node, 'functional', '') or '').upper() for node in pseudos.values()} - {''}
    method = str(settings['input_dft'] or (functional.pop() if len(functional) == 1 else 'PBE')).upper()
    if settings['vdw_corr']:
        version = int(settings['dftd3_version'] or 3)
        method += '-D3(BJ)' if version == 4 else '-D3' if version == 3 else f'-{settings["vdw_corr"]}'
    return {
        'engine': 'qe',
        'method': method,
        'settings': settings,
        'fingerprint': fingerprint(settings, f'qe/{method}'),
    }


# --------------------------------------------------------------------------------------------- screening


def robust_zscores(values: np.ndarray) -> np.ndarray:
    """Robust z-scores ``0.6745 (x - median) / MAD`` (MAD: median absolute deviation).

    Returns zeros when fewer than three values are given or the MAD is zero (no spread to judge by).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 3:
        return np.zeros_like(values)
    median = np.median(values)
    mad = np.median(np.abs(values - median))
    if mad <= 0 or not np.isfinite(mad):
        return np.zeros_like(values)
    return 0.6745 * (values - median) / mad


def _composition_residuals(energies: np.ndarray, numbers: t.Sequence[np.ndarray]) -> np.ndarray:
    """Energy per atom left after a least-squares fit of per-element reference energies (eV/atom).

    With one composition this is the deviation from the mean energy per atom; with several it removes the
    composition dependence, so that frames of different ion mixtures can be compared.
    """
    elements = sorted({int(z) for nums in numbers for z in nums})
    counts = np.array([[np.count_nonzero(nums == z) for z in elements] for nums in numbers], dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return (energies - counts @ coefficients) / counts.sum(axis=1)


def screen_frames(
    energies: t.Sequence[float],
    forces: t.Sequence[np.ndarray],
    numbers: t.Sequence[np.ndarray],
    positions: t.Sequence[np.ndarray],
    cells: t.Sequence[np.ndarray],
    *,
    stresses: t.Sequence[np.ndarray | None] | None = None,
    converged: t.Sequence[bool] | None = None,
    max_force: float = 50.0,
    max_energy_zscore: float = 10.0,
    duplicate_tolerance: float = 1e-4,
) -> dict[int, dict]:
    """Return ``{position in the input sequence: {'reason': ..., 'detail': ...}}`` for the frames to drop.

    Checks, in order (a frame gets the first reason that applies): SCF not converged; non-finite energy,
    forces or stress; any atomic force norm above ``max_force`` [eV/Å]; a duplicate of an earlier frame
    (same atomic numbers, and cell and positions equal within ``duplicate_tolerance`` [Å]; the first one is
    kept); an energy-per-atom outlier, judged among the frames that passed the other checks by the robust
    z-score of the residual energy per atom after fitting per-element reference energies (so mixed
    compositions are fine), threshold ``max_energy_zscore``.

    :param energies: ``(N,)`` eV. :param forces: N arrays ``(n_i, 3)`` eV/Å.
    :param numbers: N arrays ``(n_i,)`` atomic numbers. :param positions: N arrays ``(n_i, 3)`` Å.
    :param cells: N arrays ``(3, 3)`` Å. :param stresses: N arrays ``(3, 3)`` eV/Å^3 or ``None`` entries.
    :param converged: N bools (all True if omitted).
    """
    n = len(energies)
    rejected: dict[int, dict] = {}
    converged = [True] * n if converged is None else list(converged)
    stresses = [None] * n if stresses is None else list(stresses)
    for i in range(n):
        if not converged[i]:
            rejected[i] = {'reason': 'scf_not_converged', 'detail': 'CP2K/pw.x reported an unconverged SCF'}
            continue
        values = [np.atleast_1d(energies[i]), np.asarray(forces[i])]
        if stresses[i] is not None:
            values.append(np.asarray(stresses[i]))
        if not all(np.all(np.isfinite(value)) for value in values):
            rejected[i] = {'reason': 'non_finite', 'detail': 'nan or inf in energy, forces or stress'}
            continue
        norms = np.linalg.norm(np.asarray(forces[i]), axis=1)
        if norms.size and norms.max() > max_force:
            atom = int(norms.argmax())
            rejected[i] = {
                'reason': 'max_force',
                'detail': f'|F| = {norms.max():.2f} eV/A on atom {atom} exceeds {max_force:g} eV/A',
            }

    seen: dict[tuple, list[int]] = {}
    scale = max(duplicate_tolerance, 1e-12)
    for i in range(n):
        if i in rejected:
            continue
        key = (
            tuple(np.asarray(numbers[i]).tolist()),
            tuple(np.round(np.asarray(cells[i]) / scale).astype(np.int64).ravel()),
        )
        for j in seen.get(key, []):
            if np.allclose(positions[i], positions[j], atol=duplicate_tolerance, rtol=0) and np.allclose(
                cells[i], cells[j], atol=duplicate_tolerance, rtol=0
            ):
                rejected[i] = {'reason': 'duplicate', 'detail': f'duplicate of frame {j}'}
                break
        else:
            seen.setdefault(key, []).append(i)

    remaining = [i for i in range(n) if i not in rejected]
    if len(remaining) >= 3:
        residuals = _composition_residuals(
            np.array([energies[i] for i in remaining], dtype=np.float64), [np.asarray(numbers[i]) for i in remaining]
        )
        scores = robust_zscores(residuals)
        for i, score, residual in zip(remaining, scores, residuals):
            if abs(score) > max_energy_zscore:
                rejected[i] = {
                    'reason': 'energy_outlier',
                    'detail': f'robust z-score {score:.1f} of the energy per atom (residual {residual:.4f} eV/atom)',
                }
    return rejected


# --------------------------------------------------------------------------------------------- calcfunctions


@calcfunction
def frames_to_structures(frames, indices: orm.List) -> dict[str, orm.StructureData]:
    """Return frames ``indices`` of ``frames`` as ``StructureData`` outputs ``frame_<index:06d>``.

    Only species, positions [Å], cell [Å] and pbc are kept (kind name = element), so equal geometries hash
    equally and cached DFT calculations are reused.

    :raises IndexError: for an index out of range.
    """
    from ase import Atoms

    outputs = {}
    for index in indices.get_list():
        frame = frames[int(index)]
        atoms = Atoms(
            numbers=frame.get_atomic_numbers(),
            positions=frame.get_positions(),
            cell=frame.get_cell(),
            pbc=frame.get_pbc(),
        )
        outputs[f'frame_{int(index):06d}'] = orm.StructureData(ase=atoms)
    return outputs


def _calculation_of(node: orm.Node) -> orm.Node | None:
    """The process that created ``node`` (``None`` if unknown)."""
    try:
        return node.creator
    except Exception:  # a node without a creator link
        return None


@calcfunction
def extract_cp2k_labels(retrieved: orm.FolderData, structure: orm.StructureData) -> orm.ArrayData | ExitCode:
    """Read energy, forces (and stress, if printed) of one CP2K single point from its retrieved files.

    Reads ``aiida.out`` (energy, SCF status), :data:`CP2K_FORCES_FILE` and, when present,
    :data:`CP2K_STRESS_FILE`; never the remote folder.

    :return: ``ArrayData`` with arrays ``energy`` ``(1,)`` eV, ``forces`` ``(n, 3)`` eV/Å and optionally
        ``stress`` ``(3, 3)`` eV/Å^3 (ASE sign); attributes ``scf_converged``, ``cp2k_version``,
        ``n_warnings``, ``calculation_pk``, ``calculation_uuid``. Exit code 310 when a file is missing or
        cannot be read, 311 when the atoms do not match the structure.
    """
    names = retrieved.base.repository.list_object_names()
    for name in (CP2K_OUTPUT_FILE, CP2K_FORCES_FILE):
        if name not in names:
            return ExitCode(310, f'`{name}` is not in the retrieved files')
    output = parse_cp2k_stdout(retrieved.base.repository.get_object_content(CP2K_OUTPUT_FILE))
    if output.energy is None:
        return ExitCode(310, 'no `ENERGY| Total FORCE_EVAL` line in aiida.out')
    symbols = [site.kind_name for site in structure.sites]
    kinds = {kind.name: kind.symbol for kind in structure.kinds}
    try:
        forces = parse_cp2k_forces(
            retrieved.base.repository.get_object_content(CP2K_FORCES_FILE), [kinds[s] for s in symbols]
        )
    except ValueError as exception:
        return ExitCode(311 if 'match' in str(exception) or 'atoms' in str(exception) else 310, str(exception))
    labels = orm.ArrayData()
    labels.set_array('energy', np.array([output.energy]))
    labels.set_array('forces', forces)
    if CP2K_STRESS_FILE in names:
        try:
            labels.set_array(
                'stress', parse_cp2k_stress(retrieved.base.repository.get_object_content(CP2K_STRESS_FILE))
            )
        except ValueError as exception:
            return ExitCode(310, str(exception))
    calculation = _calculation_of(retrieved)
    labels.base.attributes.set_many(
        {
            'scf_converged': output.scf_converged,
            'cp2k_version': output.version,
            'n_warnings': output.n_warnings,
            'calculation_pk': calculation.pk if calculation is not None else None,
            'calculation_uuid': calculation.uuid if calculation is not None else None,
            'units': {'energy': 'eV', 'forces': 'eV/Angstrom', 'stress': 'eV/Angstrom^3 (ASE sign)'},
        }
    )
    return labels


@calcfunction
def extract_pw_labels(
    output_parameters: orm.Dict, output_trajectory: orm.TrajectoryData, structure: orm.StructureData
) -> orm.ArrayData | ExitCode:
    """Read energy, forces (and stress, if computed) of one pw.x single point from aiida-quantumespresso's outputs.

    The energy is ``output_parameters['energy']`` (eV, the total energy, or the free energy with smearing),
    the forces the last ``forces`` array of the trajectory (eV/Å), the stress its last ``stress`` (GPa,
    converted to eV/Å^3 with the ASE sign).

    :return: as :func:`extract_cp2k_labels`; exit code 310 when a label is missing, 311 on an atom-count mismatch.
    """
    parameters = output_parameters.get_dict()
    if 'energy' not in parameters:
        return ExitCode(310, 'no `energy` in output_parameters')
    if 'forces' not in output_trajectory.get_arraynames():
        return ExitCode(310, 'no `forces` in output_trajectory: set CONTROL.tprnfor')
    forces = np.asarray(output_trajectory.get_array('forces'))[-1]
    if forces.shape != (len(structure.sites), 3):
        return ExitCode(311, f'pw.x forces have shape {forces.shape} for {len(structure.sites)} atoms')
    labels = orm.ArrayData()
    labels.set_array('energy', np.array([float(parameters['energy'])]))
    labels.set_array('forces', forces.astype(np.float64))
    if 'stress' in output_trajectory.get_arraynames():
        labels.set_array('stress', -np.asarray(output_trajectory.get_array('stress'))[-1] * EV_PER_A3_PER_GPA)
    calculation = _calculation_of(output_parameters)
    converged = parameters.get('convergence_info', {}).get('scf_conv', {}).get('converged', True)
    labels.base.attributes.set_many(
        {
            'scf_converged': bool(converged) if converged is not None else True,
            'qe_version': parameters.get('code_version'),
            'n_warnings': len(parameters.get('warnings', [])),
            'calculation_pk': calculation.pk if calculation is not None else None,
            'calculation_uuid': calculation.uuid if calculation is not None else None,
            'units': {'energy': 'eV', 'forces': 'eV/Angstrom', 'stress': 'eV/Angstrom^3 (ASE sign)'},
        }
    )
    return labels


@calcfunction
def quality_control(
    frames,
    failures: orm.Dict,
    level_of_theory: orm.Dict,
    max_force: orm.Float,
    max_energy_zscore: orm.Float,
    duplicate_tolerance: orm.Float,
    compute_stress: orm.Bool,
    **labels: orm.ArrayData,
) -> dict[str, orm.Data]:
    """Keep the frames whose labels pass quality control; list the others with their reason.

    :param frames: the ``FramesData`` that was labelled (N frames).
    :param failures: ``{str(index): {'reason', 'detail', 'pk', 'exit_status'}}`` for frames whose calculation
        failed (they have no labels).
    :param level_of_theory: ``{'fingerprint': str, ...}`` (see :func:`cp2k_level_of_theory`); the fingerprint
        is written on every labelled frame.
    :param max_force: largest allowed atomic force norm [eV/Å]. :param max_energy_zscore: largest allowed
        robust z-score of the energy per atom. :param duplicate_tolerance: Å, for duplicate detection.
    :param compute_stress: require and keep the stress.
    :param labels: ``frame_<index:06d>`` -> ``ArrayData`` from :func:`extract_cp2k_labels` /
        :func:`extract_pw_labels`.
    :return: ``labelled`` (``FramesData`` of the kept frames, in input order; absent if none is kept),
        ``rejected`` (``Dict``: ``str(index) -> {'reason', 'detail', 'pk'}``) and ``summary`` (``Dict``).
    """
    n_frames = len(frames)
    frames.get_arrays()  # load all frames once: the per-frame accessors below then slice the cached arrays
    rejected: dict[str, dict] = {str(k): dict(v) for k, v in failures.get_dict().items()}
    indices, energies, forces, stresses, converged, pks = [], [], [], [], [], []
    numbers, positions, cells = [], [], []
    want_stress = compute_stress.value
    for key in sorted(labels):
        index = int(key.split('_')[-1])
        node = labels[key]
        if str(index) in rejected:
            continue
        stress = node.get_array('stress') if 'stress' in node.get_arraynames() else None
        if want_stress and stress is None:
            rejected[str(index)] = {
                'reason': 'parse_failed',
                'detail': 'stress requested but not found',
                'pk': node.base.attributes.get('calculation_pk', None),
            }
            continue
        indices.append(index)
        energies.append(float(node.get_array('energy')[0]))
        forces.append(node.get_array('forces'))
        stresses.append(stress if want_stress else None)
        converged.append(bool(node.base.attributes.get('scf_converged', True)))
        pks.append(node.base.attributes.get('calculation_pk', None))
        numbers.append(np.asarray(frames.get_numbers(index)))
        positions.append(np.asarray(frames.get_positions(index)))
        cells.append(np.asarray(frames.get_cell(index)))

    dropped = screen_frames(
        energies,
        forces,
        numbers,
        positions,
        cells,
        stresses=stresses,
        converged=converged,
        max_force=max_force.value,
        max_energy_zscore=max_energy_zscore.value,
        duplicate_tolerance=duplicate_tolerance.value,
    )
    for position, entry in dropped.items():
        detail = entry['detail']
        if entry['reason'] == 'duplicate':
            detail = f'duplicate of frame {indices[int(detail.split()[-1])]}'
        rejected[str(indices[position])] = {'reason': entry['reason'], 'detail': detail, 'pk': pks[position]}

    missing = [i for i in range(n_frames) if str(i) not in rejected and i not in indices]
    for i in missing:
        rejected[str(i)] = {'reason': 'parse_failed', 'detail': 'no labels were produced for this frame', 'pk': None}

    kept = [k for k, index in enumerate(indices) if str(index) not in rejected]
    fingerprint_value = level_of_theory['fingerprint']
    outputs: dict[str, orm.Data] = {}
    if kept:
        selected = frames.select([indices[k] for k in kept])
        outputs['labelled'] = selected.with_labels(
            np.array([energies[k] for k in kept]),
            [forces[k] for k in kept],
            np.array([stresses[k] for k in kept]) if want_stress else None,
            level_of_theory=fingerprint_value,
        )
    reasons: dict[str, int] = {}
    for entry in rejected.values():
        reasons[entry['reason']] = reasons.get(entry['reason'], 0) + 1
    ordered = {key: rejected[key] for key in sorted(rejected, key=int)}
    outputs['rejected'] = orm.Dict(ordered)
    outputs['summary'] = orm.Dict(
        {
            'n_frames': n_frames,
            'n_labelled': len(kept),
            'n_rejected': len(ordered),
            'rejected_by_reason': reasons,
            'labelled_indices': [indices[k] for k in kept],
            'level_of_theory': fingerprint_value,
            'method': level_of_theory.get('method', None),
            'engine': level_of_theory.get('engine', None),
            'stress': want_stress,
            'thresholds': {
                'max_force': max_force.value,
                'max_energy_zscore': max_energy_zscore.value,
                'duplicate_tolerance': duplicate_tolerance.value,
            },
            'units': {'energy': 'eV', 'forces': 'eV/Angstrom', 'stress': 'eV/Angstrom^3 (ASE sign)'},
        }
    )
    return outputs
