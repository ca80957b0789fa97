"""Known answers for the Li+ and TFSI analyses on built molecular geometries (issue 18).

* Li+(TFSI-)4: four whole TFSI anions (the ion library's conformer, RDKit MMFF94), each with one sulfonyl O at
  2.0 Å from a Li+ along the four tetrahedral directions (monodentate), every other O farther than 2.8 Å. The
  Li-O coordination number is 4, from the contacts and from the integrated Li-O RDF, and the Li+ and its four
  anions are one cluster.
* TFSI's own energy minima (MMFF94 from 40 RDKit embeddings): the C-S...S-C dihedral sits at |phi| ~ 36 deg
  (cis, C1) or ~ 140-155 deg (trans, C2), and :func:`classify_cis_trans` puts each minimum in its basin; the
  lowest minimum is trans, as in the literature (Fujii et al., J. Phys. Chem. B 110, 8179 (2006)).
"""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial.transform import Rotation

from aiida_ilmlff.analysis import li_anion_contacts, li_clusters
from aiida_ilmlff.analysis.conformers import classify_cis_trans, tfsi_dihedral_atoms, tfsi_dihedrals
from aiida_ilmlff.analysis.rdf import coordination_number, rdf
from aiida_ilmlff.systems.conformers import ion_conformer
from aiida_ilmlff.systems.ions import get_ion

EDGE = 30.0  # Å: the cluster is far from its periodic images
LI_O = 2.0  # Å: the Li-O distance of the bound O
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)


def li_tfsi4() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Li+ at the centre of a cubic cell with four monodentate TFSI-: (positions, numbers, mol_id).

    Each TFSI is rotated so that its chosen O points from the molecule's centroid towards the Li+, shifted so
    that this O lies ``LI_O`` from the Li+ along one tetrahedral direction, and turned about that direction to
    stay clear of the anions placed before it. Molecule id 0 is the Li+.
    """
    tfsi = ion_conformer(get_ion('TFSI'), seed=0)
    numbers = tfsi.get_atomic_numbers()
    positions = tfsi.get_positions() - tfsi.get_positions().mean(axis=0)
    oxygen = int(np.flatnonzero(numbers == 8)[0])
    centre = np.full(3, EDGE / 2)
    all_positions, all_numbers, mol_id = [centre[None]], [[3]], [[0]]
    for k, direction in enumerate(TETRAHEDRON, start=1):
        rotation, _ = Rotation.align_vectors([-direction], [positions[oxygen]])
        rotated = rotation.apply(positions)
        placed = np.concatenate(all_positions)
        candidates = []  # the spin about the Li-O axis that keeps the anion farthest from those placed
        for spin in np.radians(np.arange(0, 360, 15)):
            turned = Rotation.from_rotvec(spin * direction).apply(rotated - rotated[oxygen])
            candidate = turned + centre + LI_O * direction
            clearance = np.linalg.norm(candidate[:, None] - placed[None], axis=-1)
            candidates.append((clearance[np.arange(len(candidate)) != oxygen].min(), candidate))
        all_positions.append(max(candidates, key=lambda pair: pair[0])[1])
        all_numbers.append(numbers)
        mol_id.append([k] * len(numbers))
    return np.concatenate(all_positions), np.concatenate(all_numbers), np.concatenate(mol_id)


def test_li_tfsi4_has_four_oxygens_and_one_cluster():
    positions, numbers, mol_id = li_tfsi4()
    cell = np.diag([EDGE] * 3)
    li, oxygens = numbers == 3, numbers == 8
    # the geometry is what the test says: no clash between anions, one O of each at 2.0 Å, the others beyond 2.8 Å
    between = np.linalg.norm(positions[:, None] - positions[None], axis=-1)[mol_id[:, None] != mol_id[None]]
    assert between.min() > 2.0
    li_o = np.linalg.norm(positions[oxygens] - positions[li], axis=1)
    assert np.sort(li_o)[:4] == pytest.approx([LI_O] * 4, abs=1e-9)
    assert np.sort(li_o)[4] > 2.8

    contacts = li_anion_contacts(positions[li], positions[oxygens], mol_id[oxygens], cell, r_cut=2.6)
    assert contacts.ligand_counts.tolist() == [4]  # Li-O coordination number
    assert contacts.anion_counts.tolist() == [4]  # four TFSI, each monodentate
    assert contacts.denticity.tolist() == [[1, 1, 1, 1]]
    clusters = li_clusters(contacts.bound)
    assert clusters.sizes.tolist() == [5]
    assert (clusters.n_li.tolist(), clusters.n_anion.tolist()) == ([1], [4])

    result = rdf(positions[li], positions[oxygens], cell, r_max=6.0, n_bins=600, return_result=True)
    assert coordination_number(result.r, result.g, result.number_density_b, r_cut=2.6) == pytest.approx(4.0, rel=1e-4)


def test_tfsi_minima_are_classified_cis_and_trans():
    mol = Chem.AddHs(Chem.MolFromSmiles(get_ion('TFSI').smiles))
    conformers = list(AllChem.EmbedMultipleConfs(mol, numConfs=40, randomSeed=7))
    optimised = AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=5000)
    assert all(not_converged == 0 for not_converged, _ in optimised)
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    frames = np.stack([mol.GetConformer(c).GetPositions() for c in conformers])
    atoms = tfsi_dihedral_atoms(numbers, np.zeros(len(numbers), dtype=int), frames[0])
    phi = tfsi_dihedrals(frames, atoms)[:, 0]
    energies = np.array([energy for _, energy in optimised])

    cis = np.abs(phi) < 90.0
    assert cis.any() and (~cis).any()  # both minima are found
    np.testing.assert_allclose(np.abs(phi[cis]), 36.0, atol=5.0)
    assert np.all((np.abs(phi[~cis]) > 135.0) & (np.abs(phi[~cis]) < 160.0))
    fractions = classify_cis_trans(phi[:, None])
    np.testing.assert_array_equal(fractions.is_cis[:, 0], cis)
    assert fractions.mean_cis_fraction == pytest.approx(cis.mean())
    assert not cis[np.argmin(energies)]  # the global minimum is trans (C2)
