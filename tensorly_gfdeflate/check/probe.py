"""Looking for what a decomposition left: power iterations on the residual, and the noise floor.

Both solvers check their result the same way before they report success: they
power-iterate on the residual ``T* - T_hat`` (from their own directions and
random ones, both signs) and compare the largest residual weight ``R(v^l)``
found with the level that noise alone could show:

- sample statistics (:class:`~tensorly_gfdeflate.SampleMoments`,
  :class:`~tensorly_gfdeflate.SampleCumulants`) know their standard error
  along any direction, estimated from the data: the floor is
  ``NOISE_STANDARD_ERRORS`` standard errors there;
- a dense array is compared with a Gaussian symmetric tensor of the
  residual's own size (after the structure the probe finds is taken out):
  such noise shows a weight of ``kappa(d, l)`` times its Frobenius norm in
  its best direction, and the floor is twice that; the observed entries of a
  general tensor (a masked array, ObservedEntries) the same way, with the
  ``kappa`` of Gaussian noise on the same entries, the weights being
  least-squares weights there;
- a CP tensor is exact: only the caller's floor (regularization, tol) counts.

The floors judge the residual, against the noise the fit left in it. The noise
level reported for the components (their signal-to-noise ratios) is that of
the target, all of its noise: for a dense array, the residual's level scaled
up for the degrees of freedom the fit took (:func:`fitted_noise_factor`).
"""

import weakref
from dataclasses import dataclass, field

import numpy as np
import tensorly as tl

from .readout import ALIGNMENT_TOL, canonical_signs, group_aligned

__all__ = ["regularization_above_noise", "probe_residual", "ResidualProbe", "noise_ratio", "shape_noise_ratio",
           "observed_noise_ratio",
           "noise_levels", "fitted_noise_factor", "noise_floors", "sizes_noise",
           "check_fit", "signal_to_noise", "below_every_floor",
           "FitCheck", "NOISE_STANDARD_ERRORS", "NOISE_MARGIN", "DEFAULT_FLOOR"]

# Random starts (at least) when looking for a residual direction worth fitting.
PROBE_RANDOM_STARTS = 16
# The floor below which residual weights do not count when nothing else sets one
# (relative to the norm): the flow's default regularization, lambda = 1e-3.
DEFAULT_FLOOR = 1e-3
# A weight within this many standard errors of zero cannot be told from sampling noise.
NOISE_STANDARD_ERRORS = 3.0
# A dense residual "holds structure" when its probe finds more than this many times
# what a Gaussian symmetric tensor of its size shows (its injective norm). Measured:
# that norm fluctuates by about 15% between draws, so twice it is never reached by noise.
NOISE_MARGIN = 2.0
# Matched-noise tensors are built up to this many entries; larger ones are extrapolated.
_MATCHED_NOISE_ENTRIES = 2**20
# The noise of a partly observed target is sized only where NOISE_MARGIN kappa, its floor
# relative to the residual, is below this: a residual of one component, after the fitted
# components moved to absorb part of it, holds it in one rank-one term only in part.
# Measured on shape (30, 30, 30), rank 3, seeds 0-4, exact and with 1% and 5% noise: at 5%
# observed (kappa 0.37 to 0.40) every run right; at 3% (kappa 0.46 to 0.50, below 1/2)
# 6 of 15 runs silently wrong; taken as exact, every run there warns or is right.
_OBSERVED_SHARE = 0.85
# Greedy rounds that take found structure out of a dense residual before its noise is sized.
_STRUCTURE_ROUNDS = 8
#: The seed of the calibration stream: the Gaussian draws that measure what noise shows in
#: one rank-one term (:func:`shape_noise_ratio`, :func:`observed_noise_ratio`). A constant
#: of the method, like a table of quantiles; it never touches the caller's random_state.
CALIBRATION_SEED = 0
_SHAPE_NOISE_RATIOS = {}
_OBSERVED_NOISE_RATIOS = weakref.WeakKeyDictionary()


@dataclass
class ResidualProbe:
    """What power iterations on a residual found.

    ``directions`` (unit columns) and their ``values`` ``R(v^l)``, distinct
    directions only, largest ``|value|`` first; for odd orders each direction
    points at its positive value. On a partly observed residual ``values``
    are ``R(v) / |v|`` and ``weights`` the least-squares weights
    ``R(v) / |v|^2`` (norms on the observed entries, see
    :func:`_fitted_sizes`); elsewhere both are ``R(v^l)``.
    """

    directions: object
    values: np.ndarray
    weights: np.ndarray

    @property
    def largest(self):
        """The largest ``|R(v^l)|`` found (0.0 when nothing was probed)."""
        return float(np.max(np.abs(self.values))) if len(self.values) else 0.0


def probe_residual(residual, model, starts, rng, n_random=PROBE_RANDOM_STARTS):
    """Power-iterate on ``residual`` from ``starts`` (or None) plus ``n_random`` random directions.

    The fitted directions attract many random starts (what is left along them
    is the regularizer's shrinkage), hence a floor on the random ones. On a
    partly observed residual the values are the norms of the fitted rank-one
    terms (see :func:`_fitted_sizes`).
    """
    # The residual's own model: a partly observed residual starts in its own spectrum.
    model = model.for_target(residual)
    extra = model.random(n_random, rng, residual.context)
    starts = extra if starts is None else tl.concatenate([starts, extra], axis=1)
    probes, _ = model.power_iterate(residual, starts, model.probe_sweeps, 1e-8)
    # Where the sign can move into the vectors, every probe points at its positive weight.
    values, probes = canonical_signs(model, residual.evaluate(probes), probes)
    values, weights = _fitted_sizes(residual, probes, tl.to_numpy(values))
    best = np.argsort(-np.abs(values), kind="stable")
    probes, values, weights = probes[:, best.tolist()], values[best], weights[best]
    groups = group_aligned(model, probes, tl.tensor(np.abs(values), **residual.context),
                           ALIGNMENT_TOL)
    # Aligned probes of opposite sign are different components at even order.
    leaders = sorted(group[0] for group in groups)
    return ResidualProbe(probes[:, leaders], values[leaders], weights[leaders])


def _fitted_sizes(residual, directions, values):
    """``(R(v) / |v|, R(v) / |v|^2)`` per direction, norms in the operator's inner product.

    The second is the least-squares weight of a rank-one term along ``v``,
    the first the norm of that term: how much of the residual it explains.
    For unit vectors of a fully observed tensor ``|v| = 1`` and both are
    ``values``. On a partly observed residual, ``(1/p) P_Omega(R)``, power
    iterations (least-squares updates there, see
    :func:`~tensorly_gfdeflate.models.general.alternating_power_iterate`) also
    converge to directions that meet few observed entries: a spike (one-hot
    mode vectors at one observed entry) has the value ``R_i / p``, as large as
    a component's, and a direction fitted to a few entries a least-squares
    weight as large, but either explains a share of the norm no larger than
    those entries'. A direction that meets no observed entry gets 0.
    """
    if residual.observed_fraction == 1.0:
        return values, values
    squared = tl.to_numpy(residual.overlap_diagonal(directions))
    met = squared > 0
    explained = np.divide(values, np.sqrt(squared), out=np.zeros_like(values), where=met)
    return explained, np.divide(values, squared, out=np.zeros_like(values), where=met)


def shape_noise_ratio(model):
    """``kappa``: the largest rank-one weight a unit-norm Gaussian tensor of the model's kind shows.

    Measured once per shape (then kept) with the probe on one draw from the
    calibration stream (:data:`CALIBRATION_SEED`): a constant of the shape,
    like a table, not a random quantity of the run. About 0.3 for a
    symmetric tensor of d = 10, order 3; 0.08 for d = 20, order 4; 0.09 for
    a general tensor of shape (20, 25, 30). Above ``_MATCHED_NOISE_ENTRIES``
    entries it is measured on a smaller shape and extrapolated (see the
    models' ``unit_noise``): the floor is then a little low, so more is
    called structure, never less.
    """
    key = (type(model).__name__, tuple(model.shape))
    if key not in _SHAPE_NOISE_RATIOS:
        rng = np.random.RandomState(CALIBRATION_SEED)
        noise, growth = model.unit_noise(rng, _MATCHED_NOISE_ENTRIES)
        probe = probe_residual(noise, model, None, rng, n_random=2 * PROBE_RANDOM_STARTS)
        _SHAPE_NOISE_RATIOS[key] = probe.largest * growth
    return _SHAPE_NOISE_RATIOS[key]


def observed_noise_ratio(target, model):
    """``kappa`` of a partly observed target's entries: the probe's largest value on unit Gaussian values there.

    On a partly observed tensor the probe fits rank-one terms to the observed
    entries and reports their norms (see :func:`probe_residual`); with fewer
    entries to fit, one term explains a larger share of noise (about 0.27 of
    its norm at 10% of a 30 x 30 x 30 tensor, 0.38 at 5%, 0.09 on all of
    it): the shape's ratio would set the noise floor of a completion too low.
    Measured on one draw of the calibration stream, once per observation
    pattern, which every residual of the target shares.
    """
    pattern = target.observation_pattern
    if pattern not in _OBSERVED_NOISE_RATIOS:
        rng = np.random.RandomState(CALIBRATION_SEED)
        values = rng.standard_normal(target.n_observed)
        # Unit norm in the inner product (1/p) sum_Omega.
        values *= np.sqrt(target.observed_fraction) / np.linalg.norm(values)
        noise = target.with_observed_values(tl.tensor(values, **target.context))
        _OBSERVED_NOISE_RATIOS[pattern] = probe_residual(
            noise, model, None, rng, n_random=2 * PROBE_RANDOM_STARTS).largest
    return _OBSERVED_NOISE_RATIOS[pattern]


def noise_ratio(target, model):
    """``kappa`` of ``target``: what one rank-one term shows of unit Gaussian noise there."""
    if target.observed_fraction < 1.0:
        return observed_noise_ratio(target, model)
    return shape_noise_ratio(model)


def _dense_noise_level(residual, model, probe):
    """The largest weight Gaussian noise of the residual's unexplained size shows: ``kappa |E|``.

    The residual of a fit that missed components holds them as well as the
    noise, and sized whole it would set the level far too high. So the
    largest ``k`` probed directions are taken out, for the largest ``k`` that
    is self-consistent: each of them stands above ``NOISE_MARGIN`` times the
    level of what is left without them. Noise has no such ``k`` (its probed
    weights are all about ``kappa`` times its norm, below twice that), and
    then the whole residual sets the level.
    """
    kappa = noise_ratio(residual, model)
    values = np.abs(probe.values)
    for count in range(min(len(values), _STRUCTURE_ROUNDS), 0, -1):
        rest = residual.minus(tl.tensor(probe.weights[:count], **residual.context),
                              probe.directions[:, :count])
        level = kappa * float(np.sqrt(rest.norm_sq))
        if values[count - 1] > NOISE_MARGIN * level:
            return level
    return kappa * float(np.sqrt(residual.norm_sq))


def noise_levels(target, model, residual, probe, directions):
    """The noise level along each column of ``directions``, and the factor that makes it a floor.

    For sample statistics, the standard error of ``T(v^l)`` along each
    direction (floor: ``NOISE_STANDARD_ERRORS`` of them); for a dense array,
    the largest weight that Gaussian noise of the residual's unexplained size
    shows in any direction, found from ``probe`` (floor: ``NOISE_MARGIN``
    times it), and for the observed entries of a tensor the same, noise on
    those entries; for an exact tensor, 0. ``target`` and ``residual`` are in
    the same (normalized) units.
    """
    count = tl.shape(directions)[1]
    standard_error = target.standard_error(directions)
    if standard_error is not None:
        return tl.to_numpy(standard_error), NOISE_STANDARD_ERRORS
    if sizes_noise(target, model):
        return np.full(count, _dense_noise_level(residual, model, probe)), NOISE_MARGIN
    return np.zeros(count), 0.0


def sizes_noise(target, model):
    """Whether the target's noise is sized from its residual (a dense array, or observed entries).

    A dense array's always. A partly observed target's only where a
    component stands out of noise of the residual's size: where the floor,
    ``NOISE_MARGIN`` times the share of the residual that noise shows in one
    fitted rank-one term (``kappa`` of the observed entries), is below
    ``_OBSERVED_SHARE`` of it. With fewer entries a component cannot be told
    from noise of its size, and the target is taken as exact.
    """
    return target.is_dense or (target.observed_fraction < 1.0
                               and NOISE_MARGIN * noise_ratio(target, model) < _OBSERVED_SHARE)


def fitted_noise_factor(target, model, fitted):
    """How much larger a dense target's noise is than what a fit of ``fitted`` components left.

    Each fitted component took its ``p`` parameters' worth of the noise along
    with the signal: of Gaussian noise spread over the tensor's ``D`` degrees
    of freedom, a least-squares fit of ``k`` components leaves a fraction
    ``1 - k p / D`` of the squared norm (the residual sum of squares over
    ``n - p``, as for a linear model), so the factor is
    ``sqrt(D / (D - k p))``. Without it the noise level sized from the
    residual falls with every component fitted (0.89 of the truth at order 3,
    d = 12, after five). A fit with nearly as many parameters as the tensor
    says little about its noise: at least one component's worth is left to it.
    On a partly observed target ``D`` is the number of observed entries.
    1 for other targets, whose noise is not sized from the residual.
    """
    if not sizes_noise(target, model):
        return 1.0
    entries, per_component = model.degrees_of_freedom()
    entries *= target.observed_fraction
    return float(np.sqrt(entries / max(entries - fitted * per_component, per_component)))


def noise_floors(target, model, residual, probe):
    """For each probed direction, the weight above which it is structure and not noise."""
    levels, factor = noise_levels(target, model, residual, probe, probe.directions)
    return factor * levels


@dataclass
class FitCheck:
    """Whether a decomposition explains its target: the verdict both solvers act on.

    Attributes
    ----------
    explained : bool
        No probed residual direction holds a weight above its floor.
    largest : float
        The largest residual weight above its floor (0.0 when explained),
        relative to the target's norm.
    floor : float
        The floor in that direction (or the largest floor, when explained),
        relative to the target's norm.
    unexplained : int
        How many distinct probed directions hold weight above their floor.
    component_noise : ndarray
        The noise level of the target along each component's direction,
        relative to the target's norm (0 for an exact tensor, or with
        ``noise_aware=False``). The floors judge the residual, against the
        noise the fit left in it; this is all of the target's noise (see
        :func:`fitted_noise_factor`).
    unexplained_directions : tensor of shape (n, unexplained) or None
        The probed directions above their floors (columns, as the model's
        vectors), largest weight first; None when explained.
    unexplained_weights : ndarray of shape (unexplained,) or None
        Their weights in the residual, relative to the target's norm.
    """

    explained: bool
    largest: float
    floor: float
    unexplained: int
    component_noise: np.ndarray
    # Not compared: two checks are the same verdict whatever arrays carry their directions.
    unexplained_directions: object = field(default=None, compare=False)
    unexplained_weights: np.ndarray = field(default=None, compare=False)


def regularization_above_noise(standard_error, spread=1.0):
    """The automatic ``lambda`` (relative to the target's norm), the one formula every caller uses.

    ``2 NOISE_STANDARD_ERRORS spread standard_error``, and at least
    ``DEFAULT_FLOOR``: the flow fits a component only if its weight exceeds
    ``lambda / 2``, so weights within ``NOISE_STANDARD_ERRORS`` standard errors
    of zero (along the direction the error was measured in, times ``spread``
    for the largest over all directions) are never fitted. See
    :ref:`theory-check`.
    """
    return max(DEFAULT_FLOOR, 2.0 * NOISE_STANDARD_ERRORS * spread * float(standard_error))


def signal_to_noise(weights, check):
    """``|weight| / noise level`` per component (inf where the tensor is exact), and the level.

    The level returned is the largest along the components (0.0 when exact),
    relative to the target's norm, as ``weights`` must be.
    """
    weights = np.abs(np.asarray(tl.to_numpy(weights), dtype=float))
    noise = check.component_noise
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(noise > 0, weights / np.where(noise > 0, noise, 1.0), np.inf)
    return snr, float(np.max(noise, initial=0.0))


def check_fit(target, model, weights, vectors, rng, min_floor, noise_aware=True):
    """Probe ``target - sum_k weights_k vectors_k^(x)l`` and judge it against the noise floor.

    ``target`` is normalized (unit norm); ``min_floor`` is the solver's own
    floor (its regularization or tolerance), below which nothing counts.
    ``noise_aware=False`` leaves the noise out: only ``min_floor`` counts.
    """
    fitted = tl.shape(weights)[0]
    residual = target.minus(weights, vectors) if fitted else target
    if fitted and below_every_floor(target, residual, weights, min_floor):
        return _bounded_check(target, model, residual, vectors, fitted, min_floor, noise_aware)
    starts = vectors if fitted else None
    probe = probe_residual(residual, model, starts, rng)
    floors = np.full(len(probe.values), float(min_floor))
    component_noise = np.zeros(tl.shape(vectors)[1])
    if noise_aware:
        floors = np.maximum(noise_floors(target, model, residual, probe), min_floor)
        component_noise = (noise_levels(target, model, residual, probe, vectors)[0]
                           * fitted_noise_factor(target, model, fitted))
    above = np.flatnonzero(np.abs(probe.values) > floors)
    if not len(above):
        return FitCheck(True, 0.0, float(np.max(floors, initial=min_floor)), 0, component_noise)
    above = above[np.argsort(-np.abs(probe.values[above]), kind="stable")]
    return FitCheck(False, float(abs(probe.values[above[0]])), float(floors[above[0]]),
                    len(above), component_noise, probe.directions[:, above.tolist()],
                    probe.values[above])


# Rounding of a residual's squared norm computed by expansion, in units of eps times the
# square of |T| + sum |w_k| (what the expansion's terms are bounded by), with a margin.
_EXPANSION_ROUNDING_IN_EPS = 64.0


def below_every_floor(target, residual, weights, floor):
    """Whether no direction of ``residual`` can hold a weight above ``floor``: a proof, no probe.

    Every value a probe reports is ``R(v^l)`` for unit vectors (or, on
    observed entries, ``R(v) / |v|`` in their inner product), at most ``|R|``
    by Cauchy-Schwarz; and every floor is at least the solver's own
    ``floor``. So a residual whose norm, rounding included, is at most
    ``floor`` passes the check exactly as the probe would, without its power
    iterations (most of a check's cost on an exact fit). Sample statistics,
    whose norm is an estimate, are always probed.
    """
    if target.is_sampled or target.norm_is_estimate:
        return False
    scale = 1.0 + float(np.sum(np.abs(tl.to_numpy(weights))))
    eps = float(tl.eps(target.context["dtype"]))
    rounding = _EXPANSION_ROUNDING_IN_EPS * eps * scale**2 * target.norm_sq
    return max(residual.norm_sq, 0.0) + rounding <= floor**2


def _bounded_check(target, model, residual, vectors, fitted, min_floor, noise_aware):
    """The :class:`FitCheck` of a residual :func:`below_every_floor`: explained, noise sized as usual.

    With no probe, a dense residual's noise level is that of the whole
    residual (what the probe's structure rounds fall back to when nothing
    stands out, as nothing can here).
    """
    component_noise, floor = np.zeros(tl.shape(vectors)[1]), float(min_floor)
    if noise_aware:
        nothing = ResidualProbe(vectors[:, :0], np.zeros(0), np.zeros(0))
        levels, factor = noise_levels(target, model, residual, nothing, vectors)
        component_noise = levels * fitted_noise_factor(target, model, fitted)
        floor = max(floor, float(factor * np.max(levels, initial=0.0)))
    return FitCheck(True, 0.0, floor, 0, component_noise)
