"""Analysis of ionic-liquid MD trajectories: pure numpy / scipy / h5py, no AiiDA.

Density, mean-squared displacement and self-diffusion (with the Yeh-Hummer correction), radial
distribution functions and coordination numbers, Li+ coordination / clusters / residence times,
TFSI cis/trans conformers, and the project's streaming HDF5 trajectory format. See ``docs/analysis.md``.
Units: Å, fs, amu, eV; diffusion coefficients in m^2/s, densities in g/cm^3.
"""

from ._common import AnalysisResult, WrappedCoordinatesError
from .conformers import ConformerFractions, classify_cis_trans, tfsi_dihedral_atoms, tfsi_dihedrals
from .density import (
    TimeSeriesStatistics,
    block_average,
    density,
    density_statistics,
    timeseries_statistics,
)
from .geometry import (
    cell_volume,
    check_unwrapped,
    dihedral,
    is_orthorhombic,
    minimum_image,
    pairs_within,
    perpendicular_widths,
)
from .lithium import (
    ClusterDistribution,
    LiClusters,
    LiContacts,
    cluster_size_distribution,
    li_anion_contacts,
    li_clusters,
)
from .molecules import MoleculeTree, center_of_mass_matrix, make_whole, molecular_centers_of_mass, species_groups
from .msd import (
    DIFFUSIVE_SLOPE_BAND,
    MSD_TARGET_A2,
    YEH_HUMMER_XI,
    BlockError,
    DiffusionResult,
    MSDRegime,
    block_diffusion_error,
    classify_msd,
    diffusion_coefficient,
    local_loglog_slope,
    msd,
    yeh_hummer_correction,
)
from .rdf import (
    NoFirstShellError,
    RDFAccumulator,
    RDFResult,
    coordination_number,
    first_minimum,
    rdf,
    running_coordination_number,
)
from .rdf_agreement import RDFAgreement, first_peak, rdf_agreement, rdf_distance
from .residence import (
    ResidenceTime,
    bound_fraction,
    normalised_intermittent,
    residence_correlation,
    residence_time,
)
from .streaming import (
    LiEnvironment,
    TrajectoryMSD,
    conformers_from_trajectory,
    density_from_trajectory,
    li_environment_from_trajectory,
    msd_from_trajectory,
    rdf_from_trajectory,
)
from .trajectory import FORMAT, FORMAT_VERSION, Frames, TrajectoryReader, TrajectoryWriter

__all__ = (
    'DIFFUSIVE_SLOPE_BAND',
    'FORMAT',
    'FORMAT_VERSION',
    'MSD_TARGET_A2',
    'YEH_HUMMER_XI',
    'AnalysisResult',
    'BlockError',
    'ClusterDistribution',
    'ConformerFractions',
    'DiffusionResult',
    'Frames',
    'LiClusters',
    'LiContacts',
    'LiEnvironment',
    'MSDRegime',
    'MoleculeTree',
    'NoFirstShellError',
    'RDFAccumulator',
    'RDFAgreement',
    'RDFResult',
    'ResidenceTime',
    'TimeSeriesStatistics',
    'TrajectoryMSD',
    'TrajectoryReader',
    'TrajectoryWriter',
    'WrappedCoordinatesError',
    'block_average',
    'block_diffusion_error',
    'bound_fraction',
    'cell_volume',
    'center_of_mass_matrix',
    'check_unwrapped',
    'classify_cis_trans',
    'classify_msd',
    'cluster_size_distribution',
    'conformers_from_trajectory',
    'coordination_number',
    'density',
    'density_from_trajectory',
    'density_statistics',
    'diffusion_coefficient',
    'dihedral',
    'first_minimum',
    'first_peak',
    'is_orthorhombic',
    'li_anion_contacts',
    'li_clusters',
    'li_environment_from_trajectory',
    'local_loglog_slope',
    'make_whole',
    'minimum_image',
    'molecular_centers_of_mass',
    'msd',
    'msd_from_trajectory',
    'normalised_intermittent',
    'pairs_within',
    'perpendicular_widths',
    'rdf',
    'rdf_agreement',
    'rdf_distance',
    'rdf_from_trajectory',
    'residence_correlation',
    'residence_time',
    'running_coordination_number',
    'species_groups',
    'tfsi_dihedral_atoms',
    'tfsi_dihedrals',
    'timeseries_statistics',
    'yeh_hummer_correction',
)
