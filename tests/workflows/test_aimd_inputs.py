"""``ilmlff.aimd`` refuses a code of another plugin before submission and stores nothing."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run as launch
from ase import Atoms

from aiida_ilmlff.workflows.aimd import AimdWorkChain
from aiida_ilmlff.workflows.label import LabelWorkChain


def test_aimd_code_must_be_cp2k(cp2k_code, pw_code):
    from aiida_ilmlff.data import FramesData

    atoms = Atoms('LiF', positions=[[0, 0, 0], [1.6, 0, 0]], cell=[8, 8, 8], pbc=True)
    label = LabelWorkChain.get_builder_from_protocol(cp2k_code, FramesData.from_ase([atoms]))
    builder = AimdWorkChain.get_builder()
    builder.structure = orm.StructureData(ase=atoms)
    builder.cp2k = label.cp2k._inputs(prune=True)
    builder.cp2k.cp2k.code = pw_code
    before = orm.QueryBuilder().append(orm.Node).count()
    with pytest.raises(ValueError, match=r'`cp2k.cp2k.code`: code `pw-test@.*` runs plugin `quantumespresso.pw`'):
        launch(builder)
    assert orm.QueryBuilder().append(orm.Node).count() == before
