"""How good a decomposition is: reconstruction error and recovery of a known truth."""

import numpy as np
import tensorly as tl

from .operators import DenseOperator, as_operator, normalize

__all__ = ["relative_error", "match_components", "components_recovered"]


def relative_error(tensor, cp_tensor):
    """``|T_hat - T| / |T|`` through operator inner products (never densified).

    ``tensor`` is any accepted target form; ``cp_tensor`` a symmetric CP tensor.
    """
    operator = as_operator(tensor)
    weights, factors = cp_tensor
    if tl.shape(weights)[0] == 0:
        return 1.0
    if isinstance(operator, DenseOperator):
        # Inner products lose half the digits to cancellation; a dense target
        # is in memory anyway, so measure it directly.
        gap = operator.tensor - tl.cp_to_tensor((weights, [factors[0]] * operator.order))
        # Dividing before squaring keeps 1e+-150 * T in range.
        return float(tl.norm(gap / operator.norm))
    target, scale = normalize(operator)
    residual = target.minus(weights / scale, factors[0])
    return float(np.sqrt(residual.norm_sq / target.norm_sq))


def _unit_columns(factor):
    factor = np.asarray(tl.to_numpy(factor), dtype=float)
    return factor / np.linalg.norm(factor, axis=0, keepdims=True)


def match_components(truth, estimate):
    """For each true component, the index of the estimated one best aligned with it.

    Returns ``(index, cosine)``: ``index[i] = -1`` when nothing is left to match.
    Greedy on ``|cosine|``, largest first, each estimate used once.
    """
    true_factor = _unit_columns(truth[1][0])
    est_factor = _unit_columns(estimate[1][0]) if tl.shape(estimate[0])[0] else np.zeros(
        (true_factor.shape[0], 0))
    cosine = np.abs(true_factor.T @ est_factor)
    index = np.full(true_factor.shape[1], -1)
    best = np.zeros(true_factor.shape[1])
    free = cosine.copy()
    for _ in range(min(free.shape)):
        i, j = np.unravel_index(np.argmax(free), free.shape)
        index[i], best[i] = j, cosine[i, j]
        free[i, :], free[:, j] = -1, -1
    return index, best


def components_recovered(truth, estimate, *, cosine=0.99, weight_rtol=0.05):
    """Number of true components matched with ``|<u, v>| >= cosine`` and weight within ``weight_rtol``.

    Weights are compared as the signed weight of the component ``w v^(x)l``,
    with the sign of ``v`` folded in for odd orders.
    """
    order = len(truth[1])
    index, best = match_components(truth, estimate)
    true_w = np.asarray(tl.to_numpy(truth[0]), dtype=float) * np.linalg.norm(
        tl.to_numpy(truth[1][0]), axis=0) ** order
    est_w = np.asarray(tl.to_numpy(estimate[0]), dtype=float) * np.linalg.norm(
        tl.to_numpy(estimate[1][0]), axis=0) ** order
    count = 0
    for i, j in enumerate(index):
        if j < 0 or best[i] < cosine:
            continue
        sign = 1.0
        if order % 2:
            u, v = _unit_columns(truth[1][0])[:, i], _unit_columns(estimate[1][0])[:, j]
            sign = np.sign(u @ v)
        if abs(sign * est_w[j] - true_w[i]) <= weight_rtol * abs(true_w[i]):
            count += 1
    return count
