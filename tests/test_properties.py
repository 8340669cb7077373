"""Properties over random inputs (hypothesis): operators agree, symmetries carry over.

Scale equivariance is tested in test_scales.py, determinism in test_determinism.py.
Each property is checked on a few examples (``max_examples`` small, no
deadline, no example database) so the file runs in seconds.
"""

import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import tensorly as tl
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorly_gfdeflate import (
    SampleMoments,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
)
from tensorly_gfdeflate.targets.symmetric import CPOperator, DenseOperator

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning", "ignore::RuntimeWarning")

FEW = settings(max_examples=25, deadline=None, database=None)
VERY_FEW = settings(max_examples=6, deadline=None, database=None)

SOLVERS = {
    "flow": lambda tensor: gradient_flow_cp(tensor, 2, random_state=0, max_time=300.0),
    "power": lambda tensor: power_deflation_cp(tensor, 2, random_state=0),
}


def _entries(shape):
    return hnp.arrays(np.float64, shape, elements=st.floats(-3, 3, width=64))


@st.composite
def moment_problems(draw):
    """Data ``X``, an order and vectors ``V``: the moment tensor in three forms."""
    order = draw(st.integers(2, 5))
    dim = draw(st.integers(1, 5))
    n = draw(st.integers(2, 7))
    X = draw(_entries((n, dim)))
    V = draw(_entries((dim, draw(st.integers(1, 3)))))
    return order, X, V


def _dense_contract(dense, V):
    """``T(v^{l-1}, I)`` by contracting the last mode l - 1 times, for each column."""
    columns = []
    for v in V.T:
        partial = dense
        for _ in range(dense.ndim - 1):
            partial = partial @ v
        columns.append(partial)
    return np.stack(columns, axis=1)


def _assert_operator_matches(operator, dense, V):
    scale = max(1.0, np.max(np.abs(dense))) * max(1.0, np.max(np.abs(V))) ** dense.ndim
    expected = _dense_contract(dense, V)
    np.testing.assert_allclose(operator.contract(V), expected, rtol=1e-10, atol=1e-11 * scale)
    np.testing.assert_allclose(
        operator.evaluate(V), np.sum(V * expected, axis=0), rtol=1e-10, atol=1e-11 * scale)
    norm_sq = float(np.sum(dense**2))
    np.testing.assert_allclose(operator.norm_sq, norm_sq, rtol=1e-10, atol=1e-20)
    np.testing.assert_allclose(operator.norm, np.sqrt(norm_sq), rtol=1e-10, atol=1e-10)


@FEW
@given(moment_problems())
def test_moment_cp_and_dense_operators_agree(problem):
    order, X, V = problem
    n = X.shape[0]
    # The moment tensor is the CP tensor with weights 1/n and the samples as factors.
    cp = (np.full(n, 1.0 / n), [X.T] * order)
    dense = np.asarray(tl.cp_to_tensor(cp))
    for operator in (SampleMoments(X, order), CPOperator(cp), DenseOperator(dense)):
        np.testing.assert_allclose(operator.to_dense(), dense, rtol=1e-12, atol=1e-12)
        _assert_operator_matches(operator, dense, V)


@FEW
@given(st.integers(2, 5), st.integers(1, 5), st.integers(1, 4), st.data())
def test_signed_cp_operator_matches_its_dense_array(order, dim, rank, data):
    weights = data.draw(_entries((rank,)))
    factor = data.draw(_entries((dim, rank)))
    V = data.draw(_entries((dim, data.draw(st.integers(1, 3)))))
    dense = np.asarray(tl.cp_to_tensor((weights, [factor] * order)))
    _assert_operator_matches(CPOperator((weights, [factor] * order)), dense, V)


def _same_up_to_column_signs(first, second, atol):
    first, second = np.asarray(first), np.asarray(second)
    second = second * np.sign(np.sum(first * second, axis=0))
    np.testing.assert_allclose(first, second, atol=atol)


@VERY_FEW
@given(st.permutations(range(3)), st.sampled_from([3, 4]), st.sampled_from(sorted(SOLVERS)))
def test_permuting_the_input_components_changes_nothing(permutation, order, solver):
    truth = random_symmetric_cp(6, 3, order, random_state=order)
    weights, factor = np.asarray(truth.weights), np.asarray(truth.factors[0])
    reference = SOLVERS[solver]((weights, [factor] * order))
    permuted = SOLVERS[solver]((weights[permutation], [factor[:, permutation]] * order))
    # The sums run in another order, so equal to rounding, not bit for bit.
    np.testing.assert_allclose(permuted.weights, reference.weights, rtol=1e-8)
    _same_up_to_column_signs(reference.factors[0], permuted.factors[0], atol=1e-6)


@VERY_FEW
@given(st.lists(st.booleans(), min_size=3, max_size=3), st.sampled_from([3, 4]),
       st.sampled_from(sorted(SOLVERS)), st.sampled_from(["cp", "dense"]))
def test_sign_flips_of_components_give_the_same_decomposition(flips, order, solver, form):
    # Even order: u -> -u leaves u^(x)l unchanged. Odd order: (-a)(-u)^(x)l = a u^(x)l.
    # Sign flips are exact in floating point, so the runs are identical bit for bit.
    truth = random_symmetric_cp(6, 3, order, random_state=order)
    weights, factor = np.asarray(truth.weights), np.asarray(truth.factors[0])
    sign = np.where(flips, -1.0, 1.0)
    flipped_weights = weights * sign if order % 2 else weights
    flipped = (flipped_weights, [factor * sign] * order)
    original = (weights, [factor] * order)
    if form == "dense":
        flipped = np.asarray(tl.cp_to_tensor(flipped))
        original = np.asarray(tl.cp_to_tensor(original))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference, result = SOLVERS[solver](original), SOLVERS[solver](flipped)
    np.testing.assert_array_equal(result.weights, reference.weights)
    np.testing.assert_array_equal(result.factors[0], reference.factors[0])
