"""Fixtures of the labelling tests alone: an SSSP family and Li+ BF4- frames.

The CP2K and pw.x codes (``cp2k_code``, ``pw_code``) are shared fixtures of :mod:`tests.fixtures.codes`.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

#: SSSP 1.3 PBE efficiency cutoffs in Ry (wavefunction, density), from shared/pseudos/SOURCES.md.
SSSP_EFFICIENCY_CUTOFFS = {
    'H': (60, 480),
    'Li': (40, 320),
    'B': (35, 280),
    'C': (45, 360),
    'N': (60, 480),
    'O': (50, 400),
    'F': (45, 360),
    'S': (35, 280),
    'P': (30, 240),
}


@pytest.fixture
def sssp_family(pseudo_dir, tmp_path_factory):
    """A ``pseudo.family.cutoffs`` family ``SSSP/1.3/PBE/efficiency`` made from the shared UPF files.

    The files are copied to a temporary folder (never into the repository) because the shared folder also
    holds ``SOURCES.md``; the SSSP efficiency cutoffs are set as the ``normal`` stringency.
    """
    from aiida import orm
    from aiida.plugins import DataFactory, GroupFactory

    label = 'SSSP/1.3/PBE/efficiency'
    family_class = GroupFactory('pseudo.family.cutoffs')
    existing = orm.QueryBuilder().append(family_class, filters={'label': label}).first(flat=True)
    if existing is not None:
        return existing
    upfs = sorted(p for p in pseudo_dir.iterdir() if p.suffix.lower() == '.upf')
    if not upfs:
        pytest.skip(f'no UPF files in {pseudo_dir}')
    folder = tmp_path_factory.mktemp('sssp')
    for path in upfs:
        shutil.copy(path, folder / path.name)
    family = family_class.create_from_folder(folder, label, pseudo_type=DataFactory('pseudo.upf'))
    cutoffs = {el: {'cutoff_wfc': wfc, 'cutoff_rho': rho} for el, (wfc, rho) in SSSP_EFFICIENCY_CUTOFFS.items()}
    family.set_cutoffs(cutoffs, 'normal', unit='Ry')
    return family


def libf4_atoms(seed: int, rattle: float = 0.05, box: float = 8.0, li_distance: float = 3.4):
    """A Li+ BF4- ion pair (6 atoms) in a cubic ``box`` [Å], B-F 1.40 Å, Li on the C3 axis, rattled."""
    from ase import Atoms

    d = 1.40 / np.sqrt(3)
    li = -li_distance / np.sqrt(3)
    atoms = Atoms(
        'LiBF4',
        positions=[[li, li, li], [0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]],
        cell=[box] * 3,
        pbc=True,
    )
    atoms.center()
    atoms.rattle(rattle, seed=seed)
    atoms.info['origin'] = 'nEQ'
    return atoms


@pytest.fixture
def libf4_frames():
    """A factory: ``libf4_frames(n, seed0=0, **kwargs)`` -> stored ``FramesData`` of ``n`` Li+ BF4- frames."""
    from aiida_ilmlff.data import FramesData

    def factory(n: int = 3, seed0: int = 0, **kwargs):
        return FramesData.from_ase([libf4_atoms(seed0 + i, **kwargs) for i in range(n)]).store()

    return factory


@pytest.fixture
def serial_options():
    """``metadata.options`` for one-core test runs (600 s wall-time limit, one thread everywhere)."""
    from tests.fixtures.codes import options

    return options(max_wallclock_seconds=600)
