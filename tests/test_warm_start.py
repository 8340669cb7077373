"""Resumable runs: warm_start continues the flow; fitted estimators survive pickling."""

import pickle
import warnings

import numpy as np
import pytest
import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

from tensorly_gfdeflate import (
    GradientFlowCP,
    GradientFlowParafac,
    PowerDeflationCP,
    random_cp,
    random_symmetric_cp,
)

TENSOR = tl.cp_to_tensor(random_symmetric_cp(10, 4, 4, random_state=0))


def fit_quietly(estimator, tensor=TENSOR):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(tensor)


GENERAL_TENSOR = tl.cp_to_tensor(random_cp((8, 9, 10), 2, weights=[1.0, 0.5], random_state=6))


# Horizons past the first discovery: a flow cut short earlier leaves its refinement slow.
@pytest.mark.parametrize("make, tensor, horizon, step", [
    (GradientFlowCP, TENSOR, 30.0, 0.31),
    (GradientFlowParafac, GENERAL_TENSOR, 60.0, 0.6),
], ids=["symmetric", "general"])
def test_two_warm_fits_of_horizon_t_equal_one_fit_of_2t(make, tensor, horizon, step):
    once = fit_quietly(make(max_time=horizon, random_state=3), tensor)
    twice = make(max_time=horizon / 2, warm_start=True, random_state=3)
    fit_quietly(twice, tensor)
    assert twice.trace_.stop_reason == "max_time"
    fit_quietly(twice, tensor)
    assert twice.trace_.times[0] == 0.0
    assert twice.trace_.times[-1] == pytest.approx(once.trace_.times[-1], abs=step)
    np.testing.assert_allclose(twice.trace_.loss[-1], once.trace_.loss[-1], rtol=1e-8)
    np.testing.assert_allclose(twice.weights_, once.weights_, rtol=1e-8)


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
