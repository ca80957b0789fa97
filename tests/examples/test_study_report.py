"""The study's table (examples/study_pyr14bf4.py) from rows, without a graph: empty cells say why."""

from __future__ import annotations

import importlib
import pathlib
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'examples'


@pytest.fixture(scope='module')
def study():
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module('study_pyr14bf4')
    finally:
        sys.path.remove(str(EXAMPLES))


def test_a_broken_validation_md_explains_its_empty_cells(study):
    tripped = (
        'validation: its NVT at the AIMD state point tripped a guard after 0.02 ps (a molecule came apart); '
        'no structure or a posteriori error'
    )
    broken = {'validation': {'md_intact': False, 'md_ps': 0.02}, 'flags': ['DeePMD: molecules broke', tripped]}
    intact = {'validation': {'md_intact': True, 'md_ps': 5.0, 'a_posteriori_ratio': 1.1}, 'flags': []}
    unlabelled = {'validation': {'md_intact': True, 'md_ps': 5.0}, 'flags': ['validation: no a posteriori error: x']}
    assert study._empty_cell_notes(broken) == [tripped]
    assert study._empty_cell_notes(intact) == []
    assert study._empty_cell_notes(unlabelled) == ['validation: no a posteriori error: x']
    row = {
        'variant': '(b) EQ+nEQ',
        'model': 'DeePMD',
        'n_train': 27,
        'force_rmse': 478.0,
        'force_rmse_relative': 0.58,
        'a_posteriori_ratio': None,
        'rdf_peak_shift_A': None,
        'intact_450K': False,
        'ps_450K': 0.02,
        'intact_550K': False,
        'ps_550K': 0.02,
        'notes': study._empty_cell_notes(broken),
    }
    table = study.format_study({'group': 'g', 'size': 'full', 'pipelines': {'b': 7}, 'rows': [row]})
    assert 'why a cell is empty:' in table
    assert '(b) EQ+nEQ DeePMD: validation: its NVT at the AIMD state point tripped a guard after 0.02 ps' in table
