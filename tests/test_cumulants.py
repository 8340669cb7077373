"""The sample cumulant operator against its dense definition and the ICA model."""

import numpy as np
import pytest

from tensorly_gfdeflate.cumulants import SampleCumulants
from tensorly_gfdeflate.operators import DenseOperator, SampleMoments


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


def test_estimated_norm_for_many_samples_is_close_to_exact():
    # Above 4096 samples the off-diagonal part of the norm is a subsample estimate.
    rng = np.random.RandomState(8)
    n = 20000
    sources = np.c_[np.sign(rng.randn(n)), rng.uniform(-np.sqrt(3), np.sqrt(3), n),
                    np.sqrt(2) * np.sin(rng.uniform(0, 2 * np.pi, n))]
    Z = sources @ np.linalg.qr(rng.randn(3, 3))[0]
    operator = SampleCumulants(Z, 4)
    exact = float(np.sum(operator.to_dense() ** 2))
    assert operator.norm_sq == pytest.approx(exact, rel=0.05)
    assert operator.norm_sq == SampleCumulants(Z, 4).norm_sq  # deterministic


@pytest.mark.parametrize("order", [2, 5, 3.0, True, "4"])
def test_unsupported_order_is_rejected(order):
    with pytest.raises((ValueError, TypeError), match="order must be 3 or 4"):
        SampleCumulants(np.ones((5, 2)), order)
