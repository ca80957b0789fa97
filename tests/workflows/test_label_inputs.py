"""Bad input fails before submission with a message naming the input, and stores nothing (no code runs)."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run as launch  # validation happens when the process is instantiated, as in submit()
from ase import Atoms

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.workflows.label import LabelWorkChain
from tests.fixtures import count_nodes

from .conftest import libf4_atoms


@pytest.fixture
def frames():
    return FramesData.from_ase([libf4_atoms(0), libf4_atoms(1)]).store()


def test_available_protocols():
    protocols = LabelWorkChain.get_available_protocols()
    assert set(protocols) == {'fast', 'fast-dft', 'balanced', 'stringent'}
    assert LabelWorkChain.get_default_protocol() == 'fast'
    assert all(entry['description'] for entry in protocols.values())


def test_unknown_protocol(cp2k_code, frames):
    before = count_nodes()
    with pytest.raises(ValueError, match=r'`protocol`: unknown protocol `ultra`.*`fast`'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='ultra')
    assert count_nodes() == before


def test_builder_stores_nothing_and_sets_protocol_inputs(cp2k_code, frames):
    before = count_nodes()
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='balanced')
    assert count_nodes() == before
    params = builder.cp2k.cp2k.parameters.get_dict()
    dft = params['FORCE_EVAL']['DFT']
    assert dft['MGRID'] == {'CUTOFF': 400, 'REL_CUTOFF': 50}
    assert dft['XC']['VDW_POTENTIAL']['PAIR_POTENTIAL']['TYPE'] == 'DFTD3(BJ)'
    assert dft['SCF']['OT']['PRECONDITIONER'] == 'FULL_SINGLE_INVERSE'
    kinds = {kind['_']: kind for kind in params['FORCE_EVAL']['SUBSYS']['KIND']}
    assert set(kinds) == {'B', 'F', 'Li'}
    assert kinds['Li']['BASIS_SET'] == 'DZVP-MOLOPT-SR-GTH-q3' and kinds['Li']['POTENTIAL'] == 'GTH-PBE-q3'
    assert builder.cp2k.cp2k.metadata.options.max_wallclock_seconds == 14400
    fast = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='fast')
    fast_dft = fast.cp2k.cp2k.parameters['FORCE_EVAL']['DFT']
    assert fast_dft['QS']['METHOD'] == 'XTB'
    assert fast_dft['QS']['XTB']['CHECK_ATOMIC_CHARGES'] is False


def _litfsi_frames():
    """Li+ TFSI- (16 atoms) built at 1.4 g/cm^3 in its cubic box: the elements of a LiTFSI/PYR14TFSI system but H."""
    from aiida_ilmlff.systems.builder import build_ionic_liquid

    return FramesData.from_ase([build_ionic_liquid({'Li': 1, 'TFSI': 1}, 1.4, seed=0)]).store()


def test_fast_labels_tfsi_with_minimal_basis_dft(cp2k_code, pw_code, sssp_family):
    """GFN1-xTB does not converge for TFSI: CP2K `fast` labels frames with S at `fast-dft` (PBE-D3(BJ),
    SZV-MOLOPT-SR-GTH, DZVP on S, 400 Ry); frames without S stay at GFN1-xTB; `[]` keeps xTB; pw.x is not affected."""
    frames = _litfsi_frames()
    elements = ['C', 'F', 'Li', 'N', 'O', 'S']
    assert LabelWorkChain.resolve_protocol('fast', code=cp2k_code, elements=elements) == 'fast-dft'
    assert LabelWorkChain.resolve_protocol('fast', code=cp2k_code, elements=['B', 'F', 'Li']) == 'fast'
    assert LabelWorkChain.resolve_protocol('balanced', code=cp2k_code, elements=elements) == 'balanced'
    assert LabelWorkChain.resolve_protocol('fast', engine='qe', elements=elements) == 'fast'
    keep_xtb = {'meta_parameters': {'cp2k_xtb_unconverged_elements': []}}
    assert LabelWorkChain.resolve_protocol('fast', keep_xtb, engine='cp2k', elements=elements) == 'fast'
    before = count_nodes()
    builder = LabelWorkChain.get_builder_from_protocol(
        cp2k_code, frames, protocol='fast', overrides={'max_concurrent': 3}
    )
    dft = builder.cp2k.cp2k.parameters['FORCE_EVAL']['DFT']
    assert 'XTB' not in dft['QS'] and dft['MGRID'] == {'CUTOFF': 400, 'REL_CUTOFF': 50}
    assert dft['SCF']['OT'] == {'MINIMIZER': 'CG', 'PRECONDITIONER': 'FULL_ALL', 'STEPSIZE': 0.05}
    assert dft['XC']['VDW_POTENTIAL']['PAIR_POTENTIAL']['TYPE'] == 'DFTD3(BJ)'
    kinds = {kind['_']: kind['BASIS_SET'] for kind in builder.cp2k.cp2k.parameters['FORCE_EVAL']['SUBSYS']['KIND']}
    minimal = {element: f'SZV-MOLOPT-SR-GTH-q{q}' for element, q in zip(elements, (4, 7, 3, 5, 6, 6))}
    assert kinds == {**minimal, 'S': 'DZVP-MOLOPT-SR-GTH-q6'}  # S keeps its C-S bonds only with d functions
    assert builder.max_concurrent.value == 3  # the caller's overrides apply to the fallback protocol
    xtb = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='fast', overrides=keep_xtb)
    assert xtb.cp2k.cp2k.parameters['FORCE_EVAL']['DFT']['QS']['METHOD'] == 'XTB'
    assert count_nodes() == before
    with pytest.raises(ValueError, match=r'unknown protocol `nope`'):
        LabelWorkChain.resolve_protocol(
            'fast', {'meta_parameters': {'cp2k_fallback_protocol': 'nope'}}, engine='cp2k', elements=elements
        )


def test_stringent_uses_tzv2p_600_ry(cp2k_code, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='stringent')
    params = builder.cp2k.cp2k.parameters.get_dict()
    assert params['FORCE_EVAL']['DFT']['MGRID']['CUTOFF'] == 600
    assert all(kind['BASIS_SET'].startswith('TZV2P') for kind in params['FORCE_EVAL']['SUBSYS']['KIND'])


def test_overrides_and_options_are_merged(cp2k_code, frames):
    overrides = {
        'max_concurrent': 3,
        'quality_control': {'max_force': 20.0},
        'cp2k': {'cp2k': {'parameters': {'FORCE_EVAL': {'DFT': {'SCF': {'EPS_SCF': 1.0e-8}}}}}},
    }
    builder = LabelWorkChain.get_builder_from_protocol(
        cp2k_code, frames, overrides=overrides, options={'max_wallclock_seconds': 120}
    )
    assert builder.max_concurrent.value == 3
    assert builder.quality_control.max_force.value == 20.0
    assert builder.quality_control.max_energy_zscore.value == 10.0
    scf = builder.cp2k.cp2k.parameters['FORCE_EVAL']['DFT']['SCF']
    assert scf['EPS_SCF'] == 1.0e-8 and scf['OT']['MINIMIZER'] == 'DIIS'
    assert builder.cp2k.cp2k.metadata.options.max_wallclock_seconds == 120


def test_frames_without_cell_fail_in_builder(cp2k_code):
    atoms = Atoms('LiF', positions=[[0, 0, 0], [1.6, 0, 0]])
    frames = FramesData.from_ase([libf4_atoms(0), atoms]).store()
    before = count_nodes()
    with pytest.raises(ValueError, match=r'`frames`: 1 frame\(s\) have no cell .*: 1\.'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames)
    assert count_nodes() == before


def test_frames_without_cell_fail_at_submission(cp2k_code, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames)
    builder.frames = FramesData.from_ase([Atoms('LiF', positions=[[0, 0, 0], [1.6, 0, 0]])]).store()
    before = count_nodes()
    with pytest.raises(ValueError, match=r'`frames`: 1 frame\(s\) have no cell'):
        launch(builder)
    assert count_nodes() == before


def test_element_missing_from_basis_set(cp2k_code):
    atoms = Atoms('KF', positions=[[0, 0, 0], [2.2, 0, 0]], cell=[8, 8, 8], pbc=True)
    frames = FramesData.from_ase([atoms]).store()
    before = count_nodes()
    with pytest.raises(
        ValueError, match=r'`frames`: element\(s\) K have no basis set/potential in protocol `balanced`'
    ):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='balanced')
    # GFN1-xTB covers potassium
    LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='fast')
    assert count_nodes() == before


def test_element_missing_kind_fails_at_submission(cp2k_code, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='balanced')
    params = builder.cp2k.cp2k.parameters.get_dict()
    params['FORCE_EVAL']['SUBSYS']['KIND'] = [k for k in params['FORCE_EVAL']['SUBSYS']['KIND'] if k['_'] != 'Li']
    builder.cp2k.cp2k.parameters = orm.Dict(params)
    before = count_nodes()
    with pytest.raises(
        ValueError, match=r'`cp2k.cp2k.parameters`: no FORCE_EVAL/SUBSYS/KIND .* Li present in `frames`'
    ):
        launch(builder)
    assert count_nodes() == before


def test_element_missing_from_pseudo_family(pw_code, sssp_family):
    atoms = Atoms('NaF', positions=[[0, 0, 0], [2.0, 0, 0]], cell=[8, 8, 8], pbc=True)
    frames = FramesData.from_ase([atoms]).store()
    before = count_nodes()
    with pytest.raises(ValueError, match=r'`frames`: family `SSSP/1.3/PBE/efficiency` has no pseudopotential'):
        LabelWorkChain.get_builder_from_protocol(pw_code, frames)
    assert count_nodes() == before


def test_missing_pseudo_family(pw_code, frames):
    with pytest.raises(ValueError, match=r'`meta_parameters.pseudo_family`: pseudopotential family `nope`'):
        LabelWorkChain.get_builder_from_protocol(
            pw_code, frames, overrides={'meta_parameters': {'pseudo_family': 'nope'}}
        )


def test_missing_pseudo_fails_at_submission(pw_code, sssp_family, frames):
    builder = LabelWorkChain.get_builder_from_protocol(pw_code, frames)
    assert builder.qe.kpoints.get_kpoints_mesh()[0] == [1, 1, 1]
    builder.qe.pw.pseudos = {k: v for k, v in builder.qe.pw.pseudos.items() if k != 'B'}
    before = count_nodes()
    with pytest.raises(ValueError, match=r'`qe.pw.pseudos`: no pseudopotential for element\(s\) B'):
        launch(builder)
    assert count_nodes() == before


def test_exactly_one_engine(cp2k_code, pw_code, sssp_family, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames)
    builder.qe = LabelWorkChain.get_builder_from_protocol(pw_code, frames).qe._inputs(prune=True)
    before = count_nodes()
    with pytest.raises(ValueError, match=r'exactly one engine namespace, `cp2k` or `qe`; got `cp2k`, `qe`'):
        launch(builder)
    assert count_nodes() == before


def test_engine_and_code_must_agree(cp2k_code, frames, localhost):
    with pytest.raises(ValueError, match=r'`code`: code `cp2k-test@.*` has plugin `cp2k`, engine `qe`'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, engine='qe')
    with pytest.raises(ValueError, match=r'`engine`: unknown engine `vasp`'):
        LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, engine='vasp')
    other = orm.InstalledCode(label='bash-test', computer=localhost, filepath_executable='/bin/bash')
    with pytest.raises(ValueError, match=r'`code`: cannot infer the engine'):
        LabelWorkChain.get_builder_from_protocol(other, frames)


def test_thresholds_are_validated(cp2k_code, frames):
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames)
    with pytest.raises(ValueError, match=r'`quality_control.max_force` must be > 0'):
        builder.quality_control.max_force = orm.Float(-1.0)
    with pytest.raises(ValueError, match=r'`max_concurrent` must be >= 1'):
        builder.max_concurrent = orm.Int(0)
    with pytest.raises(ValueError, match=r'`max_rejected_fraction` must be in \[0, 1\]'):
        builder.max_rejected_fraction = orm.Float(1.5)
