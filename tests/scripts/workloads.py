"""Workloads that the daemon tests submit: small, real, and of this plugin."""

from __future__ import annotations

import numpy as np


def libf4_frames(n: int = 2, box: float = 8.0):
    """``n`` rattled Li+ BF4- ion pairs (6 atoms) in a cubic ``box`` [Å], as a stored ``FramesData``."""
    from ase import Atoms

    from aiida_ilmlff.data import FramesData

    d = 1.40 / np.sqrt(3)
    li = -3.4 / np.sqrt(3)
    images = []
    for seed in range(n):
        atoms = Atoms(
            'LiBF4',
            positions=[[li, li, li], [0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]],
            cell=[box] * 3,
            pbc=True,
        )
        atoms.center()
        atoms.rattle(0.05, seed=seed)
        atoms.info['origin'] = 'nEQ'
        images.append(atoms)
    return FramesData.from_ase(images).store()


def label_builder(code):
    """``ilmlff.label`` with protocol ``fast`` (CP2K GFN1-xTB) on two Li+ BF4- frames, one core each."""
    from aiida.plugins import WorkflowFactory

    LabelWorkChain = WorkflowFactory('ilmlff.label')
    options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'withmpi': False}
    return LabelWorkChain.get_builder_from_protocol(code, libf4_frames(2), protocol='fast', options=options)
