"""The README's code runs and does what its comments say; what it shows is what runs print."""

import re
from pathlib import Path

import numpy as np

from tensorly_gfdeflate import relative_error
from tensorly_gfdeflate.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_examples_run_and_hold(capsys):
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S):
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.split("\n")
    assert printed[0].startswith("5 ")  # automatic rank found the 5 components
    assert float(printed[0].split()[1]) < 1e-4
    # "larger weights are discovered first": components come sorted by weight.
    assert np.all(np.diff(namespace["trace"].discovery_time) > 0)
    assert float(printed[2]) > 1e-2  # explicit deflation accumulates errors
    # Completion: the automatic rank finds the 3 components, held-out error below 1e-4.
    assert printed[3].startswith("3 ") and float(printed[3].split()[1]) < 1e-4
    assert -1e-4 < float(printed[4]) <= 0
    T = namespace["T"]
    assert relative_error(T, namespace["estimator"].decomposition_) <= 1e-4
    correlations = np.abs(np.corrcoef(namespace["recovered"].T, namespace["S"].T)[:3, 3:])
    assert np.all(correlations.max(axis=0) >= 0.99)
    kurtoses = np.sort(namespace["model"][-1].weights_)
    np.testing.assert_allclose(kurtoses, [-2.0, -1.2, 3.0], atol=0.6)


def _find(lines, chunk, start):
    """First index >= start where ``chunk`` appears as consecutive lines, or None."""
    for i in range(start, len(lines) - len(chunk) + 1):
        if lines[i:i + len(chunk)] == chunk:
            return i
    return None


def test_readme_shows_what_the_demo_prints(capsys):
    assert main(["demo"]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = re.search(r"```text\n(.*?)```", README.read_text(), re.S).group(1).splitlines()
    # A "..." line stands for printed lines the README leaves out.
    chunks = [[]]
    for line in shown:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(line)
    assert printed[:len(chunks[0])] == chunks[0]
    position = len(chunks[0])
    for chunk in chunks[1:]:
        found = _find(printed, chunk, position)
        assert found is not None, f"the README shows lines the demo does not print: {chunk}"
        position = found + len(chunk)
    if chunks[-1]:
        assert printed[-len(chunks[-1]):] == chunks[-1]


def test_readme_layout_lists_every_module():
    table = README.read_text().split("## Layout", 1)[1]
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \| \S", table, re.M))
    package = ROOT / "tensorly_gfdeflate"
    modules = {path.relative_to(package).as_posix() for path in package.rglob("*.py")
               if path.name not in ("__init__.py", "__main__.py")
               and "latent" not in path.parts}
    assert listed == modules


def test_no_merge_conflict_markers_in_tracked_text():
    # A conflict left in the README passed every other check for a whole session.
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout (an sdist): nothing to check
        return
    marker = re.compile(r"^(<{7}|>{7}) ", re.M)
    offending = [name for name in tracked.stdout.split()
                 if name.endswith((".py", ".rst", ".md", ".txt", ".toml", ".cfg", ".yml"))
                 and marker.search((ROOT / name).read_text(errors="replace"))]
    assert offending == []
