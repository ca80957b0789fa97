"""Labels reused across pipelines (issue 19, item 4): with the caching settings of ``aiida-ilmlff setup``
(:func:`aiida_ilmlff.caching.configure_caching`, applied to the test profile and undone afterwards), a second
``ilmlff.dataset`` with the same seeds runs no CP2K job: its AIMD and every single point are cache clones.

``ilmlff.dataset`` is the DFT part of a pipeline (CP2K GFN1-xTB AIMD for the EQ frames, perturbed nEQ frames, CP2K
single points); what follows it in a pipeline (training, MD) runs no DFT. The smallest size that still has both
an AIMD and single points keeps the test to about a minute on 2 cores; the batched-labelling cache hit is
``tests/workflows/test_label_cp2k_batched.py::test_batch_is_cached``.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_ilmlff.caching import CACHED_CALCJOBS, NOT_CACHED_CALCJOBS, configure_caching
from aiida_ilmlff.workflows.dataset import DatasetWorkChain
from tests.fixtures.boxes import PYR14BF4

SETTINGS = ('caching.enabled_for', 'caching.disabled_for', 'caching.default_enabled')


@contextlib.contextmanager
def caching_settings_restored(name: str):
    """The test profile's caching settings as they were before the block, restored after it (also on failure)."""
    from aiida.manage import get_config

    config = get_config()
    profile = config.get_profile(name)
    before = {key: profile.get_option(key) for key in SETTINGS if key in profile.options}
    try:
        yield config
    finally:
        for key in SETTINGS:
            if key in before:
                config.set_option(key, before[key], scope=name)
            elif key in profile.options:
                config.unset_option(key, scope=name)
        config.store()


@pytest.fixture
def label_caching(aiida_profile):
    """The profile's caching as ``aiida-ilmlff setup`` writes it for a new profile; the settings before, restored."""
    name = aiida_profile.name
    with caching_settings_restored(name) as config:
        added = configure_caching(config, name)
        assert configure_caching(config, name) == []  # a second call changes nothing
        yield added


def test_configure_caching_keeps_user_choices(aiida_profile):
    """Appends, never replaces; an identifier the user disabled stays disabled; training is never enabled."""
    name = aiida_profile.name
    with caching_settings_restored(name) as config:
        config.set_option('caching.enabled_for', ['aiida.calculations:core.arithmetic.add'], scope=name)
        config.set_option('caching.disabled_for', ['aiida.calculations:quantumespresso.pw'], scope=name)
        assert configure_caching(config, name, dry_run=True) == [
            'enabled_for aiida.calculations:cp2k',
            *(f'disabled_for {identifier}' for identifier in NOT_CACHED_CALCJOBS),
        ]
        assert config.get_option('caching.enabled_for', scope=name) == ['aiida.calculations:core.arithmetic.add']
        configure_caching(config, name)
        assert config.get_option('caching.enabled_for', scope=name) == [
            'aiida.calculations:core.arithmetic.add',
            'aiida.calculations:cp2k',
        ]
        assert config.get_option('caching.disabled_for', scope=name) == [
            'aiida.calculations:quantumespresso.pw',
            *NOT_CACHED_CALCJOBS,
        ]


def _cp2k_jobs(node: orm.ProcessNode) -> tuple[list[orm.CalcJobNode], list[orm.CalcJobNode]]:
    """The Cp2kCalculations below ``node``: (ran as jobs, cache clones)."""
    calcs = [n for n in node.called_descendants if isinstance(n, orm.CalcJobNode) and n.process_type.endswith('cp2k')]
    ran = [calc for calc in calcs if not calc.base.caching.is_created_from_cache]
    return ran, [calc for calc in calcs if calc.base.caching.is_created_from_cache]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_second_dataset_runs_no_cp2k_job(cp2k_code, label_caching):
    """Two ``ilmlff.dataset`` runs, same seeds: the second one's CP2K calculations are all cache clones."""
    from aiida.manage.caching import get_use_cache

    assert all(get_use_cache(identifier=identifier) for identifier in CACHED_CALCJOBS)
    assert not any(get_use_cache(identifier=identifier) for identifier in NOT_CACHED_CALCJOBS)
    overrides = {
        'n_eq': 2,
        'n_neq': 2,
        'aimd': {'md': {'steps': 20}},
        'neq': {'generators': {'rattle': {'weight': 1.0}}},
    }
    runs = []
    for _ in range(2):
        builder = DatasetWorkChain.get_builder_from_protocol(cp2k_code, PYR14BF4, protocol='fast', overrides=overrides)
        start = time.monotonic()
        results, node = run_get_node(builder)
        runs.append((results, node, time.monotonic() - start))
        assert node.is_finished_ok, (node.exit_status, node.exit_message)

    (first, node1, seconds1), (second, node2, seconds2) = runs
    ran1, cloned1 = _cp2k_jobs(node1)
    ran2, cloned2 = _cp2k_jobs(node2)
    print(
        f'first dataset: {len(ran1)} CP2K jobs in {seconds1:.1f} s; second: {len(ran2)} CP2K jobs, '
        f'{len(cloned2)} cache clones in {seconds2:.1f} s'
    )
    assert not cloned1 and len(ran1) >= 2  # the AIMD and the nEQ single points (one batch at `fast`) ran
    assert ran2 == [], [(calc.pk, calc.process_label) for calc in ran2]
    assert len(cloned2) == len(ran1)
    assert {calc.base.caching.get_cache_source() for calc in cloned2} == {calc.uuid for calc in ran1}
    np.testing.assert_array_equal(first['frames'].energies, second['frames'].energies)
    np.testing.assert_array_equal(first['frames'].forces, second['frames'].forces)
