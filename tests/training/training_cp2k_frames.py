"""Label small rattled Li+ BF4- frames with real CP2K GFN1-xTB single points (the ``fast`` level of theory).

Used by the training tests' session fixture; it calls ``cp2k.psmp`` directly (about 1 s a frame) so the
tests do not depend on the labelling workflow. Energies in eV, forces in eV/A.
"""

from __future__ import annotations

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
      EPS_SCF 1.0E-7
      MAX_SCF 50
      &OT
        MINIMIZER DIIS
        PRECONDITIONER FULL_SINGLE_INVERSE
      &END OT
      &OUTER_SCF
        MAX_SCF 10
        EPS_SCF 1.0E-7
      &END OUTER_SCF
    &END SCF
    &POISSON
      PERIODIC XYZ
    &END POISSON
  &END DFT
  &SUBSYS
    &CELL
      ABC {a} {a} {a}
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

BOX = 8.0


def li_bf4_frames(n_frames: int, seed: int = 0, box: float = BOX) -> list[Atoms]:
    """Rattled, randomly placed Li+ BF4- pairs in a cubic box of side ``box`` A (unlabelled)."""
    rng = np.random.default_rng(seed)
    d = 1.40 / np.sqrt(3.0)
    bf4 = np.array([[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]])
    frames = []
    while len(frames) < n_frames:
        centre = np.full(3, box / 2)
        direction = rng.normal(size=3)
        li = centre + rng.uniform(2.4, 3.4) * direction / np.linalg.norm(direction)
        positions = np.vstack([li, centre + bf4]) + rng.normal(0.0, 0.06, (6, 3))
        if np.linalg.norm(positions[2:] - positions[0], axis=1).min() < 1.7:
            continue
        frames.append(Atoms('LiBF4', positions=positions, cell=[box] * 3, pbc=True))
    return frames


def run_cp2k(atoms: Atoms, workdir: pathlib.Path, executable: str = 'cp2k.psmp') -> Atoms:
    """One GFN1-xTB energy + forces with CP2K; returns a copy carrying a SinglePointCalculator (eV, eV/A)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / 'input.inp').write_text(CP2K_INPUT.format(a=atoms.cell[0, 0]))
    lines = [str(len(atoms)), '']
    lines += [f'{s} {x:.10f} {y:.10f} {z:.10f}' for s, (x, y, z) in zip(atoms.symbols, atoms.positions)]
    (workdir / 'frame.xyz').write_text('\n'.join(lines) + '\n')
    subprocess.run(
        [shutil.which(executable) or executable, '-i', 'input.inp', '-o', 'output.log'],
        cwd=workdir,
        check=True,
        env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'},
    )
    text = (workdir / 'output.log').read_text().splitlines()
    energy = None
    forces = []
    for i, line in enumerate(text):
        if line.startswith(' ENERGY| Total FORCE_EVAL'):
            energy = float(line.split()[-1]) * units.Hartree
        if 'ATOMIC FORCES in [a.u.]' in line:
            forces = [[float(x) for x in row.split()[3:6]] for row in text[i + 3 : i + 3 + len(atoms)]]
    if energy is None or len(forces) != len(atoms):
        raise RuntimeError(f'CP2K did not finish in {workdir}')
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(labelled, energy=energy, forces=np.array(forces) * units.Hartree / units.Bohr)
    return labelled


def labelled_frames(n_frames: int, workdir: pathlib.Path, seed: int = 0) -> list[Atoms]:
    """``n_frames`` Li+ BF4- frames labelled by CP2K GFN1-xTB."""
    return [run_cp2k(atoms, workdir / f'frame_{i:03d}') for i, atoms in enumerate(li_bf4_frames(n_frames, seed))]
