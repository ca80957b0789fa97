"""Sphinx configuration for the aiida-ilmlff documentation (MyST Markdown, built with ``-W``)."""

from aiida_ilmlff import __version__

project = 'aiida-ilmlff'
author = 'The aiida-ilmlff developers'
copyright = '2026, The aiida-ilmlff developers'
version = release = __version__

extensions = ['myst_parser', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.mathjax']
myst_enable_extensions = ['colon_fence', 'dollarmath', 'deflist']
myst_heading_anchors = 3
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
exclude_patterns = ['_build']
html_theme = 'furo'
html_title = f'aiida-ilmlff {version}'
autodoc_mock_imports = ['torch', 'mace', 'deepmd', 'tensorflow']
nitpicky = False
