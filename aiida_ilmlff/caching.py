"""Which CalcJobs AiiDA's caching reuses in an aiida-ilmlff profile, and the profile settings that say so.

Labels are reused across pipelines: a second pipeline (or a second active-learning run, or a rerun after a fix) that
labels the same frame at the same level of theory gets the first calculation's outputs as a cache clone instead
of a new DFT job. Cached (:data:`CACHED_CALCJOBS`):

* ``aiida.calculations:cp2k`` (``Cp2kCalculation``): the labelling single points and batches, and the AIMD of
  ``ilmlff.dataset``. Deterministic: the same input file, structure and basis/potential files give the same
  energies and forces; a CP2K MD's thermostat draws from CP2K's generator with a fixed seed (``GLOBAL/SEED``,
  default 2000), so the same AIMD inputs give the same trajectory. A failed calculation is never a cache source
  (AiiDA reuses only finished-ok ones, and ``invalidates_cache`` exit codes remove a node from the cache).
* ``aiida.calculations:quantumespresso.pw`` (``PwCalculation``): the pw.x labelling single points (deterministic).

Not cached (:data:`NOT_CACHED_CALCJOBS`): the training CalcJobs ``ilmlff.mace.train`` and ``ilmlff.deepmd.train``.
Training is stochastic (initial weights, batch shuffling, and non-deterministic reductions on GPUs even with a
fixed seed), and a committee's members differ only by their seed: with caching, a rerun meant to give an
independent model would silently reuse the old one. They are put in ``caching.disabled_for`` so that a user who
turns caching on for everything (``caching.default_enabled``) still trains. The MLFF CalcJobs (``ilmlff.md``,
``ilmlff.evaluate``) follow the profile's default: they depend on a model that is new in every pipeline, so
caching them would find nothing to reuse anyway.

:func:`configure_caching` writes these settings into a profile's configuration. ``aiida-ilmlff setup`` calls it for
a profile it creates (the production recipe, PostgreSQL or SQLite) and, for a profile that exists, only says what
is missing and how to add it; the demo (``make demo``) calls it for its own profile. The equivalent by hand::

    verdi config set --append caching.enabled_for aiida.calculations:cp2k aiida.calculations:quantumespresso.pw
    verdi config set --append caching.disabled_for \
        aiida.calculations:ilmlff.mace.train aiida.calculations:ilmlff.deepmd.train

A running daemon reads the configuration when it starts: ``verdi daemon restart`` after changing it.
"""

from __future__ import annotations

__all__ = ('CACHED_CALCJOBS', 'NOT_CACHED_CALCJOBS', 'configure_caching')

#: CalcJobs whose results a profile made by ``aiida-ilmlff setup`` reuses (AiiDA process identifiers).
CACHED_CALCJOBS = ('aiida.calculations:cp2k', 'aiida.calculations:quantumespresso.pw')
#: CalcJobs never reused (stochastic training).
NOT_CACHED_CALCJOBS = ('aiida.calculations:ilmlff.mace.train', 'aiida.calculations:ilmlff.deepmd.train')


def configure_caching(config, profile_name: str, *, dry_run: bool = False) -> list[str]:
    """Add :data:`CACHED_CALCJOBS` to ``caching.enabled_for`` and :data:`NOT_CACHED_CALCJOBS` to
    ``caching.disabled_for`` of profile ``profile_name`` and store the configuration when it changed.

    Entries already there are kept (the settings are appended to, never replaced), and an identifier the user put
    in ``caching.disabled_for`` is not enabled: a second call changes nothing.

    :param config: the AiiDA configuration (``aiida.manage.get_config()``).
    :param profile_name: a profile of ``config``.
    :param dry_run: only say what would be added; change nothing.
    :return: the identifiers added, as ``'enabled_for <id>'`` / ``'disabled_for <id>'`` (empty: nothing changed).
    :raises aiida.common.exceptions.ProfileConfigurationError: an unknown profile.
    """
    config.get_profile(profile_name)  # raises for an unknown profile
    enabled = list(config.get_option('caching.enabled_for', scope=profile_name) or [])
    disabled = list(config.get_option('caching.disabled_for', scope=profile_name) or [])
    added = []
    for identifier in CACHED_CALCJOBS:
        if identifier not in enabled and identifier not in disabled:
            enabled.append(identifier)
            added.append(f'enabled_for {identifier}')
    for identifier in NOT_CACHED_CALCJOBS:
        if identifier not in disabled and identifier not in enabled:
            disabled.append(identifier)
            added.append(f'disabled_for {identifier}')
    if added and not dry_run:
        config.set_option('caching.enabled_for', enabled, scope=profile_name)
        config.set_option('caching.disabled_for', disabled, scope=profile_name)
        config.store()
    return added
