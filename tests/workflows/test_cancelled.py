""":func:`aiida_ilmlff.workflows.cancelled.scheduler_cancellation` on stored CalcJobNodes, without a scheduler.

The same handler runs for real in ``tests/slurm/test_faults.py`` (a job cancelled with ``scancel`` on Slurm).
"""

from __future__ import annotations

import io

import pytest
from aiida import orm
from aiida.common.links import LinkType

from aiida_ilmlff.workflows.cancelled import scheduler_cancellation
from aiida_ilmlff.workflows.cp2k_base import IlmlffCp2kBaseWorkChain
from aiida_ilmlff.workflows.md import MDBaseWorkChain
from aiida_ilmlff.workflows.train import DeepmdTrainBaseWorkChain, MaceTrainBaseWorkChain

SACCT_HEADER = 'JobID|JobName|State|ExitCode|'


def _calc(computer, stderr: str | None = None, sacct_state: str | None = None, sacct_retval: int = 0):
    """A stored CalcJobNode of job 42 with ``stderr`` retrieved and ``sacct_state`` in its detailed job info."""
    calc = orm.CalcJobNode(computer=computer, process_type='aiida.calculations:ilmlff.md')
    calc.set_option('resources', {'num_machines': 1})
    calc.set_option('scheduler_stderr', '_scheduler-stderr.txt')
    calc.set_job_id('42')
    if sacct_state is not None:
        stdout = f'{SACCT_HEADER}\n42|aiida-1|{sacct_state}|0:15|\n'
        calc.set_detailed_job_info({'retval': sacct_retval, 'stdout': stdout, 'stderr': ''})
    calc.store()
    if stderr is not None:
        retrieved = orm.FolderData()
        retrieved.base.repository.put_object_from_filelike(io.BytesIO(stderr.encode()), '_scheduler-stderr.txt')
        retrieved.base.links.add_incoming(calc, LinkType.CREATE, 'retrieved')
        retrieved.store()
    return calc


@pytest.mark.parametrize(
    ('stderr', 'expected'),
    [
        (
            'Traceback...\nslurmstepd: error: *** JOB 42 ON node01 CANCELLED AT 2026-12-05T11:55:40 ***\n',
            'Slurm job 42 cancelled at 2026-12-05T11:55:40 on node01',
        ),
        (
            'slurmstepd: error: *** JOB 42 ON node01 CANCELLED AT 2026-12-05T11:55:40 DUE TO PREEMPTION ***\n',
            'Slurm job 42 cancelled at 2026-12-05T11:55:40 on node01 due to preemption',
        ),
        ('slurmstepd: error: *** JOB 42 ON node01 CANCELLED AT 2026-12-05T11:55:40 DUE TO TIME LIMIT ***\n', None),
        ('an ordinary error\n', None),
        ('', None),
    ],
)
def test_cancellation_from_the_job_stderr(aiida_localhost, stderr, expected):
    assert scheduler_cancellation(_calc(aiida_localhost, stderr)) == expected


def test_cancellation_from_sacct(aiida_localhost):
    """A job cancelled while pending wrote no stderr: the accounting state says it; a failed sacct says nothing."""
    cancelled = _calc(aiida_localhost, sacct_state='CANCELLED by 1000')
    assert scheduler_cancellation(cancelled) == 'Slurm job 42 CANCELLED by 1000 (sacct)'
    assert scheduler_cancellation(_calc(aiida_localhost, sacct_state='CANCELLED by 1000', sacct_retval=1)) is None
    assert scheduler_cancellation(_calc(aiida_localhost, sacct_state='FAILED')) is None
    assert scheduler_cancellation(_calc(aiida_localhost)) is None  # nothing retrieved, no accounting


@pytest.mark.parametrize(
    'workchain', [MDBaseWorkChain, IlmlffCp2kBaseWorkChain, MaceTrainBaseWorkChain, DeepmdTrainBaseWorkChain]
)
def test_restart_work_chains_handle_cancelled_jobs(workchain):
    """Every restart work chain of ours has the handler first, the input and exit code 403."""
    handlers = sorted(workchain.get_process_handlers(), key=lambda h: -h.priority)
    assert handlers[0].__name__ == 'handle_cancelled_job'
    assert workchain.exit_codes.ERROR_JOB_CANCELLED.status == 403
    assert workchain.spec().inputs['resubmit_cancelled'].default().value is True


def test_protocols_set_resubmit_cancelled(cp2k_code):
    """The protocol setting reaches the work chains' inputs, and an override switches it off."""
    from aiida_ilmlff.data import FramesData
    from aiida_ilmlff.workflows.label import LabelWorkChain
    from tests.workflows.conftest import libf4_atoms

    plain = MDBaseWorkChain.get_plain_protocol_inputs('fast')
    assert plain['resubmit_cancelled'] is True
    plain = MDBaseWorkChain.get_plain_protocol_inputs('fast', {'resubmit_cancelled': False})
    assert MDBaseWorkChain.plain_inputs_to_nodes(None, plain)['resubmit_cancelled'].value is False
    plain = MaceTrainBaseWorkChain.get_plain_protocol_inputs('fast', {'resubmit_cancelled': False})
    assert plain['resubmit_cancelled'] is False
    frames = FramesData.from_ase([libf4_atoms(0)])
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='fast')
    assert builder.cp2k.resubmit_cancelled.value is True
    overrides = {'cp2k': {'resubmit_cancelled': False}}
    builder = LabelWorkChain.get_builder_from_protocol(cp2k_code, frames, protocol='fast', overrides=overrides)
    assert builder.cp2k.resubmit_cancelled.value is False
