#!/usr/bin/env python
"""The paper's ablation for PYR14BF4 at 450 K at GFN1-xTB (issue 17): which data and which model make a right MLFF.

Park, Ryu & Lee (arXiv 2503.18249) claim that equilibrated (EQ) plus non-equilibrated (nEQ) frames are needed for
reliable models, and that MACE beats DeePMD on the same data. This study trains, on one data set and one shared
leak-free test set:

- (a) EQ only: ``ilmlff.pipeline`` on the data set of (b) with ``training_origins: [EQ]``;
- (b) EQ + nEQ: ``ilmlff.pipeline`` from the composition (data set, split, committees, properties, validation);
- (c) EQ + nEQ + active learning: ``ilmlff.pipeline`` on the data set of (b) with ``active_learning``;
- (d) a "foundation" MACE of another ionic liquid (EMIM BF4, its own ``ilmlff.dataset`` at the same level of
  theory and ``ilmlff.mace.train.base``), as it is and fine-tuned on (b)'s training set (rows of pipeline (b));

each for MACE and DeePMD (a-c). Every row is validated against (b)'s AIMD (``ilmlff.validate``: an NVT at 450 K of
``stability_ps``, RDFs against the AIMD, a posteriori force errors on frames of the model's own MD labelled at
GFN1-xTB) and run in NVT at 550 K for ``stability_ps`` (``ilmlff.md``): the time to the first guard trip at both
temperatures. The two claims are answered from the numbers.

Every process is in the AiiDA group ``study-pyr14bf4/<label>`` (extras ``study_stage``, ``study_row``,
``study_temperature_K``); ``--report LABEL`` prints the table again from the graph only, and
``aiida-ilmlff report PK`` prints each pipeline's own comparison.

Sizes: ``--quick`` is the smallest run that exercises every stage (17 min on 2 cores; a test runs it, see
``make test-study``); the default took 88 min on 2 cores (docs/validation.md) and needs a PostgreSQL profile
(SQLite locks under its concurrency; the script refuses it). Run ``make setup`` first; the script starts the
profile's daemon if needed, and leaves it running its processes if the script itself stops.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import typing as t

from _pipeline_demo import CODES, ONE_THREAD, start_daemon, stop_daemon, use_label_cache, wait

COMPOSITION = {'PYR14': 2, 'BF4': 2}
FOUNDATION_COMPOSITION = {'EMIM': 2, 'BF4': 2}
FOUNDATION_KEY = 'emim_bf4'
TEMPERATURE_K = 450.0
HOT_K = 550.0
GROUP_PREFIX = 'study-pyr14bf4'

#: Relaxed MD guards of the quick study only: its models see a handful of frames (as the smallest pipeline test).
QUICK_GUARDS = {
    'min_distance_A': None,
    'max_force_eV_A': None,
    'max_temperature_factor': 10.0,
    'max_bond_stretch': None,
    'max_volume_change': None,
}

#: size -> the knobs the stages take. ``full``: the fast protocols at 2 cores, committees of 2, 5 ps of NVT at 450
#: and 550 K per row (the issue asks 20 ps: 16 runs of 20,000 steps are hours of MD alone on 2 cores).
SIZES: dict[str, dict[str, t.Any]] = {
    'full': {
        'committee_size': 2,
        'dataset': {},
        'foundation_dataset': {},
        'pipeline': {},
        'stability_ps': 5.0,
        'a_posteriori_frames': 4,
        'md_overrides': {},
    },
    'quick': {
        'committee_size': 2,
        # 8 EQ frames from a 40 fs AIMD: (a) keeps 4-6 of them for training after the shared test blocks
        'dataset': {
            'n_eq': 8,
            'n_neq': 4,
            'aimd': {'md': {'steps': 80}},
            'neq': {'generators': {'rattle': {'weight': 1.0, 'sigma_min': 0.02, 'sigma_max': 0.05}}},
        },
        'foundation_dataset': {
            'n_eq': 4,
            'n_neq': 4,
            'aimd': {'md': {'steps': 40}},
            'neq': {'generators': {'rattle': {'weight': 1.0, 'sigma_min': 0.02, 'sigma_max': 0.05}}},
        },
        'pipeline': {
            'test_fraction': 0.25,
            'test_block_fs': 5.0,
            'test_gap_fs': 2.0,
        },
        'stability_ps': 0.1,
        'a_posteriori_frames': 1,
        'md_overrides': {'guards': QUICK_GUARDS},
    },
}


def _meta(size: dict) -> dict:
    """The pipeline's ``meta_parameters`` overrides of a study size."""
    steps = round(size['stability_ps'] * 1000.0)  # 1 fs: the fast MD protocol's time step
    meta: dict[str, t.Any] = {
        'committee_size': size['committee_size'],
        'dataset_overrides': dict(size['dataset']),
        'validation_overrides': {
            'a_posteriori_frames': size['a_posteriori_frames'],
            'md': {'md': {'parameters': {**size['md_overrides'], 'steps': steps}}},
        },
    }
    if size['md_overrides']:  # the quick study: 0.1 ps of validation MD, all of it analysed, a frame every 5 fs
        meta['validation_overrides']['analysis'] = {'discard_ps': 0.0}
        meta['validation_overrides']['md']['md']['parameters'].update(
            {'traj_every': 5, 'thermo_every': 5, 'checkpoint_every': steps}
        )
        meta['properties_overrides'] = {
            'max_npt_stages': 1,
            'analysis': {'discard_ps': 0.02},
            'npt': {'md': {'parameters': {**size['md_overrides'], 'steps': 100, 'tau_p_fs': 500.0}}},
            'nvt': {'md': {'parameters': {**size['md_overrides'], 'steps': 200}}},
        }
        meta['mace_overrides'] = {'valid_fraction': 0.34, 'member': {'mace': {'parameters': {'batch_size': 2}}}}
        meta['deepmd_overrides'] = {
            'valid_fraction': 0.34,
            'member': {'deepmd': {'parameters': {'numb_steps': 500, 'decay_steps': 50, 'save_freq': 250}}},
        }
        meta['finetune_overrides'] = {
            'mace': {'valid_fraction': 0.34, 'parameters': {'batch_size': 2, 'max_num_epochs': 10}}
        }
        meta['active_learning_overrides'] = {
            'max_iterations': 2,
            'selection': {'task_max': 4},
            'train': {'valid_fraction': 0.34, 'member': {'mace': {'parameters': {'batch_size': 2}}}},
            # the exploration keeps the protocol's guards: with them off, the tiny models' MD brings atoms within
            # 0.7 Å and the selection filters every candidate out (measured)
            'exploration': {'stages': [{'ensemble': 'nvt', 'temperature_offsets_K': [0.0], 'steps': 100}]},
        }
    return meta


def _group(label: str):
    from aiida import orm

    group, _ = orm.Group.collection.get_or_create(f'{GROUP_PREFIX}/{label}')
    return group


def _tag(node, group, stage: str, **extras: t.Any) -> None:
    node.base.extras.set_many({'study_stage': stage, **{f'study_{k}': v for k, v in extras.items()}})
    group.add_nodes(node)


def _submit_and_wait(builder, group, stage: str, **extras: t.Any):
    from aiida.engine import submit

    node = submit(builder)
    _tag(node, group, stage, **extras)
    print(f'[{stage}] submitted {node.process_label}<{node.pk}>', flush=True)
    return node


def _reference_aimd(pipeline):
    """The AIMD trajectory (FramesData) of the data set that ``pipeline`` made (None if its AIMD failed)."""
    from aiida.common.links import LinkType

    from aiida_ilmlff.workflows.dataset import first_aimd_trajectory

    dataset = pipeline.base.links.get_outgoing(link_type=LinkType.CALL_WORK, link_label_filter='dataset').one().node
    return first_aimd_trajectory(dataset)


def _foundation(size: dict, group, codes: dict):
    """(d)'s foundation model: ilmlff.dataset of EMIM BF4, then one MACE (ilmlff.mace.train.base)."""

    from aiida_ilmlff.workflows.dataset import DatasetWorkChain
    from aiida_ilmlff.workflows.train import MaceTrainBaseWorkChain

    builder = DatasetWorkChain.get_builder_from_protocol(
        {'label': codes['label']},
        FOUNDATION_COMPOSITION,
        protocol='fast',
        overrides={**size['foundation_dataset'], 'temperature': TEMPERATURE_K},
        options={'environment_variables': ONE_THREAD},
    )
    dataset = _submit_and_wait(builder, group, 'foundation_dataset')
    wait(dataset)
    if not dataset.is_finished_ok:
        raise RuntimeError(f'foundation data set failed: verdi process report {dataset.pk}')
    # the quick study's 8 frames: batches of 2 and a third of them for validation (mace needs 2 frames per split)
    overrides = {'mace': {'valid_fraction': 0.34, 'parameters': {'batch_size': 2}}} if size['md_overrides'] else None
    builder = MaceTrainBaseWorkChain.get_builder_from_protocol(
        codes['mace'],
        dataset.outputs.frames,
        protocol='fast',
        overrides=overrides,
        options={'environment_variables': ONE_THREAD},
    )
    train = _submit_and_wait(builder, group, 'foundation_model')
    wait(train)
    if not train.is_finished_ok:
        raise RuntimeError(f'foundation model training failed: verdi process report {train.pk}')
    return train.outputs.model


def _pipeline(size: dict, group, codes: dict, stage: str, **kwargs: t.Any):
    from aiida_ilmlff.workflows.pipeline import PipelineWorkChain

    overrides = {**size['pipeline'], 'meta_parameters': _meta(size)}
    if kwargs.get('frames') is not None:
        overrides['meta_parameters'].pop('dataset_overrides')
    builder = PipelineWorkChain.get_builder_from_protocol(
        dict(codes),
        COMPOSITION,
        protocol='fast',
        overrides=overrides,
        temperature_K=TEMPERATURE_K,
        options={'environment_variables': ONE_THREAD},
        **kwargs,
    )
    return _submit_and_wait(builder, group, stage)


def _stability(size: dict, group, codes: dict, pipelines: dict, reference) -> list:
    """NVT at HOT_K from the AIMD's last frame with each row's committee (ilmlff.md), one per row."""

    from aiida_ilmlff.workflows.md import MDBaseWorkChain

    steps = round(size['stability_ps'] * 1000.0)
    nodes = []
    for stage, pipeline in pipelines.items():
        if 'models' not in pipeline.outputs:
            continue
        for row, models in pipeline.outputs.models.items():
            builder = MDBaseWorkChain.get_builder_from_protocol(
                codes['runner'],
                reference,
                models=dict(models),
                protocol='fast',
                overrides={'md': {'parameters': {**size['md_overrides'], 'steps': steps}}},
                options={'environment_variables': ONE_THREAD},
                ensemble='nvt',
                temperature_K=HOT_K,
            )
            nodes.append(_submit_and_wait(builder, group, 'stability', row=f'{stage}:{row}', temperature_K=HOT_K))
    return nodes


def _run_stages(size: dict, group, codes: dict, stamps: dict) -> int:
    """Submit the stages in order ((a) and (c) side by side) and wait for each; ``stamps``: stage -> end time.
    Return 0, or 1 when (b) left nothing to go on with (the reason is printed)."""
    foundation = _foundation(size, group, codes)
    stamps['foundation'] = time.time()
    b = _pipeline(size, group, codes, 'b', foundation_models={FOUNDATION_KEY: foundation})
    wait(b)
    stamps['b'] = time.time()
    if 'dataset' not in b.outputs:
        print(f'pipeline (b) made no data set: verdi process report {b.pk}', flush=True)
        return 1
    dataset, reference = b.outputs.dataset, _reference_aimd(b)
    if reference is None:
        print(f'pipeline (b) has no AIMD to validate against: verdi process report {b.pk}', flush=True)
        return 1
    common = {'frames': dataset, 'reference': reference}
    a = _pipeline(size, group, codes, 'a', training_origins=['EQ'], **common)
    c = _pipeline(size, group, codes, 'c', active_learning=True, **common)
    wait(a)
    wait(c)
    stamps['a_c'] = time.time()
    for node in _stability(size, group, codes, {'a': a, 'b': b, 'c': c}, reference):
        wait(node)
    stamps['stability'] = time.time()
    return 0


def run(label: str, quick: bool, keep_daemon: bool, output: str | None = None) -> int:
    """Run the whole study (the stages in order, (a) and (c) side by side), then print the report."""
    from aiida import load_profile, orm

    profile = load_profile()
    size = SIZES['quick' if quick else 'full']
    if not quick and 'sqlite' in profile.storage_backend:
        # measured: the full study on a SQLite profile (core.sqlite_dos) broke at 14 min with "database is locked"
        # in the daemon and in this script, ~24 processes writing at once
        print(
            f"profile {profile.name} stores in SQLite ({profile.storage_backend}), which locks under the full study's "
            'concurrency (measured: "database is locked" after 14 min). Use a PostgreSQL profile: '
            '`aiida-ilmlff setup --profile study --db-backend postgres --broker rabbitmq` (docs/validation.md).',
            flush=True,
        )
        return 2
    group = _group(label)
    if len(group.nodes):
        print(f'group {group.label} is not empty: choose another --label, or --report {label}', flush=True)
        return 2
    use_label_cache()
    started = start_daemon()
    codes = {key: orm.load_code(value) for key, value in CODES.items()}
    stamps = {'start': time.time()}
    try:
        status = _run_stages(size, group, codes, stamps)
    except BaseException:
        # the processes are in the graph and the daemon goes on running them: stopping it here would kill the jobs
        print(
            f'the study script stopped; the daemon keeps running its processes (`verdi process list`, '
            f'`verdi daemon stop` to stop them): `--report {label}` prints the table when they end',
            flush=True,
        )
        raise
    if started and not keep_daemon:
        stop_daemon()
    if status:
        return status
    group.base.extras.set(
        'study_wall_s',
        {
            'foundation': stamps['foundation'] - stamps['start'],
            'b': stamps['b'] - stamps['foundation'],
            'a_and_c': stamps['a_c'] - stamps['b'],
            'stability_550K': stamps['stability'] - stamps['a_c'],
            'total': stamps['stability'] - stamps['start'],
        },
    )
    group.base.extras.set('study_size', 'quick' if quick else 'full')
    return report(label, output)


# ------------------------------------------------------------------------------------------------ the report


def _variant(stage: str, row: str) -> str:
    if row.startswith('foundation_'):
        return '(d) as is'
    if row.startswith('finetuned_'):
        return '(d) fine-tuned'
    return {'a': '(a) EQ', 'b': '(b) EQ+nEQ', 'c': '(c) +AL'}[stage]


def study_rows(label: str) -> dict[str, t.Any]:
    """The study's table from the graph: one row per (variant, model), the AL iterations, the wall times."""
    from aiida import orm

    group = orm.load_group(f'{GROUP_PREFIX}/{label}')
    pipelines = {n.base.extras.get('study_stage'): n for n in group.nodes if n.process_label == 'PipelineWorkChain'}
    hot = {n.base.extras.get('study_row'): n for n in group.nodes if n.base.extras.get('study_stage') == 'stability'}
    rows = []
    active_learning = None
    for stage in ('a', 'b', 'c'):
        pipeline = pipelines.get(stage)
        if pipeline is None or 'comparison' not in pipeline.outputs:
            continue
        comparison = pipeline.outputs.comparison.get_dict()
        if stage == 'c':
            active_learning = comparison.get('active_learning')
        for row, entry in comparison['rows'].items():
            validation = entry.get('validation') or {}
            md = hot.get(f'{stage}:{row}')
            rows.append(
                {
                    'variant': _variant(stage, row),
                    'model': 'MACE' if entry.get('architecture', 'mace') == 'mace' else 'DeePMD',
                    'pipeline': pipeline.pk,
                    'row': row,
                    'n_train': pipeline.outputs.training_set.n_frames,
                    'force_rmse': entry.get('force_rmse'),
                    'force_rmse_relative': entry.get('force_rmse_relative'),
                    'a_posteriori_ratio': validation.get('a_posteriori_ratio'),
                    'rdf_peak_shift_A': validation.get('max_abs_peak_shift_A'),
                    'intact_450K': validation.get('md_intact'),
                    'ps_450K': validation.get('md_ps'),
                    'notes': _empty_cell_notes(entry),
                    **_hot_run(md),
                }
            )
    return {
        'group': group.label,
        'size': group.base.extras.get('study_size', None),
        'wall_s': group.base.extras.get('study_wall_s', None),
        'pipelines': {stage: node.pk for stage, node in pipelines.items()},
        'rows': rows,
        'active_learning': active_learning,
    }


def _empty_cell_notes(entry: dict) -> list[str]:
    """Why a row's a posteriori and RDF cells are empty, in the pipeline comparison's own words (its flags of a
    validation MD that tripped a guard, or of a validation that produced no RDF or a posteriori error;
    :func:`aiida_ilmlff.analysis.comparison`). ``entry``: one row of the pipeline's comparison Dict."""
    return [
        flag
        for flag in entry.get('flags') or []
        if flag.startswith(('validation: no ', 'validation: its NVT at the AIMD state point tripped a guard'))
    ]


def _hot_run(node) -> dict[str, t.Any]:
    """Whether the 550 K NVT stayed intact and for how long [ps] (its first guard trip ends it)."""
    if node is None:
        return {'intact_550K': None, 'ps_550K': None}
    calcs = [c for c in node.called if c.process_label == 'MDCalculation']
    first = min(calcs, key=lambda c: c.pk) if calcs else None  # a restart after a guard trip is not the first run
    if first is None or 'trajectory' not in first.outputs:
        return {'intact_550K': False, 'ps_550K': 0.0}
    return {'intact_550K': first.is_finished_ok, 'ps_550K': first.outputs.trajectory.simulated_ps}


def _claims(rows: list[dict]) -> list[str]:
    """The paper's two claims, answered from the rows (or why not)."""
    by = {(r['variant'], r['model']): r for r in rows}
    lines = []
    for model in ('MACE', 'DeePMD'):
        eq, both = by.get(('(a) EQ', model)), by.get(('(b) EQ+nEQ', model))
        if not eq or not both or eq['force_rmse'] is None or both['force_rmse'] is None:
            lines.append(f'EQ + nEQ needed ({model}): not answered (a row is missing)')
            continue
        better = both['force_rmse'] < eq['force_rmse'] and (both['intact_450K'] or not eq['intact_450K'])
        lines.append(
            f'EQ + nEQ needed ({model}): {"yes" if better else "no"} (test F RMSE {eq["force_rmse"]:.0f} -> '
            f'{both["force_rmse"]:.0f} meV/Å; MD at 450 K intact {eq["intact_450K"]} -> {both["intact_450K"]})'
        )
    mace, deepmd = by.get(('(b) EQ+nEQ', 'MACE')), by.get(('(b) EQ+nEQ', 'DeePMD'))
    if mace and deepmd and mace['force_rmse'] is not None and deepmd['force_rmse'] is not None:
        better = mace['force_rmse'] < deepmd['force_rmse']
        lines.append(
            f'MACE beats DeePMD on the same data: {"yes" if better else "no"} (test F RMSE {mace["force_rmse"]:.0f} '
            f'vs {deepmd["force_rmse"]:.0f} meV/Å)'
        )
    else:
        lines.append('MACE beats DeePMD on the same data: not answered (a row is missing)')
    return lines


def format_study(study: dict[str, t.Any]) -> str:
    """The table, the AL iterations, the claims and the wall times as text (Markdown table)."""

    def cell(value, fmt='.0f', scale=1.0):
        return '-' if value is None else (format(value * scale, fmt) if isinstance(value, float) else str(value))

    lines = [
        f'study {study["group"]} ({study["size"]}); pipelines {study["pipelines"]}',
        '',
        '| variant | model | train frames | F RMSE (meV/Å) | F rel. | a posteriori / test | RDF peak shift (Å) | '
        '450 K: intact (ps) | 550 K: intact (ps) |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for r in study['rows']:
        lines.append(
            f'| {r["variant"]} | {r["model"]} | {r["n_train"]} | {cell(r["force_rmse"])} | '
            f'{cell(r["force_rmse_relative"], ".0%")} | {cell(r["a_posteriori_ratio"], ".2f")} | '
            f'{cell(r["rdf_peak_shift_A"], ".2f")} | {cell(r["intact_450K"])} ({cell(r["ps_450K"], ".2f")}) | '
            f'{cell(r["intact_550K"])} ({cell(r["ps_550K"], ".2f")}) |'
        )
    notes = [f'{r["variant"]} {r["model"]}: {note}' for r in study['rows'] for note in r.get('notes') or []]
    if notes:
        lines += ['', 'why a cell is empty:', *(f'  {note}' for note in notes)]
    al = study.get('active_learning') or {}
    if al.get('iterations'):
        ratios = ', '.join(f'{row.get("ratio_accurate") or 0:.2f}' for row in al['iterations'])
        lines += ['', f'(c) active learning: accurate ratio per iteration {ratios}; status {al.get("status")}']
    lines += ['', *_claims(study['rows'])]
    if study.get('wall_s'):
        lines += [
            '',
            'wall time per stage (min): ' + ', '.join(f'{k} {v / 60:.1f}' for k, v in study['wall_s'].items()),
        ]
    return '\n'.join(lines)


def report(label: str, output: str | None = None) -> int:
    """Print the study's table from the graph; with ``output``, also write it as JSON and its figure beside it
    (``<output>.png``: relative force RMSE and time intact at 450 and 550 K per row)."""
    from aiida import load_profile

    from aiida_ilmlff.analysis.figures import plot_study, png_buffer

    load_profile()
    study = study_rows(label)
    print(format_study(study), flush=True)
    if output:
        path = pathlib.Path(output)
        path.write_text(json.dumps(study, indent=1))
        if study['rows']:
            path.with_suffix('.png').write_bytes(png_buffer(plot_study(study['rows'])).getvalue())
            print(f'wrote {path} and {path.with_suffix(".png")}', flush=True)
    return 0 if study['rows'] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--label', default=time.strftime('%Y%m%d-%H%M'), help='the study group: study-pyr14bf4/LABEL')
    parser.add_argument(
        '--quick', action='store_true', help='the smallest study that runs every stage (17 min on 2 cores)'
    )
    parser.add_argument('--report', metavar='LABEL', help='print the table of an earlier study from the graph')
    parser.add_argument('--json', metavar='PATH', help='also write the table as JSON (and its figure as PATH.png)')
    parser.add_argument('--keep-daemon', action='store_true', help='leave the daemon running afterwards')
    args = parser.parse_args(argv)
    if args.report:
        return report(args.report, args.json)
    return run(args.label, args.quick, args.keep_daemon, args.json)


if __name__ == '__main__':
    sys.exit(main())
