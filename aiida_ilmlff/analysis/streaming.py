"""Analyses of trajectory files that stream frames in chunks (memory bounded by one chunk).

Each function opens an ilmlff HDF5 trajectory (:mod:`.trajectory`), reads it chunk by chunk and
keeps only what the analysis needs for the whole run: molecular centres of mass (T x n_mol x 3) for
the MSD, a histogram for the RDF, a (T x n_li x n_anion) boolean contact series for the Li+
environment, a (T x n_tfsi) dihedral series for the conformers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from ._common import AnalysisResult
from .conformers import ConformerFractions, classify_cis_trans, tfsi_dihedral_atoms, tfsi_dihedrals
from .density import TimeSeriesStatistics, density, timeseries_statistics
from .geometry import check_unwrapped, perpendicular_widths
from .lithium import ClusterDistribution, cluster_size_distribution, li_anion_contacts
from .molecules import MoleculeTree, center_of_mass_matrix
from .msd import DiffusionResult, diffusion_coefficient, msd
from .rdf import RDFAccumulator, RDFResult, first_minimum
from .residence import (
    ResidenceTime,
    bound_fraction,
    normalised_intermittent,
    residence_correlation,
    residence_time,
)
from .trajectory import TrajectoryReader

__all__ = (
    'LiEnvironment',
    'TrajectoryMSD',
    'conformers_from_trajectory',
    'density_from_trajectory',
    'li_environment_from_trajectory',
    'msd_from_trajectory',
    'rdf_from_trajectory',
)


@dataclasses.dataclass(frozen=True)
class TrajectoryMSD(AnalysisResult):
    """Centre-of-mass MSDs of groups of molecules.

    Attributes:
        lag_fs: (T,) lag times in fs.
        timestep_fs: time between analysed frames in fs.
        msd: ``{group: (T,) MSD in Å^2}`` averaged over the group's molecules.
        msd_per_molecule: ``{group: (T, n) MSD in Å^2}`` of each molecule (for error estimates).
        molecules: ``{group: (n,) molecule ids}``.
        drift_removed: whether the system's centre-of-mass motion was subtracted.
        centres: ``{group: (T, n, 3) centres of mass in Å}`` (unwrapped, drift removed if asked), for block errors.
    """

    lag_fs: np.ndarray
    timestep_fs: float
    msd: dict[str, np.ndarray]
    msd_per_molecule: dict[str, np.ndarray]
    molecules: dict[str, np.ndarray]
    drift_removed: bool
    centres: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def diffusion(self, group: str, window: tuple[float, float] | None = None, **kwargs) -> DiffusionResult:
        """D of a group (:func:`~aiida_ilmlff.analysis.diffusion_coefficient`), error from the molecules."""
        return diffusion_coefficient(self.msd_per_molecule[group], self.timestep_fs, window, **kwargs)


def _normalise_groups(groups) -> dict[str, object]:
    if isinstance(groups, str):
        return {groups: groups}
    if isinstance(groups, Mapping):
        return {str(name): selection for name, selection in groups.items()}
    if isinstance(groups, Sequence) and all(isinstance(name, str) for name in groups):
        return {name: name for name in groups}
    raise ValueError('groups must be a species name, a list of species names, or {label: species or molecule ids}')


def msd_from_trajectory(
    path,
    groups,
    *,
    chunk_size: int | None = None,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    remove_drift: bool = False,
) -> TrajectoryMSD:
    """MSD of molecular centres of mass, streaming the trajectory.

    Reads the positions chunk by chunk, makes every molecule whole (:class:`~aiida_ilmlff.analysis.MoleculeTree`
    built on the first analysed frame: a molecule cut by the cell in the starting frame, as in user-supplied or
    active-learning structures, would otherwise give a centre of mass off the molecule), keeps the centres of
    mass of the selected molecules (``T x n_mol x 3`` float64) and computes the FFT MSD
    (:func:`~aiida_ilmlff.analysis.msd`) of each group. Consecutive frames are checked for wrapped coordinates
    (jumps > half a cell vector).

    :param path: ilmlff HDF5 trajectory.
    :param groups: a species name (``'TFSI'``), a list of them, or ``{label: species name or molecule ids}``.
    :param chunk_size: frames per read (default about 64 MiB of positions).
    :param start, stop, stride: frames analysed; they must be evenly spaced in time.
    :param remove_drift: subtract the centre-of-mass motion of the whole system from every frame.
    :returns: :class:`TrajectoryMSD`.
    :raises WrappedCoordinatesError: wrapped coordinates without image flags.
    :raises ValueError: a species absent from the trajectory, uneven timesteps, fewer than 2 frames.
    """
    groups = _normalise_groups(groups)
    with TrajectoryReader(path) as reader:
        reader.require_unwrapped()
        selected = {name: reader.select_molecules(selection) for name, selection in groups.items()}
        all_ids = np.concatenate(list(selected.values()))
        weights = center_of_mass_matrix(reader.mol_id, reader.masses, all_ids)
        window = reader.frame_range(start, stop, stride)
        n_frames = len(range(window.start, window.stop, window.step))
        if n_frames < 2:
            raise ValueError('the MSD needs at least 2 frames')
        timestep = reader.timestep_fs(window.step, window.start, window.stop)
        first = reader[window.start]
        tree = MoleculeTree(first.positions, first.cell, reader.mol_id)
        centres = np.empty((n_frames, len(all_ids), 3))
        drift = np.zeros((n_frames, 3)) if remove_drift else None
        mass_fraction = reader.masses / reader.masses.sum()
        previous = None
        offset = 0
        for chunk in reader.iter_chunks(chunk_size, window.step, window.start, window.stop):
            positions = chunk.positions
            check_unwrapped(positions, chunk.cell, previous, first_frame=int(chunk.indices[0]))
            previous = positions[-1]
            for t, (frame, cell) in enumerate(zip(positions, chunk.cell)):  # frame by frame: no copy of the chunk
                centres[offset + t] = weights @ tree.apply(frame, cell)
            if remove_drift:
                drift[offset : offset + len(positions)] = np.einsum('n,tnd->td', mass_fraction, positions)
            offset += len(positions)
            del positions, chunk
    if remove_drift:
        centres -= drift[:, None, :]
    per_molecule, mean, group_centres = {}, {}, {}
    first = 0
    for name, ids in selected.items():
        block = centres[:, first : first + len(ids)]
        first += len(ids)
        group_centres[name] = block
        per_molecule[name] = msd(block, per_particle=True)
        mean[name] = per_molecule[name].mean(axis=1)
    return TrajectoryMSD(
        lag_fs=np.arange(n_frames) * timestep,
        timestep_fs=timestep,
        msd=mean,
        msd_per_molecule=per_molecule,
        molecules=selected,
        drift_removed=bool(remove_drift),
        centres=group_centres,
    )


def _is_com(selection) -> bool:
    return isinstance(selection, str) and selection.endswith(':com')


def _selection_positions(reader: TrajectoryReader, selection, tree: MoleculeTree | None = None):
    """(extractor(frame, cell), mol ids) for an atom selection or a ``'SPECIES:com'`` centre of mass.

    Centres of mass are taken of whole molecules: ``tree`` (:class:`MoleculeTree`) makes them whole per frame.
    """
    if _is_com(selection):
        molecules = reader.select_molecules(selection[: -len(':com')])
        weights = center_of_mass_matrix(reader.mol_id, reader.masses, molecules)

        def extract(frame, cell):
            return weights @ (frame if tree is None else tree.apply(frame, cell))

        return extract, molecules
    atoms = reader.select_atoms(selection)

    def extract_atoms(frame, cell):
        return frame[atoms]

    return extract_atoms, reader.mol_id[atoms]


def _max_r(reader: TrajectoryReader, window: slice) -> float:
    return float(0.5 * perpendicular_widths(reader.cells(window.start, window.stop, window.step)).min())


def rdf_from_trajectory(
    path,
    a,
    b=None,
    r_max: float | None = None,
    n_bins: int = 200,
    *,
    exclude_intramolecular: bool = False,
    chunk_size: int | None = None,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
) -> RDFResult:
    """Radial distribution function between two selections of a trajectory, streaming the frames.

    :param path: ilmlff HDF5 trajectory.
    :param a, b: selections (see :meth:`TrajectoryReader.select_atoms`: ``'Li'``, ``'TFSI:O'``, index
        arrays) or molecular centres of mass ``'PYR14:com'``; ``b=None`` (or equal to a) for a with itself.
    :param r_max: largest distance in Å (default: half the smallest perpendicular width of all cells).
    :param n_bins: number of bins.
    :param exclude_intramolecular: drop pairs of atoms in the same molecule (and from the normalisation).
    :returns: :class:`~aiida_ilmlff.analysis.rdf.RDFResult`.
    Centres of mass are taken after making the molecules whole in every frame
    (:class:`~aiida_ilmlff.analysis.MoleculeTree` on the first analysed frame), so wrapped coordinates and
    molecules cut by the cell are fine.

    :raises ValueError: an absent species/element, ``r_max`` too large for a cell.
    """
    with TrajectoryReader(path) as reader:
        window = reader.frame_range(start, stop, stride)
        if len(range(window.start, window.stop, window.step)) == 0:
            raise ValueError('no frame selected')
        same = b is None or (isinstance(a, str) and isinstance(b, str) and a == b)
        if not same and not isinstance(a, str) and not isinstance(b, str):
            same = np.array_equal(np.asarray(a), np.asarray(b))
        tree = None
        if _is_com(a) or _is_com(b):
            first = reader[window.start]
            tree = MoleculeTree(first.positions, first.cell, reader.mol_id)
        extract_a, mol_a = _selection_positions(reader, a, tree)
        extract_b, mol_b = (extract_a, mol_a) if same else _selection_positions(reader, b, tree)
        r_max = _max_r(reader, window) if r_max is None else float(r_max)
        accumulator = RDFAccumulator(
            r_max,
            n_bins,
            same=same,
            mol_id_a=mol_a if exclude_intramolecular else None,
            mol_id_b=None if same or not exclude_intramolecular else mol_b,
        )
        for chunk in reader.iter_chunks(chunk_size, window.step, window.start, window.stop):
            for frame, cell in zip(chunk.positions, chunk.cell):
                accumulator.add_frame(extract_a(frame, cell), None if same else extract_b(frame, cell), cell)
    return accumulator.result()


@dataclasses.dataclass(frozen=True)
class LiEnvironment(AnalysisResult):
    """Li+ solvation by anions over a trajectory.

    Attributes:
        r_cut: Li-ligand cut-off in Å; r_cut_from_rdf: whether it is the RDF's first minimum.
        rdf: the Li-ligand RDF used for the cut-off (None if ``r_cut`` was given).
        ligand_cn: mean number of ligand atoms within r_cut of a Li.
        anion_cn: mean number of distinct anions bound to a Li.
        anion_cn_distribution: (K,) fraction of Li bound to 0, 1, ... K-1 anions.
        denticity_distribution: (D,) fraction of Li-anion contacts through 1, 2, ... D ligand atoms (monodentate,
            bidentate, ...), over all frames; empty when no Li is ever bound.
        clusters: cluster-size statistics (:class:`ClusterDistribution`).
        lag_fs: (T,) lags of the correlation functions in fs.
        continuous, intermittent: (T,) residence correlation functions of Li-anion contacts.
        bound_fraction: <h>, the fraction of (ever bound) Li-anion pairs bound, the plateau of ``intermittent``.
        lifetime_continuous: the integral of ``continuous`` (:func:`residence_time`; its ``decayed`` flag says
            whether C fell below 0.05 in the run, else the value is a lower bound).
        lifetime_intermittent: the integral of ``(intermittent - <h>) / (1 - <h>)``
            (:func:`~aiida_ilmlff.analysis.normalised_intermittent`) down to 0.05 plus its exponential tail
            (``residence_time(..., 'integral_tail')``), independent of the run length once the run is much longer.
    """

    r_cut: float
    r_cut_from_rdf: bool
    rdf: RDFResult | None
    ligand_cn: float
    anion_cn: float
    anion_cn_distribution: np.ndarray
    denticity_distribution: np.ndarray
    clusters: ClusterDistribution
    lag_fs: np.ndarray
    continuous: np.ndarray
    intermittent: np.ndarray
    lifetime_continuous: ResidenceTime | None
    lifetime_intermittent: ResidenceTime | None
    bound_fraction: float | None = None


def li_environment_from_trajectory(
    path,
    li='Li',
    ligand='TFSI:O',
    r_cut: float | None = None,
    *,
    rdf_r_max: float | None = 6.0,
    n_bins: int = 240,
    tolerance: int = 0,
    chunk_size: int | None = None,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
) -> LiEnvironment:
    """Li+ coordination, Li-anion clusters and contact lifetimes over a trajectory.

    An anion is bound to a Li when any of its ligand atoms (``'TFSI:O'``, ``'BF4:F'``) is within
    ``r_cut``; by default ``r_cut`` is the first minimum (:func:`~aiida_ilmlff.analysis.first_minimum`)
    of the Li-ligand g(r) computed first up to ``rdf_r_max`` (capped at half the cell width).
    Clusters are connected components of the Li-anion graph (:func:`~aiida_ilmlff.analysis.li_clusters`);
    the residence functions and lifetimes follow :mod:`~aiida_ilmlff.analysis.residence`. The
    lifetimes are None when a correlation function cannot be integrated (too short a run).

    :raises ValueError: an absent species/element; frames not evenly spaced.
    """
    r_cut_from_rdf = r_cut is None
    rdf_result = None
    if r_cut is None:
        with TrajectoryReader(path) as reader:
            limit = _max_r(reader, reader.frame_range(start, stop, stride))
        rdf_result = rdf_from_trajectory(
            path,
            li,
            ligand,
            min(rdf_r_max or limit, limit),
            n_bins,
            chunk_size=chunk_size,
            start=start,
            stop=stop,
            stride=stride,
        )
        r_cut = first_minimum(rdf_result.r, rdf_result.g)
    with TrajectoryReader(path) as reader:
        li_atoms = reader.select_atoms(li)
        ligand_atoms = reader.select_atoms(ligand)
        ligand_mol = reader.mol_id[ligand_atoms]
        anion_ids = np.unique(ligand_mol)
        window = reader.frame_range(start, stop, stride)
        n_frames = len(range(window.start, window.stop, window.step))
        timestep = reader.timestep_fs(window.step, window.start, window.stop) if n_frames > 1 else 0.0
        bound = np.zeros((n_frames, len(li_atoms), len(anion_ids)), dtype=bool)
        ligand_total = 0
        dentate = np.zeros(1, dtype=np.int64)  # contacts through 1, 2, ... ligand atoms
        t = 0
        for chunk in reader.iter_chunks(chunk_size, window.step, window.start, window.stop):
            for frame, cell in zip(chunk.positions, chunk.cell):
                contacts = li_anion_contacts(frame[li_atoms], frame[ligand_atoms], ligand_mol, cell, r_cut, anion_ids)
                bound[t] = contacts.bound
                ligand_total += int(contacts.ligand_counts.sum())
                counts = np.bincount(contacts.denticity[contacts.bound])[1:]
                if len(counts) > len(dentate):
                    dentate = np.pad(dentate, (0, len(counts) - len(dentate)))
                dentate[: len(counts)] += counts
                t += 1
    anion_counts = bound.sum(axis=2).ravel()
    distribution = np.bincount(anion_counts) / anion_counts.size
    continuous = intermittent = np.zeros(n_frames)
    lifetime_c = lifetime_i = h_mean = None
    if bound.any() and n_frames >= 2:
        continuous = residence_correlation(bound, 'continuous', tolerance=tolerance)
        intermittent = residence_correlation(bound, 'intermittent')
        h_mean = bound_fraction(bound)
        if n_frames >= 3:
            try:
                lifetime_c = residence_time(continuous, timestep)
            except ValueError:
                lifetime_c = None
            try:
                lifetime_i = residence_time(normalised_intermittent(intermittent, h_mean), timestep, 'integral_tail')
            except ValueError:
                lifetime_i = None
    return LiEnvironment(
        r_cut=float(r_cut),
        r_cut_from_rdf=r_cut_from_rdf,
        rdf=rdf_result,
        ligand_cn=ligand_total / (n_frames * len(li_atoms)),
        anion_cn=float(anion_counts.mean()),
        anion_cn_distribution=distribution,
        denticity_distribution=dentate / dentate.sum() if dentate.sum() else np.zeros(0),
        clusters=cluster_size_distribution(bound),
        lag_fs=np.arange(n_frames) * timestep,
        continuous=continuous,
        intermittent=intermittent,
        lifetime_continuous=lifetime_c,
        lifetime_intermittent=lifetime_i,
        bound_fraction=h_mean,
    )


def conformers_from_trajectory(
    path,
    species: str = 'TFSI',
    *,
    cis_cut_deg: float = 90.0,
    chunk_size: int | None = None,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
) -> tuple[np.ndarray, ConformerFractions]:
    """Cis/trans populations of the C-S...S-C dihedral of every molecule of ``species`` over time.

    :returns: ``(time_fs, fractions)``: (T,) times and :class:`~aiida_ilmlff.analysis.ConformerFractions`.
    :raises ValueError: the species is absent, or its molecules lack two S and two C atoms.
    """
    with TrajectoryReader(path) as reader:
        molecules = reader.select_molecules(species)
        window = reader.frame_range(start, stop, stride)
        first = reader[window.start]
        atoms = tfsi_dihedral_atoms(reader.numbers, reader.mol_id, first.positions, first.cell, molecules)
        angles = [
            tfsi_dihedrals(chunk.positions, atoms, chunk.cell)
            for chunk in reader.iter_chunks(chunk_size, window.step, window.start, window.stop)
        ]
        times = reader.time[window]
    return times, classify_cis_trans(np.concatenate(angles), cis_cut_deg)


def density_from_trajectory(
    path, *, start: int = 0, stop: int | None = None, stride: int = 1, equilibration='detect'
) -> tuple[np.ndarray, np.ndarray, TimeSeriesStatistics]:
    """Density series of a trajectory (reads only the cells) and its statistics.

    :returns: ``(time_fs, density_g_cm3, statistics)`` with the (T,) series and
        :func:`~aiida_ilmlff.analysis.timeseries_statistics` of it.
    """
    with TrajectoryReader(path) as reader:
        window = reader.frame_range(start, stop, stride)
        series = np.atleast_1d(density(reader.masses, reader.volumes(window.start, window.stop, window.step)))
        times = reader.time[window]
    return times, series, timeseries_statistics(series, times, equilibration=equilibration)
