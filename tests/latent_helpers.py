"""Checks shared by the tests of the latent variable estimators."""

import warnings

import numpy as np
import pytest
import tensorly as tl
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning


def assert_clone_is_deterministic_without_global_rng(model, X, attribute):
    """A clone has the same parameters and, fitted on ``X``, the same ``attribute``;
    numpy's global random state is left untouched."""
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    state = np.random.get_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = getattr(model.fit(X), attribute)
        second = getattr(twin.fit(X), attribute)
    np.testing.assert_array_equal(first, second)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def fit_under_pytorch(model, X):
    """``model`` fitted on ``X`` with tensorly's pytorch backend (skips without torch)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tl.set_backend("pytorch")
    try:
        return model.fit(X)
    finally:
        tl.set_backend("numpy")
        torch.set_num_threads(threads)
