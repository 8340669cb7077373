"""The run loop shared by every model (symmetric and general CP).

A :class:`FlowRun` integrates the flow of a model (given by the solver) by
explicit Euler steps on the target normalized to unit norm, cuts time into
epochs, merges aligned slots and re-draws small ones at epoch boundaries
(:mod:`~tensorly_gfdeflate.flow.epochs`), applies the stop rules with an
explicit :class:`StopState`, and reads out, refines
(:mod:`~tensorly_gfdeflate.flow.selection`), checks and reports
(:mod:`~tensorly_gfdeflate.flow.report`) the result. The models answer every
question about components; the run never looks inside a slot. See
:ref:`theory-variants` and :ref:`theory-selection`.

Randomness, all from the caller's ``random_state``, in this order: the
probe of the automatic regularization (sample statistics only), the initial
slots, the seed of the check stream (one draw: every check of a result
starts from it, so reading a result never moves the run's stream), then the
re-draws and residual probes in the order the run makes them.
"""

from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
import tensorly as tl

from .._checks import check_random_state
from ..check.probe import below_every_floor, noise_floors, probe_residual, signal_to_noise
from ..check.readout import canonical_signs, read_out, to_cp_tensor
from ..targets.symmetric import normalize
from .held_out import (can_hold_out, extend_fit, held_out_path, needs_held_out, polish,
                       unobserved_slices, weak_components)
from .epochs import count_fitted, merge_aligned, redraw, seed_slots, slots_still_pooling
from .integration import Integrator
from .report import RunOutcome, flow_verdict
from .selection import Selection
from .settings import DEFAULT_STEP_SIZE
from .trace import FlowEvent, FlowTrace, SlotLineage, discovery_times

__all__ = ["FlowRun", "StopReason", "StopState", "start_run", "continue_run"]

# The adaptive step's largest value, in default steps: steps on the plateaus stay short
# against an epoch (20 time units), so boundaries and checks keep their timing.
MAX_STEP_GROWTH = 4.0
# A seeded polish that does not explain the tensor is still taken (and the flow goes on)
# when it leaves at most this share of the debiased model's squared residual.
_PARTIAL_POLISH_GAIN = 0.5
# Polishes in a row at one check: each taken part is followed at once by a probe of what
# is left and a polish with it (general exact shape (20, 25, 30), rank 5: the last
# components were polished at t = 40 instead of growing until t = 91).
_PARTIAL_POLISH_ROUNDS = 4
# The relative loss decrease over an epoch under which the flow looks for what is left.
_PLATEAU_DROP = 1e-2
# Vanilla "nothing moves": loss decrease below this over an epoch, and no slot grew 2x.
_STALL_DROP = 1e-6
# Settled checks in a row at which no slot could grow on what is left, before the flow
# gives up on it.
STUCK_CHECKS = 2
# On a partly observed target, each refined fit that fails to explain it multiplies the
# settled checks before the next try by this.
REFIT_WAIT_GROWTH = 2
# Without a rank, on a partly observed target whose rank the held-out error may choose:
# after this many refined fits in a row at the same count that fail to explain it, the
# flow hands over to the held-out path (StopReason.HELD_OUT). Measured on the kinetic
# tensor (order 4, 50% observed): one component fitted at t = 92, the slots re-drawn on
# the residual's next component (probed weight .10, floor .008) never grew before
# max_time = 5000 (125 s of the 125 s fit), and the result went to the held-out path.
HELD_OUT_REFITS = 3
# The growable settled checks at one count those refits take (waits of 3, 6 and 12). With
# a rank given on a partly observed target, a flow that has grown nothing more over as
# many settled checks stops ("stalled"), and the rank rules add the components it lacks on
# the residual's leading directions, fitted with the rest by ALS on the observed entries
# (held_out.extend_fit). Measured on the kinetic tensor at rank=5: one component fitted,
# then the flow ran to max_time (50 s, a max_time warning); now 13 s, same held-out error.
HELD_OUT_CHECKS = (STUCK_CHECKS + 1) * (2**HELD_OUT_REFITS - 1)


class StopReason(str, Enum):
    """Why a run stopped (a ``str``: ``trace.stop_reason == "max_time"`` reads as before)."""

    TOLERANCE = "tolerance"
    MAX_TIME = "max_time"
    RANK_REACHED = "rank_reached"
    NOTHING_TO_FIT = "nothing_to_fit"
    STALLED = "stalled"
    PLATEAU = "plateau"
    CALLBACK = "callback"
    HELD_OUT = "held_out"

    def __str__(self):
        return self.value


@dataclass(frozen=True)
class StopState:
    """What the stop rules carry from one settled check to the next; every transition is here.

    ``stuck_checks``: settled checks in a row at which no slot could grow on
    what is left (``STUCK_CHECKS`` of them: stalled). ``counted`` and
    ``same_count``: the number of components at the last settled check where
    one could grow, and for how many checks in a row it has not changed.
    ``refit_wait``: such checks before the refined read-out is tried
    (grows after each failed try on a partly observed target).
    ``most_fitted``: the most distinct components held at any check.
    ``polish_wait`` and ``polish_skipped``: growable settled checks to let pass
    before the next seeded polish, and how many have (each failed polish
    doubles the wait). ``refits_failed``: refined fits that failed in a row
    at the current count.
    """

    stuck_checks: int = 0
    counted: object = None
    same_count: int = 0
    refit_wait: int = STUCK_CHECKS + 1
    most_fitted: int = 0
    polish_wait: int = 0
    polish_skipped: int = 0
    refits_failed: int = 0

    def saw(self, fitted):
        """A check counted ``fitted`` distinct components."""
        return replace(self, most_fitted=max(self.most_fitted, fitted))

    def growth_checked(self, growable):
        """A settled check found (or did not find) residual weight a slot could grow on."""
        return replace(self, stuck_checks=0 if growable else self.stuck_checks + 1)

    @property
    def stalled(self):
        return self.stuck_checks >= STUCK_CHECKS

    def count_checked(self, fitted):
        """A settled check with ``fitted`` components (growable, where the residual was probed)."""
        if self.counted == fitted:
            return replace(self, same_count=self.same_count + 1)
        return replace(self, counted=fitted, same_count=0, refits_failed=0)

    def refit_due(self, rank):
        """Whether the refined read-out is tried now: enough checks with the same count (and the rank)."""
        return self.same_count >= self.refit_wait and (rank is None or self.counted == rank)

    def polish_due(self):
        """Whether the seeded polish is tried at this growable settled check."""
        return self.polish_skipped >= self.polish_wait

    def polish_counted(self):
        return replace(self, polish_skipped=0 if self.polish_due() else self.polish_skipped + 1)

    def polish_failed(self):
        """A failed seeded polish: twice as many checks (at least one) before the next."""
        return replace(self, polish_wait=max(1, 2 * self.polish_wait), polish_skipped=0)

    def refit_tried(self):
        return replace(self, same_count=0)

    def refit_failed(self, partly_observed):
        """A refined read-out did not explain the target: on partly observed ones, wait longer."""
        if not partly_observed:
            return self
        return replace(self, refit_wait=self.refit_wait * REFIT_WAIT_GROWTH,
                       refits_failed=self.refits_failed + 1)


def _mostly_one_direction(check, left):
    """Whether the strongest direction ``check`` found above the floor holds at least
    ``_PARTIAL_POLISH_GAIN`` of the squared residual ``left``: a polish with it alone can
    then be taken. On the order-4 CP target of the speed benchmark (50 components, 21
    placed by the first polish) it held far less, and the polish with it, not taken, cost
    as much as 20 flow steps."""
    return float(check.unexplained_weights[0]) ** 2 >= _PARTIAL_POLISH_GAIN * left


def _relative_drop(before, after):
    """How much the loss fell from ``before`` to ``after``, relative to ``before``."""
    return (before - after) / max(before, 1e-300)


def start_run(operator, model_type, settings, name, default_width, resolve_signs,
              random_state, default_step=DEFAULT_STEP_SIZE, rank_rules=False):
    """A new :class:`FlowRun` of ``settings`` (a validated FlowSettings) on ``operator``.

    ``model_type`` is the model class of the operator's kind;
    ``resolve_signs(width)`` gives the slot signs and whether re-drawn slots
    may change them. ``rank_rules``: a given rank is filled and the automatic
    rank of a partly observed target may be chosen by held-out error (see
    :class:`FlowRun`).
    """
    rng = check_random_state(random_state)
    target, scale = normalize(operator)
    model = model_type.for_target(target)
    resolved = settings.resolve(name, target, model, default_width, rng, default_step)
    slot_signs, adaptive = resolve_signs(resolved.width)
    run = FlowRun(operator, target, scale, model, resolved, slot_signs, adaptive, rng)
    run.rank_rules = rank_rules
    return run


def continue_run(run, settings, callback):
    """Advance ``run`` by ``settings.max_time``, then read out and check: ``(run, cp, trace)``.

    ``settings`` are this call's (validated); the run keeps the other
    settings it started with.
    """
    run.debias, run.stop_at_plateau = settings.debias, settings.stop_at_plateau
    run.advance(settings.max_time, callback=callback, verbose=settings.verbose)
    cp, trace = run.result(settings.debias)
    return run, cp, trace


class FlowRun:
    """A gradient-flow run that can be continued (``warm_start``): ``advance(t)`` twice is ``advance(2 t)``.

    With ``rank_rules`` (general CP) the result honours a given rank (the
    components the flow did not grow are added, see
    :func:`~tensorly_gfdeflate.flow.held_out.extend_fit`) and, without a rank,
    a partly observed target that is not clearly low rank plus noise gets the
    rank of least held-out error (:func:`~tensorly_gfdeflate.flow.held_out.held_out_path`).
    """

    rank_rules = False

    def __init__(self, operator, target, scale, model, settings, slot_signs, adaptive_signs,
                 rng):
        self.operator, self.target, self.scale = operator, target, scale
        self.model, self.settings, self.rng = model, settings, rng
        self.slot_signs, self.adaptive_signs = slot_signs, adaptive_signs
        s, context = settings, target.context
        W = model.slots(model.random(s.width, rng, context), s.init_scale)
        self.check_seed = int(rng.randint(2**31 - 1))
        # Model selection's answers, shared by the stop rules and the result (see Selection).
        self.selection_memo = {}
        # The default step adapts to the flow (up to MAX_STEP_GROWTH times the default);
        # a step the caller chose is kept (halved only on a rise of the loss).
        self.integrator = Integrator(target, model, W, tl.tensor(slot_signs, **context),
                                     s.regularization, s.step_size, warn=s.explicit_step,
                                     adaptive=not s.explicit_step,
                                     max_step=MAX_STEP_GROWTH * s.step_size)
        self.sign_history = [(0, slot_signs)]
        self.lineage = SlotLineage(s.width)
        self.epoch = 0
        self.epoch_length = s.epoch_time
        self.boundary = s.epoch_time
        self._start_epoch()
        self.stop_reason, self.horizon = None, 0.0
        # Without the debiasing re-fit (debias=False) the slots keep the regularized
        # flow's point: no seeded polish moves them to the exact fit.
        self.debias = True
        # A run that only starts another method stops at its first settled check.
        self.stop_at_plateau = False
        self.state = StopState()

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
        return self.target.observed_fraction < 1.0

    def selection(self):
        """Model selection on the current target, at the current step size."""
        s = self.settings
        return Selection(self.target, self.model, self.integrator.step_size, s.tol,
                         s.fit_threshold, s.noise_aware, self.check_seed, self.selection_memo)

    def _start_epoch(self):
        self.epoch_loss = self.checkpoint_loss = self.integrator.point.loss
        self.epoch_norms = tl.to_numpy(self.integrator.point.norms)
        self.checkpoint = self.integrator.time + self.settings.epoch_time

    # --- the loop ---------------------------------------------------------------------------

    def advance(self, duration, callback=None, verbose=False):
        """Integrate for up to ``duration`` more time units; returns the :class:`StopReason`."""
        # Horizons add up in flow time (a run stopped at its horizon continues from that
        # horizon, not from the step past it), so that advance(t) twice is advance(2 t)
        # whatever the steps.
        start = self.horizon if self.stop_reason == StopReason.MAX_TIME else self.integrator.time
        horizon = self.horizon = start + duration
        while True:
            reason = self._stop_reason(horizon, verbose)
            if reason is not None:
                break
            self.integrator.step()
            if callback is not None and _call_back(callback, self.integrator,
                                                   self.settings.name) is True:
                reason = StopReason.CALLBACK
                break
        self.stop_reason = reason
        return reason

    def _stop_reason(self, horizon, verbose):
        """Check the stop rules; at an epoch boundary, also apply the variant's interventions."""
        point = self.integrator.point
        if point.residual <= self.settings.tol and not self.target.norm_is_estimate:
            return StopReason.TOLERANCE
        if self.integrator.time >= horizon:
            return StopReason.MAX_TIME
        if self.integrator.time < self.boundary:
            return self._checkpoint_reason()
        self.epoch += 1
        drop = _relative_drop(self.epoch_loss, point.loss)
        if verbose:
            self._report()
        reason, seeds = self._boundary_reason(drop)
        if reason is None:
            self._intervene(seeds)
            self.epoch_length *= 1.0 + self.settings.epoch_growth
            self.boundary += self.epoch_length
            self._start_epoch()
        return reason

    def _checkpoint_reason(self):
        """Inside a long epoch, stop once the fit is settled and explains the target.

        Every ``epoch_time`` of flow time (no intervention: that waits for the
        boundary), so that a fit which settles early does not idle until the
        next, ever more distant, boundary.
        """
        s = self.settings
        if self.integrator.time < self.checkpoint:
            return None
        loss = self.integrator.point.loss
        drop = _relative_drop(self.checkpoint_loss, loss)
        self.checkpoint = self.integrator.time + s.epoch_time
        self.checkpoint_loss = loss
        if not self._is_settled(drop):
            return None
        fitted = self._count_fitted()
        if s.rank is not None and s.rank > fitted:
            if self.rank_rules and self.partly_observed:
                # No seeded polish on observed entries. A flow that has grown nothing more
                # over as many settled checks as the automatic rank waits before its
                # hand-over stops growing, and the rank rules add the components it lacks
                # (see HELD_OUT_CHECKS).
                self.state = self.state.count_checked(fitted)
                return StopReason.STALLED if self.state.same_count >= HELD_OUT_CHECKS else None
            return self._seeded_polish_reason()
        return self._explained_reason()[0]

    def _seeded_polish_reason(self):
        """Before ``rank`` components are fitted: the seeded polish alone (merge variant).

        The other stop rules wait for the rank; the seeded polish may finish
        the fit now, where the flow would grow the missing components one
        re-draw at a time.
        """
        if not self._polishes_seeds() or not self.state.polish_due():
            if self._polishes_seeds():
                self.state = self.state.polish_counted()
            return None
        model = self._debiased_model()
        if model is None:
            return None
        seeds = self._seeds_above_floors(self.target.minus(*model))
        if self._seeded_polish(model, seeds):
            return self._polished_reason()
        return None

    def _boundary_reason(self, drop):
        """At an epoch boundary: ``(stop reason or None, seeds for the re-drawn slots or None)``."""
        s, point = self.settings, self.integrator.point
        if self._is_settled(drop):
            reason, seeds = self._explained_reason()
            if reason is not None:
                return reason, seeds
        else:
            seeds = None
        if s.variant == "vanilla":
            norms = tl.to_numpy(point.norms)
            grew = np.any(norms**2 >= 2 * self.epoch_norms**2)
            if drop < _STALL_DROP and not grew:
                return StopReason.STALLED, seeds
        return None, seeds

    def _is_settled(self, drop):
        """The loss fell by less than ``_PLATEAU_DROP`` and (merge variant) no fitted slots are still pooling.

        The paper variant never merges: its pooled slots are pooled by the
        read-out, and the check of the result says whether that explains the
        tensor.
        """
        if drop >= _PLATEAU_DROP:
            return False
        return self.settings.variant != "merge" or not slots_still_pooling(
            self.integrator.point, self.model, self.settings.drop_threshold)

    def _count_fitted(self):
        """Distinct components fitted now (and the stop state remembers the most)."""
        fitted = count_fitted(self.integrator.point, self.model, self.settings.drop_threshold)
        self.state = self.state.saw(fitted)
        return fitted

    def _explained_reason(self):
        """Probe the residual: ``(stop reason or None, seeds)``, seeds the directions above the floor.

        A rank is "reached" only when the fit also explains the target: ``rank``
        fitted slots can hold blends of several components, and the residual
        then still holds what they missed.
        """
        s, point = self.settings, self.integrator.point
        fitted = self._count_fitted()
        if self.stop_at_plateau and s.rank is not None and fitted >= s.rank:
            return StopReason.PLATEAU, (point.directions[:, :0], np.zeros(0))
        model = self._debiased_model()
        residual = self.target if model is None else self.target.minus(*model)
        if model is not None and below_every_floor(self.target, residual, model[0],
                                                   s.fit_threshold):
            # Nothing can stand above the floor: no probe, no seeds (the run stops here).
            seeds = (point.directions[:, :0], np.zeros(0))
            return self._stuck_or_done(fitted, model, seeds, above=False)
        seeds = self._seeds_above_floors(residual)
        return self._stuck_or_done(fitted, model, seeds, above=bool(len(seeds[1])))

    def _seeds_above_floors(self, residual):
        """``(directions, weights)`` the probe of ``residual`` finds above their floors."""
        s = self.settings
        probe = probe_residual(residual, self.model, self.integrator.point.directions, self.rng)
        floors = np.full(len(probe.values), s.fit_threshold)
        if s.noise_aware:
            floors = np.maximum(noise_floors(self.target, self.model, residual, probe), floors)
        above = np.flatnonzero(np.abs(probe.values) > floors)
        return probe.directions[:, above.tolist()], probe.values[above]

    def _stuck_or_done(self, fitted, model, seeds, above):
        """The stop reason once the probe said whether anything stands ``above`` the floors."""
        rank = self.settings.rank
        if above:
            return self._stuck_reason(seeds, fitted, model), seeds
        if rank is not None and rank <= fitted:
            return StopReason.RANK_REACHED, seeds
        return StopReason.NOTHING_TO_FIT, seeds

    def _stuck_reason(self, seeds, fitted, model):
        """``STALLED`` when, at ``STUCK_CHECKS`` settled checks in a row, no slot could grow on what is left.

        What is left is measured with least-squares weights; the flow sees its
        own residual, with every fitted weight shrunk by ``lambda / 2``. A slot
        along ``u`` grows only if that residual's ``|R(u^l)| > lambda / 2``.
        For non-orthogonal components the shrinkage leaves weight off their
        directions that no slot can grow on (the refinement with ``lambda = 0``
        fits it): more flow time changes nothing, and the check of the refined
        result decides. A component that is merely slow to grow keeps the
        flow going.
        """
        point = self.integrator.point
        seen = self.target.minus(point.mass, point.directions).evaluate(seeds[0])
        growable = bool(np.any(2.0 * np.abs(tl.to_numpy(seen)) > self.settings.regularization))
        self.state = self.state.growth_checked(growable)
        if self.stop_at_plateau and not growable:
            return StopReason.PLATEAU
        if self.state.stalled:
            return StopReason.STALLED
        if not growable:
            return None
        if self._seeded_polish(model, seeds):
            return self._polished_reason()
        return self._refined_fit_reason(fitted, model)

    def _polished_reason(self):
        """After a seeded polish that explains the tensor: the rank is reached, or nothing is left."""
        rank = self.settings.rank
        if rank is not None and rank <= self._count_fitted():
            return StopReason.RANK_REACHED
        return StopReason.NOTHING_TO_FIT

    def _seeded_polish(self, model, seeds):
        """Merge variant: whether the fitted components and the probe's directions, polished
        together, explain the tensor; if so the slots take them (a ``"polish"`` event).

        The probe of a settled fit finds the components still missing, and the
        exact polish (:func:`~tensorly_gfdeflate.flow.integration.polish`) fits
        them with the others in a few sweeps, where the flow would re-draw slots
        on them and wait an epoch or more for each to grow. The check decides,
        as for every result; a failed try doubles the settled checks before
        the next. The paper variant never jumps (its discovery times are what
        it measures), nor does a partly observed target (:meth:`_polishes_seeds`).
        """
        if not self._polishes_seeds() or model is None or not len(seeds[1]):
            return False
        due, self.state = self.state.polish_due(), self.state.polish_counted()
        free = self._free_slots()
        if not due or not free:
            return False
        for _ in range(_PARTIAL_POLISH_ROUNDS):
            model, check, left, taken = self._polish_with(model, seeds, free)
            if check.explained and taken:
                return True
            free = self._free_slots()
            if not taken or not free or not _mostly_one_direction(check, left):
                break
            # Part of what is missing, found at once: the slots took it; what is left
            # (the check's probe found it) is polished again now, not after the flow's
            # next plateau, with its strongest direction only (as deflation would): the
            # probe's weaker maxima there are mostly blends of what the polished
            # components left (general case of the speed benchmark, seed 1: four seeds,
            # two of them blends, gave seven exact components that model selection then
            # cut to five, 25 ALS sweeps a component).
            seeds = (check.unexplained_directions[:, :1], check.unexplained_weights[:1])
        self.state = self.state.polish_failed()
        return False

    def _polish_with(self, model, seeds, free):
        """Polish ``model`` and the probe's ``seeds`` together: ``((weights, vectors), check,
        squared residual left (None when explained), taken)``; the slots take the result
        when it explains the tensor or leaves at most ``_PARTIAL_POLISH_GAIN`` of the
        model's squared residual."""
        context, selection = self.target.context, self.selection()
        count = min(len(seeds[1]), len(free))
        weights = tl.concatenate([model[0], tl.tensor(seeds[1][:count], **context)])
        vectors = tl.concatenate([model[1], seeds[0][:, :count]], axis=1)
        weights, vectors, _ = selection.refine(weights, vectors)
        check = selection.check(weights, vectors)
        # What is left matters only to a fit that does not explain the tensor.
        left = None if check.explained else self.target.minus(weights, vectors).norm_sq
        halves = (not check.explained
                  and left <= _PARTIAL_POLISH_GAIN * self.target.minus(*model).norm_sq)
        taken = (check.explained or halves) and self._take(weights, vectors, free)
        return (weights, vectors), check, left, taken

    def _polishes_seeds(self):
        """The seeded polish runs in the merge variant on fully observed targets, debiased, only.

        On observed entries the probe's least-squares directions also fit a
        few entries each, and polished with the fitted components they can
        fit the entries with a longer, degenerate decomposition (measured:
        four components, two large, for a rank-3 tensor at 50% observed).
        """
        return self.settings.variant == "merge" and not self.partly_observed and self.debias

    def _free_slots(self):
        """Slots in no group of the last read-out, smallest first: where new components go."""
        used = {slot for group in self._model_groups for slot in group}
        norms = tl.to_numpy(self.integrator.point.norms)
        return [int(j) for j in np.argsort(norms, kind="stable") if int(j) not in used]

    def _take(self, weights, vectors, free):
        """Put the polished components into slots: the read-out's leaders, then ``free`` ones.

        The other members of the read-out's groups start afresh at
        ``init_scale``. Returns False (and changes nothing) where a slot's
        fixed sign cannot carry its component's weight.
        """
        weights, vectors = canonical_signs(self.model, weights, vectors)
        leaders = [group[0] for group in self._model_groups]
        slots = leaders + free[:tl.shape(weights)[0] - len(leaders)]
        needed = np.where(tl.to_numpy(weights) < 0, -1.0, 1.0)
        signs = self.slot_signs.copy()
        if not self.adaptive_signs and np.any(signs[slots] != needed):
            return False
        signs[slots] = needed
        integrator, snapshot = self.integrator, len(self.integrator.times) - 1
        emptied = [j for group in self._model_groups for j in group[1:]]
        W = integrator.W
        if emptied:
            W = redraw(self.model, W, emptied, self.settings.init_scale, self.rng)
        placed = self.model.slots(vectors, tl.sqrt(tl.abs(weights)))
        columns = np.zeros((len(slots), tl.shape(W)[1]))
        columns[np.arange(len(slots)), slots] = 1.0
        keep = np.ones(tl.shape(W)[1])
        keep[slots] = 0.0
        W = (W * tl.tensor(keep, **self.target.context)
             + tl.dot(placed, tl.tensor(columns, **self.target.context)))
        seeded = slots[len(leaders):]
        self.lineage.redraw(seeded + emptied, snapshot)
        integrator.events.append(FlowEvent(integrator.time, "polish", tuple(seeded)))
        if np.any(signs != self.slot_signs):
            self.slot_signs = signs
            integrator.set_signs(tl.tensor(signs, **self.target.context))
            self.sign_history.append((snapshot, signs))
        integrator.replace(W)
        # One slot a component now: what a read-out of the new slots would group.
        self._model_groups = [[slot] for slot in slots]
        return True

    def _refined_fit_reason(self, fitted, model):
        """With the same number of components for ``refit_wait`` settled checks, whether the
        refined read-out already explains the tensor.

        What is left may be growable yet slow (weight just above ``lambda /
        2``: a re-drawn slot needs longer than an epoch), and the refinement
        with ``lambda = 0`` fits it anyway: then the run is done, with the
        result it would return. A real component still missing is not fitted
        by the refinement, and the flow goes on. On a partly observed target
        each failed try makes the next wait longer, so that a flow that cannot
        fit the observed entries spends a bounded share of its time on tries;
        when the model has more free parameters than there are observed
        entries the flow has stalled: more flow time fits them, not the tensor.
        """
        rank = self.settings.rank
        self.state = self.state.count_checked(fitted)
        if not self.state.refit_due(rank):
            return None
        self.state = self.state.refit_tried()
        if model is None:
            return None
        done = StopReason.NOTHING_TO_FIT if rank is None else StopReason.RANK_REACHED
        selection = self.selection()
        if selection.gap_prefix(*model) is not None:
            return done
        if selection.underdetermined(tl.shape(model[0])[0]):
            return StopReason.STALLED
        if selection.explains(*selection.refine(*model)[:2]):
            return done
        self.state = self.state.refit_failed(self.partly_observed)
        if self._hands_over_to_held_out(selection):
            return StopReason.HELD_OUT
        return None

    def _hands_over_to_held_out(self, selection):
        """Whether the flow stops for the held-out path: ``HELD_OUT_REFITS`` refined fits in a
        row at the same count failed to explain a partly observed target (no rank given).

        Such a result is not clearly low rank plus noise (it does not explain
        the observed entries), so its rank would be chosen by held-out error
        (:func:`~tensorly_gfdeflate.flow.held_out.needs_held_out`); more flow
        time could only change that by growing what the flow has not grown
        over those checks (on an order-4 tensor a re-drawn slot grows from
        ``init_scale`` in hundreds of time units, see ``HELD_OUT_REFITS``).
        """
        return (self.rank_rules and self.settings.rank is None
                and self.state.refits_failed >= HELD_OUT_REFITS
                and can_hold_out(selection))

    def _debiased_model(self):
        """The fitted directions with least-squares weights, ``(weights, vectors)``, or None.

        The regularizer shrinks every fitted weight by ``lambda / 2``; for
        components that are not orthogonal, those shrinkages add up to residual
        weight above ``lambda`` in directions no slot holds, which no re-drawn
        slot can fit (it is an artefact): the checks look at this model's
        residual instead.
        """
        weights, vectors, self._model_groups = read_out(
            self.target, self.model, self.integrator.W, self.integrator.signs, None,
            self.settings.drop_threshold, True)
        return None if weights is None else (weights, vectors)

    # --- epoch interventions ----------------------------------------------------------------

    def _intervene(self, seeds):
        """Merge aligned slots (merge variant), then re-draw the small ones (paper, merge).

        The merge variant's re-drawn slots start on ``seeds``, the residual
        directions the boundary's probe found above the floor (if it ran).
        """
        s, integrator = self.settings, self.integrator
        if s.variant == "vanilla":
            return
        W, snapshot = integrator.W, len(integrator.times) - 1
        if s.variant == "merge":
            W, groups = merge_aligned(W, integrator.point, self.model)
            for leader, *absorbed in groups:
                self.lineage.merge(leader, absorbed, snapshot)
                integrator.events.append(FlowEvent(
                    integrator.time, "merge", tuple(int(j) for j in (leader, *absorbed))))
        norms = tl.to_numpy(self.model.split(W)[0])
        small = np.flatnonzero(norms < s.reinit_threshold).tolist()
        if small:
            seeds = seeds if s.variant == "merge" else None
            pairs, signs = seed_slots(small, self.slot_signs, seeds, self.adaptive_signs)
            W = redraw(self.model, W, small, s.init_scale, self.rng, seeds, pairs)
            integrator.events.append(FlowEvent(integrator.time, "redraw", tuple(small)))
            self.lineage.redraw(small, snapshot)
            if np.any(signs != self.slot_signs):
                self.slot_signs = signs
                integrator.set_signs(tl.tensor(signs, **self.target.context))
                self.sign_history.append((snapshot, signs))
        integrator.replace(W)

    def _report(self):
        s, point = self.settings, self.integrator.point
        fitted = int(np.sum(tl.to_numpy(point.norms) >= s.reinit_threshold))
        print(
            f"[{s.name}] epoch {self.epoch} t={self.integrator.time:.1f} "
            f"loss={point.loss:.3e} residual={point.residual:.3e} "
            f"components>{s.reinit_threshold:g}: {fitted}"
        )

    # --- the result -------------------------------------------------------------------------

    def result(self, debias):
        """Read out (and refine) the current model, check it and report: ``(cp, trace)``.

        The trace carries the :class:`~tensorly_gfdeflate.check.verdict.Verdict`
        (``trace.verdict``); nothing is warned here.
        """
        s, target = self.settings, self.target
        selection = self.selection()
        # Debiased, every fitted component is refined before the cut to rank:
        # which ``rank`` of them explain the tensor is decided on the refined fit.
        weights, vectors, groups = read_out(
            target, self.model, self.integrator.W, self.integrator.signs,
            None if debias else s.rank, s.drop_threshold, debias,
            min_weight=s.regularization / 2)
        refine_steps = 0
        if weights is None:
            # The zero tensor as one zero-weight component: TensorLy's CP functions
            # reject rank 0. The verdict and found = 0 say that nothing was fitted.
            weights = tl.zeros(1, **target.context)
            vectors = tl.tensor(np.eye(target.dim, 1), **target.context)
            groups = [[]]
        elif debias:
            weights, vectors, kept, refine_steps = selection.refined_fit(
                weights, vectors, len(groups), s.rank)
            groups = [groups[i] for i in kept]
        check = selection.check(weights, vectors)
        curve = None
        if self.rank_rules:
            weights, vectors, groups, check, curve, more = self._apply_rank_rules(
                selection, weights, vectors, groups, check)
            refine_steps += more
        found = int(np.count_nonzero(tl.to_numpy(weights)))
        snr, noise = signal_to_noise(weights, check)
        weak = weak_components(weights, snr, s.fit_threshold) if self.rank_rules else ()
        verdict = flow_verdict(self._outcome(found, selection, weak, curve), check)
        cp, permutation = to_cp_tensor(self.model, weights, vectors, self.scale)
        final_error = float(np.sqrt(target.minus(weights, vectors).norm_sq / target.norm_sq))
        trace = self._trace([groups[i] for i in permutation], refine_steps, verdict,
                            final_error)
        trace.component_snr, trace.noise_level = snr[permutation], noise
        trace.validation = curve
        return cp, trace

    def _apply_rank_rules(self, selection, weights, vectors, groups, check):
        """A given rank filled (and polished, partly observed), or the held-out rank where
        the noise floor's does not apply.

        Returns ``(weights, vectors, groups, check, curve, steps)``; ``curve``
        is the :class:`~tensorly_gfdeflate.flow.held_out.ValidationCurve`, or
        None when the rank was given or the noise floor's rule kept.
        """
        s, curve = self.settings, None
        found = 0 if weights is None or not np.any(tl.to_numpy(weights)) else len(groups)
        rank = s.rank
        if rank is None:
            handed_over = self.stop_reason == StopReason.HELD_OUT
            if not handed_over and not needs_held_out(selection, weights, check, found):
                return weights, vectors, groups, check, None, 0
            rng = np.random.RandomState(self.check_seed)
            curve, steps = held_out_path(selection, s.width, rng)
            rank = curve.chosen
        else:
            # Fully observed, the flow's refined fit of that rank stands; partly observed,
            # ALS on the observed entries settles what the gradient refinement leaves short.
            if found >= rank and not selection.partly_observed:
                return weights, vectors, groups, check, None, 0
            steps = 0
        # The largest of the flow's components start the fit of that rank; the rest are grown.
        order = np.argsort(-np.abs(tl.to_numpy(weights)), kind="stable").tolist()
        weights, vectors, groups = weights[order], vectors[:, order], [groups[i] for i in order]
        kept = min(found, rank)
        start = (None, None) if kept == 0 else (weights[:kept], vectors[:, :kept])
        if kept:
            start_weights, start_vectors, spent = polish(selection, *start)
            start, steps = (start_weights, start_vectors), steps + spent
        weights, vectors, spent = extend_fit(selection, *start, rank,
                                             np.random.RandomState(self.check_seed + 1))
        groups = groups[:kept] + [[] for _ in range(rank - kept)]
        return weights, vectors, groups, selection.check(weights, vectors), curve, steps + spent

    def _outcome(self, found, selection, weak=(), curve=None):
        residual = self.integrator.point.residual
        if self.target.norm_is_estimate:
            residual_text = f"relative residual about {residual:.2g}, against an estimated norm"
        else:
            residual_text = f"relative residual {residual:.3g}"
        return RunOutcome(
            name=self.settings.name, rank=self.settings.rank, width=self.settings.width,
            found=found, most_fitted=self.state.most_fitted, stop_reason=self.stop_reason,
            time=self.integrator.time, underdetermined=selection.underdetermined(found),
            parameters=self.model.parameters(found) if found else 0,
            n_observed=self.target.n_observed, residual_text=residual_text,
            weak=tuple(weak), validation=curve,
            unobserved=unobserved_slices(self.target, found) if self.rank_rules else ())

    def _signs_per_snapshot(self):
        """``(n_snapshots, width)`` slot signs: adaptive re-draws change them over time."""
        signs = np.empty((len(self.integrator.times), len(self.slot_signs)))
        for (start, values), (stop, _) in zip(self.sign_history,
                                              self.sign_history[1:] + [(None, None)]):
            signs[start:stop] = values
        return signs

    def _trace(self, groups, refine_steps, verdict, final_error):
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
            stop_reason=str(self.stop_reason),
            step_size=integrator.step_size,
            scale=self.scale,
            refine_steps=refine_steps,
            final_error=final_error,
            explained=verdict.explained,
            unexplained_weight=verdict.unexplained_weight,
            noise_floor=verdict.noise_floor,
            most_fitted=self.state.most_fitted,
            verdict=verdict,
        )


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
