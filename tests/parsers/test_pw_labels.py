"""pw.x labels from real pw.x 6.7 output files, read as aiida-quantumespresso's ``PwParser`` reads them.

``data/pw_lif_scf``: an SCF with forces and stress (``tprnfor``, ``tstress``) of a stretched LiF pair (2.0 Å) in
a 6 Å box, PBE with the SSSP 1.3 efficiency pseudopotentials of ``shared/pseudos`` (GBRV Li and F), 45/360 Ry,
Gamma point (the ``fast`` protocol of ``ilmlff.label``), one OpenMP thread: its standard output ``aiida.out`` and
its XML ``data-file-schema.xml``. ``data/pw_lif_scf_not_converged``: the same with ``electron_maxstep 3``.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from aiida_quantumespresso.parsers.parse_raw.pw import parse_stdout
from aiida_quantumespresso.parsers.parse_xml.parse import parse_xml
from aiida_quantumespresso.parsers.pw import PwParser

from aiida_ilmlff.parsers.pw_output import PwLabelError, pw_labels

DATA = pathlib.Path(__file__).parent / 'data'
INPUT = {'CONTROL': {'calculation': 'scf', 'tprnfor': True, 'tstress': True}}


def _pw_outputs(run: str) -> tuple[dict, dict]:
    """``output_parameters`` and the trajectory arrays as ``PwParser.parse`` builds them (XML first)."""
    with (DATA / run / 'data-file-schema.xml').open() as handle:
        parsed_xml, logs = parse_xml(handle)
    assert not logs.error
    parsed_stdout, _ = parse_stdout((DATA / run / 'aiida.out').read_text(), INPUT, parsed_xml=parsed_xml)
    trajectory = parsed_xml.pop('trajectory')
    parameters = PwParser.build_output_parameters(parsed_stdout, parsed_xml)
    PwParser.backwards_compatibility_parameters(parameters, parsed_stdout)
    PwParser.final_trajectory_frame_to_parameters(parameters, trajectory)
    arrays = {name: np.array(trajectory[name]) for name in ('forces', 'stress') if name in trajectory}
    return parameters, arrays


def test_pw_scf_labels(data_regression):
    """Energy [eV], forces [eV/Å] and stress [eV/Å^3, ASE sign] of a real pw.x SCF."""
    parameters, arrays = _pw_outputs('pw_lif_scf')
    labels = pw_labels(parameters, arrays, n_atoms=2)
    data_regression.check(
        {
            'energy_eV': labels.energy,
            'forces_eV_per_A': labels.forces.tolist(),
            'stress_eV_per_A3': labels.stress.tolist(),
            'scf_converged': labels.scf_converged,
            'n_warnings': labels.n_warnings,
        }
    )
    # pw.x prints -63.15250270 Ry; aiida-quantumespresso converts the XML's Hartree with its own constants,
    # which differ from ASE's 1 Ry = 13.605693 eV by 1e-7 (0.1 meV here)
    assert labels.energy == pytest.approx(-63.15250270 * 13.605693122994, abs=1e-3)
    # attraction along the bond: Li pulled towards F (+x), F towards Li (-x); Newton's third law
    assert labels.forces[0, 0] > 0 > labels.forces[1, 0]
    assert np.allclose(labels.forces.sum(axis=0), 0, atol=1e-6)
    # pw.x prints P = -12.60 kbar (tension); the ASE-sign stress is positive under tension: trace/3 = +1.26 GPa
    assert np.trace(labels.stress) / 3 / 0.0062415091 == pytest.approx(1.260, abs=0.01)


def test_pw_labels_errors():
    """A missing energy or forces (310) and an atom-count mismatch (311) are errors with their exit status."""
    parameters, arrays = _pw_outputs('pw_lif_scf')
    with pytest.raises(PwLabelError, match='shape') as info:
        pw_labels(parameters, arrays, n_atoms=3)
    assert info.value.status == 311
    with pytest.raises(PwLabelError, match='tprnfor') as info:
        pw_labels(parameters, {}, n_atoms=2)
    assert info.value.status == 310


def test_unconverged_scf_is_a_scf_failure_of_the_engine():
    """pw.x stopping after ``electron_maxstep`` is PwCalculation's exit 410, which the pw.x engine calls
    ``scf_not_converged``."""
    from aiida.plugins import CalculationFactory

    from aiida_ilmlff.workflows.engines.pw import PW_SCF_FAILURES

    text = (DATA / 'pw_lif_scf_not_converged' / 'aiida.out').read_text()
    assert 'convergence NOT achieved after   3 iterations' in text
    _, logs = parse_stdout(text, INPUT)
    assert 'ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED' in logs.error
    status = CalculationFactory('quantumespresso.pw').exit_codes.ERROR_ELECTRONIC_CONVERGENCE_NOT_REACHED.status
    assert status in PW_SCF_FAILURES
