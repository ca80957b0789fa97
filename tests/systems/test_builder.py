"""Box builder: the acceptance numbers of issue 3, determinism, single-atom ions, checks and Packmol errors."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_ilmlff.common.units import AMU_A3_TO_G_CM3
from aiida_ilmlff.systems import (
    PackmolError,
    box_length,
    build_ionic_liquid,
    min_intermolecular_distance,
    molecule_graph_mismatches,
    molecule_graphs_match,
)
from aiida_ilmlff.systems.conformers import _conformer


def _density(atoms: Atoms) -> float:
    return float(atoms.get_masses().sum() * AMU_A3_TO_G_CM3 / atoms.get_volume())


def _check_box(atoms, n_atoms, molecules, density):
    assert len(atoms) == n_atoms
    assert atoms.pbc.all()
    assert np.allclose(atoms.cell.angles(), 90.0) and np.ptp(atoms.cell.lengths()) == 0.0
    assert atoms.arrays['mol_id'].dtype.kind == 'i' and atoms.arrays['mol_id'].shape == (n_atoms,)
    assert np.array_equal(np.unique(atoms.arrays['mol_id']), np.arange(len(molecules)))
    assert np.all(np.diff(atoms.arrays['mol_id']) >= 0)
    assert atoms.info['molecules'] == molecules
    assert atoms.info['density'] == density and atoms.info['seed'] == 0
    assert abs(_density(atoms) - density) / density < 1e-12  # the 1 % criterion holds to floating precision
    assert min_intermolecular_distance(atoms) >= 1.7
    assert molecule_graph_mismatches(atoms) == []
    assert molecule_graphs_match(atoms, ordered=False)


def test_pyr14bf4_box(pyr14bf4_box_10):
    """PYR14BF4, 10 ion pairs at 1.2 g/cm^3: 350 atoms, 20 molecules, ~14.7 Å cube (~317 Å^3 per pair)."""
    _check_box(pyr14bf4_box_10, 350, ['PYR14'] * 10 + ['BF4'] * 10, 1.2)
    assert pyr14bf4_box_10.info['composition'] == {'PYR14': 10, 'BF4': 10}
    assert pyr14bf4_box_10.get_volume() / 10 == pytest.approx(322.0, abs=10.0)
    assert pyr14bf4_box_10.info['conformer_methods'] == {'PYR14': 'MMFF94', 'BF4': 'UFF'}


def test_litfsi_pyr14tfsi_box(litfsi_box):
    """LiTFSI/PYR14TFSI (Li 2, PYR14 8, TFSI 10) at 1.42 g/cm^3: 392 atoms, 20 molecules."""
    _check_box(litfsi_box, 392, ['Li'] * 2 + ['PYR14'] * 8 + ['TFSI'] * 10, 1.42)
    assert litfsi_box.info['ions']['TFSI']['smiles'] == 'FC(F)(F)S(=O)(=O)[N-]S(=O)(=O)C(F)(F)F'


def test_same_seed_same_coordinates(pyr14bf4_box_10):
    """A rebuild from scratch (conformer cache cleared) with seed 0 is identical; seed 1 differs."""
    _conformer.cache_clear()
    again = build_ionic_liquid({'BF4': 10, 'PYR14': 10}, 1.2, seed=0)  # input order does not matter
    assert np.array_equal(again.positions, pyr14bf4_box_10.positions)
    assert again.get_chemical_symbols() == pyr14bf4_box_10.get_chemical_symbols()
    other = build_ionic_liquid({'PYR14': 10, 'BF4': 10}, 1.2, seed=1)
    assert other.get_chemical_symbols() == pyr14bf4_box_10.get_chemical_symbols()
    assert np.abs(other.positions - pyr14bf4_box_10.positions).max() > 1.0


@pytest.mark.parametrize(
    ('composition', 'density', 'n_atoms'),
    [({'Li': 2, 'Na': 2, 'Cl': 4}, 1.5, 8), ({'EMIM': 3, 'Cl': 3}, 1.1, 60)],
)
def test_single_atom_ions(composition, density, n_atoms):
    atoms = build_ionic_liquid(composition, density, seed=2)
    assert len(atoms) == n_atoms
    assert min_intermolecular_distance(atoms) >= 1.7
    assert molecule_graphs_match(atoms)
    assert _density(atoms) == pytest.approx(density, rel=1e-12)


def test_inline_ion_box_checks_without_registry(clean_registry):
    """A box of an inline ion carries its SMILES in info['ions'], so the graph check needs no registry."""
    atoms = build_ionic_liquid({'N1114': {'count': 3, 'smiles': 'CCCC[N+](C)(C)C', 'charge': 1}, 'BF4': 3}, 1.1)
    assert atoms.info['ions']['N1114']['smiles'] == 'CCCC[N+](C)(C)C'
    assert molecule_graphs_match(atoms)


def test_graph_check_detects_damage(pyr14bf4_box_10):
    broken = pyr14bf4_box_10.copy()
    hydrogen = np.flatnonzero(broken.arrays['mol_id'] == 0)[-1]
    broken.positions[hydrogen] += [3.0, 0.0, 0.0]
    mismatches = molecule_graph_mismatches(broken)
    assert len(mismatches) == 1 and mismatches[0].startswith('molecule 0 (PYR14): missing bonds')

    shuffled = pyr14bf4_box_10.copy()
    members = np.flatnonzero(shuffled.arrays['mol_id'] == 0)
    order = np.arange(len(shuffled))
    order[members] = members[::-1]
    shuffled = shuffled[order]
    assert not molecule_graphs_match(shuffled)
    assert molecule_graphs_match(shuffled, ordered=False)


def test_molecules_across_the_boundary_are_whole_in_the_minimum_image(pyr14bf4_box_10):
    """Wrapping atoms into the cell (as MD codes do) changes neither check."""
    wrapped = pyr14bf4_box_10.copy()
    wrapped.positions += 7.0
    wrapped.wrap()
    assert molecule_graphs_match(wrapped)
    assert min_intermolecular_distance(wrapped) == pytest.approx(min_intermolecular_distance(pyr14bf4_box_10))


def test_min_intermolecular_distance_minimum_image():
    atoms = Atoms('HeHe', positions=[[0.1, 5, 5], [9.9, 5, 5]], cell=[10, 10, 10], pbc=True)
    atoms.arrays['mol_id'] = np.array([0, 1])
    assert min_intermolecular_distance(atoms) == pytest.approx(0.2)
    atoms.pbc = False
    assert min_intermolecular_distance(atoms, cutoff=12.0) == pytest.approx(9.8)
    assert min_intermolecular_distance(atoms, cutoff=5.0) == np.inf


def test_min_intermolecular_distance_counts_own_periodic_image():
    """A molecule touching its own image across the face is a contact; its bond is not."""
    atoms = Atoms('H2', positions=[[0.0, 0, 0], [1.0, 0, 0]], cell=[3.0, 20, 20], pbc=True)
    atoms.arrays['mol_id'] = np.array([0, 0])
    assert min_intermolecular_distance(atoms) == pytest.approx(2.0)


def test_box_length():
    """1 mol of water (18.015 g) at 1 g/cm^3 per molecule: ~29.9 Å^3."""
    assert box_length(18.015, 1.0) ** 3 == pytest.approx(18.015 / 0.602214076, rel=1e-6)


def test_packmol_failure_raises_with_output_tail():
    with pytest.raises(PackmolError, match=r'(?s)tolerance.*exit code 173; output tail:\n.*STOP 173'):
        build_ionic_liquid({'PYR14': 2, 'BF4': 2}, 5.0, nloop=3)


def test_packmol_timeout():
    with pytest.raises(PackmolError, match=r'did not finish within 0\.001 s'):
        build_ionic_liquid({'PYR14': 10, 'BF4': 10}, 1.2, timeout=0.001)


def test_packmol_missing(monkeypatch):
    monkeypatch.setenv('ILMLFF_PACKMOL', '/nonexistent/packmol')
    with pytest.raises(PackmolError, match='not an executable'):
        build_ionic_liquid({'Li': 1, 'Cl': 1}, 1.0)
