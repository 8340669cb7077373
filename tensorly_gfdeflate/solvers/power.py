"""Baseline: robust tensor power method with explicit deflation.

Anandkumar, Ge, Hsu, Kakade and Telgarsky (JMLR 2014). For each component: a
batch of restarts uniform on the sphere, power iterations on all of them at once,
the restart with the largest |T(v^l)| refined, its weight ``T(v^l)``, then
deflation ``T <- T - w v^(x)l``, kept implicit so structured targets stay cheap.
"""

from dataclasses import dataclass, field

import numpy as np
import tensorly as tl

from .._checks import check_bool, check_int, check_positive, check_random_state
from ..check.probe import DEFAULT_FLOOR, check_fit, signal_to_noise
from ..check.readout import canonical_signs, to_cp_tensor
from ..check.verdict import Shortfall, Verdict
from ..flow.alternating import observed_als
from ..models.protocol import check_rank_determinable
from ..models.symmetric import SymmetricModel
from ..targets.symmetric import as_operator, normalize

__all__ = ["power_deflation_cp", "power_deflation", "PowerTrace"]

# Extracted components overlapping more than this (|cosine|) make deflation errors
# likely (measured: orthogonal truths with 5% noise extract overlaps below 0.05).
_DEFLATION_COHERENCE = 0.1
# A relative residual below this (or below sqrt(eps) of the dtype, where the
# expansion of the residual's norm rounds) means the tensor is explained:
# further extractions only find rounding noise.
_NOTHING_LEFT = 1e-6
# On a partly observed target the contractions estimate the full tensor from the observed
# entries and never fit them, and the check, which sizes the noise from the residual
# itself, can take what the components miss for noise: measured on rank 3, shape
# (10, 12, 14), 1% noise, 30% observed, 5 of 30 runs passed it with held-out error .21 to
# .59. ALS on the observed entries from the components decides: on a residual that is
# noise it removes about the share of the parameters (parameters / entries) of its squared
# norm; on those runs it removed 99.7% or more (89% in one run stopped at 100 sweeps).
# A refit keeping less than this share of what a noise residual keeps is a misfit.
_REFIT_SHARE = 0.5
# Sweeps of that ALS: a misfit shows within them (measured: most settle in 17-30).
_REFIT_SWEEPS = 20

@dataclass
class PowerTrace:
    """What the power method did, in the order it did it.

    Attributes
    ----------
    extraction_index : ndarray of int
        For each returned component (sorted by ``|weight|``), the step at which it
        was extracted (0 = first). The deflation order.
    weights : ndarray
        The weights in extraction order.
    n_iter : ndarray of int
        Power iterations spent per extraction (restarts and refinement).
    residual : ndarray
        Relative error ``|T - T_hat| / |T|`` after each deflation.
    iterations_converged : bool
        Every extraction's power iterations settled before ``n_iter_max``.
    explained : bool
        Power iterations on the final residual found no component above the
        noise floor (see :mod:`tensorly_gfdeflate.check.probe`), and, for a dense or
        CP tensor not fitted exactly, the extracted components are orthogonal
        (``|cosine|`` at most 0.1): deflating overlapping components leaves
        errors that look like noise.
    unexplained_weight : float
        The largest residual weight above its floor, relative to ``|T|``
        (0.0 when ``explained``).
    noise_floor : float
        The floor it was compared with, relative to ``|T|``.
    component_snr : ndarray
        For each returned component (sorted as the CPTensor), ``|weight|``
        over the noise level along its direction (see ``noise_level``); inf
        for a CP tensor.
    noise_level : float
        Relative to ``|T|``: the standard error of a sample statistic along
        a component (the largest), or the largest weight the dense target's
        noise shows in any direction (sized from the residual, scaled up for
        the degrees of freedom the fit took); 0.0 for a CP tensor.
    explained_by : int or None
        When the tensor was explained (relative residual below 1e-6) before
        ``rank`` extractions, how many it took; the later components have
        weight about 0. None otherwise.
    verdict : Verdict
        The outcome of the fit (:class:`~tensorly_gfdeflate.check.verdict.Verdict`).
    """

    extraction_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_iter: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    residual: np.ndarray = field(default_factory=lambda: np.zeros(0))
    iterations_converged: bool = False
    explained: bool = False
    unexplained_weight: float = float("nan")
    noise_floor: float = float("nan")
    explained_by: int = None
    component_snr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    noise_level: float = float("nan")
    verdict: object = None

    @property
    def converged(self):
        """``verdict.success``: the iterations settled and the result explains the tensor."""
        return self.iterations_converged and self.explained


def _extract_one(residual, model, n_restarts, n_iter_max, tol, rng):
    # The residual's own model: a partly observed residual starts in its own spectrum.
    model = model.for_target(residual)
    starts = model.random(n_restarts, rng, residual.context)
    candidates, spent = model.power_iterate(residual, starts, n_iter_max, tol)
    best = int(np.argmax(np.abs(tl.to_numpy(residual.evaluate(candidates)))))
    vector, refined = model.power_iterate(residual, candidates[:, best : best + 1], n_iter_max,
                                          tol)
    weight = residual.evaluate(vector)
    # The restarts need not all settle (on a noisy tensor some wander between
    # near-equal maxima); the chosen one must.
    return weight, vector, spent + refined, refined < n_iter_max


def power_deflation_cp(
    tensor,
    rank,
    *,
    n_restarts=10,
    n_iter_max=100,
    tol=1e-10,
    random_state=None,
    return_trace=False,
    verbose=False,
):
    """Symmetric CP decomposition by the robust tensor power method with deflation.

    Parameters
    ----------
    tensor : dense symmetric array, symmetric CPTensor or SampleMoments
        The target ``T``, of order >= 2, in any tensorly backend. Structured
        forms are never densified: deflation is applied inside the contractions.
    rank : int >= 1
        Number of components to extract.
    n_restarts : int >= 1, default=10
        Random restarts per component, iterated together as one matrix.
    n_iter_max : int >= 1, default=100
        Maximum power iterations per restart batch and for the refinement.
    tol : float > 0, default=1e-10
        Stop iterating once every restart moves by less than ``tol``.
    random_state : None, int or numpy.random.RandomState
        Seed of the restarts; numpy's global random state is never used.
    return_trace : bool, default=False
        Also return a :class:`PowerTrace`.
    verbose : bool, default=False
        Print one line per extracted component.

    Returns
    -------
    CPTensor or (CPTensor, PowerTrace)
        ``(weights, [V] * order)`` sorted by ``|weight|`` descending, in the
        backend, device and dtype of the input. For odd orders weights are
        positive; for even orders they carry their sign.

    Notes
    -----
    The target is normalized by its Frobenius norm before the iterations, so
    ``power_deflation_cp(c * T)`` returns ``c`` times the weights of
    ``power_deflation_cp(T)`` with the same factors, for the same seed.
    Deflation errors accumulate when the components are not orthogonal: this
    method is exact for orthogonally decomposable tensors only.

    Examples
    --------
    >>> from tensorly_gfdeflate import power_deflation_cp, random_symmetric_cp
    >>> truth = random_symmetric_cp(8, 3, 3, random_state=0)
    >>> cp = power_deflation_cp(truth, 3, random_state=0)
    >>> [round(float(w), 6) for w in cp.weights]
    [1.0, 0.316228, 0.1]
    """
    return_trace = check_bool("return_trace", return_trace)
    cp, trace = power_deflation(as_operator(tensor), SymmetricModel, rank, n_restarts=n_restarts,
                           n_iter_max=n_iter_max, tol=tol, random_state=random_state,
                           verbose=verbose, names=("power_deflation_cp", "gradient_flow_cp"))
    trace.verdict.warn()
    return (cp, trace) if return_trace else cp


def power_deflation(operator, model_type, rank, *, n_restarts, n_iter_max, tol, random_state,
                    verbose, names):
    """The power method with deflation on any operator (symmetric or general).

    Returns ``(cp, trace)``, the verdict on the trace, not yet warned.
    ``model_type`` is the model class of the operator's kind
    (:class:`~tensorly_gfdeflate.models.symmetric.SymmetricModel` or
    :class:`~tensorly_gfdeflate.models.general.GeneralModel`); ``names`` are
    the public function's and its flow counterpart's, for the messages.
    """
    rank = check_int("rank", rank, 1)
    n_restarts = check_int("n_restarts", n_restarts, 1)
    n_iter_max = check_int("n_iter_max", n_iter_max, 1)
    tol = check_positive("tol", tol)
    verbose = check_bool("verbose", verbose)
    rng = check_random_state(random_state)
    target, scale = normalize(operator)
    model = model_type.for_target(operator)
    check_rank_determinable(rank, operator, model)

    residual, weights, vectors = target, [], []
    trace = PowerTrace()
    iterations, errors, settled, explained_by = [], [], True, None
    nothing_left = max(_NOTHING_LEFT, np.sqrt(float(tl.eps(target.context["dtype"]))))
    for step in range(rank):
        if explained_by is None and errors and errors[-1] <= nothing_left:
            explained_by = step
        weight, vector, spent, chosen_settled = _extract_one(residual, model, n_restarts, n_iter_max,
                                                             tol, rng)
        # Power iterations on a residual that is rounding noise cannot settle.
        settled = settled and (chosen_settled or explained_by is not None)
        weights.append(weight)
        vectors.append(vector)
        residual = target.minus(tl.concatenate(weights), tl.concatenate(vectors, axis=1))
        iterations.append(spent)
        errors.append(np.sqrt(residual.norm_sq / target.norm_sq))
        if verbose:
            print(
                f"[{names[0]}] component {step + 1}/{rank}: weight "
                f"{float(weight[0]) * scale:.4g}, {spent} iterations, "
                f"relative error {errors[-1]:.3e}"
            )
    weights, vectors = canonical_signs(model, tl.concatenate(weights),
                                       tl.concatenate(vectors, axis=1))
    check = check_fit(target, model, weights, vectors, rng, DEFAULT_FLOOR)
    coherence = _coherence(model, vectors, explained_by)
    # Deflating non-orthogonal components leaves errors of the order of their
    # overlap that can look like noise to the check of a dense array: only an
    # exact fit vouches. Sample statistics are judged by their standard errors.
    deflation_doubt = (not target.is_sampled and coherence > _DEFLATION_COHERENCE
                       and errors[-1] > nothing_left)
    refit = _observed_refit(target, model, weights, vectors) if errors[-1] > nothing_left else None
    verdict = _verdict(names, check, settled, rank, n_iter_max, explained_by,
                       coherence if deflation_doubt else None,
                       int(np.count_nonzero(tl.to_numpy(weights))), refit)
    snr, noise = signal_to_noise(weights, check)
    cp, permutation = to_cp_tensor(model, weights, vectors, scale)
    trace.verdict = verdict
    trace.extraction_index = np.asarray(permutation, dtype=int)
    trace.weights = tl.to_numpy(weights) * scale
    trace.n_iter = np.asarray(iterations, dtype=int)
    trace.residual = np.asarray(errors)
    trace.iterations_converged = settled
    trace.explained = verdict.explained
    trace.explained_by = explained_by
    trace.component_snr, trace.noise_level = snr[permutation], noise
    trace.unexplained_weight, trace.noise_floor = check.largest, check.floor
    return cp, trace


def _observed_refit(target, model, weights, vectors):
    """On a partly observed target, ``(refit share, noise share)`` when ALS from the components
    fits the observed entries far better than they do, else None.

    The refit share is ALS's squared residual on the observed entries over
    the components' own (ALS on the observed entries, ``_REFIT_SWEEPS``
    sweeps); the noise share, ``1 - parameters / entries``, is what a
    residual that is noise keeps of it. A refit share below ``_REFIT_SHARE``
    times the noise share says the residual is not noise (see
    ``_REFIT_SHARE``). Fully observed targets and sample statistics: None
    (the check of the residual judges them).
    """
    if target.observed_fraction == 1.0 or target.is_sampled:
        return None
    before = target.minus(weights, vectors).norm_sq
    refit_weights, refit_vectors, _ = observed_als(target, weights, vectors,
                                                   max_sweeps=_REFIT_SWEEPS)
    share = target.minus(refit_weights, refit_vectors).norm_sq / max(before, 1e-300)
    found = tl.shape(weights)[0]
    noise_share = max(1.0 - model.parameters(found) / target.n_observed, 0.0)
    return (share, noise_share) if share < _REFIT_SHARE * noise_share else None


def _coherence(model, vectors, explained_by):
    """Largest ``|<v_i, v_j>|`` (per mode, multiplied) between the extracted components that carry weight."""
    gram = np.abs(model.alignment(vectors[:, :explained_by]))
    np.fill_diagonal(gram, 0.0)
    return float(np.max(gram, initial=0.0))


def _verdict(names, check, settled, rank, n_iter_max, explained_by, doubted_coherence,
             found, refit=None):
    """The :class:`~tensorly_gfdeflate.check.verdict.Verdict`: what fell short, and what to do about it.

    ``refit``: :func:`_observed_refit`'s shares where ALS fits the observed
    entries far better, else None.
    """
    problems, advice = [], []
    if refit is not None:
        problems.append((Shortfall.OBSERVED_MISFIT,
            f"does not fit the observed entries: ALS of the same rank from its components "
            f"leaves {refit[0]:.2g} of its squared residual on them, where a residual that is "
            f"noise keeps about {refit[1]:.2g} (its contractions estimate the full tensor from "
            f"the observed entries, they do not fit them)"))
        advice.append(f"use {names[1]}, which fits the observed entries")
    if doubted_coherence is not None:
        problems.append((Shortfall.NOT_ORTHOGONAL,
            f"extracted components that are not orthogonal (|cosine| up to "
            f"{doubted_coherence:.2f}) without fitting the tensor exactly: deflation leaves "
            "errors of the order of that overlap, which the check of the residual cannot tell "
            "from noise"))
        advice.append(f"compare with {names[1]}, which does not deflate")
    if explained_by is not None:
        problems.append((Shortfall.RANK_FILLED,
            f"explained the tensor with {explained_by} components: the other "
            f"{rank - explained_by} of rank={rank} have weight about 0 and only fill the rank"))
        advice.append(f"pass rank={explained_by}")
    if not settled:
        problems.append((Shortfall.NOT_SETTLED,
                         f"stopped power iterations at n_iter_max={n_iter_max} before they "
                         "settled"))
        advice.append("increase n_iter_max")
    if not check.explained:
        problems.append((Shortfall.UNEXPLAINED,
            f"leaves a residual holding a component of weight {check.largest:.3g} (relative to "
            f"|T|) after rank={rank} components, above the noise floor {check.floor:.3g}"))
        cause = ("deflation errors accumulate when the components are not orthogonal" +
                 ("" if doubted_coherence is not None else f" ({names[1]} does not deflate)"))
        advice.append(f"{cause}, or the tensor has more than rank components (pass a larger "
                      "rank)")
    explained = check.explained and doubted_coherence is None and refit is None
    return Verdict.from_problems(
        names[0], problems, "; ".join(advice).capitalize() + ".",
        f"{names[0]} explained the tensor with {found} components.",
        success=settled and explained, status="completed", check=check,
        explained=explained, n_components=found)
