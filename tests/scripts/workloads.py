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


def smallest_pipeline_builder(codes, architecture: str = 'mace'):
    """``ilmlff.pipeline`` at its smallest (``tests/pipeline/test_pipeline_real.py``'s ``SMALLEST``), one architecture.

    PYR14BF4 x2 (70 atoms), protocol ``fast``: a 40-step CP2K AIMD and 4 rattled frames labelled by CP2K single
    points (ilmlff.dataset -> ilmlff.label), the whole-block test split, a committee of 2 tiny models of
    ``architecture`` (ilmlff.train), ilmlff.evaluate, ilmlff.properties (short NPT + NVT) and the comparison table.
    Every seed is the protocol's, so two runs of it give the same table. One thread per job.

    :param codes: ``{'label': cp2k, architecture: its training code, 'runner': ilmlff-runner}``.
    """
    from aiida_ilmlff.runner.calculators import thread_environment
    from aiida_ilmlff.workflows.pipeline import PipelineWorkChain
    from tests.fixtures.boxes import PYR14BF4
    from tests.pipeline.test_pipeline_real import SMALLEST

    environment = {**thread_environment(1), 'TF_CPP_MIN_LOG_LEVEL': '2'}
    return PipelineWorkChain.get_builder_from_protocol(
        codes,
        PYR14BF4,
        protocol='fast',
        # the fault tests time daemon restarts during labelling and training: no validation stage after them
        overrides={**SMALLEST, 'validation': False},
        options={'environment_variables': environment},
    )
