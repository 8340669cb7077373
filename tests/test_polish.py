"""The fast path of issue 21: the exact polish, the adaptive step, the seeded polish and the cheap check."""

import warnings

import numpy as np
import pytest
import tensorly as tl

from tensorly_gfdeflate import (
    ObservedEntries,
    gradient_flow_cp,
    gradient_flow_parafac,
    random_cp,
    random_symmetric_cp,
    relative_error,
)
from tensorly_gfdeflate.check.probe import below_every_floor, check_fit
from tensorly_gfdeflate.flow.integration import polish
from tensorly_gfdeflate.models.general import GeneralModel, als_polish
from tensorly_gfdeflate.models.symmetric import SymmetricModel
from tensorly_gfdeflate.targets.general import as_general_operator
from tensorly_gfdeflate.targets.symmetric import as_operator, normalize

GENERAL = random_cp((8, 9, 10), 3, random_state=0)
SYMMETRIC = random_symmetric_cp(12, 4, 3, orthogonal=False, random_state=0)


def quiet(solve, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return solve(*args, **kwargs)


@pytest.mark.parametrize("form", ["dense", "cp"])
def test_exact_general_targets_are_fitted_to_rounding(form):
    tensor = tl.cp_to_tensor(GENERAL)
    cp, trace = quiet(gradient_flow_parafac, tensor if form == "dense" else GENERAL,
                      random_state=0, return_trace=True)
    assert tl.shape(cp[0])[0] == 3
    assert relative_error(tensor, cp) <= 1e-10
    assert trace.converged


@pytest.mark.parametrize("form", ["dense", "cp"])
def test_exact_symmetric_targets_are_fitted_to_rounding(form):
    tensor = tl.cp_to_tensor(SYMMETRIC)
    cp = quiet(gradient_flow_cp, tensor if form == "dense" else SYMMETRIC, random_state=0)
    assert tl.shape(cp[0])[0] == 4
    assert relative_error(tensor, cp) <= 1e-10


@pytest.mark.parametrize("form", ["mask", "coordinates"])
def test_completion_of_an_exact_tensor_is_exact_on_held_out_entries(form):
    tensor = tl.cp_to_tensor(GENERAL)
    mask = np.random.RandomState(1).random_sample(tensor.shape) < 0.5
    if form == "mask":
        cp = quiet(gradient_flow_parafac, np.where(mask, tensor, np.nan), mask=mask,
                   random_state=0)
    else:
        indices = np.argwhere(mask)
        entries = ObservedEntries(indices, tensor[mask], tensor.shape)
        cp = quiet(gradient_flow_parafac, entries, random_state=0)
    held = ~mask
    error = (np.linalg.norm(tl.cp_to_tensor(cp)[held] - tensor[held])
             / np.linalg.norm(tensor[held]))
    assert tl.shape(cp[0])[0] == 3
    assert error <= 1e-8


def test_a_least_squares_sweep_never_raises_the_loss():
    target, _ = normalize(as_general_operator(tl.cp_to_tensor(GENERAL)))
    model = GeneralModel(target.shape)
    vectors = model.random(4, np.random.RandomState(2))
    weights = tl.tensor(np.full(4, 0.3))
    losses = [target.minus(weights, vectors).norm_sq]
    for _ in range(20):
        weights, vectors = als_polish(target, weights, vectors, 1)
        losses.append(target.minus(weights, vectors).norm_sq)
    assert np.all(np.diff(losses) <= 1e-12)
    assert np.all(np.isfinite(tl.to_numpy(vectors)))


def test_symmetric_polish_undoes_a_sweep_that_raises_the_loss():
    # From a poor start the symmetric sweep is not a descent method: whatever it
    # returns never has a larger residual than where it started.
    target, _ = normalize(as_operator(tl.cp_to_tensor(SYMMETRIC)))
    model = SymmetricModel(target.dim, target.order)
    vectors = model.random(4, np.random.RandomState(3))
    weights = tl.tensor(np.full(4, 0.5))
    start = target.minus(weights, vectors).norm_sq
    weights, vectors, sweeps, _ = polish(target, model, weights, vectors)
    assert sweeps >= 1
    assert target.minus(weights, vectors).norm_sq <= start
    assert np.all(np.isfinite(tl.to_numpy(weights)))


def test_adaptive_steps_keep_flow_time():
    # The default step adapts; each recorded snapshot advances time by the step taken.
    _, trace = quiet(gradient_flow_cp, SYMMETRIC, random_state=0, return_trace=True)
    steps = np.diff(trace.times)
    assert np.all(steps > 0)
    assert len(set(np.round(steps, 6))) > 1
    assert trace.times[-1] == pytest.approx(steps.sum())


def test_given_step_size_stays_fixed():
    _, trace = quiet(gradient_flow_cp, SYMMETRIC, step_size=0.2, random_state=0,
                     return_trace=True)
    steps = np.diff(trace.times)
    np.testing.assert_allclose(steps, 0.2)


def test_seeded_polish_fits_the_missing_components_at_once():
    tensor = tl.cp_to_tensor(random_cp((20, 25, 30), 5, random_state=0))
    cp, trace = quiet(gradient_flow_parafac, tensor, random_state=0, return_trace=True)
    polished = [event for event in trace.events if event.kind == "polish"]
    assert polished and trace.converged
    assert tl.shape(cp[0])[0] == 5
    assert relative_error(tensor, cp) <= 1e-10
    # The components it placed are discovered at the polish.
    assert np.nanmax(trace.discovery_time) == pytest.approx(polished[0].time)


def test_a_partial_polish_is_followed_at_once_by_one_for_what_is_left():
    # The speed benchmark's general case: the first polish fits 3 of the 5 components;
    # the probe of what is left and a second polish, at the same check, fit the rest.
    rng = np.random.RandomState(0)
    factors = [rng.standard_normal((n, 5)) for n in (20, 25, 30)]
    factors = [factor / np.linalg.norm(factor, axis=0) for factor in factors]
    tensor = tl.cp_to_tensor((np.linspace(1.0, 0.2, 5), factors))
    cp, trace = quiet(gradient_flow_parafac, tensor, random_state=0, return_trace=True)
    times = [event.time for event in trace.events if event.kind == "polish"]
    assert len(times) >= 2 and set(times) == {trace.times[-1]}
    assert tl.shape(cp[0])[0] == 5 and relative_error(tensor, cp) <= 1e-10


def test_no_seeded_polish_without_debiasing():
    # debias=False keeps the regularized flow's point: no polish moves the slots.
    truth = random_symmetric_cp(100, 8, 4, random_state=0)
    kinds = [[event.kind for event in quiet(gradient_flow_cp, truth, 8, debias=debias,
                                             random_state=0, return_trace=True)[1].events]
             for debias in (True, False)]
    assert "polish" in kinds[0]
    assert "polish" not in kinds[1]


def test_a_residual_below_the_floor_is_explained_without_a_probe():
    target, _ = normalize(as_operator(tl.cp_to_tensor(SYMMETRIC)))
    model = SymmetricModel(target.dim, target.order)
    weights = tl.tensor(np.asarray(SYMMETRIC.weights) / tl.norm(tl.cp_to_tensor(SYMMETRIC)))
    vectors = SYMMETRIC.factors[0]
    residual = target.minus(weights, vectors)
    assert below_every_floor(target, residual, weights, 1e-3)
    rng = np.random.RandomState(0)
    state = rng.get_state()[1].copy()
    check = check_fit(target, model, weights, vectors, rng, 1e-3)
    assert check.explained and check.floor == 1e-3
    # No probe ran: the random stream did not move.
    np.testing.assert_array_equal(rng.get_state()[1], state)


def test_a_residual_above_the_floor_is_probed():
    target, _ = normalize(as_operator(tl.cp_to_tensor(SYMMETRIC)))
    model = SymmetricModel(target.dim, target.order)
    scale = tl.norm(tl.cp_to_tensor(SYMMETRIC))
    weights = tl.tensor(np.asarray(SYMMETRIC.weights)[:3] / scale)
    vectors = SYMMETRIC.factors[0][:, :3]
    residual = target.minus(weights, vectors)
    assert not below_every_floor(target, residual, weights, 1e-3)
    check = check_fit(target, model, weights, vectors, np.random.RandomState(0), 1e-3)
    assert not check.explained
