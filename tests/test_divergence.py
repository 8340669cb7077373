"""A step or an iteration that goes wrong is caught: never NaN weights or factors."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
import tensorly as tl

from tensorly_gfdeflate import (
    SampleMoments,
    components_recovered,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
)
from tensorly_gfdeflate.flow.run import MAX_STEP_GROWTH
from tensorly_gfdeflate.flow.settings import DEFAULT_STEP_SIZE


def _finite(cp):
    return bool(np.all(np.isfinite(cp.weights)) and np.all(np.isfinite(cp.factors[0])))


@pytest.mark.parametrize("order", [3, 4])
def test_too_large_step_backs_off_and_still_recovers(order):
    truth = random_symmetric_cp(8, 3, order, random_state=0)
    # The paper variant: the merge variant's seeded polish can finish the fit after the
    # first back-offs (order 3: one step of 25, then the polish), before the step is stable.
    with pytest.warns(RuntimeWarning, match=r"step_size=50 overshoots"):
        cp, trace = gradient_flow_cp(truth, step_size=50.0, variant="paper", random_state=0,
                                     return_trace=True)
    assert _finite(cp)
    assert components_recovered(truth, cp) == 3
    assert trace.step_size <= 0.4
    reductions = [event for event in trace.events if event.kind == "step_reduced"]
    assert len(reductions) == round(np.log2(50.0 / trace.step_size))
    assert np.all(np.isfinite(trace.loss)) and np.all(np.isfinite(trace.norms))


def test_hopeless_step_stops_with_an_error_naming_step_size():
    truth = random_symmetric_cp(8, 3, 3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match=r"lower step_size"):
            gradient_flow_cp(truth, step_size=1e12, random_state=0)


def test_default_adaptive_step_stays_stable_on_an_orthogonal_target():
    # The default step adapts (issue 21): it grows on plateaus up to MAX_STEP_GROWTH
    # default steps; a step that overshoots is undone as step control (2 to 4 of 135 to
    # 170 steps on seeds 0-5), never a divergence back-off, and nothing is warned.
    truth = random_symmetric_cp(10, 4, 4, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cp, trace = gradient_flow_cp(truth, random_state=1, return_trace=True)
    steps = np.diff(trace.times)
    assert not [event for event in trace.events if event.kind == "step_reduced"]
    assert steps.max() <= MAX_STEP_GROWTH * DEFAULT_STEP_SIZE * (1 + 1e-9)
    assert np.median(steps) > DEFAULT_STEP_SIZE
    assert components_recovered(truth, cp) == 4


def test_oscillating_step_is_halved():
    # Order 4 with a dominant unit weight: Euler steps between 0.55 and 0.65 settle
    # into a 2-cycle whose loss never blows up (under a 10x loss ceiling they ended
    # at max_time with 1 of 3 components and no warning).
    truth = random_symmetric_cp(8, 3, 4, random_state=0)
    with pytest.warns(RuntimeWarning, match=r"step_size=0.6 overshoots"):
        cp, trace = gradient_flow_cp(truth, step_size=0.6, random_state=0, return_trace=True)
    assert trace.step_size == 0.3
    assert trace.stop_reason != "max_time"
    assert components_recovered(truth, cp) == 3


@pytest.mark.parametrize("order", [3, 4])
def test_default_step_is_stable_on_a_non_orthogonal_target(order):
    # A step of 0.5 is the stability limit 1 / (2 a) of a fitted unit weight: on these
    # targets it settled into a 2-cycle (3 and 1 of 4 components, max_time).
    truth = random_symmetric_cp(10, 4, order, orthogonal=False, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cp = gradient_flow_cp(truth, random_state=0)
    assert components_recovered(truth, cp) == 4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("form", ["dense", "cp", "moments"])
def test_power_method_on_a_vanishing_residual(form, dtype):
    # rank 4 on an exactly rank-1 (or rank-2 for moments) target: after deflation the
    # residual contracts to exactly zero; iterations must not divide by it.
    e = np.eye(5, dtype=dtype)
    targets = {
        "dense": np.asarray(tl.cp_to_tensor((np.ones(1, dtype), [e[:, :1]] * 3))),
        "cp": (np.ones(1, dtype), [e[:, :1]] * 3),
        "moments": SampleMoments(e[:2], 3),
    }
    fitted = 2 if form == "moments" else 1
    # The filled components are said to be filling, and nothing else is warned about.
    with pytest.warns(ConvergenceWarning, match=f"explained the tensor with {fitted} comp"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            cp, trace = power_deflation_cp(targets[form], 4, random_state=0, return_trace=True)
    assert trace.explained_by == fitted and trace.explained and trace.iterations_converged
    assert _finite(cp)
    np.testing.assert_allclose(np.abs(cp.weights[fitted:]), 0.0, atol=1e-6)
    assert np.all(np.abs(cp.weights[:fitted]) > 0.4)


def test_power_method_with_mixed_sign_weights_stays_finite():
    # Even order with weights of both signs: restarts may oscillate instead of converging.
    truth = random_symmetric_cp(6, 4, 4, weights=[1.0, -0.9, 0.8, -0.7], random_state=2)
    cp = power_deflation_cp(truth, 4, n_iter_max=5, random_state=0)
    assert _finite(cp)
    exact = power_deflation_cp(truth, 4, random_state=0)
    assert components_recovered(truth, exact) == 4


def test_flow_on_a_vanishing_residual_stays_finite():
    e = np.eye(5)
    with pytest.warns(UserWarning, match="fewer than rank=3"):
        cp = gradient_flow_cp((np.ones(1), [e[:, :1]] * 4), 3, random_state=0)
    assert _finite(cp)
    assert tl.shape(cp.weights)[0] == 1
