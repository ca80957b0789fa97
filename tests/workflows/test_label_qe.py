"""``ilmlff.label`` with real pw.x (protocol ``fast``: PBE, SSSP efficiency cutoffs, Gamma point)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase import Atoms

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.label import LabelWorkChain


@pytest.mark.slow
def test_label_lif_with_pw(pw_code, sssp_family, serial_options):
    """A stretched LiF pair (2.0 Å) in a 6 Å box labelled by pw.x: eV units, pseudos from the family."""
    atoms = Atoms('LiF', positions=[[2.0, 2.1, 2.2], [4.0, 2.1, 2.2]], cell=[6.0, 6.0, 6.0], pbc=True)
    frames = FramesData.from_ase([atoms]).store()
    builder = LabelWorkChain.get_builder_from_protocol(pw_code, frames, protocol='fast', options=serial_options)
    builder.compute_stress = orm.Bool(True)

    parameters = builder.qe.pw.parameters.get_dict()
    assert parameters['SYSTEM']['ecutwfc'] == 45 and parameters['SYSTEM']['ecutrho'] == 360  # max over Li, F
    assert set(builder.qe.pw.pseudos) == {'Li', 'F'}

    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    labelled = results['labelled']
    assert len(labelled) == 1
    forces = labelled.get_forces(0)
    assert forces.shape == (2, 3)
    # Newton's third law along the bond, attraction: Li pulled towards F (+x), F towards Li (-x)
    assert forces[0, 0] > 0 > forces[1, 0]
    assert abs(forces[0, 0] + forces[1, 0]) < 0.05
    assert np.isfinite(labelled.get_stress(0)).all()
    summary = results['summary'].get_dict()
    assert summary['level_of_theory'].startswith('qe/PBE:')
    assert labelled.levels_of_theory[0] == summary['level_of_theory']
    # total energy in eV: several hundred eV below zero for these Li (3 e) and F (7 e) pseudo-atoms
    assert labelled.energies[0] < -100
