"""Random draws: unit vectors for the solvers, symmetric and general CP tensors for tests.

All randomness is drawn in numpy from a ``RandomState`` the caller controls and
converted to the backend afterwards, so every backend sees the same numbers.
"""

import numpy as np
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from ._checks import check_bool, check_int, check_random_state
from .targets.general import _check_shape
from .models.symmetric import random_unit_vectors

__all__ = ["random_unit_vectors", "random_symmetric_cp", "random_cp"]


def random_symmetric_cp(dim, rank, order, *, weights=None, orthogonal=True, random_state=None):
    """A random symmetric CP tensor ``sum_i a_i u_i^(x)order`` with unit ``u_i``.

    Parameters
    ----------
    dim : int >= 1
        Dimension ``d`` of each mode.
    rank : int >= 1
        Number of components ``r``; at most ``dim`` when ``orthogonal``.
    order : int >= 2
        Order ``l`` of the tensor.
    weights : array-like of shape (rank,), optional
        The weights ``a_i``. Default: geometric from 1 down to 0.1 (1 alone when
        ``rank == 1``), the spread used throughout the package's experiments.
    orthogonal : bool, default=True
        Orthonormal components (from the QR factorization of a Gaussian matrix)
        or independent uniform unit vectors.
    random_state : None, int or numpy.random.RandomState
        Seed or generator; numpy's global random state is never used.

    Returns
    -------
    CPTensor
        ``(weights, [U] * order)`` in the current tensorly backend, ``U`` of
        shape ``(dim, rank)``, weights in the order given.

    Examples
    --------
    >>> from tensorly_gfdeflate import random_symmetric_cp
    >>> cp = random_symmetric_cp(10, 3, 4, random_state=0)
    >>> cp.weights
    array([1.        , 0.31622777, 0.1       ])
    """
    dim = check_int("dim", dim, 1)
    rank = check_int("rank", rank, 1)
    order = check_int("order", order, 2)
    orthogonal = check_bool("orthogonal", orthogonal)
    if orthogonal and rank > dim:
        raise ValueError(
            f"rank={rank} orthogonal components do not fit in dim={dim}: "
            "lower rank or pass orthogonal=False."
        )
    rng = check_random_state(random_state)
    if weights is None:
        weights = np.geomspace(1.0, 0.1, rank) if rank > 1 else np.ones(1)
    weights = _check_weights(weights, rank)
    factor = _random_factor(dim, rank, orthogonal, rng)
    return CPTensor((tl.tensor(weights), [tl.tensor(factor)] * order))


def random_cp(shape, rank, *, weights=None, orthogonal=False, random_state=None):
    """A random general CP tensor: weights ``a_i`` times outer products of unit columns ``u_ki``.

    The general counterpart of :func:`random_symmetric_cp`: one factor matrix
    per mode, drawn independently, mode after mode.

    Parameters
    ----------
    shape : sequence of int >= 1
        The tensor's shape ``(n_1, ..., n_N)``, ``N >= 2``.
    rank : int >= 1
        Number of components ``r``; at most ``min(shape)`` when ``orthogonal``.
    weights : array-like of shape (rank,), optional
        The weights ``a_i``. Default: all 1.
    orthogonal : bool, default=False
        Orthonormal columns in every mode (from the QR factorization of a
        Gaussian matrix) or independent uniform unit vectors.
    random_state : None, int or numpy.random.RandomState
        Seed or generator; numpy's global random state is never used.

    Returns
    -------
    CPTensor
        ``(weights, [U_1, ..., U_N])`` in the current tensorly backend, ``U_k``
        of shape ``(n_k, rank)`` with unit columns, weights in the order given.

    Examples
    --------
    >>> from tensorly_gfdeflate import random_cp
    >>> cp = random_cp((4, 5, 6), 2, random_state=0)
    >>> [factor.shape for factor in cp.factors], cp.weights
    ([(4, 2), (5, 2), (6, 2)], array([1., 1.]))
    """
    shape = _check_shape(shape)
    rank = check_int("rank", rank, 1)
    orthogonal = check_bool("orthogonal", orthogonal)
    if orthogonal and rank > min(shape):
        raise ValueError(
            f"rank={rank} orthogonal components do not fit in the smallest mode "
            f"(min(shape)={min(shape)}): lower rank or pass orthogonal=False."
        )
    rng = check_random_state(random_state)
    weights = _check_weights(np.ones(rank) if weights is None else weights, rank)
    factors = [_random_factor(n, rank, orthogonal, rng) for n in shape]
    return CPTensor((tl.tensor(weights), [tl.tensor(factor) for factor in factors]))


def _check_weights(weights, rank):
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (rank,) or not np.all(np.isfinite(weights)):
        raise ValueError(
            f"weights must be {rank} finite numbers (one per component), got {weights!r}."
        )
    return weights


def _random_factor(dim, rank, orthogonal, rng):
    """A numpy ``(dim, rank)`` matrix of unit columns, orthonormal or independent."""
    if orthogonal:
        factor, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
        return factor
    return tl.to_numpy(random_unit_vectors(dim, rank, rng))
