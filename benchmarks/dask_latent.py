"""The latent variable estimators on a Dask array against the same fit in memory (issue 11).

The same data, held in memory and wrapped by ``da.from_array`` (row chunks),
fitted with a fixed regularization so that the two fits agree to rounding;
Dask's threaded scheduler. Reported: seconds of each fit (best of
``--repeats``), and the largest difference of the fitted parameters.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/dask_latent.py
"""

import argparse
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tensorly_gfdeflate import SingleTopicModel, SphericalGaussianMixture  # noqa: E402
from tensorly_gfdeflate.estimators.latent.sampling import (  # noqa: E402
    sample_spherical_mixture,
    sample_topic_corpus,
)

FIXED = {"regularization": 0.01}


def best_time(fit, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    return min(times), model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=float, default=2e5)
    parser.add_argument("--words", type=int, default=1000)
    parser.add_argument("--samples", type=float, default=1e6)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.RandomState(0)

    topics = rng.dirichlet(np.full(args.words, 0.1), size=10)
    counts, _ = sample_topic_corpus(int(args.documents), topics, np.full(10, 0.1), (20, 60), rng)
    counts = counts.toarray()
    means = 3.0 * rng.standard_normal((5, args.features))
    samples, _ = sample_spherical_mixture(int(args.samples), means, np.full(5, 0.2),
                                          random_state=rng)
    cases = [
        (f"SingleTopicModel(10), {int(args.documents)} x {args.words} counts",
         lambda: SingleTopicModel(10, solver_options=FIXED, random_state=0), counts,
         ("topic_word_", "topic_weights_")),
        (f"SphericalGaussianMixture(5), {int(args.samples)} x {args.features}",
         lambda: SphericalGaussianMixture(5, solver_options=FIXED, random_state=0), samples,
         ("means_", "weights_")),
    ]
    with dask.config.set(scheduler="threads"):
        for name, make, X, attributes in cases:
            chunked = da.from_array(X, chunks=(args.chunk_rows, -1))
            memory, expected = best_time(lambda: make().fit(X), args.repeats)
            lazy, model = best_time(lambda: make().fit(chunked), args.repeats)
            difference = max(np.abs(getattr(model, a) - getattr(expected, a)).max()
                             for a in attributes)
            print(f"{name}: in memory {memory:.2f} s, Dask ({len(chunked.chunks[0])} chunks) "
                  f"{lazy:.2f} s, largest difference {difference:.1e}")


if __name__ == "__main__":
    main()
