"""Frame sets to and from training-file formats: extended XYZ (MACE keys) and DeePMD npy systems. No AiiDA.

extxyz
    One file, one block per frame, written with every float to full precision (``%.17g``, exact round
    trip). Labels under the MACE keys ``REF_energy`` (eV), ``REF_forces`` (eV/Å, per atom) and ``REF_stress``
    (eV/Å^3, ASE sign, 9 numbers row-major, as ``mace_run_train --stress_key=REF_stress`` reads); a frame
    lacking a label simply omits the key. ``config_type`` holds the origin (so MACE's
    ``config_type_weights`` can weigh EQ/nEQ/AL frames); ``iteration``, ``temperature``, ``perturbation``,
    ``source``, ``level_of_theory`` and ``molecules`` are written when set; ``mol_id`` is a per-atom column
    and velocities are ASE ``momenta``. Read with :func:`ase.io.read`, as MACE does.

deepmd
    A directory of DeePMD npy systems written by dpdata (float64): one system per distinct atom ordering
    (in practice one per composition; the folder is named by the Hill formula, ``_1``, ``_2``... for
    repeats), labelled and unlabelled frames in separate systems. All systems share one ``type_map``
    (default: the sorted elements). The virial is ``virial = -stress * volume`` in eV (dpdata's convention,
    ``dpdata/plugins/ase.py``). DeePMD cannot represent partial periodicity, velocities or per-frame
    metadata; the last two are kept beside the systems for a lossless round trip: ``ilmlff_frames.json``
    (frame order and metadata) at the top and ``ilmlff_mol_id.npy`` in each system.

dpdata is imported only inside the DeePMD functions (it loads deepmd-kit's light ``deepmd.driver`` plugin,
never TensorFlow or torch).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import typing as t

import numpy as np

from .frame_arrays import FrameArrays

__all__ = ('read_deepmd', 'read_extxyz', 'write_deepmd', 'write_extxyz')

MACE_KEYS = {'energy': 'REF_energy', 'forces': 'REF_forces', 'stress': 'REF_stress'}
DEEPMD_SIDECAR = 'ilmlff_frames.json'
DEEPMD_MOL_ID = 'ilmlff_mol_id.npy'
_STRING_INFO_KEYS = ('source', 'level_of_theory')


# ---------------------------------------------------------------------------------------------- extxyz


def write_extxyz(
    path: str | os.PathLike,
    arrays: FrameArrays,
    *,
    energy_key: str = MACE_KEYS['energy'],
    forces_key: str = MACE_KEYS['forces'],
    stress_key: str = MACE_KEYS['stress'],
) -> None:
    """Write every frame of ``arrays`` to the extended-XYZ file ``path`` (see the module docstring)."""
    from ase import units
    from ase.data import atomic_masses, chemical_symbols
    from ase.io.extxyz import key_val_dict_to_str

    symbols = np.array(chemical_symbols, dtype=object)
    masks = {name: arrays.mask(name) for name in ('energy', 'forces', 'stress', 'velocities')}
    mol_id_mask = arrays.mol_id_mask()
    with open(path, 'w', encoding='utf-8') as handle:
        for i in range(arrays.n_frames):
            rows = arrays.atom_slice(i)
            properties = ['species:S:1', 'pos:R:3']
            columns: list[t.Any] = [symbols[arrays.numbers[rows]].tolist(), *arrays.positions[rows].T.tolist()]
            formats = ['%s', '%.17g', '%.17g', '%.17g']
            if masks['forces'][i]:
                properties.append(f'{forces_key}:R:3')
                columns.extend(arrays.forces[rows].T.tolist())
                formats.extend(['%.17g'] * 3)
            if masks['velocities'][i]:
                momenta = arrays.velocities[rows] / units.fs * atomic_masses[arrays.numbers[rows]][:, None]
                properties.append('momenta:R:3')
                columns.extend(momenta.T.tolist())
                formats.extend(['%.17g'] * 3)
            if mol_id_mask[i]:
                properties.append('mol_id:I:1')
                columns.append(arrays.mol_id[rows].tolist())
                formats.append('%d')
            info: dict[str, t.Any] = {'config_type': str(arrays.origin[i])}
            if masks['energy'][i]:
                info[energy_key] = float(arrays.energy[i])
            if masks['stress'][i]:
                info[stress_key] = arrays.stress[i].reshape(9)
            if arrays.iteration[i] != -1:
                info['iteration'] = int(arrays.iteration[i])
            if not math.isnan(arrays.temperature[i]):
                info['temperature'] = float(arrays.temperature[i])
            for key in ('perturbation', 'source', 'level_of_theory', 'molecules'):
                value = getattr(arrays, key)[i]
                if value:
                    info[key] = json.loads(value) if key in ('perturbation', 'molecules') else value
            info['pbc'] = arrays.pbc[i]
            header = ''
            if arrays.cells[i].any():
                header = 'Lattice="' + ' '.join(repr(float(x)) for x in arrays.cells[i].reshape(9)) + '" '
            header += 'Properties=' + ':'.join(properties) + ' ' + key_val_dict_to_str(info)
            line = ' '.join(formats) + '\n'
            handle.write(f'{rows.stop - rows.start}\n{header}\n')
            handle.write(''.join(map(line.__mod__, zip(*columns))))


def _as_stress(value: t.Any) -> np.ndarray:
    from ase.stress import voigt_6_to_full_3x3_stress

    value = np.asarray(value, dtype=np.float64)
    if value.shape == (6,):
        return voigt_6_to_full_3x3_stress(value)
    if value.size == 9:
        return value.reshape(3, 3)
    raise ValueError(f'stress must have 6 or 9 components, got shape {value.shape}')


def read_extxyz(
    path: str | os.PathLike,
    *,
    energy_key: str = MACE_KEYS['energy'],
    forces_key: str = MACE_KEYS['forces'],
    stress_key: str = MACE_KEYS['stress'],
    **overrides: t.Any,
) -> FrameArrays:
    """Read an extended-XYZ file written by :func:`write_extxyz`, by MACE tools or by ASE.

    Labels come from ``energy_key``/``forces_key``/``stress_key``, falling back to the plain ASE results
    (``energy``, ``forces``, ``stress``). The origin comes from ``info['origin']``, else from
    ``config_type`` when that is a valid origin, else ``'import'``. ``overrides`` as
    :meth:`FrameArrays.from_ase`. String metadata that ASE parsed as numbers are turned back into str.

    :raises ValueError: on an unreadable file or invalid frames.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    from .frame_arrays import ORIGINS

    images = read(path, index=':', format='extxyz')
    for atoms in images:
        results = dict(getattr(atoms.calc, 'results', None) or {})
        energy = atoms.info.pop(energy_key, None)
        forces = atoms.arrays.pop(forces_key, None)
        stress = atoms.info.pop(stress_key, None)
        if energy is not None:
            results['energy'] = float(energy)
        if forces is not None:
            results['forces'] = np.asarray(forces, dtype=np.float64)
        if stress is not None:
            results['stress'] = _as_stress(stress)
        elif 'stress' in results:
            results['stress'] = _as_stress(results['stress'])
        results = {k: v for k, v in results.items() if k in ('energy', 'forces', 'stress')}
        atoms.calc = SinglePointCalculator(atoms, **results) if results else None
        config_type = atoms.info.pop('config_type', None)
        if 'origin' not in atoms.info and config_type in ORIGINS:
            atoms.info['origin'] = config_type
        for key in _STRING_INFO_KEYS:
            if key in atoms.info and not isinstance(atoms.info[key], str):
                atoms.info[key] = str(atoms.info[key])
    return FrameArrays.from_ase(images, **overrides)


# ---------------------------------------------------------------------------------------------- deepmd


def _hill_formula(numbers: np.ndarray) -> str:
    from ase.data import chemical_symbols
    from ase.formula import Formula

    return Formula(''.join(chemical_symbols[z] for z in numbers)).format('hill')


def write_deepmd(path: str | os.PathLike, arrays: FrameArrays, *, type_map: t.Sequence[str] | None = None) -> list[str]:
    """Write ``arrays`` as DeePMD npy systems under the directory ``path``; return the system folder names.

    :param type_map: element order of ``type.raw`` indices; default the sorted elements of ``arrays``.
    :raises ValueError: if a frame has an energy without forces (or the reverse), has partial periodicity,
        or is non-periodic with a stress; or if ``type_map`` misses an element.
    """
    import dpdata
    from ase.data import chemical_symbols

    root = pathlib.Path(path)
    energy, forces, stress = arrays.mask('energy'), arrays.mask('forces'), arrays.mask('stress')
    if (energy != forces).any():
        frames = np.flatnonzero(energy != forces)[:10].tolist()
        raise ValueError(f'DeePMD needs energy and forces together; frames {frames} have only one of them')
    partial = arrays.pbc.any(axis=1) & ~arrays.pbc.all(axis=1)
    if partial.any():
        raise ValueError(
            f'DeePMD cannot represent partial periodicity (frames {np.flatnonzero(partial)[:10].tolist()})'
        )
    periodic = arrays.pbc.all(axis=1)
    if (stress & ~periodic).any():
        raise ValueError('non-periodic frames cannot carry a stress in DeePMD (no volume for the virial)')
    elements = sorted({chemical_symbols[z] for z in np.unique(arrays.numbers).tolist()})
    type_map = list(type_map) if type_map is not None else elements
    missing = sorted(set(elements) - set(type_map))
    if missing:
        raise ValueError(f'type_map {type_map} lacks elements {missing}')
    type_index = {chemical_symbols.index(name): index for index, name in enumerate(type_map)}

    groups: dict[tuple, list[int]] = {}
    for i in range(arrays.n_frames):
        key = (arrays.numbers[arrays.atom_slice(i)].tobytes(), bool(energy[i]), bool(stress[i]), bool(periodic[i]))
        groups.setdefault(key, []).append(i)

    root.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    systems = []
    for frames in groups.values():
        index = np.asarray(frames, dtype=np.int64)
        first = arrays.atom_slice(frames[0])
        numbers = arrays.numbers[first]
        natoms = len(numbers)
        base = _hill_formula(numbers)
        name, suffix = base, 0
        while name in names:
            suffix += 1
            name = f'{base}_{suffix}'
        names.append(name)
        sub = arrays.select(index)
        atom_types = np.array([type_index[z] for z in numbers.tolist()], dtype=np.int64)
        data: dict[str, t.Any] = {
            'atom_names': list(type_map),
            'atom_numbs': [int((atom_types == k).sum()) for k in range(len(type_map))],
            'atom_types': atom_types,
            'orig': np.zeros(3),
            'cells': sub.cells.copy(),
            'coords': sub.positions.reshape(len(index), natoms, 3).copy(),
        }
        if not periodic[frames[0]]:
            data['nopbc'] = True
        if energy[frames[0]]:
            data['energies'] = sub.energy.copy()
            data['forces'] = sub.forces.reshape(len(index), natoms, 3).copy()
            if stress[frames[0]]:
                volume = np.abs(np.linalg.det(sub.cells))
                data['virials'] = -sub.stress * volume[:, None, None]
            system = dpdata.LabeledSystem(data=data)
        else:
            system = dpdata.System(data=data)
        system.to('deepmd/npy', str(root / name), prec=np.float64)
        if sub.mol_id is not None:
            np.save(root / name / DEEPMD_MOL_ID, sub.mol_id.reshape(len(index), natoms))
        systems.append({'path': name, 'frames': frames})

    metadata = [
        {
            'origin': str(arrays.origin[i]),
            'iteration': int(arrays.iteration[i]),
            'temperature': None if math.isnan(arrays.temperature[i]) else float(arrays.temperature[i]),
            **{key: str(getattr(arrays, key)[i]) for key in ('perturbation', 'source', 'level_of_theory', 'molecules')},
        }
        for i in range(arrays.n_frames)
    ]
    sidecar = {
        'format': 'ilmlff.frames/deepmd',
        'version': 1,
        'n_frames': arrays.n_frames,
        'type_map': type_map,
        'systems': systems,
        'frames': metadata,
    }
    (root / DEEPMD_SIDECAR).write_text(json.dumps(sidecar, indent=1), encoding='utf-8')
    return names


def _system_dirs(root: pathlib.Path) -> list[pathlib.Path]:
    if (root / 'type.raw').is_file():
        return [root]
    return sorted(p.parent for p in root.rglob('type.raw'))


def read_deepmd(path: str | os.PathLike, **overrides: t.Any) -> FrameArrays:
    """Read DeePMD npy systems: one system directory, or a directory holding several (searched recursively).

    With the ``ilmlff_frames.json`` written by :func:`write_deepmd`, the original frame order and metadata
    are restored; otherwise frames come system by system (sorted paths) with origin ``'import'``.
    Stress is ``-virial / volume``. ``overrides`` as :meth:`FrameArrays.from_ase`.

    :raises ValueError: if no system is found.
    """
    import dpdata
    from ase.data import atomic_numbers

    root = pathlib.Path(path)
    dirs = _system_dirs(root)
    if not dirs:
        raise ValueError(f'no DeePMD system (a folder with type.raw) under {root}')
    sidecar_path = root / DEEPMD_SIDECAR
    sidecar = json.loads(sidecar_path.read_text(encoding='utf-8')) if sidecar_path.is_file() else None
    parts: list[FrameArrays] = []
    order: list[int] = []
    for directory in dirs:
        labelled = any(directory.glob('set.*/energy.npy'))
        system = (
            dpdata.LabeledSystem(str(directory), fmt='deepmd/npy')
            if labelled
            else dpdata.System(str(directory), fmt='deepmd/npy')
        )
        data = system.data
        nframes = data['coords'].shape[0]
        numbers = np.array([atomic_numbers[data['atom_names'][k]] for k in data['atom_types']], dtype=np.int64)
        periodic = not data.get('nopbc', False)
        stress = None
        if 'virials' in data:
            volume = np.abs(np.linalg.det(data['cells']))
            stress = -np.asarray(data['virials']) / volume[:, None, None]
        mol_id = np.load(directory / DEEPMD_MOL_ID) if (directory / DEEPMD_MOL_ID).is_file() else None
        parts.append(
            FrameArrays.build(
                numbers,
                data['coords'],
                data['cells'],
                periodic,
                energy=data.get('energies'),
                forces=data.get('forces'),
                stress=stress,
                mol_id=mol_id,
            )
        )
        if sidecar is not None:
            relative = directory.relative_to(root).as_posix() if directory != root else '.'
            match = [s['frames'] for s in sidecar['systems'] if s['path'] == relative]
            if not match or len(match[0]) != nframes:
                sidecar = None
            else:
                order.extend(match[0])
    arrays = FrameArrays.concatenate(parts)
    metadata: dict[str, t.Any] = {}
    if sidecar is not None and sorted(order) == list(range(sidecar['n_frames'])):
        arrays = arrays.select(np.argsort(np.asarray(order)))
        frames = sidecar['frames']
        metadata = {key: [f[key] for f in frames] for key in frames[0]}
    for key, value in overrides.items():
        if value is not None:
            metadata[key] = value
    fields = {name: getattr(arrays, name) for name in ('energy', 'forces', 'stress', 'mol_id')}
    if fields['mol_id'] is not None and (fields['mol_id'] < 0).all():
        fields['mol_id'] = None
    return FrameArrays.build(
        arrays.numbers, arrays.positions, arrays.cells, arrays.pbc, n_atoms=arrays.n_atoms, **fields, **metadata
    )
