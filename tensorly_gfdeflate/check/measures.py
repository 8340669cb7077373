"""How good a decomposition is: reconstruction error and recovery of a known truth.

Every measure takes symmetric and general CP tensors alike. A symmetric CP
tensor (the same factor matrix for every mode) is compared through its one
factor, as :func:`~tensorly_gfdeflate.gradient_flow_cp` sees it; anything else
mode by mode.
"""

import numpy as np
import tensorly as tl

from .._checks import is_cp_tensor
from ..targets.base import TensorOperator
from ..targets.general import GeneralOperator, as_general_operator, stack_blocks
from ..targets.symmetric import DenseOperator, as_operator, normalize

__all__ = ["relative_error", "match_components", "components_recovered"]


def relative_error(tensor, cp_tensor, *, mask=None):
    """``|T_hat - T| / |T|`` through operator inner products (never densified).

    Parameters
    ----------
    tensor : any target form
        A dense array, a CP tensor (symmetric or general), a
        :class:`~tensorly_gfdeflate.SampleMoments` or an
        :class:`~tensorly_gfdeflate.ObservedEntries`, or an operator.
    cp_tensor : CPTensor
        The estimate ``T_hat``, symmetric or general.
    mask : array of bool, optional
        With a dense ``tensor``: only the entries where ``mask`` is True count
        (the error on the observed entries, or on the held-out ones with
        ``~mask``). An ObservedEntries counts its own entries.

    Returns
    -------
    float
        1.0 for an estimate without components.
    """
    weights, factors = cp_tensor
    if tl.shape(weights)[0] == 0:
        return 1.0
    if mask is None and _is_symmetric_target(tensor) and _is_symmetric(factors):
        return _symmetric_relative_error(tensor, weights, factors[0])
    operator = as_general_operator(tensor, mask=mask)
    residual = operator.minus(weights, stack_blocks(list(factors)))
    return float(np.sqrt(residual.norm_sq / operator.norm_sq))


def _symmetric_relative_error(tensor, weights, factor):
    operator = as_operator(tensor)
    if isinstance(operator, DenseOperator):
        # Inner products lose half the digits to cancellation; a dense target
        # is in memory anyway, so measure it directly.
        gap = operator.tensor - tl.cp_to_tensor((weights, [factor] * operator.order))
        # Dividing before squaring keeps 1e+-150 * T in range.
        return float(tl.norm(gap / operator.norm))
    target, scale = normalize(operator)
    residual = target.minus(weights / scale, factor)
    return float(np.sqrt(residual.norm_sq / target.norm_sq))


def _is_symmetric(factors):
    """Whether every mode holds the same factor matrix (a symmetric CP tensor)."""
    first = np.asarray(tl.to_numpy(factors[0]))
    return all(f is factors[0] or np.array_equal(np.asarray(tl.to_numpy(f)), first)
               for f in factors[1:])


def _is_symmetric_target(tensor):
    """Whether ``tensor`` is a symmetric form: symmetric operator or CP tensor, or cubical array.

    A cubical array's entries are not read here: the symmetric operator checks
    them, and says so if the array is not symmetric.
    """
    if isinstance(tensor, GeneralOperator):
        return False
    if isinstance(tensor, TensorOperator):  # SampleMoments and the other symmetric operators
        return True
    if is_cp_tensor(tensor):
        return _is_symmetric(tensor[1])
    shape = tl.shape(tensor) if tl.is_tensor(tensor) else np.shape(tensor)
    return len(set(shape)) <= 1


def _unit_factors(cp_tensor):
    """``(column norms product, [unit factor per mode])`` in numpy."""
    factors = [np.asarray(tl.to_numpy(f), dtype=float) for f in cp_tensor[1]]
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    return np.prod(norms, axis=0), [f / n for f, n in zip(factors, norms)]


def _alignment(truth, estimate):
    """``(|cosine|, sign)``, both ``(r_true, r_estimate)``, between true and estimated components.

    ``|cosine|`` is the product over the modes of ``|<u_k, v_k>|`` (for two
    symmetric CP tensors, ``|<u, v>|`` of their one factor); ``sign`` the
    product over the modes of the signs of ``<u_k, v_k>``: the sign that turns
    the estimate's weight into the truth's when they point along each other.
    """
    _, true_factors = _unit_factors(truth)
    if tl.shape(estimate[0])[0] == 0:
        empty = np.zeros((true_factors[0].shape[1], 0))
        return empty, empty
    _, est_factors = _unit_factors(estimate)
    if len(true_factors) != len(est_factors):
        raise ValueError(f"estimate has {len(est_factors)} modes but the truth "
                         f"{len(true_factors)}: compare decompositions of the same tensor.")
    cosines = [u.T @ v for u, v in zip(true_factors, est_factors)]
    sign = np.prod([np.sign(c) for c in cosines], axis=0)
    if _is_symmetric(truth[1]) and _is_symmetric(estimate[1]):
        return np.abs(cosines[0]), sign
    return np.prod([np.abs(c) for c in cosines], axis=0), sign


def match_components(truth, estimate):
    """For each true component, the index of the estimated one best aligned with it.

    Alignment is ``|<u, v>|`` for two symmetric CP tensors, and the product
    over the modes of ``|<u_k, v_k>|`` otherwise.

    Returns ``(index, cosine)``: ``index[i] = -1`` when nothing is left to match.
    Greedy on the alignment, largest first, each estimate used once.
    """
    cosine, _ = _alignment(truth, estimate)
    return _greedy_match(cosine)


def _greedy_match(cosine):
    index = np.full(cosine.shape[0], -1)
    best = np.zeros(cosine.shape[0])
    free = cosine.copy()
    for _ in range(min(free.shape)):
        i, j = np.unravel_index(np.argmax(free), free.shape)
        index[i], best[i] = j, cosine[i, j]
        free[i, :], free[:, j] = -1, -1
    return index, best


def components_recovered(truth, estimate, *, cosine=0.99, weight_rtol=0.05):
    """Number of true components aligned ``>= cosine`` with a weight within ``weight_rtol``.

    Alignment as in :func:`match_components`: ``|<u, v>|`` for symmetric CP
    tensors, the product of the per-mode ``|<u_k, v_k>|`` for general ones.
    Weights are compared as the signed weight of the rank-one term, with the
    signs of the factor columns folded in (for a symmetric tensor of odd order,
    the sign of ``v``).
    """
    alignment, sign = _alignment(truth, estimate)
    index, best = _greedy_match(alignment)
    true_norms, _ = _unit_factors(truth)
    true_w = np.asarray(tl.to_numpy(truth[0]), dtype=float) * true_norms
    if tl.shape(estimate[0])[0]:
        est_norms, _ = _unit_factors(estimate)
        est_w = np.asarray(tl.to_numpy(estimate[0]), dtype=float) * est_norms
    count = 0
    for i, j in enumerate(index):
        if j < 0 or best[i] < cosine:
            continue
        if abs(sign[i, j] * est_w[j] - true_w[i]) <= weight_rtol * abs(true_w[i]):
            count += 1
    return count
