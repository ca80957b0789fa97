"""Training-set sampling for ionic-liquid MLFFs: EQ frames from MD, nEQ perturbations, label statistics. No AiiDA.

Following Park, Ryu & Lee (arXiv 2503.18249), a training set holds equilibrated (EQ) frames, sampled from MD
without the equilibration part and spaced by the statistical inefficiency (:mod:`.decorrelate`), and
non-equilibrated (nEQ) frames made by perturbing them (:mod:`.perturb`). Trajectories from other programs are
read by :mod:`.importers`; :mod:`.stats` and :mod:`.figures` summarise and plot a data set's labels per origin.
See ``docs/dataset.md``; the AiiDA side is :mod:`aiida_ilmlff.calculations.functions.sampling` and the
``ilmlff.dataset`` work chain.
"""

from .decorrelate import (
    METHODS,
    OBSERVABLES,
    Selection,
    detect_equilibration,
    farthest_point_sampling,
    pair_distance_descriptor,
    select_equilibrium_frames,
)
from .importers import (
    TRAJECTORY_FORMATS,
    ImportedTrajectory,
    SpeciesMismatchError,
    assign_molecules,
    check_species,
    composition_element_counts,
    read_first_frame,
    read_trajectory,
)
from .molecules import bond_graph, bond_graph_difference, centers_of_mass, closest_pair, unwrap_molecules
from .perturb import (
    GENERATORS,
    MAX_STRAIN,
    MIN_DISTANCE,
    REJECTION_REASONS,
    Perturbed,
    close_contact,
    density_series,
    generate_neq,
    hot_snapshots,
    molecule_charges,
    neq_report,
    random_strain,
    rattle,
    screen_frame,
    strain,
    strain_tensor,
    thermal,
    validate_generators,
)
from .stats import distribution, frame_observables, label_summary

__all__ = (
    'GENERATORS',
    'MAX_STRAIN',
    'METHODS',
    'MIN_DISTANCE',
    'OBSERVABLES',
    'REJECTION_REASONS',
    'TRAJECTORY_FORMATS',
    'ImportedTrajectory',
    'Perturbed',
    'Selection',
    'SpeciesMismatchError',
    'assign_molecules',
    'bond_graph',
    'bond_graph_difference',
    'centers_of_mass',
    'check_species',
    'close_contact',
    'closest_pair',
    'composition_element_counts',
    'density_series',
    'detect_equilibration',
    'distribution',
    'farthest_point_sampling',
    'frame_observables',
    'generate_neq',
    'hot_snapshots',
    'label_summary',
    'molecule_charges',
    'neq_report',
    'pair_distance_descriptor',
    'random_strain',
    'rattle',
    'read_first_frame',
    'read_trajectory',
    'screen_frame',
    'select_equilibrium_frames',
    'strain',
    'strain_tensor',
    'thermal',
    'unwrap_molecules',
    'validate_generators',
)
