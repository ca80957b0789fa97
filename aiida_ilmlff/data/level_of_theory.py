"""Level-of-theory fingerprints: which reference method produced a label, as a short, stable string.

A fingerprint is ``'<engine>/<method>:<16 hex>'``: the first 16 hex digits of the sha256 of the
energy-relevant settings as canonical JSON (:func:`fingerprint`). Labels with equal fingerprints come from
the same Hamiltonian and can be merged into one training set; the SCF algorithm, thresholds, printing and
walltime are left out, so a run rescued by the SCF ladder keeps its fingerprint.
:func:`cp2k_level_of_theory` and :func:`pw_level_of_theory` describe a CP2K or pw.x input (plain dicts; the
basis-set and pseudopotential arguments may be AiiDA nodes but only their ``md5``/``uuid`` is read).
"""

from __future__ import annotations

import json
import typing as t

from aiida_ilmlff.common.hashing import sha256_bytes

__all__ = ('case_insensitive_get', 'cp2k_level_of_theory', 'fingerprint', 'pw_level_of_theory')


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
    digest = sha256_bytes(payload)[:16]
    return f'{prefix}:{digest}' if prefix else digest


def case_insensitive_get(mapping: t.Mapping | None, *path: str) -> t.Any:
    """Nested lookup of ``path`` in ``mapping`` with keys matched case-insensitively; ``None`` if a key is missing.

    CP2K keywords and pw.x namelists are case-insensitive, so ``{'force_eval': {'dft': ...}}`` and
    ``{'FORCE_EVAL': {'DFT': ...}}`` are read alike.
    """
    node: t.Any = mapping or {}
    for key in path:
        if not isinstance(node, t.Mapping):
            return None
        found = {str(k).upper(): v for k, v in node.items()}.get(key.upper())
        if found is None:
            return None
        node = found
    return node


_get = case_insensitive_get

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
