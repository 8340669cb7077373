"""The symmetric model ``T(W) = sum_j s_j |w_j|^2 b_j^(x)l``: its loss gradient and its geometry.

Everything the flow needs at a point ``W`` comes from one operator call on the
unit directions ``B`` and the ``m x m`` Gram matrix ``B^T B``: the gradient,
the loss and the relative residual, in ``O(operator + m^2 d)``.

:class:`SymmetricModel` is what the shared flow engine, the read-out, the
probe and the power method ask about components: random directions, slots of
a given size, alignment, pooling, sign convention, power iterations and the
final ``CPTensor``. :class:`tensorly_gfdeflate.models.general.GeneralModel`
answers the same questions for general CP tensors.
"""

import math
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from ..targets.base import int_power, machine_eps
from ..targets.symmetric import DenseOperator

__all__ = ["FlowPoint", "flow_point", "split_columns", "power_iterate", "random_unit_vectors",
           "SymmetricModel"]

_TINY = 1e-30
# A converged column still moves by about one machine epsilon per iteration (measured).
SETTLED_IN_EPS = 16.0
# The residual is reported no lower than this many sqrt(eps) of the dtype: 1.7e-4 in
# float32, far above the default tol, and 7e-9 in float64, below the tolerances used.
# (Rounding noise measured at exact fits: up to 2.3 sqrt(eps).)
_RESOLUTION_IN_SQRT_EPS = 0.5


def reported_residual(residual_sq, norm_sq, W):
    """The relative residual ``sqrt(residual_sq / norm_sq)`` a flow point reports.

    An expansion of the squared residual cancels: near sqrt(eps) of ``W``'s
    dtype (3e-4 in float32) it is rounding noise, and a negative one clipped to
    0 would meet any tolerance; it is reported no lower than a floor instead.
    """
    resolution = _RESOLUTION_IN_SQRT_EPS * np.sqrt(machine_eps(W.dtype))
    return float(max(np.sqrt(max(residual_sq, 0.0) / norm_sq), resolution))


def random_unit_vectors(dim, count, rng, context=None):
    """``dim x count`` matrix of independent columns uniform on the unit sphere."""
    draws = rng.standard_normal((dim, count))
    draws /= np.linalg.norm(draws, axis=0, keepdims=True)
    return tl.tensor(draws, **(context or {}))


def split_columns(W):
    """Column norms ``n`` and unit directions ``B = W / n`` of ``W``."""
    norms = (W * W).sum(axis=0) ** 0.5
    return norms, W / norms.clip(_TINY)


@dataclass
class FlowPoint:
    """The model at one point ``W``: what a step, a stop rule and a read-out look at.

    ``norms`` are such that a slot's mass is ``signs * norms**2``.
    """

    norms: object
    directions: object
    mass: object
    gradient: object
    loss: float
    residual: float


def flow_point(target, W, signs, regularization):
    """Gradient, loss and relative residual of ``1/2 |T(W) - T*|^2 + lambda/2 |W|^2``.

    ``target`` is the (normalized) operator ``T*``, ``signs`` the fixed ``s_j``.
    """
    order = target.order
    norms, directions = split_columns(W)
    mass = signs * norms**2
    gram = directions.T @ directions
    gram_pow = int_power(gram, order - 1)
    # <T(W), b_j^l> = sum_k mass_k G_kj^l and <T*, b_j^l> come from m x m and
    # length-m arithmetic, so the d x m work is the two contractions alone. Every
    # operation is the arrays' own: no backend dispatch per operation.
    model_values = mass @ (gram_pow * gram)
    target_contraction = target.contract(directions)
    target_values = (directions * target_contraction).sum(axis=0)
    residual_value = model_values - target_values
    residual_contraction = directions @ (mass.reshape(-1, 1) * gram_pow) - target_contraction
    # grad_j = s_j n_j [(2 - l) R(b_j^l) b_j + l R(b_j^{l-1}, I)] + lambda w_j, with
    # n_j b_j = w_j: one scaling of W and one of the residual contraction.
    gradient = W * ((2 - order) * signs * residual_value + regularization) + (
        residual_contraction * (order * signs * norms)
    )

    model_sq = (mass * model_values).sum()
    cross = (mass * target_values).sum()
    residual_sq = float(model_sq) - 2.0 * float(cross) + target.norm_sq
    loss = 0.5 * residual_sq + 0.5 * regularization * float((norms * norms).sum())
    return FlowPoint(
        norms=norms,
        directions=directions,
        mass=mass,
        gradient=gradient,
        loss=loss,
        residual=reported_residual(residual_sq, target.norm_sq, W),
    )


def settled_tolerance(tol, V):
    """``tol``, but no lower than a few machine epsilons of ``V``'s dtype (what float32 can settle to)."""
    return max(tol, SETTLED_IN_EPS * machine_eps(V.dtype))


def column_change(new, old):
    """How far each column moved, up to sign: ``min |new - old|, |new + old|``."""
    apart = ((new - old) ** 2).sum(axis=0) ** 0.5
    flipped = ((new + old) ** 2).sum(axis=0) ** 0.5
    # The smaller of the two, in the arrays' own operators (no dispatch per iteration).
    return 0.5 * (apart + flipped - abs(apart - flipped))


def normalize_columns(image, fallback):
    """Unit columns of ``image``; a column that vanished keeps its ``fallback`` column."""
    lengths = (image * image).sum(axis=0) ** 0.5
    vanished = lengths == 0
    # Dividing the vanished columns (all zero) by 1, not by a clipped 1e-300 (which is 0
    # in float32), and adding their fallback: exact, and no dispatch per iteration.
    return image / (lengths + vanished) + fallback * vanished


def power_iterate(operator, V, n_iter_max, tol):
    """Batched power iterations ``v <- T(v^{l-1}, I) / |T(v^{l-1}, I)|`` on the columns of V.

    Stops when every column moves by less than ``tol`` (up to sign), or by less
    than a few machine epsilons of the dtype, the most a float32 column can
    settle to. A column whose contraction vanishes stays where it is. Returns
    ``(V, iterations)``.
    """
    tol = settled_tolerance(tol, V)
    for iteration in range(1, n_iter_max + 1):
        image = normalize_columns(operator.contract(V), V)
        change = column_change(image, V)
        V = image
        if float(change.max()) < tol:
            break
    return V, iteration


def symmetric_polish(target, weights, vectors):
    """One least-squares-type sweep: every direction at once, then the least-squares weights.

    At a decomposition ``T* = sum_k c_k b_k^l`` the contractions satisfy
    ``T*(b_j^{l-1}, I) = sum_k c_k <b_k, b_j>^{l-1} b_k``, that is
    ``C = B (c G^{(l-1)})`` with ``G = B^T B`` (power elementwise): the
    directions solve that ``m x m`` system for the current ``C`` (for one
    component this is a power iteration, for several it removes their
    cross-talk), then the weights solve ``G^(l) c = T*(b^l)``. Not a descent
    method everywhere: the caller undoes a sweep that raises the loss.
    """
    order = target.order
    context = tl.context(vectors)
    cross = weights.reshape(-1, 1) * int_power(vectors.T @ vectors, order - 1)
    eye = tl.eye(cross.shape[0], **context)
    ridge = 1e-13 * float(abs(cross.diagonal()).sum()) + 1e-300
    solved = tl.transpose(tl.solve(tl.transpose(cross) + ridge * eye,
                                   tl.transpose(target.contract(vectors))))
    directions = normalize_columns(solved, vectors)
    gram = target.overlap(directions)
    ridge = 1e-13 * float(gram.diagonal().sum()) + 1e-300
    return tl.solve(gram + ridge * eye, target.evaluate(directions)), directions


def pool_block(directions, mass, groups):
    """Unit mass-weighted mean of each group's columns, signs aligned with its leader."""
    gram = tl.to_numpy(tl.dot(tl.transpose(directions), directions))
    pooling = np.zeros((len(mass), len(groups)))
    for c, group in enumerate(groups):
        pooling[group, c] = np.abs(mass[group]) * np.sign(gram[group[0], group])
    pooled = tl.dot(directions, tl.tensor(pooling, **tl.context(directions)))
    return pooled / tl.sqrt(tl.sum(pooled * pooled, axis=0))


class SymmetricModel:
    """Components ``c v^(x)l`` of a symmetric tensor: a unit ``v`` in ``R^d`` per column.

    The flow's slot ``j`` is the column ``w_j = |w_j| b_j`` with mass
    ``s_j |w_j|^2``; every method here takes and returns ``d x m`` matrices.
    """

    #: Power iterations spent looking for a residual direction worth fitting.
    probe_sweeps = 30

    def __init__(self, dim, order):
        self.dim, self.order = dim, order

    @classmethod
    def for_target(cls, target):
        """The model of ``target``'s shape (a symmetric target of any form)."""
        return cls(target.dim, target.order)

    @property
    def shape(self):
        return (self.dim,) * self.order

    @property
    def signs_in_vectors(self):
        """At odd order ``c v^l = (-c)(-v)^l``: a weight's sign can move into its vector."""
        return self.order % 2 == 1

    def point(self, target, W, signs, regularization):
        """:func:`flow_point`: the model at ``W``."""
        return flow_point(target, W, signs, regularization)

    def random(self, count, rng, context=None):
        """``count`` directions uniform on the unit sphere."""
        return random_unit_vectors(self.dim, count, rng, context)

    def split(self, W):
        """``(norms, directions)`` of the slots: ``mass = signs * norms**2``."""
        return split_columns(W)

    def slots(self, directions, norms):
        """Slots along ``directions`` with ``|mass| = norms**2``."""
        return directions * norms

    def alignment(self, directions):
        """``|<b_j, b_k>|`` (even order: ``b`` and ``-b`` are one component) or ``<b_j, b_k>``."""
        gram = tl.to_numpy(tl.dot(tl.transpose(directions), directions))
        return gram if self.order % 2 else np.abs(gram)

    def overlap(self, directions):
        """Gram matrix ``<b_j^l, b_k^l> = <b_j, b_k>^l`` of the rank-one tensors."""
        return tl.dot(tl.transpose(directions), directions) ** self.order

    def pool(self, directions, mass, groups):
        """Unit mass-weighted mean direction of each group, signs aligned with its leader."""
        return pool_block(directions, mass, groups)

    def negate(self, vectors, flip):
        """Vectors whose rank-one tensors are those of ``vectors`` times ``flip`` (+-1 per column).

        Only for :attr:`signs_in_vectors` models.
        """
        return vectors * tl.reshape(flip, (1, -1))

    def power_iterate(self, operator, V, n_iter_max, tol):
        return power_iterate(operator, V, n_iter_max, tol)

    def polish_sweep(self, target, weights, vectors):
        """One sweep of :func:`symmetric_polish`: ``(weights, vectors)``."""
        return symmetric_polish(target, weights, vectors)

    def parameters(self, count):
        """Free parameters of ``count`` components: a unit direction and a weight each."""
        return count * self.dim

    def degrees_of_freedom(self):
        """``(tensor, component)``: the distinct entries of a symmetric tensor of this shape,
        and the parameters of one component (a unit direction and a weight)."""
        return math.comb(self.dim + self.order - 1, self.order), self.dim

    def unit_noise(self, rng, max_entries):
        """A unit-norm Gaussian symmetric tensor (a dense target) and the factor to this shape.

        Drawn at the largest dimension ``d'`` whose ``d'^l`` entries fit
        ``max_entries``; the factor ``(d / d')^{(1 - l) / 2}`` is the ratio of
        the injective norm's growth (``sqrt(d)``) to the Frobenius norm's
        (``sqrt(d^l)``), without a slowly growing logarithmic factor.
        """
        measured = self.dim
        while measured > 2 and measured**self.order > max_entries:
            measured -= 1
        draw = rng.standard_normal((measured,) * self.order)
        noise = sum(np.transpose(draw, axes) for axes in permutations(range(self.order)))
        noise /= np.linalg.norm(noise)
        growth = (self.dim / measured) ** ((1 - self.order) / 2)
        return DenseOperator.from_trusted(tl.tensor(noise)), growth

    def to_cp(self, weights, vectors):
        return CPTensor((weights, [vectors] * self.order))
