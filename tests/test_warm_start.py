"""Resumable runs: warm_start continues the flow; fitted estimators survive pickling."""

import pickle
import warnings

import numpy as np
import pytest
import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

from tensorly_gfdeflate import GradientFlowCP, PowerDeflationCP, random_symmetric_cp

TENSOR = tl.cp_to_tensor(random_symmetric_cp(10, 4, 4, random_state=0))


def fit_quietly(estimator, tensor=TENSOR):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(tensor)


def test_two_warm_fits_of_horizon_t_equal_one_fit_of_2t():
    once = fit_quietly(GradientFlowCP(max_time=30.0, random_state=3))
    twice = GradientFlowCP(max_time=15.0, warm_start=True, random_state=3)
    fit_quietly(twice)
    assert twice.trace_.stop_reason == "max_time"
    fit_quietly(twice)
    assert twice.trace_.times[0] == 0.0
    assert twice.trace_.times[-1] == pytest.approx(once.trace_.times[-1], abs=0.31)
    np.testing.assert_allclose(twice.trace_.loss[-1], once.trace_.loss[-1], rtol=1e-8)
    np.testing.assert_allclose(twice.weights_, once.weights_, rtol=1e-8)
    np.testing.assert_allclose(np.abs(twice.factor_), np.abs(once.factor_), atol=1e-8)


def test_without_warm_start_each_fit_starts_afresh():
    estimator = GradientFlowCP(max_time=15.0, random_state=3)
    first = fit_quietly(estimator).trace_.times[-1]
    assert fit_quietly(estimator).trace_.times[-1] == first


def test_warm_start_on_a_tensor_of_another_shape_is_refused():
    estimator = fit_quietly(GradientFlowCP(max_time=5.0, warm_start=True, random_state=0))
    other = tl.cp_to_tensor(random_symmetric_cp(8, 2, 4, random_state=0))
    with pytest.raises(ValueError, match="warm_start=False"):
        estimator.fit(other)


@pytest.mark.parametrize("estimator", [GradientFlowCP(random_state=0),
                                       PowerDeflationCP(4, random_state=0)])
def test_fitted_estimators_survive_pickling(estimator):
    fitted = fit_quietly(estimator)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.weights_, fitted.weights_)
    np.testing.assert_array_equal(restored.factor_, fitted.factor_)
    assert restored.score(TENSOR) == fitted.score(TENSOR)


def test_a_pickled_warm_run_continues_like_the_original():
    estimator = fit_quietly(GradientFlowCP(max_time=15.0, warm_start=True, random_state=1))
    restored = pickle.loads(pickle.dumps(estimator))
    fit_quietly(estimator)
    fit_quietly(restored)
    np.testing.assert_array_equal(restored.weights_, estimator.weights_)
    np.testing.assert_array_equal(restored.trace_.times, estimator.trace_.times)
