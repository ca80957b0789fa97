"""Calcfunctions of the labelling workflow: node <-> plain-data wrappers around the pure readers and screening.

* :func:`frames_to_structures`: frames of a ``FramesData`` -> ``StructureData`` (one per frame);
* :func:`frames_to_reftraj`: a batch of frames -> the first frame's ``StructureData`` and a ``TrajectoryData``
  of the batch (the reference trajectory of a batched CP2K job, see :func:`check_batch`);
* :func:`extract_cp2k_labels`, :func:`extract_pw_labels`: one calculation's outputs -> an ``ArrayData`` of
  labels, read by :mod:`aiida_ilmlff.parsers.cp2k_output` and :mod:`aiida_ilmlff.parsers.pw_output`;
* :func:`extract_cp2k_batch_labels`: one batched CP2K job (``REFTRAJ``) -> one ``ArrayData`` with the labels of
  every frame of the batch whose SCF converged, and the frames that did not or were not reached;
* :func:`quality_control`: labels -> ``labelled`` ``FramesData`` + ``rejected`` + ``summary``, screened by
  :func:`aiida_ilmlff.sampling.screening.screen_frames`.

The science lives in those pure modules and in :mod:`aiida_ilmlff.data.level_of_theory` (fingerprints).
Units of every label: energy in eV, forces in eV/Å, stress in eV/Å^3 with the ASE sign.
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import ExitCode, calcfunction

from aiida_ilmlff.parsers.cp2k_output import (
    CP2K_FORCES_FILE,
    CP2K_OUTPUT_FILE,
    CP2K_STRESS_FILE,
    parse_cp2k_evaluations,
    parse_cp2k_forces,
    parse_cp2k_stdout,
    parse_cp2k_stress,
)
from aiida_ilmlff.parsers.pw_output import PwLabelError, pw_labels
from aiida_ilmlff.sampling.screening import screen_frames

__all__ = (
    'REASONS',
    'check_batch',
    'extract_cp2k_batch_labels',
    'extract_cp2k_labels',
    'extract_pw_labels',
    'frames_to_reftraj',
    'frames_to_structures',
    'quality_control',
)

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


def check_batch(frames, indices) -> None:
    """Check that frames ``indices`` of ``frames`` can be labelled by one CP2K job: the same atoms in the same order.

    :raises ValueError: naming the first frame whose atom count or species order differs from the batch's first
        frame, and the fix (group the frames by species order, as ``ilmlff.label`` does).
    """
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError('a batch of frames is empty')
    reference = np.asarray(frames.get_numbers(indices[0]))
    for index in indices[1:]:
        numbers = np.asarray(frames.get_numbers(index))
        if numbers.shape != reference.shape or not np.array_equal(numbers, reference):
            raise ValueError(
                f'`frames`: frame {index} does not have the species order of frame {indices[0]} '
                f'({len(numbers)} vs {len(reference)} atoms); the frames of one CP2K batch (REFTRAJ) must share the '
                'atom count and species order: group them by species order (ilmlff.label does) or use '
                '`frames_per_job` 1'
            )


@calcfunction
def frames_to_reftraj(frames, indices: orm.List) -> dict[str, orm.Data]:
    """The frames ``indices`` of ``frames`` as the reference trajectory of one batched CP2K job.

    :return: ``structure`` (``StructureData`` of the first frame: the CP2K ``SUBSYS``) and ``trajectory``
        (``TrajectoryData``: symbols, positions [Å] and cells [Å] of the frames in order, attribute
        ``frame_indices``; aiida-cp2k writes it as ``aiida-reftraj.xyz`` and ``aiida-reftraj.cell``).
    :raises ValueError: when the frames do not share atom count and species order (:func:`check_batch`).
    """
    from ase import Atoms

    index_list = [int(i) for i in indices.get_list()]
    check_batch(frames, index_list)
    first = frames[index_list[0]]
    atoms = Atoms(numbers=first.get_atomic_numbers(), positions=first.get_positions(), cell=first.get_cell(), pbc=True)
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(
        symbols=atoms.get_chemical_symbols(),
        positions=np.array([frames.get_positions(i) for i in index_list], dtype=np.float64),
        cells=np.array([frames.get_cell(i) for i in index_list], dtype=np.float64),
        stepids=np.arange(len(index_list)),
    )
    trajectory.base.attributes.set('frame_indices', index_list)
    return {'structure': orm.StructureData(ase=atoms), 'trajectory': trajectory}


def _calculation_of(node: orm.Node) -> orm.Node | None:
    """The process that created ``node`` (``None`` if unknown)."""
    try:
        return node.creator
    except Exception:  # a node without a creator link
        return None


def _labels_node(energy: float, forces, stress, source: orm.Node, **attributes) -> orm.ArrayData:
    """An ``ArrayData`` of one frame's labels (``energy`` ``(1,)``, ``forces``, optional ``stress``) with
    ``attributes``, the pk and uuid of the calculation that created ``source``, and the units."""
    labels = orm.ArrayData()
    labels.set_array('energy', np.array([energy]))
    labels.set_array('forces', forces)
    if stress is not None:
        labels.set_array('stress', stress)
    calculation = _calculation_of(source)
    labels.base.attributes.set_many(
        {
            **attributes,
            'calculation_pk': calculation.pk if calculation is not None else None,
            'calculation_uuid': calculation.uuid if calculation is not None else None,
            'units': {'energy': 'eV', 'forces': 'eV/Angstrom', 'stress': 'eV/Angstrom^3 (ASE sign)'},
        }
    )
    return labels


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
    stress = None
    if CP2K_STRESS_FILE in names:
        try:
            stress = parse_cp2k_stress(retrieved.base.repository.get_object_content(CP2K_STRESS_FILE))
        except ValueError as exception:
            return ExitCode(310, str(exception))
    return _labels_node(
        output.energy,
        forces,
        stress,
        retrieved,
        scf_converged=output.scf_converged,
        cp2k_version=output.version,
        n_warnings=output.n_warnings,
    )


@calcfunction
def extract_cp2k_batch_labels(retrieved: orm.FolderData, trajectory: orm.TrajectoryData) -> orm.ArrayData | ExitCode:
    """Read the labels of every frame of one batched CP2K job (``RUN_TYPE MD``, ``ENSEMBLE REFTRAJ``).

    Evaluation ``k`` of ``aiida.out`` (:func:`~aiida_ilmlff.parsers.cp2k_output.parse_cp2k_evaluations`) is
    frame ``k`` of ``trajectory`` (the job's reference trajectory, attribute ``frame_indices``).

    :return: ``ArrayData`` with the frames whose SCF converged: ``energy`` ``(m,)`` eV, ``forces`` ``(m, n, 3)``
        eV/Å, ``stress`` ``(m, 3, 3)`` eV/Å^3 (ASE sign; when printed for every such frame); attributes
        ``frame_indices`` (the frame of each row), ``unconverged`` (frames whose SCF did not converge),
        ``missing`` (frames the job did not reach, or whose forces were not printed), ``scf_converged``
        (True: the rows), ``cp2k_version``, ``calculation_pk``, ``calculation_uuid``. Exit code 310 when
        ``aiida.out`` is missing or holds more evaluations than frames, 311 when the atoms do not match.
    """
    names = retrieved.base.repository.list_object_names()
    if CP2K_OUTPUT_FILE not in names:
        return ExitCode(310, f'`{CP2K_OUTPUT_FILE}` is not in the retrieved files')
    text = retrieved.base.repository.get_object_content(CP2K_OUTPUT_FILE)
    frame_indices = [int(i) for i in trajectory.base.attributes.get('frame_indices')]
    symbols = list(trajectory.symbols)
    try:
        evaluations = parse_cp2k_evaluations(text, symbols)
    except ValueError as exception:
        return ExitCode(311 if 'match' in str(exception) or 'atoms' in str(exception) else 310, str(exception))
    if len(evaluations) > len(frame_indices):
        return ExitCode(310, f'{len(evaluations)} force evaluations in aiida.out for {len(frame_indices)} frames')
    rows, unconverged, missing = [], [], []
    for k, index in enumerate(frame_indices):
        evaluation = evaluations[k] if k < len(evaluations) else None
        if evaluation is None or evaluation.forces is None:
            missing.append(index)
        elif not evaluation.scf_converged:
            unconverged.append(index)
        else:
            rows.append((index, evaluation))
    n_atoms = len(symbols)
    energy = np.array([e.energy for _, e in rows], dtype=np.float64)
    forces = np.array([e.forces for _, e in rows], dtype=np.float64).reshape(len(rows), n_atoms, 3)
    stress = None
    if rows and all(e.stress is not None for _, e in rows):
        stress = np.array([e.stress for _, e in rows], dtype=np.float64)
    labels = _labels_node(
        0.0,
        forces,
        stress,
        retrieved,
        frame_indices=[index for index, _ in rows],
        unconverged=unconverged,
        missing=missing,
        scf_converged=True,
        cp2k_version=parse_cp2k_stdout(text).version,
    )
    labels.set_array('energy', energy)
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
    arrays = {
        name: output_trajectory.get_array(name)
        for name in ('forces', 'stress')
        if name in output_trajectory.get_arraynames()
    }
    try:
        read = pw_labels(parameters, arrays, len(structure.sites))
    except PwLabelError as exception:
        return ExitCode(exception.status, str(exception))
    return _labels_node(
        read.energy,
        read.forces,
        read.stress,
        output_parameters,
        scf_converged=read.scf_converged,
        qe_version=read.version,
        n_warnings=read.n_warnings,
    )


@calcfunction
def quality_control(
    frames,
    failures: orm.Dict,
    level_of_theory: orm.Dict,
    max_force: orm.Float,
    max_energy_zscore: orm.Float,
    duplicate_tolerance: orm.Float,
    compute_stress: orm.Bool,
    accounting: orm.Dict | None = None,
    **labels: orm.ArrayData,
) -> dict[str, orm.Data]:
    """Keep the frames whose labels pass quality control; list the others with their reason.

    :param frames: the ``FramesData`` that was labelled (N frames).
    :param failures: ``{str(index): {'reason', 'detail', 'pk', 'exit_status'}}`` for frames whose calculation
        failed (they have no labels).
    :param level_of_theory: ``{'fingerprint': str, ...}`` (see
        :func:`~aiida_ilmlff.data.level_of_theory.cp2k_level_of_theory`); the fingerprint is written on every
        labelled frame.
    :param max_force: largest allowed atomic force norm [eV/Å]. :param max_energy_zscore: largest allowed
        robust z-score of the energy per atom. :param duplicate_tolerance: Å, for duplicate detection.
    :param compute_stress: require and keep the stress.
    :param accounting: optional ``{'n_jobs', 'n_batches', 'frames_per_job', 'relabelled_singly': {str(index):
        reason}}`` of the work chain (batched labelling), copied into the summary.
    :param labels: ``frame_<index:06d>`` -> ``ArrayData`` from :func:`extract_cp2k_labels` /
        :func:`extract_pw_labels` (one frame), or ``batch_<index:06d>`` -> ``ArrayData`` from
        :func:`extract_cp2k_batch_labels` (the frames of its attribute ``frame_indices``, one row each).
    :return: ``labelled`` (``FramesData`` of the kept frames, in input order; absent if none is kept; attribute
        ``label_calculations``: labelled-frame index (str) -> uuid of the CalcJob that labelled it),
        ``rejected`` (``Dict``: ``str(index) -> {'reason', 'detail', 'pk'}``) and ``summary`` (``Dict``).
    :raises ValueError: when a frame has labels from two nodes (a frame is never labelled twice).
    """
    n_frames = len(frames)
    frames.get_arrays()  # load all frames once: the per-frame accessors below then slice the cached arrays
    rejected: dict[str, dict] = {str(k): dict(v) for k, v in failures.get_dict().items()}
    indices, energies, forces, stresses, converged, pks, uuids = [], [], [], [], [], [], []
    numbers, positions, cells = [], [], []
    want_stress = compute_stress.value
    rows = []  # (frame index, node, row or None)
    for key in sorted(labels):
        node = labels[key]
        batch = node.base.attributes.get('frame_indices', None)
        if batch is None:
            rows.append((int(key.split('_')[-1]), node, None))
        else:
            rows.extend((int(index), node, row) for row, index in enumerate(batch))
    seen: set[int] = set()
    for index, node, row in sorted(rows, key=lambda item: item[0]):
        if index in seen:
            raise ValueError(f'frame {index} has labels from two calculations')
        seen.add(index)
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
        if row is None:
            energies.append(float(node.get_array('energy')[0]))
            forces.append(node.get_array('forces'))
        else:
            energies.append(float(node.get_array('energy')[row]))
            forces.append(node.get_array('forces')[row])
            stress = stress[row] if stress is not None else None
        stresses.append(stress if want_stress else None)
        converged.append(bool(node.base.attributes.get('scf_converged', True)))
        pks.append(node.base.attributes.get('calculation_pk', None))
        uuids.append(node.base.attributes.get('calculation_uuid', None))
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
        outputs['labelled'].base.attributes.set(
            'label_calculations', {str(position): uuids[k] for position, k in enumerate(kept)}
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
            **_accounting_summary(accounting),
        }
    )
    return outputs


def _accounting_summary(accounting: orm.Dict | None) -> dict:
    """The batching counts of the summary: jobs, batches, frames per job and the frames relabelled singly."""
    values = accounting.get_dict() if accounting is not None else {}
    relabelled = {str(k): v for k, v in (values.get('relabelled_singly') or {}).items()}
    return {
        'frames_per_job': int(values.get('frames_per_job', 1)),
        'n_jobs': values.get('n_jobs', None),
        'n_batches': int(values.get('n_batches', 0)),
        'n_relabelled_singly': len(relabelled),
        'relabelled_singly': {key: relabelled[key] for key in sorted(relabelled, key=int)},
    }
