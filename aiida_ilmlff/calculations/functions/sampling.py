"""Calcfunctions of training-set sampling: EQ frames from trajectories, nEQ perturbations, label summaries.

Each wraps a pure function of :mod:`aiida_ilmlff.sampling` so every frame of a data set is linked to the
trajectory, structure or frame set it came from, and the settings used are input nodes.

* :func:`import_trajectory`: a trajectory file (``SinglefileData``: extxyz, ASE .traj, LAMMPS dump, GROMACS,
  the project's HDF5) -> decorrelated ``EQ`` frames (or ``nEQ`` for a hot trajectory) + a ``sampling`` Dict.
* :func:`sample_frames`: the same from a ``FramesData`` trajectory (CP2K AIMD, MLFF MD).
* :func:`parse_cp2k_md`: the retrieved files of CP2K MD runs -> a labelled ``FramesData`` of every step.
* :func:`generate_neq_frames`: perturbations of frames -> ``nEQ`` frames + ``rejected`` Dict.
* :func:`dataset_summary`: counts and energy-per-atom / max-force distributions per origin.
* :func:`structures_to_frames`: boxes (``StructureData`` with ``mol_id``/``molecules``) -> a ``FramesData``.

Settings keys are checked by :func:`~aiida_ilmlff.sampling.settings.validate_sampling_settings` and
:func:`~aiida_ilmlff.sampling.settings.validate_import_settings` (use them before submitting anything).
Metadata recorded on every sampled frame (its ``perturbation`` JSON):
``generator`` (``md_sample`` for EQ, ``hot_md`` for nEQ), ``frame_index`` (in the trajectory),
``equilibration_index``, ``statistical_inefficiency``, ``spacing``, ``method``, ``observable``, ``n_frames``.
"""

from __future__ import annotations

import typing as t

import numpy as np
from aiida import orm
from aiida.engine import calcfunction

from aiida_ilmlff.data.frames import FramesData
from aiida_ilmlff.sampling import (
    MIN_DISTANCE,
    TRAJECTORY_FORMATS,
    generate_neq,
    label_summary,
    neq_report,
    read_trajectory,
    validate_generators,
)
from aiida_ilmlff.sampling.equilibrium import sample_equilibrium_frames
from aiida_ilmlff.sampling.settings import (
    IMPORT_SETTINGS,
    SAMPLING_SETTINGS,
    validate_import_settings,
    validate_sampling_settings,
)
from aiida_ilmlff.sampling.stats import frame_observables, generators_by_origin

__all__ = (
    'dataset_summary',
    'generate_neq_frames',
    'import_trajectory',
    'parse_cp2k_md',
    'sample_frames',
    'structures_to_frames',
)


def _sample(images: list, energies: np.ndarray, settings: dict, **kwargs: t.Any) -> dict[str, orm.Data]:
    """The ``frames`` and ``sampling`` outputs of ``sampling.equilibrium.sample_equilibrium_frames``."""
    chosen, sampling = sample_equilibrium_frames(images, energies, settings, **kwargs)
    return {'frames': FramesData.from_ase(chosen), 'sampling': orm.Dict(sampling)}


@calcfunction
def import_trajectory(
    trajectory: orm.SinglefileData,
    fmt: orm.Str,
    composition: orm.Dict | None = None,
    topology: orm.SinglefileData | None = None,
    settings: orm.Dict | None = None,
) -> dict[str, orm.Data]:
    """Import an MD trajectory and keep decorrelated frames (EQ by default) with molecule ids.

    :param trajectory: the trajectory file. :param fmt: one of
        :data:`~aiida_ilmlff.sampling.TRAJECTORY_FORMATS`.
    :param composition: ion name -> count of the simulated box (molecule ids and species check).
    :param topology: GROMACS topology (``.gro``/``.tpr``/``.pdb``) for ``fmt='gromacs'``.
    :param settings: :data:`SAMPLING_SETTINGS` and :data:`IMPORT_SETTINGS` keys.
    :returns: ``frames`` (``FramesData``, unlabelled unless ``keep_labels``) and ``sampling`` (``Dict``: the
        equilibration cut, statistical inefficiency, spacing and indices).
    :raises ValueError: for invalid settings, an unknown format, or species not matching the composition.
    """
    values = settings.get_dict() if settings is not None else {}
    errors = validate_import_settings(values)
    if errors:
        raise ValueError('invalid import settings: ' + '; '.join(errors))
    s = {**IMPORT_SETTINGS, **values}
    if fmt.value not in TRAJECTORY_FORMATS:
        raise ValueError(f'unknown trajectory format {fmt.value!r}: choose from {list(TRAJECTORY_FORMATS)}')
    with trajectory.as_path() as path:
        if topology is not None:
            with topology.as_path() as topology_path:
                imported = _read(path, fmt.value, composition, topology_path, s)
        else:
            imported = _read(path, fmt.value, composition, None, s)
    if s['keep_labels']:
        for atoms in imported.images:
            atoms.info['level_of_theory'] = s['level_of_theory']
    sampling_settings = {k: v for k, v in values.items() if k in SAMPLING_SETTINGS}
    outputs = _sample(
        imported.images,
        imported.energies,
        sampling_settings,
        source=trajectory.uuid,
        source_format=fmt.value,
        keep_labels=bool(s['keep_labels']),
    )
    sampling = outputs['sampling'].get_dict()
    sampling.update(
        {
            'file_indices': [int(imported.indices[i]) for i in sampling['indices']],
            'molecule_source': imported.molecule_source,
            'times_fs': None if imported.times is None else [float(imported.times[i]) for i in sampling['indices']],
        }
    )
    outputs['sampling'] = orm.Dict(sampling)
    return outputs


def _read(path, fmt, composition, topology, s):
    return read_trajectory(
        path,
        fmt,
        composition=composition.get_dict() if composition is not None else None,
        topology=topology,
        type_map=s['type_map'],
        element_map=s['element_map'],
        start=int(s['start']),
        stop=s['stop'],
        stride=int(s['read_stride']),
        keep_labels=bool(s['keep_labels']),
    )


@calcfunction
def sample_frames(frames: FramesData, settings: orm.Dict | None = None) -> dict[str, orm.Data]:
    """Decorrelated frames of a ``FramesData`` trajectory (e.g. CP2K AIMD or MLFF MD), labels kept.

    The observable for the equilibration cut is the labelled energy when every frame has one (see
    :mod:`aiida_ilmlff.sampling.decorrelate`).

    :param settings: :data:`SAMPLING_SETTINGS` keys.
    :returns: ``frames`` (``FramesData`` with origin ``EQ``, or ``nEQ`` for ``origin: nEQ``) and ``sampling``.
    :raises ValueError: for invalid settings or too short a trajectory.
    """
    values = settings.get_dict() if settings is not None else {}
    errors = validate_sampling_settings(values)
    if errors:
        raise ValueError('invalid sampling settings: ' + '; '.join(errors))
    images = frames.to_ase()
    energies = frames.energies if frames.energies is not None else np.full(len(frames), np.nan)
    return _sample(
        images,
        np.asarray(energies, dtype=np.float64),
        values,
        source=frames.uuid,
        source_format='ilmlff.frames',
        temperatures=np.asarray(frames.temperatures, dtype=np.float64),
    )


@calcfunction
def parse_cp2k_md(structure: orm.StructureData, settings: orm.Dict, **retrieved: orm.FolderData) -> dict[str, orm.Data]:
    """Labelled frames of every printed step of a CP2K MD (one or more restarted runs).

    :param structure: the MD's starting structure (cell for every frame; ``mol_id``/``molecules`` attributes
        are copied to the frames).
    :param settings: ``level_of_theory`` (fingerprint written on every frame), ``temperature`` (K, the
        thermostat target, recorded per frame), ``timestep_fs``.
    :param retrieved: ``run_00``, ``run_01``, ... the retrieved folders in run order (restarts continue the MD).
    :returns: ``trajectory`` (``FramesData``, origin ``import``, energy eV, forces eV/Å, stress eV/Å^3 (ASE sign)
        where CP2K printed it; no frame from the first step whose SCF did not converge on) and ``summary``
        (``Dict``: steps, dropped and unconverged steps, temperature statistics, drift of the conserved quantity).
    :raises ValueError: if a run lacks the trajectory files or atoms disagree with the structure.
    """
    from aiida_ilmlff.sampling.cp2k_md import (
        CP2K_ENER_FILE,
        CP2K_FRC_FILE,
        CP2K_POS_FILE,
        aimd_summary,
        labelled_steps,
        merge_runs,
        step_perturbations,
    )
    from aiida_ilmlff.sampling.cp2k_md import parse_cp2k_md as parse_run

    values = settings.get_dict()
    runs = []
    for name in sorted(retrieved):
        folder = retrieved[name]
        names = folder.base.repository.list_object_names()
        if CP2K_POS_FILE not in names:
            raise ValueError(f'`{name}`: the retrieved files lack {CP2K_POS_FILE} (no MD frame was written)')

        def read(filename: str, _folder=folder, _names=names) -> str | None:
            return _folder.base.repository.get_object_content(filename) if filename in _names else None

        runs.append(parse_run(read(CP2K_POS_FILE), read(CP2K_FRC_FILE), read(CP2K_ENER_FILE), read('aiida.out')))
    run = merge_runs(runs)
    symbols = [site.kind_name for site in structure.sites]
    kinds = {kind.name: kind.symbol for kind in structure.kinds}
    expected = [kinds[s] for s in symbols]
    if run.symbols != expected:
        raise ValueError('the CP2K trajectory lists other atoms (or another order) than the structure')
    temperature = values.get('temperature')
    summary = aimd_summary(
        run,
        len(structure.sites),
        n_runs=len(runs),
        temperature=temperature,
        level_of_theory=values.get('level_of_theory', ''),
    )
    atoms0 = structure.get_ase()
    mol_id = structure.base.attributes.get('mol_id', None)
    molecules = structure.base.attributes.get('molecules', None)
    index = np.flatnonzero(labelled_steps(run))
    perturbations = step_perturbations(run, index)
    stress = run.stresses[index]
    calcs = [folder.creator for name, folder in sorted(retrieved.items())]
    source = calcs[-1].uuid if calcs and calcs[-1] is not None else ''
    trajectory = FramesData.from_arrays(
        atoms0.numbers,
        run.positions[index],
        atoms0.cell.array,
        atoms0.pbc,
        energy=run.energies[index],
        forces=run.forces[index],
        stress=stress if np.isfinite(stress).any() else None,
        mol_id=mol_id,
        origin='import',
        temperature=float(temperature) if temperature is not None else float('nan'),
        perturbation=perturbations,
        source=source,
        level_of_theory=values.get('level_of_theory', ''),
        molecules=molecules if molecules else '',
    )
    return {'trajectory': trajectory, 'summary': orm.Dict(summary)}


@calcfunction
def generate_neq_frames(
    frames: FramesData,
    generators: orm.Dict,
    n_frames: orm.Int,
    seed: orm.Int,
    min_distance: orm.Float | None = None,
) -> dict[str, orm.Data]:
    """Non-equilibrium frames perturbed from ``frames`` (see :func:`aiida_ilmlff.sampling.generate_neq`).

    :param frames: source frames (``mol_id`` needed for rigid strains and close contacts; ``molecules`` for
        close contacts).
    :param generators: generator name -> parameters (:data:`aiida_ilmlff.sampling.GENERATORS`).
    :param n_frames: frames to make (split by the generators' weights). :param seed: random seed.
    :param min_distance: floor in Å for any interatomic distance (default 0.7).
    :returns: ``frames`` (``FramesData``, origin ``nEQ``, unlabelled, ``source`` = the input's uuid, the
        generator and its parameters in ``perturbation``) and ``rejected`` (``Dict``: ``n_rejected``,
        ``by_reason``, ``by_generator``, ``entries`` with reason, detail and parameters of every rejected
        frame, ``n_requested``, ``n_made``).
    :raises ValueError: for an invalid mix or when no frame could be made.
    """
    floor = float(min_distance.value) if min_distance is not None else MIN_DISTANCE
    errors = validate_generators(generators.get_dict(), floor)
    if errors:
        raise ValueError('invalid nEQ generators: ' + '; '.join(errors))
    sources = frames.to_ase()
    for atoms in sources:
        atoms.calc = None
    result = generate_neq(sources, int(n_frames.value), generators.get_dict(), seed=int(seed.value), min_distance=floor)
    if not result.frames:
        raise ValueError(
            f'no nEQ frame passed the checks ({len(result.rejected)} rejected): loosen the generator parameters'
        )
    for atoms in result.frames:
        atoms.info['source'] = frames.uuid
    rejected = neq_report(result, int(n_frames.value), floor)
    return {'frames': FramesData.from_ase(result.frames), 'rejected': orm.Dict(rejected)}


@calcfunction
def dataset_summary(frames: FramesData, targets: orm.Dict | None = None) -> orm.Dict:
    """Counts and label distributions per origin of a labelled data set.

    :param targets: optional requested counts (e.g. ``{'EQ': 24, 'nEQ': 24}``), copied into the summary.

    :returns: ``Dict`` with ``n_frames``, ``counts`` (origin -> frames), ``energy_per_atom`` and ``max_force``
        (origin and ``all`` -> ``n``, ``mean``, ``std``, ``min``, ``max``, ``p5``, ``p25``, ``p50``, ``p75``,
        ``p95``; eV/atom and eV/Å), ``generators`` (origin -> perturbation generator -> frames),
        ``level_of_theory``, ``elements`` and ``compositions`` (composition key -> origin -> frames; empty when
        the frames' molecules are not known).
    """
    energy_per_atom, max_force = frame_observables(frames.offsets, frames.energies, frames.forces)
    origins = [str(o) for o in frames.origins]
    summary = label_summary(origins, energy_per_atom, max_force)
    by_composition: dict[str, dict[str, int]] = {}
    for key, origin in zip(frames.composition_keys.tolist(), origins, strict=True):
        if key:
            counts = by_composition.setdefault(key, {})
            counts[origin] = counts.get(origin, 0) + 1
    summary.update(
        {
            'compositions': by_composition,
            'generators': generators_by_origin(origins, frames.perturbations),
            'level_of_theory': frames.base.attributes.get('level_of_theory'),
            'elements': frames.elements,
            'n_labelled': frames.base.attributes.get('n_labelled'),
            'targets': targets.get_dict() if targets is not None else None,
        }
    )
    return orm.Dict(summary)


@calcfunction
def structures_to_frames(**structures: orm.StructureData) -> FramesData:
    """One frame per structure (keyword order sorted), origin ``import``, with ``mol_id``/``molecules`` when set.

    :raises ValueError: if no structure is given.
    """
    if not structures:
        raise ValueError('structures_to_frames needs at least one StructureData')
    return FramesData.from_structure([structures[name] for name in sorted(structures)])
