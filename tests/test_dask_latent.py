"""The latent estimators on Dask arrays: the in-memory results, in two passes, X never whole."""

import warnings

import numpy as np
import pytest

from tensorly_gfdeflate import SingleTopicModel, SphericalGaussianMixture
from tensorly_gfdeflate.targets.dask_moments import moment_sums
from tensorly_gfdeflate.estimators.latent.sampling import sample_spherical_mixture, sample_topic_corpus
from tensorly_gfdeflate.estimators.latent.topics import long_documents
from tensorly_gfdeflate.estimators.latent._base import _SEED_ROWS
from tensorly_gfdeflate.estimators.latent.whitening import MixtureMoments, TopicMoments, topic_third_sums

da = pytest.importorskip("dask.array")

TOPICS = np.array([[0.40, 0.30, 0.15, 0.10, 0.05, 0.00, 0.00, 0.00],
                   [0.00, 0.05, 0.10, 0.40, 0.30, 0.15, 0.00, 0.00],
                   [0.05, 0.00, 0.00, 0.00, 0.10, 0.15, 0.30, 0.40]])
MEANS = np.array([[3.0, 0.0, 0.0, 1.0, 0.0],
                  [0.0, 3.0, 0.0, 0.0, 1.0],
                  [1.0, 1.0, 3.0, 0.0, 0.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])
CHUNK = 3000
# An explicit regularization: the automatic one reads standard errors, which a
# Dask fit estimates from one chunk of rows, the in-memory fit from all of them.
FIXED = {"regularization": 0.01}


@pytest.fixture(scope="module")
def counts():
    """12,000 documents of 2 to 11 words (the 2-word ones are dropped by fit), as integers."""
    X, _ = sample_topic_corpus(12000, TOPICS, WEIGHTS, (2, 12), np.random.RandomState(0))
    return X.toarray().astype(np.int64)


@pytest.fixture(scope="module")
def samples():
    X, _ = sample_spherical_mixture(12000, MEANS, WEIGHTS, random_state=np.random.RandomState(0))
    return X


def chunked(X):
    return da.from_array(X, chunks=(CHUNK, -1))


def fit_quietly(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped short documents
        return model.fit(X)


class TaskWatch:
    """Counts the Dask computations (passes) and the largest number of rows any task returned."""

    def __init__(self):
        from dask.callbacks import Callback

        self.computations, self.most_rows = 0, 0
        watch = self

        class _Watch(Callback):
            def _start(self, dsk):
                watch.computations += 1

            def _posttask(self, key, result, dsk, state, worker_id):
                if isinstance(result, np.ndarray) and result.ndim == 2:
                    watch.most_rows = max(watch.most_rows, result.shape[0])

        self.callback = _Watch()


@pytest.mark.parametrize("whiten", [True, False])
def test_topic_model_of_a_dask_array_equals_the_in_memory_fit(counts, whiten):
    expected = fit_quietly(SingleTopicModel(3, whiten=whiten, solver_options=FIXED,
                                            random_state=0), counts)
    watch = TaskWatch()
    with watch.callback, pytest.warns(UserWarning, match="of 12000 documents in X have fewer"):
        model = SingleTopicModel(3, whiten=whiten, solver_options=FIXED,
                                 random_state=0).fit(chunked(counts))
    # Two passes for the moments, one per EM step, one for the components' merge check.
    assert watch.computations == 2 + model.n_iter_ + 1 and watch.most_rows <= CHUNK
    assert model.n_documents_dropped_ == expected.n_documents_dropped_ > 0
    assert model.n_sources_found_ == 3
    np.testing.assert_allclose(model.projection_, expected.projection_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.topic_word_, expected.topic_word_, atol=1e-9)
    np.testing.assert_allclose(model.topic_weights_, expected.topic_weights_, atol=1e-9)
    # transform stays lazy, chunk by chunk; score reads chunk by chunk; both accept
    # in-memory data after a Dask fit.
    posterior = model.transform(chunked(counts))
    assert isinstance(posterior, da.Array) and posterior.chunks[0] == chunked(counts).chunks[0]
    np.testing.assert_allclose(posterior.compute(), expected.transform(counts), atol=1e-9)
    assert model.score(chunked(counts)) == pytest.approx(expected.score(counts), rel=1e-10)
    assert model.score(counts) == pytest.approx(expected.score(counts), rel=1e-10)


def test_topic_model_of_sparse_chunks_equals_the_in_memory_fit(counts):
    sp = pytest.importorskip("scipy.sparse")
    sparse = chunked(counts.astype(float)).map_blocks(sp.csr_matrix, dtype=np.float64)
    expected = fit_quietly(SingleTopicModel(3, solver_options=FIXED, random_state=0),
                           sp.csr_matrix(counts))
    model = fit_quietly(SingleTopicModel(3, solver_options=FIXED, random_state=0), sparse)
    np.testing.assert_allclose(model.topic_word_, expected.topic_word_, atol=1e-9)
    np.testing.assert_allclose(model.transform(sparse).compute(), expected.transform(counts),
                               atol=1e-9)


@pytest.mark.parametrize("whiten", [True, False])
def test_mixture_of_a_dask_array_equals_the_in_memory_fit(samples, whiten):
    expected = SphericalGaussianMixture(3, whiten=whiten, solver_options=FIXED,
                                        random_state=0).fit(samples)
    watch = TaskWatch()
    with watch.callback:
        model = SphericalGaussianMixture(3, whiten=whiten, solver_options=FIXED,
                                         random_state=0).fit(chunked(samples))
    # Two passes for the moments, one read of the rows that seed k-means (a bounded
    # sample: the first _SEED_ROWS), one pass per k-means and EM step, one for the
    # components' merge check.
    assert watch.computations == 2 + 1 + model.n_iter_ + 1
    assert watch.most_rows <= max(CHUNK, _SEED_ROWS)
    assert model.n_sources_found_ == 3
    assert model.variance_ == pytest.approx(expected.variance_, rel=1e-10)
    np.testing.assert_allclose(model.means_, expected.means_, atol=1e-8)
    np.testing.assert_allclose(model.weights_, expected.weights_, atol=1e-9)
    labels = model.predict(chunked(samples))
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), expected.predict(samples))
    np.testing.assert_allclose(model.predict_proba(chunked(samples)).compute(),
                               expected.predict_proba(samples), atol=1e-9)
    np.testing.assert_allclose(model.score_samples(chunked(samples)).compute(),
                               expected.score_samples(samples), rtol=1e-10)
    assert model.score(samples) == pytest.approx(expected.score(samples), rel=1e-10)


def test_default_options_recover_the_in_memory_means(samples):
    # With the automatic regularization the two fits see slightly different noise
    # floors (all rows against one chunk); the components agree to a tolerance.
    expected = SphericalGaussianMixture(3, random_state=0).fit(samples)
    model = SphericalGaussianMixture(3, random_state=0).fit(chunked(samples))
    np.testing.assert_allclose(model.means_, expected.means_, atol=1e-4)


def test_operators_from_sums_equal_the_in_memory_ones(counts, samples):
    rng = np.random.RandomState(1)
    V = np.linalg.qr(rng.standard_normal((3, 2)))[0]
    long, _ = long_documents(counts.astype(float))
    projection = fit_quietly(SingleTopicModel(3, solver_options=FIXED, random_state=0),
                             counts).projection_
    in_memory = TopicMoments(long, projection)
    parts = [long[start:start + CHUNK] for start in range(0, len(long), CHUNK)]
    sums = [topic_third_sums(part, projection) for part in parts]
    total = {key: sum(part[key] for part in sums) for key in sums[0]}
    operator = TopicMoments.from_sums(parts[0], projection, total)
    np.testing.assert_allclose(operator.to_dense(), in_memory.to_dense(), atol=1e-12)
    # One chunk of documents estimates the standard errors of all of them.
    np.testing.assert_allclose(operator.standard_error(V), in_memory.standard_error(V), rtol=0.2)

    projection = rng.standard_normal((5, 3))
    noise = np.linalg.qr(rng.standard_normal((5, 2)))[0]
    in_memory = MixtureMoments(samples, 0.9, noise, projection)
    X = chunked(samples)
    sums = moment_sums(X, 3, rotation=projection.T, sample=lambda rows: rows)
    operator = MixtureMoments.from_sums(X, sums, sums.sample, samples.mean(axis=0), 0.9, noise,
                                        projection)
    np.testing.assert_allclose(operator.to_dense(), in_memory.to_dense(),
                               atol=1e-10 * np.abs(in_memory.to_dense()).max())
    assert operator.norm == pytest.approx(in_memory.norm, rel=1e-10)
    np.testing.assert_allclose(operator.standard_error(V), in_memory.standard_error(V), rtol=0.2)


def test_fit_in_memory_then_evaluate_a_dask_array(samples):
    model = SphericalGaussianMixture(3, random_state=0).fit(samples)
    np.testing.assert_allclose(model.predict_proba(chunked(samples)).compute(),
                               model.predict_proba(samples), rtol=1e-12, atol=1e-300)
    with pytest.raises(ValueError, match="X has 4 features, but SphericalGaussianMixture is "
                                         "expecting 5"):
        model.predict(chunked(samples)[:, :4])


def test_a_mixture_fit_runs_on_a_local_cluster_of_two_processes(samples):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            model = SphericalGaussianMixture(3, solver_options=FIXED,
                                             random_state=0).fit(chunked(samples))
            labels = model.predict(chunked(samples)).compute()
            workers = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(workers) == 2 and all(count > 0 for count in workers.values())
    expected = SphericalGaussianMixture(3, solver_options=FIXED, random_state=0).fit(samples)
    np.testing.assert_allclose(model.means_, expected.means_, atol=1e-8)
    np.testing.assert_array_equal(labels, expected.predict(samples))


def _with_nan(X):
    return da.where(da.arange(X.shape[0])[:, None] == 7000, np.nan, X)


@pytest.mark.parametrize("estimator", [SingleTopicModel, SphericalGaussianMixture])
@pytest.mark.parametrize("make, match", [
    (lambda X: X.rechunk((CHUNK, 2)), r"chunked along its columns .* rechunk"),
    (lambda X: X[X[:, 0] >= 0], r"unknown chunk sizes.*compute_chunk_sizes"),
    (lambda X: X.astype(bool), r"dtype bool"),
    (lambda X: _with_nan(X.astype(float)),
     r"X contains NaN or inf in 1 chunk\(s\), the first holding rows 6000 to 8999; remove"),
])
def test_bad_dask_inputs_name_the_fix(counts, samples, estimator, make, match):
    X = counts if estimator is SingleTopicModel else samples
    with pytest.raises((ValueError, TypeError), match=match):
        estimator(2).fit(make(chunked(X)))


@pytest.mark.parametrize("change, match", [
    (lambda X: da.where(da.arange(X.shape[0])[:, None] == 9500, -1, X),
     r"X has negative entries \(Negative values in data\) in 1 chunk\(s\), the first holding "
     r"rows 9000 to 11999; X must "
     r"hold non-negative word counts"),
    (lambda X: da.where(da.arange(X.shape[0])[:, None] % 4000 == 10, 0.5, X),
     r"X has fractional entries in 3 chunk\(s\), the first holding rows 0 to 2999; X must "
     r"hold integer word counts .* Pass raw counts"),
])
def test_bad_counts_in_a_chunk_name_its_rows(counts, change, match):
    with pytest.raises(ValueError, match=match):
        SingleTopicModel(2).fit(change(chunked(counts)))


def test_lazy_transform_names_the_rows_of_a_bad_chunk(counts):
    model = fit_quietly(SingleTopicModel(3, random_state=0), counts)
    bad = da.where(da.arange(counts.shape[0])[:, None] == 4000, -1, chunked(counts))
    posterior = model.transform(bad)  # lazy: nothing read yet
    with pytest.raises(ValueError, match=r"in rows 3000 to 5999: X must hold non-negative"):
        posterior.compute()


def test_limits_of_a_pass_are_clear_errors_before_reading():
    with pytest.raises(ValueError, match="X has 5000 words; .* at most 4096 words"):
        SingleTopicModel(2).fit(da.ones((10, 5000), chunks=(5, -1)))
    with pytest.raises(ValueError, match="Use whiten=True"):
        SphericalGaussianMixture(2, whiten=False).fit(da.ones((10, 200), chunks=(5, -1)))
