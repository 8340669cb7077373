"""The model's loss and gradient (docs/theory.rst, section 'The over-parametrized model') against direct computations."""

import numpy as np
import pytest

from tensorly_gfdeflate.models.symmetric import flow_point
from tensorly_gfdeflate.targets.symmetric import DenseOperator

from conftest import random_symmetric_dense


def dense_model(W, signs, order):
    """``sum_j s_j |w_j|^{2-l} w_j^(x)l`` built entry by entry."""
    total = 0.0
    for j in range(W.shape[1]):
        w = W[:, j]
        outer = w
        for _ in range(order - 1):
            outer = np.multiply.outer(outer, w)
        total = total + signs[j] * np.linalg.norm(w) ** (2 - order) * outer
    return total


def dense_loss(target, W, signs, reg):
    gap = dense_model(W, signs, target.ndim) - target
    return 0.5 * np.sum(gap**2) + 0.5 * reg * np.sum(W**2)


@pytest.mark.parametrize("order", [2, 3, 4, 5])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradient_matches_finite_differences(order, sign):
    dim, width, reg = 4, 3, 0.03
    target = random_symmetric_dense(dim, order, seed=order)
    rng = np.random.RandomState(10 + order)
    W = rng.standard_normal((dim, width))
    signs = np.array([sign, -sign, sign]) if order % 2 == 0 else np.full(width, sign)
    point = flow_point(DenseOperator(target), W, signs, reg)

    step = 1e-6
    numeric = np.zeros_like(W)
    for index in np.ndindex(W.shape):
        bump = np.zeros_like(W)
        bump[index] = step
        numeric[index] = (
            dense_loss(target, W + bump, signs, reg) - dense_loss(target, W - bump, signs, reg)
        ) / (2 * step)
    np.testing.assert_allclose(point.gradient, numeric, rtol=1e-6, atol=1e-7)
    assert point.loss == pytest.approx(dense_loss(target, W, signs, reg), rel=1e-10)
    gap = np.linalg.norm(dense_model(W, signs, order) - target) / np.linalg.norm(target)
    assert point.residual == pytest.approx(gap, rel=1e-8)
