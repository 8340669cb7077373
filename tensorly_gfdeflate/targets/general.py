"""General (non-symmetric) tensors as operators: what the general CP flow sees of its target.

A tensor of shape ``(n_1, ..., n_N)`` is asked for contractions against
batches of rank-one directions, never indexed. A batch of ``m`` directions
(one vector per mode for each of the ``m`` columns) is one **stacked** matrix
``V`` of shape ``(sum(shape), m)``: rows ``offsets[k]:offsets[k+1]`` hold the
mode-``k`` vectors (see :func:`split_blocks` and :func:`stack_blocks`).

Every operator gives, for the columns ``(v_1j, ..., v_Nj)`` of ``V``:

- ``contract_mode(V, k)``: ``T(v_1j, .., v_(k-1)j, I, v_(k+1)j, .., v_Nj)``, ``(n_k, m)``;
- ``contract(V)``: all of them stacked like ``V``;
- ``evaluate(V)``: ``T(v_1j, ..., v_Nj)``;
- ``overlap(V)``: the Gram matrix of the rank-one terms under the operator's inner product
  (a partly observed operator also gives ``overlap_diagonal(V)``, its diagonal, and
  ``mode_overlap(V, k)``, the squared norms of the terms with ``v_k`` replaced by each
  unit vector of mode ``k``);
- ``norm_sq``, ``minus(weights, V)`` (the residual, still an operator), ``rescaled(factor)``.

A partly observed target (a dense array with a mask, or :class:`ObservedEntries`)
acts as ``T_eff = (1/p) P_Omega(T)``: ``P_Omega`` zeroes the unobserved entries and
``p = |Omega| / prod(shape)`` is the observed fraction. Its inner product is
``<A, B> = (1/p) sum_Omega A_i B_i``, so the completion loss of :ref:`theory-general`,
``1/(2p) sum_Omega (T(W)_i - T_i)^2``, is ``0.5 * residual.norm_sq`` exactly as
for a full tensor, and one flow serves both.
"""

import math
from functools import reduce
from itertools import accumulate
from operator import mul

import numpy as np
import tensorly as tl

from .._checks import is_cp_tensor
from .spectral import observed_subspaces
from .base import (
    TensorOperator,
    concatenate_rows,
    _as_backend_tensor,
    _check_float_tensor,
    _max_abs,
    _power_of_two_below,
)

__all__ = [
    "GeneralOperator",
    "DenseTensor",
    "MaskedTensor",
    "ObservedEntries",
    "GeneralCPOperator",
    "GeneralResidual",
    "as_general_operator",
    "split_blocks",
    "stack_blocks",
    "DENSE_SHARE",
]

# Observed entries per block times columns (rounded down to a power of two): a block's
# m-column temporaries stay in the core's cache (256 KB in float64). Measured on 10^6
# entries of a 1000^3 tensor, m = 16, one thread: contract 0.11 s at 2**11 entries per
# block, 0.13 s at 2**12, 0.18 s at 2**13, 0.26 s at 2**15.
_BLOCK_CELLS = 2**15
# Observed entries are densified (to_dense) only up to this many tensor entries.
_DENSE_ENTRIES = 2**24
# Sums over the observed entries run as GEMMs over the dense arrays (mask and values, zero
# where unobserved) where at least 1 / DENSE_SHARE of the tensor is observed: such a pass
# costs about the same at any fraction, gathering rows at each entry grows with it. Measured
# on the kinetic tensor (460,800 entries), ALS at rank 8, seconds a sweep dense / gathered:
# .040 / .023 at 5% observed, .032 / .048 at 10%, .031 / .107 at 20%, .042 / .34 at 50%.
DENSE_SHARE = 12


# --- stacked columns -------------------------------------------------------------------------

def _offsets(shape):
    # Plain integers: numpy's cumsum costs more than the slicing it serves (per split).
    return [0, *accumulate(shape)]


def split_blocks(V, shape):
    """The mode blocks of the stacked matrix ``V``: a list of ``(n_k, m)`` matrices.

    Parameters
    ----------
    V : tensor of shape (sum(shape), m)
        One direction per column, its mode-``k`` vector in rows
        ``sum(shape[:k]):sum(shape[:k+1])``.
    shape : tuple of int
        The shape ``(n_1, ..., n_N)`` of the tensor the directions belong to.
    """
    rows = V.shape[0] if len(V.shape) == 2 else None
    if rows != sum(shape):
        raise ValueError(
            f"V must have shape (sum(shape), m) = ({sum(shape)}, m) for a tensor of shape "
            f"{tuple(shape)}, got {tuple(V.shape)}; stack the mode vectors with stack_blocks."
        )
    offsets = _offsets(shape)
    return [V[start:stop] for start, stop in zip(offsets[:-1], offsets[1:])]


def stack_blocks(blocks):
    """One stacked ``(sum(n_k), m)`` matrix from the mode blocks ``(n_k, m)``."""
    return concatenate_rows(list(blocks))


# --- shared kernels --------------------------------------------------------------------------

def _product(arrays):
    return reduce(mul, arrays)


def _products_except(factors, modes, initial):
    """``initial * prod_{l != k} factors[l]`` for each ``k`` in ``modes``.

    For several modes the prefix and suffix products are shared (about ``3N``
    products for all ``N`` leave-one-out products); nothing is divided, since a
    factor may hold zeros.
    """
    if len(modes) == 1:
        (k,) = modes
        return [_product([initial] + factors[:k] + factors[k + 1:])]
    prefixes = [initial]
    for factor in factors[:-1]:
        prefixes.append(prefixes[-1] * factor)
    results, suffix = {}, None
    for k in reversed(range(len(factors))):
        results[k] = prefixes[k] if suffix is None else prefixes[k] * suffix
        suffix = factors[k] if suffix is None else factors[k] * suffix
    return [results[k] for k in modes]


def _gram_product(blocks):
    """``prod_k (B_k^T B_k)`` elementwise: the Frobenius Gram matrix of the rank-one terms."""
    return _product([block.T @ block for block in blocks])


def _as_weights(weights, count, context):
    if not tl.is_tensor(weights):
        weights = tl.tensor(np.asarray(weights, dtype=float), **context)
    if tuple(tl.shape(weights)) != (count,):
        raise ValueError(
            f"weights must have shape ({count},), one per column of V, "
            f"got {tuple(tl.shape(weights))}."
        )
    return weights


def _on_device(array, context):
    """A numpy array as a backend tensor on the device of ``context``, keeping its dtype."""
    return tl.tensor(array, **({"device": context["device"]} if "device" in context else {}))


# Dense arrays. A contraction with m columns keeps a partial result of shape
# (m, remaining dims): the batch first, so that each further mode is one batched
# matrix-vector product (``(m, a, n) @ (m, n, 1)``), the form the symmetric dense
# operator uses too. Measured on shape (20, 25, 30), m = 16, one thread: all three
# contractions in 47 us, against 140 us with the batch last and a broadcast product and
# sum per mode (the GEMM over the tensor alone: 8 us).

def _first_contraction(tensor, rows, mode):
    """``tensor`` contracted along its first or last ``mode`` by one GEMM: ``(m, rest)``."""
    shape = tuple(tensor.shape)
    if mode == 0:
        return rows[0] @ tensor.reshape(shape[0], -1), shape[1:]
    return rows[-1] @ tensor.reshape(-1, shape[-1]).T, shape[:-1]


def _contract_leading(partial, dims, row):
    """Contract the first axis of the batched ``partial`` (``m x prod(dims)``) with ``row`` (``m x n``)."""
    m = partial.shape[0]
    return (row[:, None, :] @ partial.reshape(m, dims[0], -1)).reshape(m, -1), dims[1:]


def _contract_trailing(partial, dims, rows):
    """Contract every axis of ``partial`` but the first, last first; ``rows`` match ``dims``.

    Returns the ``(n, m)`` result (a transposed view).
    """
    m = partial.shape[0]
    for position in reversed(range(1, len(dims))):
        partial = partial.reshape(m, -1, dims[position]) @ rows[position][:, :, None]
        dims = dims[:position]
    return partial.reshape(m, dims[0]).T


def _dense_contract_mode(tensor, blocks, k):
    """``T(v_1, .., I at k, .., v_N)`` for each column: one GEMM, then batched products."""
    rows = [block.T for block in blocks]
    if k == 0:
        partial, dims = _first_contraction(tensor, rows, -1)
        return _contract_trailing(partial, dims, rows[:-1])
    partial, dims = _first_contraction(tensor, rows, 0)
    for row in rows[1:k]:
        partial, dims = _contract_leading(partial, dims, row)
    return _contract_trailing(partial, dims, rows[k:])


def _dense_contract_all(tensor, blocks):
    """All ``N`` contractions from two GEMMs over the tensor instead of ``N``.

    Modes ``1..N-1`` share the contraction along mode 0, and each mode then
    passes its own along to the next.
    """
    rows = [block.T for block in blocks]
    partial, dims = _first_contraction(tensor, rows, -1)
    outputs = [_contract_trailing(partial, dims, rows[:-1])]
    partial, dims = _first_contraction(tensor, rows, 0)
    for k in range(1, len(blocks)):
        outputs.append(_contract_trailing(partial, dims, rows[k:]))
        if k < len(blocks) - 1:
            partial, dims = _contract_leading(partial, dims, rows[k])
    return outputs


# Observed entries. Everything is computed over fixed blocks of entries: gather the
# rows of each mode block once, share their products, scatter-add the results.

class Coordinates:
    """The observed coordinates, per mode, cut into fixed blocks of entries.

    The blocks and (numpy) the selection matrices that scatter-add a block's
    rows to their mode indices are built once and shared by every operator on
    these coordinates (a residual keeps its target's), so a flow step only
    gathers, multiplies and scatters.
    """

    def __init__(self, indices, context):
        self.n_entries, self.order = indices.shape
        self.columns = [_index_column(indices[:, k], context) for k in range(self.order)]
        self._numpy_columns = [np.ascontiguousarray(indices[:, k]) for k in range(self.order)]
        self._scatters = {}

    def slices(self, m):
        """The blocks of entries for ``m``-column work."""
        size = 2 ** max(8, int(np.log2(max(_BLOCK_CELLS // max(m, 1), 1))))
        return [slice(start, min(start + size, self.n_entries))
                for start in range(0, self.n_entries, size)]

    def gather(self, blocks, rows):
        """``B_k[idx_k(i)]`` for the entries ``i`` in ``rows``: ``(len(rows), m)`` per mode."""
        if tl.get_backend() == "numpy":
            return [np.take(block, column[rows], axis=0)
                    for column, block in zip(self._numpy_columns, blocks)]
        return [block[column[rows]] for column, block in zip(self.columns, blocks)]

    def scatter(self, k, rows, part, length):
        """``out[idx_k(i)] += part[i]`` for the entries ``i`` in the block ``rows``: ``(length, m)``.

        tensorly has no scatter-add: pytorch uses ``index_add_``; numpy (and any
        other backend, through numpy and back) the transposed one-entry-per-row
        selection matrix of the block, built once. Measured (numpy 2.4, scipy
        1.17, one thread) for 10^6 entries x 20 columns into 1000 bins: 20-30
        ms, against 70 ms for a flattened np.bincount and 190 ms for np.add.at.
        """
        backend = tl.get_backend()
        if backend == "pytorch":
            out = tl.zeros((length, tl.shape(part)[1]), **tl.context(part))
            return out.index_add_(0, self.columns[k][rows], part)
        values = part if backend == "numpy" else tl.to_numpy(part)
        key = (k, rows.start, rows.stop, values.dtype)
        if key not in self._scatters:
            self._scatters[key] = _selection(self._numpy_columns[k][rows], length,
                                             values.dtype).T.tocsr()
        summed = np.asarray(self._scatters[key] @ values)
        return summed if backend == "numpy" else tl.tensor(summed, **tl.context(part))


def _selection(index, length, dtype):
    """The ``len(index) x length`` matrix with a one at ``(i, index[i])``.

    It needs no sorting to build, and its transposed product is one C loop.
    """
    from scipy import sparse

    count = len(index)
    return sparse.csr_matrix((np.ones(count, dtype=dtype), index, np.arange(count + 1)),
                             shape=(count, length))


def _least_squares_image(image, sizes):
    """``image / sizes`` entry by entry, 0 where no observed entry is met (``sizes == 0``)."""
    met = sizes > 0
    return tl.where(met, image, 0.0 * image) / tl.where(met, sizes, 1.0 + 0.0 * sizes)


def _observed_contract(coordinates, values, blocks, shape, modes):
    """``sum_i values_i prod_{l != k} B_l[idx_l(i)]`` scattered to ``idx_k(i)``, ``k`` in modes."""
    m = tl.shape(blocks[0])[1]
    totals = [tl.zeros((shape[k], m), **tl.context(blocks[0])) for k in modes]
    for rows in coordinates.slices(m):
        gathered = coordinates.gather(blocks, rows)
        parts = _products_except(gathered, modes, tl.reshape(values[rows], (-1, 1)))
        for slot, (k, part) in enumerate(zip(modes, parts)):
            totals[slot] = totals[slot] + coordinates.scatter(k, rows, part, shape[k])
    return totals


def _entry_terms(coordinates, blocks):
    """Blocks ``(rows, E[rows])`` of ``E[i, a] = prod_k B_k[idx_k(i), a]``, ``i`` observed."""
    for rows in coordinates.slices(tl.shape(blocks[0])[1]):
        yield rows, _product(coordinates.gather(blocks, rows))


def _observed_model(coordinates, blocks, weights):
    """``E weights``: the CP model at every observed entry."""
    return tl.concatenate([tl.dot(terms, weights)
                           for _, terms in _entry_terms(coordinates, blocks)], axis=0)


def _observed_gram(coordinates, blocks):
    """``E^T E`` over the observed entries (without the ``1/p``)."""
    return sum(tl.dot(tl.transpose(terms), terms) for _, terms in _entry_terms(coordinates, blocks))


def _values_norm_parts(values, fraction):
    """``(m, (1/p) sum (values / m)^2)``: squared at the scale of the entries."""
    magnitude = _power_of_two_below(_max_abs(values))
    return magnitude, tl.sum((values / magnitude) ** 2) / fraction


# Rounding of an eigenvalue of an unfolding's Gram matrix, in units of eps (m + n) |T|^2 for
# an n x m unfolding (the product's and the symmetric eigensolver's error), with a margin.
_GRAM_ROUNDING_IN_EPS = 4.0


def _unfolding_spectra(values):
    """``(m, [(eigenvalues, error)])``: each unfolding's squared singular values at scale ``m``.

    Largest first, clipped at 0, for the unit-scale array ``values / m``;
    ``error`` bounds the rounding of any sum of them: |fl(X X^T) - X X^T|_2 <=
    eps m |X|^2 and the symmetric eigensolver adds eps n |G|_2, per eigenvalue.
    The Gram matrices are formed on the array's device; only they come back.
    """
    magnitude = _power_of_two_below(_max_abs(values))
    unit = values / magnitude
    eps, total = float(tl.eps(tl.context(unit)["dtype"])), float(tl.sum(unit**2))
    spectra = []
    for k, rows in enumerate(tl.shape(unit)):
        unfolding = tl.reshape(tl.moveaxis(unit, k, 0), (rows, -1))
        gram = tl.to_numpy(unfolding @ tl.transpose(unfolding))
        eigenvalues = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)
        per_value = _GRAM_ROUNDING_IN_EPS * eps * (rows + tl.shape(unfolding)[1]) * total
        spectra.append((eigenvalues, rows * per_value))
    return magnitude, spectra


def _cp_contract_modes(weights, factors, blocks, modes):
    """The contractions of the CP tensor ``(weights, factors)``, through the factor Grams only."""
    grams = [factor.T @ block for factor, block in zip(factors, blocks)]
    parts = _products_except(grams, modes, weights.reshape(-1, 1))
    return [factors[k] @ part for k, part in zip(modes, parts)]


def _cp_evaluate(weights, factors, blocks):
    grams = [tl.dot(tl.transpose(factor), block) for factor, block in zip(factors, blocks)]
    return tl.dot(weights, _product(grams))


def _cp_norm_sq(weights, factors):
    gram = _gram_product(factors)
    return tl.sum(tl.reshape(weights, (-1, 1)) * gram * tl.reshape(weights, (1, -1)))


# --- the operators ---------------------------------------------------------------------------

class GeneralOperator(TensorOperator):
    """A tensor of shape ``(n_1, ..., n_N)`` seen through contractions with stacked directions.

    Subclasses implement :meth:`_contract_modes`, :meth:`_evaluate_blocks`,
    the norm (see :class:`~tensorly_gfdeflate.targets.symmetric.TensorOperator`) and,
    for other than full tensors, :meth:`overlap` and :meth:`minus`.

    Attributes
    ----------
    shape : tuple of int
    order : int
        ``N = len(shape)``.
    dim : int
        ``sum(shape)``, the rows of a stacked ``V``.
    observed_fraction : float
        ``p = |Omega| / prod(shape)``, 1.0 for a full tensor.
    n_observed : int
        ``|Omega|``, ``prod(shape)`` for a full tensor.
    """

    def _set_shape(self, shape, context):
        self.shape, self.order, self.dim = tuple(shape), len(shape), sum(shape)
        self._context = context

    @property
    def n_observed(self):
        return math.prod(self.shape)

    def _check_mode(self, k):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < self.order:
            raise ValueError(f"k must be a mode in range(0, {self.order}), got {k!r}.")
        return int(k)

    def contract_mode(self, V, k):
        """``T_eff(v_1j, .., v_(k-1)j, I, v_(k+1)j, .., v_Nj)`` per column ``j``: ``(n_k, m)``."""
        return self._contract_modes(split_blocks(V, self.shape), [self._check_mode(k)])[0]

    def contract(self, V):
        """Every :meth:`contract_mode` of ``V``, stacked like ``V``: ``(dim, m)``."""
        return stack_blocks(self._contract_modes(split_blocks(V, self.shape),
                                                 list(range(self.order))))

    def contract_blocks(self, blocks, modes=None):
        """The contractions of the mode blocks ``blocks`` along ``modes`` (default every mode), as a list."""
        return self._contract_modes(blocks, list(range(self.order)) if modes is None else modes)

    def evaluate(self, V):
        """``T_eff(v_1j, ..., v_Nj)`` for each column ``j`` of ``V``: a length-``m`` vector."""
        return self._evaluate_blocks(split_blocks(V, self.shape))

    def overlap(self, V):
        """Gram matrix (``m x m``) of the rank-one terms of ``V`` in the operator's inner product.

        For a full tensor it is ``prod_k (V_k^T V_k)`` (elementwise), and the
        least-squares weights ``c`` of the directions solve
        ``overlap(V) c = evaluate(V)``.
        """
        return _gram_product(split_blocks(V, self.shape))

    def rescaled(self, factor):
        """This operator times the positive number ``factor``."""
        return _ScaledGeneral(self, factor)

    def minus(self, weights, V):
        """``T - sum_a weights_a v_1a (x) .. (x) v_Na``, still as an operator (lazy by default)."""
        return GeneralResidual(self, weights, V)

    def _contract_modes(self, blocks, modes):
        raise NotImplementedError

    def _evaluate_blocks(self, blocks):
        raise NotImplementedError


class _ScaledGeneral(GeneralOperator):
    def __init__(self, base, factor):
        self.base, self.factor = base, float(factor)
        self._set_shape(base.shape, base.context)
        self.observed_fraction, self.is_dense = base.observed_fraction, base.is_dense
        self.norm_is_estimate = base.norm_is_estimate

    @property
    def n_observed(self):
        return self.base.n_observed

    def _contract_modes(self, blocks, modes):
        return [self.factor * part for part in self.base._contract_modes(blocks, modes)]

    def _evaluate_blocks(self, blocks):
        return self.factor * self.base._evaluate_blocks(blocks)

    def overlap(self, V):
        # A Gram matrix of the directions: the scale of the tensor does not enter.
        return self.base.overlap(V)

    def overlap_diagonal(self, V):
        return self.base.overlap_diagonal(V)

    def mode_overlap(self, V, k):
        return self.base.mode_overlap(V, k)

    def least_squares_image(self, blocks, k):
        return self.factor * self.base.least_squares_image(blocks, k)

    def start_subspaces(self):
        return self.base.start_subspaces()

    def rank_miss_bound(self, count):
        return self.factor**2 * self.base.rank_miss_bound(count)

    @property
    def observation_pattern(self):
        return self.base.observation_pattern

    def with_observed_values(self, values):
        return self.base.with_observed_values(values)

    def rescaled(self, factor):
        return self.base.rescaled(self.factor * float(factor))

    def minus(self, weights, V):
        # c T - M = c (T - M / c): the base keeps its explicit residual forms.
        weights = _as_weights(weights, tl.shape(V)[1], self.context)
        return self.base.minus(weights / self.factor, V).rescaled(self.factor)

    def _norm_parts(self):
        magnitude, unit_norm_sq = self.base._cached_norm_parts()
        return self.factor * magnitude, unit_norm_sq

    def to_dense(self):
        return self.factor * self.base.to_dense()

    def observed_indices(self):
        return self.base.observed_indices()

    def observed_values(self):
        return self.factor * self.base.observed_values()


class DenseTensor(GeneralOperator):
    """A fully observed dense array of order ``N >= 2``.

    A contraction along all modes but one costs one GEMM over the array
    (``2 m prod(shape)`` flops) and smaller batched steps; :meth:`contract`
    computes all ``N`` of them from two such GEMMs.
    """

    is_dense = True

    def __init__(self, tensor, name="tensor"):
        tensor = _as_backend_tensor(name, tensor)
        _check_dense_shape(name, tl.shape(tensor))
        _check_dense_values(name, tensor, masked=False)
        self._set_values(tensor)

    @classmethod
    def _trusted(cls, values, **attributes):
        operator = cls.__new__(cls)
        operator.__dict__.update(attributes)
        operator._set_values(values)
        return operator

    def _set_values(self, values):
        # The observed values, zero elsewhere; the contractions divide by p.
        self._values = values
        self._set_shape(tl.shape(values), tl.context(values))

    def _contract_modes(self, blocks, modes):
        if len(modes) == 1:
            parts = [_dense_contract_mode(self._values, blocks, modes[0])]
        else:
            parts = _dense_contract_all(self._values, blocks)
        if self.observed_fraction == 1.0:
            return parts
        return [part / self.observed_fraction for part in parts]

    def _evaluate_blocks(self, blocks):
        last = _dense_contract_mode(self._values, blocks, self.order - 1)
        return tl.sum(blocks[-1] * last, axis=0) / self.observed_fraction

    def _norm_parts(self):
        return _values_norm_parts(self._values, self.observed_fraction)

    def _model(self, weights, V):
        """The dense CP tensor: the first factor (weighted) times the Khatri-Rao product of
        the others, one GEMM, in the arrays' own operators (no dispatch per mode)."""
        weights = _as_weights(weights, tl.shape(V)[1], self.context)
        blocks = split_blocks(V, self.shape)
        rank = weights.shape[0]
        rest = blocks[1]
        for block in blocks[2:]:
            rest = (rest[:, None, :] * block[None, :, :]).reshape(-1, rank)
        return ((blocks[0] * weights.reshape(1, -1)) @ rest.T).reshape(self.shape)

    def minus(self, weights, V):
        """The explicit dense residual ``T - sum_a weights_a (x)_k v_ka``."""
        return DenseTensor._trusted(self._values - self._model(weights, V))

    def to_dense(self):
        """The array itself."""
        return self._values

    def rank_miss_bound(self, count):
        """Eckart-Young on each unfolding: ``max_k sum_{i > count} sigma_i(T_(k))^2``, less rounding.

        Each unfolding of a sum of ``count`` rank-one terms has rank at most
        ``count``, so its distance to ``T_(k)`` is at least the tail of
        ``T_(k)``'s singular values. A partly observed array (its values are
        zero where unobserved) proves nothing this way: 0.0.
        """
        if self.observed_fraction < 1.0:
            return 0.0
        if not hasattr(self, "_spectra_cache"):
            self._spectra_cache = _unfolding_spectra(self._values)
        magnitude, spectra = self._spectra_cache
        tails = [max(float(np.sum(eigenvalues[count:])) - error, 0.0)
                 for eigenvalues, error in spectra]
        return magnitude**2 * max(tails, default=0.0)


class _ObservedInner:
    """The inner product ``(1/p) sum_Omega`` of a partly observed tensor.

    Needs ``_indices`` (``(n_obs, N)`` numpy), ``_coordinates`` (a
    :class:`Coordinates` of them) and ``observed_fraction``.
    """

    # The spectral start, computed on first use. A residual computes its own: once the
    # strong components are fitted, the weak ones stand out of its spectrum (the
    # deflation the flow performs).
    _subspaces = None

    @property
    def n_observed(self):
        return len(self._indices)

    def start_subspaces(self):
        """Per mode, the leading eigenspace of the observed entries' unfolding Gram (diagonal deleted).

        See :mod:`tensorly_gfdeflate.targets.spectral`.
        """
        if self._subspaces is None:
            self._subspaces = observed_subspaces(
                self._indices, tl.to_numpy(self.observed_values()), self.shape)
        return self._subspaces

    @property
    def observation_pattern(self):
        """The observed coordinates' shared blocks: the same object for a target and its residuals."""
        return self._coordinates

    def with_observed_values(self, values):
        """:class:`ObservedEntries` with ``values`` (a backend vector) on these coordinates."""
        return ObservedEntries._trusted(self._indices, self._coordinates, values, self.shape)

    def overlap(self, V):
        """``(1/p) E^T E`` with ``E[i, a] = prod_k V_k[idx_k(i), a]`` over the observed entries."""
        blocks = split_blocks(V, self.shape)
        return _observed_gram(self._coordinates, blocks) / self.observed_fraction

    def overlap_diagonal(self, V):
        """The diagonal of :meth:`overlap`, each rank-one term's squared norm (length ``m``).

        ``(1/p) sum_Omega E[i, a]^2``, without the ``m x m`` products. On a full
        tensor it is ``prod_k |v_k|^2``, 1 for unit vectors: only partly
        observed operators need it (see :func:`~tensorly_gfdeflate.check.probe.probe_residual`).
        """
        blocks = split_blocks(V, self.shape)
        return sum(tl.sum(terms * terms, axis=0)
                   for _, terms in _entry_terms(self._coordinates, blocks)) / self.observed_fraction

    def observed_indices(self):
        """The observed coordinates, an ``(n_observed, N)`` int64 numpy array (read-only)."""
        return self._indices

    def least_squares_image(self, blocks, k):
        """``T(.., I, ..) / mode_overlap`` for the mode blocks ``blocks``: ``(n_k, m)``.

        Each column's least-squares mode-``k`` vector of a rank-one fit with
        the other modes fixed (0 at an index no observed entry meets). Both
        sums run over the products ``z`` of the other modes' rows at each
        observed entry (``T_e z`` and ``z^2``, scattered to the mode-``k``
        index), so the rows are gathered once for both; the ``1 / p`` of the
        inner product cancels in the ratio.
        """
        pattern, values = self.observation_pattern, self.observed_values()
        n = self.shape[k]
        image = sizes = 0.0
        for rows in pattern.slices(tl.shape(blocks[0])[1]):
            gathered = pattern.gather(blocks, rows)
            z = _product([part for l, part in enumerate(gathered) if l != k])
            image = image + pattern.scatter(k, rows, tl.reshape(values[rows], (-1, 1)) * z, n)
            sizes = sizes + pattern.scatter(k, rows, z * z, n)
        return _least_squares_image(image, sizes)

    def mode_overlap(self, V, k):
        """For each mode-``k`` index ``i``, the squared norm of each term with ``e_i`` for ``v_k``.

        ``(1/p) sum_{Omega, i_k = i} prod_{l != k} v_l[i_l]^2``, an ``(n_k, m)``
        matrix: ``T(.., I, ..) / mode_overlap`` is, entry by entry, the
        least-squares mode-``k`` vector of a rank-one fit with the other modes
        fixed (on a full tensor, the plain contraction up to scale: see
        :func:`~tensorly_gfdeflate.models.general.alternating_power_iterate`).
        """
        blocks = [block * block for block in split_blocks(V, self.shape)]
        ones = tl.ones(self.n_observed, **self.context)
        return _observed_contract(self._coordinates, ones, blocks, self.shape,
                                  [self._check_mode(k)])[0] / self.observed_fraction


class MaskedTensor(_ObservedInner, DenseTensor):
    """A dense array of which only the entries where ``mask`` is True are observed.

    Acts as ``T_eff = (1/p) P_Omega(T)`` (see the module notes): contractions
    are dense GEMMs over the array with zeros at the unobserved entries, the
    overlap is ``(1/p) E^T E`` over the observed entries. Entries where the
    mask is False are never read, NaN included.

    Parameters
    ----------
    tensor : array of order >= 2
    mask : array of bool (or of 0 and 1), same shape as ``tensor``
        True where an entry is observed.
    """

    is_dense = False

    def __init__(self, tensor, mask, name="tensor"):
        tensor = _as_backend_tensor(name, tensor)
        shape = tuple(tl.shape(tensor))
        _check_dense_shape(name, shape)
        mask = _check_mask(mask, shape)
        context = tl.context(tensor)
        self._mask = _on_device(mask, context)
        values = tl.where(self._mask, tensor, tl.zeros(shape, **context))
        _check_dense_values(name, values, masked=True)
        self._indices = np.argwhere(mask)
        self._indices.flags.writeable = False
        self._coordinates = Coordinates(self._indices, context)
        self.observed_fraction = len(self._indices) / math.prod(shape)
        self._ones = tl.where(self._mask, tl.ones(shape, **context), tl.zeros(shape, **context))
        self._set_values(values)

    def minus(self, weights, V):
        """The explicit residual at the observed entries (same mask, same ``p``)."""
        # Zero again where unobserved: P_Omega of the residual, as the values were.
        residual = tl.where(self._mask, self._values - self._model(weights, V),
                            tl.zeros(self.shape, **self.context))
        return MaskedTensor._trusted(residual, _mask=self._mask, _ones=self._ones,
                                     _indices=self._indices, _coordinates=self._coordinates,
                                     observed_fraction=self.observed_fraction)

    def least_squares_image(self, blocks, k):
        """As :meth:`_ObservedInner.least_squares_image`, from two GEMMs over the dense arrays.

        ``P_Omega(T)(.., I, ..)`` and the mask contracted with the squared
        blocks. Where at least ``1 / DENSE_SHARE`` of the tensor is observed
        this is faster than gathering rows at each observed entry: measured on
        the kinetic tensor (460,800 entries, 50% observed), the probes of the
        flow's checks took 55% of an automatic-rank fit the sparse way.
        """
        if self.observed_fraction * DENSE_SHARE < 1.0:
            return super().least_squares_image(blocks, k)
        image = _dense_contract_mode(self._values, blocks, k)
        sizes = _dense_contract_mode(self._ones, [block * block for block in blocks], k)
        return _least_squares_image(image, sizes)

    def to_dense(self):
        """The observed entries, zero elsewhere (``P_Omega(T)``, not divided by ``p``)."""
        return self._values

    def observed_values(self):
        """The tensor at :meth:`observed_indices`, a length-``n_observed`` tensor."""
        return self._values[tuple(self._coordinates.columns)]


class ObservedEntries(_ObservedInner, GeneralOperator):
    """The observed entries of a tensor, as coordinates; the full tensor is never built.

    Acts as ``T_eff = (1/p) P_Omega(T)`` with ``p = n_obs / prod(shape)`` (see
    the module notes). A contraction gathers the rows of the directions at the
    observed coordinates, multiplies them, and scatter-adds: ``O(n_obs m N)``
    per call, in blocks of entries so that memory stays ``O(block m)``.

    Parameters
    ----------
    indices : (n_obs, N) integer array, or a tuple of N 1-D integer arrays
        The coordinates of the observed entries, one row per entry (like
        ``np.argwhere``), or one array per mode (like ``np.nonzero``). Each
        coordinate appears once.
    values : (n_obs,) float array or backend tensor
        The tensor at those coordinates.
    shape : tuple of N ints >= 1
        The shape of the tensor (``N >= 2``).

    Examples
    --------
    >>> import numpy as np
    >>> from tensorly_gfdeflate.targets.general import ObservedEntries
    >>> entries = ObservedEntries(np.array([[0, 1, 2], [3, 0, 1]]), np.array([1.0, -2.0]),
    ...                           (4, 2, 3))
    >>> entries.n_observed, entries.observed_fraction
    (2, 0.08333333333333333)
    """

    def __init__(self, indices, values, shape):
        shape = _check_shape(shape)
        indices = _check_indices(indices, shape)
        values = _as_backend_tensor("values", values)
        if tuple(tl.shape(values)) != (len(indices),):
            raise ValueError(
                f"values must be a 1-D array with one value per entry of indices "
                f"({len(indices)}), got shape {tuple(tl.shape(values))}."
            )
        _check_float_tensor("values", values)
        _check_unique(indices, shape)
        # Copies, so that the checked entries stay as checked: a NaN the caller writes
        # into its own array later must not reach the solvers unseen.
        indices, values = np.array(indices, copy=True), tl.copy(values)
        indices.setflags(write=False)
        context = tl.context(values)
        self._indices = indices
        self._coordinates = Coordinates(indices, context)
        self._set_shape(shape, context)
        self.observed_fraction = len(indices) / math.prod(shape)
        self._values = values

    @classmethod
    def _trusted(cls, indices, coordinates, values, shape):
        """Entries the package built (no checks), sharing ``coordinates``."""
        entries = cls.__new__(cls)
        entries._indices, entries._coordinates, entries._values = indices, coordinates, values
        entries._set_shape(tuple(shape), tl.context(values))
        entries.observed_fraction = len(indices) / math.prod(shape)
        return entries

    def _with_values(self, values):
        """The same coordinates with other values (no checks: the package computed them)."""
        entries = ObservedEntries.__new__(ObservedEntries)
        entries.__dict__.update({key: value for key, value in self.__dict__.items()
                                 if key not in ("_norm_parts_cache", "_subspaces")})
        entries._values = values
        return entries

    def __repr__(self):
        return f"ObservedEntries({self.n_observed} entries of a tensor of shape {self.shape})"

    def _contract_modes(self, blocks, modes):
        parts = _observed_contract(self._coordinates, self._values, blocks, self.shape, modes)
        return [part / self.observed_fraction for part in parts]

    def _evaluate_blocks(self, blocks):
        total = sum(tl.dot(self._values[rows], terms)
                    for rows, terms in _entry_terms(self._coordinates, blocks))
        return total / self.observed_fraction

    def minus(self, weights, V):
        """The same entries holding ``values - model`` (``O(n_obs m N)``, in blocks)."""
        weights = _as_weights(weights, tl.shape(V)[1], self.context)
        model = _observed_model(self._coordinates, split_blocks(V, self.shape), weights)
        return self._with_values(self._values - model)

    def _norm_parts(self):
        return _values_norm_parts(self._values, self.observed_fraction)

    def to_dense(self):
        """The observed entries, zero elsewhere (``P_Omega(T)``); only for small shapes."""
        if math.prod(self.shape) > _DENSE_ENTRIES:
            raise ValueError(
                f"A tensor of shape {self.shape} has more than {_DENSE_ENTRIES} entries: "
                "too large to densify. Work with its contractions instead."
            )
        dense = np.zeros(self.shape, dtype=tl.to_numpy(self._values).dtype)
        dense[tuple(self._indices.T)] = tl.to_numpy(self._values)
        return tl.tensor(dense, **self.context)

    def observed_values(self):
        """The values at :meth:`observed_indices`, a length-``n_observed`` tensor."""
        return self._values


class GeneralCPOperator(GeneralOperator):
    """A general CP tensor ``sum_r w_r u_1r (x) ... (x) u_Nr``, never densified.

    Contractions go through the factor Grams ``U_k^T V_k``: ``O(r m sum(shape))``.
    """

    def __init__(self, cp_tensor, name="tensor"):
        weights, factors = cp_tensor
        if not isinstance(factors, (list, tuple)) or len(factors) < 2:
            raise ValueError(f"{name} must be a CP tensor with at least 2 factors (order >= 2).")
        factors = [_check_factor(f"{name} factors[{k}]", factor)
                   for k, factor in enumerate(factors)]
        ranks = [tl.shape(factor)[1] for factor in factors]
        if len(set(ranks)) != 1:
            raise ValueError(
                f"{name} factors must all have the same number of columns (the rank); "
                f"their column counts are {ranks}."
            )
        if weights is None:
            weights = tl.ones(ranks[0], **tl.context(factors[0]))
        weights = _as_backend_tensor(f"{name} weights", weights)
        if tuple(tl.shape(weights)) != (ranks[0],):
            raise ValueError(
                f"{name} weights must have shape ({ranks[0]},) to match the factors, "
                f"got {tuple(tl.shape(weights))}."
            )
        _check_float_tensor(f"{name} weights", weights)
        self.weights, self.factors = weights, factors
        self._set_shape([tl.shape(factor)[0] for factor in factors], tl.context(factors[0]))

    def _contract_modes(self, blocks, modes):
        return _cp_contract_modes(self.weights, self.factors, blocks, modes)

    def _evaluate_blocks(self, blocks):
        return _cp_evaluate(self.weights, self.factors, blocks)

    def _norm_parts(self):
        # Squared at unit scale: weights and factors divided by powers of two.
        weight_scale = _power_of_two_below(_max_abs(self.weights))
        scales = [_power_of_two_below(_max_abs(factor)) for factor in self.factors]
        unit = _cp_norm_sq(self.weights / weight_scale,
                           [factor / scale for factor, scale in zip(self.factors, scales)])
        return weight_scale * math.prod(scales), unit

    def to_dense(self):
        return tl.cp_to_tensor((self.weights, self.factors))


class GeneralResidual(GeneralOperator):
    """``base - sum_a weights_a v_1a (x) ... (x) v_Na`` for a fully observed ``base``, lazily.

    Contractions subtract the CP part's (through Grams); the norm comes from
    the expansion ``|T|^2 - 2 w . T(V) + w^T overlap(V) w``, clipped at 0.
    """

    def __init__(self, base, weights, V):
        if base.observed_fraction != 1.0:
            raise ValueError("GeneralResidual needs a fully observed base; a partly observed "
                             "operator builds its explicit residual in its own minus().")
        self.base = base
        self.weights = _as_weights(weights, tl.shape(V)[1], base.context)
        self.factors = split_blocks(V, base.shape)
        self._set_shape(base.shape, base.context)
        self.is_dense, self.norm_is_estimate = base.is_dense, base.norm_is_estimate

    def _contract_modes(self, blocks, modes):
        base = self.base._contract_modes(blocks, modes)
        model = _cp_contract_modes(self.weights, self.factors, blocks, modes)
        return [b - c for b, c in zip(base, model)]

    def _evaluate_blocks(self, blocks):
        return (self.base._evaluate_blocks(blocks)
                - _cp_evaluate(self.weights, self.factors, blocks))

    def _compute_norm_sq(self):
        cross = float(tl.sum(self.weights * self.base._evaluate_blocks(self.factors)))
        model = float(_cp_norm_sq(self.weights, self.factors))
        return max(self.base.norm_sq - 2 * cross + model, 0.0)

    def to_dense(self):
        return self.base.to_dense() - tl.cp_to_tensor((self.weights, self.factors))


# --- checks and the entry point --------------------------------------------------------------

def _to_numpy(value):
    return np.asarray(tl.to_numpy(value) if tl.is_tensor(value) else value)


def _index_column(column, context):
    """One mode's observed indices as the backend indexes with (numpy stays numpy)."""
    column = np.ascontiguousarray(column)
    return column if tl.get_backend() == "numpy" else _on_device(column, context)


def _check_dense_shape(name, shape):
    if len(shape) < 2:
        raise ValueError(f"{name} must have order >= 2, got shape {tuple(shape)}.")
    if 0 in shape:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}); pass a non-empty tensor.")


def _check_dense_values(name, values, masked):
    """Float dtype and finite entries; ``values`` holds zeros where a mask hides entries."""
    try:
        _check_float_tensor(name, values)
    except ValueError:
        if masked:
            raise ValueError(f"{name} contains NaN or inf at observed entries (where mask is "
                             "True); remove or impute them, or set mask False there.") from None
        raise ValueError(f"{name} contains NaN or inf. If those entries are missing, pass "
                         "mask=np.isfinite(tensor) (True where observed).") from None


def _check_mask(mask, shape):
    """The mask as a numpy bool array of ``shape`` observing at least one entry."""
    array = _to_numpy(mask)
    if array.shape != tuple(shape):
        raise ValueError(f"mask must have the shape of tensor, {tuple(shape)}; "
                         f"got {array.shape}.")
    if array.dtype != bool:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise TypeError(f"mask must be boolean (True where an entry is observed), "
                            f"got dtype {array.dtype}.")
        invalid = (array != 0) & (array != 1)
        if invalid.any():
            raise ValueError(f"mask must be boolean, or hold only 0 and 1; it holds "
                             f"{array[invalid][0].item()!r}. Pass a boolean array such as "
                             "np.isfinite(tensor).")
        array = array == 1
    if not array.any():
        raise ValueError("mask observes no entry (it is False everywhere); "
                         "mark the observed entries True.")
    return array


def _check_shape(shape):
    valid = isinstance(shape, (tuple, list)) and len(shape) >= 2 and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape)
    if not valid:
        raise ValueError(f"shape must be a tuple of at least 2 integers >= 1 (the tensor's "
                         f"dimensions), got {shape!r}.")
    return tuple(int(n) for n in shape)


def _as_index_array(name, value):
    array = _to_numpy(value)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer positions, got dtype {array.dtype}; "
                        f"pass np.asarray({name}, dtype=int) if they are whole numbers.")
    return array


def _check_indices(indices, shape):
    """The coordinates as a fresh read-only ``(n_obs, N)`` int64 array, each in range."""
    order = len(shape)
    if isinstance(indices, (tuple, list)):
        if len(indices) != order:
            raise ValueError(f"indices given as a tuple must hold one integer array per mode "
                             f"(like np.nonzero): {order} for shape {shape}, got {len(indices)}.")
        columns = [_as_index_array(f"indices[{k}]", column) for k, column in enumerate(indices)]
        lengths = {column.shape for column in columns}
        if len(lengths) != 1 or len(columns[0].shape) != 1:
            raise ValueError(f"indices must hold 1-D arrays of one length, one per mode; got "
                             f"shapes {[column.shape for column in columns]}.")
        array = np.stack(columns, axis=1)
    else:
        array = _as_index_array("indices", indices)
        if array.ndim != 2 or array.shape[1] != order:
            raise ValueError(f"indices must have shape (n_obs, {order}) (one row per entry, "
                             f"like np.argwhere), got {array.shape}; for one array per mode, "
                             "pass a tuple (like np.nonzero).")
    if len(array) == 0:
        raise ValueError("indices holds no entries; pass at least one observed entry.")
    for k, size in enumerate(shape):
        outside = (array[:, k] < 0) | (array[:, k] >= size)
        if outside.any():
            raise ValueError(f"indices for mode {k} must be in [0, {size - 1}] (shape[{k}] = "
                             f"{size}); got {array[:, k][outside][0]}.")
    array = np.array(array, dtype=np.int64)
    array.flags.writeable = False
    return array


def _check_unique(indices, shape):
    if math.prod(shape) < 2**63:
        order = np.argsort(np.ravel_multi_index(tuple(indices.T), shape), kind="stable")
    else:
        order = np.lexsort(indices.T[::-1])
    repeated = np.all(indices[order[1:]] == indices[order[:-1]], axis=1)
    if repeated.any():
        example = tuple(int(i) for i in indices[order[1:][repeated][0]])
        raise ValueError(f"indices has {int(repeated.sum())} duplicated coordinates (e.g. "
                         f"{example} appears more than once); each observed entry must appear "
                         "once: combine the duplicates (sum or average) first.")


def _check_factor(name, factor):
    factor = _as_backend_tensor(name, factor)
    if len(tl.shape(factor)) != 2 or 0 in tl.shape(factor):
        raise ValueError(f"{name} must be a non-empty 2-D (n_k x rank) array, "
                         f"got shape {tuple(tl.shape(factor))}.")
    _check_float_tensor(name, factor)
    return factor


def is_dense_input(tensor):
    """Whether ``tensor`` is a dense array (the one form a mask goes with)."""
    return not (isinstance(tensor, GeneralOperator) or is_cp_tensor(tensor) or tensor is None)


def as_general_operator(tensor, mask=None, name="tensor"):
    """The general operator for a target of order ``N >= 3``.

    Parameters
    ----------
    tensor : array, CPTensor, (weights, factors), ObservedEntries or GeneralOperator
        A dense array (numpy or backend tensor); a general CP tensor (factors
        of shapes ``(n_k, rank)``, ``weights`` None for ones); the observed
        entries of a tensor as coordinates; or an operator, returned as is.
    mask : array of bool (or of 0 and 1), optional
        Only with a dense array: True where an entry is observed. Entries
        where it is False are never read (NaN allowed there). A mask that is
        True everywhere gives the full-tensor operator.
    name : str, default="tensor"
        The argument's name in error messages.

    Returns
    -------
    GeneralOperator
        :class:`DenseTensor`, :class:`MaskedTensor`, :class:`GeneralCPOperator`
        or the given :class:`ObservedEntries` / operator.
    """
    if isinstance(tensor, GeneralOperator) or is_cp_tensor(tensor):
        if mask is not None:
            reason = ("an ObservedEntries already says which entries are observed"
                      if isinstance(tensor, ObservedEntries) else "it is not a dense array")
            raise ValueError(f"mask must be None for this {name}: {reason}. A mask goes with "
                             "a dense array only.")
        operator = (tensor if isinstance(tensor, GeneralOperator)
                    else GeneralCPOperator(tensor, name))
    elif tensor is None:
        raise TypeError(f"{name} must be a dense array, a CPTensor or an ObservedEntries, "
                        "got None.")
    elif _is_coordinate_tuple(tensor):
        raise TypeError(
            f"{name} is an (indices, values, shape) tuple; wrap it as "
            f"ObservedEntries(indices, values, shape) to pass the observed entries of a "
            "tensor (from tensorly_gfdeflate import ObservedEntries).")
    else:
        dense = _as_backend_tensor(name, tensor)
        _check_order(name, tl.shape(dense))
        if mask is not None and _check_mask(mask, tuple(tl.shape(dense))).all():
            mask = None  # every entry observed: the full-tensor operator, p = 1
        operator = DenseTensor(dense, name) if mask is None else MaskedTensor(dense, mask, name)
    _check_order(name, operator.shape)
    return operator


def _is_coordinate_tuple(value):
    """Whether ``value`` looks like ``(indices, values, shape)``: three items, the last a shape."""
    if not isinstance(value, tuple) or len(value) != 3:
        return False
    shape = value[2]
    return isinstance(shape, (tuple, list)) and all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in shape)


def _check_order(name, shape):
    if len(shape) < 3:
        raise ValueError(f"{name} must have order >= 3 (a tensor, not a vector or matrix), "
                         f"got shape {tuple(shape)}; for a matrix use a matrix factorization.")
