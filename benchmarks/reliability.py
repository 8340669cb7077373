"""Reliability benchmark (issue 9): is every wrong answer announced?

For each scenario (an input users meet, with a known truth) and each method
(our solvers and their peers), over ``--seeds`` seeds, every run is classified:

* **success**: right to the scenario's stated accuracy, checked against the truth;
* **warned failure**: wrong, and a warning (any ``Warning`` subclass except the
  deprecation family, recorded with ``warnings.catch_warnings(record=True)``)
  or an exception said so;
* **silent failure**: wrong, and nothing said. The goal of issue 9 is a silent
  failure rate of zero.

Warnings on successes are counted as **false alarms**. An exception counts as a
warned failure (its message is the warning), except ``TypeError`` and
``AttributeError``, which are bugs of the script or the package and are raised.

Sections:

1. the reliability table: success, silent and warned failure rates, false
   alarms and median time per (scenario, method);
   Scenarios 10a-10e (issue 19) are the latent variable models on data that
   follow them and on data that do not (documents mixing topics, unequal
   spreads, a mixture far from the origin on the raw route, with EM and
   with the moments alone);
2. time and accuracy of ``MomentDecomposition`` against scikit-learn's
   ``FastICA(fun="cube")`` on the same data (n = 20,000 and 200,000; d = 6 and 10).

Usage::

    python benchmarks/reliability.py --blas-threads 1              # both sections, 20 seeds
    python benchmarks/reliability.py --seeds 3 --blas-threads 1    # a quick look
    python benchmarks/reliability.py --sections 1 --scenarios 3 4  # some scenarios only
"""

import argparse
import io
import itertools
import os
import shlex
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tensorly as tl  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.decomposition import FastICA, LatentDirichletAllocation  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from tensorly.cp_tensor import CPTensor  # noqa: E402

from run import _tensorly_power, machine_description, table  # noqa: E402
from tensorly_gfdeflate import (  # noqa: E402
    GradientFlowCP,
    MomentDecomposition,
    SampleMoments,
    SingleTopicModel,
    SphericalGaussianMixture,
    components_recovered,
    gradient_flow_cp,
    match_components,
    power_deflation_cp,
    random_symmetric_cp,
    relative_error,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results_reliability.txt"
# Warnings about the API's future, not about this result: they say nothing went wrong.
_NOT_ALARMS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
# Methods that are not this package's: their failures are context, not issue 9's count.
PEER_PREFIXES = ("FastICA", "tensorly ", "GaussianMixture", "LatentDirichletAllocation")
# Exceptions that are bugs (of this script or of the package), never a way of saying
# "this input is beyond me": they must be seen, not counted.
_BUGS = (TypeError, AttributeError)


# --------------------------------------------------------------------------- problems


@dataclass
class Problem:
    """One draw of a scenario: what the methods get, and the truth they are judged against."""

    data: object
    truth: object
    extra: dict = field(default_factory=dict)


@dataclass
class Scenario:
    """Inputs of one kind, the methods that meet them, and what counts as right.

    ``make(seed)`` draws a :class:`Problem`; each method is ``(problem, seed) ->
    estimate``; ``judge(problem, estimate) -> (right, measure, returned)``, where
    ``measure`` is the figure of merit printed in the table (named
    ``measure_name``) and ``returned`` the number of sources or components.
    """

    key: str
    title: str
    tolerance: str
    make: Callable
    methods: dict
    judge: Callable
    measure_name: str = "rel.err"


def mixed_sources(rng, n_samples, n_sources):
    """Independent non-Gaussian sources, one distribution per column, in a fixed cycle.

    The first four columns are the issue's ``exponential, laplace, uniform(-1, 1),
    beta(2, 2)``, drawn in that order, so ``n_sources = 4`` reproduces its data.
    """
    draws = (
        lambda: rng.exponential(size=n_samples),
        lambda: rng.laplace(size=n_samples),
        lambda: rng.uniform(-1, 1, n_samples),
        lambda: rng.beta(2, 2, n_samples),
        lambda: np.sign(rng.standard_normal(n_samples)),
        lambda: rng.gamma(4.0, size=n_samples),
    )
    return np.column_stack([draws[i % len(draws)]() for i in range(n_sources)])


def mixed_bss(n_samples, n_sources):
    """Scenario 1 and section 2: ``X = S @ A.T`` with a Gaussian square mixing ``A``."""

    def make(seed):
        rng = np.random.RandomState(seed)
        S = mixed_sources(rng, n_samples, n_sources)
        return Problem(S @ rng.randn(n_sources, n_sources).T, S)

    return make


def gaussian_pair_bss(seed):
    """Two Laplace and two Gaussian sources: any rotation of the Gaussian pair fits the data
    as well, so no method can return them; the right answer is a warning."""
    rng = np.random.RandomState(seed)
    S = np.c_[rng.laplace(size=(20_000, 2)), rng.standard_normal((20_000, 2))]
    return Problem(S @ rng.randn(4, 4).T, S)


def _center_and_norm(x):
    """scikit-learn's test helper: each row centred and scaled to unit standard deviation."""
    x = x - x.mean(axis=-1, keepdims=True)
    return x / x.std(axis=-1, keepdims=True)


def fastica_simple(add_noise):
    """scikit-learn's ``test_fastica_simple`` data (sklearn/decomposition/tests/test_fastica.py).

    A square wave and a Student t(1) (Cauchy) source, standardized, mixed by the
    rotation-reflection of angle 0.6, optionally plus 0.1 Gaussian noise, and
    the mixtures standardized again.
    """

    def make(seed):
        rng = np.random.RandomState(seed)
        n_samples = 1000
        square = (2 * np.sin(np.linspace(0, 100, n_samples)) > 0) - 1
        cauchy = stats.t.rvs(1, size=n_samples, random_state=seed)
        sources = _center_and_norm(np.c_[square, cauchy].T)
        phi = 0.6
        mixing = np.array([[np.cos(phi), np.sin(phi)], [np.sin(phi), -np.cos(phi)]])
        mixed = mixing @ sources
        if add_noise:
            mixed += 0.1 * rng.randn(2, n_samples)
        return Problem(_center_and_norm(mixed).T, sources.T)

    return make


def issue_square_cauchy(seed):
    """The issue's own example: sign(N(0, 1)) and Cauchy sources, angle 0.6, not standardized."""
    rng = np.random.RandomState(seed)
    S = np.c_[np.sign(rng.randn(1000)), rng.standard_cauchy(1000)]
    phi = 0.6
    A = np.array([[np.cos(phi), np.sin(phi)], [np.sin(phi), -np.cos(phi)]])
    return Problem(S @ A.T, S)


def exact_tensor(dim, rank, order, *, weights=None, orthogonal=True, truth_seed=None):
    """A dense ``sum_i a_i u_i^(x)l``; the truth is drawn with ``truth_seed`` (default: the seed)."""

    def make(seed):
        truth = random_symmetric_cp(dim, rank, order, weights=weights, orthogonal=orthogonal,
                                    random_state=seed if truth_seed is None else truth_seed)
        return Problem(tl.cp_to_tensor(truth), truth)

    return make


def signed_basis_tensor(seed):
    """The issue's ``e1^(x)4 - 0.5 e2^(x)4`` in d = 10 (the same for every seed)."""
    truth = CPTensor((np.array([1.0, -0.5]), [np.eye(10)[:, :2]] * 4))
    return Problem(tl.cp_to_tensor(truth), truth)


def noisy_tensor(dim, rank, order, noise):
    """An orthogonal dense tensor plus symmetric Gaussian noise of relative Frobenius norm ``noise``."""

    def make(seed):
        clean = exact_tensor(dim, rank, order)(seed)
        # A stream of its own: the truth was drawn from RandomState(seed).
        rng = np.random.RandomState(seed + 10_000)
        draw = rng.standard_normal((dim,) * order)
        symmetric = sum(np.transpose(draw, p) for p in itertools.permutations(range(order)))
        scale = noise * np.linalg.norm(clean.data) / np.linalg.norm(symmetric)
        return Problem(clean.data + scale * symmetric, clean.truth)

    return make


def latent_moments(n_samples, dim, rank, *, noise, orthogonal):
    """``SampleMoments(X, 3)`` of ``X = S A^T + noise E``: centred unit-variance gamma sources.

    The population third moment is ``sum_i skew_i a_i^(x)3`` (Gaussian noise
    and cross terms vanish), so the truth has the sources' skewness
    ``2 / sqrt(shape)`` as weights; what the sample adds is noise of order
    ``1 / sqrt(n)``.
    """

    def make(seed):
        rng = np.random.RandomState(seed)
        shapes = np.linspace(1.0, 4.0, rank)
        mixing = random_symmetric_cp(dim, rank, 3, orthogonal=orthogonal, random_state=rng)
        factor = tl.to_numpy(mixing.factors[0])
        sources = (rng.gamma(shapes, size=(n_samples, rank)) - shapes) / np.sqrt(shapes)
        X = sources @ factor.T + noise * rng.standard_normal((n_samples, dim))
        truth = CPTensor((2.0 / np.sqrt(shapes), [factor] * 3))
        return Problem(SampleMoments(X, 3), truth, {"X": X})

    return make


# --------------------------------------------------------------------------- methods


def moment_decomposition(solver):
    return lambda problem, seed: MomentDecomposition(
        solver=solver, random_state=seed).fit_transform(problem.data)


def fastica(fun):
    return lambda problem, seed: FastICA(
        fun=fun, whiten="unit-variance", random_state=seed).fit_transform(problem.data)


SOURCE_METHODS = {
    "MomentDecomposition(gradient_flow)": moment_decomposition("gradient_flow"),
    "MomentDecomposition(power_deflation)": moment_decomposition("power_deflation"),
    "FastICA(cube)": fastica("cube"),
    "FastICA(logcosh)": fastica("logcosh"),
}


def _true_rank(problem):
    return len(problem.truth.weights)


def _dense(problem):
    """The dense target, for TensorLy's peer, which takes nothing else.

    A ``SampleMoments`` target is densified here, inside the peer's timed call:
    the cost is the peer's, since it cannot do without.
    """
    if "X" not in problem.extra:
        return problem.data
    X = problem.extra["X"]
    return np.einsum("ni,nj,nk->ijk", X, X, X, optimize=True) / X.shape[0]


def tensor_methods(*, auto_rank=True, given_rank=True, estimator=False, surplus=0):
    """Our solvers and TensorLy's peer on a tensor problem; ranks as the scenario asks.

    The power methods need a rank: they get the true one plus ``surplus``
    (a user who over-estimates it), as does the flow when ``given_rank``.
    """
    label = "true rank" + (f" + {surplus}" if surplus else "")

    def rank(problem):
        return _true_rank(problem) + surplus

    methods = {}
    if auto_rank:
        methods["gradient_flow_cp (no rank)"] = lambda p, seed: gradient_flow_cp(
            p.data, random_state=seed)
    if estimator:
        methods["GradientFlowCP().fit"] = lambda p, seed: GradientFlowCP(
            random_state=seed).fit(p.data).decomposition_
    if given_rank:
        methods[f"gradient_flow_cp ({label})"] = lambda p, seed: gradient_flow_cp(
            p.data, rank(p), random_state=seed)
    methods[f"power_deflation_cp ({label})"] = lambda p, seed: power_deflation_cp(
        p.data, rank(p), random_state=seed)
    # TensorLy's method draws from numpy's global generator (its limitation):
    # _tensorly_power seeds it and restores it afterwards.
    methods[f"tensorly power_iteration ({label})"] = lambda p, seed: _tensorly_power(
        _dense(p), rank(p), seed)
    return methods


# --------------------------------------------------------------------------- judges


def sources_judge(min_corr):
    """Right when every true source has an estimate with ``|corr| >= min_corr``.

    Sources are matched greedily on ``|corr|`` (the cosine of the centred
    columns, via ``match_components``); an unmatched source counts as 0.
    """

    def judge(problem, estimate):
        truth = problem.truth - problem.truth.mean(axis=0)
        found = np.asarray(estimate, dtype=float)
        found = found - found.mean(axis=0)
        _, corr = match_components((np.ones(truth.shape[1]), [truth]),
                                   (np.ones(found.shape[1]), [found]))
        worst = float(np.min(corr))
        return worst >= min_corr, worst, found.shape[1]

    return judge


def _extra_components(truth, estimate, threshold):
    """Estimated components matched to no true one, with ``|weight|`` above ``threshold``."""
    index, _ = match_components(truth, estimate)
    order = len(estimate.factors)
    factor = tl.to_numpy(estimate.factors[0])
    weights = np.abs(tl.to_numpy(estimate.weights) * np.linalg.norm(factor, axis=0) ** order)
    unmatched = np.setdiff1d(np.arange(len(weights)), index[index >= 0])
    return int(np.sum(weights[unmatched] > threshold))


def cp_judge(*, cosine=0.99, weight_rtol=0.05, extra_fraction=0.01):
    """Right when every true component is recovered and nothing else of weight is returned.

    Recovered: ``|cos| >= cosine`` and weight within ``weight_rtol``
    (``components_recovered``). Extra: an unmatched component of ``|weight|``
    above ``extra_fraction`` times the smallest true ``|weight|``. The measure
    is the relative error against the target given.
    """

    def judge(problem, estimate):
        truth = problem.truth
        recovered = components_recovered(truth, estimate, cosine=cosine,
                                         weight_rtol=weight_rtol)
        smallest = float(np.min(np.abs(tl.to_numpy(truth.weights))))
        extra = _extra_components(truth, estimate, extra_fraction * smallest)
        right = recovered == len(truth.weights) and extra == 0
        return right, relative_error(problem.data, estimate), len(estimate.weights)

    return judge


def cp_tolerance(cosine=0.99, weight_rtol=0.05, extra_fraction=0.01):
    return (f"every component with |cos| >= {cosine} and weight within {weight_rtol:.0%}; "
            f"no other component above {extra_fraction:.0%} of the smallest |weight|")


# --------------------------------------------------------------------------- scenarios


def source_scenarios():
    """Blind source separation: sources, mixtures, ``|corr|`` tolerances."""
    bss = "every source matched (greedy on |corr|) with |corr| >= {}"

    def scenario(key, title, tolerance, make, min_corr):
        return Scenario(key, title, tolerance, make, SOURCE_METHODS, sources_judge(min_corr),
                        "min|corr|")

    return [
        scenario("1a", "BSS n=20000, 4 mixed sources (the issue's)", bss.format(0.95),
                 mixed_bss(20_000, 4), 0.95),
        scenario("1b", "BSS n=200000, 10 mixed sources", bss.format(0.95),
                 mixed_bss(200_000, 10), 0.95),
        scenario("1c", "BSS n=20000, 2 Laplace + 2 Gaussian sources (not identifiable)",
                 bss.format(0.95) + "; the Gaussian pair cannot be unmixed, so only a "
                 "warning is right", gaussian_pair_bss, 0.95),
        scenario("2a", "sklearn test_fastica_simple",
                 bss.format(0.99) + " (the test's atol 1e-2)", fastica_simple(False), 0.99),
        scenario("2b", "sklearn test_fastica_simple + noise",
                 bss.format(0.9) + " (the test's atol 0.1)", fastica_simple(True), 0.9),
        scenario("2c", "issue: sign + Cauchy, angle 0.6", bss.format(0.99),
                 issue_square_cauchy, 0.99),
    ]


def tensor_scenarios():
    """Symmetric tensors with a known CP truth: exact, sampled and noisy."""
    # Sampling noise of 20,000 samples moves a third moment along a unit direction
    # by about sqrt(15 / n) ~ 0.03 (more for the heavy-tailed shape-1 source),
    # i.e. up to ~10% of the smallest skewness (1.0): the truth is met only to that.
    sampled = dict(cosine=0.95, weight_rtol=0.2, extra_fraction=0.25)
    noisy = dict(cosine=0.95, weight_rtol=0.1, extra_fraction=0.25)
    geometric8 = dict(weights=np.geomspace(1.0, 0.1, 8), orthogonal=False)
    flat5 = dict(weights=np.linspace(1.0, 0.2, 5))

    def scenario(key, title, make, methods, tolerance=None):
        tolerance = tolerance or {}
        return Scenario(key, title, cp_tolerance(**tolerance), make, methods,
                        cp_judge(**tolerance))

    found = [
        scenario("3a", "non-orth d=10 r=8 l=3, fixed truth",
                 exact_tensor(10, 8, 3, truth_seed=0, **geometric8),
                 tensor_methods(auto_rank=False)),
        scenario("3b", "non-orth d=10 r=8 l=3, truth per seed",
                 exact_tensor(10, 8, 3, **geometric8), tensor_methods(auto_rank=False)),
        scenario("4a", "e1^4 - 0.5 e2^4, d=10", signed_basis_tensor,
                 tensor_methods(given_rank=False, estimator=True)),
        scenario("4b", "orth d=10 l=4, weights 1 -.8 .6 -.4",
                 exact_tensor(10, 4, 4, weights=[1.0, -0.8, 0.6, -0.4]),
                 tensor_methods(estimator=True)),
    ]
    found += [scenario(f"5{letter}", f"orth d=r={dim} l=3 (whitened-like)",
                       exact_tensor(dim, dim, 3), tensor_methods())
              for letter, dim in zip("ab", (10, 20))]
    found += [scenario(f"6{letter}", f"{'orth' if orth else 'non-orth'} d=20 r=5 l={order}",
                       exact_tensor(20, 5, order, orthogonal=orth, **flat5), tensor_methods())
              for letter, (order, orth) in zip("abcd", itertools.product((3, 4), (True, False)))]
    return found + [
        scenario("7a", "SampleMoments l=3 n=20000 d=10 r=5, orth",
                 latent_moments(20_000, 10, 5, noise=0.0, orthogonal=True), tensor_methods(),
                 sampled),
        scenario("7b", "SampleMoments l=3 n=20000 d=10 r=5, non-orth, noise 0.5",
                 latent_moments(20_000, 10, 5, noise=0.5, orthogonal=False), tensor_methods(),
                 sampled),
        scenario("8", "orth d=10 r=4 l=3 + 5% noise", noisy_tensor(10, 4, 3, 0.05),
                 tensor_methods(), noisy),
        scenario("9", "orth d=10 r=3 l=3, rank over-estimated by 2", exact_tensor(10, 3, 3),
                 tensor_methods(auto_rank=False, surplus=2)),
    ]


def lda_corpus(alpha):
    """20,000 documents of 30 words over 40 words and 4 topics: each document mixes the
    topics with Dirichlet(``alpha``) proportions (LDA), or draws one (``alpha=None``)."""

    def make(seed):
        rng = np.random.RandomState(seed)
        topics = rng.dirichlet(np.full(40, 0.2), 4)
        if alpha is None:
            proportions = np.eye(4)[rng.choice(4, 20_000, p=[0.4, 0.3, 0.2, 0.1])]
        else:
            proportions = rng.dirichlet(np.full(4, alpha), 20_000)
        X = np.array([rng.multinomial(30, p @ topics) for p in proportions])
        return Problem(X, topics)

    return make


def spread_mixture(spreads, offset=0.0):
    """20,000 samples of 3 spherical Gaussians in 10 dimensions (means 3 N(0, I) + offset)."""

    def make(seed):
        rng = np.random.RandomState(seed)
        means = 3.0 * rng.standard_normal((3, 10)) + offset
        labels = rng.choice(3, 20_000, p=[0.4, 0.35, 0.25])
        X = means[labels] + np.array(spreads)[labels, None] * rng.standard_normal((20_000, 10))
        return Problem(X, means)

    return make


def matched_distance(judge_norm, tolerance):
    """Right when every true row (topic, mean) is matched by a distinct estimated one
    within ``tolerance`` (Hungarian matching on ``judge_norm`` distances)."""

    def judge(problem, estimate):
        cost = judge_norm(problem.truth[:, None] - np.asarray(estimate)[None])
        rows, cols = linear_sum_assignment(cost)
        worst = float(cost[rows, cols].max())
        return worst <= tolerance, worst, len(estimate)

    return judge


def _l1(difference):
    return np.abs(difference).sum(axis=2)


def _euclidean(difference):
    return np.linalg.norm(difference, axis=2)


def topic_methods():
    def ours(solver):
        return lambda p, seed: SingleTopicModel(4, solver=solver, random_state=seed).fit(
            p.data).topic_word_

    def lda(p, seed):
        model = LatentDirichletAllocation(4, random_state=seed).fit(p.data)
        return model.components_ / model.components_.sum(axis=1, keepdims=True)

    return {"SingleTopicModel(gradient_flow)": ours("gradient_flow"),
            "SingleTopicModel(power_deflation)": ours("power_deflation"),
            "LatentDirichletAllocation": lda}


def mixture_methods(**options):
    def ours(solver, **extra):
        return lambda p, seed: SphericalGaussianMixture(
            3, solver=solver, random_state=seed, **options, **extra).fit(p.data).means_

    return {"SphericalGaussianMixture(gradient_flow)": ours("gradient_flow"),
            "SphericalGaussianMixture(power_deflation)": ours("power_deflation"),
            "SphericalGaussianMixture(variance='common')": ours("gradient_flow",
                                                                variance="common"),
            "GaussianMixture(spherical)": lambda p, seed: GaussianMixture(
                3, covariance_type="spherical", random_state=seed).fit(p.data).means_}


def latent_scenarios():
    """Latent variable models on data that follow them, and on data that do not (issue 19)."""
    topics = "every topic matched (L1) within 0.1"
    means = "every mean matched (Euclidean) within 0.3"
    return [
        Scenario("10a", "single-topic corpus, 20000 docs (the model holds)", topics,
                 lda_corpus(None), topic_methods(), matched_distance(_l1, 0.1), "max L1"),
        Scenario("10b", "LDA corpus, Dirichlet(0.3) proportions (documents mix topics)",
                 topics + "; the single-topic model cannot, so only a warning is right",
                 lda_corpus(0.3), topic_methods(), matched_distance(_l1, 0.1), "max L1"),
        Scenario("10c", "spherical mixture, spreads (1, 1, 3)", means, spread_mixture(
            (1.0, 1.0, 3.0)), mixture_methods(), matched_distance(_euclidean, 0.3), "max err"),
        Scenario("10d", "spherical mixture 30 from the origin, whiten=False", means,
                 spread_mixture((1.0, 1.0, 1.0), offset=30.0), mixture_methods(whiten=False),
                 matched_distance(_euclidean, 0.3), "max err"),
        Scenario("10e", "as 10d, moments only (whiten=False, refine=False)",
                 means + "; the moments alone cannot, so only a warning is right",
                 spread_mixture((1.0, 1.0, 1.0), offset=30.0),
                 mixture_methods(whiten=False, refine=False),
                 matched_distance(_euclidean, 0.3), "max err"),
    ]


def scenarios():
    """Every scenario of section 1, in table order."""
    return source_scenarios() + tensor_scenarios() + latent_scenarios()


# --------------------------------------------------------------------------- running


@dataclass
class Run:
    right: bool
    measure: float
    returned: float
    alarms: list
    seconds: float


def run_once(method, problem, seed, judge):
    """One classified run: the method's warnings and exception are what it said."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            estimate, failure = method(problem, seed), None
        except _BUGS:
            raise
        except Exception as error:  # noqa: BLE001 - any other exception is the method speaking
            estimate, failure = None, error
        seconds = time.perf_counter() - start
    alarms = [type(w.message).__name__ for w in caught
              if not issubclass(w.category, _NOT_ALARMS)]
    if failure is not None:
        return Run(False, np.nan, np.nan, alarms + [type(failure).__name__], seconds)
    return Run(*judge(problem, estimate), alarms, seconds)


def _alarm_summary(runs):
    counts = {}
    for run in runs:
        for name in sorted(set(run.alarms)):
            counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items())) or "-"


def classify(runs):
    """Counts of (successes, silent failures, warned failures, false alarms)."""
    right = sum(1 for r in runs if r.right)
    silent = sum(1 for r in runs if not r.right and not r.alarms)
    false_alarms = sum(1 for r in runs if r.right and r.alarms)
    return np.array([right, silent, len(runs) - right - silent, false_alarms])


def summarize(scenario, name, runs):
    """One table row from the runs of one (scenario, method)."""
    count = len(runs)
    right, silent, warned, false_alarms = classify(runs)
    return (
        scenario.key, name, f"{right}/{count}", f"{silent}/{count}", f"{warned}/{count}",
        f"{false_alarms}/{right}",
        f"{scenario.measure_name} {_median_text(runs, 'measure')}",
        _median_text(runs, "returned"),
        float(np.median([r.seconds for r in runs])),
        _alarm_summary(runs),
    )


def _median_text(runs, attribute):
    """Median of a run attribute over the runs that returned something ("-" if none did).

    Counts print as integers (or halves); measures with 4 decimals, or in
    scientific notation below 0.01 (relative errors near rounding).
    """
    values = [getattr(r, attribute) for r in runs if np.isfinite(getattr(r, attribute))]
    if not values:
        return "-"
    value = float(np.median(values))
    if attribute == "returned":
        return f"{value:g}"
    return f"{value:.4f}" if value >= 1e-2 else f"{value:.1e}"


def is_peer(method_name):
    return method_name.startswith(PEER_PREFIXES)


def totals_line(label, counts):
    """One computed summary sentence: runs, silent and warned failures, rows with silent ones."""
    runs, silent, warned, pairs, silent_pairs = counts
    return (f"{label}: {silent} silent failures in {runs} runs ({silent / max(runs, 1):.1%}), "
            f"{warned} warned failures; {silent_pairs} of {pairs} (scenario, method) rows "
            "have a silent failure.")


def _wrap(text, indent=""):
    return textwrap.fill(text, width=100, subsequent_indent=indent)


def section_reliability(seeds, keys):
    rows, legend = [], []
    # Per group (ours, peers): runs, silent, warned, rows, rows with a silent failure.
    totals = {False: np.zeros(5, dtype=int), True: np.zeros(5, dtype=int)}
    for scenario in scenarios():
        if keys and not any(scenario.key.startswith(k) for k in keys):
            continue
        legend.append(_wrap(f"  {scenario.key}: {scenario.title}. Right: {scenario.tolerance}.",
                            indent="      "))
        problems = [scenario.make(seed) for seed in range(seeds)]
        for name, method in scenario.methods.items():
            runs = [run_once(method, problems[seed], seed, scenario.judge)
                    for seed in range(seeds)]
            rows.append(summarize(scenario, name, runs))
            _, silent, warned, _ = classify(runs)
            totals[is_peer(name)] += (len(runs), silent, warned, 1, silent > 0)
        print(f"  scenario {scenario.key} done", file=sys.stderr, flush=True)
    notes = _wrap(
        "success / silent / warned: runs out of all; false alarms: successes with a warning, "
        "out of successes. rel.err: |T_hat - T| / |T| against the target given; min|corr|: "
        "the worst matched source; returned: median number of components or sources "
        "returned. The last column counts runs in which each warning class (or exception) "
        "appeared.")
    summary = "\n".join(_wrap(totals_line(label, totals[peer]))
                        for peer, label in ((False, "tensorly-gfdeflate"),
                                            (True, "peers (FastICA, TensorLy, scikit-learn)")))
    return table(
        f"1. Reliability over seeds 0..{seeds - 1}: right, silently wrong, or wrong with a "
        "warning or error",
        ["#", "method", "success", "silent", "warned", "false alarms", "median measure",
         "returned", "median s", "warnings and errors (runs)"],
        rows,
        notes + "\nScenarios:\n" + "\n".join(legend) + "\n" + summary,
    )


# --------------------------------------------------------------------------- section 2


TIMING_METHODS = {
    "MomentDecomposition(gradient_flow)": SOURCE_METHODS["MomentDecomposition(gradient_flow)"],
    "MomentDecomposition(power_deflation)": SOURCE_METHODS[
        "MomentDecomposition(power_deflation)"],
    "FastICA(cube)": SOURCE_METHODS["FastICA(cube)"],
}
TIMING_REFERENCE = "FastICA(cube)"


def section_timing(seeds):
    """Median time and accuracy on mixed non-Gaussian sources, against FastICA(cube)."""
    judge = sources_judge(0.95)
    rows = []
    for n_samples, n_sources in itertools.product((20_000, 200_000), (6, 10)):
        make = mixed_bss(n_samples, n_sources)
        problems = [make(seed) for seed in range(seeds)]
        timed = {name: [run_once(method, problems[seed], seed, judge) for seed in range(seeds)]
                 for name, method in TIMING_METHODS.items()}
        reference = np.median([r.seconds for r in timed[TIMING_REFERENCE]])
        for name, runs in timed.items():
            seconds = float(np.median([r.seconds for r in runs]))
            rows.append((n_samples, n_sources, name, seconds, seconds / reference,
                         _median_text(runs, "measure"),
                         f"{sum(r.right for r in runs)}/{seeds}", _alarm_summary(runs)))
    return table(
        f"2. Time and accuracy against FastICA(cube), mixed non-Gaussian sources, seeds "
        f"0..{seeds - 1}",
        ["n", "d", "method", "median s", "time / FastICA(cube)", "median min|corr|",
         "min|corr| >= 0.95", "warnings and errors (runs)"],
        rows,
        _wrap("Sources cycle through exponential, Laplace, uniform, beta(2, 2), sign(N(0, 1)) "
              "and gamma(4); Gaussian mixing. Default parameters, whiten='unit-variance' for "
              "FastICA. time / FastICA(cube): median over median."),
    )


SECTIONS = {
    1: lambda args: section_reliability(args.seeds, args.scenarios),
    2: lambda args: section_timing(args.timing_seeds),
}


def git_commit():
    """The commit this run measured, with ``+changes`` when the tree differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +changes" if dirty.strip() else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20,
                        help="seeds 0..N-1 per scenario and method (default 20)")
    parser.add_argument("--timing-seeds", type=int, default=3,
                        help="seeds per configuration of section 2 (default 3)")
    parser.add_argument("--sections", type=int, nargs="+", choices=sorted(SECTIONS),
                        default=sorted(SECTIONS), help="which tables (default: 1 2)")
    parser.add_argument("--scenarios", nargs="+", default=None, metavar="KEY",
                        help="section 1: only scenarios whose key starts with one of these "
                        "(e.g. 3 4a)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"also write the tables here (default {DEFAULT_OUTPUT})")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads (threadpoolctl); default: leave as is")
    args = parser.parse_args(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    report = io.StringIO()

    def emit(text):
        print(text, flush=True)
        report.write(text + "\n")

    command = " ".join(["python", "benchmarks/reliability.py"] + [shlex.quote(a) for a in
                                                                  (argv or sys.argv[1:])])
    emit(f"command: {command}\nseeds: {args.seeds} (section 2: {args.timing_seeds}); "
         f"git commit: {git_commit()}\n" + machine_description())
    start = time.perf_counter()
    for number in args.sections:
        emit(SECTIONS[number](args))
    emit(f"total {time.perf_counter() - start:.0f} s; load average at end: "
         "%.2f %.2f %.2f" % os.getloadavg())
    args.output.write_text(report.getvalue())


if __name__ == "__main__":
    main()
