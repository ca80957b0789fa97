"""Ion library: shipped entries, SMILES charges, lookups, registration and conformers."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from aiida_ilmlff.systems import (
    CompositionError,
    Ion,
    bonds_from_positions,
    get_ion,
    ion_conformer,
    ion_table,
    known_ions,
    library_ions,
    register_ion,
    unregister_ion,
)

EXPECTED = {
    # name: (charge, formula, atoms, full name)
    'PYR14': (1, 'C9H20N+', 30, '1-butyl-1-methylpyrrolidinium'),
    'PYR13': (1, 'C8H18N+', 27, '1-methyl-1-propylpyrrolidinium'),
    'BMIM': (1, 'C8H15N2+', 25, '1-butyl-3-methylimidazolium'),
    'EMIM': (1, 'C6H11N2+', 19, '1-ethyl-3-methylimidazolium'),
    'BF4': (-1, 'BF4-', 5, 'tetrafluoroborate'),
    'PF6': (-1, 'F6P-', 7, 'hexafluorophosphate'),
    'TFSI': (-1, 'C2F6NO4S2-', 15, 'bis(trifluoromethylsulfonyl)imide'),
    'FSI': (-1, 'F2NO4S2-', 9, 'bis(fluorosulfonyl)imide'),
    'OTf': (-1, 'CF3O3S-', 8, 'trifluoromethanesulfonate (triflate)'),
    'Li': (1, 'Li+', 1, 'lithium'),
    'Na': (1, 'Na+', 1, 'sodium'),
    'Cl': (-1, 'Cl-', 1, 'chloride'),
}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_library_entry(name):
    """Every required ion ships with its charge, formula, full name, and a SMILES whose charge matches."""
    ion = library_ions()[name]
    charge, formula, n_atoms, full_name = EXPECTED[name]
    assert (ion.charge, ion.formula, ion.n_atoms, ion.full_name) == (charge, formula, n_atoms, full_name)
    assert Chem.GetFormalCharge(Chem.MolFromSmiles(ion.smiles)) == ion.charge


def test_ion_table_rows():
    rows = {row['name']: row for row in ion_table()}
    assert set(EXPECTED) <= set(rows)
    assert rows['PYR14']['mass'] == pytest.approx(142.266, abs=1e-3)
    assert 'NTf2' in rows['TFSI']['aliases']


@pytest.mark.parametrize(
    ('alias', 'name'), [('NTf2', 'TFSI'), ('pyr14', 'PYR14'), ('C2mim', 'EMIM'), ('triflate', 'OTf')]
)
def test_aliases_resolve(alias, name):
    assert get_ion(alias).name == name


def test_unknown_ion_lists_close_names():
    with pytest.raises(CompositionError, match=r"unknown ion 'PYR15'.*did you mean PYR14, PYR13"):
        get_ion('PYR15')


@pytest.mark.parametrize(
    ('smiles', 'charge', 'message'),
    [
        ('CCCC[N+](C)(C', 1, 'RDKit could not parse'),
        ('CCCC[N+](C)(C)C', -1, r'formal charge of \+1 e but the declared charge is -1 e'),
        ('[Li+].[Cl-]', 0, '2 fragments'),
        ('[CH3]', 0, 'unpaired electron'),
        ('', 0, 'non-empty string'),
        ('CCCC[N+](C)(C)C', 1.0, 'integer formal charge'),
    ],
)
def test_invalid_ion_definitions(smiles, charge, message, clean_registry):
    with pytest.raises(CompositionError, match=message):
        register_ion('N1114', smiles, charge)
    assert 'N1114' not in known_ions()


def test_register_ion(clean_registry):
    ion = register_ion('N1114', 'CCCC[N+](C)(C)C', 1, 'butyltrimethylammonium', aliases=['BTMA'])
    assert get_ion('btma') is ion
    assert register_ion('N1114', 'CCCC[N+](C)(C)C', 1) is ion  # idempotent
    with pytest.raises(CompositionError, match='already registered'):
        register_ion('N1114', 'CCC[N+](C)(C)C', 1)
    assert register_ion('N1114', 'CCC[N+](C)(C)C', 1, overwrite=True).smiles == 'CCC[N+](C)(C)C'
    unregister_ion('N1114')
    assert 'N1114' not in known_ions()


@pytest.mark.parametrize(
    ('name', 'message'), [('PYR14', 'library ion'), ('ntf2', 'library ion'), ('1abc', 'invalid ion name')]
)
def test_register_rejects_library_names_and_bad_names(name, message, clean_registry):
    with pytest.raises(CompositionError, match=message):
        register_ion(name, 'CCCC[N+](C)(C)C', 1)


def test_register_rejects_alias_clash(clean_registry):
    with pytest.raises(CompositionError, match=r"alias 'BF4-'.*clashes with the existing ion 'BF4'"):
        register_ion('N1114', 'CCCC[N+](C)(C)C', 1, aliases=['BF4-'])


def test_library_ion_re_registration_is_a_no_op(clean_registry):
    assert register_ion('BF4', 'F[B-](F)(F)F', -1) is library_ions()['BF4']


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_conformer_has_smiles_graph(name):
    """Every library ion embeds (seeded) with exactly its SMILES bonds; the same seed gives the same geometry."""
    ion = get_ion(name)
    atoms = ion_conformer(ion, seed=3)
    assert atoms.get_chemical_symbols() == list(ion.symbols)
    assert bonds_from_positions(ion.symbols, atoms.positions) == set(ion.bonds)
    assert np.allclose(atoms.positions.mean(axis=0), 0.0, atol=1e-9)
    assert np.array_equal(atoms.positions, ion_conformer(ion, seed=3).positions)


def test_pf6_is_octahedral():
    """PF6 is written with octahedral stereo (@OH1); plain SMILES embeds with ~1 Å F-F contacts."""
    atoms = ion_conformer(get_ion('PF6'))
    fluorines = [index for index, symbol in enumerate(atoms.get_chemical_symbols()) if symbol == 'F']
    distances = np.sort(atoms.get_all_distances()[np.ix_(fluorines, fluorines)][np.triu_indices(6, 1)])
    cis, trans = distances[:12], distances[12:]
    assert np.ptp(cis) < 0.05 and np.ptp(trans) < 0.05
    assert trans.mean() / cis.mean() == pytest.approx(np.sqrt(2), rel=0.01)


def test_ion_is_value_object():
    a = Ion('X1', 'CCCC[N+](C)(C)C', 1)
    b = Ion('X1', 'CCCC[N+](C)(C)C', 1)
    assert a == b and hash(a) == hash(b)
    assert a.symbols[:5] == ('C', 'C', 'C', 'C', 'N') and a.symbols[-1] == 'H'
