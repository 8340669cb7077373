"""Model selection: which refined components the run returns (and whether they explain the target).

Everything here is a function of explicit inputs, gathered in one frozen
:class:`Selection`; the stop rules of the run and its result ask the same
questions of it. See :ref:`theory-selection`.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np
import tensorly as tl

from ..check.probe import (NOISE_MARGIN, check_fit, fitted_noise_factor, noise_ratio,
                           sizes_noise)
from ..check.readout import refit_weights
from .integration import refine

__all__ = ["Selection", "GAP_RATIO", "MINIMALITY_TRIES"]

# Components tried per round when looking for a shorter decomposition (automatic rank).
MINIMALITY_TRIES = 2
# A weight this many times the next one marks a gap: the components below it are tried without.
GAP_RATIO = 10.0
# Answers a run's memo keeps (the oldest go first): the last stop rule's refinements and
# checks of its prefixes, which the result asks again, are a few of them.
MEMO_SIZE = 32
# Relative rounding allowed on a noise level (a probed value against the residual's norm,
# each computed by its own expansion) when bounding it in :meth:`Selection.no_shorter_fit`.
_LEVEL_ROUNDING = 1.0 + 1e-6


@dataclass(frozen=True)
class Selection:
    """What model selection reads: the normalized target, its model and the run's floors.

    ``step_size`` is the run's current step (after any back-off);
    ``check_seed`` seeds the random starts of every check of a result, so
    that checking never moves the run's own random stream and the same
    components always get the same verdict.
    """

    target: object
    model: object
    step_size: float
    tol: float
    fit_threshold: float
    noise_aware: bool
    check_seed: int
    memo: dict = field(default=None, compare=False, repr=False)

    @property
    def partly_observed(self):
        """Whether only some entries of the target are observed (completion)."""
        return self.target.observed_fraction < 1.0

    def check(self, weights, vectors):
        """The :func:`~tensorly_gfdeflate.check.probe.check_fit` verdict on ``weights``, ``vectors``."""
        return self._remembered(
            ("check", self.fit_threshold, self.noise_aware, self.check_seed), weights, vectors,
            lambda: check_fit(self.target, self.model, weights, vectors,
                              np.random.RandomState(self.check_seed), self.fit_threshold,
                              self.noise_aware))

    def _remembered(self, question, weights, vectors, compute):
        """``compute()``, or its earlier answer to the same question on the same arrays.

        Checks and refinements are deterministic functions of the target, the
        model, the settings in ``question`` and the arrays' values (checks
        seed their own random starts): a stop rule that refined and checked a
        read-out leaves the same answer to the result, which reads out the
        same components. The memo (one per run) keeps the target and the
        model it answered for, so that neither's id can be reused.
        """
        if self.memo is None:
            return compute()
        key = (question, id(self.target), id(self.model), _array_key(weights),
               _array_key(vectors))
        if key not in self.memo:
            if len(self.memo) >= MEMO_SIZE:
                del self.memo[next(iter(self.memo))]
            self.memo[key] = (self.target, self.model, compute())
        return self.memo[key][2]

    def explains(self, weights, vectors):
        return self.check(weights, vectors).explained

    def refine(self, weights, vectors):
        """The refinement flow, then the least-squares weights: ``(weights, vectors, steps)``.

        On a partly observed target a refinement also stops once ``tol`` is
        out of its reach: there the fits that do not explain the observed
        entries creep instead of levelling off, and :meth:`gap_prefix`
        refines many of them.
        """
        def compute():
            _, refined, steps = refine(self.target, self.model, weights, vectors,
                                       self.step_size, self.tol, give_up=self.partly_observed)
            return refit_weights(self.target, refined), refined, steps

        refined_weights, refined, steps = self._remembered(
            ("refine", self.step_size, self.tol), weights, vectors, compute)
        # Copies: a caller may change its arrays, never the remembered answer.
        return tl.copy(refined_weights), tl.copy(refined), steps

    def underdetermined(self, found):
        """Whether ``found`` components have at least as many free parameters as observed entries."""
        return (self.partly_observed and found > 0
                and self.model.parameters(found) >= self.target.n_observed)

    def refined_fit(self, weights, vectors, count, rank):
        """The refined read-out, shortened to ``rank`` or to a minimal decomposition.

        Returns ``(weights, vectors, kept, steps)``, ``kept`` indexing the
        ``count`` read-out components. A read-out with more free parameters
        than observed entries is returned as read out (least-squares
        weights) when no prefix explains the entries: refining it fits them
        exactly but slowly, minimizing it drops components one slow
        refinement at a time, and the result predicts nothing either way
        (the warning says so).
        """
        if rank is None:
            shortcut = self.gap_prefix(weights, vectors)
            if shortcut is not None:
                # The prefix explains the tensor; it may still hold a blend and its patch.
                weights, vectors, kept, steps = shortcut
                weights, vectors, rest, more = self.minimize(weights, vectors)
                return weights, vectors, [kept[q] for q in rest], steps + more
            if self.underdetermined(count):
                return weights, vectors, list(range(count)), 0
        weights, vectors, steps = self.refine(weights, vectors)
        if rank is None:
            weights, vectors, kept, more = self.minimize(weights, vectors)
        elif count > rank:
            weights, vectors, kept, more = self.reduce(weights, vectors, rank)
        else:
            kept, more = list(range(count)), 0
        return weights, vectors, kept, steps + more

    def reduce(self, weights, vectors, rank):
        """``rank`` of the refined components that explain the tensor.

        The ``rank`` largest are tried first. When they fall short (a slot
        holds a blend of two components, patched by extra slots), components
        are dropped one at a time (see :meth:`without_one`). Returns
        ``(weights, vectors, kept, steps)``, ``kept`` indexing the input.
        """
        largest = np.argsort(-np.abs(tl.to_numpy(weights)), kind="stable")[:rank].tolist()
        trial_weights, trial_vectors, steps = self.refine(weights[largest], vectors[:, largest])
        if self.explains(trial_weights, trial_vectors):
            return trial_weights, trial_vectors, largest, steps
        kept = list(range(tl.shape(weights)[0]))
        while len(kept) > rank:
            _, rest, weights, vectors, spent = self.without_one(weights, vectors)
            kept, steps = [kept[q] for q in rest], steps + spent
        return weights, vectors, kept, steps

    def gap_prefix(self, weights, vectors):
        """The largest components down to a gap in the weights, refined, if they explain the tensor.

        Components an order of magnitude (``GAP_RATIO``) below the rest are
        usually what the regularizer's shrinkage left to idle slots (on
        partly observed tensors above all, where it spreads to other
        directions); refining them along with the rest is slow and
        :meth:`minimize` would drop them one by one. Each such prefix (see
        :meth:`prefix_lengths`) is tried, shortest first; None when none
        explains. Sample statistics keep the full path (see :meth:`minimize`).

        On a partly observed target a prefix must also leave no more than the
        whole fit plus what noise could put in the components it lacks
        (:meth:`noise_energy`, one per component), as a dropped component
        must in :meth:`minimize`: on few entries the prefix's refined
        components absorb much of a component they lack and spread the rest
        over directions that none holds above the noise floor alone.
        """
        if self.target.is_sampled:
            return None
        magnitudes = np.abs(tl.to_numpy(weights))
        order = np.argsort(-magnitudes, kind="stable")
        whole = self.target.minus(weights, vectors).norm_sq if self.partly_observed else None
        steps = 0
        for k in self.prefix_lengths(magnitudes[order]):
            kept = order[:k].tolist()
            trial_weights, trial_vectors, spent = self.refine(weights[kept], vectors[:, kept])
            steps += spent
            if whole is None:
                if self.explains(trial_weights, trial_vectors):
                    return trial_weights, trial_vectors, kept, steps
                continue
            lacking = len(order) - k
            miss = self.target.minus(trial_weights, trial_vectors).norm_sq
            # Beyond every allowance a check could give, the prefix fails unchecked.
            if miss > self.allowance_bound(whole, k, miss, lacking):
                continue
            check = self.check(trial_weights, trial_vectors)
            if check.explained and miss <= whole + lacking * self.noise_energy(check, check):
                return trial_weights, trial_vectors, kept, steps
        return None

    def prefix_lengths(self, sorted_weights):
        """How many of the largest components :meth:`gap_prefix` tries: those down to a gap.

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
        return [k for k in lengths if sorted_weights[k - 1] >= GAP_RATIO * sorted_weights[k]]

    def minimize(self, weights, vectors):
        """Drop components while the rest, refined, still explain the tensor (automatic rank).

        A flow can settle on a longer exact decomposition than the tensor's:
        a slot that found a blend of two close components, and slots that
        patch the difference. Only the ``MINIMALITY_TRIES`` most redundant
        components are tried per round, which keeps the cost at a few
        refinements when the decomposition is already minimal.
        """
        kept, steps = list(range(tl.shape(weights)[0])), 0
        check = self.check(weights, vectors)
        if not check.explained:
            return weights, vectors, kept, steps
        while len(kept) > 1:
            miss = self.target.minus(weights, vectors).norm_sq
            if self.no_shorter_fit(len(kept), miss):
                break
            explains, rest, fewer_weights, fewer_vectors, spent = self.without_one(
                weights, vectors, MINIMALITY_TRIES, (miss, check))
            steps += spent
            if not explains:
                break
            weights, vectors, kept = fewer_weights, fewer_vectors, [kept[q] for q in rest]
        return weights, vectors, kept, steps

    def no_shorter_fit(self, count, miss):
        """Whether no fit of ``count - 1`` components can pass :meth:`minimize`'s test: a proof.

        A passing fit's squared residual ``m`` is at most
        :meth:`allowance_bound` ``= miss + max(a m, fit_threshold^2)``, so with
        ``a < 1`` at most ``max(miss / (1 - a), miss + fit_threshold^2)``; the
        target's :meth:`rank_miss_bound` (Eckart-Young on its unfoldings)
        bounds every ``m`` from below, whatever the refinement would do. Above
        the ceiling the refits without each component cannot pass and are
        skipped: the result is the one they would return.
        """
        ratio = self.energy_ratio(count - 1)
        bound = self.target.rank_miss_bound(count - 1)
        if ratio is None or ratio >= 1.0 or bound <= 0.0:
            return False
        return bound > max(miss / (1.0 - ratio), miss + self.fit_threshold**2)

    def allowance_bound(self, miss, count, trial_miss, lacking=1):
        """The most a ``count``-component fit with squared residual ``trial_miss`` is allowed.

        ``miss + lacking noise_energy`` for the longer fit's ``miss`` (``lacking``
        the components the shorter one lacks: one in :meth:`minimize`, the
        cut ones in :meth:`gap_prefix`), whatever the shorter fit's check
        says: ``miss + lacking max(a trial_miss, fit_threshold^2)`` with ``a``
        the :meth:`energy_ratio` (inf where there is none).
        """
        ratio = self.energy_ratio(count)
        if ratio is None:
            return np.inf
        return miss + lacking * max(ratio * trial_miss, self.fit_threshold**2)

    def energy_ratio(self, count):
        """``a``: :meth:`noise_energy` of a ``count``-component fit is at most ``max(a |R|^2, floor^2)``.

        Only where the noise is sized from the residual (a dense array or
        observed entries, noise-aware); None elsewhere. There the energy is
        ``NOISE_MARGIN level^2`` (or the floor's square) and the level at most
        ``max(kappa, 1 / NOISE_MARGIN)`` times ``|R|`` times the fitted-noise
        factor: :func:`~tensorly_gfdeflate.check.probe._dense_noise_level`
        returns ``kappa`` times the residual's norm, or a level below a probed
        value over ``NOISE_MARGIN``, and a probed value is at most ``|R|``
        (Cauchy-Schwarz, as in
        :func:`~tensorly_gfdeflate.check.probe.below_every_floor`).
        """
        if self.target.is_sampled or not (self.noise_aware
                                           and sizes_noise(self.target, self.model)):
            return None
        level_ratio = (max(noise_ratio(self.target, self.model), 1.0 / NOISE_MARGIN)
                       * fitted_noise_factor(self.target, self.model, count)
                       * _LEVEL_ROUNDING)
        return NOISE_MARGIN * level_ratio**2

    def noise_energy(self, check, trial):
        """How much dropping a component may raise the squared residual: what noise puts in one.

        A shorter fit that leaves nothing above the floor in any one direction
        can still miss a component: the rest, refined, absorb part of it
        (overlapping components above all) and spread the remainder over many
        directions. What it leaves in the squared residual tells, and is set
        against what noise could have given one component:

        - sample statistics: a component at the floor of the longer fit
          (``check``);
        - a dense array, or observed entries enough to size their noise
          (:func:`~tensorly_gfdeflate.check.probe.sizes_noise`), its noise
          sized (``regularization="auto"``): ``NOISE_MARGIN`` times the
          square of the target's noise level in the shorter fit (``trial``),
          and at least the square of the solver's own floor, below which
          nothing counts (a noise-free array). Measured at d = 12, order 3:
          dropping a component fitted to noise costs at most 1.7 times the
          square of the level, dropping a true component of weight three
          times the noise's injective norm at least 2.2 times;
        - other targets have no noise level to compare with (a CP tensor is
          exact): the check alone decides.
        """
        if self.target.is_sampled:
            return check.floor**2
        if not (sizes_noise(self.target, self.model) and self.noise_aware):
            return np.inf
        level = float(np.max(trial.component_noise, initial=0.0))
        return max(NOISE_MARGIN * level**2, self.fit_threshold**2)

    def without_one(self, weights, vectors, tries=None, longer=None):
        """The refined fit with one component fewer: ``(explains, rest, weights, vectors, steps)``.

        Components are tried in order of redundancy (the smallest residual when
        the others' weights alone are re-fitted without it), each time refining
        the rest; the first that still explains the tensor, with a squared
        residual within ``miss + noise_energy`` of the ``longer`` fit's
        ``(miss, check)`` (when given), is taken, or else the one with the
        smallest residual. ``rest`` indexes the input. A trial whose residual
        exceeds every allowance a check could give it (:meth:`allowance_bound`)
        cannot be taken and is not checked.
        """
        positions = range(tl.shape(weights)[0])
        candidates = sorted(positions, key=lambda p: self.miss_without(vectors, p))[:tries]
        best, steps = None, 0
        for p in candidates:
            rest = [q for q in positions if q != p]
            trial_weights, trial_vectors, spent = self.refine(weights[rest], vectors[:, rest])
            steps += spent
            miss = self.target.minus(trial_weights, trial_vectors).norm_sq
            explains = self._passes(trial_weights, trial_vectors, miss, longer)
            if explains or best is None or miss < best[0]:
                best = (miss, explains, rest, trial_weights, trial_vectors)
            if explains:
                break
        return (*best[1:], steps)

    def _passes(self, weights, vectors, miss, longer):
        """Whether a shorter fit with squared residual ``miss`` explains the tensor within the allowance."""
        if longer is None:
            return self.explains(weights, vectors)
        longer_miss, longer_check = longer
        if miss > self.allowance_bound(longer_miss, tl.shape(weights)[0], miss):
            return False
        check = self.check(weights, vectors)
        return check.explained and miss <= longer_miss + self.noise_energy(longer_check, check)

    def miss_without(self, vectors, position):
        """Squared residual when column ``position`` is dropped and the others' weights re-fitted."""
        rest = [q for q in range(tl.shape(vectors)[1]) if q != position]
        return self.target.minus(refit_weights(self.target, vectors[:, rest]),
                                 vectors[:, rest]).norm_sq


def _array_key(array):
    """The array's shape, dtype and a 256-bit digest of its values.

    A digest, not the values: a large target's vectors would make the memo
    as large as the run's arrays. Two different arrays with one BLAKE2b-256
    digest are not known to exist (a chance of 2^-128 per pair).
    """
    values = np.ascontiguousarray(tl.to_numpy(array))
    return values.shape, values.dtype.str, hashlib.blake2b(values.tobytes(), digest_size=32).digest()
