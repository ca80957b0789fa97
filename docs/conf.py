"""Sphinx configuration for the aiida-ilmlff documentation (MyST Markdown, built with ``-W``).

The reference page documents processes with ``aiida.sphinxext`` (``aiida-calcjob`` / ``aiida-workchain``
directives). Those directives call ``aiida.load_profile()`` before reading a process spec, so a profile must
be loadable. :func:`_load_aiida_profile` loads the configured default profile when there is one (``make docs``
and the test suite set ``AIIDA_PATH`` to the checkout); on a machine without any AiiDA configuration (a fresh
clone, Read the Docs) it falls back to a temporary in-memory ``core.sqlite_temp`` profile. Building a spec needs
no database, so both give the same pages, and nothing is written to the user's storage either way.
"""

from aiida_ilmlff import __version__


def _load_aiida_profile() -> str:
    """Load the default AiiDA profile, or an in-memory throwaway one; return which (for the build log)."""
    from aiida.common.exceptions import AiidaException
    from aiida.manage import get_manager
    from aiida.manage.configuration import load_profile

    try:
        return f'profile {load_profile().name!r}'
    except AiidaException:
        from aiida.storage.sqlite_temp import SqliteTempBackend

        profile = SqliteTempBackend.create_profile('ilmlff-docs')
        get_manager().load_profile(profile, allow_switch=True)
        return "temporary in-memory profile 'ilmlff-docs' (no AiiDA profile configured)"


AIIDA_PROFILE = _load_aiida_profile()

project = 'aiida-ilmlff'
author = 'The aiida-ilmlff developers'
copyright = '2026, The aiida-ilmlff developers'
version = release = __version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'aiida.sphinxext',
]
myst_enable_extensions = ['colon_fence', 'dollarmath', 'deflist']
myst_heading_anchors = 3
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
exclude_patterns = ['_build']
html_theme = 'furo'
html_title = f'aiida-ilmlff {version}'
autodoc_mock_imports = ['torch', 'mace', 'deepmd', 'tensorflow']
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
nitpicky = False


def _hide_metadata_with_nondb_inputs() -> None:
    """Make ``:hide-nondb-inputs:`` of the aiida.sphinxext directives hide the ``metadata`` namespaces too.

    In aiida-core 2.x the ``metadata`` namespace (``options``, ``label``, ...) is flagged ``is_metadata``, not
    ``non_db``, so the flag alone leaves hundreds of identical lines per process (every sub-process exposes its
    own ``metadata.options``). The reference page describes ``metadata.options`` once, in prose, instead.
    """
    from aiida.sphinxext import process

    is_non_db = getattr(process, '_is_non_db', None)
    if is_non_db is None:  # a future aiida-core without this helper: show everything, which is still correct
        return
    process._is_non_db = lambda port: is_non_db(port) or bool(getattr(port, 'is_metadata', False))


def setup(app):
    """Sphinx hook: adjust the aiida.sphinxext directives (see :func:`_hide_metadata_with_nondb_inputs`)."""
    _hide_metadata_with_nondb_inputs()
    return {'parallel_read_safe': True}
