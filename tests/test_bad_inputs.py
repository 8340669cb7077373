"""Every bad input of the catalogue raises early with a message naming the argument and the fix.

The catalogue (``bad_input_catalogue.py``) is also the documentation table
``docs/bad_inputs.rst``; a test here keeps the two identical. The rest checks
what the catalogue cannot: accepted edge cases, and that the caller's arrays
are never modified.
"""

import warnings

import numpy as np
import pytest
import tensorly as tl
from bad_input_catalogue import CASES, DOC_PATH, observed_error, render_table
from sklearn.exceptions import ConvergenceWarning
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate import (
    SampleMoments,
    components_recovered,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_raises_named_error(case):
    # Warnings are errors here: the user gets the message, not noise before it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(case.error, match=case.match):
            case.call()


def test_catalogue_is_large_and_ids_unique():
    assert len(CASES) >= 25
    assert len({case.id for case in CASES}) == len(CASES)


def test_both_solvers_give_the_same_message_for_a_bad_tensor():
    by_code = {}
    for case in CASES:
        if case.code.startswith("solver("):
            by_code.setdefault(case.code, []).append(str(observed_error(case)))
    assert len(by_code) >= 20
    for code, messages in by_code.items():
        assert len(messages) == 2 and messages[0] == messages[1], code


def test_documentation_table_matches_the_catalogue():
    assert DOC_PATH.read_text() == render_table(), (
        "docs/bad_inputs.rst is stale: run `python -m tests.bad_input_catalogue`")


def test_callback_error_keeps_its_type_and_traceback():
    seen = []

    def callback(integrator):
        seen.append(integrator.time)
        if len(seen) == 3:
            raise ZeroDivisionError("from the user")

    truth = random_symmetric_cp(4, 2, 3, random_state=0)
    with pytest.raises(ZeroDivisionError, match="from the user") as info:
        gradient_flow_cp(truth, callback=callback, random_state=0)
    assert any("callback" in note and f"t={seen[-1]:.4g}" in note
               for note in info.value.__notes__)


def test_constant_column_is_accepted_for_raw_moments():
    # Three distinct rows with a constant last feature: the raw third moment is
    # exactly sum_i p_i x_i^(x)3, rank 3 with known (non-orthogonal) components.
    rows = np.array([[2.0, 0, 0, 1], [0, 1.5, 0, 1], [0, 0, 1.0, 1]])
    counts = np.array([10, 6, 4])
    X = np.repeat(rows, counts, axis=0)
    lengths = np.linalg.norm(rows, axis=1)
    truth = CPTensor((counts / counts.sum() * lengths**3, [(rows / lengths[:, None]).T] * 3))
    # These moments are the tensor itself, not an estimate: a fixed regularization
    # instead of the sampling-noise floor that 20 samples would set.
    cp = gradient_flow_cp(SampleMoments(X, 3), regularization=1e-3, random_state=0)
    assert components_recovered(truth, cp) == 3


def test_rank_above_true_rank_gives_zero_weights_not_nan():
    truth = random_symmetric_cp(5, 2, 4, random_state=0)
    cp = power_deflation_cp(truth, 4, random_state=0)
    assert np.all(np.isfinite(cp.weights)) and np.all(np.isfinite(cp.factors[0]))
    np.testing.assert_allclose(cp.weights[2:], 0.0, atol=1e-7)
    assert components_recovered(truth, cp) == 2
    with pytest.warns(ConvergenceWarning, match="fewer than rank=4"):
        flow = gradient_flow_cp(truth, 4, random_state=0)
    assert components_recovered(truth, flow) == 2


def _snapshot(value):
    return [np.array(a, copy=True) for a in _arrays(value)]


def _arrays(value):
    if isinstance(value, SampleMoments):
        return [value.X]
    if isinstance(value, tuple):
        return [value[0], *value[1]]
    return [value]


def _inputs():
    truth = random_symmetric_cp(5, 3, 3, random_state=1)
    weights, factor = np.array(truth.weights), np.array(truth.factors[0])
    dense = np.array(tl.cp_to_tensor(truth))
    X = np.random.RandomState(2).standard_normal((50, 5))
    return {
        "dense": dense,
        "cp": (weights, [factor, factor.copy(), factor.copy()]),
        "moments": SampleMoments(X, 3),
    }


@pytest.mark.parametrize("solver", ["flow", "power"])
@pytest.mark.parametrize("form", ["dense", "cp", "moments"])
def test_inputs_are_never_modified(form, solver):
    value = _inputs()[form]
    before = _snapshot(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if solver == "flow":
            gradient_flow_cp(value, 3, random_state=0, max_time=200.0)
        else:
            power_deflation_cp(value, 3, random_state=0)
    for old, new in zip(before, _arrays(value)):
        np.testing.assert_array_equal(old, new)


def test_moments_do_not_modify_the_data_matrix():
    X = np.random.RandomState(3).standard_normal((30, 4))
    before = X.copy()
    moments = SampleMoments(X, 4)
    moments.to_dense()
    moments.contract(np.eye(4))
    np.testing.assert_array_equal(X, before)
