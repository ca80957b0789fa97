"""Settings of equilibrium sampling and trajectory import: defaults and validation (pure Python, no AiiDA).

The ``settings`` of the ``sample_frames`` and ``import_trajectory`` calcfunctions
(:mod:`aiida_ilmlff.calculations.functions.sampling`) and of the ``ilmlff.dataset`` work chain's ``eq`` input;
validate them with :func:`validate_sampling_settings` / :func:`validate_import_settings` before submitting.
"""

from __future__ import annotations

import typing as t

from .decorrelate import FPS_POOLS, METHODS, OBSERVABLES

__all__ = ('IMPORT_SETTINGS', 'SAMPLING_SETTINGS', 'validate_import_settings', 'validate_sampling_settings')

#: Settings of the equilibrium sampling (``settings`` of :func:`sample_frames` and :func:`import_trajectory`).
SAMPLING_SETTINGS: dict[str, t.Any] = {
    'method': 'inefficiency',  # inefficiency | fps | stride
    'n_max': None,  # most frames to keep (required for fps)
    'equilibration': 'detect',  # 'detect', a frame index, or None
    'observable': 'auto',  # auto | energy | volume | descriptor
    'stride': 1,  # for method 'stride'
    'fps_pool': 'decorrelated',  # fps among frames spaced by ceil(g), or 'all' frames after the cut
    'origin': 'EQ',  # EQ, or nEQ for a high-temperature trajectory (generator hot_md)
    'temperature': None,  # K recorded on the frames (default: the trajectory's, if known)
    'descriptor_r_max': 6.0,  # Å
    'descriptor_n_bins': 24,
}

#: Extra settings of :func:`import_trajectory` (reading the file).
IMPORT_SETTINGS: dict[str, t.Any] = {
    'start': 0,
    'stop': None,
    'read_stride': 1,
    'type_map': None,  # LAMMPS: element of type 1, 2, ...
    'element_map': None,  # GROMACS: atom name -> element
    'keep_labels': False,  # keep the file's energies/forces as labels (then give level_of_theory)
    'level_of_theory': '',
}


def validate_sampling_settings(settings: t.Mapping[str, t.Any]) -> list[str]:
    """Problems of equilibrium-sampling ``settings`` (one message each; empty if fine)."""
    errors = []
    unknown = sorted(set(settings) - set(SAMPLING_SETTINGS) - set(IMPORT_SETTINGS))
    if unknown:
        errors.append(f'unknown sampling setting(s) {unknown}; known: {sorted({*SAMPLING_SETTINGS, *IMPORT_SETTINGS})}')
    s = {**SAMPLING_SETTINGS, **settings}
    if s['method'] not in METHODS:
        errors.append(f'`method` must be one of {METHODS}, got {s["method"]!r}')
    if s['observable'] not in OBSERVABLES:
        errors.append(f'`observable` must be one of {OBSERVABLES}, got {s["observable"]!r}')
    if s['n_max'] is not None and (not isinstance(s['n_max'], int) or s['n_max'] < 1):
        errors.append(f'`n_max` must be a positive integer or None, got {s["n_max"]!r}')
    if s['method'] == 'fps' and s['n_max'] is None:
        errors.append('`method: fps` needs `n_max` (how many frames to pick)')
    equilibration = s['equilibration']
    if not (equilibration in ('detect', None) or (isinstance(equilibration, int) and equilibration >= 0)):
        errors.append(f"`equilibration` must be 'detect', None or a frame index >= 0, got {equilibration!r}")
    if s['origin'] not in ('EQ', 'nEQ'):
        errors.append(f"`origin` must be 'EQ' or 'nEQ' (a high-temperature trajectory), got {s['origin']!r}")
    if s['fps_pool'] not in FPS_POOLS:
        errors.append(f'`fps_pool` must be one of {FPS_POOLS}, got {s["fps_pool"]!r}')
    if not isinstance(s['stride'], int) or s['stride'] < 1:
        errors.append(f'`stride` must be a positive integer, got {s["stride"]!r}')
    return errors


def validate_import_settings(settings: t.Mapping[str, t.Any]) -> list[str]:
    """Problems of :func:`import_trajectory` ``settings`` (reading and sampling), one message each."""
    errors = validate_sampling_settings(settings)
    s = {**IMPORT_SETTINGS, **settings}
    for key in ('start', 'read_stride'):
        if not isinstance(s[key], int) or s[key] < (1 if key == 'read_stride' else 0):
            errors.append(f'`{key}` must be an integer >= {1 if key == "read_stride" else 0}, got {s[key]!r}')
    if s['keep_labels'] and not s['level_of_theory']:
        errors.append('`keep_labels` needs `level_of_theory` (the fingerprint of the method that made the labels)')
    return errors
