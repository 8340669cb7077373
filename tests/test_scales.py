"""Extreme scales and float32: the weights scale, the factors do not, nothing overflows.

``c * T`` is solved on ``T`` normalized by a Frobenius norm computed at the
scale of the entries, so for ``c`` a power of two every floating-point
operation of the solver is the same up to an exact power of two:
the result is bit-identical. For other ``c`` the norm differs in the last
bit, and the run follows to rounding.
"""

import functools
import warnings

import numpy as np
import pytest
import tensorly as tl

from tensorly_gfdeflate import (
    SampleMoments,
    components_recovered,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
    relative_error,
)
from tensorly_gfdeflate.targets.symmetric import as_operator, normalize

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TRUTH = random_symmetric_cp(6, 3, 3, random_state=3)
X = np.random.RandomState(0).exponential(size=(40, 4))

SOLVERS = {
    "flow": lambda tensor: gradient_flow_cp(tensor, 3, random_state=0, max_time=300.0),
    "power": lambda tensor: power_deflation_cp(tensor, 3, random_state=0),
}
# Scale equivariance for c not a power of two: the flow converges to a fixed point
# (rounding stays at 1e-12); the power method stops where restarts move by < tol=1e-10,
# so its weights follow to about that.
WEIGHT_RTOL = {"flow": 1e-10, "power": 1e-8}


def _form(form, c):
    """The order-3 target times ``c``, in one of the three forms."""
    if form == "dense":
        return c * np.asarray(tl.cp_to_tensor(TRUTH))
    if form == "cp":
        return (c * np.asarray(TRUTH.weights), TRUTH.factors)
    return SampleMoments(X * np.cbrt(c), 3)


def _moment_scale(c):
    # SampleMoments scales X by cbrt(c): the tensor scales by cbrt(c)^3, c up to rounding.
    return float(np.cbrt(c)) ** 3


def _assert_same_factors(first, second, order, atol):
    first, second = np.asarray(first), np.asarray(second)
    if order % 2 == 0:
        # Even order: v and -v give the same component; the power method's sign can
        # depend on the parity of its iteration count.
        second = second * np.sign(np.sum(first * second, axis=0))
    np.testing.assert_allclose(first, second, atol=atol)


@functools.cache
def _reference(solver, form):
    return SOLVERS[solver](_form(form, 1.0))


@pytest.mark.parametrize("c", [2.0**-600, 2.0**-150, 2.0**150, 2.0**600,
                               1e-300, 1e-150, 1e150, 1e300, 3.0])
@pytest.mark.parametrize("form", ["dense", "cp", "moments"])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_scaling_the_target_scales_the_weights_only(solver, form, c):
    if form == "moments" and c in (2.0**-600, 2.0**600):
        pytest.skip("X would hold 2**(+-200) entries whose cube products overflow")
    reference, scaled = _reference(solver, form), SOLVERS[solver](_form(form, c))
    if np.log2(c).is_integer():
        # cbrt(2**150) = 2**50 exactly: the moment form scales exactly too.
        np.testing.assert_array_equal(np.asarray(scaled.weights),
                                      c * np.asarray(reference.weights))
        np.testing.assert_array_equal(scaled.factors[0], reference.factors[0])
        return
    factor = _moment_scale(c) if form == "moments" else c
    weights = np.asarray(scaled.weights) / factor
    np.testing.assert_allclose(weights, np.asarray(reference.weights), rtol=WEIGHT_RTOL[solver])
    _assert_same_factors(reference.factors[0], scaled.factors[0], 3, atol=1e-7)
    if form != "moments":
        assert components_recovered(TRUTH, (weights, scaled.factors)) == 3


@pytest.mark.parametrize("c", [1e-300, 1e-150, 1e150, 1e300])
@pytest.mark.parametrize("form", ["dense", "cp"])
def test_norm_and_relative_error_do_not_overflow(form, c):
    tensor = _form(form, c)
    _, scale = normalize(as_operator(tensor))
    true_norm = float(np.linalg.norm(np.asarray(tl.cp_to_tensor(TRUTH))))
    np.testing.assert_allclose(scale / c, true_norm, rtol=1e-12)
    estimate = (np.asarray(TRUTH.weights) * c * (1 + 1e-6), TRUTH.factors)
    np.testing.assert_allclose(relative_error(tensor, estimate), 1e-6, rtol=1e-3)


@pytest.mark.parametrize("form", ["dense", "cp", "moments"])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_float32_gives_float32_and_the_float64_answer(solver, form):
    reference = _reference(solver, form)
    tensor = _form(form, 1.0)
    if form == "dense":
        tensor = tensor.astype(np.float32)
    elif form == "cp":
        tensor = (tensor[0].astype(np.float32), [np.asarray(f, np.float32) for f in tensor[1]])
    else:
        tensor = SampleMoments(X.astype(np.float32), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = SOLVERS[solver](tensor)
    assert result.weights.dtype == np.float32 and result.factors[0].dtype == np.float32
    np.testing.assert_allclose(result.weights, reference.weights, rtol=2e-4)
    _assert_same_factors(reference.factors[0], result.factors[0], 3, atol=2e-3)


@pytest.mark.parametrize("c", [1e-20, 1e20])
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_float32_near_its_range_limits(solver, c):
    # |T|^2 of 1e20 * T is 1e40, beyond float32 (3.4e38); 1e-20 * T squares to denormals.
    tensor = (c * np.asarray(tl.cp_to_tensor(TRUTH))).astype(np.float32)
    result = SOLVERS[solver](tensor)
    weights = np.asarray(result.weights, dtype=float) / c
    assert components_recovered(TRUTH, (weights, result.factors)) == 3


def test_float32_flow_does_not_stop_on_a_rounding_residual():
    # The flow's residual |T(W)|^2 - 2 <T(W), T*> + |T*|^2 cancels to noise near
    # sqrt(eps) = 3e-4 in float32; a residual clipped to 0 used to meet tol = 1e-6
    # and stop the flow and its refinement early (final error 2e-4).
    truth = random_symmetric_cp(10, 4, 3, orthogonal=False, random_state=1)
    weights = np.asarray(truth.weights, np.float32)
    factor = np.asarray(truth.factors[0], np.float32)
    tensor = np.asarray(tl.cp_to_tensor((weights, [factor] * 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cp, trace = gradient_flow_cp(tensor, variant="vanilla", width=10, random_state=0,
                                     return_trace=True)
    assert trace.stop_reason != "tolerance"
    assert np.min(trace.residual) >= 0.5 * np.sqrt(np.finfo(np.float32).eps) * (1 - 1e-6)
    assert relative_error(tensor, cp) < 1e-5


@pytest.mark.parametrize("order", [3, 4])
def test_float32_rounding_in_the_loss_is_not_an_overshoot(order):
    # A float32 loss rounds at about 1e-7 of its scale; a "loss rose" test with a 1e-9
    # slack halved the step on rounding alone, down to 2e-5 (600,000 steps for t = 60).
    truth = random_symmetric_cp(10, 4, order, random_state=1)
    tensor = np.asarray(tl.cp_to_tensor(truth)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cp, trace = gradient_flow_cp(tensor, random_state=0, max_time=200.0, return_trace=True)
    assert not [event for event in trace.events if event.kind == "step_reduced"]
    assert components_recovered(truth, cp) == 4


@pytest.mark.parametrize("shape, order", [((5000, 4), 3), ((5000, 26), 4)])
def test_large_sample_moment_norms_scale_exactly(shape, order):
    # Above 4096 rows the norm comes from the dense unfolding (cheap) or from an
    # estimate (n d^l > 2e9): both prescale the rows, so X * 2**k scales the norm by
    # exactly 2**(k l), even where |M|^2 itself would overflow.
    X = np.random.RandomState(5).standard_normal(shape)
    reference = SampleMoments(X, order)
    scaled = SampleMoments(X * 2.0**150, order)
    assert scaled.norm == reference.norm * 2.0 ** (150 * order)
    # |M|^2 = 2**1200 |M_X|^2 at order 4 is beyond float64: inf, not an OverflowError.
    assert scaled.norm_sq == (np.inf if order == 4 else reference.norm_sq * 2.0 ** (300 * order))
    assert reference.norm_is_estimate == (order == 4)
