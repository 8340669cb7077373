"""The one interface every target gives the layers above: contractions, norms, noise, observed entries.

A solver never indexes a target. Symmetric targets
(:mod:`tensorly_gfdeflate.targets.symmetric`, :mod:`~tensorly_gfdeflate.targets.cumulants`)
and general ones (:mod:`tensorly_gfdeflate.targets.general`) implement
:class:`Target`; :class:`~tensorly_gfdeflate.targets.base.TensorOperator`
supplies the defaults of a fully observed, exact tensor, so the layers above
call every method on every target without asking what kind it is. The
mathematics is in the theory page, section :ref:`theory-target`.
"""

from typing import Protocol, runtime_checkable

__all__ = ["Target"]


@runtime_checkable
class Target(Protocol):
    """A tensor seen through contractions with a batch of directions ``V`` (one per column).

    For a symmetric target ``V`` is ``dim x m`` and a column is one unit
    vector; for a general one the column stacks one vector per mode
    (``dim = sum(shape)``).
    """

    shape: tuple
    order: int
    dim: int

    @property
    def context(self) -> dict:
        """``tl.context`` of the tensors it computes with (backend, device, dtype)."""

    @property
    def norm_sq(self) -> float:
        """Squared Frobenius norm (exact, or a documented estimate: see ``norm_is_estimate``)."""

    @property
    def norm(self) -> float:
        """Frobenius norm, without the overflow of squaring extreme entries."""

    #: True when ``norm_sq`` is a statistical estimate; no solver stops on a residual against it.
    norm_is_estimate: bool
    #: True for a dense array, whose noise is sized from its residual.
    is_dense: bool
    #: The fraction of the entries observed (1.0 unless only some are).
    observed_fraction: float

    @property
    def n_observed(self) -> int:
        """How many entries are observed."""

    @property
    def is_sampled(self) -> bool:
        """Whether it is a sample statistic with a standard error."""

    def contract(self, V):
        """``T(v^{l-1}, I)`` per column (general: every mode's contraction, stacked like ``V``)."""

    def evaluate(self, V):
        """``T(v^l)`` per column: a length-``m`` vector."""

    def overlap(self, V):
        """``m x m`` Gram matrix of the rank-one terms of ``V`` in the target's inner product."""

    def minus(self, weights, V) -> "Target":
        """The target minus ``sum_a weights_a`` (rank-one term of column ``a``), still a target."""

    def rescaled(self, factor) -> "Target":
        """The target times the positive number ``factor``."""

    def standard_error(self, V):
        """Standard error of ``T(v^l)`` per column, or None for an exact tensor."""

    def start_subspaces(self):
        """Per mode, a numpy basis where random starts concentrate, or None."""

    def to_dense(self):
        """The dense array (for tests and small problems only)."""
