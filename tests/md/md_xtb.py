"""Label frames with real CP2K GFN1-xTB single points (energy in eV, forces in eV/Å), for the test models.

Calls ``cp2k.psmp`` directly (one process per frame, one OpenMP thread) so the MD tests do not depend on the
labelling workflow. The cell may be any orthorhombic or triclinic box; the system is neutral.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

CP2K_INPUT = """&GLOBAL
  PROJECT frame
  RUN_TYPE ENERGY_FORCE
  PRINT_LEVEL LOW
&END GLOBAL
&FORCE_EVAL
  METHOD QS
  &DFT
    CHARGE 0
    &QS
      METHOD XTB
      &XTB
        DO_EWALD T
        CHECK_ATOMIC_CHARGES F
      &END XTB
    &END QS
    &SCF
      SCF_GUESS MOPAC
      EPS_SCF 1.0E-6
      MAX_SCF 40
      &OT
        MINIMIZER DIIS
        PRECONDITIONER FULL_SINGLE_INVERSE
      &END OT
      &OUTER_SCF
        MAX_SCF 8
        EPS_SCF 1.0E-6
      &END OUTER_SCF
    &END SCF
    &POISSON
      PERIODIC XYZ
    &END POISSON
  &END DFT
  &SUBSYS
    &CELL
      A {a}
      B {b}
      C {c}
    &END CELL
    &TOPOLOGY
      COORD_FILE_NAME frame.xyz
      COORD_FILE_FORMAT XYZ
    &END TOPOLOGY
  &END SUBSYS
  &PRINT
    &FORCES ON
    &END FORCES
  &END PRINT
&END FORCE_EVAL
"""


def cp2k_executable() -> str | None:
    """Path of ``cp2k.psmp`` (or ``cp2k.ssmp``), or ``None``."""
    for name in ('cp2k.psmp', 'cp2k.ssmp'):
        path = shutil.which(name) or (f'/usr/bin/{name}' if os.path.exists(f'/usr/bin/{name}') else None)
        if path:
            return path
    return None


def _parse_forces(text: str, n_atoms: int) -> np.ndarray:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if 'ATOMIC FORCES in [a.u.]' in line:
            rows = [row.split() for row in lines[i + 3 : i + 3 + n_atoms]]
            return np.array([[float(x) for x in row[3:6]] for row in rows]) * units.Hartree / units.Bohr
    raise RuntimeError('CP2K printed no forces')


MD_MOTION = """&MOTION
  &MD
    ENSEMBLE NVT
    STEPS {steps}
    TIMESTEP {timestep}
    TEMPERATURE {temperature}
    &THERMOSTAT
      TYPE CSVR
      &CSVR
        TIMECON 10
      &END CSVR
    &END THERMOSTAT
  &END MD
  &PRINT
    &TRAJECTORY
      &EACH
        MD {every}
      &END EACH
    &END TRAJECTORY
    &FORCES
      &EACH
        MD {every}
      &END EACH
    &END FORCES
  &END PRINT
&END MOTION
"""


def xtb_md_frames(
    atoms: Atoms,
    workdir: pathlib.Path,
    steps: int = 60,
    every: int = 3,
    timestep: float = 0.5,
    temperature: float = 500.0,
) -> list[Atoms]:
    """Frames of a short GFN1-xTB NVT (CSVR) MD from ``atoms``, each with its energy [eV] and forces [eV/Å].

    :raises RuntimeError: if CP2K fails.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cell = np.asarray(atoms.cell)
    vec = lambda v: ' '.join(f'{x:.8f}' for x in v)  # noqa: E731
    text = CP2K_INPUT.format(a=vec(cell[0]), b=vec(cell[1]), c=vec(cell[2]))
    text = text.replace('RUN_TYPE ENERGY_FORCE', 'RUN_TYPE MD').replace('PROJECT frame', 'PROJECT md')
    motion = MD_MOTION.format(steps=steps, timestep=timestep, temperature=temperature, every=every)
    (workdir / 'input.inp').write_text(text.replace('&FORCE_EVAL', motion + '&FORCE_EVAL', 1))
    lines = [str(len(atoms)), 'frame']
    lines += [f'{s} {x:.8f} {y:.8f} {z:.8f}' for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)]
    (workdir / 'frame.xyz').write_text('\n'.join(lines) + '\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    process = subprocess.run(
        [cp2k_executable(), '-i', 'input.inp'], cwd=workdir, capture_output=True, text=True, env=env, check=False
    )
    positions_file, forces_file = workdir / 'md-pos-1.xyz', workdir / 'md-frc-1.xyz'
    if process.returncode != 0 or not forces_file.exists():
        raise RuntimeError(f'CP2K MD failed in {workdir}: {process.stdout[-2000:]}{process.stderr[-1000:]}')
    frames = []
    blocks = zip(_xyz_blocks(positions_file.read_text()), _xyz_blocks(forces_file.read_text()))
    for (comment, positions), (_, forces) in blocks:
        frame = atoms.copy()
        frame.positions = positions
        energy = float(comment.split('E =')[1]) * units.Hartree
        frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces * units.Hartree / units.Bohr)
        frames.append(frame)
    return frames


def _xyz_blocks(text: str):
    lines = text.splitlines()
    i = 0
    while i < len(lines) and lines[i].strip():
        n_atoms = int(lines[i])
        rows = [line.split()[1:4] for line in lines[i + 2 : i + 2 + n_atoms]]
        yield lines[i + 1], np.array(rows, dtype=float)
        i += n_atoms + 2


def xtb_single_point(atoms: Atoms, workdir: pathlib.Path) -> Atoms:
    """A copy of ``atoms`` with a ``SinglePointCalculator`` holding the GFN1-xTB energy [eV] and forces [eV/Å].

    :raises RuntimeError: if CP2K fails or prints no energy/forces.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cell = np.asarray(atoms.cell)
    vec = lambda v: ' '.join(f'{x:.8f}' for x in v)  # noqa: E731
    (workdir / 'input.inp').write_text(CP2K_INPUT.format(a=vec(cell[0]), b=vec(cell[1]), c=vec(cell[2])))
    lines = [str(len(atoms)), 'frame']
    lines += [f'{s} {x:.8f} {y:.8f} {z:.8f}' for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)]
    (workdir / 'frame.xyz').write_text('\n'.join(lines) + '\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    process = subprocess.run(
        [cp2k_executable(), '-i', 'input.inp'], cwd=workdir, capture_output=True, text=True, env=env, check=False
    )
    energy = None
    for line in process.stdout.splitlines():
        if 'ENERGY| Total FORCE_EVAL' in line:
            energy = float(line.split()[-1]) * units.Hartree
    if process.returncode != 0 or energy is None:
        raise RuntimeError(f'CP2K failed in {workdir}: {process.stdout[-2000:]}{process.stderr[-1000:]}')
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(labelled, energy=energy, forces=_parse_forces(process.stdout, len(atoms)))
    return labelled
