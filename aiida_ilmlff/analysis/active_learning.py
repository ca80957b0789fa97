"""What an active-learning run did, as plain data for the comparison: one row per iteration and its flags.

The ``iterations`` output of ``ilmlff.active_learning`` (:func:`~aiida_ilmlff.calculations.functions.
active_learning.collect_iterations`) holds every count; this module keeps the columns a reader of the comparison
needs (accurate ratio, what was picked and from which band, what was labelled, the training-set size, the trust
levels in eV/Å) and says, where it is so, that active learning added nothing, stopped early or did not make the
committee more accurate, so that a table printed after it is never read as the result of a working loop.
"""

from __future__ import annotations

import typing as t

__all__ = ('COMPLETED_STATUSES', 'active_learning_summary', 'format_active_learning')

#: ``status`` values of a loop that ran as asked (the others are the failure exits: no candidates, a failed
#: training, exploration, labelling, selection or merge).
COMPLETED_STATUSES = ('converged', 'max_iterations')

#: Record keys kept per iteration (see ``collect_iterations``).
_COLUMNS = (
    'iteration',
    'stage',
    'n_frames',
    'ratio_accurate',
    'ratio_candidate',
    'ratio_failed',
    'f_lo',
    'f_hi',
    'n_selected',
    'selected_from',
    'truncated_runs',
    'n_labelled',
    'n_train_before',
    'n_train_after',
    'calibration_pearson',
    'converged',
)


def active_learning_summary(iterations: t.Mapping[str, t.Any], exit_status: int | None = None) -> dict[str, t.Any]:
    """The iterations of an active-learning run and the flags that qualify the models trained after it.

    :param iterations: the ``iterations`` Dict of ``ilmlff.active_learning`` (``get_dict()``): ``status``,
        ``converged``, ``iterations`` (records), ``trust`` (the trust levels in eV/Å and how they were set).
    :param exit_status: the work chain's exit status (``None`` when unknown).
    :returns: ``{'status', 'exit_status', 'converged', 'n_labelled', 'trust', 'iterations': [rows], 'flags':
        [texts]}``; a row has the keys of ``_COLUMNS`` (ratios as fractions, trust levels in eV/Å). Flags: no
        frame labelled; a stop before convergence or ``max_iterations`` (the status); the accurate ratio of the
        last iteration not above that of the first (at least two iterations of one stage); frames picked from
        the failed band (no frame lay between the trust levels).
    """
    records = [dict(r) for r in iterations.get('iterations') or []]
    rows = [{key: record.get(key) for key in _COLUMNS} for record in records]
    status = iterations.get('status')
    n_labelled = sum(int(r.get('n_labelled') or 0) for r in rows)
    flags: list[str] = []
    if n_labelled == 0:
        flags.append(
            f'active learning added no frame in {len(rows)} iteration(s): the models were trained on the data set alone'
        )
    if status not in COMPLETED_STATUSES:
        flags.append(
            f'active learning stopped early ({status}'
            + (f', exit {exit_status}' if exit_status else '')
            + '): the models were trained on its last training set'
        )
    ratios = [(r['stage'], r['ratio_accurate']) for r in rows if r.get('ratio_accurate') is not None]
    if len(ratios) >= 2 and ratios[0][0] == ratios[-1][0] and ratios[-1][1] <= ratios[0][1]:
        flags.append(
            f'active learning: the accurate ratio did not rise ({ratios[0][1]:.2f} in iteration '
            f'{rows[0]["iteration"]}, {ratios[-1][1]:.2f} in iteration {rows[-1]["iteration"]})'
        )
    from_failed = [r['iteration'] for r in rows if r.get('selected_from') == 'failed']
    if from_failed:
        flags.append(
            f'active learning: iteration(s) {", ".join(map(str, from_failed))} picked from the failed band (no '
            'explored frame lay between the trust levels)'
        )
    from_truncated = [r['iteration'] for r in rows if r.get('selected_from') == 'truncated']
    if from_truncated:
        flags.append(
            f'active learning: iteration(s) {", ".join(map(str, from_truncated))} picked the last frames before an '
            'exploration MD stopped early (every saved frame was accurate)'
        )
    if rows and rows[-1].get('truncated_runs'):
        flags.append(
            f'active learning: the exploration MD of the last iteration ({rows[-1]["iteration"]}) stopped early '
            f'({", ".join(rows[-1]["truncated_runs"])}): the models still break in MD'
        )
    return {
        'status': status,
        'exit_status': exit_status,
        'converged': bool(iterations.get('converged')),
        'n_labelled': n_labelled,
        'trust': iterations.get('trust'),
        'iterations': rows,
        'flags': flags,
    }


def format_active_learning(summary: t.Mapping[str, t.Any]) -> list[str]:
    """Text lines of :func:`active_learning_summary`: a heading with the trust levels, then one line per iteration
    (accurate / candidate / failed ratios, frames picked and from which band, labelled, training-set size)."""
    trust = summary.get('trust') or {}
    levels = ''
    if trust.get('f_lo') is not None:
        levels = f'; trust levels {trust["f_lo"]:.3g} / {trust["f_hi"]:.3g} eV/Å'
        if trust.get('mode') == 'relative':
            levels += (
                f' ({trust.get("f_lo_relative"):g} / {trust.get("f_hi_relative"):g} x the validation force RMSE '
                f'{trust.get("force_rmse_valid", 0.0):.3g} eV/Å)'
            )
    lines = [f'active learning: {summary.get("status")}, {summary.get("n_labelled", 0)} frames added{levels}']
    lines.append('  iter stage frames accurate candidate failed picked       labelled set')
    for row in summary.get('iterations') or []:
        ratios = ' '.join(
            f'{row.get(f"ratio_{name}"):.3f}'.rjust(width) if row.get(f'ratio_{name}') is not None else '-'.rjust(width)
            for name, width in (('accurate', 8), ('candidate', 9), ('failed', 6))
        )
        picked = f'{row.get("n_selected") or 0}' + (f' ({row["selected_from"]})' if row.get('selected_from') else '')
        lines.append(
            f'  {row.get("iteration"):4} {row.get("stage"):5} {row.get("n_frames") or 0:6} {ratios} {picked:12} '
            f'{row.get("n_labelled") or 0:8} {row.get("n_train_before")}->{row.get("n_train_after")}'
        )
    return lines
