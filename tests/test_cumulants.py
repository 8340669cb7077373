"""The sample cumulant operator against its dense definition and the ICA model."""

import numpy as np
import pytest

from tensorly_gfdeflate.targets.cumulants import SampleCumulants
from tensorly_gfdeflate.targets.symmetric import DenseOperator, SampleMoments


def _mixed_sources(n, random_state):
    """Unit-variance, zero-mean sources with known cumulants, and a random mixing."""
    rng = np.random.RandomState(random_state)
    sources = np.c_[
        np.sign(rng.randn(n)),  # skewness 0, excess kurtosis -2
        ((rng.uniform(size=n) < 0.2) - 0.2) / 0.4,  # skewness 1.5, excess kurtosis 0.25
        rng.uniform(-np.sqrt(3), np.sqrt(3), n),  # skewness 0, excess kurtosis -1.2
    ]
    mixing = rng.randn(3, 3)
    return sources @ mixing.T + 5.0, mixing, {3: [0.0, 1.5, 0.0], 4: [-2.0, 0.25, -1.2]}


@pytest.mark.parametrize("order", [3, 4])
def test_contraction_and_norm_match_dense_cumulant(order):
    X, _, _ = _mixed_sources(300, 0)
    operator = SampleCumulants(X, order)
    dense = DenseOperator(operator.to_dense())
    V = np.random.RandomState(1).randn(3, 5)
    np.testing.assert_allclose(operator.contract(V), dense.contract(V), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(operator.norm_sq, dense.norm_sq, rtol=1e-10)


def test_dense_cumulant_is_the_textbook_definition():
    X, _, _ = _mixed_sources(200, 2)
    Y = X - X.mean(axis=0)
    C = Y.T @ Y / len(Y)
    expected = (np.einsum("si,sj,sk,sl->ijkl", Y, Y, Y, Y) / len(Y)
                - np.einsum("ij,kl->ijkl", C, C) - np.einsum("ik,jl->ijkl", C, C)
                - np.einsum("il,jk->ijkl", C, C))
    np.testing.assert_allclose(SampleCumulants(X, 4).to_dense(), expected, atol=1e-10)


def test_whitened_fourth_cumulant_is_moment_minus_three_norm_squared():
    X, _, _ = _mixed_sources(500, 3)
    Y = X - X.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(Y.T @ Y / len(Y))
    Z = Y @ eigenvectors / np.sqrt(eigenvalues)
    V = np.random.RandomState(4).randn(3, 4)
    expected = SampleMoments(Z, 4).contract(V) - 3.0 * np.sum(V**2, axis=0) * V
    np.testing.assert_allclose(SampleCumulants(Z, 4).contract(V), expected, atol=1e-10)


@pytest.mark.parametrize("order", [3, 4])
def test_cumulant_of_a_mixture_has_the_sources_cumulants_along_the_unmixing(order):
    X, mixing, cumulants = _mixed_sources(100000, 5)
    operator = SampleCumulants(X, order)
    # K(w, ..., w) with w the rows of inv(A) picks out kappa_i exactly.
    unmixing = np.linalg.inv(mixing)
    values = operator.evaluate(unmixing.T)
    np.testing.assert_allclose(values, cumulants[order], atol=0.05)


@pytest.mark.parametrize("order", [3, 4])
def test_cumulant_scales_as_the_data_to_the_order(order):
    X, _, _ = _mixed_sources(100, 6)
    V = np.random.RandomState(7).randn(3, 2)
    base, scaled = SampleCumulants(X, order), SampleCumulants(2.0 * X, order)
    np.testing.assert_allclose(scaled.contract(V), 2.0**order * base.contract(V), rtol=1e-12)
    np.testing.assert_allclose(scaled.norm_sq, 4.0**order * base.norm_sq, rtol=1e-12)


@pytest.mark.parametrize("order", [3, 4])
def test_many_samples_of_few_features_give_the_exact_dense_cumulant(order):
    # n > d^(l-1): the dense cumulant is formed once, and its norm is exact.
    X, _, _ = _mixed_sources(20000, 8)
    operator = SampleCumulants(X, order)
    dense = operator.to_dense()
    assert not operator.norm_is_estimate
    assert operator.norm_sq == pytest.approx(float(np.sum(dense**2)), rel=1e-12)
    V = np.random.RandomState(9).randn(3, 4)
    np.testing.assert_allclose(operator.contract(V), DenseOperator(dense).contract(V),
                               rtol=1e-10, atol=1e-12)


def test_estimated_norm_is_flagged_and_close_to_exact():
    # n > 4096 samples but n <= d^3: no dense cumulant, the norm is a subsample estimate.
    rng = np.random.RandomState(8)
    n, d = 5000, 18
    Z = np.sign(rng.randn(n, d)) @ np.linalg.qr(rng.randn(d, d))[0]
    operator = SampleCumulants(Z, 4)
    assert operator.norm_is_estimate
    # The exact norm by the kernel sum of the Notes, over blocks of the Gram matrix.
    Y = Z - Z.mean(axis=0)
    C = Y.T @ Y / n
    C2 = C @ C
    gaussian_sq = 3.0 * np.trace(C2) ** 2 + 6.0 * np.sum(C2 * C2)
    gram_sum = sum(np.sum((Y[i:i + 1000] @ Y.T) ** 4) for i in range(0, n, 1000))
    quad = np.einsum("si,ij,sj->s", Y, C, Y)
    exact = gram_sum / n**2 - 6.0 * np.mean(quad**2) + gaussian_sq
    assert operator.norm_sq == pytest.approx(exact, rel=0.05)
    assert operator.norm_sq == SampleCumulants(Z, 4).norm_sq  # deterministic


@pytest.mark.parametrize("order", [2, 5, 3.0, True, "4"])
def test_unsupported_order_is_rejected(order):
    with pytest.raises((ValueError, TypeError), match="order must be 3 or 4"):
        SampleCumulants(np.ones((5, 2)), order)
