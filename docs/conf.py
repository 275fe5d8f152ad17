"""Sphinx configuration: API reference from the docstrings (autodoc + napoleon), pages in Markdown (MyST).

Build: ``make docs`` (installs docs/requirements.txt into .venv, then
``sphinx-build -W -b html docs docs/_build/html``; any warning fails the build).
"""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import gankd  # noqa: E402

project = "gankd"
author = "gankd contributors"
copyright = "gankd contributors"
version = release = gankd.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "requirements.txt"]

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "Knowledge distillation between GANs", "fixed_sidebar": True}
