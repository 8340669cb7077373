"""What every target shares: full-tensor defaults, input conversion, and the algebra of contractions.

:class:`TensorOperator` gives each target of :mod:`tensorly_gfdeflate.targets`
the defaults of a fully observed, exact tensor (norm from its parts, no
standard error, every entry observed, no spectral start); the forms override
only what differs. The functions below convert and check user input and
compute the contractions of CP tensors and the products that moment tensors
are built of.
"""

import itertools
import math
import sys
from functools import lru_cache

import numpy as np
import tensorly as tl

__all__ = [
    "TensorOperator",
    "int_power",
    "distinct_products",
    "products",
    "cp_contract",
    "cp_norm_sq",
    "concatenate_rows",
    "machine_eps",
]


# The inner loops (a flow step, a power iteration) use the arrays' own operators and
# methods (``@``, ``*``, ``.T``, ``.reshape``, ``.sum(axis=...)``), which numpy arrays and
# torch tensors share: no backend dispatch per operation (profiled at 55% of a small
# general fit when every operation went through ``tl.``). Only what the two spell
# differently goes through the helpers below, resolved by the array's type.

def concatenate_rows(arrays):
    """``arrays`` stacked along their first axis, in their own library (numpy or torch)."""
    first = arrays[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(arrays, axis=0)
    if type(first).__module__.startswith("torch"):
        return sys.modules["torch"].cat(list(arrays), 0)
    return tl.concatenate(list(arrays), axis=0)


@lru_cache(maxsize=None)
def machine_eps(dtype):
    """``tl.eps`` of ``dtype`` (a numpy or torch dtype), looked up once per dtype."""
    return float(tl.eps(dtype))


def int_power(tensor, exponent):
    """``tensor ** exponent`` (integer ``exponent >= 1``) by repeated products.

    numpy evaluates ``**`` with an integer exponent above 2 through ``pow`` per
    entry: 3 times slower than the products on an n x m block here (numpy 2.4).
    """
    result = tensor
    for _ in range(exponent - 1):
        result = result * tensor
    return result


@lru_cache(maxsize=32)
def distinct_products(dim, k):
    """The sorted ``k``-tuples of ``range(dim)``, and where each of the ``dim^k`` tuples goes.

    The second list gives, for each tuple in C order, the position of its
    sorted version in the first: a symmetric tensor's distinct entries and
    their copies.
    """
    combos = list(itertools.combinations_with_replacement(range(dim), k))
    position = {combo: i for i, combo in enumerate(combos)}
    return combos, [position[tuple(sorted(t))] for t in itertools.product(range(dim), repeat=k)]


def products(columns, combos):
    """``prod_t columns[c_t]`` for each tuple ``c`` of ``combos``: ``len(combos) x n``.

    ``columns`` holds one feature per row (``d x n``); any array with
    integer-list indexing and ``*`` works (a backend tensor, or numpy inside
    a Dask task).
    """
    indices = list(zip(*combos))
    result = columns[list(indices[0])]
    for index in indices[1:]:
        result = result * columns[list(index)]
    return result


def cp_contract(weights, vectors, V, order):
    """``sum_k weights_k <u_k, v>^(order-1) u_k`` for every column ``v`` of ``V``."""
    inner = int_power(vectors.T @ V, order - 1)
    return vectors @ (weights.reshape(-1, 1) * inner)


def cp_norm_sq(weights, vectors, order):
    """Squared Frobenius norm of ``sum_k weights_k u_k^(x)order``."""
    gram = tl.dot(tl.transpose(vectors), vectors) ** order
    return tl.sum(tl.reshape(weights, (-1, 1)) * gram * tl.reshape(weights, (1, -1)))


def _dtype_name(tensor):
    return str(tl.context(tensor)["dtype"]).replace("torch.", "")


def _check_float_tensor(name, tensor):
    dtype = _dtype_name(tensor)
    if "float" not in dtype or "complex" in dtype:
        raise TypeError(
            f"{name} has dtype {dtype}; pass a real floating-point array "
            f"(for example {name}.astype(float))."
        )
    if dtype in ("float16", "bfloat16"):
        # Half precision resolves about 1e-3: below the solvers' tolerances and floors,
        # and numpy's linear algebra refuses it.
        raise TypeError(
            f"{name} has dtype {dtype}, too coarse for the solvers (it resolves about 1e-3, "
            f"the scale of their tolerances); pass {name} in float32 or float64 (for "
            f"example {name}.astype('float32')).")
    # max propagates NaN, and |inf| is inf: one pass catches both, without warnings.
    if tl.shape(tensor) and 0 not in tl.shape(tensor) and not np.isfinite(_max_abs(tensor)):
        raise ValueError(f"{name} contains NaN or inf; remove or impute those entries.")


def _as_backend_tensor(name, value):
    """The backend tensor for ``value``, converting numpy arrays and lists."""
    if tl.is_tensor(value):
        # The solvers are not differentiated through: a tensor that requires
        # gradients (pytorch) would grow an autograd graph over thousands of
        # steps and hand the user results attached to it.
        if getattr(value, "requires_grad", False):
            value = value.detach()
        return value
    try:
        array = np.asarray(value)
    except ValueError:
        raise TypeError(
            f"{name} must be a numeric array or a tensor; got a ragged nested sequence "
            "(rows of different lengths). Pass a rectangular array."
        ) from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(
            f"{name} must be a numeric array or a tensor, got {type(value).__name__}."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"{name} has dtype {array.dtype}; pass a real floating-point array "
            f"(for example np.asarray({name}, dtype=float))."
        )
    return tl.tensor(array)


def _power_of_two_below(value):
    """The largest power of two ``<= value`` (1.0 for zero or non-finite ``value``).

    Dividing by it is exact in floating point, so a prescaled ``c * T`` with
    ``c`` a power of two is bit-for-bit the prescaled ``T``.
    """
    if not (value > 0 and np.isfinite(value)):
        return 1.0
    return float(np.ldexp(1.0, np.frexp(value)[1] - 1))


def _max_abs(tensor):
    return float(tl.max(tl.abs(tensor)))


def _symmetry_tolerance(tensor):
    eps = 1e-7 if "32" in _dtype_name(tensor) else 1e-16
    return np.sqrt(eps) * float(tl.max(tl.abs(tensor)))


class TensorOperator:
    """What every target form gives the solvers: its context, norm, noise and kind.

    Subclasses implement :meth:`_compute_norm_sq`, or :meth:`_norm_parts` to
    square at the scale of the entries; :class:`SymmetricOperator` and the
    general operators of :mod:`tensorly_gfdeflate.targets.general` add the
    contractions.
    """

    @property
    def context(self):
        """``tl.context`` of the tensors this operator computes with."""
        return self._context

    @property
    def norm_sq(self):
        """Squared Frobenius norm (exact, or the documented estimate for moments)."""
        magnitude, unit_norm_sq = self._cached_norm_parts()
        # Beyond the float range the square is inf (or 0), not an OverflowError.
        with np.errstate(over="ignore", under="ignore"):
            return float(np.float64(magnitude) ** 2 * unit_norm_sq)

    @property
    def norm(self):
        """Frobenius norm, without the overflow or underflow of squaring extreme entries."""
        magnitude, unit_norm_sq = self._cached_norm_parts()
        return magnitude * float(np.sqrt(unit_norm_sq))

    def _cached_norm_parts(self):
        if not hasattr(self, "_norm_parts_cache"):
            magnitude, unit_norm_sq = self._norm_parts()
            self._norm_parts_cache = (float(magnitude), float(unit_norm_sq))
        return self._norm_parts_cache

    def _norm_parts(self):
        """``(m, |T / m|^2)`` with ``m`` a power of two at the scale of the entries.

        Squaring at unit scale keeps the norm of ``1e+150 * T`` or
        ``1e-150 * T`` (or of a float32 tensor at ``1e+20``) representable.
        The default squares at the tensor's own scale.
        """
        return 1.0, self._compute_norm_sq()

    def _compute_norm_sq(self):
        raise NotImplementedError

    #: True when norm_sq is a statistical estimate (large SampleMoments): relative
    #: residuals are then approximate, and no solver stops on them.
    norm_is_estimate = False

    #: True for a dense array: its noise, if any, is sized from the residual
    #: (see :mod:`tensorly_gfdeflate.check.probe`).
    is_dense = False

    #: The fraction of the entries observed: below 1 for a completion target
    #: (:mod:`tensorly_gfdeflate.targets.general`), 1 for every other.
    observed_fraction = 1.0

    @property
    def n_observed(self):
        """How many entries are observed: all of them, unless a completion target says otherwise."""
        return math.prod(self.shape)

    def start_subspaces(self):
        """Per mode, an orthonormal numpy basis where random starts concentrate, or None.

        A fully observed tensor has none: starts are uniform on the sphere. A
        partly observed one gives its spectral start (see
        :mod:`tensorly_gfdeflate.targets.spectral`).
        """
        return None

    def standard_error(self, V):
        """Standard error of ``T(v^l)`` for each column of ``V``, or None for an exact tensor.

        Sample statistics estimate it from their data; a dense array or a CP
        tensor is taken as exact.
        """
        return None

    @property
    def is_sampled(self):
        """Whether the tensor is a sample statistic, with a standard error (an empty batch asks)."""
        return self.standard_error(tl.zeros((self.dim, 0), **self.context)) is not None
