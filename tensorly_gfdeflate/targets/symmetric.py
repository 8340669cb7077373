"""Symmetric tensors as operators: the only view of the target the solvers use.

A solver never indexes the target. It asks for the batched contraction
``T(v^{l-1}, I)`` of the columns of a ``d x m`` matrix, for the evaluation
``T(v^l)``, and for the squared Frobenius norm. Three forms implement that:
a dense array, a symmetric CP tensor and the moment tensor of a data matrix.
The last two never build the ``d^l`` array.
"""

import numbers

import numpy as np
import tensorly as tl

from .._checks import check_int, check_random_state, is_cp_tensor, is_dask_array
from .dask_moments import moment_sums
from .base import (
    TensorOperator,
    _as_backend_tensor,
    _check_float_tensor,
    _max_abs,
    _power_of_two_below,
    _symmetry_tolerance,
    cp_contract,
    cp_norm_sq,
    int_power,
)

__all__ = [
    "SymmetricOperator",
    "DenseOperator",
    "CPOperator",
    "SampleMoments",
    "ResidualOperator",
    "as_operator",
    "normalize",
]

# The norm of a moment tensor is exact when the n x n Gram matrix is small
# (n <= _EXACT_NORM_SAMPLES) or when building the dense moments is cheap
# (n * d^l <= _EXACT_NORM_FLOPS); otherwise it is estimated (see SampleMoments).
_EXACT_NORM_SAMPLES = 4096
_EXACT_NORM_FLOPS = 2e9
# Moment tensors with at most this many entries may be cached densely (32 MB in float64).
_DENSE_CACHE_ENTRIES = 2**22
# Rows per block in moment contractions: bounds the n x m temporaries.
_MOMENT_BLOCK_ENTRIES = 2**22


class SymmetricOperator(TensorOperator):
    """A symmetric tensor of order ``order`` and dimension ``dim``, seen through contractions.

    Subclasses implement :meth:`contract` and the norm (see :class:`TensorOperator`).
    """

    order: int
    dim: int

    @property
    def shape(self):
        return (self.dim,) * self.order

    def contract(self, V):
        """``T(v^{l-1}, I)`` for each column ``v`` of the ``dim x m`` matrix ``V``."""
        raise NotImplementedError

    def evaluate(self, V):
        """``T(v^l)`` for each column ``v`` of ``V`` (a length-``m`` vector)."""
        return tl.sum(V * self.contract(V), axis=0)

    def overlap(self, V):
        """Gram matrix ``<v_j, v_k>^l`` of the rank-one tensors ``v_j^(x)l``: what least-squares weights solve with."""
        return tl.dot(tl.transpose(V), V) ** self.order

    def rescaled(self, factor):
        """This operator times the positive number ``factor``."""
        return _ScaledOperator(self, factor)

    def minus(self, weights, vectors):
        """This tensor minus ``sum_k weights_k vectors_k^(x)l``, still as an operator."""
        return ResidualOperator(self, weights, vectors)


class _ScaledOperator(SymmetricOperator):
    def __init__(self, base, factor):
        self.base, self.factor = base, float(factor)
        self.order, self.dim, self._context = base.order, base.dim, base.context
        self.norm_is_estimate, self.is_dense = base.norm_is_estimate, base.is_dense

    def contract(self, V):
        return self.factor * self.base.contract(V)

    def standard_error(self, V):
        error = self.base.standard_error(V)
        return None if error is None else self.factor * error

    def _norm_parts(self):
        magnitude, unit_norm_sq = self.base._cached_norm_parts()
        return self.factor * magnitude, unit_norm_sq

    def to_dense(self):
        return self.factor * self.base.to_dense()


class ResidualOperator(SymmetricOperator):
    """``base - sum_k weights_k vectors_k^(x)l``: implicit deflation of any operator."""

    def __init__(self, base, weights, vectors):
        self.base, self.weights, self.vectors = base, weights, vectors
        self.order, self.dim, self._context = base.order, base.dim, base.context
        self.norm_is_estimate, self.is_dense = base.norm_is_estimate, base.is_dense

    def standard_error(self, V):
        # Subtracting a fixed tensor leaves the sampling noise unchanged.
        return self.base.standard_error(V)

    def contract(self, V):
        return self.base.contract(V) - cp_contract(self.weights, self.vectors, V, self.order)

    def to_dense(self):
        model = tl.cp_to_tensor((self.weights, [self.vectors] * self.order))
        return self.base.to_dense() - model

    def _norm_parts(self):
        if self.is_dense:
            # The expansion below cancels to noise near sqrt(eps) of the norm; a
            # dense residual is measured directly.
            residual = self.to_dense()
            magnitude = _power_of_two_below(_max_abs(residual))
            return magnitude, tl.sum((residual / magnitude) ** 2)
        cross = tl.sum(self.weights * self.base.evaluate(self.vectors))
        model = cp_norm_sq(self.weights, self.vectors, self.order)
        return 1.0, max(self.base.norm_sq - 2 * float(cross) + float(model), 0.0)


class DenseOperator(SymmetricOperator):
    """A dense symmetric array of shape ``(d,) * l``.

    The contraction is one GEMM of the Khatri-Rao power ``v^(x)q`` of the
    columns (``q = l // 2``) with the square-ish ``(d^q, d^{l-q})`` unfolding,
    which gives ``T(v_j^q, I, ..., I)`` as row ``j``, followed by ``l - q - 1``
    batched matrix-vector products that each read the previous result once.
    """

    is_dense = True

    def __init__(self, tensor, name="tensor"):
        tensor = _as_backend_tensor(name, tensor)
        shape = tuple(tl.shape(tensor))
        if len(shape) < 2:
            raise ValueError(
                f"{name} must have order >= 2 (a square matrix or higher), got shape {shape}."
            )
        if len(set(shape)) != 1:
            raise ValueError(
                f"{name} must be cubical (all dimensions equal) to be symmetric, "
                f"got shape {shape}."
            )
        if shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {shape}); pass a non-empty tensor.")
        _check_float_tensor(name, tensor)
        self.order, self.dim = len(shape), shape[0]
        self._check_symmetric(name, tensor)
        self.tensor = tensor
        self._context = tl.context(tensor)
        self._split = self.order // 2
        self._unfolded = tl.reshape(tensor, (self.dim**self._split, -1))

    @classmethod
    def from_trusted(cls, tensor):
        """Wrap an array the package built symmetric itself, skipping the checks."""
        operator = cls.__new__(cls)
        operator.order, operator.dim = len(tl.shape(tensor)), tl.shape(tensor)[0]
        operator.tensor, operator._context = tensor, tl.context(tensor)
        operator._split = operator.order // 2
        operator._unfolded = tl.reshape(tensor, (operator.dim**operator._split, -1))
        return operator

    def _check_symmetric(self, name, tensor):
        # A transposition and a cyclic shift generate every permutation of the modes.
        swap = [1, 0] + list(range(2, self.order))
        shift = list(range(1, self.order)) + [0]
        tolerance = _symmetry_tolerance(tensor)
        for axes in (swap, shift):
            gap = float(tl.max(tl.abs(tensor - tl.transpose(tensor, axes))))
            if gap > tolerance:
                raise ValueError(
                    f"{name} is not symmetric: it differs from its transpose {tuple(axes)} "
                    f"by up to {gap:.3g}. Symmetrize it (average over all permutations of "
                    "its modes) or decompose it with a non-symmetric method."
                )

    def contract(self, V):
        # A square-ish unfolding makes the one big GEMM well shaped (an inner
        # dimension of d alone runs it well below peak) and its output only
        # d^{l-q} x m. Row j of each partial result holds column j's
        # contraction, contiguous in memory, so every further mode is one
        # batched GEMV (a broadcast multiply-and-sum over a middle axis would
        # cost as much as the GEMM).
        m = V.shape[1]
        rows = V.T
        power = rows
        for _ in range(self._split - 1):
            power = (power[:, :, None] * rows[:, None, :]).reshape(m, -1)
        partial = power @ self._unfolded
        columns = rows.reshape(m, self.dim, 1)
        for _ in range(self.order - self._split - 1):
            partial = partial.reshape(m, -1, self.dim) @ columns
        return partial.reshape(m, self.dim).T

    def _norm_parts(self):
        magnitude = _power_of_two_below(_max_abs(self.tensor))
        return magnitude, tl.sum((self.tensor / magnitude) ** 2)

    def to_dense(self):
        return self.tensor


class CPOperator(SymmetricOperator):
    """A symmetric CP tensor ``sum_i a_i u_i^(x)l`` (all factors identical), never densified."""

    def __init__(self, cp_tensor, name="tensor"):
        weights, factors = cp_tensor
        if not isinstance(factors, (list, tuple)) or len(factors) < 2:
            raise ValueError(
                f"{name} must be a CP tensor with at least 2 factors (order >= 2)."
            )
        factors = [_as_backend_tensor(f"{name} factors", f) for f in factors]
        first = factors[0]
        if len(tl.shape(first)) != 2 or 0 in tl.shape(first):
            raise ValueError(
                f"{name} factors must be non-empty 2-D (dim x rank) arrays, "
                f"got shape {tuple(tl.shape(first))}."
            )
        _check_float_tensor(f"{name} factors", first)
        tolerance = _symmetry_tolerance(first)
        for k, factor in enumerate(factors[1:], start=1):
            if tuple(tl.shape(factor)) != tuple(tl.shape(first)):
                raise ValueError(
                    f"{name} factors must all have the same shape for a symmetric CP tensor; "
                    f"factor 0 has {tuple(tl.shape(first))}, factor {k} has "
                    f"{tuple(tl.shape(factor))}."
                )
            if float(tl.max(tl.abs(factor - first))) > tolerance:
                raise ValueError(
                    f"{name} is not a symmetric CP tensor: factor {k} differs from factor 0. "
                    "Pass the same factor matrix for every mode, e.g. (weights, [U] * order)."
                )
        rank = tl.shape(first)[1]
        if weights is None:
            weights = tl.ones(rank, **tl.context(first))
        weights = _as_backend_tensor(f"{name} weights", weights)
        if tuple(tl.shape(weights)) != (rank,):
            raise ValueError(
                f"{name} weights must have shape ({rank},) to match the factors, "
                f"got {tuple(tl.shape(weights))}."
            )
        _check_float_tensor(f"{name} weights", weights)
        self.weights, self.factor = weights, first
        self.order, self.dim = len(factors), tl.shape(first)[0]
        self._context = tl.context(first)

    def contract(self, V):
        return cp_contract(self.weights, self.factor, V, self.order)

    def _norm_parts(self):
        weight_scale = _power_of_two_below(_max_abs(self.weights))
        factor_scale = _power_of_two_below(_max_abs(self.factor))
        magnitude = weight_scale * factor_scale**self.order
        unit = cp_norm_sq(self.weights / weight_scale, self.factor / factor_scale, self.order)
        return magnitude, unit

    def to_dense(self):
        return tl.cp_to_tensor((self.weights, [self.factor] * self.order))


class SampleMoments(SymmetricOperator):
    """The order-``l`` moment tensor ``M_l = (1/n) sum_s x_s^(x)l`` of the rows of ``X``.

    ``M_l(v^{l-1}, I) = X^T (X v)^{l-1} / n`` costs ``O(n d m)`` for ``m``
    vectors, computed over blocks of rows so that memory stays bounded for
    millions of samples; the ``d^l`` array is never needed. When it is small
    (at most 2**22 entries) and ``n > d^{l-1}``, the moments are accumulated
    once into it (``O(n d^l)``, by blocks) and each contraction then costs
    ``O(d^l m)``, less than one pass over the data. The moments are raw (not
    centred): centre ``X`` first if you want central moments.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), or a dask.array.Array
        The data, one sample per row, in any tensorly backend. A Dask array
        (chunked along rows only) is read once, chunk by chunk, on the
        active Dask scheduler, into the dense moment tensor (``d^l`` at most
        2**22 entries) and one chunk of rows kept for standard errors; it is
        never computed whole (see :mod:`tensorly_gfdeflate.targets.dask_moments`).
    order : int >= 2
        The order ``l`` of the moment tensor.
    verbose : bool, default=False
        With a Dask array, show Dask's progress bar during the pass.
    random_state : None, int or numpy.random.RandomState, default=0
        The draw of the 4096 rows a large norm is estimated from (see
        Notes); used only then. The default keeps the estimate the same from
        call to call; numpy's global random state is never used.

    Notes
    -----
    The squared Frobenius norm ``|M_l|^2 = (1/n^2) sum_{s,t} <x_s, x_t>^l`` is
    exact for ``n <= 4096`` (the Gram matrix) or ``n d^l <= 2e9`` (the dense
    moments, built block by block and discarded). Above both, the diagonal
    ``s = t`` is summed exactly and the off-diagonal mean is estimated from 4096
    rows drawn once from ``random_state`` (an unbiased U-statistic; relative
    error a few percent: 5.5% standard deviation over draws on heavy-tailed
    rows), so the estimate is deterministic for a fixed ``random_state`` and
    scales exactly with ``X``; ``norm_is_estimate`` is then True. It sets the normalization of
    the solvers and the denominator of reported relative errors; solvers do not
    stop on a residual measured against it.
    """

    #: Seed (or generator) of the subsample a large norm is estimated from (see Notes).
    random_state = 0

    def __init__(self, X, order, *, verbose=False, random_state=0):
        check_random_state(random_state)  # refused here if malformed, used lazily
        self.random_state = random_state
        if is_dask_array(X):
            self._read_dask(X, order, verbose)
            return
        X = _as_backend_tensor("X", X)
        if len(tl.shape(X)) != 2:
            raise ValueError(
                f"X must be a 2-D (n_samples, n_features) array, got shape {tuple(tl.shape(X))}."
            )
        n, d = tl.shape(X)
        if d == 0:
            raise ValueError("X has no features (0 columns); pass at least one feature.")
        if n < 2:
            raise ValueError(
                f"X must have at least 2 samples (rows) to form moments, got {n}; "
                "if your samples are the columns, pass X.T."
            )
        _check_float_tensor("X", X)
        if isinstance(order, numbers.Integral) and not isinstance(order, bool) and order < 2:
            raise ValueError(f"order must be an integer >= 2, got {order!r}.")
        self.order = check_int("order", order, 2)
        self.X, self.n_samples, self.dim = X, n, d
        self._context = tl.context(X)

    def _read_dask(self, X, order, verbose):
        """One pass over the Dask array ``X``: the dense moments and a sample of rows."""
        self._set_sums(X, check_int("order", order, 2), moment_sums(X, order, verbose=verbose))

    @classmethod
    def from_sums(cls, X, order, sums):
        """The moments of ``order`` from a pass that already read ``X`` (see ``moment_sums``).

        ``X`` is the lazy Dask array the sums describe (kept, never computed).
        """
        moments = cls.__new__(cls)
        moments._set_sums(X, order, sums)
        return moments

    def _set_sums(self, X, order, sums):
        moments = {2: sums.second}.get(order, sums.high)
        self.order, self.X, self.n_samples, self.dim = order, X, sums.n, len(sums.first)
        self._context = tl.context(tl.tensor(sums.first))
        self._error_rows = tl.tensor(sums.sample)
        self._dense_cache = (1.0, DenseOperator.from_trusted(tl.tensor(moments / sums.n)))

    @property
    def is_reduced(self):
        """Whether the moments were read from a Dask array: dense, with a sample of rows."""
        return hasattr(self, "_error_rows")

    def __repr__(self):
        return f"SampleMoments(X of shape {(self.n_samples, self.dim)}, order={self.order})"

    def _blocks(self, m, rows=None):
        """Blocks of ``rows`` (default ``X``) whose ``n x m`` temporaries stay bounded."""
        rows = self.X if rows is None else rows
        size = max(1, _MOMENT_BLOCK_ENTRIES // max(m, 1))
        for start in range(0, tl.shape(rows)[0], size):
            yield rows[start : start + size]

    def contract(self, V):
        if self._densify_pays():
            return self._dense_moments().contract(V)
        total = None
        for block in self._blocks(tl.shape(V)[1]):
            part = tl.dot(tl.transpose(block), int_power(tl.dot(block, V), self.order - 1))
            total = part if total is None else total + part
        return total / self.n_samples

    def standard_error(self, V):
        """``std((X v)^l) / sqrt(n)`` per column: the sampling noise of ``M_l(v^l)``.

        One pass over ``X``. The moments of a data set are its mean
        statistics, so their standard errors come from the same samples.
        """
        # Of a Dask array, one chunk's rows estimate the spread of (x v)^l.
        rows = self._error_rows if self.is_reduced else self.X
        # Rows prescaled by a power of two: squares of (Xv)^l stay in range.
        row_scale = _power_of_two_below(_max_abs(rows))
        total = total_sq = 0.0
        for block in self._blocks(tl.shape(V)[1], rows):
            values = int_power(tl.dot(block / row_scale, V), self.order)
            total = total + tl.sum(values, axis=0)
            total_sq = total_sq + tl.sum(values * values, axis=0)
        count = tl.shape(rows)[0]
        mean = total / count
        variance = tl.clip(total_sq / count - mean * mean, 0.0, None)
        return tl.sqrt(variance / (self.n_samples - 1)) * row_scale**self.order

    def _densify_pays(self):
        """Whether to accumulate the dense moments once and contract those.

        A streamed contraction reads all ``n d`` entries of ``X`` per vector, a
        dense one ``d^l``: with ``n > d^{l-1}`` the dense one is cheaper from
        the first contraction on, and a solver makes hundreds. The cache is
        bounded by ``_DENSE_CACHE_ENTRIES``.
        """
        if self.is_reduced:
            return True  # read from a Dask array: the dense moments are all there is
        entries = self.dim**self.order
        return entries <= _DENSE_CACHE_ENTRIES and self.n_samples > entries // self.dim

    def _dense_moments(self):
        """The moments as a :class:`DenseOperator`, built on first use and kept."""
        if not hasattr(self, "_dense_cache"):
            # Rows prescaled by a power of two: no overflow while accumulating.
            row_scale = _power_of_two_below(_max_abs(self.X))
            unfolded = self._unfolded_moments(row_scale)
            self._dense_cache = (row_scale**self.order,
                                 DenseOperator.from_trusted(tl.reshape(unfolded, self.shape)))
        magnitude, dense = self._dense_cache
        return dense.rescaled(magnitude) if magnitude != 1.0 else dense

    @property
    def norm_is_estimate(self):
        return (not self._densify_pays() and self.n_samples > _EXACT_NORM_SAMPLES
                and self.n_samples * self.dim**self.order > _EXACT_NORM_FLOPS)

    def _norm_parts(self):
        if self._densify_pays():
            self._dense_moments()
            magnitude, dense = self._dense_cache
            return magnitude, tl.sum(dense.tensor**2)
        # Rows are prescaled by a power of two s: the moment tensor scales by s^order.
        row_scale = _power_of_two_below(_max_abs(self.X))
        return row_scale**self.order, self._compute_norm_sq(row_scale)

    def _compute_norm_sq(self, row_scale=1.0):
        """``|M_l|^2`` of the rows divided by ``row_scale``."""
        if self.n_samples <= _EXACT_NORM_SAMPLES:
            X = self.X / row_scale
            gram = tl.dot(X, tl.transpose(X))
            return tl.sum(gram**self.order) / self.n_samples**2
        if not self.norm_is_estimate:
            return tl.sum(self._unfolded_moments(row_scale) ** 2)
        return self._estimated_norm_sq(row_scale)

    def _unfolded_moments(self, row_scale=1.0):
        """The ``d x d^{l-1}`` unfolding of the moment tensor, accumulated over row blocks."""
        total = None
        for block in self._blocks(self.dim ** (self.order - 1)):
            block = block / row_scale
            rows = tl.shape(block)[0]
            outer = block
            for _ in range(self.order - 2):
                outer = tl.reshape(outer[:, :, None] * block[:, None, :], (rows, -1))
            part = tl.dot(tl.transpose(block), outer)
            total = part if total is None else total + part
        return total / self.n_samples

    def _estimated_norm_sq(self, row_scale=1.0):
        """Exact diagonal ``sum_s |x_s|^{2l}`` plus a U-statistic of the off-diagonal mean."""
        n, order, k = self.n_samples, self.order, _EXACT_NORM_SAMPLES
        diagonal = 0.0
        for block in self._blocks(1):
            diagonal += float(tl.sum(tl.sum((block / row_scale) ** 2, axis=1) ** order))
        rng = check_random_state(self.random_state)
        rows = np.sort(rng.choice(n, k, replace=False))
        sub = self.X[rows.tolist()] / row_scale
        gram = tl.dot(sub, tl.transpose(sub)) ** order
        off_mean = (float(tl.sum(gram)) - float(tl.sum(tl.diag(gram)))) / (k * (k - 1))
        return (diagonal + off_mean * n * (n - 1)) / n**2

    def to_dense(self):
        """The dense ``(d,) * l`` moment tensor; only for small problems and tests."""
        if self.is_reduced:
            return self._dense_cache[1].tensor
        outer = self.X
        for _ in range(self.order - 1):
            outer = tl.reshape(outer[:, :, None] * self.X[:, None, :], (self.n_samples, -1))
        return tl.reshape(tl.sum(outer, axis=0) / self.n_samples, self.shape)


def normalize(operator, name="tensor"):
    """``(operator / s, s)`` with ``s`` the Frobenius norm: the solvers work at unit scale.

    Working at unit scale makes step sizes and thresholds meaningful for any
    input scale, and makes ``solve(c * T)`` return ``c`` times the weights.
    """
    scale = operator.norm
    if not np.isfinite(scale):
        raise ValueError(
            f"{name}'s Frobenius norm overflows the floating-point range; "
            "divide it by a constant first."
        )
    if scale <= 0:
        raise ValueError(
            f"{name} is zero (or below the floating-point range): there is nothing to "
            "decompose. Check that the intended array was passed."
        )
    return operator.rescaled(1.0 / scale), scale


def as_operator(tensor, name="tensor"):
    """The operator for a dense array, a symmetric CP tensor or a :class:`SampleMoments`."""
    if isinstance(tensor, SymmetricOperator):
        return tensor
    if is_cp_tensor(tensor):
        return CPOperator(tensor, name=name)
    if tensor is None:
        raise TypeError(
            f"{name} must be a dense symmetric array, a CPTensor or a SampleMoments, got None."
        )
    return DenseOperator(tensor, name=name)
