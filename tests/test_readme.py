"""The README's example code runs and does what its comments say."""

import re
from pathlib import Path

import numpy as np

from tensorly_gfdeflate import relative_error

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run_and_hold(capsys):
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S):
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.split("\n")
    assert printed[0].startswith("5 ")  # automatic rank found the 5 components
    T = namespace["T"]
    assert relative_error(T, namespace["estimator"].decomposition_) <= 1e-4
    correlations = np.abs(np.corrcoef(namespace["recovered"].T, namespace["S"].T)[:3, 3:])
    assert np.all(correlations.max(axis=0) >= 0.99)
    kurtoses = np.sort(namespace["model"][-1].weights_)
    np.testing.assert_allclose(kurtoses, [-2.0, -1.2, 3.0], atol=0.6)
