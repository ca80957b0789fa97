"""nEQ generators: molecules kept intact where asked (bond-graph checks), floors respected, parameters recorded."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from ase import Atoms

from aiida_ilmlff.sampling import (
    GENERATORS,
    MIN_DISTANCE,
    bond_graph,
    bond_graph_difference,
    centers_of_mass,
    close_contact,
    density_series,
    generate_neq,
    hot_snapshots,
    random_strain,
    rattle,
    screen_frame,
    strain,
    strain_tensor,
    thermal,
    unwrap_molecules,
    validate_generators,
)
from aiida_ilmlff.sampling.perturb import _density
from aiida_ilmlff.systems import min_intermolecular_distance, molecule_graph_mismatches, molecule_graphs_match


def _intramolecular_distances(atoms) -> list[np.ndarray]:
    whole = unwrap_molecules(atoms)
    mol_id = atoms.arrays['mol_id']
    out = []
    for m in np.unique(mol_id):
        p = whole[mol_id == m]
        out.append(np.linalg.norm(p[:, None] - p[None], axis=-1))
    return out


def test_unwrap_makes_molecules_whole_across_the_boundary(pyr14bf4_box):
    box = pyr14bf4_box()
    wrapped = box.copy()
    wrapped.wrap()
    assert not np.allclose(wrapped.positions, box.positions)  # some molecule crosses a face
    whole = unwrap_molecules(wrapped)
    for reference, found in zip(_intramolecular_distances(box), _intramolecular_distances(wrapped)):
        assert np.allclose(reference, found, atol=1e-9)
    # Each molecule is a rigid translate (by lattice vectors) of the original.
    shifts = whole - box.positions
    for m in np.unique(box.arrays['mol_id']):
        assert np.allclose(shifts[box.arrays['mol_id'] == m], shifts[box.arrays['mol_id'] == m][0], atol=1e-9)


@pytest.mark.parametrize('sigma', [0.03, 0.06])
def test_rattle_keeps_molecules_intact(pyr14bf4_box, sigma):
    box = pyr14bf4_box()
    result = rattle(box, sigma, n=8, seed=1, keep_molecules=True)
    assert len(result.frames) == 8
    assert molecule_graphs_match(box)  # the source's graph is the SMILES graph of every ion
    reference = bond_graph(box)
    for frame in result.frames:
        # no bond of the source stretched beyond 1.5 x, no new pair within 1.0 x the covalent-radius sum
        assert bond_graph_difference(reference, frame) == ([], [])
        if sigma <= 0.03:
            assert molecule_graphs_match(frame), molecule_graph_mismatches(frame)
        p = frame.info['perturbation']
        assert p['generator'] == 'rattle' and p['sigma'] == sigma and p['keep_molecules'] is True
        assert frame.info['origin'] == 'nEQ' and frame.calc is None
        assert 0.5 * sigma * np.sqrt(3) < p['rms_displacement'] < 1.5 * sigma * np.sqrt(3)


def test_rattle_rejects_or_scales_broken_frames(pyr14bf4_box):
    box = pyr14bf4_box()
    reference = bond_graph(box)
    rejected = rattle(box, 0.25, n=3, seed=0, keep_molecules=True, max_attempts=5)
    reasons = collections.Counter(entry['reason'] for entry in rejected.rejected)
    assert set(reasons) <= {'too_close', 'bond_graph_changed', 'bond_squeezed'} and sum(reasons.values()) > 0
    for frame in rejected.frames:
        assert bond_graph_difference(reference, frame) == ([], [])
    entry = rejected.rejected[0]
    assert entry['generator'] == 'rattle' and entry['parameters']['sigma'] == 0.25 and entry['detail']

    scaled = rattle(box, 0.25, n=4, seed=0, keep_molecules=True, on_broken='scale', min_distance=0.1)
    assert len(scaled.frames) == 4
    for frame in scaled.frames:
        assert bond_graph_difference(reference, frame) == ([], [])
        assert frame.info['perturbation']['scale_factor'] <= 1.0


def test_thermal_moves_hydrogens_most(pyr14bf4_box):
    box = pyr14bf4_box()
    result = thermal(box, 1000.0, 4.0, n=4, seed=2)
    assert len(result.frames) == 4
    displacement = np.array([np.linalg.norm(f.positions - box.positions, axis=1) for f in result.frames])
    hydrogens = box.numbers == 1
    assert displacement[:, hydrogens].mean() > 2.5 * displacement[:, ~hydrogens].mean()
    assert result.frames[0].info['perturbation']['temperature'] == 1000.0


@pytest.mark.parametrize('value', [0.06, [0.08, -0.05, 0.03], [0.04, -0.03, 0.02, 0.02, -0.01, 0.03]])
def test_rigid_strain_moves_molecules_rigidly(pyr14bf4_box, value):
    box = pyr14bf4_box()
    box.wrap()  # molecules cross the faces: the strain must unwrap them first
    result = strain(box, value, mode='rigid')
    assert len(result.frames) == 1, result.rejected
    frame = result.frames[0]
    eps = strain_tensor(value)
    deformation = np.eye(3) + eps
    assert np.allclose(frame.cell.array, box.cell.array @ deformation.T)
    assert molecule_graphs_match(frame), molecule_graph_mismatches(frame)
    for before, after in zip(_intramolecular_distances(box), _intramolecular_distances(frame)):
        assert np.allclose(before, after, atol=1e-9)
    com_before = centers_of_mass(box)
    com_after = centers_of_mass(frame)
    fractional_before = np.linalg.solve(box.cell.array.T, com_before.T).T
    fractional_after = np.linalg.solve(frame.cell.array.T, com_after.T).T
    delta = fractional_after - fractional_before
    assert np.allclose(delta, np.round(delta), atol=1e-9)  # same fractional centre, up to a lattice vector
    p = frame.info['perturbation']
    assert p['mode'] == 'rigid' and np.isclose(p['volume_ratio'], np.linalg.det(deformation))


def test_affine_strain_and_keep_molecules(pyr14bf4_box):
    box = pyr14bf4_box()
    result = strain(box, 0.05, mode='affine', keep_molecules=True)
    frame = result.frames[0]
    assert np.isclose(frame.get_volume() / box.get_volume(), 1.05**3)
    assert np.allclose(frame.positions, box.positions * 1.05)
    assert bond_graph_difference(bond_graph(box), frame) == ([], [])
    # A strong affine compression stretches no bond but brings molecules together: graph check rejects or not,
    # the reason is recorded either way.
    squeezed = strain(box, -0.3, mode='affine', keep_molecules=True)
    assert len(squeezed.frames) + len(squeezed.rejected) == 1
    if squeezed.rejected:
        assert squeezed.rejected[0]['reason'] in ('too_close', 'bond_graph_changed', 'bond_squeezed')


@pytest.mark.parametrize('value', [0.5, -0.5, 0.7, [0.1, 0.5, 0.0]])
def test_strain_of_fifty_percent_is_refused(pyr14bf4_box, value):
    with pytest.raises(ValueError, match='below 50 %'):
        strain(pyr14bf4_box(), value)
    with pytest.raises(ValueError, match='max_strain'):
        random_strain('anisotropic', 0.5, np.random.default_rng(0))


def test_random_strains_stay_within_bounds():
    rng = np.random.default_rng(0)
    for kind in ('isotropic', 'anisotropic', 'shear'):
        for _ in range(50):
            eps = random_strain(kind, 0.1, rng)
            assert np.abs(np.linalg.eigvalsh(eps)).max() <= 0.1 + 1e-12
            assert np.allclose(eps, eps.T)


def test_density_series_hits_its_targets(pyr14bf4_box):
    box = pyr14bf4_box()
    rho0 = _density(box)
    assert np.isclose(rho0, 1.2)
    result = density_series(box, [0.85, 0.95, 1.05, 1.15])
    assert len(result.frames) + len(result.rejected) == 4
    for frame in result.frames:
        p = frame.info['perturbation']
        assert np.isclose(_density(frame), p['density'])
        assert np.isclose(p['density'] / rho0, p['density_factor'])
        assert molecule_graphs_match(frame)  # rigid molecules
    densities = density_series(box, densities=[1.0, 1.4])
    assert [round(_density(f), 6) for f in densities.frames] == [1.0, 1.4][: len(densities.frames)]
    with pytest.raises(ValueError, match='either'):
        density_series(box)


@pytest.mark.parametrize(('floor', 'upper'), [(1.4, 2.0), (1.6, 1.6)])
def test_close_contacts_respect_their_floor(pyr14bf4_box, floor, upper):
    box = pyr14bf4_box()
    source_min = min_intermolecular_distance(box)
    assert source_min >= floor
    result = close_contact(box, n=6, seed=4, floor=floor, upper=upper)
    assert len(result.frames) >= 3, collections.Counter(r['reason'] for r in result.rejected)
    charges = {0: 1, 1: 1, 2: -1, 3: -1}
    for frame in result.frames:
        p = frame.info['perturbation']
        assert floor <= p['target'] <= upper
        assert abs(p['contact_distance'] - p['target']) < 1e-5
        assert charges[p['cation']] > 0 > charges[p['anion']]
        assert min_intermolecular_distance(frame) >= floor - 1e-6
        # the chosen pair really is at the contact distance (minimum image)
        mol_id = frame.arrays['mol_id']
        a, b = np.flatnonzero(mol_id == p['cation']), np.flatnonzero(mol_id == p['anion'])
        distances = frame.get_distances(a[0], a, mic=True)  # warm the cell
        assert distances is not None
        pair = min(frame.get_distances(i, b, mic=True).min() for i in a)
        assert abs(pair - p['contact_distance']) < 1e-6
        assert molecule_graphs_match(frame)
    for entry in result.rejected:
        assert entry['reason'] in ('contact_below_floor', 'no_contact_found', 'too_close')


def test_close_contacts_need_ions_and_a_valid_floor(pyr14bf4_box):
    box = pyr14bf4_box()
    with pytest.raises(ValueError, match='floor'):
        close_contact(box, floor=2.0, upper=1.5)
    bare = box.copy()
    bare.info = {}
    with pytest.raises(ValueError, match="info\\['molecules'\\]"):
        close_contact(bare)


def test_screen_frame_floor():
    atoms = Atoms('HF', positions=[[0, 0, 0], [0.5, 0, 0]], cell=[6, 6, 6], pbc=True)
    reason, detail = screen_frame(atoms)
    assert reason == 'too_close' and '0.500 A' in detail and f'{MIN_DISTANCE} A' in detail
    atoms.positions[1, 0] = 0.92
    assert screen_frame(atoms) is None
    # periodic images count: an atom 0.6 A from the image of another across the face
    atoms = Atoms('HF', positions=[[0.1, 0, 0], [5.5, 0, 0]], cell=[6, 6, 6], pbc=True)
    assert screen_frame(atoms)[0] == 'too_close'


def test_hot_snapshots_are_neq_and_screened(pyr14bf4_box):
    box = pyr14bf4_box()
    bad = box.copy()
    bad.positions[1] = bad.positions[0] + [0.3, 0, 0]
    result = hot_snapshots([box, bad], temperature=900.0)
    assert len(result.frames) == 1 and result.rejected[0]['reason'] == 'too_close'
    frame = result.frames[0]
    assert frame.info['origin'] == 'nEQ' and frame.info['perturbation']['generator'] == 'hot_md'
    assert frame.info['temperature'] == 900.0


def test_generate_neq_mix(pyr14bf4_box):
    sources = [pyr14bf4_box(0), pyr14bf4_box(1)]
    mix = {
        'rattle': {'weight': 2.0},
        'strain': {'weight': 1.0, 'max_strain': 0.06},
        'density': {'weight': 1.0},
        'close_contact': {'weight': 1.0},
        'thermal': {'weight': 1.0},
    }
    result = generate_neq(sources, 12, mix, seed=3)
    made = collections.Counter(f.info['perturbation']['generator'] for f in result.frames)
    assert made == {'rattle': 4, 'strain': 2, 'density': 2, 'close_contact': 2, 'thermal': 2}
    for frame in result.frames:
        p = frame.info['perturbation']
        assert p['source_index'] in (0, 1) and 'seed' in p
        assert screen_frame(frame) is None
    factors = sorted(
        f.info['perturbation']['density_factor'] for f in result.frames if 'density_factor' in f.info['perturbation']
    )
    assert np.allclose(factors, [GENERATORS['density']['factor_min'], GENERATORS['density']['factor_max']])
    again = generate_neq(sources, 12, mix, seed=3)
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(result.frames, again.frames))


def test_generate_neq_does_not_depend_on_the_order_of_the_mix(pyr14bf4_box):
    """The same mix and seed give the same frames whatever the order of its keys.

    A ``Dict`` on PostgreSQL (JSONB) comes back with its keys re-ordered (shortest first): before the generators ran
    in the canonical order, the smallest pipeline's fourth nEQ frame differed between PostgreSQL and SQLite (found by
    the fault tests, tests/test_faults.py).
    """
    sources = [pyr14bf4_box(0)]
    mix = {
        'rattle': {'weight': 1.0, 'sigma_min': 0.02, 'sigma_max': 0.05},
        'strain': {'weight': 0.2},
        'density': {'weight': 0.15},
        'close_contact': {'weight': 0.2},
        'thermal': {'weight': 0.1},
    }
    jsonb_order = dict(sorted(mix.items(), key=lambda item: (len(item[0]), item[0])))
    assert list(jsonb_order) != list(mix)
    first, second = generate_neq(sources, 4, mix, seed=0), generate_neq(sources, 4, jsonb_order, seed=0)
    assert [f.info['perturbation'] for f in first.frames] == [f.info['perturbation'] for f in second.frames]
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first.frames, second.frames))


def test_validate_generators_messages():
    assert validate_generators({'rattle': {}}) == []
    errors = validate_generators(
        {
            'rattle': {'sigma_min': 0.2, 'sigma_max': 0.1},
            'strain': {'max_strain': 0.5, 'kind': 'twist'},
            'close_contact': {'floor': 0.5},
            'shake': {},
            'thermal': {'sigma': 1},
        }
    )
    text = '\n'.join(errors)
    for expected in (
        'sigma_min <= sigma_max',
        '`strain.max_strain` = 0.5 (50 %)',
        '`strain.kind`',
        '`close_contact.floor` = 0.5 A must be >= min_distance (0.7 A)',
        'unknown generator `shake`',
        '`thermal`: unknown parameter',
    ):
        assert expected in text, text
    assert validate_generators({'rattle': {'weight': 0}}) == [
        'every generator has weight 0: give at least one a positive weight'
    ]


def test_squeezed_bonds_are_rejected(pyr14bf4_box):
    from aiida_ilmlff.sampling.molecules import squeezed_bonds

    box = pyr14bf4_box()
    reference = bond_graph(box)
    assert squeezed_bonds(reference, box) == []
    i, j = next((a, b) for a, b in sorted(reference) if {box.numbers[a], box.numbers[b]} == {1, 6})
    squeezed = box.copy()
    direction = squeezed.positions[j] - squeezed.positions[i]
    squeezed.positions[j] = squeezed.positions[i] + direction / np.linalg.norm(direction) * 0.78  # C-H at 0.78 A
    assert squeezed_bonds(reference, squeezed) == [(i, j, pytest.approx(0.78))]
    reason, detail = screen_frame(squeezed, reference_bonds=reference)
    assert reason == 'bond_squeezed' and '0.780 A' in detail
    wrapped = box.copy()
    wrapped.wrap()  # bonds across the faces are measured with the minimum image
    assert squeezed_bonds(reference, wrapped) == []
