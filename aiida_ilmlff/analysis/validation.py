"""A model's liquid structure against its reference run at the same state point: RDFs, bonds and angles.

The structural half of validating an MLFF against its reference level of theory (issue 17; Park, Ryu & Lee,
arXiv 2503.18249, compare MLFF MD with AIMD the same way; Fu et al., arXiv 2210.07237, argue that force errors
alone do not show whether a model's MD is right). Both runs are ilmlff trajectories of the same atoms (the
model's NVT started from the reference's box, at its temperature and density):

- **RDFs**: the centre-of-mass g(r) of every pair of species and the site-site g(r) between the central atoms of
  every two different species (:func:`central_element`: N of PYR14+ and TFSI-, B of BF4-, Li), plus the
  Li-ligand g(r) with Li+ (:func:`~aiida_ilmlff.analysis.settings.resolve_rdf_pairs`), on one grid up to the
  smaller half cell width of the two runs; each compared by
  :func:`~aiida_ilmlff.analysis.rdf_agreement.rdf_agreement` (first-peak position and height, and the
  integrated distance between the curves);
- **intramolecular geometry**: every bond-length and bond-angle distribution
  (:func:`~aiida_ilmlff.analysis.intramolecular.intramolecular_agreement`), bonds perceived per molecule on the
  reference's first frame.

Targets of issue 17 (the study's goals): first-peak positions within :data:`PEAK_SHIFT_TARGET_A` and heights
within :data:`PEAK_HEIGHT_TARGET` (relative); ``within_targets`` says whether every RDF met both.
"""

from __future__ import annotations

import os
import typing as t

import numpy as np
from ase.data import chemical_symbols

from aiida_ilmlff.common.bonds import bonds_from_positions

from .intramolecular import intramolecular_agreement
from .properties import analysis_window, rdf_and_coordination
from .rdf import NoFirstShellError
from .rdf_agreement import rdf_agreement
from .settings import ANALYSIS_SETTINGS, default_li_ligand, with_defaults
from .trajectory import TrajectoryReader

__all__ = (
    'PEAK_HEIGHT_TARGET',
    'PEAK_SHIFT_TARGET_A',
    'central_element',
    'molecule_bonds',
    'structure_agreement',
    'validation_rdf_pairs',
    'validation_summary',
)

#: Largest |first-peak shift| [Å] of a model's g(r) from the reference's that meets the target (issue 17).
PEAK_SHIFT_TARGET_A = 0.05
#: Largest relative deviation of a first-peak height from the reference's that meets the target (issue 17).
PEAK_HEIGHT_TARGET = 0.10


def central_element(numbers, mol_id, molecules: t.Sequence[str], species: str) -> str:
    """The element of a species' rarest heavy atom (ties: the heavier), its "central atom" for site-site RDFs:
    N of PYR14+ (C9H20N) and TFSI- (C2F6NO4S2), B of BF4-, P of PF6-, Li of Li+.

    :param numbers: (N,) atomic numbers. :param mol_id: (N,) molecule index. :param molecules: species per molecule.
    :raises ValueError: a species that is not in ``molecules``.
    """
    names = list(molecules)
    if species not in names:
        raise ValueError(f'{species!r} is not a species of the box {sorted(set(names))}')
    first = names.index(species)
    atoms = np.asarray(numbers)[np.asarray(mol_id) == first]
    heavy = atoms[atoms > 1] if np.any(atoms > 1) else atoms
    elements, counts = np.unique(heavy, return_counts=True)
    rarest = elements[counts == counts.min()]
    return chemical_symbols[int(rarest.max())]


def validation_rdf_pairs(numbers, mol_id, molecules: t.Sequence[str], li_species: str = 'Li') -> list[list[str]]:
    """The RDF pairs of a validation: centre of mass of every pair of species (a like pair only with two or more
    molecules), the central atoms of every two different species not both monatomic (``['PYR14:N', 'BF4:B']``),
    and with Li+ the Li-ligand pair (``['Li', 'TFSI:O']``, :func:`~aiida_ilmlff.analysis.settings.default_li_ligand`).
    """
    names = list(dict.fromkeys(molecules))
    count = {name: list(molecules).count(name) for name in names}
    size = {name: int(np.sum(np.asarray(mol_id) == list(molecules).index(name))) for name in names}
    pairs = [[a, b] for i, a in enumerate(names) for b in names[i:] if a != b or count[a] > 1]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if size[a] > 1 or size[b] > 1:
                pairs.append([f'{name}:{central_element(numbers, mol_id, molecules, name)}' for name in (a, b)])
    ligand = default_li_ligand(names)
    if li_species in names and ligand:
        pairs.append([li_species, ligand])
    return pairs


def molecule_bonds(numbers, positions, cell, mol_id) -> np.ndarray:
    """Covalent bonds within each molecule of one frame, under the minimum image
    (:func:`~aiida_ilmlff.common.bonds.bonds_from_positions`).

    :returns: (n, 2) int64 atom indices into the frame, ``i < j``.
    """
    numbers = np.asarray(numbers)
    mol_id = np.asarray(mol_id)
    positions = np.asarray(positions, dtype=float)
    pairs = []
    for molecule in np.unique(mol_id):
        atoms = np.flatnonzero(mol_id == molecule)
        symbols = [chemical_symbols[int(z)] for z in numbers[atoms]]
        for i, j in sorted(bonds_from_positions(symbols, positions[atoms], cell=cell, pbc=True)):
            pairs.append((int(atoms[i]), int(atoms[j])))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _rdf_entry(r, g, r_reference, g_reference) -> dict[str, t.Any]:
    try:
        agreement = rdf_agreement(r, g, r_reference, g_reference).to_dict()
    except NoFirstShellError as exception:
        return {'available': False, 'reason': str(exception)}
    agreement['available'] = True
    agreement['within_targets'] = bool(
        abs(agreement['peak_shift']) <= PEAK_SHIFT_TARGET_A
        and abs(agreement['peak_height_ratio'] - 1.0) <= PEAK_HEIGHT_TARGET
    )
    return agreement


def structure_agreement(
    path: str | os.PathLike, reference_path: str | os.PathLike, settings: t.Mapping | None = None
) -> dict[str, t.Any]:
    """RDFs, bond and angle distributions of a model's trajectory against a reference trajectory of the same atoms.

    :param path: the model's ilmlff trajectory (unwrapped or not). :param reference_path: the reference's.
    :param settings: :data:`~aiida_ilmlff.analysis.settings.ANALYSIS_SETTINGS` keys: ``discard_ps`` (of the
        model's run; the reference is used whole), ``rdf_bins``, ``rdf_r_max_A`` (capped at the smaller half cell
        width), ``rdf_pairs`` (default :func:`validation_rdf_pairs`).
    :returns: ``{'rdf': {pair: RDFAgreement dict + available, within_targets | available false + reason},
        'bonds': {type: DistributionAgreement dict} [Å], 'angles': {...} [degrees], 'r': (B,) Å, 'g': {pair:
        (B,)}, 'g_reference': {pair: (B,)}, 'r_max': Å, 'n_frames', 'n_reference_frames', 'within_targets': every
        available RDF within both targets (None when none is available), 'max_abs_peak_shift_A',
        'max_abs_height_deviation', 'mean_rdf_distance_A'}``.
    :raises ValueError: runs of different atoms, no molecule indices, fewer than 3 frames in either run.
    """
    values = with_defaults(settings or {}, ANALYSIS_SETTINGS)
    with TrajectoryReader(path) as reader, TrajectoryReader(reference_path) as reference:
        if not np.array_equal(reader.numbers, reference.numbers):
            raise ValueError('the model and reference trajectories are not of the same atoms (numbers differ)')
        if reference.molecules is None or not np.array_equal(reader.mol_id, reference.mol_id):
            raise ValueError('the model and reference trajectories need the same molecule indices')
        numbers, mol_id, molecules = reference.numbers, reference.mol_id, list(reference.molecules)
        first = reference[0]
        bonds = molecule_bonds(numbers, first.positions, first.cell, mol_id)
    window = analysis_window(path, values['discard_ps'])
    reference_window = analysis_window(reference_path, 0.0)
    r_max = min(window['half_width'], reference_window['half_width'])
    if values['rdf_r_max_A']:
        r_max = min(r_max, float(values['rdf_r_max_A']))
    pairs = values['rdf_pairs'] or validation_rdf_pairs(numbers, mol_id, molecules, values['li_species'])
    common = {**values, 'rdf_r_max_A': r_max, 'rdf_pairs': pairs, 'cn_cutoffs_A': {}}
    model = rdf_and_coordination(path, common)
    ref = rdf_and_coordination(reference_path, {**common, 'discard_ps': 0.0})
    rdfs = {name: _rdf_entry(model['r'], model['g'][name], ref['r'], ref['g'][name]) for name in model['g']}
    available = [entry for entry in rdfs.values() if entry['available']]

    with TrajectoryReader(path) as reader, TrajectoryReader(reference_path) as reference:
        frames = reader.read(window['start'])
        reference_frames = reference.read()
    geometry = (
        intramolecular_agreement(
            numbers, bonds, frames.positions, frames.cell, reference_frames.positions, reference_frames.cell
        )
        if len(bonds)
        else {'bonds': {}, 'angles': {}}  # monatomic species only
    )
    return {
        'rdf': rdfs,
        'bonds': {name: value.to_dict() for name, value in geometry['bonds'].items()},
        'angles': {name: value.to_dict() for name, value in geometry['angles'].items()},
        'r': model['r'],
        'g': model['g'],
        'g_reference': ref['g'],
        'r_max': float(r_max),
        'n_frames': len(frames),
        'n_reference_frames': len(reference_frames),
        'within_targets': all(entry['within_targets'] for entry in available) if available else None,
        'max_abs_peak_shift_A': max((abs(e['peak_shift']) for e in available), default=None),
        'max_abs_height_deviation': max((abs(e['peak_height_ratio'] - 1.0) for e in available), default=None),
        'mean_rdf_distance_A': float(np.mean([e['distance'] for e in available])) if available else None,
    }


def validation_summary(
    state: t.Mapping[str, t.Any],
    structure: t.Mapping[str, t.Any] | None = None,
    metrics: t.Mapping[str, t.Any] | None = None,
    calibration: t.Mapping[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    """The record of one validation, from what its steps produced (plain dicts).

    :param state: the state point and MD facts: ``temperature_K``, ``composition``, ``level_of_theory``, ``driver``
        (the model key that drove the MD), ``md_intact``, ``md_ps``, ``test_force_rmse`` [meV/Å] (optional), ...
        (kept as they are).
    :param structure: :func:`structure_agreement` without its curves (the ``structure`` output).
    :param metrics: the ``metrics`` of ``ilmlff.evaluate`` on the labelled a posteriori frames.
    :param calibration: the ``calibration`` of ``calibrate_committee`` on them.
    :returns: ``state`` plus ``structure`` (``within_targets``, ``max_abs_peak_shift_A``,
        ``max_abs_height_deviation``, ``mean_rdf_distance_A``), ``rdf`` (pair -> ``peak_shift``,
        ``peak_height_ratio``, ``distance``, ``within_targets``), ``bond_shifts_A``, ``bond_width_ratios``,
        ``angle_shifts_deg`` and ``a_posteriori`` (``n_frames``, ``force_rmse`` [meV/Å], ``force_rmse_relative``,
        ``ratio_to_test``, ``calibration_pearson``, ``mean_error_over_deviation``), each where known; a
        ``state['a_posteriori_problem']`` (why there is no a posteriori error, e.g. every frame of the model MD
        rejected by the labelling) is kept.
    """
    record = dict(state)
    if structure:
        record['structure'] = {
            key: structure.get(key)
            for key in ('within_targets', 'max_abs_peak_shift_A', 'max_abs_height_deviation', 'mean_rdf_distance_A')
        }
        record['rdf'] = {
            pair: {
                key: entry.get(key)
                for key in ('available', 'reason', 'peak_shift', 'peak_height_ratio', 'distance', 'within_targets')
                if key in entry
            }
            for pair, entry in (structure.get('rdf') or {}).items()
        }
        record['bond_shifts_A'] = {name: entry['shift'] for name, entry in (structure.get('bonds') or {}).items()}
        record['bond_width_ratios'] = {
            name: entry['width_ratio'] for name, entry in (structure.get('bonds') or {}).items()
        }
        record['angle_shifts_deg'] = {name: entry['shift'] for name, entry in (structure.get('angles') or {}).items()}
    if metrics:
        models = metrics.get('models') or {}
        driver = state.get('driver') if state.get('driver') in models else (sorted(models)[0] if models else None)
        errors = (models.get(driver) or {}).get('errors') or {}
        a_posteriori = {
            'n_frames': metrics.get('n_frames'),
            'force_rmse': errors.get('force_rmse'),
            'force_rmse_relative': errors.get('force_rmse_relative'),
            'ratio_to_test': None,
        }
        test = state.get('test_force_rmse')
        if test and errors.get('force_rmse') is not None:
            a_posteriori['ratio_to_test'] = errors['force_rmse'] / test
        if calibration:
            a_posteriori['calibration_pearson'] = (calibration.get('deviation_vs_max_error') or {}).get('pearson')
            a_posteriori['mean_error_over_deviation'] = calibration.get('mean_error_over_deviation')
        record['a_posteriori'] = a_posteriori
    return record
