"""FramesData: construction, validation, storage, lazy loading and the extxyz / DeePMD round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiida import orm

from aiida_ilmlff.data import FramesData
from aiida_ilmlff.data.frame_arrays import FrameArrays

ARRAY_FIELDS = ('numbers', 'positions', 'offsets', 'cells', 'pbc', 'energy', 'forces', 'stress', 'mol_id')
META_FIELDS = ('origin', 'iteration', 'temperature', 'perturbation', 'source', 'level_of_theory', 'molecules')


def assert_same_frames(a: FrameArrays, b: FrameArrays, *, fields=ARRAY_FIELDS + META_FIELDS, rtol=0.0):
    """Every field equal (nan == nan); floats within ``rtol`` (0: bit-identical)."""
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        assert x.shape == y.shape, name
        if x.dtype.kind == 'f':
            np.testing.assert_allclose(x, y, rtol=rtol, atol=0, equal_nan=True, err_msg=name)
        else:
            assert np.array_equal(x, y), name


def assert_same_atoms(a, b):
    assert np.array_equal(a.numbers, b.numbers)
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.cell.array, b.cell.array)
    assert np.array_equal(a.pbc, b.pbc)
    assert a.info == b.info
    assert set(a.arrays) == set(b.arrays)
    for key in a.arrays:
        assert np.array_equal(a.arrays[key], b.arrays[key]), key
    ra = a.calc.results if a.calc else {}
    rb = b.calc.results if b.calc else {}
    assert set(ra) == set(rb)
    for key in ra:
        assert np.array_equal(np.asarray(ra[key]), np.asarray(rb[key])), key


def test_from_ase_to_ase_is_exact_inverse(ase_frames):
    node = FramesData.from_ase(ase_frames)
    back = node.to_ase()
    assert len(back) == len(ase_frames) == len(node)
    for original, restored in zip(ase_frames, back):
        expected = original.info.copy()
        assert restored.info == expected
        assert np.array_equal(restored.numbers, original.numbers)
        assert np.array_equal(restored.positions, original.positions)
        assert np.array_equal(restored.cell.array, original.cell.array)
        assert restored.get_potential_energy() == original.get_potential_energy()
        assert np.array_equal(restored.get_forces(), original.get_forces())
        assert np.array_equal(restored.calc.results['stress'], original.calc.results['stress'])
        assert np.array_equal(restored.arrays['mol_id'], original.arrays['mol_id'])
        np.testing.assert_allclose(restored.get_velocities(), original.get_velocities(), rtol=1e-14, atol=1e-300)
    # and node -> ase -> node is bit-identical
    again = FramesData.from_ase(back)
    assert_same_frames(node.get_arrays(), again.get_arrays())
    assert again.sha256 == node.sha256


def test_summary_attributes(ase_frames):
    node = FramesData.from_ase(ase_frames)
    attributes = node.base.attributes.all
    assert attributes['n_frames'] == 8
    assert attributes['n_atoms'] == [5, 7]
    assert attributes['n_atoms_total'] == 4 * 5 + 4 * 7
    assert attributes['elements'] == ['B', 'C', 'F', 'H', 'N']
    assert attributes['origin_counts'] == {'EQ': 2, 'nEQ': 2, 'AL': 2, 'import': 2}
    assert attributes['labelled'] is True
    assert attributes['n_labelled'] == 8
    assert attributes['has_stress'] is True
    assert attributes['level_of_theory'] == ['cp2k:gfn1-xtb:abc123']
    assert len(attributes['sha256']) == 64
    assert node.base.repository.list_object_names() == ['frames.h5']


def test_store_load_lazy_and_query(ase_frames):
    node = FramesData.from_ase(ase_frames).store()
    expected = node.get_arrays()
    loaded = orm.load_node(node.pk)
    assert isinstance(loaded, FramesData)
    # partial reads before anything is cached
    assert np.array_equal(loaded.get_positions(3), ase_frames[3].positions)
    assert np.array_equal(loaded.get_forces(-1), ase_frames[-1].get_forces())
    assert loaded.get_energy(2) == ase_frames[2].get_potential_energy()
    assert np.array_equal(loaded.get_cell(1), ase_frames[1].cell.array)
    assert list(loaded.origins) == [a.info['origin'] for a in ase_frames]
    assert loaded.labelled_mask.all()
    assert 'arrays' not in loaded._cache()
    assert_same_frames(expected, loaded.get_arrays())
    assert_same_atoms(loaded[5], node[5])
    with pytest.raises(IndexError):
        loaded.get_positions(8)

    query = orm.QueryBuilder().append(
        FramesData, filters={'attributes.n_frames': 8, 'attributes.labelled': True, 'id': node.pk}
    )
    assert query.count() == 1
    query = orm.QueryBuilder().append(FramesData, filters={'attributes.origin_counts.nEQ': {'>=': 2}, 'id': node.pk})
    assert query.count() == 1
    query = orm.QueryBuilder().append(
        FramesData, filters={'attributes.elements': {'contains': ['B', 'F']}, 'id': node.pk}
    )
    assert query.count() == 1


def test_roundtrip_extxyz(ase_frames, tmp_path):
    """ASE -> node -> store -> load -> extxyz -> node keeps every value bit for bit (velocities to 1e-15)."""
    node = FramesData.from_ase(ase_frames).store()
    loaded = orm.load_node(node.pk)
    path = loaded.export(tmp_path / 'frames.xyz', 'extxyz')
    back = FramesData.from_file(path, 'extxyz')
    assert_same_frames(node.get_arrays(), back.get_arrays())
    np.testing.assert_allclose(back.velocities, node.velocities, rtol=1e-14, atol=1e-300, equal_nan=True)
    assert back.base.attributes.get('origin_counts') == node.base.attributes.get('origin_counts')

    # the file is what MACE reads: REF_* keys and config_type = origin
    from ase.io import read

    images = read(path, index=':')
    assert images[0].info['config_type'] == 'EQ'
    assert images[1].info['REF_energy'] == ase_frames[1].get_potential_energy()
    assert np.array_equal(images[1].arrays['REF_forces'], ase_frames[1].get_forces())
    assert np.array_equal(images[2].info['REF_stress'], ase_frames[2].calc.results['stress'].reshape(9))
    assert images[1].info['perturbation'] == {'kind': 'rattle', 'seed': 1, 'stdev': 0.05}


def test_roundtrip_deepmd(ase_frames, tmp_path):
    """Node -> DeePMD npy (one system per composition) -> node; virial = -stress * volume."""
    node = FramesData.from_ase(ase_frames).store()
    loaded = orm.load_node(node.pk)
    out = loaded.export(tmp_path / 'dp', 'deepmd')
    systems = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert systems == ['BF4', 'C2H4N']
    assert (out / 'BF4' / 'type_map.raw').read_text().split() == ['B', 'C', 'F', 'H', 'N']
    # virial sign and units, checked against dpdata's own ASE reader
    virial = np.load(out / 'BF4' / 'set.000' / 'virial.npy').reshape(-1, 3, 3)
    frame = ase_frames[0]
    np.testing.assert_allclose(virial[0], -frame.calc.results['stress'] * frame.get_volume(), rtol=1e-14)
    import dpdata

    reference = dpdata.LabeledSystem(frame, fmt='ase/structure')
    np.testing.assert_allclose(virial[0], reference.data['virials'][0], rtol=1e-12)
    energy = np.load(out / 'C2H4N' / 'set.000' / 'energy.npy')
    assert energy.dtype == np.float64
    assert energy[0] == ase_frames[1].get_potential_energy()

    back = FramesData.from_file(out, 'deepmd')
    exact = tuple(f for f in ARRAY_FIELDS + META_FIELDS if f != 'stress')
    assert_same_frames(node.get_arrays(), back.get_arrays(), fields=exact)
    assert_same_frames(node.get_arrays(), back.get_arrays(), fields=('stress',), rtol=1e-14)
    assert back.velocities is None  # DeePMD does not carry velocities

    # without the sidecar: same frames system by system, origin 'import'
    (out / 'ilmlff_frames.json').unlink()
    plain = FramesData.from_file(out, 'deepmd', origin='nEQ')
    assert len(plain) == 8
    assert set(plain.origins) == {'nEQ'}
    one = FramesData.from_file(out / 'BF4', 'deepmd')
    assert one.base.attributes.get('n_atoms') == [5]


def test_from_arrays_layouts_and_missing_labels():
    rng = np.random.default_rng(0)
    positions = rng.random((4, 3, 3)) * 5
    energy = np.array([1.0, np.nan, 3.0, np.nan])
    forces = rng.normal(size=(4, 3, 3))
    forces[1] = np.nan
    node = FramesData.from_arrays([8, 1, 1], positions, np.eye(3) * 5, energy=energy, forces=forces, origin='EQ')
    assert node.base.attributes.get('labelled') is False
    assert node.base.attributes.get('n_labelled') == 2
    assert node.base.attributes.get('has_stress') is False
    assert list(node.labelled_mask) == [True, False, True, False]
    assert np.isnan(node.get_energy(1))
    assert node[1].calc is None
    assert set(node[3].calc.results) == {'forces'}  # forces without an energy stay forces only
    # concatenated layout with n_atoms, ragged frames
    flat = FramesData.from_arrays([8, 1, 1, 6, 1, 1, 1, 1], rng.random((8, 3)), n_atoms=[3, 5], pbc=False)
    assert flat.base.attributes.get('n_atoms') == [3, 5]
    assert flat[1].get_chemical_formula() == 'CH4'
    # Voigt stress is expanded to 3x3 (ASE order xx yy zz yz xz xy)
    voigt = FramesData.from_arrays([1], np.zeros((1, 1, 3)), np.eye(3), stress=[[1, 2, 3, 4, 5, 6]])
    assert np.array_equal(voigt.get_stress(0), [[1, 6, 5], [6, 2, 4], [5, 4, 3]])


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'origin': 'equilibrium'}, 'unknown origin'),
        ({'positions': np.full((2, 3, 3), np.nan)}, 'non-finite `positions`'),
        ({'energy': [1.0]}, '1 values for 2 frames'),
        ({'forces': np.zeros((2, 4, 3))}, '`forces` has shape'),
        ({'forces': np.array([[[np.nan, 0, 0], [0, 0, 0], [0, 0, 0]]] * 2)}, 'partially non-finite'),
        ({'cells': np.zeros((3, 3, 3))}, '`cells` must be'),
        ({'numbers': [0, 1, 1]}, 'invalid atomic numbers'),
        ({'perturbation': 'not json'}, 'not valid JSON'),
        ({'temperature': -5}, '`temperature`'),
        ({'energy': [np.inf, 0.0]}, 'infinite `energy`'),
    ],
)
def test_validation_errors(kwargs, message):
    arguments = {'numbers': [8, 1, 1], 'positions': np.zeros((2, 3, 3)), 'cells': np.eye(3) * 5}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        FramesData.from_arrays(**arguments)


def test_stale_calculator_results_are_refused(make_frame):
    atoms = make_frame([1, 1], np.random.default_rng(1))
    atoms.positions[0, 0] += 0.1
    with pytest.raises(ValueError, match='stale'):
        FramesData.from_ase([atoms])


def test_unstorable_without_frames():
    from aiida.common.exceptions import StoringNotAllowed, ValidationError

    with pytest.raises((ValidationError, StoringNotAllowed), match=r'frames\.h5'):
        FramesData().store()


def test_getitem_select_with_labels(ase_frames):
    node = FramesData.from_ase(ase_frames)
    sub = node[1:6:2]
    assert isinstance(sub, FramesData) and not sub.is_stored
    assert [a.info['origin'] for a in sub.to_ase()] == ['nEQ', 'import', 'nEQ']
    picked = node.select([7, 0])
    assert_same_atoms(picked[0], node[7])
    assert_same_atoms(picked[1], node[0])
    assert len(node[np.array([True] * 3 + [False] * 5)]) == 3
    with pytest.raises(ValueError, match='empty'):
        node.select([])

    arrays = node.get_arrays()
    energy = np.arange(8.0)
    energy[3] = np.nan
    forces = np.ones_like(arrays.forces)
    relabelled = node.with_labels(energy, forces, level_of_theory='qe:pbe:xyz')
    assert relabelled.base.attributes.get('level_of_theory') == ['qe:pbe:xyz']
    assert relabelled.levels_of_theory[3] == ''
    assert relabelled.stresses is None
    assert relabelled.base.attributes.get('n_labelled') == 7
    assert np.array_equal(relabelled.positions, node.positions)
    assert list(relabelled.origins) == list(node.origins)


def test_from_structure_reads_box_builder_attributes():
    from ase.build import molecule

    atoms = molecule('CH4')
    atoms.cell = np.eye(3) * 8
    atoms.pbc = True
    structure = orm.StructureData(ase=atoms)
    structure.base.attributes.set('mol_id', [0, 0, 0, 0, 0])
    structure.base.attributes.set('molecules', ['CH4'])
    structure.store()
    node = FramesData.from_structure(structure, origin='EQ')
    frame = node[0]
    assert frame.info['source'] == structure.uuid
    assert frame.info['molecules'] == ['CH4']
    assert list(frame.arrays['mol_id']) == [0] * 5
    assert node.base.attributes.get('labelled') is False
    back = node.to_structure(0)
    assert back.base.attributes.get('mol_id') == [0] * 5
    assert back.base.attributes.get('molecules') == ['CH4']


def test_export_refuses_to_overwrite(ase_frames, tmp_path):
    node = FramesData.from_ase(ase_frames)
    path = node.export(tmp_path / 'a.xyz')
    with pytest.raises(FileExistsError, match='overwrite'):
        node.export(path)
    node.export(path, overwrite=True)
    with pytest.raises(ValueError, match='unknown format'):
        node.export(tmp_path / 'b', 'npz')


def test_deepmd_export_rejects_energy_without_forces(tmp_path):
    node = FramesData.from_arrays([1, 1], np.array([[[0, 0, 0], [0, 0, 0.74]]]), np.eye(3) * 5, energy=[1.0])
    with pytest.raises(ValueError, match='energy and forces together'):
        node.export(tmp_path / 'dp', 'deepmd')


def test_perturbation_json_is_canonical():
    frames = FramesData.from_arrays(
        [1], np.zeros((2, 1, 3)), perturbation=['{"b": 1, "a": 2}', {'a': 2, 'b': 1}], origin='nEQ'
    )
    assert frames.perturbations[0] == frames.perturbations[1] == json.dumps({'a': 2, 'b': 1})


def test_lazy_load_from_packed_repository(ase_frames):
    """After ``verdi storage maintain`` packs the objects, arrays still load (h5py reads the pack stream)."""
    from aiida.manage import get_manager

    node = FramesData.from_ase(ase_frames).store()
    with get_manager().get_profile_storage().get_repository()._container as container:
        container.pack_all_loose()
    loaded = orm.load_node(node.pk)
    assert np.array_equal(loaded.get_positions(3), ase_frames[3].positions)
    assert_same_frames(node.get_arrays(), loaded.get_arrays())


def test_deepmd_virial_known_answer_and_mixed_stress(tmp_path):
    """A compressed 10 Å box (stress -0.001 eV/Å^3 on the diagonal, ASE sign: P = +1.6 kbar) has virial +1 eV on the
    diagonal (virial = -stress x volume, dpdata's convention). Frames without a stress go to their own system, which
    has no virial.npy (a DeePMD system has virials for all its frames or none); the round trip restores the mix."""
    numbers = [5, 9, 9, 9, 9]
    positions = np.array([[[5.0, 5, 5], [6.4, 5, 5], [5, 6.4, 5], [5, 5, 6.4], [3.6, 5, 5]]] * 3)
    positions[1:] += 0.1
    stress = np.full((3, 3, 3), np.nan)
    stress[0] = np.diag([-1.0e-3] * 3)
    stress[2] = np.diag([-1.0e-3, 0.0, 2.0e-3])
    node = FramesData.from_arrays(
        numbers, positions, np.eye(3) * 10.0, energy=[-1.0, -2.0, -3.0], forces=np.zeros((3, 5, 3)), stress=stress
    )
    assert node.base.attributes.get('has_stress') is True and node.base.attributes.get('n_stress') == 2
    out = tmp_path / 'dp'
    node.export(out, 'deepmd')
    names = sorted(p.parent.name for p in out.rglob('type.raw'))
    assert len(names) == 2
    with_virial = [name for name in names if (out / name / 'set.000' / 'virial.npy').is_file()]
    assert len(with_virial) == 1
    virial = np.load(out / with_virial[0] / 'set.000' / 'virial.npy').reshape(-1, 3, 3)
    np.testing.assert_allclose(virial[0], np.eye(3) * 1.0, rtol=1e-12)  # eV
    np.testing.assert_allclose(np.diag(virial[1]), [1.0, 0.0, -2.0], rtol=1e-12, atol=1e-15)
    back = FramesData.from_file(out, 'deepmd')
    assert back.base.attributes.get('n_stress') == 2
    np.testing.assert_allclose(back.stresses[[0, 2]], stress[[0, 2]], rtol=1e-12, atol=1e-18)
    assert np.isnan(back.stresses[1]).all()


def test_frames_carry_their_compositions_and_are_found_by_them():
    """Frames of two boxes: per-frame composition keys from their molecules, the sorted unique keys as a queryable
    attribute; a QueryBuilder filter on one composition finds the node, on another it does not."""
    rng = np.random.default_rng(3)
    # Two 'boxes' of different compositions: 2 frames of a Li2O-like box, 1 frame of a LiF-like box (3 and 2 atoms).
    numbers = [np.array([3, 3, 8]), np.array([3, 3, 8]), np.array([3, 9])]
    frames = FramesData.from_arrays(
        np.concatenate(numbers),
        rng.random((8, 3)) * 5,
        np.eye(3) * 5,
        n_atoms=[3, 3, 2],
        molecules=[['Li', 'Li', 'O'], ['Li', 'Li', 'O'], ['Li', 'F']],
    )
    assert list(frames.composition_keys) == ['Li:2 O:1', 'Li:2 O:1', 'F:1 Li:1']
    assert frames.base.attributes.get('compositions') == ['F:1 Li:1', 'Li:2 O:1']
    frames.store()
    query = orm.QueryBuilder().append(
        FramesData, filters={'id': frames.pk, 'attributes.compositions': {'contains': ['Li:2 O:1']}}
    )
    assert query.count() == 1
    query = orm.QueryBuilder().append(
        FramesData, filters={'id': frames.pk, 'attributes.compositions': {'contains': ['Li:1 O:1']}}
    )
    assert query.count() == 0
    unknown = FramesData.from_arrays(numbers[0], rng.random((1, 3, 3)), np.eye(3) * 5)
    assert list(unknown.composition_keys) == [''] and unknown.base.attributes.get('compositions') == []
