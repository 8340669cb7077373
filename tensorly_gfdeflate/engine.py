"""The one gradient-flow engine shared by every model (symmetric and general CP).

A :class:`FlowRun` integrates the flow of a model (``target.model``: the
symmetric model of :mod:`tensorly_gfdeflate.model` or the general CP model of
:mod:`tensorly_gfdeflate.general.model`) by explicit Euler steps on the target
normalized to unit norm, cuts time into epochs, merges aligned slots and
re-draws small ones at epoch boundaries (variants ``"vanilla"``, ``"paper"``,
``"merge"``), applies the stop rules, and reads out, refines, checks and
reports the result. The models answer every question about components; the
engine never looks inside a slot.
"""

import warnings

import numpy as np
import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

from ._checks import (
    user_stacklevel,
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
)
from .operators import normalize
from .probe import (
    DEFAULT_FLOOR,
    NOISE_MARGIN,
    NOISE_STANDARD_ERRORS,
    check_fit,
    noise_floors,
    probe_residual,
    signal_to_noise,
    sizes_noise,
)
from .readout import (
    ALIGNMENT_TOL,
    canonical_signs,
    group_aligned,
    read_out,
    refit_weights,
    to_cp_tensor,
)
from .trace import FlowEvent, FlowTrace, SlotLineage, discovery_times



__all__ = ["FlowRun", "drive_flow", "check_settings", "auto_regularization", "VARIANTS"]

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
# The refinement stops once 100 steps improve the loss by less than this fraction.
_REFINE_STALL = 1e-3
_REFINE_MAX_STEPS = 20000
# Settled checks in a row at which no slot could grow on what is left, before the flow
# gives up on it.
_STUCK_CHECKS = 2
# On a partly observed target, each refined fit that fails to explain it multiplies the
# settled checks before the next try by this (see FlowRun._refined_fit_reason).
_REFIT_WAIT_GROWTH = 2
# Components tried per round when looking for a shorter decomposition (automatic rank).
_MINIMALITY_TRIES = 2
# A weight this many times the next one marks a gap: the components below it are tried without.
_GAP_RATIO = 10.0


class _Integrator:
    """Explicit Euler steps on the loss, with divergence back-off and a step record."""

    def __init__(self, target, W, signs, regularization, step_size, warn=True):
        self.target, self.signs, self.regularization = target, signs, regularization
        self.warn = warn
        self.step_size = self.initial_step = step_size
        self.time, self.back_offs = 0.0, 0
        self.events = []
        self.W = W
        self.point = target.model.point(target, W, signs, regularization)
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
        point = self.target.model.point(self.target, W, self.signs, self.regularization)
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
        if self.back_offs == 1 and self.warn:
            warnings.warn(
                f"step_size={self.initial_step:.3g} overshoots: the loss rose at "
                f"t={self.time:.4g}. Backed off to the last good point and halved the step "
                "(trace.step_size has the final one). Pass a smaller step_size to avoid this.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def retarget(self, target):
        self.target = target
        self.point = target.model.point(target, self.W, self.signs, self.regularization)

    def replace(self, W):
        """Move to ``W`` (an epoch intervention) without taking a step."""
        self.W = W
        self.point = self.target.model.point(self.target, W, self.signs, self.regularization)
        self.times[-1], self.losses[-1], self.residuals[-1] = (
            self.time, self.point.loss, self.point.residual)
        self.norms[-1] = tl.to_numpy(self.point.norms)


def _seed_slots(slots, slot_signs, seeds, adaptive):
    """Which re-drawn slots start on which probed directions, and the slots' new signs.

    ``seeds`` is ``(directions, values)``, best first. A slot of fixed sign
    takes the best unused seed of its sign; an adaptive slot takes the best
    unused seed and its sign. Returns ``(pairs, signs)`` with ``pairs`` a
    list of ``(slot, seed column)``.
    """
    signs = slot_signs.copy()
    if seeds is None:
        return [], signs
    seed_signs = np.sign(seeds[1])
    unused = list(range(len(seed_signs)))
    pairs = []
    for slot in slots:
        match = next((k for k in unused if adaptive or seed_signs[k] == signs[slot]), None)
        if match is None:
            continue
        unused.remove(match)
        pairs.append((slot, match))
        if adaptive:
            signs[slot] = seed_signs[match]
    return pairs, signs


def _redraw(model, W, slots, init_scale, rng, seeds=None, pairs=()):
    """Columns ``slots`` of ``W`` replaced by fresh slots of norm ``init_scale``.

    Slots in ``pairs`` start on their seed direction (a column of
    ``seeds[0]``), the others on random directions.
    """
    rows, m = tl.shape(W)
    keep = np.ones(m)
    keep[slots] = 0.0
    directions = np.zeros((rows, m))
    directions[:, slots] = tl.to_numpy(model.random(len(slots), rng))
    if pairs:
        seeded, columns = zip(*pairs)
        directions[:, list(seeded)] = tl.to_numpy(seeds[0][:, list(columns)])
    context = tl.context(W)
    fresh = model.slots(tl.tensor(directions, **context), init_scale)
    return W * tl.tensor(keep, **context) + fresh


def _merge_aligned(W, point, model):
    """Each group of aligned slots collapses into its leader's slot.

    The merged slot carries the group's summed mass along its mass-weighted mean
    direction. Returns the new ``W`` and the groups of more than one slot.
    """
    groups = [g for g in group_aligned(model, point.directions, point.mass, ALIGNMENT_TOL)
              if len(g) > 1]
    if not groups:
        return W, []
    mass = tl.to_numpy(point.mass)
    keep = np.ones(len(mass))
    placement = np.zeros((len(groups), len(mass)))
    for g, (leader, *absorbed) in enumerate(groups):
        keep[[leader, *absorbed]] = 0.0
        placement[g, leader] = 1.0
    context = tl.context(W)
    norms = tl.tensor([np.sqrt(abs(mass[group].sum())) for group in groups], **context)
    merged = model.slots(model.pool(point.directions, mass, groups), norms)
    return W * tl.tensor(keep, **context) + tl.dot(merged, tl.tensor(placement, **context)), groups


def _relative_drop(before, after):
    """How much the loss fell from ``before`` to ``after``, relative to ``before``."""
    return (before - after) / max(before, 1e-300)


def _slots_still_pooling(point, model, min_mass):
    """Whether two fitted slots share a component without having merged yet.

    Such slots drift together at a rate set by the regularizer alone (pooling
    lowers the penalty ``sum |mass|``); stopping before they meet reads out a
    split component, which the refinement then turns into a wrong decomposition.
    """
    mass = np.abs(tl.to_numpy(point.mass))
    fitted = np.flatnonzero(mass >= min_mass)
    if len(fitted) < 2:
        return False
    alignment = model.alignment(point.directions[:, fitted.tolist()])
    np.fill_diagonal(alignment, 0.0)
    return bool(np.any(alignment >= 1.0 - ALIGNMENT_TOL))


def _count_fitted(point, model, min_mass):
    """Number of distinct components carried by slots of |mass| >= ``min_mass``."""
    fitted = np.flatnonzero(np.abs(tl.to_numpy(point.mass)) >= min_mass).tolist()
    if not fitted:
        return 0
    return len(group_aligned(model, point.directions[:, fitted], point.mass[fitted],
                             ALIGNMENT_TOL))


class FlowRun:
    """A gradient-flow run that can be continued; what :func:`gradient_flow_cp` drives.

    Holds the model, the epoch schedule, the random generator and the record,
    so that ``advance(t)`` twice is ``advance(2 t)`` once (``warm_start`` of
    :class:`~tensorly_gfdeflate.GradientFlowCP`).
    """

    def __init__(self, operator, settings, slot_signs, adaptive_signs, rng):
        self.operator, self.settings, self.rng = operator, settings, rng
        self.target, self.scale = normalize(operator)
        if settings["regularization"] == "auto":
            settings["regularization"] = auto_regularization(self.target, settings["variant"], rng)
        self.slot_signs, self.adaptive_signs = slot_signs, adaptive_signs
        context = self.target.context
        width = settings["width"]
        self.model = self.target.model
        W = self.model.slots(self.model.random(width, rng, context), settings["init_scale"])
        self.integrator = _Integrator(self.target, W, tl.tensor(slot_signs, **context),
                                      settings["regularization"], settings["step_size"],
                                      warn=settings["explicit_step"])
        self.sign_history = [(0, slot_signs)]
        self.lineage = SlotLineage(width)
        self.epoch = 0
        self.epoch_length = settings["epoch_time"]
        self.boundary = self.epoch_length
        self._start_epoch()
        self.stop_reason = None
        # Residual directions (and their weights) found by the last probe: where
        # re-drawn slots start. Settled checks in a row where no slot could grow on it.
        self.seeds = None
        self.stuck_checks = 0
        self.unchanged = (None, 0)
        self.refit_wait = _STUCK_CHECKS + 1
        self.most_fitted = 0

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

    @property
    def partly_observed(self):
        """Whether only some entries of the target are observed (completion)."""
        return self.target.observed_fraction < 1.0

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
            if callback is not None and _call_back(callback, self.integrator,
                                                   self.settings["name"]) is True:
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
        """Inside a long epoch, stop once the fit is settled and explains the target.

        Every ``epoch_time`` of flow time (no intervention: that waits for the
        boundary), so that a fit which settles early does not idle until the
        next, ever more distant, boundary. Without a rank only a run that has
        re-drawn nothing for an epoch is probed here, which keeps the probe off
        the runs still discovering components.
        """
        s = self.settings
        if self.integrator.time < self.checkpoint:
            return None
        loss = self.integrator.point.loss
        drop = _relative_drop(self.checkpoint_loss, loss)
        self.checkpoint = self.integrator.time + s["epoch_time"]
        self.checkpoint_loss = loss
        if not self._is_settled(drop):
            return None
        if s["rank"] is not None and not self._rank_fitted():
            return None
        return self._explained_reason()

    def _is_settled(self, drop):
        """The loss fell by less than ``_PLATEAU_DROP`` and (merge variant) no fitted slots are still pooling.

        The paper variant never merges: its pooled slots are pooled by the
        read-out, and the check of the result says whether that explains the
        tensor.
        """
        if drop >= _PLATEAU_DROP:
            return False
        return self.settings["variant"] != "merge" or not _slots_still_pooling(
            self.integrator.point, self.model, self.settings["drop_threshold"])

    def _fitted(self):
        fitted = _count_fitted(self.integrator.point, self.model,
                               self.settings["drop_threshold"])
        self.most_fitted = max(self.most_fitted, fitted)
        return fitted

    def _rank_fitted(self):
        """Whether ``rank`` (when given) distinct components are fitted."""
        rank = self.settings["rank"]
        return rank is not None and rank <= self._fitted()

    def _explained_reason(self):
        """Probe the residual; the stop reason if nothing in it stands above the floor.

        A rank is "reached" only when the fit also explains the target: ``rank``
        fitted slots can hold blends of several components, and the residual
        then still holds what they missed.
        """
        s, point = self.settings, self.integrator.point
        fitted = self._fitted()
        model = self._debiased_model()
        residual = self.target if model is None else self.target.minus(*model)
        probe = probe_residual(residual, point.directions, self.rng)
        floors = np.full(len(probe.values), self._fit_threshold())
        if s["noise_aware"]:
            floors = np.maximum(noise_floors(self.target, residual, probe), floors)
        above = np.abs(probe.values) > floors
        self.seeds = (probe.directions[:, np.flatnonzero(above).tolist()], probe.values[above])
        if np.any(above):
            return self._stuck_reason(self.seeds[0], fitted, model)
        return "rank_reached" if s["rank"] is not None and s["rank"] <= fitted else "nothing_to_fit"

    def _stuck_reason(self, directions, fitted, model):
        """``"stalled"`` when, at ``_STUCK_CHECKS`` settled checks in a row, no slot could grow on what is left.

        What is left is measured with least-squares weights; the flow sees its
        own residual, with every fitted weight shrunk by ``lambda / 2``. A slot
        along ``u`` grows only if that residual's ``|R(u^l)| > lambda / 2``.
        For non-orthogonal components the shrinkage leaves weight off their
        directions that no slot can grow on (the refinement with ``lambda = 0``
        fits it): more flow time changes nothing, and the check of the refined
        result decides. A component that is merely slow to grow keeps the
        flow going.
        """
        point, regularization = self.integrator.point, self.settings["regularization"]
        seen = self.target.minus(point.mass, point.directions).evaluate(directions)
        growable = bool(np.any(2.0 * np.abs(tl.to_numpy(seen)) > regularization))
        self.stuck_checks = 0 if growable else self.stuck_checks + 1
        if self.stuck_checks >= _STUCK_CHECKS:
            return "stalled"
        return self._refined_fit_reason(fitted, model) if growable else None

    def _refined_fit_reason(self, fitted, model):
        """Every ``_STUCK_CHECKS + 1`` settled checks with the same number of components
        fitted, whether the refined read-out of the model already explains the tensor.

        What is left may be growable yet slow (weight just above ``lambda /
        2``: a re-drawn slot needs longer than an epoch), and the refinement
        with ``lambda = 0`` fits it anyway: then the run is done, with the
        result it would return. A real component still missing is not fitted
        by the refinement, and the flow goes on.

        On a partly observed target a try refines every prefix (see
        :meth:`_prefix_lengths`), up to ``width`` refinements: after each
        failed try the next waits ``_REFIT_WAIT_GROWTH`` times longer, so that
        a flow that cannot fit the observed entries (too few of them) spends
        a bounded share of its time on tries. When no prefix explains them
        and the model has more free parameters than there are observed
        entries, the flow has ``"stalled"``: its components can fit every
        observed entry, so more flow time fits them, not the tensor.
        """
        previous, count = self.unchanged
        count = count + 1 if previous == fitted else 0
        self.unchanged = (fitted, count)
        rank = self.settings["rank"]
        if count < self.refit_wait or (rank is not None and fitted != rank):
            return None
        self.unchanged = (fitted, 0)
        if model is None:
            return None
        done = "nothing_to_fit" if rank is None else "rank_reached"
        if self._gap_prefix(*model) is not None:
            return done
        if self._underdetermined(tl.shape(model[0])[0]):
            return "stalled"
        if self._explains(*self._refine(*model)[:2]):
            return done
        if self.partly_observed:
            self.refit_wait *= _REFIT_WAIT_GROWTH
        return None

    def _fit_threshold(self):
        """Residual weights at or below this are left alone (at least the tolerance).

        An explicit ``lambda`` is the user's floor, as documented: nothing up
        to ``lambda`` needs fitting. With ``"auto"`` the floor is the noise's
        (see :meth:`_explained_reason`) and ``lambda / 2``, below which a
        component cannot grow: a ``lambda`` raised to six standard errors must
        not hide components between three and six.
        """
        s = self.settings
        regularization = s["regularization"] / 2 if s["noise_aware"] else s["regularization"]
        return max(regularization, s["tol"])

    def _debiased_model(self):
        """The fitted directions with least-squares weights, ``(weights, vectors)``, or None.

        The regularizer shrinks every fitted weight by ``lambda / 2``; for
        components that are not orthogonal, those shrinkages add up to residual
        weight above ``lambda`` in directions no slot holds, which no re-drawn
        slot can fit (it is an artefact): the checks look at this model's
        residual instead.
        """
        weights, vectors, _ = read_out(
            self.target, self.integrator.W, self.integrator.signs, None,
            self.settings["drop_threshold"], True)
        return None if weights is None else (weights, vectors)

    def _settled_reason(self, drop):
        s, point = self.settings, self.integrator.point
        self.seeds = None
        if self._is_settled(drop):
            reason = self._explained_reason()
            if reason is not None:
                return reason
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
            W, groups = _merge_aligned(W, integrator.point, self.model)
            for leader, *absorbed in groups:
                self.lineage.merge(leader, absorbed, snapshot)
                integrator.events.append(FlowEvent(
                    integrator.time, "merge", tuple(int(j) for j in (leader, *absorbed))))
        norms = tl.to_numpy(self.model.split(W)[0])
        small = np.flatnonzero(norms < s["reinit_threshold"]).tolist()
        if small:
            seeds = self.seeds if s["variant"] == "merge" else None
            pairs, signs = _seed_slots(small, self.slot_signs, seeds, self.adaptive_signs)
            W = _redraw(self.model, W, small, s["init_scale"], self.rng, seeds, pairs)
            integrator.events.append(FlowEvent(integrator.time, "redraw", tuple(small)))
            self.lineage.redraw(small, snapshot)
            if np.any(signs != self.slot_signs):
                self._set_signs(signs, snapshot)
        integrator.replace(W)

    def _set_signs(self, signs, snapshot):
        self.slot_signs = signs
        self.integrator.signs = tl.tensor(signs, **self.target.context)
        self.sign_history.append((snapshot, signs))

    def _report(self):
        point = self.integrator.point
        fitted = int(np.sum(tl.to_numpy(point.norms) >= self.settings["reinit_threshold"]))
        print(
            f"[{self.settings['name']}] epoch {self.epoch} t={self.integrator.time:.1f} "
            f"loss={point.loss:.3e} residual={point.residual:.3e} "
            f"components>{self.settings['reinit_threshold']:g}: {fitted}"
        )

    def result(self, debias, with_trace):
        """Read out (and refine) the current model, check it, and warn if it falls short.

        Returns a CPTensor, and the trace if asked (else None).
        """
        s, target, integrator = self.settings, self.target, self.integrator
        rank = s["rank"]
        # Debiased, every fitted component is refined before the cut to rank:
        # which ``rank`` of them explain the tensor is decided on the refined fit.
        weights, vectors, groups = read_out(
            target, integrator.W, integrator.signs, None if debias else rank,
            s["drop_threshold"], debias, min_weight=s["regularization"] / 2)
        refine_steps = 0
        if weights is None:
            # The zero tensor as one zero-weight component: TensorLy's CP functions
            # reject rank 0. The warning and found = 0 say that nothing was fitted.
            weights = tl.zeros(1, **target.context)
            vectors = tl.tensor(np.eye(target.dim, 1), **target.context)
            groups = [[]]
        elif debias:
            weights, vectors, kept, refine_steps = self._refined(weights, vectors, len(groups))
            groups = [groups[i] for i in kept]
        check = self._check(weights, vectors)
        found = int(np.count_nonzero(tl.to_numpy(weights)))
        self._warn(check, found)
        snr, noise = signal_to_noise(weights, check)
        cp, permutation = to_cp_tensor(self.model, weights, vectors, self.scale)
        if not with_trace:
            return cp, None
        final_error = float(np.sqrt(target.minus(weights, vectors).norm_sq / target.norm_sq))
        trace = self._trace([groups[i] for i in permutation], refine_steps, check, final_error)
        trace.component_snr, trace.noise_level = snr[permutation], noise
        return cp, trace

    def _refined(self, weights, vectors, count):
        """The refined read-out, shortened to ``rank`` or to a minimal decomposition.

        Returns ``(weights, vectors, kept, steps)``, ``kept`` indexing the
        ``count`` read-out components. A read-out with more free parameters
        than observed entries is returned as read out (least-squares
        weights) when no prefix explains the entries: refining it fits them
        exactly but slowly, minimizing it drops components one slow
        refinement at a time, and the result predicts nothing either way
        (the warning says so).
        """
        rank = self.settings["rank"]
        if rank is None:
            shortcut = self._gap_prefix(weights, vectors)
            if shortcut is not None:
                # The prefix explains the tensor; it may still hold a blend and its patch.
                weights, vectors, kept, steps = shortcut
                weights, vectors, rest, more = self._minimize(weights, vectors)
                return weights, vectors, [kept[q] for q in rest], steps + more
            if self._underdetermined(count):
                return weights, vectors, list(range(count)), 0
        weights, vectors, steps = self._refine(weights, vectors)
        if rank is None:
            weights, vectors, kept, more = self._minimize(weights, vectors)
        elif count > rank:
            weights, vectors, kept, more = self._reduce(weights, vectors, rank)
        else:
            kept, more = list(range(count)), 0
        return weights, vectors, kept, steps + more

    def _refine(self, weights, vectors):
        """``_refine`` then the least-squares weights: ``(weights, vectors, steps)``.

        On a partly observed target a refinement also stops once ``tol`` is
        out of its reach (see :func:`_refine`): there the fits that do not
        explain the observed entries creep instead of levelling off, and
        :meth:`_gap_prefix` refines many of them.
        """
        weights, vectors, steps = _refine(self.target, weights, vectors,
                                          self.integrator.step_size, self.settings["tol"],
                                          give_up=self.partly_observed)
        return refit_weights(self.target, vectors), vectors, steps

    def _check(self, weights, vectors):
        """The :func:`~tensorly_gfdeflate.probe.check_fit` verdict on ``weights``, ``vectors``."""
        return check_fit(self.target, weights, vectors, _check_rng(), self._fit_threshold(),
                         self.settings["noise_aware"])

    def _explains(self, weights, vectors):
        return self._check(weights, vectors).explained

    def _reduce(self, weights, vectors, rank):
        """``rank`` of the refined components that explain the tensor.

        The ``rank`` largest are tried first. When they fall short (a slot
        holds a blend of two components, patched by extra slots), components
        are dropped one at a time (see :meth:`_without_one`). Returns
        ``(weights, vectors, kept, steps)``, ``kept`` indexing the input.
        """
        largest = np.argsort(-np.abs(tl.to_numpy(weights)), kind="stable")[:rank].tolist()
        trial_weights, trial_vectors, steps = self._refine(weights[largest], vectors[:, largest])
        if self._explains(trial_weights, trial_vectors):
            return trial_weights, trial_vectors, largest, steps
        kept = list(range(tl.shape(weights)[0]))
        while len(kept) > rank:
            _, rest, weights, vectors, spent = self._without_one(weights, vectors)
            kept, steps = [kept[q] for q in rest], steps + spent
        return weights, vectors, kept, steps

    def _gap_prefix(self, weights, vectors):
        """The largest components down to a gap in the weights, refined, if they explain the tensor.

        Components an order of magnitude (``_GAP_RATIO``) below the rest are
        usually what the regularizer's shrinkage left to idle slots (on
        partly observed tensors above all, where it spreads to other
        directions); refining them along with the rest is slow and
        :meth:`_minimize` would drop them one by one. Each such prefix (see
        :meth:`_prefix_lengths`) is tried, shortest first; None when none
        explains. Sample statistics keep the full path (see :meth:`_minimize`).

        On a partly observed target a prefix must also leave no more than the
        whole fit plus what noise could put in the components it lacks
        (:meth:`_noise_energy`, one per component), as a dropped component
        must in :meth:`_minimize`: on few entries the prefix's refined
        components absorb much of a component they lack and spread the rest
        over directions that none holds above the noise floor alone.
        """
        if self.target.is_sampled:
            return None
        magnitudes = np.abs(tl.to_numpy(weights))
        order = np.argsort(-magnitudes, kind="stable")
        whole = self.target.minus(weights, vectors).norm_sq if self.partly_observed else None
        steps = 0
        for k in self._prefix_lengths(magnitudes[order]):
            kept = order[:k].tolist()
            trial_weights, trial_vectors, spent = self._refine(weights[kept], vectors[:, kept])
            steps += spent
            check = self._check(trial_weights, trial_vectors)
            if check.explained and (whole is None or self.target.minus(
                    trial_weights, trial_vectors).norm_sq
                    <= whole + (len(order) - k) * self._noise_energy(check, check)):
                return trial_weights, trial_vectors, kept, steps
        return None

    def _prefix_lengths(self, sorted_weights):
        """How many of the largest components :meth:`_gap_prefix` tries: those down to a gap.

        On a partly observed target, every count whose components have fewer
        free parameters than there are observed entries: there the flow often
        ends with more components than the tensor holds and no gap (a
        component split over two slots that have not merged, small slots
        fitting what the others leave on the observed entries), and the
        refinement of such an over-complete fit creeps (its extra components
        fade slowly), while a too short prefix levels off and the right one
        converges, both fast. More parameters than entries fit them whatever
        the tensor holds, which proves nothing.
        """
        lengths = range(1, len(sorted_weights))
        if self.partly_observed:
            return [k for k in lengths
                    if self.model.parameters(k) < self.target.n_observed]
        return [k for k in lengths if sorted_weights[k - 1] >= _GAP_RATIO * sorted_weights[k]]

    def _minimize(self, weights, vectors):
        """Drop components while the rest, refined, still explain the tensor (automatic rank).

        A flow can settle on a longer exact decomposition than the tensor's:
        a slot that found a blend of two close components, and slots that
        patch the difference. Only the ``_MINIMALITY_TRIES`` most redundant
        components are tried per round, which keeps the cost at a few
        refinements when the decomposition is already minimal.
        """
        kept, steps = list(range(tl.shape(weights)[0])), 0
        check = self._check(weights, vectors)
        if not check.explained:
            return weights, vectors, kept, steps
        while len(kept) > 1:
            miss = self.target.minus(weights, vectors).norm_sq
            explains, rest, fewer_weights, fewer_vectors, spent = self._without_one(
                weights, vectors, _MINIMALITY_TRIES,
                lambda trial: miss + self._noise_energy(check, trial))
            steps += spent
            if not explains:
                break
            weights, vectors, kept = fewer_weights, fewer_vectors, [kept[q] for q in rest]
        return weights, vectors, kept, steps

    def _noise_energy(self, check, trial):
        """How much dropping a component may raise the squared residual: what noise puts in one.

        A shorter fit that leaves nothing above the floor in any one direction
        can still miss a component: the rest, refined, absorb part of it
        (overlapping components above all) and spread the remainder over many
        directions. What it leaves in the squared residual tells, and is set
        against what noise could have given one component:

        - sample statistics: a component at the floor of the longer fit
          (``check``);
        - a dense array, or observed entries enough to size their noise
          (:func:`~tensorly_gfdeflate.probe.sizes_noise`), its noise
          sized (``regularization="auto"``):
          ``NOISE_MARGIN`` times the square of the target's noise level in
          the shorter fit (``trial``), the largest weight noise shows in any
          direction (the best rank-one fit of noise takes the square of it;
          the margin covers the level's draw-to-draw spread and what the
          refined rest gives back), and at least the square of the solver's
          own floor, below which nothing counts (a noise-free array). Measured
          at d = 12, order 3: dropping a component fitted to noise costs at
          most 1.7 times the square of the level, dropping a true component
          of weight three times the noise's injective norm at least 2.2 times;
        - other targets have no noise level to compare with (a CP tensor is
          exact): the check alone decides.
        """
        if self.target.is_sampled:
            return check.floor**2
        if not (sizes_noise(self.target) and self.settings["noise_aware"]):
            return np.inf
        level = float(np.max(trial.component_noise, initial=0.0))
        return max(NOISE_MARGIN * level**2, self._fit_threshold()**2)

    def _without_one(self, weights, vectors, tries=None, allowance=None):
        """The refined fit with one component fewer: ``(explains, rest, weights, vectors, steps)``.

        Components are tried in order of redundancy (the smallest residual when
        the others' weights alone are re-fitted without it), each time refining
        the rest; the first that still explains the tensor, with a squared
        residual within ``allowance(check)`` (when given; ``check`` is its
        :class:`~tensorly_gfdeflate.probe.FitCheck`), is taken, or else the one
        with the smallest residual. ``rest`` indexes the input.
        """
        positions = range(tl.shape(weights)[0])
        candidates = sorted(positions, key=lambda p: self._miss_without(vectors, p))[:tries]
        best, steps = None, 0
        for p in candidates:
            rest = [q for q in positions if q != p]
            trial_weights, trial_vectors, spent = self._refine(weights[rest], vectors[:, rest])
            steps += spent
            miss = self.target.minus(trial_weights, trial_vectors).norm_sq
            check = self._check(trial_weights, trial_vectors)
            explains = check.explained and (allowance is None or miss <= allowance(check))
            if explains or best is None or miss < best[0]:
                best = (miss, explains, rest, trial_weights, trial_vectors)
            if explains:
                break
        return (*best[1:], steps)

    def _miss_without(self, vectors, position):
        """Squared residual when column ``position`` is dropped and the others' weights re-fitted."""
        rest = [q for q in range(tl.shape(vectors)[1]) if q != position]
        return self.target.minus(refit_weights(self.target, vectors[:, rest]),
                                 vectors[:, rest]).norm_sq

    def _warn(self, check, found):
        """One warning that says what fell short, and what to do about it."""
        s, rank = self.settings, self.settings["rank"]
        problems = []
        if found == 0:
            problems.append("fitted no component (the returned CPTensor holds one component "
                            "of weight 0, the zero tensor)")
        elif rank is not None and found < rank:
            problems.append(f"found {found} components, fewer than rank={rank}")
        if self._underdetermined(found):
            problems.append(
                f"returned {found} components, {self.model.parameters(found)} free parameters "
                f"for {self.target.n_observed} observed entries: so many fit the observed "
                "entries whatever the others hold, and predict nothing")
        if rank is None and self.most_fitted >= s["width"]:
            problems.append(
                f"used every one of its width={s['width']} slots, so the automatic rank is "
                "not to be trusted (the tensor may hold more components, or noise was fitted "
                "as components)")
        # A run cut short at max_time whose result passes the check is a result:
        # only when the check fails is the horizon worth mentioning.
        if self.stop_reason == "max_time" and not check.explained:
            problems.append(f"reached max_time={self.integrator.time:g} before its stop rules "
                            f"were met ({self._residual_text()})")
        if not check.explained:
            problems.append(
                f"leaves a residual holding a component of weight {check.largest:.3g} (relative "
                f"to |T|) in {check.unexplained} probed direction(s), above the noise floor "
                f"{check.floor:.3g}: the decomposition does not explain the tensor")
        if not problems:
            return
        warnings.warn(s["name"] + " " + "; it ".join(problems) + ". "
                      + self._advice(check, found), ConvergenceWarning, stacklevel=user_stacklevel())

    def _underdetermined(self, found):
        """Whether ``found`` components have at least as many free parameters as observed entries."""
        return (self.partly_observed and found > 0
                and self.model.parameters(found) >= self.target.n_observed)

    def _residual_text(self):
        residual = self.integrator.point.residual
        if self.target.norm_is_estimate:
            return f"relative residual about {residual:.2g}, against an estimated norm"
        return f"relative residual {residual:.3g}"

    def _advice(self, check, found):
        s, rank = self.settings, self.settings["rank"]
        if self._underdetermined(found):
            return (f"Observe more entries: {found} components need more than "
                    f"{self.model.parameters(found)} to be determined by them (or pass a "
                    "smaller rank).")
        if self.most_fitted >= s["width"]:
            return (f"Every one of the width={s['width']} slots was in use: increase width "
                    f"(or lower rank).")
        if rank is not None and found < rank and check.explained:
            return (f"What is left holds nothing above the floor {check.floor:.3g}: the tensor "
                    f"has fewer than rank={rank} components that large. Lower rank, or lower "
                    "regularization if smaller components are expected.")
        if rank is not None and self.most_fitted > rank and not check.explained:
            return (f"The flow fitted {self.most_fitted} components and {rank} were kept: the "
                    f"tensor needs more than rank={rank} components; pass rank=None (automatic "
                    "rank) or a larger rank.")
        if self.stop_reason == "max_time":
            return ("The flow was still fitting: increase max_time; if what is left is noise, "
                    "raise regularization (or pass rank).")
        return "Try another random_state, a larger width or max_time, or variant='merge'."

    def _signs_per_snapshot(self):
        """``(n_snapshots, width)`` slot signs: adaptive re-draws change them over time."""
        signs = np.empty((len(self.integrator.times), len(self.slot_signs)))
        for (start, values), (stop, _) in zip(self.sign_history,
                                              self.sign_history[1:] + [(None, None)]):
            signs[start:stop] = values
        return signs

    def _trace(self, groups, refine_steps, check, final_error):
        integrator = self.integrator
        times, norms = np.asarray(integrator.times), np.asarray(integrator.norms)
        signs = self._signs_per_snapshot()
        return FlowTrace(
            times=times,
            loss=np.asarray(integrator.losses),
            residual=np.asarray(integrator.residuals),
            norms=norms,
            signs=signs,
            events=list(integrator.events),
            discovery_time=discovery_times(times, norms, signs, self.lineage, groups),
            component_slots=groups,
            stop_reason=self.stop_reason,
            step_size=integrator.step_size,
            scale=self.scale,
            refine_steps=refine_steps,
            final_error=final_error,
            explained=check.explained,
            unexplained_weight=check.largest,
            noise_floor=check.floor,
            most_fitted=self.most_fitted,
        )


def _check_rng():
    """The random starts of the result's check: fixed, so that reading a result out
    never moves the run's own random stream (a warm-started run continues it)."""
    return np.random.RandomState(0)


def _call_back(callback, integrator, name):
    """The user's callback; its exception propagates unchanged, with a note naming it."""
    try:
        return callback(integrator)
    except Exception as error:
        error.add_note(
            f"raised by the callback passed to {name}, at flow time "
            f"t={integrator.time:.4g}; the run was abandoned. Fix or remove callback."
        )
        raise


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


def _refine(target, weights, vectors, step_size, tol, give_up=False):
    """Plain gradient flow (lambda = 0, no re-draws) from the read-out, to fit exactly low-rank targets.

    Stops at the relative residual ``tol``, once 100 steps improve the loss
    by less than ``_REFINE_STALL``, or after ``_REFINE_MAX_STEPS``; with
    ``give_up``, also once ``tol`` is out of reach within those steps (see
    :func:`_out_of_reach`).
    """
    weights, vectors = canonical_signs(target.model, weights, vectors)
    signs = tl.sign(weights) + (weights == 0)
    W = target.model.slots(vectors, tl.sqrt(tl.abs(weights)))
    # A refinement's back-offs are its own business: its result is checked.
    integrator = _Integrator(target, W, signs, 0.0, step_size, warn=False)
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
    return point.mass, point.directions, step


def check_settings(name, default_width, *, rank, width, variant, regularization, init_scale,
                   reinit_threshold, epoch_time, epoch_growth, step_size, max_time, tol,
                   default_step=0.3):
    """The validated settings of a run of the public function ``name``.

    ``default_width(rank)`` gives the width when none is passed.
    """
    variant = check_choice("variant", variant, VARIANTS)
    if rank is not None:
        rank = check_int("rank", rank, 1)
    if width is None:
        width = default_width(rank)
    width = check_int("width", width, 1)
    if rank is not None and width < rank:
        raise ValueError(
            f"width={width} must be >= rank={rank}: the flow fits at most width components; "
            "increase width (default max(2 * rank, 8)) or lower rank."
        )
    if regularization is None or isinstance(regularization, str):
        check_choice("regularization", "auto" if regularization is None else regularization,
                     ("auto",))
        regularization = "auto"
    else:
        regularization = check_nonnegative("regularization", regularization)
    # Backing off from the default step is the integrator's business; from a step the
    # user chose, it is worth a warning.
    explicit_step = step_size is not None
    if step_size is None:
        step_size = default_step
    reinit_threshold = check_positive("reinit_threshold", reinit_threshold)
    return dict(
        name=name,
        rank=rank,
        width=width,
        variant=variant,
        regularization=regularization,
        # An explicit regularization is the user's floor; "auto" also sizes the noise.
        noise_aware=regularization == "auto",
        init_scale=check_positive("init_scale", init_scale),
        reinit_threshold=reinit_threshold,
        # Slots the re-draw rule treats as noise are not components.
        drop_threshold=reinit_threshold**2,
        epoch_time=check_positive("epoch_time", epoch_time),
        epoch_growth=check_nonnegative("epoch_growth", epoch_growth),
        step_size=check_positive("step_size", step_size),
        explicit_step=explicit_step,
        max_time=check_positive("max_time", max_time),
        tol=check_positive("tol", tol),
    )


def auto_regularization(target, variant, rng):
    """``regularization="auto"``: 0 (vanilla), or 1e-3 raised to the sampling noise floor.

    For sample statistics, twice ``NOISE_STANDARD_ERRORS`` standard errors
    along the target's leading directions (found by power iterations), so
    that weights the data cannot tell from zero are never fitted: without
    it the flow fits sampling noise until ``max_time``. ``target`` is
    normalized; so is the result.
    """
    if variant == "vanilla":
        return 0.0
    if not target.is_sampled:
        return DEFAULT_FLOOR
    probe = probe_residual(target, None, rng)
    error = float(tl.max(target.standard_error(probe.directions)))
    return max(DEFAULT_FLOOR, 2.0 * NOISE_STANDARD_ERRORS * error)


def drive_flow(tensor, run, *, start, to_operator, max_time, debias, callback, verbose,
               **options):
    """The one driver of every flow function and estimator.

    Starts a run on ``tensor`` with ``start(tensor, max_time=, **options)``
    (``run=None``) or continues ``run`` on ``to_operator(tensor)``, for
    ``max_time``, then reads out, checks and warns. Returns ``(run, cp, trace)``.
    """
    debias = check_bool("debias", debias)
    verbose = check_bool("verbose", verbose)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    if run is None:
        run = start(tensor, max_time=max_time, **options)
    else:
        run.retarget(to_operator(tensor))
    run.advance(max_time, callback=callback, verbose=verbose)
    cp, trace = run.result(debias, with_trace=True)
    return run, cp, trace

