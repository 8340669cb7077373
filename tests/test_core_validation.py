"""Bad input named in the core issue: a clear error that names the argument."""

import numpy as np
import pytest
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate import gradient_flow_cp, power_deflation_cp, random_symmetric_cp

GOOD = tl.cp_to_tensor(random_symmetric_cp(5, 2, 3, random_state=0))


def nonsymmetric():
    tensor = GOOD.copy()
    tensor[0, 1, 2] += 1.0
    return tensor


def cp_with_different_factors():
    u = np.linalg.qr(np.random.RandomState(0).standard_normal((5, 2)))[0]
    return CPTensor((np.ones(2), [u, u, u[::-1]]))


def with_value(value):
    tensor = GOOD.copy()
    tensor[0, 0, 0] = value
    return tensor


@pytest.mark.parametrize(
    "tensor, kwargs, error, match",
    [
        (nonsymmetric(), {}, ValueError, "tensor is not symmetric"),
        (np.ones((3, 4, 3)), {}, ValueError, "tensor must be cubical"),
        (cp_with_different_factors(), {}, ValueError, "factor 2 differs"),
        (with_value(np.nan), {}, ValueError, "tensor contains NaN or inf"),
        (with_value(np.inf), {}, ValueError, "tensor contains NaN or inf"),
        (np.ones(4), {}, ValueError, "order >= 2"),
        (GOOD, {"width": 0}, ValueError, "width must be an integer >= 1"),
        (GOOD, {"rank": 0}, ValueError, "rank must be an integer >= 1"),
        (GOOD, {"regularization": -1e-3}, ValueError, "regularization must be >= 0"),
        (GOOD, {"step_size": 0.0}, ValueError, "step_size must be > 0"),
        (GOOD, {"init_scale": -1.0}, ValueError, "init_scale must be > 0"),
        (GOOD, {"reinit_threshold": 0.0}, ValueError, "reinit_threshold must be > 0"),
        (GOOD, {"epoch_time": 0.0}, ValueError, "epoch_time must be > 0"),
        (GOOD, {"max_time": -5.0}, ValueError, "max_time must be > 0"),
        (GOOD, {"tol": 0.0}, ValueError, "tol must be > 0"),
        (GOOD, {"variant": "fast"}, ValueError, "variant must be one of"),
    ],
)
def test_gradient_flow_rejects_bad_input(tensor, kwargs, error, match):
    with pytest.raises(error, match=match):
        gradient_flow_cp(tensor, **kwargs)


@pytest.mark.parametrize(
    "tensor, kwargs, match",
    [
        (nonsymmetric(), {"rank": 2}, "tensor is not symmetric"),
        (GOOD, {"rank": 0}, "rank must be an integer >= 1"),
        (GOOD, {"rank": 2, "n_restarts": 0}, "n_restarts must be an integer >= 1"),
        (GOOD, {"rank": 2, "tol": -1.0}, "tol must be > 0"),
    ],
)
def test_power_deflation_rejects_bad_input(tensor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        power_deflation_cp(tensor, **kwargs)
