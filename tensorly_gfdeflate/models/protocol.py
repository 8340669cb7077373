"""The one interface of the over-parametrized models, symmetric and general.

The flow, the check and the solvers ask a :class:`Model` every question about
components (random starts, slots of a given size, alignment, pooling, sign
convention, power iterations, degrees of freedom, the final ``CPTensor``)
and never look inside a slot. The mathematics is in the theory page,
sections :ref:`theory-model` and :ref:`theory-general`.
"""

from typing import Protocol, runtime_checkable

__all__ = ["Model", "check_rank_determinable"]


def check_rank_determinable(rank, target, model):
    """``rank``, refused when it exceeds the entries that could determine it.

    A decomposition of more components than the tensor has distinct entries
    (or observed entries, for a completion target) is never determined by
    them, and its slots alone can exhaust memory: it is refused before any
    work, with the bound.
    """
    entries = min(int(target.n_observed), int(model.degrees_of_freedom()[0]))
    if rank is not None and rank > entries:
        raise ValueError(
            f"rank={rank} exceeds the {entries} entries of the tensor that could determine "
            f"it: pass rank <= {entries}, or rank=None for the automatic rank.")
    return rank


@runtime_checkable
class Model(Protocol):
    """Components of a tensor of ``shape``; a batch of them is one ``dim x m`` matrix."""

    shape: tuple
    order: int
    dim: int
    #: Whether a weight's sign can move into the vectors (odd-order symmetric, general).
    signs_in_vectors: bool
    #: Power iterations the residual probe spends per start.
    probe_sweeps: int

    @classmethod
    def for_target(cls, target) -> "Model":
        """The model of ``target``'s shape (and spectral start, if it has one)."""

    def point(self, target, W, signs, regularization):
        """Loss, gradient, residual and slot geometry at ``W`` (a ``FlowPoint``)."""

    def random(self, count, rng, context=None):
        """``count`` random unit directions."""

    def split(self, W):
        """``(norms, directions)`` of the slots: ``mass = signs * norms**2``."""

    def slots(self, directions, norms):
        """Slots along ``directions`` with ``|mass| = norms**2``."""

    def alignment(self, directions):
        """numpy matrix of agreement between directions (1: the same component)."""

    def overlap(self, directions):
        """Gram matrix of the rank-one tensors of ``directions``."""

    def pool(self, directions, mass, groups):
        """One unit direction per group: the mass-weighted mean, signs aligned with the leader."""

    def negate(self, vectors, flip):
        """The components times ``flip`` (+-1 per column)."""

    def power_iterate(self, target, V, n_iter_max, tol):
        """Batched power iterations on ``target`` from the columns of ``V``: ``(V, iterations)``."""

    def parameters(self, count):
        """Free parameters of ``count`` components."""

    def degrees_of_freedom(self):
        """``(tensor, component)``: distinct entries of the tensor, parameters of one component."""

    def unit_noise(self, rng, max_entries):
        """A unit-norm Gaussian target of this kind (at most ``max_entries`` entries), and the
        factor that extrapolates its largest rank-one weight to this shape."""

    def to_cp(self, weights, vectors):
        """The ``CPTensor`` of unit ``vectors`` with ``weights``."""
