"""Equilibrium (EQ) frames from a trajectory: decorrelated selection and provenance tags (pure, no AiiDA).

The ``sample_frames`` and ``import_trajectory`` calcfunctions
(:mod:`aiida_ilmlff.calculations.functions.sampling`) turn the result into a ``FramesData`` and a ``Dict``.
"""

from __future__ import annotations

import typing as t

import numpy as np

from .decorrelate import pair_distance_descriptor, select_equilibrium_frames
from .settings import SAMPLING_SETTINGS

__all__ = ('sample_equilibrium_frames',)


def sample_equilibrium_frames(
    images: list,
    energies: np.ndarray,
    settings: t.Mapping[str, t.Any],
    *,
    source: str,
    source_format: str,
    temperatures: np.ndarray | None = None,
    keep_labels: bool = True,
) -> tuple[list, dict[str, t.Any]]:
    """Select decorrelated frames of a trajectory (:func:`~aiida_ilmlff.sampling.select_equilibrium_frames`) and
    tag them with where they came from.

    :param images: the trajectory's ``ase.Atoms`` (the selected ones are modified and returned).
    :param energies: ``(N,)`` potential energies [eV] (nan where unknown). :param settings: :data:`SAMPLING_SETTINGS`
        keys (missing keys default). :param source: uuid (or name) of the trajectory, written on every frame.
    :param source_format: what the trajectory was read from. :param temperatures: ``(N,)`` K, used when
        ``settings['temperature']`` is None. :param keep_labels: keep the frames' energies and forces.
    :returns: ``(frames, sampling)``: the selected ``ase.Atoms`` with ``info`` ``origin``, ``temperature``,
        ``source`` and ``perturbation`` (``generator`` ``md_sample`` for EQ, ``hot_md`` for nEQ, ``frame_index``,
        ``source_format`` and the selection record), and the ``sampling`` summary.
    """
    s = {**SAMPLING_SETTINGS, **settings}
    elements = sorted({int(z) for atoms in images for z in atoms.numbers})
    volumes = np.array([abs(atoms.cell.volume) for atoms in images])

    def descriptors() -> np.ndarray:
        return np.array(
            [
                pair_distance_descriptor(atoms, elements, float(s['descriptor_r_max']), int(s['descriptor_n_bins']))
                for atoms in images
            ]
        )

    selection = select_equilibrium_frames(
        len(images),
        energies=energies,
        volumes=volumes if np.ptp(volumes) > 0 else None,
        descriptors=descriptors,
        method=s['method'],
        n_max=s['n_max'],
        equilibration=s['equilibration'],
        observable=s['observable'],
        stride=int(s['stride']),
        fps_pool=s['fps_pool'],
    )
    record = {k: v for k, v in selection.to_dict().items() if k != 'indices'}
    generator = 'md_sample' if s['origin'] == 'EQ' else 'hot_md'
    chosen = []
    for index in selection.indices:
        atoms = images[index]
        if not keep_labels:
            atoms.calc = None
        atoms.info['origin'] = s['origin']
        temperature = s['temperature']
        if temperature is None and temperatures is not None and np.isfinite(temperatures[index]):
            temperature = float(temperatures[index])
        if temperature is not None:
            atoms.info['temperature'] = float(temperature)
        previous = atoms.info.get('perturbation') or {}
        history = {k: v for k, v in previous.items() if k != 'generator'}
        if 'generator' in previous:
            history['trajectory_generator'] = previous['generator']
        atoms.info['perturbation'] = {
            **history,
            'generator': generator,
            'frame_index': int(index),
            'source_format': source_format,
            **record,
        }
        atoms.info['source'] = source
        chosen.append(atoms)
    sampling = {
        **selection.to_dict(),
        'origin': s['origin'],
        'n_selected': len(chosen),
        'source': source,
        'source_format': source_format,
        'settings': {k: s[k] for k in SAMPLING_SETTINGS},
        'observable_mean': float(np.nanmean(energies)) if np.isfinite(energies).any() else None,
    }
    return chosen, sampling
