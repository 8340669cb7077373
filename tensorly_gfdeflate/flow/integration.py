"""Explicit Euler integration of the flow, and the plain refinement flow (``lambda = 0``).

See :ref:`theory-variants` (steps and back-off) and :ref:`theory-readout`
(the refinement).
"""

import warnings

import numpy as np
import tensorly as tl

from .._checks import user_stacklevel
from ..check.readout import canonical_signs
from .trace import FlowEvent

__all__ = ["Integrator", "refine", "polish", "POLISH_GOAL"]

# Rounding slack on "the loss rose", relative to the loss at W = 0.
_LOSS_SLACK = 1e-9
_LOSS_SLACK_IN_EPS = 100.0
# Step-size halvings allowed before giving up on a diverging run (in a row, adaptive).
_MAX_BACK_OFFS = 30
# The adaptive step: Euler's local error per step relative to |W|, the safety factor on
# the step that meets it, and the largest growth per step.
STEP_TOLERANCE = 0.1
_STEP_SAFETY = 0.9
_STEP_GROWTH = 1.2
# The adaptive step times the curvature along it stays below this: |1 - 1.5| = 0.5 of a
# stiff direction's error is left after each step.
_STEP_DAMPING = 1.5
# A step whose error asks for less than this fraction of it is taken again, shorter
# (below, the next step is shortened instead).
_STEP_REJECT = 0.5
# The adaptive step never goes below this fraction of the default step (only the
# divergence back-off halves it further).
_MIN_STEP_FRACTION = 0.5
# The refinement stops once 100 steps improve the loss by less than this fraction.
_REFINE_STALL = 1e-3
_REFINE_MAX_STEPS = 20000
# The polish stops at this relative residual (an exact fit, to rounding), or once
# _POLISH_WINDOW sweeps improve the loss by less than _REFINE_STALL, or after
# _POLISH_MAX_SWEEPS sweeps.
POLISH_GOAL = 1e-13
_POLISH_WINDOW = 5
_POLISH_MAX_SWEEPS = 500
# Below the rounding floor of the loss, the polish stops once a sweep moves no entry of
# a unit vector (nor a relative weight) by more than this.
_POLISH_SETTLED = 1e-12
_POLISH_FLOOR_SWEEPS = 20
# A squared residual computed by expansion rounds to about this many eps times the
# square of |T| + sum |w| (as in the check's bound, check.probe).
_EXPANSION_ROUNDING_IN_EPS = 64.0


class Integrator:
    """Explicit Euler steps on the loss of ``model`` on ``target``, with divergence back-off and a step record.

    With ``adaptive``, the step follows the flow: Euler's local error is
    estimated for free from the gradients at both ends of a step (the
    difference to Heun's step, ``h/2 |g_1 - g_0|``), kept near
    ``STEP_TOLERANCE`` relative to ``|W|``, and the step grows on the long
    plateaus (up to ``max_step``) and shrinks in the short transitions. Time
    stays flow time: the step is the time it advances.
    """

    def __init__(self, target, model, W, signs, regularization, step_size, warn=True,
                 adaptive=False, max_step=None):
        self.target, self.model, self.signs = target, model, signs
        self.regularization, self.warn = regularization, warn
        self.step_size = self.initial_step = step_size
        self.adaptive, self.max_step = adaptive, max_step or step_size
        self.min_step = _MIN_STEP_FRACTION * step_size
        self.time, self.back_offs, self.rejections = 0.0, 0, 0
        self.events = []
        self.W = W
        self.point = model.point(target, W, signs, regularization)
        # The loss rounds to about eps of its scale: 1e-9 is below float32's noise.
        slack = max(_LOSS_SLACK, _LOSS_SLACK_IN_EPS * float(tl.eps(tl.context(W)["dtype"])))
        self.loss_slack = slack * max(self.point.loss, 0.5 * target.norm_sq)
        self.times, self.losses, self.residuals, self.norms = [], [], [], []
        self._record()

    def _record(self):
        self.times.append(self.time)
        self.losses.append(self.point.loss)
        self.residuals.append(self.point.residual)
        norms = self.point.norms
        # A numpy step's norms are a fresh array: kept as is, no dispatch per step.
        self.norms.append(norms if isinstance(norms, np.ndarray) else tl.to_numpy(norms))

    def _point(self, W):
        return self.model.point(self.target, W, self.signs, self.regularization)

    def step(self):
        """One Euler step; if it overshoots, stay at the last good point and halve the step.

        Below ``2 / curvature`` an Euler step never raises the loss, so a rise
        (beyond rounding) or a non-finite loss means the step is too large.
        """
        step = self.step_size
        W = self.W - step * self.point.gradient
        point = self._point(W)
        if np.isfinite(point.loss) and point.loss <= self.point.loss + self.loss_slack:
            wanted = self._wanted_step(point, step) if self.adaptive else step
            if wanted < _STEP_REJECT * step:
                # Far too coarse to follow the flow: the same step, shorter.
                self.rejections += 1
                self.step_size = wanted
                return
            self.W, self.point = W, point
            self.time += step
            self.rejections = 0
            self.step_size = min(max(wanted, _STEP_REJECT * step), self.max_step)
            self._record()
            return
        self.rejections += 1
        if self.adaptive and self.rejections <= _MAX_BACK_OFFS // 2:
            # Step control: the adaptive step grew past what the loss allows here. Halved
            # and not recorded (a back-off event means a fixed step that diverged);
            # only a run of rises makes it a back-off.
            self.step_size = step / 2
            self.min_step = min(self.min_step, self.step_size)
            return
        self.back_offs += 1
        if (self.rejections if self.adaptive else self.back_offs) > _MAX_BACK_OFFS:
            raise FloatingPointError(
                f"the gradient flow diverges even with step_size={self.step_size:.3g}; "
                "lower step_size (or init_scale) and check the tensor for extreme entries."
            )
        self.step_size /= 2
        # A rise below the adaptive floor lowers the floor: the divergence back-off rules.
        self.min_step = min(self.min_step, self.step_size)
        self.events.append(FlowEvent(self.time, "step_reduced", ()))
        if self.back_offs == 1 and self.warn:
            warnings.warn(
                f"step_size={self.initial_step:.3g} overshoots: the loss rose at "
                f"t={self.time:.4g}. Backed off to the last good point and halved the step "
                "(trace.step_size has the final one). Pass a smaller step_size to avoid this.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def _wanted_step(self, point, step):
        """The next step the error and stability bounds ask for, never below ``min_step``.

        The floor (half the default step, which is stable on its own) keeps
        the step from collapsing where the bounds read rounding noise: at a
        settled point the gradients, and their difference, are at rounding.
        """
        return max(step * self._step_growth(point, step), self.min_step)

    def _step_growth(self, point, step):
        """The factor to the step that follows the flow faithfully and stably: below
        ``_STEP_REJECT`` this step is taken again, shorter.

        Two bounds, both read off the gradients ``g_0``, ``g_1`` at the ends of
        the step, at no extra cost. Accuracy: Euler's local error
        ``h/2 |g_1 - g_0|`` (the difference to Heun's step) is second order in
        the step, so the step scales as the square root of ``STEP_TOLERANCE
        |W| / error``. Stability: the curvature along the step,
        ``<g_0 - g_1, g_0> / (h |g_0|^2)``, caps ``h`` at ``_STEP_DAMPING`` over
        it, where a stiff direction (a fitted component's size) still decays
        by half per step; near Euler's edge (``2 / curvature``) it would
        oscillate, at a loss too flat for the back-off to see. The step grows
        at most ``_STEP_GROWTH`` times per step.
        """
        # Three inner products, each one pass without temporaries (on a large W the
        # elementwise differences and squares cost a fifth of a step).
        g0, g1 = _flat(self.point.gradient), _flat(point.gradient)
        slope, across, after = float(g0 @ g0), float(g1 @ g0), float(g1 @ g1)
        error = 0.5 * step * max(after - 2.0 * across + slope, 0.0) ** 0.5
        size = float(_flat(self.W) @ _flat(self.W)) ** 0.5
        factor = _STEP_GROWTH
        if error > 0.0 and size > 0.0:
            factor = min(factor, _STEP_SAFETY * (STEP_TOLERANCE * size / error) ** 0.5)
        bending = slope - across
        if bending > 0.0 and slope > 0.0:
            # curvature * step = bending / slope (a gradient so small that its square
            # underflows says nothing about the curvature).
            factor = min(factor, _STEP_DAMPING * slope / bending)
        return factor

    def retarget(self, target):
        """Continue on ``target`` (same shape) from the current ``W``."""
        self.target = target
        self.point = self._point(self.W)

    def set_signs(self, signs):
        """New slot signs (adaptive re-draws), effective from the next point."""
        self.signs = signs

    def replace(self, W):
        """Move to ``W`` (an epoch intervention) without taking a step."""
        self.W = W
        self.point = self._point(W)
        self.times[-1], self.losses[-1], self.residuals[-1] = (
            self.time, self.point.loss, self.point.residual)
        self.norms[-1] = tl.to_numpy(self.point.norms)


def _flat(array):
    """``array`` as one vector (a view when contiguous), for inner products by ``@``."""
    return array.reshape(-1)


def _out_of_reach(before, after, goal, steps_left):
    """Whether a loss that fell from ``before`` to ``after`` in 100 steps cannot reach ``goal`` in ``steps_left``.

    Projected at its current rate, per step: linear convergence keeps its
    rate, slower (sublinear) convergence only loses rate, so the projection
    is the best case.
    """
    if after <= goal:
        return False
    if after >= before:
        return True
    return 100.0 * np.log(after / goal) / np.log(before / after) > steps_left


def refine(target, model, weights, vectors, step_size, tol, give_up=False):
    """The exact polish (:func:`polish`), then, if it could not run or stopped short, the plain
    gradient flow (lambda = 0, no re-draws) from the read-out, to fit exactly low-rank targets.

    The flow stops at the relative residual ``tol``, once 100 steps improve the loss
    by less than ``_REFINE_STALL``, or after ``_REFINE_MAX_STEPS``; with
    ``give_up``, also once ``tol`` is out of reach within those steps (see
    :func:`_out_of_reach`). Returns ``(mass, directions, steps)``, the steps
    counting polish sweeps and flow steps.
    """
    weights, vectors = canonical_signs(model, weights, vectors)
    weights, vectors, sweeps, settled = polish(target, model, weights, vectors, give_up)
    if settled:
        return weights, vectors, sweeps
    weights, vectors = canonical_signs(model, weights, vectors)
    signs = tl.sign(weights) + (weights == 0)
    W = model.slots(vectors, tl.sqrt(tl.abs(weights)))
    # A refinement's back-offs are its own business: its result is checked.
    integrator = Integrator(target, model, W, signs, 0.0, step_size, warn=False)
    trusted_residual = not target.norm_is_estimate
    goal = 0.5 * tol**2 * target.norm_sq
    for step in range(_REFINE_MAX_STEPS):
        if trusted_residual and integrator.point.residual <= tol:
            break
        # Loss differences are exact even when |T*|^2 is only estimated. Counted in
        # recorded steps: a step rejected by the back-off records none.
        losses = integrator.losses
        if len(losses) > 100 and losses[-101] - losses[-1] < _REFINE_STALL * abs(losses[-1]):
            break
        if give_up and len(losses) > 100 and _out_of_reach(
                losses[-101], losses[-1], goal, _REFINE_MAX_STEPS - step):
            break
        integrator.step()
    point = integrator.point
    return point.mass, point.directions, step + sweeps


def polish(target, model, weights, vectors, give_up=False):
    """The model's exact polish (alternating least squares, or its symmetric counterpart), sweep by sweep.

    Stops once the relative residual is ``POLISH_GOAL`` (an exactly low-rank
    target fitted to rounding; below the rounding floor of the residual's
    expansion, once a sweep moves the components by at most
    ``_POLISH_SETTLED``), once ``_POLISH_WINDOW`` sweeps improve the
    loss by less than ``_REFINE_STALL`` (a least-squares point: the gradient
    flow would stall there too), after ``_POLISH_MAX_SWEEPS``, or, with
    ``give_up``, once the goal is out of reach. A sweep that raises the loss
    (the symmetric update is not a descent method everywhere) or leaves it
    non-finite is undone, and the gradient flow takes over. Returns
    ``(weights, vectors, sweeps, settled)``; not ``settled``: the flow should
    continue from there.
    """
    if not hasattr(model, "polish_sweep"):
        return weights, vectors, 0, False
    losses = [_residual_sq(target, weights, vectors)]
    at_floor = 0
    slack = _LOSS_SLACK * target.norm_sq
    goal = POLISH_GOAL**2 * target.norm_sq
    for sweep in range(1, _POLISH_MAX_SWEEPS + 1):
        new_weights, new_vectors = model.polish_sweep(target, weights, vectors)
        loss = _residual_sq(target, new_weights, new_vectors)
        if not (np.isfinite(loss) and loss <= losses[-1] + slack):
            return weights, vectors, sweep, False
        moved = _moved(weights, vectors, new_weights, new_vectors)
        weights, vectors = new_weights, new_vectors
        losses.append(loss)
        if loss <= _rounding_floor(target, weights):
            # A residual computed by expansion (a CP target) rounds to noise here, and
            # may be clipped to 0: the factors, not the loss, say when it is done (a
            # few sweeps at most: diverging components raise the floor with their weights).
            at_floor += 1
            if moved <= _POLISH_SETTLED or at_floor >= _POLISH_FLOOR_SWEEPS:
                break
            continue
        if not target.norm_is_estimate and loss <= goal:
            break
        if len(losses) > _POLISH_WINDOW:
            before = losses[-1 - _POLISH_WINDOW]
            if before - loss < _REFINE_STALL * abs(loss) or (give_up and _out_of_reach(
                    before, loss, goal, (_POLISH_MAX_SWEEPS - sweep) * 100 / _POLISH_WINDOW)):
                break
    return weights, vectors, sweep, True


def _moved(weights, vectors, new_weights, new_vectors):
    """How far a sweep moved the components: the largest change of a unit vector's entry or a
    weight (relative to the largest weight)."""
    scale = float(tl.max(tl.abs(weights))) or 1.0
    return max(float(tl.max(tl.abs(new_weights - weights))) / scale,
               float(tl.max(tl.abs(new_vectors - vectors))))


def _rounding_floor(target, weights):
    """The squared residual below which an expansion ``|T|^2 - 2 <T, M> + |M|^2`` is rounding."""
    eps = float(tl.eps(target.context["dtype"]))
    scale = 1.0 + float(tl.sum(tl.abs(weights)))
    return _EXPANSION_ROUNDING_IN_EPS * eps * scale**2 * target.norm_sq


def _residual_sq(target, weights, vectors):
    return float(target.minus(weights, vectors).norm_sq)
