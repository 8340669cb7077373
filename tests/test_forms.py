"""Dense, CP and sample-moment forms of one tensor: same operator, same decomposition."""

import numpy as np
import pytest
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate import (
    SampleMoments,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
)
from tensorly_gfdeflate.targets.symmetric import as_operator


def three_forms(order, seed):
    """One tensor sum_i a_i u_i^(x)l as a dense array, a CPTensor and SampleMoments.

    The moments of the rows x_i = (n a_i)^(1/l) u_i, i = 1..n, are exactly
    (1/n) sum_i n a_i u_i^(x)l.
    """
    truth = random_symmetric_cp(8, 3, order, weights=[1.0, 0.5, 0.25], random_state=seed)
    weights, (factor, *_) = truth
    rows = ((len(weights) * weights) ** (1.0 / order))[:, None] * factor.T
    return truth, {
        "dense": tl.cp_to_tensor(truth),
        "cp": CPTensor((weights, [factor] * order)),
        "moments": SampleMoments(rows, order),
    }


@pytest.mark.parametrize("order", [3, 4])
def test_operators_agree(order):
    _, forms = three_forms(order, seed=0)
    V = np.random.RandomState(1).standard_normal((8, 5))
    ops = {name: as_operator(form) for name, form in forms.items()}
    reference = ops["dense"]
    for name, op in ops.items():
        np.testing.assert_allclose(op.contract(V), reference.contract(V), rtol=1e-10, err_msg=name)
        np.testing.assert_allclose(op.evaluate(V), reference.evaluate(V), rtol=1e-10)
        assert op.norm_sq == pytest.approx(reference.norm_sq, rel=1e-12)
        np.testing.assert_allclose(op.to_dense(), forms["dense"], atol=1e-14)


def assert_same_decomposition(first, second):
    np.testing.assert_allclose(first.weights, second.weights, rtol=1e-6)
    cosines = np.abs(np.sum(first.factors[0] * second.factors[0], axis=0))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-8)


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("solver", ["flow", "power"])
def test_three_forms_give_the_same_decomposition(order, solver):
    truth, forms = three_forms(order, seed=2)
    if solver == "flow":
        # The moments of these 3 rows are exactly the CP tensor, not an estimate of
        # anything: a fixed regularization keeps the automatic sampling-noise floor
        # (which 3 samples would set above every weight) out of the comparison.
        results = {n: gradient_flow_cp(f, tol=1e-9, regularization=1e-3, random_state=3)
                   for n, f in forms.items()}
    else:
        results = {n: power_deflation_cp(f, 3, random_state=3) for n, f in forms.items()}
    for name in ("cp", "moments"):
        assert_same_decomposition(results["dense"], results[name])
    np.testing.assert_allclose(results["dense"].weights, truth.weights, rtol=1e-6)


def test_structured_forms_never_build_the_dense_array():
    # d = 5000, order 4: the dense array would take 5000^4 * 8 bytes = 5 TB.
    rng = np.random.RandomState(0)
    factor, _ = np.linalg.qr(rng.standard_normal((5000, 3)))
    cp = CPTensor((np.array([1.0, 0.6, 0.3]), [factor] * 4))
    result = power_deflation_cp(cp, 3, random_state=0)
    np.testing.assert_allclose(result.weights, [1.0, 0.6, 0.3], rtol=1e-8)
    moments = SampleMoments(rng.standard_normal((20000, 40)), 3)
    assert moments.contract(np.eye(40)[:, :2]).shape == (40, 2)


@pytest.mark.slow
def test_moment_norm_estimate_is_close_for_many_samples(monkeypatch):
    import tensorly_gfdeflate.targets.symmetric as operators

    rng = np.random.RandomState(0)
    X = rng.exponential(size=(6000, 4)) - 1.0
    assert SampleMoments(X, 3).norm_sq == pytest.approx(
        np.sum(SampleMoments(X, 3).to_dense() ** 2), rel=1e-12)
    monkeypatch.setattr(operators, "_EXACT_NORM_FLOPS", 0)
    monkeypatch.setattr(operators, "_DENSE_CACHE_ENTRIES", 0)
    moments = SampleMoments(X, 3)
    assert moments.norm_is_estimate
    estimate = moments.norm_sq
    exact = float(np.sum((X @ X.T) ** 3)) / 6000**2
    assert estimate == pytest.approx(exact, rel=0.05)
    np.testing.assert_allclose(SampleMoments(2.0 * X, 3).norm_sq, 2.0**6 * estimate, rtol=1e-12)
    # The subsample comes from random_state: the same one gives the same estimate, others
    # other estimates, spread about the exact norm (measured over seeds 0-19 on these
    # heavy-tailed rows: standard deviation 5.5%, worst 13%).
    assert SampleMoments(X, 3, random_state=0).norm_sq == estimate
    others = [SampleMoments(X, 3, random_state=seed).norm_sq for seed in range(1, 6)]
    assert len(set(others)) == 5 and estimate not in others
    assert np.mean(others) == pytest.approx(exact, rel=0.1)


@pytest.mark.parametrize("order", [3, 4])
def test_dense_moment_cache_matches_the_streamed_contraction(order, monkeypatch):
    import tensorly_gfdeflate.targets.symmetric as operators

    X = np.random.RandomState(order).standard_normal((3000, 5))
    V = np.random.RandomState(9).standard_normal((5, 4))
    cached = SampleMoments(X, order)
    assert cached._densify_pays()
    monkeypatch.setattr(operators, "_DENSE_CACHE_ENTRIES", 0)
    streamed = SampleMoments(X, order)
    assert not streamed._densify_pays()
    np.testing.assert_allclose(cached.contract(V), streamed.contract(V), rtol=1e-10)
    assert cached.norm_sq == pytest.approx(streamed.norm_sq, rel=1e-10)
