"""The spectral start of partly observed targets: per-mode subspaces and the draws made in them."""

import numpy as np
import pytest
import tensorly as tl

from tensorly_gfdeflate import ObservedEntries
from tensorly_gfdeflate.targets import spectral
from tensorly_gfdeflate.models.general import GeneralModel
from tensorly_gfdeflate.targets.general import MaskedTensor, split_blocks
from tensorly_gfdeflate.targets.spectral import observed_subspaces

SHAPE, RANK, N_OBSERVED = (120, 100, 80), 3, 30_000


def _sampled_cp(seed, shape=SHAPE, rank=RANK, n_observed=N_OBSERVED):
    """Unit factors, observed coordinates and values of a random rank-``rank`` tensor."""
    rng = np.random.RandomState(seed)
    factors = [np.linalg.qr(rng.standard_normal((n, rank)))[0] for n in shape]
    flat = rng.choice(int(np.prod(shape)), size=n_observed, replace=False)
    indices = np.stack(np.unravel_index(flat, shape), axis=1)
    terms = np.ones((n_observed, rank))
    for factor, rows in zip(factors, indices.T):
        terms *= factor[rows]
    return factors, indices, terms @ np.linspace(1.0, 0.5, rank)


def _projector(basis):
    return basis @ basis.T


WEIGHTS = np.linspace(1.0, 0.5, RANK)


@pytest.mark.parametrize("seed", range(3))
def test_subspaces_hold_the_components(seed):
    # 30,000 entries of 960,000 (3%): a uniformly random direction's first contraction
    # is dominated by the sampling here, the unfolding's Gram is not. The weakest
    # component (weight 0.5) is within the noise of this spectrum, yet inside the
    # basis kept (twice the directions above the noise, at least 8).
    factors, indices, values = _sampled_cp(seed)
    for factor, basis in zip(factors, observed_subspaces(indices, values, SHAPE)):
        assert basis is not None and spectral._MIN_DIRECTIONS <= basis.shape[1] <= 2 * RANK + 2
        np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-10)
        captured = np.linalg.norm(basis.T @ factor, axis=0)
        assert np.all(captured[:2] > 0.9) and captured[2] > 0.8


@pytest.mark.parametrize("seed", range(3))
def test_a_residual_has_its_own_spectrum(seed):
    factors, indices, values = _sampled_cp(seed)
    target = ObservedEntries(indices, values, SHAPE)
    strong = np.vstack([factor[:, :2] for factor in factors])
    residual = target.minus(WEIGHTS[:2], strong)
    assert residual.start_subspaces() is not target.start_subspaces()
    for factor, basis in zip(factors, GeneralModel.for_target(residual).subspaces):
        captured = np.linalg.norm(basis.T @ factor, axis=0)
        assert captured[2] > 0.9 and np.all(captured[:2] < 0.5)


def test_no_signal_no_subspace():
    _, indices, values = _sampled_cp(0)
    assert observed_subspaces(indices, np.zeros_like(values), SHAPE) == (None, None, None)


def test_lanczos_path_matches_the_dense_one(monkeypatch):
    _, indices, values = _sampled_cp(1)
    dense = observed_subspaces(indices, values, SHAPE)
    monkeypatch.setattr(spectral, "_DENSE_MODE", 10)
    lanczos = observed_subspaces(indices, values, SHAPE)
    for a, b in zip(dense, lanczos):
        assert a.shape == b.shape
        np.testing.assert_allclose(_projector(a), _projector(b), atol=1e-8)


def test_fibres_beyond_an_int64_index():
    shape = (3, 2**40, 2**40)
    indices = np.array([[0, 5, 7], [1, 5, 7], [2, 6, 7], [0, 6, 7], [1, 2**40 - 1, 0]])
    fibres, count = spectral._fibres(indices, shape, 0)
    assert count == 3
    assert fibres[0] == fibres[1] and fibres[2] == fibres[3]
    assert len({fibres[0], fibres[2], fibres[4]}) == 3


def test_random_draws_alternate_inside_the_subspaces():
    rng = np.random.RandomState(0)
    shape = (30, 20, 10)
    bases = (np.linalg.qr(rng.standard_normal((30, 4)))[0], None,
             np.linalg.qr(rng.standard_normal((10, 2)))[0])
    model = GeneralModel(shape, bases)
    draws = model.random(7, np.random.RandomState(1))
    np.testing.assert_array_equal(draws, model.random(7, np.random.RandomState(1)))
    for block, basis in zip(split_blocks(draws, shape), bases):
        np.testing.assert_allclose(np.linalg.norm(block, axis=0), 1.0)
        if basis is None:
            continue
        outside = np.linalg.norm(block - _projector(basis) @ block, axis=0)
        assert np.all(outside[::2] < 1e-12)
        assert np.all(outside[1::2] > 0.5)


@pytest.mark.parametrize("form", ["mask", "entries"])
def test_the_spectral_start_is_computed_once_per_tensor(form):
    _, indices, values = _sampled_cp(2, shape=(12, 10, 8), n_observed=400)
    if form == "entries":
        target = ObservedEntries(indices, values, (12, 10, 8))
    else:
        dense, mask = np.zeros((12, 10, 8)), np.zeros((12, 10, 8), dtype=bool)
        dense[tuple(indices.T)], mask[tuple(indices.T)] = values, True
        target = MaskedTensor(tl.tensor(dense), mask)
    subspaces = target.start_subspaces()
    assert subspaces is target.start_subspaces()
    assert target.rescaled(2.0).start_subspaces() is subspaces
    model = GeneralModel.for_target(target)
    residual = target.minus(np.ones(2), model.random(2, np.random.RandomState(0)))
    assert residual.start_subspaces() is residual.start_subspaces()
    assert residual.start_subspaces() is not subspaces


def test_a_huge_mode_costs_memory_for_the_observed_fibres_only():
    # Shape (10^5, 10^5, 10^5): numbering every fibre would take a 10^10-long index
    # (74.5 GiB); only the observed ones are numbered. Modes 1 and 2 hold 4 indices
    # each, so entries share fibres and every mode has a spectrum (mode 0 by Lanczos).
    rng = np.random.RandomState(0)
    n, count = 10**5, 3000
    indices = np.column_stack([rng.randint(0, n, count), rng.randint(0, 4, count),
                               rng.randint(0, 4, count)])
    indices = np.unique(indices, axis=0)
    values = 1.0 + 0.1 * rng.standard_normal(len(indices))
    bases = observed_subspaces(indices, values, (n, n, n))
    for basis in bases:
        assert basis is not None and basis.shape[0] == n
        np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-8)


def test_entries_that_share_no_fibre_leave_the_starts_uniform():
    rng = np.random.RandomState(1)
    n = 10**5
    indices = np.unique(rng.randint(0, n, size=(500, 3)), axis=0)
    assert observed_subspaces(indices, rng.standard_normal(len(indices)), (n, n, n)) == (
        None, None, None)
