"""SingleTopicModel and its building blocks: unbiased moments of word counts, recovery, posteriors."""

import itertools
import re
import warnings
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import check_estimator

from latent_helpers import assert_clone_is_deterministic_without_global_rng, fit_under_pytorch

from tensorly_gfdeflate import SingleTopicModel
from tensorly_gfdeflate.check.verdict import Shortfall
from tensorly_gfdeflate.estimators.latent.sampling import sample_topic_corpus
from tensorly_gfdeflate.estimators.latent.whitening import TopicMoments, topic_second_moment

TOPICS = np.array([[0.40, 0.30, 0.15, 0.10, 0.05, 0.00, 0.00, 0.00],
                   [0.00, 0.05, 0.10, 0.40, 0.30, 0.15, 0.00, 0.00],
                   [0.05, 0.00, 0.00, 0.00, 0.10, 0.15, 0.30, 0.40]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def make_corpus(n_documents, rng, lengths=(5, 12)):
    """Dense counts from the single-topic model, documents of random lengths."""
    X, labels = sample_topic_corpus(n_documents, TOPICS, WEIGHTS, lengths, rng)
    return X.toarray(), labels


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(20000, np.random.RandomState(0))


def topic_errors(model, topics=TOPICS, weights=WEIGHTS):
    """Max L1 error of the matched topics, and max error of their weights."""
    cost = np.abs(topics[:, None, :] - model.topic_word_[None]).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].max(), np.abs(weights[rows] - model.topic_weights_[cols]).max()


def direct_moments(X):
    """M2 and M3 by enumerating the ordered pairs and triples of distinct word positions."""
    d = X.shape[1]
    second, third = np.zeros((d, d)), np.zeros((d, d, d))
    for counts in X.astype(int):
        words = np.repeat(np.arange(d), counts)
        pairs = list(itertools.permutations(words, 2))
        triples = list(itertools.permutations(words, 3))
        for i, j in pairs:
            second[i, j] += 1.0 / len(pairs)
        for i, j, k in triples:
            third[i, j, k] += 1.0 / len(triples)
    return second / len(X), third / len(X)


def test_moments_are_the_average_over_distinct_word_positions():
    rng = np.random.RandomState(1)
    X = rng.randint(0, 3, size=(6, 4)).astype(float)
    X[:, 0] += 3 - np.minimum(X.sum(axis=1), 3)  # every document has >= 3 words
    second, third = direct_moments(X)
    np.testing.assert_allclose(topic_second_moment(X) @ np.eye(4), second, atol=1e-12)
    np.testing.assert_allclose(TopicMoments(X).to_dense(), third, atol=1e-12)
    projection = rng.standard_normal((4, 2))
    projected = np.einsum("ijk,ia,jb,kc->abc", third, projection, projection, projection)
    operator = TopicMoments(sp.csr_matrix(X), projection)
    np.testing.assert_allclose(operator.to_dense(), projected, atol=1e-12)
    V = rng.standard_normal((2, 3))
    np.testing.assert_allclose(operator.contract(V),
                               np.einsum("abc,ai,bi->ci", projected, V, V), atol=1e-12)
    # The per-document estimates average to the moment, and the norm is exact.
    np.testing.assert_allclose(operator.document_estimates(V).mean(axis=0),
                               operator.evaluate(V), atol=1e-12)
    assert operator.norm_sq == pytest.approx(np.sum(projected**2), rel=1e-12)


def test_moments_are_unbiased_and_standard_error_matches_their_spread():
    rng = np.random.RandomState(2)
    truth = np.einsum("i,ia,ib,ic->abc", WEIGHTS, TOPICS, TOPICS, TOPICS)
    v = rng.standard_normal((8, 1))
    values, errors = [], []
    # Per-document estimates are heavy-tailed (short documents weigh most):
    # 100 replicates pin the spread down to about 10%.
    for _ in range(100):
        operator = TopicMoments(make_corpus(200, rng, lengths=(3, 6))[0])
        values.append(float(operator.evaluate(v)[0]))
        errors.append(float(operator.standard_error(v)[0]))
    expected = float(np.einsum("abc,a,b,c->", truth, v[:, 0], v[:, 0], v[:, 0]))
    spread = np.std(values, ddof=1)
    assert abs(np.mean(values) - expected) < 3 * spread / np.sqrt(len(values))
    assert 0.75 < np.mean(errors) / spread < 1.33


@pytest.mark.parametrize("whiten", [True, False])
def test_flow_recovers_the_topics(corpus, whiten):
    model = SingleTopicModel(3, whiten=whiten, random_state=0).fit(corpus[0])
    assert model.n_sources_found_ == 3 and model.converged_
    topic_error, weight_error = topic_errors(model)
    assert topic_error < 0.06 and weight_error < 0.02
    np.testing.assert_allclose(model.topic_word_.sum(axis=1), 1.0)
    assert np.all(model.topic_word_ >= 0)
    assert model.topic_weights_.sum() == pytest.approx(1.0)


def test_power_method_recovers_the_whitened_topics(corpus):
    model = SingleTopicModel(3, solver="power_deflation", random_state=0).fit(corpus[0])
    topic_error, weight_error = topic_errors(model)
    assert topic_error < 0.06 and weight_error < 0.02


def test_sparse_input_gives_the_dense_result(corpus):
    X = corpus[0][:5000]
    dense = SingleTopicModel(3, random_state=0).fit(X)
    sparse = SingleTopicModel(3, random_state=0).fit(sp.csr_matrix(X))
    np.testing.assert_allclose(sparse.topic_word_, dense.topic_word_, atol=1e-10)
    np.testing.assert_allclose(sparse.topic_weights_, dense.topic_weights_, atol=1e-10)
    np.testing.assert_allclose(sparse.transform(sp.csc_matrix(X[:50])), dense.transform(X[:50]))


def test_posteriors_sum_to_one_and_find_the_topic(corpus):
    X, labels = corpus
    model = SingleTopicModel(3, random_state=0).fit(X)
    posterior = model.transform(X[:2000])
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0)
    # Match fitted topics to true ones, then compare the MAP topic with the label.
    cost = np.abs(TOPICS[:, None, :] - model.topic_word_[None]).sum(axis=2)
    truth_of = dict(zip(*linear_sum_assignment(cost)[::-1]))
    predicted = np.array([truth_of[j] for j in posterior.argmax(axis=1)])
    assert np.mean(predicted == labels[:2000]) > 0.9


def test_score_prefers_the_true_model(corpus):
    X = corpus[0][:2000]
    model = SingleTopicModel(3, random_state=0).fit(corpus[0])
    model.topic_word_, model.topic_weights_ = TOPICS.copy(), WEIGHTS.copy()
    true_score = model.score(X)
    model.topic_word_ = 0.7 * TOPICS + 0.3 / TOPICS.shape[1]
    assert np.isfinite(true_score) and true_score > model.score(X)


def test_topics_the_moments_miss_are_seeded_and_refined_by_em(corpus):
    # With one second the flow finds fewer than 3 topics; n_components still means 3:
    # the rest are seeded from the documents and EM recovers the truth.
    X = corpus[0][:3000]
    model = SingleTopicModel(3, solver_options={"max_time": 1.0}, random_state=0).fit(X)
    assert model.n_sources_found_ < 3
    assert model.topic_word_.shape == (3, TOPICS.shape[1]) and np.all(model.topic_word_ > 0)
    topic_error, weight_error = topic_errors(model)
    assert topic_error < 0.1 and weight_error < 0.05
    assert model.converged_ and model.moment_discrepancy_ <= 1.0
    # Without EM the seeds stay seeds, which do not explain the third moment: the
    # one warning says so, names the call and advises what it accepts.
    with pytest.warns(ConvergenceWarning) as record:
        unrefined = SingleTopicModel(3, refine=False, solver_options={"max_time": 1.0},
                                     random_state=0).fit(X)
    assert len(record) == 1
    assert re.match(r"SingleTopicModel\.fit .*does not explain.*\(refine=False\).*refine=True",
                    str(record[0].message))
    assert unrefined.topic_word_.shape == (3, TOPICS.shape[1]) and not unrefined.converged_
    assert Shortfall.MODEL_MISFIT in unrefined.verdict_.shortfalls


def test_short_documents_are_dropped_with_a_count(corpus):
    X = corpus[0][:3000].copy()
    X[:7] = 0
    X[:7, 0] = 2
    with pytest.warns(UserWarning, match="7 of 3000 documents"):
        model = SingleTopicModel(3, random_state=0).fit(X)
    assert model.n_documents_dropped_ == 7
    with pytest.raises(ValueError, match="no document of at least 3 words"):
        SingleTopicModel(1).fit(np.ones((5, 2)))


@pytest.mark.parametrize("change, match", [
    (lambda X: X * -1, "X must hold non-negative"),
    (lambda X: X + 0.5, "X must hold integer word counts"),
    (lambda X: np.where(X == X.max(), np.nan, X), "NaN"),
])
def test_bad_counts_name_x(corpus, change, match):
    with pytest.raises(ValueError, match=match):
        SingleTopicModel(3).fit(change(corpus[0][:100]))


def test_bad_n_components_name_it(corpus):
    with pytest.raises(ValueError, match="n_components=9 exceeds the 8 words"):
        SingleTopicModel(9).fit(corpus[0][:100])
    # Documents that only use words 0 and 1: M2 has rank 2.
    X = np.zeros((200, 5))
    X[:, 0] = np.random.RandomState(0).randint(0, 6, 200)
    X[:, 1] = 6 - X[:, 0]
    with pytest.raises(ValueError, match="n_components=3 exceeds the rank 2"):
        SingleTopicModel(3).fit(X)
    with pytest.raises(TypeError, match="n_components"):
        SingleTopicModel(2.5).fit(X)


def test_solver_options_are_checked(corpus):
    with pytest.raises(ValueError, match=r"must not set \['rank'\]"):
        SingleTopicModel(3, solver_options={"rank": 2}).fit(corpus[0][:100])
    with pytest.raises(ValueError, match="unknown keys"):
        SingleTopicModel(3, solver_options={"step": 2}).fit(corpus[0][:100])
    with pytest.raises(ValueError, match="solver must be one of"):
        SingleTopicModel(3, solver="em").fit(corpus[0][:100])


def test_clone_and_determinism_without_global_rng(corpus):
    model = SingleTopicModel(3, whiten=False, solver_options={"max_time": 500.0},
                             random_state=3)
    assert_clone_is_deterministic_without_global_rng(model, corpus[0][:5000], "topic_word_")


def test_pytorch_backend_gives_the_numpy_result(corpus):
    X = corpus[0][:5000]
    expected = SingleTopicModel(3, random_state=0).fit(X)
    fitted = fit_under_pytorch(SingleTopicModel(3, random_state=0), X)
    np.testing.assert_allclose(fitted.topic_word_, expected.topic_word_, atol=1e-8)


def test_moment_operators_refuse_short_documents():
    X = np.array([[2.0, 0.0], [1.0, 3.0]])
    with pytest.raises(ValueError, match="1 documents of fewer than 3 words"):
        TopicMoments(X)
    assert topic_second_moment(X).shape == (2, 2)


def test_scikit_learn_surface_is_consistent(corpus):
    X = corpus[0][:4000]
    model = SingleTopicModel(3, random_state=0)
    posterior = model.fit_transform(X)
    np.testing.assert_allclose(posterior, model.transform(X))
    np.testing.assert_allclose(model.predict_proba(X), posterior)
    np.testing.assert_array_equal(model.predict(X), posterior.argmax(axis=1))
    log_likelihood = model.score_samples(X)
    assert model.score(X) == pytest.approx(log_likelihood.mean(), rel=1e-12)
    assert model.perplexity(X) == pytest.approx(np.exp(-log_likelihood.sum() / X.sum()),
                                                rel=1e-12)
    # A word no topic ever saw keeps a finite likelihood: smoothed topics are never 0.
    assert np.all(model.topic_word_ > 0) and np.isfinite(model.score(X + 1))
    assert list(model.get_feature_names_out()) == [f"singletopicmodel{i}" for i in range(3)]
    assert model.__sklearn_tags__().input_tags.sparse


def test_scikit_learn_checks_fail_only_on_fractional_counts():
    # scikit-learn's checks feed random floats; word counts must be integers (the
    # moments' unbiased estimators count distinct word positions). Every other check
    # passes, and each failure is that refusal.
    results = check_estimator(SingleTopicModel(2, random_state=0), on_skip=None,
                              on_fail=None)
    failed = [r for r in results if r["status"] == "failed"]
    assert len(results) - len(failed) >= 15
    for result in failed:
        assert "integer word counts" in str(result["exception"]) or (
            result["check_name"] in {"check_estimator_sparse_array",
                                     "check_estimator_sparse_matrix",
                                     "check_estimator_sparse_tag"}
            and "integer word counts" in str(result["exception"].__cause__ or
                                             result["exception"].__context__)), result


def test_documents_that_mix_topics_are_reported_as_misfit():
    # Documents drawn from LDA (each mixes topics, Dirichlet 0.3) do not follow the
    # single-topic model: the fitted model cannot explain their third moment, and the
    # verdict and the one warning say so (the issue: converged, no warning, 10/10).
    rng = np.random.RandomState(0)
    topics = rng.dirichlet(np.full(40, 0.2), 4)
    proportions = rng.dirichlet(np.full(4, 0.3), 20000)
    X = np.array([rng.multinomial(30, p @ topics) for p in proportions])
    with pytest.warns(ConvergenceWarning, match="does not explain the data's third moment"):
        model = SingleTopicModel(4, random_state=0).fit(X)
    assert model.moment_discrepancy_ > 1.0 and not model.converged_
    assert Shortfall.MODEL_MISFIT in model.verdict_.shortfalls


@pytest.fixture(scope="module")
def docstrings():
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.model_selection import train_test_split

    from tensorly_gfdeflate.datasets import load_docstrings

    X = CountVectorizer(max_features=500, stop_words="english").fit_transform(
        load_docstrings())
    X = X[np.asarray(X.sum(axis=1)).ravel() > 0].astype(float)
    return train_test_split(X, test_size=0.2, random_state=0)


def test_real_corpus_gives_every_topic_and_matches_em_for_the_same_model(docstrings):
    # The standard library's docstrings (on every machine): 5 topics. The flow
    # found 1 of 10 topics on a real corpus, below the unigram baseline.
    from scipy.special import logsumexp

    from tensorly_gfdeflate.estimators.latent.em import TopicParameters, refine

    train, test = docstrings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SingleTopicModel(5, random_state=0).fit(train)
    assert model.topic_word_.shape == (5, train.shape[1])
    words = test.sum()
    ours = model.score_samples(test).sum() / words
    unigram = np.asarray(train.sum(axis=0)).ravel() + 0.1
    assert ours > float(np.sum(test @ np.log(unigram / unigram.sum()))) / words
    # EM for the same model from random responsibilities, the peer, best of 3 seeds.
    peers = []
    for seed in range(3):
        responsibilities = np.random.RandomState(seed).dirichlet(np.ones(5), train.shape[0])
        start = TopicParameters(np.full(5, 0.2), np.ones((5, train.shape[1])), 0.1).maximized(
            {"mass": responsibilities.sum(axis=0),
             "counts": np.asarray((train.T @ responsibilities).T)})
        fitted = refine(train, start, max_iter=100, tol=1e-3).parameters
        peers.append(logsumexp(fitted.log_joint(test), axis=1).sum() / words)
    assert ours >= max(peers) - 0.1


def test_the_flow_lets_grow_every_direction_the_check_calls_structure(docstrings):
    # On real counts the flow's automatic regularization was set by the largest
    # standard error over the target's leading directions (a direction that a few
    # documents dominate): a floor 20x the power method's, and 1 of 10 topics found.
    # It is now the check's own per-direction floor, so each direction that stands
    # above its floor (the power method's components) can grow in the flow.
    from tensorly_gfdeflate import power_deflation_cp
    from tensorly_gfdeflate.check.probe import NOISE_STANDARD_ERRORS
    from tensorly_gfdeflate.estimators.latent.topics import long_documents
    from tensorly_gfdeflate.estimators.latent.whitening import (
        top_eigenpairs, topic_second_moment, whitening_from_eigenpairs)
    from tensorly_gfdeflate.flow.settings import automatic_regularization
    from tensorly_gfdeflate.models.symmetric import SymmetricModel
    from tensorly_gfdeflate.targets.symmetric import normalize

    X = long_documents(docstrings[0])[0]
    values, vectors = top_eigenpairs(topic_second_moment(X), 10, 0)
    target, _ = normalize(TopicMoments(X, whitening_from_eigenpairs(values, vectors)))
    regularization = automatic_regularization(target, SymmetricModel.for_target(target),
                                              "paper", np.random.RandomState(0), rounds=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cp = power_deflation_cp(target, 10, random_state=0)
    directions = cp.factors[0]
    floors = NOISE_STANDARD_ERRORS * np.asarray(target.standard_error(directions))
    structure = np.abs(cp.weights) > floors
    assert structure.sum() >= 3
    assert regularization / 2 <= floors[structure].min() * 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SingleTopicModel(10, refine=False, random_state=0).fit(docstrings[0])
    assert model.n_sources_found_ >= 3
