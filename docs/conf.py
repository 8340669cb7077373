"""Sphinx configuration: numpydoc API reference and a sphinx-gallery gallery from ../examples."""

import os
import sys

# Document the package of this checkout, not an installed copy.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import tensorly_gfdeflate  # noqa: E402

project = "tensorly-gfdeflate"
author = "tensorly-gfdeflate developers"
copyright = "2026, tensorly-gfdeflate developers"
release = version = tensorly_gfdeflate.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "build.sh"]
html_theme = "alabaster"
html_static_path = []

autosummary_generate = True
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": "auto_examples",
    # Run every plot_*.py, whoever wrote it.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "min_reported_time": 0,
    "show_memory": False,
    "backreferences_dir": None,
    "download_all_examples": False,
}
