"""Over-parametrized gradient flow for symmetric tensor decomposition.

Ge, Ren, Wang and Zhou (NeurIPS 2021): gradient flow from a small random point
fits the largest component first, then the next, like tensor deflation. The
flow is integrated by explicit Euler steps on the target normalized to unit
Frobenius norm, in three variants (``"vanilla"``, ``"paper"``, ``"merge"``).
"""

import warnings
from collections import deque

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
from .readout import canonical_signs, group_aligned, read_out, refit_weights, to_cp_tensor
from .synthetic import random_unit_vectors
from .trace import FlowEvent, FlowTrace, SlotLineage, discovery_times

__all__ = ["gradient_flow_cp", "VARIANTS"]

VARIANTS = ("vanilla", "paper", "merge")

# Signs that the Euler step is too large, measured on 90 runs at the default step
# (orders 3 and 4, orthogonal and not, three variants): the loss exceeds
# _DIVERGENCE_FACTOR times the loss at W = 0 (blow-up); a step moves some column w_j by
# more than _MAX_RELATIVE_MOVE |w_j| (defaults: at most 0.8; steps of 2 to 50: 3.8 to
# 47); or the loss rose, by more than _RISE_TOL relative, in _OSCILLATION_RISES of the
# last _OSCILLATION_WINDOW steps: a 2-cycle or chaos below the ceiling, which ends with
# wrong components and no NaN (20 of 20 steps rising; stable runs: at most 1 of 20).
# The default step 0.5 is the stability limit 1 / (2 a) of a fitted weight a = 1, and
# 10 of the 90 runs (non-orthogonal targets) oscillated: those now halve it.
_DIVERGENCE_FACTOR = 10.0
_MAX_RELATIVE_MOVE = 2.0
_OSCILLATION_WINDOW = 20
_OSCILLATION_RISES = 5
_RISE_TOL = 1e-4
# Step-size halvings allowed before giving up on a diverging run.
_MAX_BACK_OFFS = 12
# The relative loss decrease over an epoch under which the flow looks for what is left.
_PLATEAU_DROP = 1e-2
# Vanilla "nothing moves": loss decrease below this over an epoch, and no slot grew 2x.
_STALL_DROP = 1e-6
# Power iterations spent looking for a residual direction worth fitting.
_PROBE_ITERATIONS = 30
# The refinement stops once 100 steps improve the residual by less than this fraction.
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
        self.loss_ceiling = _DIVERGENCE_FACTOR * max(self.point.loss, 0.5 * target.norm_sq)
        # Loss changes below this are rounding (100 eps of the loss scale |T*|^2).
        self.loss_noise = 100 * float(tl.eps(tl.context(W)["dtype"])) * target.norm_sq
        self.rises = deque(maxlen=_OSCILLATION_WINDOW)
        self.times, self.losses, self.residuals, self.norms = [], [], [], []
        self._record()

    def _record(self):
        self.times.append(self.time)
        self.losses.append(self.point.loss)
        self.residuals.append(self.point.residual)
        self.norms.append(tl.to_numpy(self.point.norms))

    def step(self):
        """One Euler step; a step too large is undone or, if oscillating, halved from here."""
        W = self.W - self.step_size * self.point.gradient
        moves = tl.sqrt(tl.sum((W - self.W) ** 2, axis=0)) / tl.clip(self.point.norms, 1e-30)
        point = None
        if float(tl.max(moves)) <= _MAX_RELATIVE_MOVE:
            point = flow_point(self.target, W, self.signs, self.regularization)
        if point is None or not (np.isfinite(point.loss) and point.loss <= self.loss_ceiling):
            self._back_off("diverge", "backed off to the last good point")
            return
        self.rises.append(point.loss > self.point.loss * (1 + _RISE_TOL) + self.loss_noise)
        self.W, self.point = W, point
        self.time += self.step_size
        self._record()
        if sum(self.rises) >= _OSCILLATION_RISES:
            self._back_off("oscillate", "kept the current point")

    def _back_off(self, what, how):
        self.back_offs += 1
        if self.back_offs > _MAX_BACK_OFFS:
            raise FloatingPointError(
                f"the gradient flow diverges even with step_size={self.step_size:.3g}; "
                "lower step_size (or init_scale) and check the tensor for extreme entries."
            )
        self.step_size /= 2
        self.rises.clear()
        self.events.append(FlowEvent(self.time, "step_reduced", ()))
        warnings.warn(
            f"step_size={self.initial_step:.3g} made the flow {what} at t={self.time:.4g}; "
            f"{how} and continued with step_size={self.step_size:.3g}. "
            "Pass a smaller step_size to avoid this.",
            RuntimeWarning,
            stacklevel=5,
        )

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


def _redraw(W, slots, init_scale, rng, context):
    """Columns ``slots`` of ``W`` replaced by fresh directions of norm ``init_scale``."""
    d, m = tl.shape(W)
    keep = np.ones(m)
    keep[slots] = 0.0
    fresh = np.zeros((d, m))
    fresh[:, slots] = init_scale * tl.to_numpy(random_unit_vectors(d, len(slots), rng))
    return W * tl.tensor(keep, **context) + tl.tensor(fresh, **context)


def _merge_aligned(W, point, order):
    """Each group of aligned slots collapses into its largest slot, carrying the summed mass.

    Returns the new ``W`` and the groups of more than one slot.
    """
    groups = [g for g in group_aligned(point.directions, point.mass, order) if len(g) > 1]
    if not groups:
        return W, []
    norms = tl.to_numpy(point.norms)
    mass = tl.to_numpy(point.mass)
    factor = np.ones(len(norms))
    for leader, *absorbed in groups:
        factor[leader] = np.sqrt(abs(mass[[leader, *absorbed]].sum())) / norms[leader]
        factor[absorbed] = 0.0
    return W * tl.tensor(factor, **tl.context(W)), groups


def _largest_fittable_weight(target, point, signs, rng):
    """The largest residual weight ``R(v^l)`` (signed as the slots allow) along a probed direction.

    The directions are the model's own (the small ones have spent an epoch
    aligning with the residual) plus as many random ones, power-iterated on
    the residual ``T* - T(W)``.
    """
    residual = target.minus(point.mass, point.directions)
    m = tl.shape(point.directions)[1]
    starts = tl.concatenate(
        [point.directions, random_unit_vectors(target.dim, m, rng, target.context)], axis=1
    )
    probes, _ = power_iterate(residual, starts, _PROBE_ITERATIONS, 1e-8)
    values = tl.to_numpy(residual.evaluate(probes))
    both_signs = target.order % 2 == 1 or np.any(np.asarray(signs) < 0)
    return float(np.max(np.abs(values) if both_signs else values))


def _run_flow(integrator, settings, rng, callback, verbose):
    """Integrate until a stop rule fires; returns the stop reason and the slots' lineage."""
    s = settings
    target, order, context = integrator.target, integrator.target.order, integrator.target.context
    width = tl.shape(integrator.W)[1]
    lineage = SlotLineage(width)
    epoch_length = s["epoch_time"]
    boundary = epoch_length
    epoch_loss = integrator.point.loss
    epoch_norms = tl.to_numpy(integrator.point.norms)
    fit_threshold = max(s["regularization"], s["tol"])
    epoch = 0
    while True:
        point = integrator.point
        if point.residual <= s["tol"]:
            return "tolerance", lineage
        if integrator.time >= s["max_time"]:
            return "max_time", lineage
        if integrator.time >= boundary:
            epoch += 1
            drop = (epoch_loss - point.loss) / max(epoch_loss, 1e-300)
            norms = tl.to_numpy(point.norms)
            if verbose:
                print(
                    f"[gradient_flow_cp] epoch {epoch} t={integrator.time:.1f} "
                    f"loss={point.loss:.3e} residual={point.residual:.3e} "
                    f"components>{s['reinit_threshold']:g}: "
                    f"{int(np.sum(norms >= s['reinit_threshold']))}"
                )
            if drop < _PLATEAU_DROP and (
                _largest_fittable_weight(target, point, integrator.signs, rng) <= fit_threshold
            ):
                return "nothing_to_fit", lineage
            if s["variant"] == "vanilla":
                grew = np.any(norms**2 >= 2 * epoch_norms**2)
                if drop < _STALL_DROP and not grew:
                    return "stalled", lineage
            else:
                W = integrator.W
                if s["variant"] == "merge":
                    W, groups = _merge_aligned(W, point, order)
                    for leader, *absorbed in groups:
                        lineage.merge(leader, absorbed, len(integrator.times) - 1)
                        integrator.events.append(FlowEvent(
                            integrator.time, "merge", tuple(int(j) for j in (leader, *absorbed))))
                    norms = np.sqrt(np.sum(tl.to_numpy(W) ** 2, axis=0))
                small = np.flatnonzero(norms < s["reinit_threshold"]).tolist()
                if small:
                    W = _redraw(W, small, s["init_scale"], rng, context)
                    integrator.events.append(FlowEvent(integrator.time, "redraw", tuple(small)))
                    lineage.redraw(small, len(integrator.times) - 1)
                integrator.replace(W)
            epoch_length *= 1.0 + s["epoch_growth"]
            boundary += epoch_length
            epoch_loss = integrator.point.loss
            epoch_norms = tl.to_numpy(integrator.point.norms)
        integrator.step()
        if callback is not None and _call_back(callback, integrator) is True:
            return "callback", lineage


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
    for step in range(_REFINE_MAX_STEPS):
        if integrator.point.residual <= tol:
            break
        # Counted in recorded steps: a step rejected by the divergence back-off records none.
        history = integrator.residuals
        if len(history) > 100 and history[-101] - history[-1] < _REFINE_STALL * history[-1]:
            break
        integrator.step()
    point = integrator.point
    return point.mass, point.directions, step


def _check_settings(operator, rank, width, variant, regularization, init_scale,
                    reinit_threshold, epoch_time, epoch_growth, step_size, max_time, tol):
    variant = check_choice("variant", variant, VARIANTS)
    if rank is not None:
        rank = check_int("rank", rank, 1)
    if width is None:
        width = 2 * rank if rank is not None else min(operator.dim, 50)
    width = check_int("width", width, 1)
    if rank is not None and width < rank:
        raise ValueError(
            f"width={width} must be >= rank={rank}: the flow fits at most width components; "
            "increase width (default 2 * rank) or lower rank."
        )
    if regularization is None:
        regularization = 0.0 if variant == "vanilla" else 1e-3
    if step_size is None:
        step_size = min(0.5, 2.0 / operator.order)
    return dict(
        rank=rank,
        width=width,
        variant=variant,
        regularization=check_nonnegative("regularization", regularization),
        init_scale=check_positive("init_scale", init_scale),
        reinit_threshold=check_positive("reinit_threshold", reinit_threshold),
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
        Number ``m`` of model components. Default: ``2 * rank``, or
        ``min(dim, 50)`` when ``rank`` is None. The flow fits at most ``width``
        components.
    variant : {"merge", "paper", "vanilla"}, default="merge"
        ``"vanilla"``: plain gradient flow (``lambda = 0`` unless given).
        ``"paper"``: the paper's modified flow, re-drawing components of norm
        below ``reinit_threshold`` at each epoch boundary. ``"merge"``: as
        ``"paper"``, and aligned components are first merged into the largest
        so that the freed slots can discover the remaining directions.
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
        ``min(0.5, 2 / order)``. A step that blows the loss up or moves a
        component by more than twice its length is undone, and one under which
        the loss keeps rising (a 2-cycle) is kept; either way the step is
        halved, with a RuntimeWarning. After 12 halvings a FloatingPointError
        says to lower ``step_size``.
    max_time : float > 0, default=5000.0
        Time horizon; reaching it raises a ConvergenceWarning.
    tol : float > 0, default=1e-6
        Stop once the relative residual ``|T(W) - T*| / |T*|`` is below
        ``tol``; also the target of the refinement. The residual is resolved
        down to ``4 sqrt(eps)`` of the dtype (1.4e-3 in float32, 6e-8 in
        float64): below that a ``tol`` is never met and the other stop rules
        end the run.
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
        ``(weights, [V] * order)`` sorted by |weight| descending, ``V`` with
        unit columns, in the backend, device and dtype of the input.

    Notes
    -----
    The flow stops when the residual is below ``tol``; or when, at an epoch
    boundary, the loss fell by less than 1% over the epoch and power
    iterations on the residual find no direction of weight above
    ``max(regularization, tol)``; or (vanilla) when nothing moves any more; or
    at ``max_time``.

    Examples
    --------
    >>> from tensorly_gfdeflate import gradient_flow_cp, random_symmetric_cp
    >>> truth = random_symmetric_cp(10, 3, 4, random_state=0)
    >>> cp = gradient_flow_cp(truth, random_state=0)
    >>> [round(float(w), 4) for w in cp.weights]
    [1.0, 0.3162, 0.1]
    """
    operator = as_operator(tensor)
    s = _check_settings(operator, rank, width, variant, regularization, init_scale,
                        reinit_threshold, epoch_time, epoch_growth, step_size, max_time, tol)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    debias = check_bool("debias", debias)
    return_trace = check_bool("return_trace", return_trace)
    verbose = check_bool("verbose", verbose)
    slot_signs = _resolve_signs(signs, s["width"], operator.order)
    rng = check_random_state(random_state)
    target, scale = normalize(operator)
    context = target.context

    W = s["init_scale"] * random_unit_vectors(target.dim, s["width"], rng, context)
    signs_t = tl.tensor(slot_signs, **context)
    integrator = _Integrator(target, W, signs_t, s["regularization"], s["step_size"])
    reason, lineage = _run_flow(integrator, s, rng, callback, verbose)
    if reason == "max_time":
        warnings.warn(
            f"gradient_flow_cp reached max_time={s['max_time']:g} with relative residual "
            f"{integrator.point.residual:.3g}; increase max_time or step_size.",
            ConvergenceWarning,
            stacklevel=2,
        )

    weights, vectors, groups = read_out(
        target, integrator.W, signs_t, s["rank"], s["reinit_threshold"] ** 2, debias)
    refine_steps = 0
    if weights is None:
        warnings.warn("gradient_flow_cp fitted no component; returning an empty CPTensor.",
                      ConvergenceWarning, stacklevel=2)
        weights = tl.zeros(0, **context)
        vectors = tl.zeros((target.dim, 0), **context)
    elif debias:
        weights, vectors, refine_steps = _refine(
            target, weights, vectors, integrator.step_size, s["tol"])
        weights = refit_weights(target, vectors)
    if rank is not None and len(groups) < rank:
        warnings.warn(
            f"gradient_flow_cp found {len(groups)} components, fewer than rank={rank}; "
            "increase width or max_time.", ConvergenceWarning, stacklevel=2)
    cp, permutation = to_cp_tensor(weights, vectors, target.order, scale)
    if not return_trace:
        return cp

    from .measures import relative_error

    groups = [groups[i] for i in permutation]
    times, norms = np.asarray(integrator.times), np.asarray(integrator.norms)
    trace = FlowTrace(
        times=times,
        loss=np.asarray(integrator.losses),
        residual=np.asarray(integrator.residuals),
        norms=norms,
        signs=slot_signs,
        events=integrator.events,
        discovery_time=discovery_times(times, norms, slot_signs, lineage, groups),
        component_slots=groups,
        stop_reason=reason,
        step_size=integrator.step_size,
        scale=scale,
        refine_steps=refine_steps,
        final_error=relative_error(operator, cp),
    )
    return cp, trace
