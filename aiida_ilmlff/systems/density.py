"""Reference liquid densities of ionic-liquid compositions: experimental where known, else an ion-volume estimate.

The build density of a box (``ilmlff.dataset`` without ``box_density``, the pipeline, active learning) comes from
:func:`reference_density` (exposed as ``aiida_ilmlff.systems.composition.reference_density``):

1. **Experimental neat liquids** (:data:`EXPERIMENTAL_DENSITIES`): density at a reference temperature, with its
   source. A composition that is one of them (any number of ion pairs) gets that density.
2. **Volume additivity** for everything else: the box volume is the sum of the molar volumes of its parts. The
   experimental ion pairs contained in the composition contribute their measured volume; every remaining ion
   contributes its *effective ion volume* ``k * v_vdW``, with ``v_vdW`` the van der Waals volume of one RDKit
   conformer (``AllChem.ComputeMolVolume``, grid 0.2 Å, RDKit's vdW radii) and ``k`` (:data:`PACKING_FACTOR`) the
   ratio of experimental molecular volume to the summed vdW volumes, fitted on the table below (1.50-1.57 over its
   six 298 K entries; the estimate's density error there is about 2 %). Li-salt/IL mixtures such as LiTFSI in
   PYR14TFSI are estimated this way from the neat PYR14TFSI volume plus ``k * v_vdW`` of Li+ and TFSI-.
3. **Default temperature** (:func:`default_temperature`): 298.15 K where every measured pair is liquid at room
   temperature, 25 K above the highest melting point otherwise (PYR14BF4: 450 K), 450 K for unknown liquids.
4. **Temperature**: the Gardas-Coutinho form of the volume, ``V(T) ~ a + b T`` with ``a = 0.8005`` and
   ``b = 6.652e-4 K^-1`` (R. L. Gardas, J. A. P. Coutinho, Fluid Phase Equilib. 263 (2008) 26-32), i.e. about
   0.07 % expansion per kelvin, from each entry's reference temperature to the one asked for.

Pure numpy/RDKit, no AiiDA.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing as t
from collections.abc import Mapping

from aiida_ilmlff.common.units import AMU_A3_TO_G_CM3

from .errors import CompositionError

__all__ = (
    'EXPERIMENTAL_DENSITIES',
    'GARDAS_COUTINHO_A',
    'GARDAS_COUTINHO_B_PER_K',
    'MELTING_MARGIN',
    'PACKING_FACTOR',
    'UNKNOWN_LIQUID_TEMPERATURE',
    'DensityReference',
    'default_temperature',
    'density_reference',
    'ion_vdw_volume',
    'reference_density',
)

#: Gardas & Coutinho (2008) temperature dependence of ionic-liquid molar volumes: ``V ~ a + b T`` (T in K).
GARDAS_COUTINHO_A = 0.8005
GARDAS_COUTINHO_B_PER_K = 6.652e-4


@dataclasses.dataclass(frozen=True)
class ExperimentalDensity:
    """A measured liquid density: ``density`` g/cm^3 at ``temperature`` [K] (1 bar), and where it comes from;
    ``melting_point`` [K] of the crystal where it lies above ~270 K (``None``: liquid at room temperature)."""

    density: float
    temperature: float
    source: str
    melting_point: float | None = None


#: Neat ionic liquids (cation, anion) -> measured density. Values rounded to 0.01 g/cm^3 (scatter between
#: laboratories is about that).
EXPERIMENTAL_DENSITIES: dict[tuple[str, str], ExperimentalDensity] = {
    ('PYR14', 'TFSI'): ExperimentalDensity(
        1.40, 298.15, 'H. Tokuda et al., J. Phys. Chem. B 110 (2006) 19593 ([bmpro][NTf2], 1.39-1.40 g/cm^3 at 298 K)'
    ),
    ('PYR14', 'BF4'): ExperimentalDensity(
        1.20,
        450.0,
        'liquid volume of ~317 A^3 per ion pair above the melting point (424 K), as used by Park, Ryu & Lee, '
        'arXiv 2503.18249 (docs: DESIGN.md section 1); PYR14BF4 is a solid at 298 K',
        423.8,  # DSC melting onset 150.6 C (DESIGN.md section 1)
    ),
    ('BMIM', 'BF4'): ExperimentalDensity(1.20, 298.15, 'NIST ILThermo consensus, [C4mim][BF4] 1.20-1.21 g/cm^3'),
    ('BMIM', 'PF6'): ExperimentalDensity(1.37, 298.15, 'NIST ILThermo consensus, [C4mim][PF6] 1.36-1.37 g/cm^3'),
    ('BMIM', 'TFSI'): ExperimentalDensity(1.44, 298.15, 'NIST ILThermo consensus, [C4mim][NTf2] 1.43-1.44 g/cm^3'),
    ('EMIM', 'TFSI'): ExperimentalDensity(1.52, 298.15, 'NIST ILThermo consensus, [C2mim][NTf2] 1.51-1.52 g/cm^3'),
    ('EMIM', 'BF4'): ExperimentalDensity(1.28, 298.15, 'NIST ILThermo consensus, [C2mim][BF4] 1.28-1.29 g/cm^3'),
}

#: Effective ion volume / van der Waals volume (RDKit, grid 0.2 Å), the mean over the 298 K entries of
#: :data:`EXPERIMENTAL_DENSITIES` (checked in ``tests/systems/test_density.py``).
PACKING_FACTOR = 1.54


def _volume_factor(temperature_K: float) -> float:
    return GARDAS_COUTINHO_A + GARDAS_COUTINHO_B_PER_K * float(temperature_K)


@functools.cache
def _vdw_volume(smiles: str, charge: int) -> float:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from .ions import parse_ion_smiles

    mol = parse_ion_smiles(smiles, charge)
    if mol.GetNumAtoms() > 1:
        if AllChem.EmbedMolecule(mol, randomSeed=7) != 0:
            raise CompositionError(f'RDKit could not embed {smiles!r} to estimate its volume')
    else:
        mol.AddConformer(Chem.Conformer(1))
    return float(AllChem.ComputeMolVolume(mol, gridSpacing=0.2))


def ion_vdw_volume(ion: t.Any) -> float:
    """Van der Waals volume [Å^3] of one ``ion`` (an :class:`~aiida_ilmlff.systems.ions.Ion`): RDKit's grid volume
    (``AllChem.ComputeMolVolume``, spacing 0.2 Å) of one embedded conformer (ETKDG, seed 7), hydrogens included."""
    return _vdw_volume(ion.smiles, int(ion.charge))


def _measured_pairs(comp: t.Any) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """Whole measured ion pairs in a validated composition (the most abundant first) and the ions left over."""
    remaining = dict(comp.counts)
    ions = comp.ions

    def available(item):
        (cation, anion), _ = item
        return -min(remaining.get(cation, 0), remaining.get(anion, 0))

    pairs = {}
    for (cation, anion), _ in sorted(EXPERIMENTAL_DENSITIES.items(), key=available):
        if cation not in ions or anion not in ions:
            continue
        c, a = ions[cation], ions[anion]
        n_pairs = min(remaining[cation] // abs(a.charge), remaining[anion] // abs(c.charge))
        if n_pairs <= 0:
            continue
        remaining[cation] -= n_pairs * abs(a.charge)
        remaining[anion] -= n_pairs * abs(c.charge)
        pairs[(cation, anion)] = n_pairs
    return pairs, remaining


#: Default temperature [K] of a composition with no measured ion pair (most ionic liquids melt below ~425 K).
UNKNOWN_LIQUID_TEMPERATURE = 450.0
#: Kelvin above the melting point of the highest-melting measured pair for a default temperature.
MELTING_MARGIN = 25.0


def default_temperature(composition: Mapping[str, t.Any]) -> float:
    """A default simulation temperature [K] at which ``composition`` is liquid.

    298.15 K when every measured ion pair of the composition (:data:`EXPERIMENTAL_DENSITIES`) is liquid at room
    temperature (PYR14TFSI and its LiTFSI mixtures, BMIM and EMIM salts); otherwise :data:`MELTING_MARGIN` above
    the highest melting point among them, rounded up to 10 K (PYR14BF4, melting at 424 K: 450 K); 450 K when the
    composition holds no measured pair. Salt ions left over (e.g. Li+ of LiTFSI) do not change it.

    :raises CompositionError: an invalid composition.
    """
    from .composition import validate_composition

    pairs, _ = _measured_pairs(validate_composition(composition))
    if not pairs:
        return UNKNOWN_LIQUID_TEMPERATURE
    melting = [EXPERIMENTAL_DENSITIES[pair].melting_point or 0.0 for pair in pairs]
    highest = max(melting)
    if highest + MELTING_MARGIN <= 298.15:
        return 298.15
    return float(math.ceil((highest + MELTING_MARGIN) / 10.0) * 10.0)


@dataclasses.dataclass(frozen=True)
class DensityReference:
    """What :func:`density_reference` returns: ``density`` g/cm^3 at ``temperature`` [K]; ``method``
    (``experimental`` or ``estimate``); ``sources`` (the measurements used, with their references);
    ``volume`` [Å^3] of the whole composition."""

    density: float
    temperature: float
    method: str
    sources: tuple[str, ...]
    volume: float


def density_reference(composition: Mapping[str, t.Any], temperature_K: float) -> DensityReference:
    """The reference density of ``composition`` at ``temperature_K`` and how it was obtained (module docstring).

    :param composition: ion name -> number of molecules (anything :func:`validate_composition` accepts).
    :param temperature_K: K, > 0.
    :raises CompositionError: an invalid composition or temperature.
    """
    from .composition import validate_composition

    try:
        temperature = float(temperature_K)
    except (TypeError, ValueError):
        raise CompositionError(f'temperature_K must be a number in K, got {temperature_K!r}') from None
    if not math.isfinite(temperature) or temperature <= 0:
        raise CompositionError(f'temperature_K must be a positive number in K, got {temperature_K!r}')
    comp = validate_composition(composition)
    ions = comp.ions
    pairs, remaining = _measured_pairs(comp)
    volume = 0.0
    sources = []
    scale = _volume_factor(temperature)
    for (cation, anion), n_pairs in pairs.items():
        entry = EXPERIMENTAL_DENSITIES[(cation, anion)]
        c, a = ions[cation], ions[anion]
        pair_mass = c.mass * abs(a.charge) + a.mass * abs(c.charge)
        pair_volume = pair_mass / (entry.density / AMU_A3_TO_G_CM3)
        volume += n_pairs * pair_volume * scale / _volume_factor(entry.temperature)
        sources.append(f'{cation}{anion}: {entry.density} g/cm^3 at {entry.temperature:g} K ({entry.source})')

    # Take whole measured ion pairs first (the largest count first), the rest by effective ion volumes.
    rest = {name: count for name, count in remaining.items() if count > 0}
    for name, count in rest.items():
        volume += count * PACKING_FACTOR * ion_vdw_volume(ions[name]) * scale / _volume_factor(298.15)
    method = 'experimental' if not rest else 'estimate'
    if rest:
        sources.append(
            f'ions {sorted(rest)}: {PACKING_FACTOR} x RDKit van der Waals volume (volume additivity, fitted on the '
            'experimental table); Gardas & Coutinho (2008) temperature dependence'
        )
    density = comp.mass / volume * AMU_A3_TO_G_CM3
    return DensityReference(float(density), temperature, method, tuple(sources), float(volume))


def reference_density(composition: Mapping[str, t.Any], temperature_K: float) -> float:
    """Reference liquid density [g/cm^3] of ``composition`` at ``temperature_K`` (see the module docstring).

    Experimental densities of neat ionic liquids where known (:data:`EXPERIMENTAL_DENSITIES`: PYR14TFSI 1.40 g/cm^3
    at 298 K, Tokuda et al. 2006; PYR14BF4 1.20 g/cm^3 at 450 K; BMIM/EMIM salts from NIST ILThermo), otherwise
    volume additivity with effective ion volumes (1.54 x the RDKit van der Waals volume); temperature dependence
    of Gardas & Coutinho, Fluid Phase Equilib. 263 (2008) 26. Use :func:`density_reference` for the sources.

    :param composition: ion name -> number of molecules, e.g. ``{'PYR14': 10, 'TFSI': 10}``.
    :param temperature_K: K.
    :raises CompositionError: (a ``ValueError``) for an invalid composition or temperature.
    """
    return density_reference(composition, temperature_K).density
