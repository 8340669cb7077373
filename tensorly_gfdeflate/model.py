"""The over-parametrized model ``T(W) = sum_j s_j |w_j|^2 b_j^(x)l`` and its loss gradient.

Everything the flow needs at a point ``W`` comes from one operator call on the
unit directions ``B`` and the ``m x m`` Gram matrix ``B^T B``: the gradient,
the loss and the relative residual, in ``O(operator + m^2 d)``.
"""

from dataclasses import dataclass

import numpy as np
import tensorly as tl

__all__ = ["FlowPoint", "flow_point", "split_columns"]

_TINY = 1e-30
# The residual is reported no lower than this many sqrt(eps) of the dtype: 1.7e-4 in
# float32, far above the default tol, and 7e-9 in float64, below the tolerances used.
# (Rounding noise measured at exact fits: up to 2.3 sqrt(eps).)
_RESOLUTION_IN_SQRT_EPS = 0.5


def split_columns(W):
    """Column norms ``n`` and unit directions ``B = W / n`` of ``W``."""
    norms = tl.sqrt(tl.sum(W * W, axis=0))
    return norms, W / tl.clip(norms, _TINY)


@dataclass
class FlowPoint:
    """The model at one point ``W``: what a step, a stop rule and a read-out look at.

    ``growth_rate`` is ``d log|w_j| / dt = 2 s_j (T* - T(W))(b_j^l) - lambda``.
    """

    norms: object
    directions: object
    mass: object
    gradient: object
    growth_rate: object
    loss: float
    residual: float


def flow_point(target, W, signs, regularization):
    """Gradient, loss and relative residual of ``1/2 |T(W) - T*|^2 + lambda/2 |W|^2``.

    ``target`` is the (normalized) operator ``T*``, ``signs`` the fixed ``s_j``.
    """
    order = target.order
    norms, directions = split_columns(W)
    mass = signs * norms**2
    gram = tl.dot(tl.transpose(directions), directions)
    gram_pow = gram ** (order - 1)
    # <T(W), b_j^l> = sum_k mass_k G_kj^l and <T*, b_j^l> come from m x m and
    # length-m arithmetic, so the d x m work is the two contractions alone.
    model_values = tl.dot(mass, gram_pow * gram)
    target_contraction = target.contract(directions)
    target_values = tl.sum(directions * target_contraction, axis=0)
    residual_value = model_values - target_values
    residual_contraction = (
        tl.dot(directions, tl.reshape(mass, (-1, 1)) * gram_pow) - target_contraction
    )
    # grad_j = s_j n_j [(2 - l) R(b_j^l) b_j + l R(b_j^{l-1}, I)] + lambda w_j, with
    # n_j b_j = w_j: one scaling of W and one of the residual contraction.
    gradient = W * ((2 - order) * signs * residual_value + regularization) + (
        residual_contraction * (order * signs * norms)
    )

    model_sq = tl.sum(mass * model_values)
    cross = tl.sum(mass * target_values)
    residual_sq = float(model_sq) - 2.0 * float(cross) + target.norm_sq
    loss = 0.5 * residual_sq + 0.5 * regularization * float(tl.sum(norms**2))
    # The expansion cancels: near sqrt(eps) of the dtype (3e-4 in float32) the
    # residual is rounding noise, and a negative one clipped to 0 would meet any
    # tolerance; it is reported no lower than a floor instead.
    resolution = _RESOLUTION_IN_SQRT_EPS * np.sqrt(float(tl.eps(tl.context(W)["dtype"])))
    residual = max(np.sqrt(max(residual_sq, 0.0) / target.norm_sq), resolution)
    return FlowPoint(
        norms=norms,
        directions=directions,
        mass=mass,
        gradient=gradient,
        growth_rate=-2.0 * signs * residual_value - regularization,
        loss=loss,
        residual=float(residual),
    )
