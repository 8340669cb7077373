"""Model selection's shortcuts give the answers of the work they skip (issue 21).

The unfolding bound must never exceed what a shorter fit can reach, the
minimality test is skipped only where that bound rules a shorter fit out, and
remembered checks and refinements are the ones computed.
"""

import numpy as np
import tensorly as tl
from tensorly.decomposition import parafac

import tensorly_gfdeflate.flow.selection as selection_module
from tensorly_gfdeflate.flow.selection import Selection
from tensorly_gfdeflate.models.general import GeneralModel
from tensorly_gfdeflate.targets.general import DenseTensor, MaskedTensor
from tensorly_gfdeflate.targets.symmetric import normalize

SHAPE, RANK = (6, 7, 8), 3


def _cp(seed=0, weights=(1.0, 0.6, 0.3), shape=SHAPE):
    rng = np.random.RandomState(seed)
    factors = [rng.standard_normal((n, RANK)) for n in shape]
    factors = [f / np.linalg.norm(f, axis=0) for f in factors]
    return np.asarray(weights), factors


def _selection(tensor, memo=None):
    target, scale = normalize(DenseTensor(tl.tensor(tensor)))
    return Selection(target, GeneralModel.for_target(target), 0.3, 1e-10, 1e-3, True, 7,
                     memo), scale


def test_the_unfolding_bound_is_below_every_shorter_fit_and_vanishes_at_the_rank():
    tensor = tl.cp_to_tensor(_cp())
    target = DenseTensor(tl.tensor(tensor))
    assert target.rank_miss_bound(RANK) <= 1e-20
    for count in (1, 2):
        fit = parafac(tl.tensor(tensor), count, init="svd", n_iter_max=500, tol=1e-12)
        miss = float(np.sum((tensor - tl.to_numpy(tl.cp_to_tensor(fit))) ** 2))
        assert 0.0 < target.rank_miss_bound(count) <= miss
    # A rescaled target's bound scales with its square.
    np.testing.assert_allclose(target.rescaled(0.5).rank_miss_bound(2),
                               0.25 * target.rank_miss_bound(2), rtol=1e-12)


def test_a_partly_observed_array_proves_nothing():
    tensor = tl.cp_to_tensor(_cp())
    mask = np.random.RandomState(1).random_sample(SHAPE) < 0.5
    assert MaskedTensor(tl.tensor(tensor), tl.tensor(mask)).rank_miss_bound(1) == 0.0


def test_the_minimality_test_is_skipped_only_when_no_shorter_fit_can_pass():
    weights, factors = _cp()
    selection, scale = _selection(tl.cp_to_tensor((weights, factors)))
    # The exact decomposition: no fit of two components comes near its residual.
    assert selection.no_shorter_fit(RANK, 0.0)
    # Three components explain the tensor exactly: from four, a shorter fit is possible.
    assert not selection.no_shorter_fit(RANK + 1, 0.0)
    # A residual as large as the bound leaves room for a shorter fit.
    assert not selection.no_shorter_fit(RANK, selection.target.rank_miss_bound(RANK - 1))


def test_the_minimized_fit_is_the_one_the_refits_would_return():
    weights, factors = _cp()
    selection, scale = _selection(tl.cp_to_tensor((weights, factors)))
    vectors = tl.tensor(np.vstack(factors))
    found = selection.minimize(tl.tensor(weights / scale), vectors)
    original = Selection.no_shorter_fit
    try:
        Selection.no_shorter_fit = lambda self, count, miss: False
        unskipped = selection.minimize(tl.tensor(weights / scale), vectors)
    finally:
        Selection.no_shorter_fit = original
    assert found[2] == unskipped[2] == list(range(RANK))
    np.testing.assert_array_equal(tl.to_numpy(found[0]), tl.to_numpy(unskipped[0]))
    assert found[3] < unskipped[3]


def test_a_remembered_check_and_refinement_are_the_computed_ones(monkeypatch):
    weights, factors = _cp()
    tensor = tl.cp_to_tensor((weights, factors))
    remembering, scale = _selection(tensor, memo={})
    plain, _ = _selection(tensor)
    start = tl.tensor(np.vstack(factors) + 1e-3 * np.random.RandomState(3).standard_normal(
        (sum(SHAPE), RANK)))
    start_weights = tl.tensor(weights / scale)
    refined = remembering.refine(start_weights, start)
    expected = plain.refine(start_weights, start)
    for mine, theirs in zip(refined[:2], expected[:2]):
        np.testing.assert_array_equal(tl.to_numpy(mine), tl.to_numpy(theirs))
    assert refined[2] == expected[2]
    first = remembering.check(*refined[:2])
    calls = []
    monkeypatch.setattr(selection_module, "check_fit",
                        lambda *args, **kwargs: calls.append(args) or first)
    # Asked again (even through a new Selection sharing the memo): no new check.
    again = Selection(remembering.target, remembering.model, 0.3, 1e-10, 1e-3, True, 7,
                      remembering.memo).check(*refined[:2])
    assert again is first and not calls
    # Other arrays are checked anew.
    remembering.check(start_weights, start)
    assert len(calls) == 1


def _noisy_selection(masked, seed):
    # Observed entries size their noise only when there are enough of them: a larger shape.
    shape = (14, 15, 16) if masked else SHAPE
    weights, factors = _cp(seed, shape=shape)
    rng = np.random.RandomState(seed + 10)
    tensor = tl.cp_to_tensor((weights, factors))
    tensor = tensor + 0.05 * np.linalg.norm(tensor) * rng.standard_normal(shape) / np.sqrt(
        tensor.size)
    operator = DenseTensor(tl.tensor(tensor))
    if masked:
        operator = MaskedTensor(tl.tensor(tensor), tl.tensor(rng.random_sample(shape) < 0.5))
    target, scale = normalize(operator)
    selection = Selection(target, GeneralModel.for_target(target), 0.3, 1e-10, 1e-3, True, 7)
    return selection, tl.tensor(weights / scale), tl.tensor(np.vstack(factors))


def test_the_allowance_bound_is_above_every_allowance_a_check_gives():
    for masked in (False, True):
        for seed in range(3):
            selection, weights, vectors = _noisy_selection(masked, seed)
            weights, vectors, _ = selection.refine(weights, vectors)
            longer = (selection.target.minus(weights, vectors).norm_sq,
                      selection.check(weights, vectors))
            for drop in range(RANK):
                rest = [q for q in range(RANK) if q != drop]
                trial = selection.refine(weights[rest], vectors[:, rest])[:2]
                miss = selection.target.minus(*trial).norm_sq
                allowed = longer[0] + selection.noise_energy(longer[1],
                                                             selection.check(*trial))
                assert allowed <= selection.allowance_bound(longer[0], RANK - 1, miss)
                assert np.isfinite(selection.allowance_bound(longer[0], RANK - 1, miss))
