"""The box calcfunction: provenance, molecule attributes, and invalid input that stores nothing."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_ilmlff.calculations.functions.box import build_box, build_ionic_liquid_box
from aiida_ilmlff.systems import CompositionError, molecule_graphs_match

from .test_composition import COMPOSITION_ERRORS


def _node_count() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def test_build_box_provenance():
    """build_box stores composition, density and seed as inputs and the molecule ids on the structure."""
    structure = build_box({'NTf2': 10, 'Li': 2, 'pyr14': 8}, 1.42, seed=0)
    assert structure.is_stored and len(structure.sites) == 392
    assert structure.base.attributes.get('molecules') == ['Li'] * 2 + ['PYR14'] * 8 + ['TFSI'] * 10
    mol_id = structure.base.attributes.get('mol_id')
    assert len(mol_id) == 392 and mol_id[0] == 0 and mol_id[-1] == 19
    assert structure.base.attributes.get('composition') == {'Li': 2, 'PYR14': 8, 'TFSI': 10}

    process = structure.creator
    assert process.process_label == 'build_ionic_liquid_box' and process.is_finished_ok
    inputs = process.base.links.get_incoming().nested()
    assert inputs['composition'].get_dict() == {'Li': 2, 'PYR14': 8, 'TFSI': 10}
    assert inputs['density'].value == 1.42 and inputs['seed'].value == 0
    assert process.inputs.composition.uuid == inputs['composition'].uuid
    query = orm.QueryBuilder().append(orm.StructureData, filters={'attributes.composition.PYR14': 8}, project='uuid')
    assert structure.uuid in query.all(flat=True)

    atoms = structure.get_ase()
    atoms.arrays['mol_id'] = np.array(mol_id)
    atoms.info['molecules'] = structure.base.attributes.get('molecules')
    assert molecule_graphs_match(atoms)


def test_calcfunction_with_nodes_and_inline_ion(clean_registry):
    """The calcfunction alone reproduces a box of an inline ion (nothing depends on the session registry)."""
    composition = orm.Dict({'N1114': {'count': 2, 'smiles': 'CCCC[N+](C)(C)C', 'charge': 1}, 'BF4': 2})
    structure = build_ionic_liquid_box(composition, orm.Float(1.1), orm.Int(3))
    again = build_box(composition, 1.1, 3)
    assert np.array_equal(structure.get_ase().positions, again.get_ase().positions)
    assert again.creator.base.links.get_incoming().nested()['composition'].uuid == composition.uuid


@pytest.mark.parametrize('case', sorted(COMPOSITION_ERRORS))
def test_invalid_composition_stores_nothing(case):
    composition, message = COMPOSITION_ERRORS[case]
    before = _node_count()
    with pytest.raises(CompositionError, match=message):
        build_box(composition, 1.2, 0)
    assert _node_count() == before


@pytest.mark.parametrize(
    ('density', 'seed', 'message'),
    [(0.0, 0, 'density must be between'), (-1.0, 0, 'density'), (12.0, 0, 'density'), (1.2, -1, 'seed')],
)
def test_invalid_density_or_seed_stores_nothing(density, seed, message):
    before = _node_count()
    with pytest.raises(CompositionError, match=message):
        build_box({'PYR14': 10, 'BF4': 10}, density, seed)
    assert _node_count() == before
