"""Sphinx configuration for the airflow-provider-hindsight documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``make docs``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports the provider, which imports Airflow: keep Airflow's files out of the user's home.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="hindsight-docs-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import airflow_provider_hindsight  # noqa: E402

project = "airflow-provider-hindsight"
author = "airflow-provider-hindsight maintainers"
copyright = "airflow-provider-hindsight maintainers"
version = release = airflow_provider_hindsight.__version__

# The docstrings use reST fields (``:param x:``), which autodoc reads without napoleon.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
# Our methods without a docstring (operators' execute) must not show Airflow's BaseOperator text.
autodoc_inherit_docstrings = False

nitpicky = False

html_theme = "furo"
html_title = f"airflow-provider-hindsight {release}"
