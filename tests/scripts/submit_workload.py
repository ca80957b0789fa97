"""Submit one aiida-ilmlff process to the daemon of a profile, wait for it, query its provenance.

Run by the daemon tests in a subprocess (``python submit_workload.py PROFILE [TIMEOUT]``) so the
profile under test (PostgreSQL + RabbitMQ, or SQLite + ZeroMQ) is loaded in a clean interpreter.
Prints one JSON line with what the test checks.
"""

from __future__ import annotations

import json
import sys
import time


def main(profile: str, timeout: float) -> int:
    from aiida import load_profile, orm
    from aiida.engine import submit

    load_profile(profile)
    from workloads import label_builder  # beside this script

    builder = label_builder(orm.load_code('cp2k@localhost'))
    node = submit(builder)
    start = time.monotonic()
    while not node.is_terminated:
        if time.monotonic() - start > timeout:
            print(json.dumps({'pk': node.pk, 'state': 'timeout', 'process_state': str(node.process_state)}))
            return 1
        time.sleep(1)

    labelled = node.outputs.labelled if node.is_finished_ok else None
    calcjobs = []
    if labelled is not None:
        # Provenance: every calculation job upstream of the labelled frames.
        qb = orm.QueryBuilder()
        qb.append(orm.Data, filters={'id': labelled.pk}, tag='labelled')
        qb.append(orm.CalcJobNode, with_descendants='labelled', project=['process_type'])
        calcjobs = sorted({process_type for (process_type,) in qb.all()})
    result = {
        'pk': node.pk,
        'exit_status': node.exit_status,
        'storage': node.backend.__class__.__name__,
        'n_labelled': len(labelled) if labelled is not None else 0,
        'upstream_calcjobs': calcjobs,
    }
    print(json.dumps(result))
    return 0 if node.is_finished_ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 300))
