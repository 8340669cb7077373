"""gradient_flow_cp: recovery, the deflation picture, stop rules.

Scale equivariance is tested in test_scales.py, determinism in test_determinism.py.
"""

import warnings

import numpy as np
import pytest
import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

from tensorly_gfdeflate.solvers.symmetric_flow import default_width, paper_width
from tensorly_gfdeflate import (
    components_recovered,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
    relative_error,
)


def dense(cp):
    return tl.cp_to_tensor(cp)


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("width_factor", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_flow_recovers_orthogonal_components(order, width_factor, seed):
    rank = 4
    truth = random_symmetric_cp(12, rank, order, weights=np.geomspace(1, 0.1, rank),
                                random_state=seed)
    cp = gradient_flow_cp(dense(truth), width=width_factor * rank, random_state=seed)
    assert len(cp.weights) == rank
    assert components_recovered(truth, cp, cosine=0.99, weight_rtol=0.02) == rank


def test_vanilla_gets_stuck_where_merge_recovers_everything():
    # The first configuration of the variants table (docs/theory.rst, section 'Variants'): d = 20, r = 10, width 10, order 4, weights 1 .. 0.1.
    # Vanilla puts several components on early directions and stalls; merge frees them.
    truth = random_symmetric_cp(20, 10, 4, random_state=0)
    tensor = dense(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vanilla, trace = gradient_flow_cp(tensor, width=10, variant="vanilla", debias=False,
                                          random_state=0, return_trace=True)
    merge = gradient_flow_cp(tensor, width=10, variant="merge", debias=False, random_state=0)
    assert trace.stop_reason == "stalled"
    assert components_recovered(truth, vanilla) <= 8
    assert components_recovered(truth, merge) == 10


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_flow_fits_non_orthogonal_tensors_where_deflation_cannot(order, seed):
    truth = random_symmetric_cp(20, 5, order, weights=np.linspace(1, 0.2, 5),
                                orthogonal=False, random_state=seed)
    tensor = dense(truth)
    flow = gradient_flow_cp(tensor, random_state=seed)
    power = power_deflation_cp(tensor, 5, random_state=seed)
    assert relative_error(tensor, flow) <= 1e-4
    assert relative_error(tensor, power) >= 1e-2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_larger_weights_are_discovered_first(seed):
    weights = np.array([1.0, 0.5, 0.25, 0.125])
    truth = random_symmetric_cp(10, 4, 4, weights=weights, random_state=seed)
    cp, trace = gradient_flow_cp(dense(truth), random_state=seed, return_trace=True)
    # cp is sorted by weight, so discovery times must increase along it.
    np.testing.assert_allclose(cp.weights, weights, rtol=1e-3)
    assert np.all(np.diff(trace.discovery_time) > 0)


def test_flow_stops_by_itself_before_the_horizon():
    truth = random_symmetric_cp(10, 3, 4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        _, trace = gradient_flow_cp(dense(truth), max_time=1e5, random_state=0,
                                    return_trace=True)
    assert trace.stop_reason in ("tolerance", "nothing_to_fit")
    assert trace.converged
    assert trace.times[-1] < 1e3


def test_flow_reaches_tolerance_on_a_rank_one_tensor():
    truth = random_symmetric_cp(6, 1, 4, random_state=0)
    _, trace = gradient_flow_cp(dense(truth), width=1, variant="vanilla", tol=1e-8,
                                random_state=0, return_trace=True)
    assert trace.stop_reason == "tolerance"
    assert trace.residual[-1] <= 1e-8


def test_vanilla_odd_order_stuck_on_the_wrong_side_stalls():
    # A single component starting with <b, u> < 0 on an odd-order tensor can only
    # shrink while its direction creeps towards the saddle <b, u> = 0: stuck.
    truth = random_symmetric_cp(6, 1, 3, random_state=0)
    with pytest.warns(ConvergenceWarning, match="no component"):
        cp, trace = gradient_flow_cp(dense(truth), width=1, variant="vanilla", random_state=0,
                                     return_trace=True)
    # Nothing fitted is the zero tensor, as one zero-weight component that
    # TensorLy's CP functions accept (a rank-0 CPTensor makes them raise).
    assert tl.to_numpy(cp.weights).tolist() == [0.0]
    assert not np.any(tl.cp_to_tensor(cp)) and tl.cp_to_vec(cp).shape == (6**3,)
    assert trace.stop_reason == "stalled" and not trace.converged
    assert trace.times[-1] < 200


def test_horizon_raises_a_convergence_warning():
    truth = random_symmetric_cp(10, 3, 4, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_time"):
        _, trace = gradient_flow_cp(dense(truth), max_time=5.0, random_state=0,
                                    return_trace=True)
    assert trace.stop_reason == "max_time"
    assert not trace.converged


def test_callback_returning_true_stops_the_flow_with_a_valid_result():
    truth = random_symmetric_cp(10, 3, 4, random_state=0)
    seen = []

    def stop_after_ten_steps(integrator):
        seen.append(integrator.time)
        return len(seen) >= 10

    cp, trace = gradient_flow_cp(dense(truth), callback=stop_after_ten_steps, random_state=0,
                                 return_trace=True)
    assert trace.stop_reason == "callback"
    assert trace.n_steps == 10
    assert np.all(np.isfinite(tl.to_numpy(cp.factors[0])))


def test_diverging_step_size_is_caught_and_never_gives_nan():
    truth = random_symmetric_cp(8, 3, 4, random_state=0)
    with pytest.warns(RuntimeWarning, match="step_size"):
        cp, trace = gradient_flow_cp(dense(truth), step_size=40.0, random_state=0,
                                     return_trace=True)
    assert any(event.kind == "step_reduced" for event in trace.events)
    assert np.all(np.isfinite(cp.weights)) and np.all(np.isfinite(cp.factors[0]))
    assert components_recovered(truth, cp) == 3


def test_mixed_signs_fit_negative_weights_of_even_orders():
    truth = random_symmetric_cp(8, 3, 4, weights=[1.0, -0.6, 0.3], random_state=1)
    cp = gradient_flow_cp(dense(truth), signs="mixed", random_state=1)
    assert components_recovered(truth, cp, weight_rtol=0.02) == 3
    assert np.sum(np.asarray(cp.weights) < 0) == 1


def test_trace_records_the_run():
    truth = random_symmetric_cp(10, 3, 4, random_state=0)
    cp, trace = gradient_flow_cp(dense(truth), random_state=0, return_trace=True)
    n = len(trace.times)
    assert trace.loss.shape == trace.residual.shape == (n,)
    width = default_width(10, None)  # spare slots beyond the dimension
    assert width > 10 and trace.norms.shape == trace.signs.shape == (n, width)
    assert np.all(np.diff(trace.times) > 0)
    assert trace.discovery_time.shape == (3,)
    assert trace.residual[0] == pytest.approx(1.0, abs=1e-3)
    assert trace.final_error == pytest.approx(relative_error(dense(truth), cp))
    assert {event.kind for event in trace.events} <= {"redraw", "merge", "step_reduced"}
    assert any(event.kind == "redraw" for event in trace.events)
    # The slots of each component carry its weight at the end of the flow.
    final_mass = [trace.mass[-1, slots].sum() for slots in trace.component_slots]
    np.testing.assert_allclose(final_mass, cp.weights, rtol=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_a_rank_the_flow_stops_between_epoch_boundaries_once_settled(seed):
    # Boundaries of the default schedule: 20, 50, 95, 162.5, ... A fit of 5 components
    # settles near t = 70 to 115; the checkpoint every epoch_time stops it there
    # instead of idling to t = 162.5.
    truth = random_symmetric_cp(20, 5, 3, random_state=seed)
    cp, trace = gradient_flow_cp(dense(truth), 5, random_state=seed, return_trace=True)
    boundaries = np.cumsum(20.0 * 1.5 ** np.arange(10))
    assert trace.stop_reason == "rank_reached"
    assert trace.times[-1] < 162.5
    assert np.min(np.abs(boundaries - trace.times[-1])) > trace.step_size
    assert components_recovered(truth, cp, weight_rtol=0.02) == 5


def test_paper_width_follows_the_components_and_is_capped():
    assert paper_width(10, 4, None) == 128  # 2 * 10^2, capped
    assert paper_width(10, 3, 3) == 18  # 2 * 3^2
    assert paper_width(300, 4, None) == 128
    assert paper_width(10, 4, 100) == default_width(10, 100) == 200  # never below the default
    assert paper_width(10, 2, None) == default_width(10, None)  # matrices keep the default
    for dim, order, rank in [(3, 3, None), (5, 4, 2), (50, 3, 8), (10, 4, 1)]:
        assert paper_width(dim, order, rank) >= default_width(dim, rank)


def test_only_the_paper_variant_gets_the_paper_width():
    truth = random_symmetric_cp(10, 2, 4, random_state=0)
    for variant, width in [("paper", paper_width(10, 4, None)),
                           ("merge", default_width(10, None)),
                           ("vanilla", default_width(10, None))]:
        _, trace = gradient_flow_cp(truth, variant=variant, random_state=0, return_trace=True)
        assert trace.norms.shape[1] == width


@pytest.mark.parametrize("seed", [1, 2])
def test_paper_variant_recovers_every_orthogonal_component_with_its_default_width(seed):
    # The case: order 4, d = 10, eight orthogonal components, weights 1 to 0.2.
    # With the general default width (18 slots) these seeds found 6 of 8 and ran to
    # max_time: every slot had joined one of the six largest components.
    truth = random_symmetric_cp(10, 8, 4, weights=np.geomspace(1.0, 0.2, 8), random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        cp, trace = gradient_flow_cp(dense(truth), variant="paper", random_state=seed,
                                     return_trace=True)
    assert components_recovered(truth, cp) == 8
    assert trace.converged and trace.stop_reason != "max_time"
