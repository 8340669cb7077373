"""Over-parametrized gradient flow for symmetric tensor decomposition.

Ge, Ren, Wang and Zhou (NeurIPS 2021): gradient flow from a small random point
fits the largest component first, then the next, like tensor deflation. The
flow is integrated by explicit Euler steps on the target normalized to unit
Frobenius norm, in three variants (``"vanilla"``, ``"paper"``, ``"merge"``).
"""

import warnings

import numpy as np
import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

from ._checks import (
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_random_state,
)
from .model import flow_point
from .operators import as_operator, normalize
from .power_method import power_iterate
from .readout import (
    ALIGNMENT_TOL,
    canonical_signs,
    group_aligned,
    pooled_directions,
    read_out,
    refit_weights,
    to_cp_tensor,
)
from .synthetic import random_unit_vectors
from .trace import FlowEvent, FlowTrace, SlotLineage, discovery_times

__all__ = ["gradient_flow_cp", "FlowRun", "start_flow", "continue_flow", "VARIANTS"]

VARIANTS = ("vanilla", "paper", "merge")

# Rounding slack on "the loss rose", relative to the loss at W = 0.
_LOSS_SLACK = 1e-9
_LOSS_SLACK_IN_EPS = 100.0
# Step-size halvings allowed before giving up on a diverging run.
_MAX_BACK_OFFS = 30
# The relative loss decrease over an epoch under which the flow looks for what is left.
_PLATEAU_DROP = 1e-2
# Vanilla "nothing moves": loss decrease below this over an epoch, and no slot grew 2x.
_STALL_DROP = 1e-6
# Random starts (at least) when looking for a residual direction worth fitting.
_PROBE_RANDOM_STARTS = 16
# Power iterations spent looking for a residual direction worth fitting.
_PROBE_ITERATIONS = 30
# The refinement stops once 100 steps improve the loss by less than this fraction.
_REFINE_STALL = 1e-3
_REFINE_MAX_STEPS = 20000


class _Integrator:
    """Explicit Euler steps on the loss, with divergence back-off and a step record."""

    def __init__(self, target, W, signs, regularization, step_size):
        self.target, self.signs, self.regularization = target, signs, regularization
        self.step_size = self.initial_step = step_size
        self.time, self.back_offs = 0.0, 0
        self.events = []
        self.W = W
        self.point = flow_point(target, W, signs, regularization)
        # The loss rounds to about eps of its scale: 1e-9 is below float32's noise.
        slack = max(_LOSS_SLACK, _LOSS_SLACK_IN_EPS * float(tl.eps(tl.context(W)["dtype"])))
        self.loss_slack = slack * max(self.point.loss, 0.5 * target.norm_sq)
        self.times, self.losses, self.residuals, self.norms = [], [], [], []
        self._record()

    def _record(self):
        self.times.append(self.time)
        self.losses.append(self.point.loss)
        self.residuals.append(self.point.residual)
        self.norms.append(tl.to_numpy(self.point.norms))

    def step(self):
        """One Euler step; if it overshoots, stay at the last good point and halve the step.

        Below ``2 / curvature`` an Euler step never raises the loss, so a rise
        (beyond rounding) or a non-finite loss means the step is too large.
        """
        W = self.W - self.step_size * self.point.gradient
        point = flow_point(self.target, W, self.signs, self.regularization)
        if np.isfinite(point.loss) and point.loss <= self.point.loss + self.loss_slack:
            self.W, self.point = W, point
            self.time += self.step_size
            self._record()
            return
        self.back_offs += 1
        if self.back_offs > _MAX_BACK_OFFS:
            raise FloatingPointError(
                f"the gradient flow diverges even with step_size={self.step_size:.3g}; "
                "lower step_size (or init_scale) and check the tensor for extreme entries."
            )
        self.step_size /= 2
        self.events.append(FlowEvent(self.time, "step_reduced", ()))
        if self.back_offs == 1:
            warnings.warn(
                f"step_size={self.initial_step:.3g} overshoots: the loss rose at "
                f"t={self.time:.4g}. Backed off to the last good point and halved the step "
                "(trace.step_size has the final one). Pass a smaller step_size to avoid this.",
                RuntimeWarning,
                stacklevel=4,
            )

    def retarget(self, target):
        self.target = target
        self.point = flow_point(target, self.W, self.signs, self.regularization)

    def replace(self, W):
        """Move to ``W`` (an epoch intervention) without taking a step."""
        self.W = W
        self.point = flow_point(self.target, W, self.signs, self.regularization)
        self.times[-1], self.losses[-1], self.residuals[-1] = (
            self.time, self.point.loss, self.point.residual)
        self.norms[-1] = tl.to_numpy(self.point.norms)


def _resolve_signs(signs, width, order):
    if signs is None:
        return np.ones(width)
    if isinstance(signs, str) and signs == "mixed":
        if order % 2:
            return np.ones(width)
        return np.where(np.arange(width) % 2 == 0, 1.0, -1.0)
    try:
        values = np.asarray(signs, dtype=float).ravel()
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.shape != (width,) or not np.all(np.isin(values, (-1.0, 1.0))):
        raise ValueError(
            f"signs must be None, 'mixed' or {width} values (one per width slot), "
            f"each +1 or -1; got {signs!r}."
        )
    if order % 2 and np.any(values < 0):
        raise ValueError(
            "signs must all be +1 for an odd-order tensor: there -w_j already gives the "
            "negative component. Pass signs=None."
        )
    return values


def _redraw(W, slots, init_scale, rng, context, seeds=None):
    """Columns ``slots`` of ``W`` replaced by fresh directions of norm ``init_scale``.

    The first slots start on the columns of ``seeds`` (if given), the others
    on uniform random directions.
    """
    d, m = tl.shape(W)
    keep = np.ones(m)
    keep[slots] = 0.0
    fresh = np.zeros((d, m))
    fresh[:, slots] = init_scale * tl.to_numpy(random_unit_vectors(d, len(slots), rng))
    if seeds is not None:
        seeded = slots[: tl.shape(seeds)[1]]
        fresh[:, seeded] = init_scale * tl.to_numpy(seeds[:, : len(seeded)])
    return W * tl.tensor(keep, **context) + tl.tensor(fresh, **context)


def _merge_aligned(W, point, order):
    """Each group of aligned slots collapses into its leader's slot.

    The merged slot carries the group's summed mass along its mass-weighted mean
    direction. Returns the new ``W`` and the groups of more than one slot.
    """
    groups = [g for g in group_aligned(point.directions, point.mass, order, ALIGNMENT_TOL)
              if len(g) > 1]
    if not groups:
        return W, []
    mass = tl.to_numpy(point.mass)
    keep = np.ones(len(mass))
    placement = np.zeros((len(groups), len(mass)))
    for g, (leader, *absorbed) in enumerate(groups):
        keep[[leader, *absorbed]] = 0.0
        placement[g, leader] = np.sqrt(abs(mass[[leader, *absorbed]].sum()))
    context = tl.context(W)
    merged = tl.dot(pooled_directions(point.directions, mass, groups),
                    tl.tensor(placement, **context))
    return W * tl.tensor(keep, **context) + merged, groups


def _relative_drop(before, after):
    """How much the loss fell from ``before`` to ``after``, relative to ``before``."""
    return (before - after) / max(before, 1e-300)


def _slots_still_pooling(point, order, min_mass):
    """Whether two fitted slots share a component without having merged yet.

    Such slots drift together at a rate set by the regularizer alone (pooling
    lowers the penalty ``sum |mass|``); stopping before they meet reads out a
    split component, which the refinement then turns into a wrong decomposition.
    """
    mass = np.abs(tl.to_numpy(point.mass))
    fitted = np.flatnonzero(mass >= min_mass)
    if len(fitted) < 2:
        return False
    directions = point.directions[:, fitted.tolist()]
    gram = tl.to_numpy(tl.dot(tl.transpose(directions), directions))
    alignment = gram if order % 2 else np.abs(gram)
    np.fill_diagonal(alignment, 0.0)
    return bool(np.any(alignment >= 1.0 - ALIGNMENT_TOL))


def _count_fitted(point, order, min_mass):
    """Number of distinct components carried by slots of |mass| >= ``min_mass``."""
    fitted = np.flatnonzero(np.abs(tl.to_numpy(point.mass)) >= min_mass).tolist()
    if not fitted:
        return 0
    return len(group_aligned(point.directions[:, fitted], point.mass[fitted], order,
                             ALIGNMENT_TOL))


def _probe_residual(target, point, signs, rng, threshold):
    """The largest residual weight ``R(v^l)`` (signed as the slots allow) along a probed direction.

    The directions are the model's own (the small ones have spent an epoch
    aligning with the residual) plus random ones, power-iterated on the
    residual ``T* - T(W)``. The lambda-shrinkage left on fitted components
    attracts many random starts, so there are never fewer than
    ``_PROBE_RANDOM_STARTS`` of them.

    Also returns the distinct probed directions of weight above ``threshold``
    that a ``+1`` slot can fit, best first: re-drawn slots of the merge variant
    start there. In high dimension a uniform direction needs flow time of
    order ``d^{(l-2)/2} / a`` to align with a component of weight ``a`` (and
    epochs shorter than that re-draw it first); a probed one is aligned already.
    """
    residual = target.minus(point.mass, point.directions)
    m = tl.shape(point.directions)[1]
    extra = random_unit_vectors(target.dim, max(m, _PROBE_RANDOM_STARTS), rng, target.context)
    starts = tl.concatenate([point.directions, extra], axis=1)
    probes, _ = power_iterate(residual, starts, _PROBE_ITERATIONS, 1e-8)
    values = tl.to_numpy(residual.evaluate(probes))
    both_signs = target.order % 2 == 1 or np.any(np.asarray(signs) < 0)
    largest = float(np.max(np.abs(values) if both_signs else values))
    if target.order % 2:
        # c v^l = (-c)(-v)^l: point every probe at its positive weight.
        flip = np.where(values < 0, -1.0, 1.0)
        probes = probes * tl.tensor(flip, **target.context)
        values = values * flip
    worth = [int(j) for j in np.argsort(-values, kind="stable") if values[j] > threshold]
    if not worth:
        return largest, None
    groups = group_aligned(probes[:, worth], tl.tensor(values[worth], **target.context),
                           target.order, ALIGNMENT_TOL)
    return largest, probes[:, [worth[group[0]] for group in groups]]


class FlowRun:
    """A gradient-flow run that can be continued; what :func:`gradient_flow_cp` drives.

    Holds the model, the epoch schedule, the random generator and the record,
    so that ``advance(t)`` twice is ``advance(2 t)`` once (``warm_start`` of
    :class:`~tensorly_gfdeflate.GradientFlowCP`).
    """

    def __init__(self, operator, settings, slot_signs, rng):
        self.operator, self.settings, self.rng = operator, settings, rng
        self.target, self.scale = normalize(operator)
        self.slot_signs = slot_signs
        context = self.target.context
        width = settings["width"]
        W = settings["init_scale"] * random_unit_vectors(self.target.dim, width, rng, context)
        self.integrator = _Integrator(self.target, W, tl.tensor(slot_signs, **context),
                                      settings["regularization"], settings["step_size"])
        self.lineage = SlotLineage(width)
        self.epoch = 0
        self.epoch_length = settings["epoch_time"]
        self.boundary = self.epoch_length
        self._start_epoch()
        self.stop_reason = None
        # Residual directions found by the last epoch's probe: where re-drawn slots start.
        self.seeds = None

    def retarget(self, operator):
        """Continue on ``operator`` (same shape) from the current model."""
        if operator.shape != self.operator.shape:
            raise ValueError(
                f"warm_start=True continues a flow on a tensor of shape {self.operator.shape}, "
                f"got shape {operator.shape}; set warm_start=False to start afresh."
            )
        self.operator = operator
        self.target, self.scale = normalize(operator)
        self.integrator.retarget(self.target)

    def _start_epoch(self):
        self.epoch_loss = self.checkpoint_loss = self.integrator.point.loss
        self.epoch_norms = tl.to_numpy(self.integrator.point.norms)
        self.checkpoint = self.integrator.time + self.settings["epoch_time"]

    def advance(self, duration, callback=None, verbose=False):
        """Integrate for up to ``duration`` more time units; returns the stop reason."""
        horizon = self.integrator.time + duration
        while True:
            reason = self._stop_reason(horizon, verbose)
            if reason is not None:
                break
            self.integrator.step()
            if callback is not None and _call_back(callback, self.integrator) is True:
                reason = "callback"
                break
        self.stop_reason = reason
        return reason

    def _stop_reason(self, horizon, verbose):
        """Check the stop rules; at an epoch boundary, also apply the variant's interventions."""
        point = self.integrator.point
        if point.residual <= self.settings["tol"] and not self.target.norm_is_estimate:
            return "tolerance"
        if self.integrator.time >= horizon:
            return "max_time"
        if self.integrator.time < self.boundary:
            return self._checkpoint_reason()
        self.epoch += 1
        drop = _relative_drop(self.epoch_loss, point.loss)
        if verbose:
            self._report()
        reason = self._settled_reason(drop)
        if reason is None:
            self._intervene()
            self.epoch_length *= 1.0 + self.settings["epoch_growth"]
            self.boundary += self.epoch_length
            self._start_epoch()
        return reason

    def _checkpoint_reason(self):
        """Inside a long epoch, stop once ``rank`` components are fitted and the loss is flat.

        Every ``epoch_time`` of flow time (no intervention, no probe: both wait
        for the boundary), so that a fit which settles early does not idle until
        the next, ever more distant, boundary.
        """
        s = self.settings
        if s["rank"] is None or self.integrator.time < self.checkpoint:
            return None
        loss = self.integrator.point.loss
        drop = _relative_drop(self.checkpoint_loss, loss)
        self.checkpoint = self.integrator.time + s["epoch_time"]
        self.checkpoint_loss = loss
        if self._is_settled(drop) and self._rank_fitted():
            return "rank_reached"
        return None

    def _is_settled(self, drop):
        """The loss fell by less than ``_PLATEAU_DROP`` and no fitted slots are still pooling."""
        return drop < _PLATEAU_DROP and not _slots_still_pooling(
            self.integrator.point, self.target.order, self.settings["drop_threshold"])

    def _rank_fitted(self):
        """Whether ``rank`` (when given) distinct components are fitted."""
        rank = self.settings["rank"]
        return rank is not None and rank <= _count_fitted(
            self.integrator.point, self.target.order, self.settings["drop_threshold"])

    def _settled_reason(self, drop):
        s, point = self.settings, self.integrator.point
        settled = self._is_settled(drop)
        if settled and self._rank_fitted():
            return "rank_reached"
        fit_threshold = max(s["regularization"], s["tol"])
        self.seeds = None
        if settled:
            largest, self.seeds = _probe_residual(self.target, point, self.integrator.signs,
                                                  self.rng, fit_threshold)
            if largest <= fit_threshold:
                return "nothing_to_fit"
        if s["variant"] == "vanilla":
            norms = tl.to_numpy(point.norms)
            grew = np.any(norms**2 >= 2 * self.epoch_norms**2)
            if drop < _STALL_DROP and not grew:
                return "stalled"
        return None

    def _intervene(self):
        """Merge aligned slots (merge variant), then re-draw the small ones (paper, merge)."""
        s, integrator = self.settings, self.integrator
        if s["variant"] == "vanilla":
            return
        W, snapshot = integrator.W, len(integrator.times) - 1
        if s["variant"] == "merge":
            W, groups = _merge_aligned(W, integrator.point, self.target.order)
            for leader, *absorbed in groups:
                self.lineage.merge(leader, absorbed, snapshot)
                integrator.events.append(FlowEvent(
                    integrator.time, "merge", tuple(int(j) for j in (leader, *absorbed))))
        norms = np.sqrt(np.sum(tl.to_numpy(W) ** 2, axis=0))
        small = np.flatnonzero(norms < s["reinit_threshold"]).tolist()
        if small:
            W = _redraw(W, small, s["init_scale"], self.rng, self.target.context,
                        self.seeds if s["variant"] == "merge" else None)
            integrator.events.append(FlowEvent(integrator.time, "redraw", tuple(small)))
            self.lineage.redraw(small, snapshot)
        integrator.replace(W)

    def _report(self):
        point = self.integrator.point
        fitted = int(np.sum(tl.to_numpy(point.norms) >= self.settings["reinit_threshold"]))
        print(
            f"[gradient_flow_cp] epoch {self.epoch} t={self.integrator.time:.1f} "
            f"loss={point.loss:.3e} residual={point.residual:.3e} "
            f"components>{self.settings['reinit_threshold']:g}: {fitted}"
        )

    def result(self, debias, with_trace):
        """Read out (and refine) the current model: a CPTensor, and the trace if asked."""
        s, target, integrator = self.settings, self.target, self.integrator
        weights, vectors, groups = read_out(
            target, integrator.W, integrator.signs, s["rank"], s["drop_threshold"], debias,
            min_weight=s["regularization"] / 2)
        refine_steps = 0
        if weights is None:
            warnings.warn("gradient_flow_cp fitted no component; returning an empty CPTensor.",
                          ConvergenceWarning, stacklevel=3)
            weights = tl.zeros(0, **target.context)
            vectors = tl.zeros((target.dim, 0), **target.context)
        elif debias:
            weights, vectors, refine_steps = _refine(
                target, weights, vectors, integrator.step_size, s["tol"])
            weights = refit_weights(target, vectors)
        if s["rank"] is not None and len(groups) < s["rank"]:
            warnings.warn(
                f"gradient_flow_cp found {len(groups)} components, fewer than "
                f"rank={s['rank']}; increase width or max_time.", ConvergenceWarning,
                stacklevel=3)
        cp, permutation = to_cp_tensor(weights, vectors, target.order, self.scale)
        if not with_trace:
            return cp, None
        return cp, self._trace(cp, [groups[i] for i in permutation], refine_steps)

    def _trace(self, cp, groups, refine_steps):
        from .measures import relative_error

        integrator = self.integrator
        times, norms = np.asarray(integrator.times), np.asarray(integrator.norms)
        return FlowTrace(
            times=times,
            loss=np.asarray(integrator.losses),
            residual=np.asarray(integrator.residuals),
            norms=norms,
            signs=self.slot_signs,
            events=list(integrator.events),
            discovery_time=discovery_times(times, norms, self.slot_signs, self.lineage, groups),
            component_slots=groups,
            stop_reason=self.stop_reason,
            step_size=integrator.step_size,
            scale=self.scale,
            refine_steps=refine_steps,
            final_error=relative_error(self.operator, cp),
        )


def _call_back(callback, integrator):
    """The user's callback; its exception propagates unchanged, with a note naming it."""
    try:
        return callback(integrator)
    except Exception as error:
        error.add_note(
            f"raised by the callback passed to gradient_flow_cp, at flow time "
            f"t={integrator.time:.4g}; the run was abandoned. Fix or remove callback."
        )
        raise


def _refine(target, weights, vectors, step_size, tol):
    """Plain gradient flow (lambda = 0, no re-draws) from the read-out, to fit exactly low-rank targets."""
    weights, vectors = canonical_signs(weights, vectors, target.order)
    signs = tl.sign(weights) + (weights == 0)
    W = vectors * tl.reshape(tl.sqrt(tl.abs(weights)), (1, -1))
    integrator = _Integrator(target, W, signs, 0.0, step_size)
    trusted_residual = not target.norm_is_estimate
    for step in range(_REFINE_MAX_STEPS):
        if trusted_residual and integrator.point.residual <= tol:
            break
        # Loss differences are exact even when |T*|^2 is only estimated. Counted in
        # recorded steps: a step rejected by the back-off records none.
        losses = integrator.losses
        if len(losses) > 100 and losses[-101] - losses[-1] < _REFINE_STALL * abs(losses[-1]):
            break
        integrator.step()
    point = integrator.point
    return point.mass, point.directions, step


def _check_settings(operator, *, rank, width, variant, regularization, init_scale,
                    reinit_threshold, epoch_time, epoch_growth, step_size, max_time, tol):
    variant = check_choice("variant", variant, VARIANTS)
    if rank is not None:
        rank = check_int("rank", rank, 1)
    if width is None:
        # Spare slots: an odd-order slot can start on the wrong side of every
        # component and stall, and merges need free slots to re-draw.
        width = max(2 * rank, 8) if rank is not None else min(operator.dim, 50)
    width = check_int("width", width, 1)
    if rank is not None and width < rank:
        raise ValueError(
            f"width={width} must be >= rank={rank}: the flow fits at most width components; "
            "increase width (default max(2 * rank, 8)) or lower rank."
        )
    if regularization is None:
        regularization = 0.0 if variant == "vanilla" else 1e-3
    if step_size is None:
        step_size = 0.3
    regularization = check_nonnegative("regularization", regularization)
    reinit_threshold = check_positive("reinit_threshold", reinit_threshold)
    return dict(
        rank=rank,
        width=width,
        variant=variant,
        regularization=regularization,
        init_scale=check_positive("init_scale", init_scale),
        reinit_threshold=reinit_threshold,
        # Slots the re-draw rule treats as noise are not components.
        drop_threshold=reinit_threshold**2,
        epoch_time=check_positive("epoch_time", epoch_time),
        epoch_growth=check_nonnegative("epoch_growth", epoch_growth),
        step_size=check_positive("step_size", step_size),
        max_time=check_positive("max_time", max_time),
        tol=check_positive("tol", tol),
    )


def gradient_flow_cp(
    tensor,
    rank=None,
    *,
    width=None,
    variant="merge",
    regularization=None,
    init_scale=1e-3,
    reinit_threshold=1e-2,
    epoch_time=20.0,
    epoch_growth=0.5,
    step_size=None,
    max_time=5000.0,
    tol=1e-6,
    signs=None,
    debias=True,
    random_state=None,
    callback=None,
    return_trace=False,
    verbose=False,
):
    """Symmetric CP decomposition by over-parametrized gradient flow.

    Runs gradient flow on ``1/2 |T(W) - T*|^2 + lambda/2 |W|^2`` with
    ``T(W) = sum_j s_j |w_j|^2 (w_j/|w_j|)^(x)l`` from a small random ``W``
    (Ge, Ren, Wang and Zhou, NeurIPS 2021), reads the fitted components out,
    and refines them with ``lambda = 0``.

    Parameters
    ----------
    tensor : dense symmetric array, symmetric CPTensor or SampleMoments
        The target ``T*`` of order ``l >= 2``, in any tensorly backend.
        Structured forms are never densified.
    rank : int >= 1 or None, default=None
        Keep the ``rank`` largest components. ``None``: every component the
        flow fitted (automatic rank, set by ``regularization``).
    width : int >= 1, optional
        Number ``m`` of model components. Default: ``max(2 * rank, 8)``, or
        ``min(dim, 50)`` when ``rank`` is None. The flow fits at most ``width``
        components.
    variant : {"merge", "paper", "vanilla"}, default="merge"
        ``"vanilla"``: plain gradient flow (``lambda = 0`` unless given).
        ``"paper"``: the paper's modified flow, re-drawing components of norm
        below ``reinit_threshold`` at each epoch boundary. ``"merge"``: as
        ``"paper"``, and aligned components are first merged into the largest
        so that the freed slots can discover the remaining directions; when
        the epoch's power probe of the residual ran, re-drawn slots start on
        the directions it found (the rest uniformly at random).
    regularization : float >= 0, optional
        ``lambda``, relative to the target's Frobenius norm. A component of
        weight ``a`` is fitted only if ``a > lambda / 2`` (times the norm).
        Default: 0 for ``"vanilla"``, 1e-3 otherwise.
    init_scale : float > 0, default=1e-3
        ``delta0``: norm of the initial and re-drawn components (unit-norm target).
    reinit_threshold : float > 0, default=1e-2
        ``delta1``: components with ``|w_j|`` below it are re-drawn at epoch
        boundaries, and components of mass below its square are dropped at
        read-out.
    epoch_time : float > 0, default=20.0
        Length (in flow time) of the first epoch.
    epoch_growth : float >= 0, default=0.5
        ``gamma``: each epoch is ``1 + gamma`` times longer than the last.
    step_size : float > 0, optional
        Euler step ``eta`` on the unit-norm target. Default:
        0.3. A step that raises the loss (beyond rounding) is undone and the
        step halved, with a RuntimeWarning the first time; after 30 halvings a
        FloatingPointError says to lower ``step_size``.
    max_time : float > 0, default=5000.0
        Time horizon; reaching it raises a ConvergenceWarning.
    tol : float > 0, default=1e-6
        Stop once the relative residual ``|T(W) - T*| / |T*|`` is below
        ``tol``; also the target of the refinement. The residual is computed
        by an expansion that rounds to noise near ``sqrt(eps)`` and is
        reported no lower than ``sqrt(eps) / 2`` (1.7e-4 in float32, 7e-9 in
        float64): a smaller ``tol`` is never met and the other stop rules end
        the run.
    signs : None, "mixed" or array of +-1 of shape (width,)
        The fixed signs ``s_j``. None: all +1. "mixed": alternating +1 and -1
        (even orders; needed for negative weights).
    debias : bool, default=True
        Re-fit the weights of the kept directions by least squares and refine
        them by gradient flow with ``lambda = 0`` (removes the ``lambda / 2``
        shrinkage; exactly low-rank targets are then fitted to ``tol``).
    random_state : None, int or numpy.random.RandomState
        Seed of the initialization and re-draws; numpy's global random state
        is never used.
    callback : callable, optional
        Called after every Euler step with the integrator (attributes ``time``,
        ``point.loss``, ``point.residual``, ``point.norms``, ``W``). Returning
        True stops the flow; the result is read out from that point. An
        exception raised by ``callback`` propagates unchanged, with a note
        naming ``callback`` and the flow time.
    return_trace : bool, default=False
        Also return a :class:`FlowTrace`.
    verbose : bool, default=False
        Print one line per epoch.

    Returns
    -------
    CPTensor or (CPTensor, FlowTrace)
        ``(weights, [V] * order)`` sorted by ``|weight|`` descending, ``V`` with
        unit columns, in the backend, device and dtype of the input.

    Notes
    -----
    The flow stops when the residual is below ``tol``; or when, at an epoch
    boundary, the loss fell by less than 1% over the epoch and power
    iterations on the residual find no direction of weight above
    ``max(regularization, tol)``; or, with ``rank`` given, once ``rank``
    components are fitted and the loss fell by less than 1% over the last
    ``epoch_time`` (checked every ``epoch_time``, not only at boundaries); or
    (vanilla) when nothing moves any more; or at ``max_time``. On moment tensors of data, sampling noise leaves residual
    directions of weight about ``1/sqrt(n_samples)``: give ``rank``, or a
    ``regularization`` above that level, or the flow fits noise until
    ``max_time``.

    Examples
    --------
    >>> from tensorly_gfdeflate import gradient_flow_cp, random_symmetric_cp
    >>> truth = random_symmetric_cp(10, 3, 4, random_state=0)
    >>> cp = gradient_flow_cp(truth, random_state=0)
    >>> [round(float(w), 4) for w in cp.weights]
    [1.0, 0.3162, 0.1]
    """
    debias = check_bool("debias", debias)
    return_trace = check_bool("return_trace", return_trace)
    verbose = check_bool("verbose", verbose)
    run = start_flow(tensor, rank=rank, width=width, variant=variant,
                     regularization=regularization, init_scale=init_scale,
                     reinit_threshold=reinit_threshold, epoch_time=epoch_time,
                     epoch_growth=epoch_growth, step_size=step_size, max_time=max_time,
                     tol=tol, signs=signs, random_state=random_state, callback=callback)
    continue_flow(run, max_time, callback=callback, verbose=verbose)
    cp, trace = run.result(debias, with_trace=return_trace)
    return (cp, trace) if return_trace else cp


def start_flow(tensor, *, callback=None, random_state=None, signs=None, **options):
    """Validate the arguments of :func:`gradient_flow_cp` and set up a :class:`FlowRun`."""
    operator = as_operator(tensor)
    settings = _check_settings(operator, **options)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    slot_signs = _resolve_signs(signs, settings["width"], operator.order)
    return FlowRun(operator, settings, slot_signs, check_random_state(random_state))


def continue_flow(run, duration, *, callback=None, verbose=False):
    """Advance ``run`` by ``duration``; warn if it stops at that horizon."""
    if run.advance(duration, callback=callback, verbose=verbose) == "max_time":
        warnings.warn(
            f"gradient_flow_cp reached max_time={duration:g} with relative residual "
            f"{run.integrator.point.residual:.3g}; increase max_time or step_size.",
            ConvergenceWarning,
            stacklevel=3,
        )
