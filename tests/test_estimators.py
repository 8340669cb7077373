"""GradientFlowCP and PowerDeflationCP: the solvers behind TensorLy's and scikit-learn's APIs."""

import inspect
import pickle
import warnings

import numpy as np
import pytest
import tensorly as tl
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.utils import estimator_checks
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate import (
    FlowTrace,
    PowerTrace,
    SampleMoments,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
    relative_error,
)
from tensorly_gfdeflate.estimators.general import GradientFlowParafac
from tensorly_gfdeflate.estimators.symmetric import GradientFlowCP, PowerDeflationCP


@pytest.fixture(scope="module")
def truth():
    return random_symmetric_cp(6, 3, 3, random_state=0)


@pytest.fixture(scope="module")
def dense(truth):
    return tl.cp_to_tensor(truth)


ESTIMATORS = [
    (GradientFlowCP, gradient_flow_cp, {}),
    (PowerDeflationCP, power_deflation_cp, {"rank": 3}),
]
# Estimator-only parameters, beyond the function's keywords.
EXTRA = {GradientFlowCP: {"warm_start": False}, PowerDeflationCP: {}}


@pytest.mark.parametrize("estimator_class, function, required", ESTIMATORS)
def test_parameters_are_the_functions_keywords_with_the_same_defaults(
        estimator_class, function, required):
    function_params = {
        name: p.default for name, p in inspect.signature(function).parameters.items()
        if name not in ("tensor", "return_trace")
    }
    estimator_params = {
        name: p.default for name, p in inspect.signature(estimator_class).parameters.items()
    }
    function_params.update(EXTRA[estimator_class])
    assert estimator_params == function_params
    assert estimator_class(**required).get_params() == {**function_params, **required}


@pytest.mark.parametrize("estimator_class, function, required", ESTIMATORS)
def test_fit_transform_is_the_functions_decomposition(estimator_class, function, required, dense):
    estimator = estimator_class(**required, random_state=3)
    cp = estimator.fit_transform(dense)
    expected = function(dense, **required, random_state=3)
    assert isinstance(cp, CPTensor)
    np.testing.assert_array_equal(cp.weights, expected.weights)
    np.testing.assert_array_equal(cp.factors[0], expected.factors[0])
    assert estimator.decomposition_ is cp
    assert estimator.weights_ is cp.weights and estimator.factor_ is cp.factors[0]
    assert estimator.factor_.shape == (6, estimator.n_components_)
    assert estimator.n_components_ == 3
    assert estimator.converged_ is True
    assert isinstance(estimator.n_iter_, int) and estimator.n_iter_ > 0


def test_flow_fitted_attributes(truth):
    estimator = GradientFlowCP(random_state=0)
    assert estimator.fit(truth, None) is estimator
    assert isinstance(estimator.trace_, FlowTrace)
    trace = estimator.trace_
    # n_iter_ counts the Euler steps: the flow's (each advancing time by its own,
    # adaptive, step: one snapshot each) and the refinement's.
    flow_steps = estimator.n_iter_ - trace.refine_steps
    assert flow_steps == len(trace.times) - 1
    assert np.all(np.diff(trace.times) > 0)
    assert estimator.score(truth) > -1e-5


def test_power_fitted_attributes(truth):
    estimator = PowerDeflationCP(3, random_state=0).fit(SampleMoments(np.eye(4), 4))
    assert isinstance(estimator.trace_, PowerTrace)
    assert estimator.n_iter_ == int(estimator.trace_.n_iter.sum())
    # M_4 of the rows of I_4 is (1/4) sum_i e_i^(x)4: weights 1/4.
    np.testing.assert_allclose(estimator.weights_, [0.25] * 3, rtol=1e-8)


def test_converged_is_false_when_the_solver_runs_out_of_budget(dense):
    with pytest.warns(ConvergenceWarning, match="max_time"):
        flow = GradientFlowCP(max_time=5.0, random_state=0).fit(dense)
    assert flow.converged_ is False
    assert flow.trace_.stop_reason == "max_time"
    power = PowerDeflationCP(3, n_iter_max=1, random_state=0).fit(dense)
    assert power.converged_ is False


@pytest.mark.parametrize("estimator", [GradientFlowCP(regularization=0.05, random_state=0),
                                       PowerDeflationCP(3, random_state=0)])
def test_score_is_minus_the_relative_error(estimator, truth, dense):
    noisy = dense + 0.01 * np.random.RandomState(1).randn(6, 6, 6)
    noisy = sum(np.transpose(noisy, axes) for axes in
                [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]) / 6
    estimator.fit(noisy)
    assert estimator.score(dense) == pytest.approx(
        -relative_error(dense, estimator.decomposition_))
    assert estimator.score(truth) == pytest.approx(estimator.score(dense), rel=1e-6)
    assert -0.1 < estimator.score(dense) < -1e-4  # fitted the noise too: not exact


def test_score_rejects_a_tensor_of_another_shape(dense):
    estimator = PowerDeflationCP(2, random_state=0).fit(dense)
    with pytest.raises(ValueError, match=r"X has shape \(5, 5, 5\).*fitted on a tensor of shape"):
        estimator.score(tl.cp_to_tensor(random_symmetric_cp(5, 2, 3, random_state=0)))
    with pytest.raises(NotFittedError):
        PowerDeflationCP(2).score(dense)


def test_grid_search_on_one_tensor_with_the_whole_tensor_split(dense):
    idx = np.arange(dense.shape[0])
    # The idiom: indexing the tensor with idx along axis 0 gives the whole tensor.
    np.testing.assert_array_equal(dense[idx], dense)
    search = GridSearchCV(GradientFlowCP(random_state=0),
                          {"regularization": [1e-3, 0.5]}, cv=[(idx, idx)])
    search.fit(dense)
    # lambda = 0.5 cannot fit components of weight below 0.25 (relative), lambda = 1e-3 fits all.
    assert search.best_params_ == {"regularization": 1e-3}
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] > -1e-5 and scores[1] < -1e-2
    assert search.best_estimator_.n_components_ == 3


def test_grid_search_over_the_power_methods_rank(dense):
    idx = np.arange(dense.shape[0])
    search = GridSearchCV(PowerDeflationCP(1, random_state=0), {"rank": [1, 2, 3]},
                          cv=[(idx, idx)]).fit(dense)
    assert search.best_params_ == {"rank": 3}
    assert np.all(np.diff(search.cv_results_["mean_test_score"]) > 0)


@pytest.mark.parametrize("estimator", [GradientFlowCP(width=4, random_state=0),
                                       PowerDeflationCP(3, random_state=0)])
def test_clone_and_pickle(estimator, dense):
    fitted = clone(estimator).fit(dense)
    copy = clone(fitted)
    assert copy.get_params() == estimator.get_params()
    assert not hasattr(copy, "decomposition_")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.weights_, fitted.weights_)
    assert restored.score(dense) == fitted.score(dense)
    # Same seed, same result, fitted twice.
    np.testing.assert_array_equal(clone(estimator).fit(dense).factor_, fitted.factor_)


def test_repr_shows_the_changed_parameters():
    assert repr(GradientFlowCP()) == "GradientFlowCP()"
    assert repr(GradientFlowCP(3, variant="paper")) == "GradientFlowCP(rank=3, variant='paper')"
    assert repr(PowerDeflationCP(4, n_restarts=3)) == "PowerDeflationCP(n_restarts=3, rank=4)"


def test_set_params_then_fit_uses_the_new_values(dense):
    estimator = GradientFlowCP(random_state=0).set_params(rank=1, width=6)
    assert estimator.fit(dense).n_components_ == 1
    np.testing.assert_allclose(estimator.weights_, [1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="Invalid parameter 'ranks'"):
        estimator.set_params(ranks=2)


PROTOCOL_CHECKS = [
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
    estimator_checks.check_estimators_unfitted,
    estimator_checks.check_valid_tag_types,
]


@pytest.mark.parametrize("check", PROTOCOL_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("estimator", [GradientFlowCP(), PowerDeflationCP(2),
                                       GradientFlowParafac()],
                         ids=["GradientFlowCP", "PowerDeflationCP", "GradientFlowParafac"])
def test_scikit_learn_protocol_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator, name, error", [
    (GradientFlowCP(rank=0), "rank", ValueError),
    (GradientFlowCP(width=0), "width", ValueError),
    (GradientFlowCP(width=2.5), "width", TypeError),
    (GradientFlowCP(variant="fast"), "variant", ValueError),
    (GradientFlowCP(regularization=-1.0), "regularization", ValueError),
    (GradientFlowCP(step_size=0.0), "step_size", ValueError),
    (GradientFlowCP(init_scale=float("nan")), "init_scale", ValueError),
    (GradientFlowCP(signs="negative"), "signs", ValueError),
    (GradientFlowCP(random_state="seed"), "random_state", TypeError),
    (GradientFlowCP(callback=3), "callback", TypeError),
    (PowerDeflationCP(0), "rank", ValueError),
    (PowerDeflationCP(None), "rank", TypeError),
    (PowerDeflationCP(2, n_restarts=0), "n_restarts", ValueError),
    (PowerDeflationCP(2, n_iter_max=1.5), "n_iter_max", TypeError),
    (PowerDeflationCP(2, tol=-1.0), "tol", ValueError),
])
def test_bad_parameters_are_reported_at_fit_by_name(estimator, name, error, dense):
    with pytest.raises(error, match=name):
        estimator.fit(dense)


def test_bad_tensor_is_reported_at_fit(dense):
    asymmetric = np.array(dense)
    asymmetric[0, 1, 2] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        GradientFlowCP().fit(asymmetric)
    with pytest.raises(ValueError, match="cubical"):
        PowerDeflationCP(2).fit(np.ones((3, 4)))
