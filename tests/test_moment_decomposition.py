"""MomentDecomposition: scikit-learn's estimator checks, pipelines, and blind source separation."""

import re
import warnings

import numpy as np
import pytest
from scipy import signal
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from tensorly_gfdeflate import GradientFlowCP, MomentDecomposition, PowerDeflationCP

SOLVERS = ["gradient_flow", "power_deflation"]


def _best_correlations(estimated, sources):
    """For each true source, the largest |correlation| with an estimated one."""
    k = sources.shape[1]
    return np.abs(np.corrcoef(sources.T, estimated.T)[:k, k:]).max(axis=1)


@pytest.fixture(scope="module")
def blind_source_separation():
    """scikit-learn's blind source separation example, with its own seeded generator."""
    rng = np.random.RandomState(0)
    time = np.linspace(0, 8, 2000)
    sources = np.c_[np.sin(2 * time), np.sign(np.sin(3 * time)),
                    signal.sawtooth(2 * np.pi * time)]
    sources += 0.2 * rng.standard_normal(sources.shape)
    sources /= sources.std(axis=0)
    mixing = np.array([[1, 1, 1], [0.5, 2, 1], [1.5, 1, 2]])
    return sources @ mixing.T, sources


@pytest.fixture(scope="module")
def mixed_sources():
    """Three unit-variance sub-Gaussian sources, a well-conditioned non-orthogonal mixing."""
    rng = np.random.RandomState(0)
    n = 3000
    sources = np.c_[np.sign(rng.randn(n)), np.sqrt(3) * rng.uniform(-1, 1, n),
                    np.sqrt(2) * np.sin(rng.uniform(0, 7, n))]
    mixing = np.array([[1, 0.6, 0.2], [0.1, 1, 0.5], [0.3, 0.1, 1]])
    return sources @ mixing.T, sources


@pytest.mark.parametrize("solver", SOLVERS)
def test_scikit_learn_estimator_checks_pass(solver):
    results = check_estimator(MomentDecomposition(solver=solver, random_state=0),
                              on_skip=None, on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == []
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}  # needs SCIPY_ARRAY_API set
    assert len(results) > 40


@pytest.mark.parametrize("solver", SOLVERS)
def test_blind_source_separation_recovers_every_source_as_fastica_does(
        solver, blind_source_separation):
    X, sources = blind_source_separation
    reference = FastICA(n_components=3, whiten="unit-variance", random_state=0)
    assert np.all(_best_correlations(reference.fit_transform(X), sources) >= 0.99)
    model = MomentDecomposition(solver=solver, random_state=0)
    recovered = model.fit_transform(X)
    correlations = _best_correlations(recovered, sources)
    assert np.all(correlations >= 0.99), correlations
    # Each recovered source matches a different true one.
    assert len(set(np.abs(np.corrcoef(sources.T, recovered.T)[:3, 3:]).argmax(axis=1))) == 3
    # Sine, square and sawtooth waves are sub-Gaussian: negative excess kurtosis.
    assert np.all(model.weights_ < -0.5)
    np.testing.assert_array_equal(np.argsort(-np.abs(model.weights_)), [0, 1, 2])


@pytest.mark.parametrize("solver", SOLVERS)
def test_many_samples_separate_every_source(solver):
    # 20000 samples: the flow's norm and stop rule must not rest on a subsample estimate.
    rng = np.random.RandomState(7)
    n = 20000
    sources = np.c_[rng.exponential(size=n), rng.laplace(size=n), rng.uniform(-1, 1, n),
                    rng.beta(2, 2, n)]
    X = sources @ rng.randn(4, 4).T
    model = MomentDecomposition(solver=solver, random_state=0).fit(X)
    assert model.decomposer_.n_components_ == 4
    assert np.all(_best_correlations(model.transform(X), sources) >= 0.99)


def test_flow_with_mixed_signs_fits_sub_and_super_gaussian_sources():
    rng = np.random.RandomState(1)
    n = 2500
    sources = np.c_[rng.laplace(size=n) / np.sqrt(2), np.sign(rng.randn(n)),
                    np.sqrt(3) * rng.uniform(-1, 1, n)]
    X = sources @ rng.randn(3, 3).T
    model = MomentDecomposition(random_state=0).fit(X)
    assert model.decomposer_.n_components_ == 3  # every source fitted, none completed
    assert np.all(_best_correlations(model.transform(X), sources) >= 0.99)
    # Laplace: excess kurtosis +3; a +-1 coin: -2; uniform: -1.2 (here: their sample values).
    standardized = (sources - sources.mean(axis=0)) / sources.std(axis=0)
    sample_kurtosis = np.mean(standardized**4, axis=0) - 3.0
    assert np.sign(sample_kurtosis).tolist() == [1.0, -1.0, -1.0]
    np.testing.assert_allclose(np.sort(model.weights_), np.sort(sample_kurtosis), atol=0.05)


def test_feature_scaling_lets_the_flow_fit_the_non_orthogonal_mixing(mixed_sources):
    # The unwhitened cumulant (of the standardized features) has the mixing
    # columns as non-orthogonal factors: the flow fits them, deflation by the
    # power method does not. The default noise floor lets every source through.
    X, sources = mixed_sources
    flow = MomentDecomposition(whiten="feature-scaling", random_state=1).fit(X)
    with pytest.warns(ConvergenceWarning, match="MomentDecomposition.fit leaves a component"):
        power = MomentDecomposition(whiten="feature-scaling", solver="power_deflation",
                                    random_state=0).fit(X)
    assert flow.whitening_ is None
    assert flow.n_sources_found_ == 3
    assert np.all(_best_correlations(flow.transform(X), sources) >= 0.98)
    mixing = np.array([[1, 0.6, 0.2], [0.1, 1, 0.5], [0.3, 0.1, 1]]) / X.std(axis=0)[:, None]
    mixing /= np.linalg.norm(mixing, axis=0)
    for model, fitted in ((flow, True), (power, False)):
        cosines = np.abs(mixing.T @ model.decomposer_.factor_).max(axis=1)
        assert np.all(cosines >= 0.99) == fitted, cosines


def test_feature_scaling_gives_features_of_any_scale_one_noise_floor(
        blind_source_separation):
    # scikit-learn's example, unwhitened: the floor was set by the largest-variance
    # direction (1.26 of the tensor's norm), left one source and said nothing.
    # The features are now standardized: a feature's units change nothing, and
    # the sources the floor leaves out are reported.
    X, _ = blind_source_separation
    models = []
    for scaled in (X, X * [1.0, 1.0, 100.0]):
        with pytest.warns(ConvergenceWarning, match="found 1 of n_components=3"):
            models.append(MomentDecomposition(whiten="feature-scaling",
                                              random_state=0).fit(scaled))
    assert models[0].decomposer_.regularization < 0.5
    np.testing.assert_allclose(models[0].weights_, models[1].weights_, rtol=1e-8)


def test_whiten_false_takes_x_as_white_and_says_when_it_is_far_from_white(mixed_sources):
    # The mixing is not orthogonal: an orthogonal unmixing of X itself loses accuracy,
    # which the warning names, with the two routes that fit such data.
    X, sources = mixed_sources
    with pytest.warns(UserWarning, match=(
            r"whiten=False takes X as already white, but the eigenvalues of its covariance "
            r"span a ratio of 5\.49.*Pass whiten=True.*or whiten='feature-scaling'")):
        as_given = MomentDecomposition(whiten=False, random_state=0).fit(X)
    assert np.min(_best_correlations(as_given.transform(X), sources)) < 0.99
    # PCA-whitened first, the same data are separated as whiten=True separates X.
    white = (X - X.mean(axis=0)) @ MomentDecomposition(solver="power_deflation").fit(
        X).whitening_.T * 3.0  # white up to a scale, which changes nothing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MomentDecomposition(whiten=False, random_state=0).fit(white)
    assert caught == []
    assert np.all(_best_correlations(model.transform(white), sources) >= 0.999)


def test_order_three_separates_skewed_sources_with_positive_skewness():
    rng = np.random.RandomState(2)
    n = 3000
    sources = np.c_[rng.exponential(size=n), -rng.gamma(4.0, size=n), rng.randn(n)]
    sources = (sources - sources.mean(axis=0)) / sources.std(axis=0)
    X = sources @ rng.randn(3, 3).T
    model = MomentDecomposition(order=3, solver="power_deflation", random_state=0).fit(X)
    recovered = model.transform(X)
    assert np.all(_best_correlations(recovered[:, :2], sources[:, :2]) >= 0.99)
    # Signs are fixed so that every source's skewness is positive (the gamma one flips).
    np.testing.assert_allclose(model.weights_[:2], [2.0, 1.0], atol=0.25)
    assert np.all(np.mean(recovered**3, axis=0)[:2] > 0)
    # The moment of centred data is the order-3 cumulant: the same decomposition.
    moment = MomentDecomposition(order=3, statistic="moment", solver="power_deflation",
                                 random_state=0).fit(X)
    # (The Gaussian third source is noise, whose direction is not stable to rounding.)
    np.testing.assert_allclose(moment.components_[:2], model.components_[:2], atol=1e-8)


def test_fitted_attributes_describe_a_whitened_unmixing(blind_source_separation):
    X, _ = blind_source_separation
    model = MomentDecomposition(n_components=2, solver="power_deflation", random_state=0).fit(X)
    centred = X - model.mean_
    np.testing.assert_allclose(model.mean_, X.mean(axis=0))
    assert model.whitening_.shape == model.components_.shape == (2, 3)
    assert model.mixing_.shape == (3, 2)
    white = centred @ model.whitening_.T
    np.testing.assert_allclose(white.T @ white / len(X), np.eye(2), atol=1e-10)
    sources = model.transform(X)
    np.testing.assert_allclose(np.mean(sources, axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.mean(sources**2, axis=0), 1.0)
    np.testing.assert_allclose(model.weights_, np.mean(sources**4, axis=0) - 3.0)
    assert model.n_components_ == 2 and model.n_features_in_ == 3
    assert isinstance(model.decomposer_, PowerDeflationCP)
    assert model.n_iter_ == model.decomposer_.n_iter_ > 0
    # With two of three directions kept, inverse_transform projects onto the mixing's span.
    projected = model.inverse_transform(sources)
    np.testing.assert_allclose(model.transform(projected), sources, atol=1e-8)


@pytest.mark.parametrize("solver", SOLVERS)
def test_inverse_transform_undoes_transform(solver, blind_source_separation):
    X, _ = blind_source_separation
    model = MomentDecomposition(solver=solver, random_state=0).fit(X[:500])
    np.testing.assert_allclose(model.inverse_transform(model.transform(X)), X, atol=1e-8)
    with pytest.raises(ValueError, match="X has 2 columns"):
        model.inverse_transform(np.ones((4, 2)))


def test_same_random_state_same_components(blind_source_separation):
    X, _ = blind_source_separation
    first = MomentDecomposition(random_state=3).fit(X[:600]).components_
    second = MomentDecomposition(random_state=3).fit(X[:600]).components_
    np.testing.assert_array_equal(first, second)


def test_feature_names_and_pandas_output(blind_source_separation):
    pd = pytest.importorskip("pandas")
    X, _ = blind_source_separation
    frame = pd.DataFrame(X[:400], columns=["left", "middle", "right"])
    model = MomentDecomposition(solver="power_deflation", random_state=0).set_output(
        transform="pandas")
    out = model.fit_transform(frame)
    assert list(model.feature_names_in_) == ["left", "middle", "right"]
    assert list(out.columns) == ["momentdecomposition0", "momentdecomposition1",
                                 "momentdecomposition2"]
    assert list(model.get_feature_names_out()) == list(out.columns)


def test_solver_options_reach_the_solver(blind_source_separation):
    X, _ = blind_source_separation
    model = MomentDecomposition(solver_options={"variant": "paper", "width": 9},
                                random_state=0).fit(X[:800])
    assert isinstance(model.decomposer_, GradientFlowCP)
    assert model.decomposer_.variant == "paper" and model.decomposer_.width == 9
    assert model.decomposer_.signs == "mixed" and model.decomposer_.rank == 3
    options = {"n_restarts": 2}
    MomentDecomposition(solver="power_deflation", solver_options=options).fit(X[:100])
    assert options == {"n_restarts": 2}  # not modified


def test_components_left_unfitted_are_completed_by_the_orthogonal_complement(
        blind_source_separation):
    # A noise floor of 0.6 (relative weight) leaves only the square wave (0.77) fitted.
    X, sources = blind_source_separation
    with pytest.warns(ConvergenceWarning, match=(
            "found 1 of n_components=3 sources; the last 2 are filled by an orthonormal "
            "completion")) as caught:
        model = MomentDecomposition(solver_options={"regularization": 1.2},
                                    random_state=0).fit(X)
    assert len(caught) == 1  # the flow's own "fewer than rank" is replaced, not repeated
    assert model.decomposer_.n_components_ == model.n_sources_found_ == 1
    assert model.n_components_ == 3
    recovered = model.transform(X)
    # The identified source comes first, whatever the completion's statistics.
    assert abs(np.corrcoef(recovered[:, 0], sources[:, 1])[0, 1]) >= 0.99
    np.testing.assert_allclose(recovered.T @ recovered / len(X), np.eye(3), atol=1e-8)


def test_data_with_no_detectable_structure_warns_and_gives_the_whitened_basis():
    # Gaussian data: no cumulant stands out of the noise, so the flow fits nothing
    # and the components complete an orthonormal whitened basis.
    X = np.random.RandomState(4).randn(200, 3) @ np.diag([1.0, 2.0, 3.0])
    with pytest.warns(ConvergenceWarning, match="found 0 of n_components=3"):
        model = MomentDecomposition(random_state=0).fit(X)
    assert model.n_sources_found_ == 0
    sources = model.transform(X)
    np.testing.assert_allclose(sources.T @ sources / len(X), np.eye(3), atol=1e-8)
    assert np.all(np.abs(model.weights_) < 1.0)


@pytest.mark.parametrize("params, category, match", [
    # Cut short: nothing fitted, max_time reached, a residual left. The flow's
    # own verdict named gradient_flow_cp and advised "Lower rank" as well.
    ({"solver_options": {"max_time": 1.0}}, ConvergenceWarning,
     r"found 0 of n_components=3 sources.*; it reached max_time=1 .*; it leaves a component"
     r".*Raise solver_options\['max_time'\]"),
    ({"solver": "power_deflation", "solver_options": {"n_iter_max": 1}}, ConvergenceWarning,
     r"stopped power iterations at n_iter_max=1 before they settled\. "
     r"Raise solver_options\['n_iter_max'\]"),
    ({"solver_options": {"regularization": 1.2}}, ConvergenceWarning,
     r"found 1 of n_components=3 sources.*lower n_components, lower "
     r"solver_options\['regularization'\]"),
    # The flow's warning of an explicit step_size that overshoots, raised again.
    ({"solver_options": {"step_size": 5.0}}, RuntimeWarning,
     r"\(solver='gradient_flow', through solver_options\): step_size=5 overshoots"),
])
def test_one_warning_per_fit_names_moment_decomposition_and_what_it_accepts(
        params, category, match, blind_source_separation):
    X, _ = blind_source_separation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MomentDecomposition(random_state=0, **params).fit(X)
    assert [warning.category for warning in caught] == [category], caught
    message = str(caught[0].message)
    assert message.startswith("MomentDecomposition.fit ")
    assert re.search(match, message), message
    # Only what MomentDecomposition takes: rank is set by n_components, and the
    # solver functions are not what the caller called.
    for foreign in ("rank", "gradient_flow_cp", "power_deflation_cp", "Lower rank"):
        assert foreign not in message
    if category is ConvergenceWarning:
        assert model.verdict_.message == message and not model.converged_


def test_pipeline_with_scaler_and_logistic_regression_and_grid_search():
    rng = np.random.RandomState(5)
    n = 400
    sources = np.c_[np.sqrt(3) * rng.uniform(-1, 1, n), np.sign(rng.randn(n)),
                    rng.laplace(size=n) / np.sqrt(2)]
    X = sources @ np.array([[1, 1, 1], [0.5, 2, 1], [1.5, 1, 2]]).T
    y = (sources[:, 0] > 0).astype(int)
    pipeline = make_pipeline(StandardScaler(), MomentDecomposition(random_state=0),
                             LogisticRegression())
    assert pipeline.fit(X, y).score(X, y) > 0.95
    assert pipeline.predict(X[:5]).shape == (5,)
    search = GridSearchCV(
        pipeline,
        {"momentdecomposition__n_components": [1, 3],
         "momentdecomposition__solver": SOLVERS},
        cv=2,
    ).fit(X, y)
    # One component cannot carry the first source; all three can, with either solver.
    assert search.best_params_["momentdecomposition__n_components"] == 3
    scores = search.cv_results_["mean_test_score"]
    n_components = search.cv_results_["param_momentdecomposition__n_components"]
    assert np.all(scores[n_components == 3] > 0.95)
    assert np.all(scores[n_components == 1] < 0.8)


@pytest.mark.parametrize("params, error, match", [
    ({"order": 5}, ValueError, "order must be 3 or 4"),
    ({"order": 4.0}, TypeError, "order must be the integer"),
    ({"statistic": "median"}, ValueError, "statistic"),
    ({"solver": "als"}, ValueError, "solver"),
    ({"whiten": "yes"}, ValueError, "whiten must be one of True, 'unit-variance', False"),
    ({"whiten": 1.0}, ValueError, "'feature-scaling'.*got 1.0"),
    ({"n_components": 0}, ValueError, "n_components"),
    ({"n_components": 4}, ValueError, "n_components=4 exceeds the rank 3"),
    ({"n_components": 4, "whiten": False}, ValueError, "n_components=4 exceeds n_features"),
    ({"n_components": 4, "whiten": "feature-scaling"}, ValueError,
     "n_components=4 exceeds n_features=3; with whiten='feature-scaling'"),
    ({"solver_options": "fast"}, TypeError, "solver_options must be a dict"),
    ({"solver_options": {"rank": 2}}, ValueError, "n_components and random_state instead"),
    ({"solver_options": {"n_restarts": 2}}, ValueError, r"unknown keys \['n_restarts'\]"),
    ({"solver_options": {"width": 0}}, ValueError, "width"),
    ({"random_state": "x"}, TypeError, "random_state"),
])
def test_bad_parameters_are_reported_at_fit(params, error, match):
    X = np.random.RandomState(6).uniform(size=(50, 3))
    with pytest.raises(error, match=match):
        MomentDecomposition(**params).fit(X)


def test_constant_data_is_rejected():
    with pytest.raises(ValueError, match="zero variance"):
        MomentDecomposition().fit(np.ones((10, 3)))
