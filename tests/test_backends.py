"""The solvers and operators under tensorly's pytorch backend.

Selected in CI with ``pytest -m backend``. Every test runs with the backend set
to pytorch by the ``torch_backend`` fixture, which restores numpy afterwards.
"""

import itertools

import numpy as np
import pytest
import tensorly as tl

from tensorly_gfdeflate import (
    SampleMoments,
    gradient_flow_cp,
    gradient_flow_parafac,
    power_deflation_cp,
    random_cp,
    random_symmetric_cp,
)
from tensorly_gfdeflate.check.measures import components_recovered, relative_error
from tensorly_gfdeflate.models.symmetric import flow_point
from tensorly_gfdeflate.targets.symmetric import CPOperator, DenseOperator

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.backend


@pytest.fixture
def torch_backend():
    """Pytorch backend on one thread (tiny problems; threads only contend), then numpy again."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tl.set_backend("pytorch")
    try:
        yield
    finally:
        tl.set_backend("numpy")
        torch.set_num_threads(threads)


def _symmetric_array(dim, order, seed):
    """A dense symmetric numpy array: the sum of a Gaussian array over all mode permutations."""
    draw = np.random.RandomState(seed).standard_normal((dim,) * order)
    return sum(draw.transpose(p) for p in itertools.permutations(range(order)))


def _contract_reference(array, V):
    """``T(v^{l-1}, I)`` column by column with numpy's einsum, the slow obvious way."""
    order = array.ndim
    columns = []
    for v in V.T:
        operands = [array, list(range(order))]
        for mode in range(1, order):
            operands += [v, [mode]]
        columns.append(np.einsum(*operands, [0]))
    return np.stack(columns, axis=1)


def _assert_torch(tensor, dtype):
    assert isinstance(tensor, torch.Tensor)
    assert tensor.dtype == dtype
    assert tensor.device.type == "cpu"


@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_dense_contraction_matches_einsum(torch_backend, order):
    array = _symmetric_array(5, order, seed=order)
    V = np.random.RandomState(0).standard_normal((5, 3))
    result = DenseOperator(tl.tensor(array)).contract(tl.tensor(V))
    _assert_torch(result, torch.float64)
    assert tuple(result.shape) == (5, 3)
    np.testing.assert_allclose(tl.to_numpy(result), _contract_reference(array, V), rtol=1e-10)


@pytest.mark.parametrize("order", [3, 4])
def test_structured_contractions_match_their_dense_form(torch_backend, order):
    rng = np.random.RandomState(order)
    V = tl.tensor(rng.standard_normal((6, 4)))
    moments = SampleMoments(tl.tensor(rng.standard_normal((50, 6))), order)
    cp_op = CPOperator(random_symmetric_cp(6, 3, order, orthogonal=False, random_state=1))
    for operator in (moments, cp_op):
        result = operator.contract(V)
        _assert_torch(result, torch.float64)
        expected = DenseOperator(operator.to_dense()).contract(V)
        np.testing.assert_allclose(tl.to_numpy(result), tl.to_numpy(expected), rtol=1e-9)


@pytest.mark.parametrize("order", [3, 4])
def test_flow_point_matches_numpy_backend(torch_backend, order):
    array = _symmetric_array(5, order, seed=10 + order)
    W = np.random.RandomState(1).standard_normal((5, 4))
    signs = np.array([1.0, -1.0, 1.0, -1.0]) if order % 2 == 0 else np.ones(4)
    point = flow_point(DenseOperator(tl.tensor(array)), tl.tensor(W), tl.tensor(signs), 0.01)
    _assert_torch(point.gradient, torch.float64)
    with tl.backend_context("numpy"):
        expected = flow_point(DenseOperator(array), W, signs, 0.01)
    np.testing.assert_allclose(tl.to_numpy(point.gradient), expected.gradient, rtol=1e-10)
    assert point.loss == pytest.approx(expected.loss, rel=1e-12)
    assert point.residual == pytest.approx(expected.residual, rel=1e-12)


@pytest.mark.parametrize("order", [3, 4])
def test_flow_recovers_every_component_on_torch(torch_backend, order):
    truth = random_symmetric_cp(8, 3, order, random_state=order)
    tensor = tl.cp_to_tensor(truth)
    cp = gradient_flow_cp(tensor, 3, random_state=0)
    _assert_torch(cp.weights, torch.float64)
    _assert_torch(cp.factors[0], torch.float64)
    assert components_recovered(truth, cp, weight_rtol=0.02) == 3
    assert relative_error(tensor, cp) <= 1e-5


def test_flow_on_torch_matches_numpy_for_the_same_seed(torch_backend):
    truth = random_symmetric_cp(8, 3, 4, random_state=5)
    cp = gradient_flow_cp(tl.cp_to_tensor(truth), 3, random_state=7)
    with tl.backend_context("numpy"):
        truth_np = random_symmetric_cp(8, 3, 4, random_state=5)
        expected = gradient_flow_cp(tl.cp_to_tensor(truth_np), 3, random_state=7)
    np.testing.assert_allclose(tl.to_numpy(cp.weights), expected.weights, rtol=1e-6)
    np.testing.assert_allclose(
        np.abs(tl.to_numpy(cp.factors[0])), np.abs(expected.factors[0]), atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_general_flow_on_torch_is_exact_and_matches_numpy(torch_backend, masked):
    # The general flow's fast step, its exact polish and its masked least squares
    # on torch tensors: the same fit as numpy, to rounding.
    with tl.backend_context("numpy"):
        array = tl.cp_to_tensor(random_cp((8, 9, 10), 3, random_state=0))
        mask = np.random.RandomState(1).random_sample(array.shape) < 0.5 if masked else None
        expected = gradient_flow_parafac(array, mask=mask, random_state=0)
    tensor = torch.tensor(array)
    cp = gradient_flow_parafac(tensor, mask=None if mask is None else torch.tensor(mask),
                               random_state=0)
    _assert_torch(cp.weights, torch.float64)
    assert relative_error(tensor, cp) <= 1e-10
    np.testing.assert_allclose(tl.to_numpy(cp.weights), expected.weights, rtol=1e-8)


@pytest.mark.parametrize("order", [3, 4])
def test_power_deflation_on_torch(torch_backend, order):
    truth = random_symmetric_cp(8, 4, order, random_state=order)
    tensor = tl.cp_to_tensor(truth)
    cp = power_deflation_cp(tensor, 4, random_state=0)
    _assert_torch(cp.weights, torch.float64)
    _assert_torch(cp.factors[0], torch.float64)
    assert relative_error(tensor, cp) <= 1e-8
    assert components_recovered(truth, cp) == 4


@pytest.mark.parametrize("solver", ["flow", "power"])
def test_float32_input_gives_float32_results(torch_backend, solver):
    truth = random_symmetric_cp(8, 3, 3, random_state=2)
    tensor = tl.cp_to_tensor(truth).to(torch.float32)
    if solver == "flow":
        cp = gradient_flow_cp(tensor, 3, random_state=0)
    else:
        cp = power_deflation_cp(tensor, 3, random_state=0)
    _assert_torch(cp.weights, torch.float32)
    _assert_torch(cp.factors[0], torch.float32)
    assert np.all(np.isfinite(tl.to_numpy(cp.factors[0])))
    assert components_recovered(truth, cp, weight_rtol=0.02) == 3
    assert relative_error(tensor, cp) <= 1e-4


def test_structured_targets_on_torch(torch_backend):
    truth = random_symmetric_cp(10, 3, 3, weights=[2.0, 1.5, 1.0], random_state=3)
    for solver in (gradient_flow_cp, power_deflation_cp):
        cp = solver(truth, 3, random_state=0)
        _assert_torch(cp.weights, torch.float64)
        assert components_recovered(truth, cp, weight_rtol=0.02) == 3
    # Orthonormal mixing of skewed independent sources: the raw third moment
    # is sum_i skew_i a_i^(x)3 up to sampling noise.
    rng = np.random.RandomState(0)
    shapes = np.array([1.0, 2.0, 4.0])
    sources = (rng.gamma(shapes, 1.0, size=(20000, 3)) - shapes) / np.sqrt(shapes)
    mixing = tl.to_numpy(truth.factors[0])
    moments = SampleMoments(tl.tensor(sources @ mixing.T), 3)
    population = (tl.tensor(2 / np.sqrt(shapes)), [truth.factors[0]] * 3)
    cp = gradient_flow_cp(moments, 3, random_state=0)
    _assert_torch(cp.factors[0], torch.float64)
    assert components_recovered(population, cp, cosine=0.98, weight_rtol=0.1) == 3


def test_non_finite_torch_tensor_is_rejected(torch_backend):
    tensor = tl.cp_to_tensor(random_symmetric_cp(4, 2, 3, random_state=0))
    tensor[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="tensor"):
        gradient_flow_cp(tensor, 2)

