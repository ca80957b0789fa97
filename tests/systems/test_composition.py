"""Compositions: validation errors and their messages, canonical order, inline ions, salt-in-IL helper."""

from __future__ import annotations

import math

import pytest

from aiida_ilmlff.systems import (
    Composition,
    CompositionError,
    Ion,
    register_ion,
    salt_in_il_composition,
    validate_composition,
    validate_density,
    validate_seed,
)

#: (composition, regex the message must match): the error cases of issue 3 item 2, also used by test_box.py.
COMPOSITION_ERRORS = {
    'unknown ion': ({'PYR15': 10, 'BF4': 10}, r"unknown ion 'PYR15': did you mean PYR14, PYR13"),
    'invalid SMILES': (
        {'X1': {'count': 1, 'smiles': 'C1CC[N+', 'charge': 1}, 'BF4': 1},
        r"invalid SMILES for ion 'X1': RDKit could not parse 'C1CC\[N\+'",
    ),
    'SMILES charge': (
        {'X1': {'count': 1, 'smiles': 'CCCC[N+](C)(C)C', 'charge': 2}, 'BF4': 2},
        r"charge mismatch for ion 'X1'.*\+1 e but the declared charge is \+2 e",
    ),
    'zero count': ({'PYR14': 0, 'BF4': 10}, r"count of ion 'PYR14' must be a positive integer.*got 0"),
    'negative count': ({'PYR14': 10, 'BF4': -10}, r"count of ion 'BF4' must be a positive integer.*got -10"),
    'non-integer count': (
        {'PYR14': 2.5, 'BF4': 10},
        r"count of ion 'PYR14' must be a positive integer.*2\.5 \(float\)",
    ),
    'string count': ({'PYR14': '10', 'BF4': 10}, r"count of ion 'PYR14'.*'10' \(str\)"),
    'boolean count': ({'Li': True, 'Cl': 1}, r"count of ion 'Li'.*True \(bool\)"),
    'net charge': ({'PYR14': 10, 'BF4': 8}, r'not charge-neutral: net charge \+2 e \(PYR14 10 x \+1, BF4 8 x -1\)'),
    'net charge mixture': ({'Li': 2, 'PYR14': 10, 'TFSI': 10}, r'net charge \+2 e'),
    'empty': ({}, 'composition is empty'),
    'duplicate alias': ({'TFSI': 5, 'NTf2': 5, 'PYR14': 10}, r"'TFSI' is given twice \(as 'TFSI' and 'NTf2'\)"),
    'redefined library ion': (
        {'PYR14': {'count': 1, 'smiles': 'CCC[N+]1(C)CCCC1', 'charge': 1}, 'BF4': 1},
        r"'PYR14' names the known ion 'PYR14'.*choose another name",
    ),
    'not a mapping': ([('PYR14', 10)], 'must be a mapping of ion name -> count'),
}


@pytest.mark.parametrize('case', sorted(COMPOSITION_ERRORS))
def test_composition_errors(case):
    composition, message = COMPOSITION_ERRORS[case]
    with pytest.raises(CompositionError, match=message):
        validate_composition(composition)


def test_composition_error_is_value_error():
    assert issubclass(CompositionError, ValueError)


def test_all_problems_reported_at_once():
    with pytest.raises(CompositionError) as info:
        validate_composition({'PYR15': 10, 'BF4': 0, 'Li': 2.5})
    message = str(info.value)
    assert "unknown ion 'PYR15'" in message and "'BF4'" in message and "'Li'" in message


@pytest.mark.parametrize(
    ('density', 'message'),
    [(0.0, 'between 0.1 and 5.0'), (-1.2, 'between'), (1200.0, 'not kg/m'), (math.nan, 'between'), ('1.2', 'a number')],
)
def test_density_errors(density, message):
    with pytest.raises(CompositionError, match=message):
        validate_density(density)


@pytest.mark.parametrize('seed', [-1, 2**31, 1.5, True, '0'])
def test_seed_errors(seed):
    with pytest.raises(CompositionError, match='seed must be an integer'):
        validate_seed(seed)


def test_canonical_order_and_properties():
    """Cations before anions, alphabetical within a group, whatever the input order; aliases resolved."""
    spec = validate_composition({'NTf2': 10, 'pyr14': 8, 'Li': 2})
    assert isinstance(spec, Composition)
    assert spec.counts == {'Li': 2, 'PYR14': 8, 'TFSI': 10}
    assert (spec.net_charge, spec.n_molecules, spec.n_atoms) == (0, 20, 392)
    assert spec.molecules[:3] == ['Li', 'Li', 'PYR14'] and spec.molecules[-1] == 'TFSI'
    assert spec.to_dict() == {'Li': 2, 'PYR14': 8, 'TFSI': 10}
    assert validate_composition(spec) is spec
    assert (
        validate_composition({'BF4': 10, 'PYR14': 10}).counts == validate_composition({'PYR14': 10, 'BF4': 10}).counts
    )


def test_inline_and_object_ions(clean_registry):
    """New ions by inline SMILES or Ion objects; to_dict writes them inline so the input defines them."""
    inline = {'N1114': {'count': 4, 'smiles': 'CCCC[N+](C)(C)C', 'charge': 1}, 'BF4': 4}
    spec = validate_composition(inline)
    assert spec.to_dict() == {
        'N1114': {'count': 4, 'smiles': 'CCCC[N+](C)(C)C', 'charge': 1, 'full_name': ''},
        'BF4': 4,
    }
    assert validate_composition({Ion('N1114', 'CCCC[N+](C)(C)C', 1): 4, 'BF4': 4}).to_dict() == spec.to_dict()
    register_ion('N1114', 'CCCC[N+](C)(C)C', 1)
    assert validate_composition({'N1114': 4, 'BF4': 4}).to_dict() == spec.to_dict()


def test_salt_in_il_paper_mixture():
    """LiTFSI in PYR14TFSI, x = 0.2 with 10 anions (the paper's mixture) -> Li 2, PYR14 8, TFSI 10."""
    assert salt_in_il_composition('Li', 'PYR14', 'TFSI', 0.2, 10) == {'Li': 2, 'PYR14': 8, 'TFSI': 10}
    assert salt_in_il_composition('Li', 'PYR14', 'TFSI', 0.0, 10) == {'PYR14': 10, 'TFSI': 10}


def test_salt_in_il_rounds_half_up():
    assert salt_in_il_composition('Li', 'PYR14', 'TFSI', 0.25, 10) == {'Li': 3, 'PYR14': 7, 'TFSI': 10}
    assert salt_in_il_composition('Li', 'PYR14', 'TFSI', 0.24, 10) == {'Li': 2, 'PYR14': 8, 'TFSI': 10}


def test_salt_in_il_divalent_salt(clean_registry):
    """Mg(TFSI)2 counts as one formula unit with two anions: x = 0.2, 10 anions -> 2 Mg, 6 PYR14."""
    register_ion('Mg', '[Mg+2]', 2)
    assert salt_in_il_composition('Mg', 'PYR14', 'TFSI', 0.2, 10) == {'Mg': 2, 'PYR14': 6, 'TFSI': 10}


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (('Li', 'PYR14', 'TFSI', 0.01, 10), 'too few for a salt mole fraction'),
        (('Li', 'PYR14', 'TFSI', 1.0, 10), r'in \[0, 1\)'),
        (('Li', 'PYR14', 'TFSI', 0.96, 10), 'leave no ionic-liquid cations'),
        (('Li', 'PYR14', 'TFSI', 0.2, 0), 'positive integer'),
        (('TFSI', 'PYR14', 'TFSI', 0.2, 10), 'must be cations'),
        (('Li', 'PYR14', 'Na', 0.2, 10), 'must be an anion'),
        (('Li', 'PYR15', 'TFSI', 0.2, 10), 'unknown ion'),
    ],
)
def test_salt_in_il_errors(args, message):
    with pytest.raises(CompositionError, match=message):
        salt_in_il_composition(*args)


def test_salt_in_il_rounding_that_breaks_neutrality(clean_registry):
    """A dication IL takes anions in pairs: an odd remainder would leave a net charge, so it is an error."""
    register_ion('C6mim2', 'C[n+]1ccn(CCCCCCn2cc[n+](C)c2)c1', 2)
    with pytest.raises(CompositionError, match='rounding breaks charge neutrality: 3 salt units leave 7 anions'):
        salt_in_il_composition('Li', 'C6mim2', 'TFSI', 0.5, 10)
