"""The contracts of the core, tested on their own: settings, stop state, model selection, verdict."""

import warnings

import numpy as np
import pytest
import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

from tensorly_gfdeflate import (
    GradientFlowCP,
    GradientFlowParafac,
    MomentDecomposition,
    PowerDeflationCP,
    SingleTopicModel,
    SphericalGaussianMixture,
    gradient_flow_cp,
    random_symmetric_cp,
)
from tensorly_gfdeflate.check.verdict import Shortfall
from tensorly_gfdeflate.flow.run import STUCK_CHECKS, StopState
from tensorly_gfdeflate.flow.selection import Selection
from tensorly_gfdeflate.flow.settings import FlowSettings
from tensorly_gfdeflate.models.symmetric import SymmetricModel
from tensorly_gfdeflate.targets.symmetric import as_operator, normalize

GOOD = dict(rank=None, width=None, variant="merge", regularization="auto", init_scale=1e-3,
            reinit_threshold=1e-2, epoch_time=20.0, epoch_growth=0.5, step_size=None,
            max_time=100.0, tol=1e-6)
TENSOR = tl.cp_to_tensor(random_symmetric_cp(8, 3, 3, random_state=0))


# --- settings -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, error", [
    ("max_time", -5, ValueError), ("regularization", -1, ValueError),
    ("variant", "nonsense", ValueError), ("rank", 0, ValueError), ("width", 2.5, TypeError),
    ("tol", float("nan"), ValueError), ("step_size", 0.0, ValueError),
    ("regularization", "big", ValueError),
])
def test_every_bad_setting_is_refused_naming_it(name, value, error):
    with pytest.raises(error, match=name):
        FlowSettings.validated(**{**GOOD, name: value})


def test_settings_are_frozen_and_auto_is_resolved_into_a_separate_object():
    settings = FlowSettings.validated(**GOOD)
    with pytest.raises(AttributeError):
        settings.regularization = 1.0
    target, _ = normalize(as_operator(TENSOR))
    model = SymmetricModel.for_target(target)
    resolved = settings.resolve("f", target, model, lambda rank: 8, np.random.RandomState(0))
    assert settings.regularization == "auto"
    assert resolved.regularization == pytest.approx(1e-3) and resolved.noise_aware
    assert resolved.width == 8 and resolved.step_size == 0.3 and not resolved.explicit_step


@pytest.mark.parametrize("name, value", [("max_time", -5), ("regularization", -1),
                                         ("variant", "nonsense"), ("warm_start", "yes")])
def test_a_warm_refit_validates_its_parameters(name, value):
    estimator = GradientFlowCP(max_time=20.0, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(TENSOR)
    estimator.set_params(**{name: value})
    with pytest.raises((ValueError, TypeError), match=name):
        estimator.fit(TENSOR)


# --- stop state -----------------------------------------------------------------------------

def test_the_flow_stalls_only_after_enough_checks_in_a_row_without_growth():
    state = StopState()
    for _ in range(STUCK_CHECKS - 1):
        state = state.growth_checked(False)
        assert not state.stalled
    assert state.growth_checked(False).stalled
    assert not state.growth_checked(True).growth_checked(False).stalled


def test_a_refit_is_due_after_the_count_held_for_refit_wait_checks():
    state = StopState()
    for _ in range(state.refit_wait):
        state = state.count_checked(3)
        assert not state.refit_due(None)
    state = state.count_checked(3)
    assert state.refit_due(None) and not state.refit_due(4)
    assert not state.count_checked(4).refit_due(None)  # a new count starts over
    assert not state.refit_tried().refit_due(None)


def test_a_failed_refit_waits_longer_only_on_partly_observed_targets():
    state = StopState()
    assert state.refit_failed(False).refit_wait == state.refit_wait
    assert state.refit_failed(True).refit_wait == 2 * state.refit_wait


def test_the_stop_state_remembers_the_most_components_seen():
    assert StopState().saw(5).saw(2).most_fitted == 5


# --- model selection ------------------------------------------------------------------------

def _selection(tensor):
    target, scale = normalize(as_operator(tensor))
    return Selection(target, SymmetricModel.for_target(target), 0.3, 1e-6, 1e-3, True, 7), scale


def _truth_plus_spurious(extra_weight):
    """The true weights and vectors (normalized) with one spurious small component appended."""
    cp = random_symmetric_cp(8, 2, 3, weights=[1.0, 0.5], orthogonal=True, random_state=1)
    selection, scale = _selection(tl.cp_to_tensor(cp))
    spurious = np.random.RandomState(2).standard_normal((8, 1))
    vectors = np.hstack([cp.factors[0], spurious / np.linalg.norm(spurious)])
    weights = np.concatenate([np.asarray(cp.weights) / scale, [extra_weight]])
    return selection, tl.tensor(weights), tl.tensor(vectors)


def test_a_gap_in_the_weights_is_cut_when_the_prefix_explains_the_tensor():
    selection, weights, vectors = _truth_plus_spurious(1e-3)
    assert selection.prefix_lengths(np.array([0.9, 0.4, 1e-3])) == [2]
    weights_out, _, kept, _ = selection.gap_prefix(weights, vectors)
    assert kept == [0, 1]
    np.testing.assert_allclose(np.sort(tl.to_numpy(weights_out)),
                               np.sort(tl.to_numpy(weights[:2])), rtol=1e-6)


def test_reduce_to_rank_keeps_the_components_that_explain_the_tensor():
    selection, weights, vectors = _truth_plus_spurious(0.05)
    _, _, kept, _ = selection.reduce(weights, vectors, 2)
    assert sorted(kept) == [0, 1]


def test_minimize_merges_a_split_component_and_keeps_every_needed_one():
    selection, weights, vectors = _truth_plus_spurious(0.0)
    # The second component split over two slots on its direction: an exact, longer fit.
    split = tl.tensor(np.array([weights[0], weights[1] / 2, weights[1] / 2]))
    doubled = tl.tensor(np.hstack([vectors[:, :2], vectors[:, 1:2]]))
    assert selection.explains(split, doubled)
    _, _, kept, _ = selection.minimize(split, doubled)
    assert len(kept) == 2 and kept[0] == 0
    _, _, kept, _ = selection.minimize(weights[:2], vectors[:, :2])
    assert kept == [0, 1]


def test_the_check_of_a_selection_is_the_same_every_time_and_follows_its_seed():
    selection, weights, vectors = _truth_plus_spurious(0.05)
    first = selection.check(weights[:1], vectors[:, :1])
    assert first == selection.check(weights[:1], vectors[:, :1])
    assert not first.explained  # the second component is missing


# --- verdict --------------------------------------------------------------------------------

def test_the_verdict_names_what_fell_short_and_the_warning_says_it_once():
    with pytest.warns(ConvergenceWarning) as caught:
        _, trace = gradient_flow_cp(TENSOR, regularization=3.0, random_state=0,
                                    return_trace=True)
    assert len(caught) == 1 and str(caught[0].message) == trace.verdict.message
    assert trace.verdict.shortfalls == (Shortfall.NOTHING_FITTED,)
    assert trace.verdict.n_components == 0
    # Success is the check's: nothing is left above the caller's floor of 3.
    assert trace.verdict.success == trace.verdict.explained


def test_a_clean_fit_has_a_successful_verdict_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, trace = gradient_flow_cp(TENSOR, random_state=0, return_trace=True)
    assert trace.verdict.success and trace.verdict.shortfalls == ()
    assert trace.verdict.status == trace.stop_reason


def _fitted(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X)


def test_every_public_estimator_says_whether_it_converged():
    rng = np.random.RandomState(0)
    sources = np.column_stack([np.sign(rng.standard_normal(2000)), rng.laplace(size=2000)])
    counts = rng.poisson(3.0, size=(200, 12)) + 1
    blobs = np.vstack([rng.standard_normal((100, 4)) + 6 * np.eye(4)[k] for k in range(2)])
    cases = [(GradientFlowCP(random_state=0), TENSOR),
             (PowerDeflationCP(3, random_state=0), TENSOR),
             (GradientFlowParafac(random_state=0), TENSOR),
             (MomentDecomposition(random_state=0), sources @ rng.standard_normal((2, 2))),
             (SingleTopicModel(2, random_state=0), counts),
             (SphericalGaussianMixture(2, random_state=0), blobs)]
    for estimator, X in cases:
        fitted = _fitted(estimator, X)
        assert isinstance(fitted.converged_, bool), type(estimator).__name__
        assert fitted.converged_ == fitted.verdict_.success, type(estimator).__name__


def test_a_model_short_of_components_has_a_failed_verdict_that_says_so():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((500, 3))  # Gaussian: no independent source to find
    with pytest.warns(ConvergenceWarning, match="found"):
        model = MomentDecomposition(random_state=0).fit(X)
    assert model.n_sources_found_ < 3
    assert not model.converged_ and Shortfall.FEWER_THAN_RANK in model.verdict_.shortfalls
    assert model.verdict_.n_components == model.n_sources_found_
