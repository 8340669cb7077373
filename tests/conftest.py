from itertools import permutations
from math import factorial

import numpy as np
import pytest
import tensorly as tl


@pytest.fixture(autouse=True)
def numpy_backend():
    """Every test starts on the numpy backend, whatever an earlier test switched to."""
    tl.set_backend("numpy")
    yield
    tl.set_backend("numpy")


def symmetrize(tensor):
    """Average of a dense array over all permutations of its modes."""
    order = tensor.ndim
    return sum(np.transpose(tensor, p) for p in permutations(range(order))) / factorial(order)


def random_symmetric_dense(dim, order, seed):
    return symmetrize(np.random.RandomState(seed).standard_normal((dim,) * order))
