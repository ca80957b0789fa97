"""Non-equilibrium (nEQ) frames: perturbations of equilibrated ionic-liquid frames. Pure numpy/ASE, no AiiDA.

Park, Ryu & Lee (arXiv 2503.18249) found that MLFFs of ionic liquids are reliable only when the training set
also holds frames away from equilibrium. The generators here make such frames from a source frame (``ase.Atoms``
with ``arrays['mol_id']`` and, for close contacts, ``info['molecules']``):

``rattle``
    Gaussian displacements of every atom (standard deviation ``sigma`` in Å per Cartesian component). With
    ``keep_molecules`` the bond graph must stay that of the source frame: a frame whose graph changed is
    redrawn (``on_broken='reject'``) or its displacements are halved until it is intact (``'scale'``).
``strain``
    A homogeneous deformation ``F = I + eps`` of the cell (``eps``: symmetric strain tensor; isotropic,
    anisotropic or with shear). ``mode='rigid'`` moves every molecule rigidly with its centre of mass
    (molecules are first made whole across the periodic boundaries), ``'affine'`` maps every atom.
``density``
    A compression/expansion series: isotropic rigid-molecule strains that bring the frame to densities
    ``factor * rho_0`` evenly spread over ``[factor_min, factor_max]``.
``close_contact``
    A cation-anion pair is brought together by a rigid translation (after a random rigid rotation) of the
    anion along the line between their centres of mass until their closest atoms are ``d`` apart, ``d``
    drawn uniformly in ``[floor, upper]`` Å; no other intermolecular contact may fall below ``floor``.
``thermal``
    Maxwell-Boltzmann displacements ``v_i t`` with ``v_i`` drawn at ``temperature`` (a ballistic step of
    ``time_fs`` without forces: heavier atoms move less), with the same ``keep_molecules`` handling as rattle.
``hot_md``
    Frames of a high-temperature trajectory (AIMD or MLFF MD) taken as they are (:func:`hot_snapshots`).

Every produced frame gets ``info['origin'] = 'nEQ'`` and ``info['perturbation']``: the generator, its
parameters and the index of the source frame. Labels and velocities of the source are dropped. Any frame
with two atoms closer than ``min_distance`` (default :data:`MIN_DISTANCE` = 0.7 Å, periodic images
included) is rejected, and so is any frame that breaks a ``keep_molecules`` rule; each rejection is returned
as a dict with ``generator``, ``reason`` (one of :data:`REJECTION_REASONS`), ``detail``, ``source_index`` and
the parameters, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import math
import typing as t

import numpy as np
from ase import Atoms, units
from ase.data import atomic_masses
from ase.geometry import get_distances

from aiida_ilmlff.common.units import AMU_A3_TO_G_CM3

from .molecules import (
    bond_graph,
    bond_graph_difference,
    centers_of_mass,
    closest_pair,
    molecule_ids,
    squeezed_bonds,
    unwrap_molecules,
)
from .split import largest_remainder

__all__ = (
    'GENERATORS',
    'MAX_STRAIN',
    'MIN_DISTANCE',
    'REJECTION_REASONS',
    'Perturbed',
    'close_contact',
    'density_series',
    'generate_neq',
    'generator_counts',
    'hot_snapshots',
    'molecule_charges',
    'neq_report',
    'rattle',
    'screen_frame',
    'strain',
    'strain_tensor',
    'thermal',
    'validate_generators',
)

#: Default floor in Å: a frame with two atoms closer than this is rejected.
MIN_DISTANCE = 0.7

#: Strains (any principal value, as a fraction) must be strictly below this.
MAX_STRAIN = 0.5

#: Why a generated frame can be rejected.
REJECTION_REASONS = {
    'too_close': 'two atoms are closer than `min_distance`',
    'bond_graph_changed': 'a bond of the source frame broke or a new one formed (see `bond_graph_difference`)',
    'bond_squeezed': 'a bond of the source frame is shorter than 0.75 x the covalent-radius sum (`squeezed_bonds`)',
    'contact_below_floor': 'a close-contact move brought another pair of molecules below `floor`',
    'no_contact_found': 'no translation reached the target cation-anion distance',
}

#: Generators of :func:`generate_neq` and their parameters with defaults (``weight``: share of the frames).
GENERATORS: dict[str, dict[str, t.Any]] = {
    'rattle': {'weight': 1.0, 'sigma_min': 0.02, 'sigma_max': 0.15, 'keep_molecules': True, 'on_broken': 'reject'},
    'strain': {'weight': 1.0, 'max_strain': 0.1, 'kind': 'anisotropic', 'mode': 'rigid', 'keep_molecules': True},
    'density': {'weight': 1.0, 'factor_min': 0.85, 'factor_max': 1.15, 'mode': 'rigid'},
    'close_contact': {'weight': 1.0, 'floor': 1.5, 'upper': 2.2, 'rotate': True},
    'thermal': {'weight': 1.0, 'temperature': 1000.0, 'time_fs': 4.0, 'keep_molecules': True, 'on_broken': 'reject'},
}

_STRAIN_KINDS = ('isotropic', 'anisotropic', 'shear')
_MODES = ('rigid', 'affine')
_ON_BROKEN = ('reject', 'scale')


@dataclasses.dataclass
class Perturbed:
    """Frames made by a generator (``frames``, ``ase.Atoms`` with origin nEQ) and the rejections (``rejected``)."""

    frames: list[Atoms] = dataclasses.field(default_factory=list)
    rejected: list[dict] = dataclasses.field(default_factory=list)

    def extend(self, other: Perturbed) -> Perturbed:
        """Append the frames and rejections of ``other``; return ``self``."""
        self.frames.extend(other.frames)
        self.rejected.extend(other.rejected)
        return self


# --------------------------------------------------------------------------------------------- helpers


def _clean_copy(atoms: Atoms) -> Atoms:
    """A copy without calculator, velocities or labels; ``mol_id`` and ``molecules`` kept."""
    copy = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if 'mol_id' in atoms.arrays:
        copy.arrays['mol_id'] = np.asarray(atoms.arrays['mol_id'], dtype=np.int64).copy()
    for key in ('molecules', 'ions', 'source'):
        if key in atoms.info:
            copy.info[key] = atoms.info[key]
    return copy


def _tag(atoms: Atoms, generator: str, source_index: int, parameters: dict) -> Atoms:
    atoms.info['origin'] = 'nEQ'
    atoms.info['perturbation'] = {'generator': generator, 'source_index': int(source_index), **_plain(parameters)}
    return atoms


def _plain(value: t.Any) -> t.Any:
    """JSON-ready copy: numpy scalars and arrays to Python numbers and lists, floats rounded to 10 digits."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return (
            [_plain(v) for v in np.asarray(value).tolist()]
            if isinstance(value, np.ndarray)
            else [_plain(v) for v in value]
        )
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f'{float(value):.10g}')
    return value


def _rejection(generator: str, reason: str, detail: str, source_index: int, parameters: dict) -> dict:
    return {
        'generator': generator,
        'reason': reason,
        'detail': detail,
        'source_index': int(source_index),
        'parameters': _plain(parameters),
    }


def screen_frame(
    atoms: Atoms, min_distance: float = MIN_DISTANCE, reference_bonds: frozenset | None = None
) -> tuple[str, str] | None:
    """Why ``atoms`` must be rejected, as ``(reason, detail)``; ``None`` if it passes.

    :param min_distance: floor in Å for the distance between any two atoms (periodic images included).
    :param reference_bonds: the bond graph (:func:`~aiida_ilmlff.sampling.molecules.bond_graph`) of the source
        frame, which the frame must keep (:func:`~aiida_ilmlff.sampling.molecules.bond_graph_difference`: no
        bond stretched beyond 1.5 x the covalent-radius sum, no new pair below 1.0 x; and no bond squeezed
        below 0.75 x, :func:`~aiida_ilmlff.sampling.molecules.squeezed_bonds`); ``None`` to skip.
    """
    distance, i, j = closest_pair(atoms, cutoff=max(min_distance, 1e-3) + 0.5)
    if distance < min_distance:
        symbols = atoms.get_chemical_symbols()
        return (
            'too_close',
            f'atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {distance:.3f} A apart < {min_distance} A',
        )
    if reference_bonds is not None:
        broken, formed = bond_graph_difference(reference_bonds, atoms)
        if broken or formed:
            return 'bond_graph_changed', f'bonds broken {broken[:5]}, formed {formed[:5]}'
        squeezed = squeezed_bonds(reference_bonds, atoms)
        if squeezed:
            i, j, d = squeezed[0]
            return 'bond_squeezed', f'{len(squeezed)} bond(s) squeezed, e.g. {i}-{j} at {d:.3f} A'
    return None


def generator_counts(total: int, weights: t.Mapping[str, float]) -> dict[str, int]:
    """Split ``total`` frames over the generators in proportion to ``weights`` (largest remainder, stable).

    :returns: generator name -> count (0 for a non-positive weight); the counts sum to ``total`` (0 if
        ``total <= 0`` or no weight is positive).
    """
    names = [name for name, weight in weights.items() if weight > 0]
    if total <= 0 or not names:
        return {name: 0 for name in weights}
    values = np.array([float(weights[name]) for name in names])
    counts = largest_remainder(values / values.sum() * total, total)
    result = {name: 0 for name in weights}
    result.update({name: int(count) for name, count in zip(names, counts)})
    return result


# --------------------------------------------------------------------------------------------- rattle / thermal


def _displace(
    atoms: Atoms,
    generator: str,
    scales: np.ndarray,
    *,
    n: int,
    rng: np.random.Generator,
    keep_molecules: bool,
    on_broken: str,
    max_attempts: int,
    min_distance: float,
    source_index: int,
    parameters: dict,
) -> Perturbed:
    """Shared engine of :func:`rattle` and :func:`thermal`: displacements ``scales[:, None] * N(0, 1)``."""
    if on_broken not in _ON_BROKEN:
        raise ValueError(f'`on_broken` must be one of {_ON_BROKEN}, got {on_broken!r}')
    reference = bond_graph(atoms) if keep_molecules else None
    result = Perturbed()
    attempts = 0
    while len(result.frames) < n and attempts < n * max_attempts:
        attempts += 1
        noise = rng.standard_normal((len(atoms), 3)) * scales[:, None]
        factor = 1.0
        for _ in range(max_attempts if on_broken == 'scale' else 1):
            frame = _clean_copy(atoms)
            frame.positions = atoms.positions + factor * noise
            reason = screen_frame(frame, min_distance, reference)
            if reason is None or reason[0] not in ('bond_graph_changed', 'bond_squeezed') or on_broken == 'reject':
                break
            factor *= 0.5
        record = {**parameters, 'keep_molecules': keep_molecules, 'on_broken': on_broken, 'scale_factor': factor}
        if reason is not None:
            result.rejected.append(_rejection(generator, *reason, source_index, record))
            continue
        rms = float(np.sqrt(np.mean(np.sum((factor * noise) ** 2, axis=1))))
        result.frames.append(_tag(frame, generator, source_index, {**record, 'rms_displacement': rms}))
    return result


def rattle(
    atoms: Atoms,
    sigma: float,
    *,
    n: int = 1,
    seed: int | np.random.Generator = 0,
    keep_molecules: bool = True,
    on_broken: str = 'reject',
    max_attempts: int = 20,
    min_distance: float = MIN_DISTANCE,
    source_index: int = 0,
) -> Perturbed:
    """``n`` frames with Gaussian displacements of standard deviation ``sigma`` [Å] per component.

    :param keep_molecules: require the source's bond graph (see :func:`screen_frame`).
    :param on_broken: ``'reject'`` (draw again, at most ``max_attempts`` draws per frame) or ``'scale'`` (halve
        the displacements of a broken frame, at most ``max_attempts`` times; ``scale_factor`` is recorded).
    :param seed: int or ``numpy.random.Generator``.
    :raises ValueError: for ``sigma <= 0`` or an unknown ``on_broken``.
    """
    if not sigma > 0:
        raise ValueError(f'rattle `sigma` must be > 0 A, got {sigma}')
    rng = np.random.default_rng(seed)
    return _displace(
        atoms,
        'rattle',
        np.full(len(atoms), float(sigma)),
        n=n,
        rng=rng,
        keep_molecules=keep_molecules,
        on_broken=on_broken,
        max_attempts=max_attempts,
        min_distance=min_distance,
        source_index=source_index,
        parameters={'sigma': float(sigma)},
    )


def thermal(
    atoms: Atoms,
    temperature: float,
    time_fs: float,
    *,
    n: int = 1,
    seed: int | np.random.Generator = 0,
    keep_molecules: bool = True,
    on_broken: str = 'reject',
    max_attempts: int = 20,
    min_distance: float = MIN_DISTANCE,
    source_index: int = 0,
) -> Perturbed:
    """``n`` frames displaced by ``v_i * time_fs`` with velocities ``v_i`` from Maxwell-Boltzmann at ``temperature``.

    The standard deviation per component is ``sqrt(k_B T / m_i) * t`` (ASE masses): a ballistic step without
    forces, so light atoms (H) move most, as in the first femtoseconds of a hot MD run.

    :param temperature: K (> 0). :param time_fs: fs (> 0). Other parameters as :func:`rattle`.
    :raises ValueError: for a non-positive temperature or time.
    """
    if not temperature > 0 or not time_fs > 0:
        raise ValueError(f'thermal `temperature` and `time_fs` must be > 0, got {temperature} K, {time_fs} fs')
    masses = atomic_masses[atoms.numbers]
    scales = np.sqrt(units.kB * float(temperature) / masses) * float(time_fs) * units.fs
    return _displace(
        atoms,
        'thermal',
        scales,
        n=n,
        rng=np.random.default_rng(seed),
        keep_molecules=keep_molecules,
        on_broken=on_broken,
        max_attempts=max_attempts,
        min_distance=min_distance,
        source_index=source_index,
        parameters={'temperature': float(temperature), 'time_fs': float(time_fs)},
    )


# --------------------------------------------------------------------------------------------- strain


def strain_tensor(value: t.Any) -> np.ndarray:
    """The symmetric ``(3, 3)`` strain tensor of ``value``: a number (isotropic), 3 numbers (diagonal), 6 numbers
    (Voigt: xx, yy, zz, yz, xz, xy) or a ``(3, 3)`` array; fractions (0.05 = 5 %).

    :raises ValueError: for another shape, non-finite values, an asymmetric tensor, or a principal strain of
        50 % or more in magnitude.
    """
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        eps = float(array) * np.eye(3)
    elif array.shape == (3,):
        eps = np.diag(array)
    elif array.shape == (6,):
        xx, yy, zz, yz, xz, xy = array
        eps = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif array.shape == (3, 3):
        eps = array.copy()
        if not np.allclose(eps, eps.T, atol=1e-12):
            raise ValueError('the strain tensor must be symmetric (rotations are not strains)')
    else:
        raise ValueError(f'strain must be a number, 3 or 6 numbers or a 3x3 tensor, got shape {array.shape}')
    if not np.isfinite(eps).all():
        raise ValueError('the strain contains non-finite values')
    principal = np.linalg.eigvalsh(eps)
    if np.abs(principal).max() >= MAX_STRAIN:
        raise ValueError(
            f'strain {np.abs(principal).max() * 100:.1f} % is too large: principal strains must stay below '
            f'{MAX_STRAIN * 100:.0f} % (typical nEQ strains are 2-15 %)'
        )
    return eps


def _deform(atoms: Atoms, eps: np.ndarray, mode: str) -> Atoms:
    """The frame under ``F = I + eps``; ``rigid`` moves molecules with their centres of mass."""
    if mode not in _MODES:
        raise ValueError(f'strain `mode` must be one of {_MODES}, got {mode!r}')
    deformation = np.eye(3) + eps
    frame = _clean_copy(atoms)
    frame.set_cell(atoms.cell.array @ deformation.T, scale_atoms=False)
    if mode == 'affine':
        frame.positions = atoms.positions @ deformation.T
    else:
        whole = unwrap_molecules(atoms)
        com = centers_of_mass(atoms, whole)
        shift = com @ deformation.T - com
        frame.positions = whole + shift[molecule_ids(atoms)]
    return frame


def strain(
    atoms: Atoms,
    value: t.Any,
    *,
    mode: str = 'rigid',
    keep_molecules: bool = True,
    min_distance: float = MIN_DISTANCE,
    source_index: int = 0,
    generator: str = 'strain',
    extra: dict | None = None,
) -> Perturbed:
    """One frame under the homogeneous strain ``value`` (see :func:`strain_tensor`).

    :param mode: ``'rigid'`` (molecules move rigidly with their centre of mass; needs ``mol_id``) or
        ``'affine'`` (every atom follows the deformation; bonds stretch too).
    :param keep_molecules: reject the frame if its bond graph differs from the source's.
    :raises ValueError: for a strain of 50 % or more, an unknown mode, or a rigid strain without ``mol_id``.
    """
    eps = strain_tensor(value)
    frame = _deform(atoms, eps, mode)
    volume_ratio = float(np.linalg.det(np.eye(3) + eps))
    parameters = {
        'strain_voigt': [eps[0, 0], eps[1, 1], eps[2, 2], eps[1, 2], eps[0, 2], eps[0, 1]],
        'mode': mode,
        'volume_ratio': volume_ratio,
        'keep_molecules': keep_molecules,
        **(extra or {}),
    }
    result = Perturbed()
    reason = screen_frame(frame, min_distance, bond_graph(atoms) if keep_molecules else None)
    if reason is not None:
        result.rejected.append(_rejection(generator, *reason, source_index, parameters))
    else:
        result.frames.append(_tag(frame, generator, source_index, parameters))
    return result


def random_strain(kind: str, max_strain: float, rng: np.random.Generator) -> np.ndarray:
    """A random symmetric strain tensor with components uniform in ``[-max_strain, max_strain]``.

    :param kind: ``'isotropic'`` (one number times the identity), ``'anisotropic'`` (three independent normal
        strains) or ``'shear'`` (normal and shear components).
    :raises ValueError: for an unknown kind or ``max_strain`` outside (0, 0.5).
    """
    if kind not in _STRAIN_KINDS:
        raise ValueError(f'strain `kind` must be one of {_STRAIN_KINDS}, got {kind!r}')
    if not 0 < max_strain < MAX_STRAIN:
        raise ValueError(f'`max_strain` must be in (0, {MAX_STRAIN}) (a fraction), got {max_strain}')
    if kind == 'isotropic':
        return rng.uniform(-max_strain, max_strain) * np.eye(3)
    if kind == 'anisotropic':
        return np.diag(rng.uniform(-max_strain, max_strain, 3))
    # Shear: off-diagonal parts at half the amplitude keep the principal strains within max_strain.
    voigt = np.concatenate([rng.uniform(-max_strain, max_strain, 3) / 2, rng.uniform(-max_strain, max_strain, 3) / 4])
    return strain_tensor(voigt)


def _density(atoms: Atoms) -> float:
    return float(atomic_masses[atoms.numbers].sum() / abs(atoms.cell.volume) * AMU_A3_TO_G_CM3)


def density_series(
    atoms: Atoms,
    factors: t.Sequence[float] | None = None,
    *,
    densities: t.Sequence[float] | None = None,
    mode: str = 'rigid',
    min_distance: float = MIN_DISTANCE,
    source_index: int = 0,
) -> Perturbed:
    """Compressed and expanded copies of ``atoms``: one frame per target density (isotropic strain).

    :param factors: target density / current density (``< 1`` expands, ``> 1`` compresses).
    :param densities: target densities in g/cm^3 (instead of ``factors``).
    :param mode: as :func:`strain` (default rigid molecules, whose internal geometry is then unchanged).
    :raises ValueError: for neither or both of ``factors``/``densities``, non-positive values, or a density
        change needing a linear strain of 50 % or more.
    """
    if (factors is None) == (densities is None):
        raise ValueError('give either `factors` or `densities`')
    rho0 = _density(atoms)
    targets = [float(f) * rho0 for f in factors] if factors is not None else [float(d) for d in densities]
    if any(not target > 0 for target in targets):
        raise ValueError(f'densities must be > 0, got {targets}')
    result = Perturbed()
    for target in targets:
        linear = (rho0 / target) ** (1.0 / 3.0) - 1.0
        extra = {'density': target, 'density_factor': target / rho0, 'source_density': rho0}
        result.extend(
            strain(
                atoms,
                linear,
                mode=mode,
                keep_molecules=False,
                min_distance=min_distance,
                source_index=source_index,
                generator='density',
                extra=extra,
            )
        )
    return result


# --------------------------------------------------------------------------------------------- close contacts


def molecule_charges(atoms: Atoms) -> np.ndarray:
    """``(M,)`` formal charge of every molecule, from ``info['molecules']`` and the ion definitions.

    Ion definitions come from ``info['ions']`` (name -> {'smiles', 'charge'}) when present, else from the ion
    library (:func:`~aiida_ilmlff.systems.get_ion`).

    :raises ValueError: if ``info['molecules']`` is missing or names an unknown ion.
    """
    from aiida_ilmlff.systems import get_ion

    molecules = atoms.info.get('molecules')
    if not molecules:
        raise ValueError("close contacts need the ion name of every molecule (atoms.info['molecules'])")
    definitions = atoms.info.get('ions') or {}
    charges = []
    for name in molecules:
        if name in definitions:
            charges.append(int(definitions[name]['charge']))
        else:
            charges.append(get_ion(name).charge)
    return np.array(charges, dtype=np.int64)


def _min_image_min(a: np.ndarray, b: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> float:
    _, distances = get_distances(a, b, cell=cell, pbc=pbc)
    return float(distances.min())


def close_contact(
    atoms: Atoms,
    *,
    n: int = 1,
    seed: int | np.random.Generator = 0,
    floor: float = 1.5,
    upper: float = 2.2,
    rotate: bool = True,
    charges: t.Sequence[int] | None = None,
    max_attempts: int = 20,
    min_distance: float = MIN_DISTANCE,
    source_index: int = 0,
) -> Perturbed:
    """``n`` frames with one cation-anion pair pushed together to a contact distance in ``[floor, upper]`` Å.

    For each frame a random cation and anion are chosen, the anion (whole) is rotated rigidly about its
    centre of mass by a uniformly random rotation (``rotate``), then translated rigidly along the line from
    its centre of mass towards the cation's (minimum image) until the shortest cation-anion atom distance
    equals a target ``d`` drawn uniformly in ``[floor, upper]`` (bisection to 1e-6 Å, on the side
    ``>= d``). A frame in which the moved anion comes closer than ``floor`` to any other molecule (or its own
    periodic image) is rejected (``contact_below_floor``). The shortest intermolecular distance of an
    accepted frame is therefore ``>= floor`` wherever the source frame's was.

    :param charges: formal charge per molecule (default :func:`molecule_charges`).
    :raises ValueError: without cations and anions, or for ``floor <= 0`` or ``upper < floor``.
    """
    if not floor > 0 or upper < floor:
        raise ValueError(f'close contacts need 0 < floor <= upper, got floor {floor}, upper {upper}')
    rng = np.random.default_rng(seed)
    mol_id = molecule_ids(atoms)
    charges = np.asarray(molecule_charges(atoms) if charges is None else charges, dtype=np.int64)
    if len(charges) != int(mol_id.max()) + 1:
        raise ValueError(f'{len(charges)} charges given for {int(mol_id.max()) + 1} molecules')
    cations, anions = np.flatnonzero(charges > 0), np.flatnonzero(charges < 0)
    if not len(cations) or not len(anions):
        raise ValueError('close contacts need at least one cation and one anion (molecules with a charge)')
    whole = unwrap_molecules(atoms)
    com = centers_of_mass(atoms, whole)
    cell, pbc = atoms.cell.array, atoms.pbc
    result = Perturbed()
    attempts = 0
    while len(result.frames) < n and attempts < n * max_attempts:
        attempts += 1
        cation, anion = int(rng.choice(cations)), int(rng.choice(anions))
        target = float(rng.uniform(floor, upper))
        members_a, members_b = np.flatnonzero(mol_id == cation), np.flatnonzero(mol_id == anion)
        moved = whole[members_b] - com[anion]
        rotation = None
        if rotate:
            from scipy.spatial.transform import Rotation

            random_rotation = Rotation.random(random_state=int(rng.integers(2**31)))
            moved = moved @ random_rotation.as_matrix().T
            rotation = random_rotation.as_rotvec()
        moved = moved + com[anion]
        _, vector = get_distances(com[anion], com[cation], cell=cell, pbc=pbc)
        vector = vector[0, 0]
        norm = float(np.linalg.norm(vector))
        direction = vector / norm if norm > 1e-9 else rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        positions_a = whole[members_a]

        def contact(shift: float, _moved=moved, _a=positions_a, _u=direction) -> float:
            return _min_image_min(_a, _moved + shift * _u, cell, pbc)

        parameters = {'cation': cation, 'anion': anion, 'target': target, 'floor': floor, 'upper': upper}
        if rotation is not None:
            parameters['rotation_vector'] = rotation
        shift = _bracket_and_bisect(contact, target, max_travel=2.0 * norm + 2.0 * float(np.abs(cell).sum()) + 10.0)
        if shift is None:
            result.rejected.append(
                _rejection('close_contact', 'no_contact_found', f'target {target:.3f} A', source_index, parameters)
            )
            continue
        frame = _clean_copy(atoms)
        positions = whole.copy()
        positions[members_b] = moved + shift * direction
        frame.positions = positions
        others = np.setdiff1d(np.arange(len(atoms)), np.concatenate([members_a, members_b]))
        others_distance = (
            _min_image_min(positions[members_b], positions[others], cell, pbc) if len(others) else math.inf
        )
        own_image = _self_image_distance(frame, members_b, floor)
        parameters.update({'contact_distance': contact(shift), 'translation': shift})
        if min(others_distance, own_image) < floor:
            detail = (
                f'moved anion {anion} is {min(others_distance, own_image):.3f} A from another molecule '
                f'or its own image (floor {floor} A)'
            )
            result.rejected.append(_rejection('close_contact', 'contact_below_floor', detail, source_index, parameters))
            continue
        reason = screen_frame(frame, min_distance)
        if reason is not None:
            result.rejected.append(_rejection('close_contact', *reason, source_index, parameters))
            continue
        result.frames.append(_tag(frame, 'close_contact', source_index, parameters))
    return result


def _self_image_distance(frame: Atoms, members: np.ndarray, floor: float) -> float:
    """Shortest distance of a molecule's atoms to the periodic images of the same molecule (inf if none)."""
    if not frame.pbc.any():
        return math.inf
    sub = frame[members]
    from ase.neighborlist import neighbor_list

    _, _, d, shifts = neighbor_list('ijdS', sub, float(floor) + 0.5, self_interaction=False)
    image = np.any(shifts != 0, axis=1)
    return float(d[image].min()) if image.any() else math.inf


def _bracket_and_bisect(
    function: t.Callable[[float], float], target: float, max_travel: float, step: float = 0.1
) -> float | None:
    """The shift ``s`` with ``function(s) >= target`` closest to a root of ``function(s) - target``.

    Steps from 0 towards smaller distances (positive shifts) when ``function(0) > target``, away (negative
    shifts) otherwise, then bisects the bracket to 1e-7 Å. ``None`` if no bracket within ``max_travel``.
    """
    start = function(0.0)
    if abs(start - target) < 1e-9:
        return 0.0
    sign = 1.0 if start > target else -1.0
    previous, shift = 0.0, 0.0
    while abs(shift) < max_travel:
        shift += sign * step
        value = function(shift)
        if (value <= target) if sign > 0 else (value >= target):
            break
        previous = shift
    else:
        return None
    # ``good`` keeps function >= target, ``bad`` is below it.
    good, bad = (previous, shift) if sign > 0 else (shift, previous)
    for _ in range(60):
        middle = 0.5 * (good + bad)
        if function(middle) >= target:
            good = middle
        else:
            bad = middle
        if abs(good - bad) < 1e-7:
            break
    return good


# --------------------------------------------------------------------------------------------- hot MD


def hot_snapshots(
    images: t.Sequence[Atoms], temperature: float | None = None, *, min_distance: float = MIN_DISTANCE
) -> Perturbed:
    """Frames of a high-temperature trajectory (AIMD, MLFF MD) as nEQ frames (generator ``hot_md``).

    :param images: the trajectory frames (labels and velocities are dropped).
    :param temperature: K, recorded per frame (default each frame's ``info['temperature']``).
    """
    result = Perturbed()
    for index, atoms in enumerate(images):
        frame = _clean_copy(atoms)
        value = temperature if temperature is not None else atoms.info.get('temperature')
        parameters = {'temperature': None if value is None else float(value)}
        reason = screen_frame(frame, min_distance)
        if reason is not None:
            result.rejected.append(_rejection('hot_md', *reason, index, parameters))
            continue
        if value is not None:
            frame.info['temperature'] = float(value)
        result.frames.append(_tag(frame, 'hot_md', index, parameters))
    return result


# --------------------------------------------------------------------------------------------- the mix


def validate_generators(mix: t.Mapping[str, t.Any], min_distance: float = MIN_DISTANCE) -> list[str]:
    """Problems of a generator mix (``name -> parameters``, see :data:`GENERATORS`), one message each; empty if fine."""
    errors = []
    if not isinstance(mix, t.Mapping) or not mix:
        return [f'the generator mix must be a non-empty mapping name -> parameters; known: {sorted(GENERATORS)}']
    total_weight = 0.0
    for name, parameters in mix.items():
        if name not in GENERATORS:
            errors.append(f'unknown generator `{name}`: choose from {sorted(GENERATORS)}')
            continue
        parameters = parameters or {}
        if not isinstance(parameters, t.Mapping):
            errors.append(f'`{name}`: parameters must be a mapping, got {parameters!r}')
            continue
        unknown = sorted(set(parameters) - set(GENERATORS[name]))
        if unknown:
            errors.append(f'`{name}`: unknown parameter(s) {unknown}; known: {sorted(GENERATORS[name])}')
            continue
        p = {**GENERATORS[name], **parameters}
        try:
            weight = float(p['weight'])
        except (TypeError, ValueError):
            errors.append(f'`{name}.weight` must be a number, got {p["weight"]!r}')
            continue
        if weight < 0 or not math.isfinite(weight):
            errors.append(f'`{name}.weight` must be >= 0, got {weight}')
        total_weight += max(weight, 0.0)
        errors.extend(_validate_parameters(name, p, min_distance))
    if not errors and total_weight <= 0:
        errors.append('every generator has weight 0: give at least one a positive weight')
    return errors


def _validate_parameters(name: str, p: dict, min_distance: float) -> list[str]:
    errors = []
    if name in ('rattle', 'thermal') and p['on_broken'] not in _ON_BROKEN:
        errors.append(f'`{name}.on_broken` must be one of {_ON_BROKEN}, got {p["on_broken"]!r}')
    if name == 'rattle' and not 0 < p['sigma_min'] <= p['sigma_max']:
        errors.append(f'`rattle`: need 0 < sigma_min <= sigma_max [A], got {p["sigma_min"]}, {p["sigma_max"]}')
    elif name == 'rattle' and p['sigma_max'] > 1.0:
        errors.append(f'`rattle.sigma_max` = {p["sigma_max"]} A would tear molecules apart: use <= 1 A')
    if name == 'strain':
        if p['kind'] not in _STRAIN_KINDS:
            errors.append(f'`strain.kind` must be one of {_STRAIN_KINDS}, got {p["kind"]!r}')
        if p['mode'] not in _MODES:
            errors.append(f'`strain.mode` must be one of {_MODES}, got {p["mode"]!r}')
        if not 0 < p['max_strain'] < MAX_STRAIN:
            errors.append(
                f'`strain.max_strain` = {p["max_strain"]} ({p["max_strain"] * 100:g} %): strains must be in (0, '
                f'{MAX_STRAIN * 100:.0f} %), e.g. 0.05-0.15'
            )
    if name == 'density':
        low, high = p['factor_min'], p['factor_max']
        if p['mode'] not in _MODES:
            errors.append(f'`density.mode` must be one of {_MODES}, got {p["mode"]!r}')
        if not 0 < low <= high:
            errors.append(f'`density`: need 0 < factor_min <= factor_max, got {low}, {high}')
        else:
            linear = [abs(f ** (-1.0 / 3.0) - 1.0) for f in (low, high)]
            if max(linear) >= MAX_STRAIN:
                errors.append(
                    f'`density`: factors {low}-{high} need a linear strain of {max(linear) * 100:.0f} %: strains '
                    f'must stay below {MAX_STRAIN * 100:.0f} % (factors within ({(1 + MAX_STRAIN) ** -3:.3f}, '
                    f'{(1 - MAX_STRAIN) ** -3:.0f}))'
                )
    if name == 'close_contact':
        if not p['floor'] >= min_distance:
            errors.append(f'`close_contact.floor` = {p["floor"]} A must be >= min_distance ({min_distance} A)')
        if not p['upper'] >= p['floor']:
            errors.append(f'`close_contact.upper` = {p["upper"]} A must be >= floor ({p["floor"]} A)')
    if name == 'thermal' and not (p['temperature'] > 0 and p['time_fs'] > 0):
        errors.append(f'`thermal`: temperature and time_fs must be > 0, got {p["temperature"]}, {p["time_fs"]}')
    return errors


def generate_neq(
    sources: t.Sequence[Atoms],
    n_frames: int,
    mix: t.Mapping[str, t.Mapping[str, t.Any]],
    *,
    seed: int = 0,
    min_distance: float = MIN_DISTANCE,
    max_attempts: int = 20,
) -> Perturbed:
    """``n_frames`` nEQ frames from ``sources`` with the generators of ``mix`` in proportion to their weights.

    Source frames are used in turn (frame ``k`` of a generator comes from ``sources[k % len(sources)]``, each
    generator starting at a different offset). Parameters drawn per frame: rattle ``sigma`` uniform in
    ``[sigma_min, sigma_max]``; strain a :func:`random_strain` of ``kind``; density factors evenly spread over
    ``[factor_min, factor_max]`` (the series); close contacts as :func:`close_contact`. A generator whose frames
    keep being rejected stops after ``max_attempts`` rejections per requested frame, so fewer frames than asked
    may come back; every rejection is listed.

    :param mix: generator name -> parameters (defaults: :data:`GENERATORS`); its order does not matter (the
        generators run in the order of :data:`GENERATORS`).
    :raises ValueError: for an invalid mix (:func:`validate_generators`), no sources or ``n_frames < 0``.
    """
    errors = validate_generators(mix, min_distance)
    if errors:
        raise ValueError('invalid nEQ generator mix: ' + '; '.join(errors))
    if not sources:
        raise ValueError('nEQ generation needs at least one source frame')
    if n_frames < 0:
        raise ValueError(f'n_frames must be >= 0, got {n_frames}')
    # In the order of GENERATORS, never the mapping's: the generators share one random stream and split the frames
    # by largest remainder, and a `Dict` on PostgreSQL (JSONB) re-orders its keys, so the same seed would give other
    # frames on PostgreSQL than on SQLite.
    parameters = {name: {**GENERATORS[name], **(mix[name] or {})} for name in GENERATORS if name in mix}
    counts = generator_counts(n_frames, {name: float(p['weight']) for name, p in parameters.items()})
    rng = np.random.default_rng(seed)
    result = Perturbed()
    for offset, (name, count) in enumerate(counts.items()):
        if count == 0:
            continue
        p = parameters[name]
        made = Perturbed()
        series = np.linspace(p['factor_min'], p['factor_max'], count) if name == 'density' else None
        k = 0
        while len(made.frames) < count and len(made.rejected) < count * max_attempts:
            index = (offset + k) % len(sources)
            source = sources[index]
            sub_seed = int(rng.integers(2**31))
            if name == 'rattle':
                sigma = float(np.random.default_rng(sub_seed).uniform(p['sigma_min'], p['sigma_max']))
                part = rattle(
                    source,
                    sigma,
                    seed=sub_seed + 1,
                    keep_molecules=bool(p['keep_molecules']),
                    on_broken=p['on_broken'],
                    max_attempts=1,
                    min_distance=min_distance,
                    source_index=index,
                )
            elif name == 'thermal':
                part = thermal(
                    source,
                    float(p['temperature']),
                    float(p['time_fs']),
                    seed=sub_seed,
                    keep_molecules=bool(p['keep_molecules']),
                    on_broken=p['on_broken'],
                    max_attempts=1 if p['on_broken'] == 'reject' else max_attempts,
                    min_distance=min_distance,
                    source_index=index,
                )
            elif name == 'strain':
                eps = random_strain(p['kind'], float(p['max_strain']), np.random.default_rng(sub_seed))
                part = strain(
                    source,
                    eps,
                    mode=p['mode'],
                    keep_molecules=bool(p['keep_molecules']),
                    min_distance=min_distance,
                    source_index=index,
                    extra={'kind': p['kind'], 'max_strain': float(p['max_strain'])},
                )
            elif name == 'density':
                part = density_series(
                    source,
                    [float(series[len(made.frames)])],
                    mode=p['mode'],
                    min_distance=min_distance,
                    source_index=index,
                )
            else:
                part = close_contact(
                    source,
                    seed=sub_seed,
                    floor=float(p['floor']),
                    upper=float(p['upper']),
                    rotate=bool(p['rotate']),
                    max_attempts=1,
                    min_distance=min_distance,
                    source_index=index,
                )
            for frame in part.frames:
                frame.info['perturbation']['seed'] = sub_seed
            made.extend(part)
            k += 1
        result.extend(made)
    return result


def neq_report(result: Perturbed, n_requested: int, min_distance: float) -> dict[str, t.Any]:
    """What a :func:`generate_neq` call made and rejected, for the record.

    :returns: ``n_requested``, ``n_made``, ``made_by_generator``, ``n_rejected``, ``by_reason``, ``by_generator``,
        ``min_distance`` (Å) and ``entries`` (every rejection, as :data:`REJECTION_REASONS` dicts).
    """
    by_reason: dict[str, int] = {}
    by_generator: dict[str, int] = {}
    for entry in result.rejected:
        by_reason[entry['reason']] = by_reason.get(entry['reason'], 0) + 1
        by_generator[entry['generator']] = by_generator.get(entry['generator'], 0) + 1
    made: dict[str, int] = {}
    for atoms in result.frames:
        name = atoms.info['perturbation']['generator']
        made[name] = made.get(name, 0) + 1
    return {
        'n_requested': int(n_requested),
        'n_made': len(result.frames),
        'made_by_generator': made,
        'n_rejected': len(result.rejected),
        'by_reason': by_reason,
        'by_generator': by_generator,
        'min_distance': min_distance,
        'entries': result.rejected,
    }
