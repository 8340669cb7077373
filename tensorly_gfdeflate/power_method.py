"""Baseline: robust tensor power method with explicit deflation.

Anandkumar, Ge, Hsu, Kakade and Telgarsky (JMLR 2014). For each component: a
batch of restarts uniform on the sphere, power iterations on all of them at once,
the restart with the largest |T(v^l)| refined, its weight ``T(v^l)``, then
deflation ``T <- T - w v^(x)l``, kept implicit so structured targets stay cheap.
"""

from dataclasses import dataclass, field

import numpy as np
import tensorly as tl

from ._checks import check_bool, check_int, check_positive, check_random_state
from .operators import as_operator, normalize
from .readout import canonical_signs, to_cp_tensor
from .synthetic import random_unit_vectors

__all__ = ["power_iterate", "power_deflation_cp", "PowerTrace"]

# A converged column still moves by about one machine epsilon per iteration (measured).
_SETTLED_IN_EPS = 16.0


def power_iterate(operator, V, n_iter_max, tol):
    """Batched power iterations ``v <- T(v^{l-1}, I) / |T(v^{l-1}, I)|`` on the columns of V.

    Stops when every column moves by less than ``tol`` (up to sign), or by less
    than a few machine epsilons of the dtype, the most a float32 column can
    settle to. A column whose contraction vanishes stays where it is. Returns
    ``(V, iterations)``.
    """
    tol = max(tol, _SETTLED_IN_EPS * float(tl.eps(tl.context(V)["dtype"])))
    for iteration in range(1, n_iter_max + 1):
        image = operator.contract(V)
        lengths = tl.sqrt(tl.sum(image * image, axis=0))
        moved = lengths > 0
        # Dividing the vanished columns by 1, not by a clipped 1e-300 (which is 0 in float32).
        image = tl.where(moved, image / (lengths + (lengths == 0)), V)
        change = tl.minimum(
            tl.sqrt(tl.sum((image - V) ** 2, axis=0)), tl.sqrt(tl.sum((image + V) ** 2, axis=0))
        )
        V = image
        if float(tl.max(change)) < tol:
            break
    return V, iteration


@dataclass
class PowerTrace:
    """What the power method did, in the order it did it.

    Attributes
    ----------
    extraction_index : ndarray of int
        For each returned component (sorted by ``|weight|``), the step at which it
        was extracted (0 = first). The deflation order.
    weights : ndarray
        The weights in extraction order.
    n_iter : ndarray of int
        Power iterations spent per extraction (restarts and refinement).
    residual : ndarray
        Relative error ``|T - T_hat| / |T|`` after each deflation.
    """

    extraction_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_iter: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    residual: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _extract_one(residual, n_restarts, n_iter_max, tol, rng):
    starts = random_unit_vectors(residual.dim, n_restarts, rng, residual.context)
    candidates, spent = power_iterate(residual, starts, n_iter_max, tol)
    best = int(np.argmax(np.abs(tl.to_numpy(residual.evaluate(candidates)))))
    vector, refined = power_iterate(residual, candidates[:, best : best + 1], n_iter_max, tol)
    weight = residual.evaluate(vector)
    return weight, vector, spent + refined


def power_deflation_cp(
    tensor,
    rank,
    *,
    n_restarts=10,
    n_iter_max=100,
    tol=1e-10,
    random_state=None,
    return_trace=False,
    verbose=False,
):
    """Symmetric CP decomposition by the robust tensor power method with deflation.

    Parameters
    ----------
    tensor : dense symmetric array, symmetric CPTensor or SampleMoments
        The target ``T``, of order >= 2, in any tensorly backend. Structured
        forms are never densified: deflation is applied inside the contractions.
    rank : int >= 1
        Number of components to extract.
    n_restarts : int >= 1, default=10
        Random restarts per component, iterated together as one matrix.
    n_iter_max : int >= 1, default=100
        Maximum power iterations per restart batch and for the refinement.
    tol : float > 0, default=1e-10
        Stop iterating once every restart moves by less than ``tol``.
    random_state : None, int or numpy.random.RandomState
        Seed of the restarts; numpy's global random state is never used.
    return_trace : bool, default=False
        Also return a :class:`PowerTrace`.
    verbose : bool, default=False
        Print one line per extracted component.

    Returns
    -------
    CPTensor or (CPTensor, PowerTrace)
        ``(weights, [V] * order)`` sorted by ``|weight|`` descending, in the
        backend, device and dtype of the input. For odd orders weights are
        positive; for even orders they carry their sign.

    Notes
    -----
    The target is normalized by its Frobenius norm before the iterations, so
    ``power_deflation_cp(c * T)`` returns ``c`` times the weights of
    ``power_deflation_cp(T)`` with the same factors, for the same seed.
    Deflation errors accumulate when the components are not orthogonal: this
    method is exact for orthogonally decomposable tensors only.

    Examples
    --------
    >>> from tensorly_gfdeflate import power_deflation_cp, random_symmetric_cp
    >>> truth = random_symmetric_cp(8, 3, 3, random_state=0)
    >>> cp = power_deflation_cp(truth, 3, random_state=0)
    >>> [round(float(w), 6) for w in cp.weights]
    [1.0, 0.316228, 0.1]
    """
    operator = as_operator(tensor)
    rank = check_int("rank", rank, 1)
    n_restarts = check_int("n_restarts", n_restarts, 1)
    n_iter_max = check_int("n_iter_max", n_iter_max, 1)
    tol = check_positive("tol", tol)
    return_trace = check_bool("return_trace", return_trace)
    verbose = check_bool("verbose", verbose)
    rng = check_random_state(random_state)
    target, scale = normalize(operator)

    residual, weights, vectors = target, [], []
    trace = PowerTrace()
    iterations, errors = [], []
    for step in range(rank):
        weight, vector, spent = _extract_one(residual, n_restarts, n_iter_max, tol, rng)
        weights.append(weight)
        vectors.append(vector)
        residual = target.minus(tl.concatenate(weights), tl.concatenate(vectors, axis=1))
        iterations.append(spent)
        errors.append(np.sqrt(residual.norm_sq / target.norm_sq))
        if verbose:
            print(
                f"[power_deflation_cp] component {step + 1}/{rank}: weight "
                f"{float(weight[0]) * scale:.4g}, {spent} iterations, "
                f"relative error {errors[-1]:.3e}"
            )
    weights, vectors = canonical_signs(tl.concatenate(weights), tl.concatenate(vectors, axis=1),
                                       operator.order)
    cp, permutation = to_cp_tensor(weights, vectors, operator.order, scale)
    if not return_trace:
        return cp
    trace.extraction_index = np.asarray(permutation, dtype=int)
    trace.weights = tl.to_numpy(weights) * scale
    trace.n_iter = np.asarray(iterations, dtype=int)
    trace.residual = np.asarray(errors)
    return cp, trace

