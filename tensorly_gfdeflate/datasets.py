"""Real text on every machine: the docstrings of installed Python code, as a corpus.

The topic models need real documents that every user has, as scikit-learn's
tables are for the mixtures: the standard library's docstrings (several
thousand documents, read from the source files with :mod:`ast`, nothing
imported) are the corpus of ``benchmarks/real_latent.py`` and of the tests.
"""

import ast
import importlib.util
import sysconfig
from pathlib import Path

__all__ = ["load_docstrings"]

# Parts of the standard library that are tests, tools or vendored copies, not its API.
_SKIPPED_STDLIB = frozenset({"site-packages", "test", "tests", "idlelib", "lib2to3",
                             "ensurepip", "turtledemo"})


def load_docstrings(package=None, *, min_words=20):
    """The docstrings of a package's source files (modules, classes, functions).

    Parameters
    ----------
    package : str or None, default=None
        An installed package (for example ``"sklearn"``); None: the Python
        standard library (without its tests and tools).
    min_words : int >= 1, default=20
        Docstrings of fewer whitespace-separated words are left out.

    Returns
    -------
    list of str
        In the order of the sorted file paths, then of the nodes in each file:
        the same list on every call with the same Python and package.

    Examples
    --------
    >>> from tensorly_gfdeflate.datasets import load_docstrings
    >>> len(load_docstrings("json")) > 5
    True
    """
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
        raise ValueError(f"min_words must be an int >= 1, got {min_words!r}.")
    documents = []
    for path in _source_files(package):
        documents.extend(doc for doc in _docstrings(path) if len(doc.split()) >= min_words)
    return documents


def _source_files(package):
    if package is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        return [path for path in sorted(root.rglob("*.py"))
                if not _SKIPPED_STDLIB & set(path.relative_to(root).parts[:-1])]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"package={package!r} is not installed; pass an installed package "
                         "or None for the standard library.")
    if spec.submodule_search_locations:
        return [path for path in sorted(Path(spec.origin).parent.rglob("*.py"))
                if "tests" not in path.parts]
    return [Path(spec.origin)]


def _docstrings(path):
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree] + [node for node in ast.walk(tree)
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return [doc for doc in map(ast.get_docstring, nodes) if doc]
