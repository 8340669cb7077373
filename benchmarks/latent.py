"""Method of moments for latent variable models (issue 10): accuracy and cost, printed as tables.

Every fit here is the moment estimate alone (``refine=False``): what the
decomposition of the third moment gives before EM. ``benchmarks/real_latent.py``
measures the default (EM from that start) on real data.

Sections:

1. single-topic model, 30 words, 5 topics, 10 words per document, 100,000
   documents: the flow (whitened and raw), the power method (whitened and
   raw), and scikit-learn's ``LatentDirichletAllocation`` for reference;
2. large vocabulary: 5,000 words, 10 topics, 200,000 sparse documents of 50
   to 200 words, each fit in its own process (time, peak memory);
3. spherical Gaussian mixture, d = 10, 4 components, sigma = 1, 100,000
   samples, against ``GaussianMixture(covariance_type="spherical")``;
4. error against sample size (1e3 to 1e6), flow and power, whitened and raw;
5. strongly overlapping topics (Dirichlet(2) and Dirichlet(5): pairwise cosines
   up to 0.9) on the raw moment, where the flow with ``rank=k`` used to stop
   with a blend of two topics.

Usage::

    python benchmarks/latent.py --blas-threads 1            # all sections, about 3 minutes
    python benchmarks/latent.py --quick --blas-threads 1    # smoke run
    python benchmarks/latent.py --sections 1 3 --seeds 5 --output my_results.txt
"""

import argparse
import io
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run import _quiet, machine_description, peak_rss_bytes, table  # noqa: E402
from sklearn.decomposition import LatentDirichletAllocation  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

from tensorly_gfdeflate import SingleTopicModel, SphericalGaussianMixture  # noqa: E402
from tensorly_gfdeflate.estimators.latent.sampling import (  # noqa: E402
    sample_spherical_mixture,
    sample_topic_corpus,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results_latent.txt"
# The goals.
TOPIC_L1, TOPIC_WEIGHT, MIXTURE_MEAN = 0.02, 0.005, 0.06
LARGE_SECONDS, LARGE_BYTES = 30.0, 2 * 1024**3
# A topic of the large vocabulary counts as recovered when its matched L1 error is below this.
LARGE_RECOVERED_L1 = 0.1
METHODS = [("gradient_flow", True), ("gradient_flow", False),
           ("power_deflation", True), ("power_deflation", False)]


def topic_problem(n_words, n_topics, concentration, seed):
    """Topics drawn from a symmetric Dirichlet (overlapping supports) and fixed decreasing weights."""
    rng = np.random.RandomState(seed)
    topics = rng.dirichlet(np.full(n_words, concentration), size=n_topics)
    weights = np.linspace(2.0, 1.0, n_topics)
    return topics, weights / weights.sum()


def mixture_problem(seed, dim=10, n_components=4):
    """Means with norm 3 in random directions (not orthogonal), unequal weights."""
    rng = np.random.RandomState(seed)
    means = rng.standard_normal((n_components, dim))
    means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True)
    weights = np.linspace(2.0, 1.0, n_components)
    return means, weights / weights.sum()


def matched_errors(truth, estimate, true_weights, weights, distance):
    """Max matched component error and max weight error (``inf`` when some are missing)."""
    if len(estimate) < len(truth):
        return float("inf"), float("inf")
    cost = distance(truth[:, None, :], estimate[None])
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].max()), float(np.abs(true_weights[rows] - weights[cols]).max())


def l1(a, b):
    return np.abs(a - b).sum(axis=2)


def euclidean(a, b):
    return np.linalg.norm(a - b, axis=2)


def timed(function):
    start = time.perf_counter()
    result, caught = _quiet(function)
    return result, time.perf_counter() - start, caught


def fit_topics(X, k, solver, whiten):
    return timed(lambda: SingleTopicModel(k, solver=solver, whiten=whiten, refine=False,
                                           random_state=0).fit(X))


def section_topics(quick, seeds):
    n = 20_000 if quick else 100_000
    topics, weights = topic_problem(30, 5, 0.5, seed=0)
    X, _ = sample_topic_corpus(n, topics, weights, (10, 10), random_state=1)
    rows = []
    for solver, whiten in METHODS:
        model, seconds, caught = fit_topics(X, 5, solver, whiten)
        error, weight_error = matched_errors(topics, model.topic_word_, weights,
                                             model.topic_weights_, l1)
        goal = error <= TOPIC_L1 and weight_error <= TOPIC_WEIGHT
        rows.append((solver, whiten, seconds, f"{model.n_sources_found_}/5", model.converged_,
                     error, weight_error, "yes" if goal else "no", " ".join(caught) or "-"))
    lda_documents = 5_000 if quick else 20_000
    lda, seconds, _ = timed(lambda: LatentDirichletAllocation(
        5, learning_method="online", batch_size=2048, max_iter=10, doc_topic_prior=0.05,
        random_state=0).fit(X[:lda_documents]))
    lda_topics = lda.components_ / lda.components_.sum(axis=1, keepdims=True)
    lda_weights = lda.transform(X).mean(axis=0)
    error, weight_error = matched_errors(topics, lda_topics, weights, lda_weights, l1)
    rows.append((f"sklearn LDA ({lda_documents} docs)", "-", seconds, "5/5", "-", error,
                 weight_error, "-", "-"))
    return table(
        f"1. Single-topic model: 30 words, 5 topics (Dirichlet(0.5)), weights "
        f"{np.round(weights, 3).tolist()}, 10 words per document, {n} documents",
        ["solver", "whiten", "seconds", "found", "converged", "max L1 topic error",
         "max weight error", "goal met", "warnings"],
        rows,
        f"Goal: max L1 error (topics matched) <= {TOPIC_L1} and max weight error <= "
        f"{TOPIC_WEIGHT}, for the flow whitened and raw. LDA: online variational Bayes, "
        f"max_iter=10, doc_topic_prior=0.05, on the first {lda_documents} documents (on all "
        "100,000 it takes minutes); its weights are the mean document-topic proportions.",
    )


def large_child(solver, whiten, quick):
    """Runs in its own process: sample the large corpus, fit, print one JSON line."""
    n = 20_000 if quick else 200_000
    topics, weights = topic_problem(5000, 10, 0.1, seed=2)
    X, _ = sample_topic_corpus(n, topics, weights, (50, 200), random_state=3)
    model, seconds, caught = fit_topics(X, 10, solver, whiten == "True")
    cost = l1(topics[:, None, :], model.topic_word_[None])
    rows, cols = linear_sum_assignment(cost) if len(model.topic_word_) else ([], [])
    errors = cost[rows, cols]
    print(json.dumps(dict(seconds=seconds, peak_rss=peak_rss_bytes(), nnz=int(X.nnz),
                          found=model.n_sources_found_, converged=model.converged_,
                          recovered=int(np.sum(errors <= LARGE_RECOVERED_L1)),
                          error=float(errors.max()) if len(errors) else None,
                          warnings=caught)))


def section_large(quick, seeds):
    rows, nnz = [], None
    for solver, whiten in METHODS[:3]:
        command = [sys.executable, __file__, "--large-child", solver, str(whiten)] + (
            ["--quick"] if quick else [])
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            rows.append((solver, whiten, "failed: " + done.stderr.strip()[-200:]))
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        nnz = r["nnz"]
        goal = (r["seconds"] <= LARGE_SECONDS and r["peak_rss"] <= LARGE_BYTES
                and r["recovered"] == 10)
        rows.append((solver, whiten, r["seconds"], f"{r['peak_rss'] / 2**20:.0f}",
                     f"{r['found']}/10", r["converged"], f"{r['recovered']}/10", r["error"],
                     "yes" if goal else "no", " ".join(r["warnings"]) or "-"))
    n = 20_000 if quick else 200_000
    return table(
        f"2. Large vocabulary: 5,000 words, 10 topics (Dirichlet(0.1)), {n} sparse documents "
        f"of 50 to 200 words ({nnz} non-zeros)",
        ["solver", "whiten", "fit seconds", "peak RSS MiB", "found", "converged", "recovered",
         "max L1 topic error", "goal met", "warnings"],
        rows,
        f"Each row is one fresh process; peak RSS includes sampling the corpus. Recovered: "
        f"matched L1 error <= {LARGE_RECOVERED_L1}. Goal: fit <= {LARGE_SECONDS:.0f} s, "
        "<= 2 GiB, every topic recovered.",
    )


def section_mixture(quick, seeds):
    n = 20_000 if quick else 100_000
    means, weights = mixture_problem(seed=4)
    X, _ = sample_spherical_mixture(n, means, weights, random_state=5)
    rows = []
    for solver, whiten in METHODS:
        model, seconds, caught = timed(lambda: SphericalGaussianMixture(
            4, solver=solver, whiten=whiten, refine=False, random_state=0).fit(X))
        error, weight_error = matched_errors(means, model.means_, weights, model.weights_,
                                             euclidean)
        score = model.score(X) if model.n_sources_found_ else float("nan")
        rows.append((solver, whiten, seconds, f"{model.n_sources_found_}/4", model.converged_,
                     error, weight_error, model.variance_, score,
                     "yes" if error <= MIXTURE_MEAN else "no", " ".join(caught) or "-"))
    gmm, seconds, _ = timed(lambda: GaussianMixture(4, covariance_type="spherical",
                                                    random_state=0).fit(X))
    error, weight_error = matched_errors(means, gmm.means_, weights, gmm.weights_, euclidean)
    rows.append(("sklearn GaussianMixture (EM)", "-", seconds, "4/4", gmm.converged_, error,
                 weight_error, float(np.mean(gmm.covariances_)), gmm.score(X), "-", "-"))
    return table(
        f"3. Spherical Gaussian mixture: d = 10, 4 components (means of norm 3, random "
        f"directions), sigma = 1, weights {np.round(weights, 3).tolist()}, {n} samples",
        ["solver", "whiten", "seconds", "found", "converged", "max mean error",
         "max weight error", "variance", "score", "goal met", "warnings"],
        rows,
        f"Goal: max Euclidean mean error (matched) <= {MIXTURE_MEAN}. Score: average "
        "log-likelihood per sample on the training data. EM: k-means++ start, 1 init.",
    )


def section_sample_size(quick, seeds):
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    topics, topic_weights = topic_problem(30, 5, 0.5, seed=0)
    means, mixture_weights = mixture_problem(seed=4)
    rows = []
    for n in sizes:
        for solver, whiten in METHODS:
            topic_errors, mean_errors = [], []
            for seed in range(seeds):
                X, _ = sample_topic_corpus(n, topics, topic_weights, (10, 10), 100 + seed)
                model, _, _ = fit_topics(X, 5, solver, whiten)
                topic_errors.append(matched_errors(topics, model.topic_word_, topic_weights,
                                                   model.topic_weights_, l1)[0])
                Y, _ = sample_spherical_mixture(n, means, mixture_weights, random_state=200 + seed)
                mixture, _, _ = timed(lambda: SphericalGaussianMixture(
                    4, solver=solver, whiten=whiten, refine=False, random_state=0).fit(Y))
                mean_errors.append(matched_errors(means, mixture.means_, mixture_weights,
                                                  mixture.weights_, euclidean)[0])
            rows.append((n, solver, whiten, float(np.median(topic_errors)),
                         float(np.max(topic_errors)), float(np.median(mean_errors)),
                         float(np.max(mean_errors))))
    return table(
        f"4. Error against sample size ({seeds} seeds each): the topic problem of section 1 "
        "and the mixture of section 3",
        ["n", "solver", "whiten", "topics: median max-L1", "worst", "mixture: median max-mean",
         "worst"],
        rows,
        "inf: fewer components found than asked (never filled in). Per seed, the max over "
        "components of the matched error; then the median and the worst over seeds.",
    )


def section_overlap(quick, seeds):
    n = 20_000 if quick else 100_000
    rows = []
    for concentration in (2.0, 5.0):
        for seed in range(seeds):
            topics, weights = topic_problem(30, 5, concentration, seed=10 + seed)
            unit = topics / np.linalg.norm(topics, axis=1, keepdims=True)
            cosine = (unit @ unit.T)[np.triu_indices(5, 1)].max()
            X, _ = sample_topic_corpus(n, topics, weights, (10, 10), random_state=20 + seed)
            cells = []
            for solver, whiten in [METHODS[0], METHODS[1], METHODS[3]]:
                model, _, _ = fit_topics(X, 5, solver, whiten)
                error = matched_errors(topics, model.topic_word_, weights, model.topic_weights_,
                                       l1)[0]
                cells.append(f"{model.n_sources_found_}/5 {'yes' if model.converged_ else 'no'} "
                             f"{error:.3f}")
            rows.append((concentration, seed, cosine, *cells))
    return table(
        f"5. Overlapping topics on the raw moment: 30 words, 5 topics, {n} documents of 10 words",
        ["Dirichlet", "seed", "max cosine", "flow, whitened", "flow, raw", "power, raw"],
        rows,
        "Cells: topics found, converged, max L1 topic error (inf: fewer found than asked).",
    )


SECTIONS = {1: section_topics, 2: section_large, 3: section_mixture, 4: section_sample_size,
            5: section_overlap}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--sections", type=int, nargs="+", choices=sorted(SECTIONS),
                        default=sorted(SECTIONS), help="which tables (default: all)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="data seeds per row of section 4 and per concentration of section 5 (default 3)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"also write the tables here (default {DEFAULT_OUTPUT})")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads (threadpoolctl); default: leave as is")
    parser.add_argument("--large-child", nargs=2, metavar=("SOLVER", "WHITEN"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.blas_threads)  # for section 2's processes
    if args.large_child:
        large_child(*args.large_child, quick=args.quick)
        return
    report = io.StringIO()

    def emit(text):
        print(text, flush=True)
        report.write(text + "\n")

    emit(machine_description())
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for number in args.sections:
            emit(SECTIONS[number](args.quick, args.seeds))
    emit(f"total {time.perf_counter() - start:.0f} s; load average at end: "
         "%.2f %.2f %.2f" % os.getloadavg())
    args.output.write_text(report.getvalue())


if __name__ == "__main__":
    main()
