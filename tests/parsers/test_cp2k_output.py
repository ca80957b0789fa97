"""CP2K's output files read by :mod:`aiida_ilmlff.parsers.cp2k_output`: real files of CP2K 2023.1 (data regression).

``data/cp2k_libf4_xtb``: a GFN1-xTB single point (protocol ``fast`` of ``ilmlff.label``: Ewald SPME, OT DIIS,
``ENERGY_FORCE`` with the analytical stress) of a rattled Li+ BF4- pair in an 8 Å box, one OpenMP thread;
``data/cp2k_libf4_xtb_scf_not_converged``: the same input with ``MAX_SCF 2`` and ``OUTER_SCF/MAX_SCF 1``, so that
CP2K prints ``SCF run NOT converged`` and still reports an energy, forces and stress (exit status 0).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from aiida_ilmlff.parsers.cp2k_output import (
    CP2K_FORCES_FILE,
    CP2K_OUTPUT_FILE,
    CP2K_STRESS_FILE,
    SCF_NOT_CONVERGED_MARKERS,
    parse_cp2k_forces,
    parse_cp2k_stdout,
    parse_cp2k_stress,
    scf_failed,
)

DATA = pathlib.Path(__file__).parent / 'data'
RUNS = ('cp2k_libf4_xtb', 'cp2k_libf4_xtb_scf_not_converged')


def _read(run: str, name: str) -> str:
    return (DATA / run / name).read_text()


def _symbols(run: str) -> list[str]:
    """Element of every atom, in the order of the ``&COORD`` section of the input."""
    text = _read(run, 'aiida.inp')
    block = text.split('&COORD')[1].split('&END COORD')[0]
    return [line.split()[0] for line in block.strip().splitlines()]


def _labels(run: str) -> dict:
    stdout = parse_cp2k_stdout(_read(run, CP2K_OUTPUT_FILE))
    forces = parse_cp2k_forces(_read(run, CP2K_FORCES_FILE), _symbols(run))
    stress = parse_cp2k_stress(_read(run, CP2K_STRESS_FILE))
    return {
        'energy_eV': stdout.energy,
        'scf_converged': stdout.scf_converged,
        'completed': stdout.completed,
        'walltime_exceeded': stdout.walltime_exceeded,
        'xtb_charge_abort': stdout.xtb_charge_abort,
        'abort_message': stdout.abort_message,
        'n_warnings': stdout.n_warnings,
        'version': stdout.version,
        'forces_eV_per_A': forces.tolist(),
        'stress_eV_per_A3': stress.tolist(),
    }


@pytest.mark.parametrize('run', RUNS)
def test_cp2k_single_point(run, data_regression):
    """Energy [eV], SCF status, forces [eV/Å] in atom order and stress [eV/Å^3, ASE sign] of a real run."""
    labels = _labels(run)
    data_regression.check(labels)
    forces = np.array(labels['forces_eV_per_A'])
    assert forces.shape == (6, 3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-6  # CP2K prints SUM OF ATOMIC FORCES 0 for this run
    stress = np.array(labels['stress_eV_per_A3'])
    assert np.allclose(stress, stress.T)


def test_scf_markers_on_real_output():
    """The converged run has none of the SCF markers; the limited run has both and is flagged unconverged."""
    good = _read('cp2k_libf4_xtb', CP2K_OUTPUT_FILE)
    bad = _read('cp2k_libf4_xtb_scf_not_converged', CP2K_OUTPUT_FILE)
    assert not scf_failed(good) and parse_cp2k_stdout(good).scf_converged
    assert all(marker in bad for marker in SCF_NOT_CONVERGED_MARKERS)
    assert scf_failed(bad) and not parse_cp2k_stdout(bad).scf_converged
    # the unconverged run still reports numbers (CP2K 2023.1 with OT): only the flag keeps them out of a data set
    assert parse_cp2k_stdout(bad).energy is not None


def test_forces_file_units_and_order():
    """Forces are the file's Hartree/bohr times 51.422 eV/Å per Hartree/bohr (ASE's CODATA 2014), in atom order."""
    from ase import units

    forces = parse_cp2k_forces(_read('cp2k_libf4_xtb', CP2K_FORCES_FILE))
    assert forces[0, 0] == pytest.approx(0.01251222 * units.Hartree / units.Bohr, rel=1e-12)
    assert units.Hartree / units.Bohr == pytest.approx(51.422, rel=1e-4)
    with pytest.raises(ValueError, match='atom 0 is Li, not B'):
        parse_cp2k_forces(_read('cp2k_libf4_xtb', CP2K_FORCES_FILE), ['B', 'Li', 'F', 'F', 'F', 'F'])


def test_extract_cp2k_labels_from_retrieved_files():
    """The extraction calcfunction of the CP2K engine reads the same numbers from a retrieved folder."""
    from aiida import orm
    from ase import Atoms

    from aiida_ilmlff.calculations.functions.labels import extract_cp2k_labels

    run = 'cp2k_libf4_xtb'
    retrieved = orm.FolderData()
    for name in (CP2K_OUTPUT_FILE, CP2K_FORCES_FILE, CP2K_STRESS_FILE):
        retrieved.base.repository.put_object_from_file(str(DATA / run / name), name)
    block = _read(run, 'aiida.inp').split('&COORD')[1].split('&END COORD')[0].strip().splitlines()
    atoms = Atoms(
        symbols=[line.split()[0] for line in block],
        positions=[[float(x) for x in line.split()[1:]] for line in block],
        cell=[8.0, 8.0, 8.0],
        pbc=True,
    )
    labels = extract_cp2k_labels(retrieved=retrieved, structure=orm.StructureData(ase=atoms))
    expected = _labels(run)
    assert labels.get_array('energy')[0] == expected['energy_eV']
    assert np.array_equal(labels.get_array('forces'), np.array(expected['forces_eV_per_A']))
    assert np.array_equal(labels.get_array('stress'), np.array(expected['stress_eV_per_A3']))
    assert labels.base.attributes.get('scf_converged') is True
    assert labels.base.attributes.get('cp2k_version') == '2023.1'


def test_an_scf_stopped_at_the_walltime_is_no_scf_failure():
    """CP2K 2023.1 stopping at GLOBAL/WALLTIME in an MD's SCF prints the SCF failure marker for that evaluation too
    (measured: water GFN1-xTB MD, WALLTIME 3): it is not counted, a real failure before it is."""
    from aiida_ilmlff.parsers.cp2k_output import md_step_numbers, unconverged_evaluations

    step = ' ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:   -5.77\n MD| Step number   {n}\n'
    stopped = (
        ' *** SCF run terminated - exceeded requested execution time:       3.000 seconds.\n'
        ' *** WARNING in qs_scf.F:601 :: SCF run NOT converged ***\n'
        ' ENERGY| Total FORCE_EVAL ( QS ) energy [a.u.]:   -5.76\n'
        ' *** MD run terminated - exceeded requested execution time:       3.000 seconds.\n'
    )
    text = step.format(n=1) + step.format(n=2) + stopped
    assert unconverged_evaluations(text) == []
    assert md_step_numbers(text) == [1, 2]
    failed = step.format(n=1) + ' *** SCF run NOT converged ***\n' + step.format(n=2) + stopped
    assert unconverged_evaluations(failed) == [1]


def test_restart_md_step():
    from aiida_ilmlff.parsers.cp2k_output import restart_md_step

    restart = ' &MOTION\n   &MD\n     ENSEMBLE  NVT\n     STEPS  24\n     STEP_START_VAL  17\n   &END MD\n'
    assert restart_md_step(restart) == 17
    assert restart_md_step(' &MOTION\n   &MD\n     STEPS  24\n') is None
    assert restart_md_step('') is None
