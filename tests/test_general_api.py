"""The general (non-symmetric) case through the public API: solvers, estimator, compare, CLI, plots.

Bad inputs are in the catalogue (``bad_input_catalogue.py``, general sections);
this file checks what the catalogue cannot: the same message from every entry
point, accepted edge cases, results, the estimator protocol, determinism, the
pytorch backend, and the comparison harness, command line and plots on
general targets.
"""

import json
import pickle
import warnings

import numpy as np
import pytest
import tensorly as tl
from bad_input_catalogue import CASES, observed_error
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate import (
    GradientFlowParafac,
    ObservedEntries,
    compare,
    components_recovered,
    gradient_flow_parafac,
    match_components,
    power_deflation_parafac,
    random_cp,
    random_symmetric_cp,
    relative_error,
)
from tensorly_gfdeflate.cli import main
from tensorly_gfdeflate.comparison import GENERAL_METHODS, METHODS

SHAPE = (6, 7, 8)


def dense(cp):
    return np.asarray(tl.cp_to_tensor(cp))


def observed_mask(shape, fraction, seed):
    return np.random.RandomState(seed).rand(*shape) < fraction


def entries_of(tensor, mask):
    return ObservedEntries(np.argwhere(mask), tensor[mask], tensor.shape)


def heldout_error(tensor, cp, mask):
    """Relative error on the entries where ``mask`` is False, computed densely."""
    gap = (tensor - dense(cp))[~mask]
    return np.linalg.norm(gap) / np.linalg.norm(tensor[~mask])


# --- random_cp and the measures ------------------------------------------------------------------

def test_random_cp_has_unit_columns_default_weights_one_and_is_seeded():
    cp = random_cp((4, 5, 6), 3, random_state=0)
    assert [f.shape for f in cp.factors] == [(4, 3), (5, 3), (6, 3)]
    np.testing.assert_array_equal(cp.weights, np.ones(3))
    for factor in cp.factors:
        np.testing.assert_allclose(np.linalg.norm(factor, axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(random_cp((4, 5, 6), 3, random_state=0).factors[2],
                                  cp.factors[2])
    orthogonal = random_cp((4, 5, 6), 3, weights=[3.0, 2.0, 1.0], orthogonal=True,
                           random_state=0)
    for factor in orthogonal.factors:
        np.testing.assert_allclose(factor.T @ factor, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(orthogonal.weights, [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"rank=5 orthogonal .* fit.*min\(shape\)=4"):
        random_cp((4, 5, 6), 5, orthogonal=True)
    with pytest.raises(ValueError, match="shape must be a tuple"):
        random_cp(6, 2)
    with pytest.raises(ValueError, match="weights must be 2 finite numbers"):
        random_cp((4, 5, 6), 2, weights=[1.0])


def test_recovery_folds_signs_of_the_modes_into_the_weight():
    truth = random_cp(SHAPE, 3, weights=[1.0, 0.5, 0.25], random_state=0)
    weights, (a, b, c) = truth
    # Two modes flipped: the same rank-one terms. One flipped: their negatives.
    same = CPTensor((weights[::-1], [-a[:, ::-1], -b[:, ::-1], c[:, ::-1]]))
    negated = CPTensor((weights, [-a, b, c]))
    assert components_recovered(truth, same) == 3
    assert components_recovered(truth, negated) == 0
    assert components_recovered(truth, CPTensor((-weights, [-a, b, c]))) == 3
    index, cosine = match_components(truth, same)
    np.testing.assert_array_equal(index, [2, 1, 0])
    np.testing.assert_allclose(cosine, 1.0)


def test_general_alignment_is_the_product_of_the_mode_cosines():
    truth = random_cp(SHAPE, 1, random_state=1)
    weights, factors = truth
    # Rotate mode 0 by an angle of cosine 0.995: alignment 0.995 >= 0.99, two modes
    # at 0.995 each give 0.990025 > 0.99 and three give 0.985 < 0.99.
    rng = np.random.RandomState(2)

    def tilted(factor):
        other = rng.standard_normal(factor.shape)
        other -= factor * (factor.T @ other)
        other /= np.linalg.norm(other)
        return 0.995 * factor + np.sqrt(1 - 0.995**2) * other

    for n_tilted, expected in [(1, 1), (2, 1), (3, 0)]:
        estimate = CPTensor((weights, [tilted(f) if k < n_tilted else f
                                       for k, f in enumerate(factors)]))
        assert match_components(truth, estimate)[1][0] == pytest.approx(0.995**n_tilted)
        assert components_recovered(truth, estimate) == expected


def test_symmetric_alignment_still_uses_the_one_factor():
    truth = random_symmetric_cp(6, 2, 4, random_state=0)
    weights, factors = truth
    factor = np.array(factors[0])
    factor[:, 0] = 0.995 * factor[:, 0] + np.sqrt(1 - 0.995**2) * factor[:, 1]
    estimate = CPTensor((weights, [factor] * 4))
    assert match_components(truth, estimate)[1][0] == pytest.approx(0.995)


def test_relative_error_on_observed_and_held_out_entries():
    truth = random_cp(SHAPE, 2, random_state=3)
    tensor = dense(truth)
    estimate = CPTensor((np.array([1.0, 0.9]), truth.factors))
    mask = observed_mask(SHAPE, 0.3, 0)
    gap = tensor - dense(estimate)
    expected = np.linalg.norm(gap[mask]) / np.linalg.norm(tensor[mask])
    assert relative_error(tensor, estimate, mask=mask) == pytest.approx(expected, rel=1e-12)
    assert relative_error(entries_of(tensor, mask), estimate) == pytest.approx(expected,
                                                                               rel=1e-12)
    assert relative_error(tensor, estimate, mask=~mask) == pytest.approx(
        heldout_error(tensor, estimate, mask), rel=1e-12)
    # A general CP target is never densified and gives the dense answer.
    assert relative_error(truth, estimate) == pytest.approx(
        np.linalg.norm(gap) / np.linalg.norm(tensor), rel=1e-8)


# --- bad inputs beyond the catalogue -------------------------------------------------------------

def test_every_general_entry_point_gives_the_same_message():
    by_code = {}
    for case in CASES:
        if case.code.startswith("general_solver("):
            by_code.setdefault(case.code, []).append(str(observed_error(case)))
    assert len(by_code) >= 20
    for code, messages in by_code.items():
        assert len(set(messages)) == 1, code


def test_nan_where_the_mask_is_false_is_never_read():
    truth = random_cp(SHAPE, 2, weights=[1.0, 0.5], random_state=8)
    tensor = dense(truth)
    mask = observed_mask(SHAPE, 0.7, 9)
    holes = np.where(mask, tensor, np.nan)
    for solver in (gradient_flow_parafac, power_deflation_parafac):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with_nan = solver(holes, 2, mask=mask, random_state=3)
            with_zeros = solver(np.where(mask, tensor, 0.0), 2, mask=mask, random_state=3)
        np.testing.assert_array_equal(with_nan.weights, with_zeros.weights)
        assert np.all(np.isfinite(with_nan.weights))
    # Inputs are not modified either.
    assert np.isnan(holes[~mask]).all()


# --- results -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_exact_recovery_without_a_rank(seed):
    truth = random_cp(SHAPE, 3, random_state=seed)
    tensor = dense(truth)
    for target in (tensor, truth):
        cp = gradient_flow_parafac(target, random_state=seed)
        assert len(cp.weights) == 3
        assert relative_error(tensor, cp) <= 1e-6
        assert components_recovered(truth, cp) == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_completion_from_thirty_percent_of_the_entries(seed):
    truth = random_cp((12, 12, 12), 2, random_state=seed)
    tensor = dense(truth)
    mask = observed_mask(tensor.shape, 0.3, 100 + seed)
    cp = gradient_flow_parafac(tensor, mask=mask, random_state=seed)
    assert len(cp.weights) == 2
    assert heldout_error(tensor, cp, mask) < 1e-3
    # The same entries as coordinates: the same flow, to rounding.
    from_entries = gradient_flow_parafac(entries_of(tensor, mask), random_state=seed)
    assert heldout_error(tensor, from_entries, mask) < 1e-3


@pytest.mark.parametrize("noise", [0.05, 0.2])
def test_automatic_rank_stands_above_gaussian_noise(noise):
    # Issue 13 for general tensors: the residual's noise is sized against a Gaussian
    # tensor of the same shape; the five components (smallest weight 0.2, about 25 and 6
    # times the noise's spectral norm) come back, and nothing of the noise.
    rng = np.random.RandomState(3)
    truth = random_cp((20, 25, 30), 5, weights=np.linspace(1, 0.2, 5), random_state=3)
    clean = dense(truth)
    noise_tensor = rng.standard_normal(clean.shape)
    tensor = clean + noise * np.linalg.norm(clean) / np.linalg.norm(noise_tensor) * noise_tensor
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        cp, trace = gradient_flow_parafac(tensor, random_state=0, return_trace=True)
    assert len(cp.weights) == 5
    assert components_recovered(truth, cp) >= (4 if noise > 0.1 else 5)
    assert trace.converged and trace.noise_level > 0
    assert np.all(trace.component_snr > 3)


@pytest.mark.parametrize("fraction, noise", [(0.1, 0.0), (0.1, 0.01), (0.1, 0.05),
                                             (0.05, 0.0), (0.05, 0.01), (0.05, 0.05)])
def test_noisy_completion_stops_at_the_noise_of_the_observed_entries(fraction, noise):
    # Gaussian noise on the observed entries is sized against noise on the same entries:
    # the flow stops at the three components, without a warning, and predicts the held-out
    # entries better than the noise level; without noise, as exactly as before.
    truth = random_cp((30, 30, 30), 3, random_state=4)
    clean = dense(truth)
    mask = observed_mask(clean.shape, fraction, 5)
    noise_tensor = np.random.RandomState(6).standard_normal(clean.shape)
    tensor = clean + noise * np.linalg.norm(clean) / np.linalg.norm(noise_tensor) * noise_tensor
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        cp, trace = gradient_flow_parafac(np.where(mask, tensor, np.nan), mask=mask,
                                          random_state=0, return_trace=True)
    assert len(cp.weights) == 3
    assert trace.stop_reason == "nothing_to_fit" and trace.converged
    assert heldout_error(clean, cp, mask) < (noise if noise else 1e-5)


def test_power_deflation_recovers_orthogonal_components_and_warns_otherwise():
    orthogonal = random_cp(SHAPE, 3, weights=[1.0, 0.6, 0.3], orthogonal=True, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cp = power_deflation_parafac(dense(orthogonal), 3, random_state=0)
    assert components_recovered(orthogonal, cp) == 3
    assert relative_error(orthogonal, cp) < 1e-8
    oblique = random_cp(SHAPE, 3, random_state=0)
    with pytest.warns(ConvergenceWarning, match="gradient_flow_parafac does not deflate"):
        cp = power_deflation_parafac(dense(oblique), 3, random_state=0)
    assert relative_error(oblique, cp) > 1e-2


def test_power_deflation_on_observed_entries_is_never_silently_wrong():
    # Issue 20: with a mask and 1% noise, 5 of 30 such runs were wrong (held-out error .21 to
    # .59) with no warning. Every run must now be right or say what fell short.
    shape, silent = (10, 12, 14), []
    for seed in range(30):
        clean = dense(random_cp(shape, 3, random_state=1000 + seed))
        rng = np.random.RandomState(seed)
        noise = rng.standard_normal(shape)
        tensor = clean + 0.01 * np.linalg.norm(clean) / np.linalg.norm(noise) * noise
        mask = rng.rand(*shape) < 0.3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cp, trace = power_deflation_parafac(tensor, 3, mask=mask, random_state=seed,
                                                return_trace=True)
        warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
        assert warned == (not trace.converged)
        if heldout_error(clean, cp, mask) > 0.05 and not warned:
            silent.append(seed)
    assert silent == []


# --- the estimator -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def problem():
    truth = random_cp(SHAPE, 2, weights=[1.0, 0.5], random_state=6)
    return truth, dense(truth)


def test_clone_and_pickle_of_a_fitted_estimator(problem):
    truth, tensor = problem
    estimator = GradientFlowParafac(random_state=0)
    fitted = clone(estimator).fit(tensor)
    assert fitted.n_components_ == 2 and fitted.converged_
    assert [tuple(f.shape) for f in fitted.factors_] == [(6, 2), (7, 2), (8, 2)]
    copy = clone(fitted)
    assert copy.get_params() == estimator.get_params() and not hasattr(copy, "weights_")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.weights_, fitted.weights_)
    for a, b in zip(restored.factors_, fitted.factors_):
        np.testing.assert_array_equal(a, b)
    assert restored.score(tensor) == fitted.score(tensor)
    np.testing.assert_array_equal(clone(estimator).fit(tensor).factors_[1], fitted.factors_[1])


def test_grid_search_over_the_rank_with_the_whole_tensor_split(problem):
    _, tensor = problem
    idx = np.arange(tensor.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # rank 1 leaves a component
        search = GridSearchCV(GradientFlowParafac(random_state=0), {"rank": [1, 2]},
                              cv=[(idx, idx)]).fit(tensor)
    assert search.best_params_ == {"rank": 2}
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] < -0.1 and scores[1] > -1e-5


def test_score_on_held_out_observed_entries(problem):
    truth, tensor = problem
    mask = observed_mask(SHAPE, 0.4, 7)
    estimator = GradientFlowParafac(mask=mask, random_state=0).fit(tensor)
    held_out = entries_of(tensor, ~mask)
    assert estimator.score(held_out) == pytest.approx(
        -relative_error(held_out, estimator.decomposition_))
    assert -1e-3 < estimator.score(held_out) <= 0
    # Scored against the wrong tensor, the same entries tell.
    assert estimator.score(entries_of(2 * tensor, ~mask)) < -0.4


# --- pytorch -------------------------------------------------------------------------------------

@pytest.mark.backend
@pytest.mark.parametrize("form", ["masked", "entries"])
def test_flow_on_torch_returns_torch_tensors(form):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    truth = random_cp(SHAPE, 2, weights=[1.0, 0.5], random_state=10)
    tensor = dense(truth)
    mask = observed_mask(SHAPE, 0.5, 11)
    tl.set_backend("pytorch")
    try:
        if form == "masked":
            cp = gradient_flow_parafac(tl.tensor(tensor), mask=mask, random_state=0)
        else:
            entries = ObservedEntries(np.argwhere(mask), tl.tensor(tensor[mask]), SHAPE)
            cp = gradient_flow_parafac(entries, random_state=0)
        assert isinstance(cp.weights, torch.Tensor) and cp.weights.dtype == torch.float64
        assert all(isinstance(f, torch.Tensor) for f in cp.factors)
        assert tuple(cp.weights.shape) == (2,)
        weights, factors = tl.to_numpy(cp.weights), [tl.to_numpy(f) for f in cp.factors]
    finally:
        tl.set_backend("numpy")
        torch.set_num_threads(threads)
    result = CPTensor((weights, factors))
    assert components_recovered(truth, result) == 2
    assert heldout_error(tensor, result, mask) < 1e-3


# --- compare -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def completion():
    truth = random_cp((8, 9, 10), 2, weights=[1.0, 0.5], random_state=12)
    tensor = dense(truth)
    mask = observed_mask(tensor.shape, 0.4, 13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the baselines fall short
        result = compare(tensor, mask=mask, truth=truth, random_state=0)
    return truth, tensor, mask, result


def test_compare_on_a_masked_tensor_runs_the_general_methods(completion):
    truth, tensor, mask, result = completion
    assert result.kind == "general"
    # tensorly_power takes no mask: left out by default.
    assert [r.method for r in result] == ["gradient_flow", "power_deflation",
                                          "tensorly_parafac"]
    for record in result:
        assert record.relative_error == pytest.approx(
            relative_error(tensor, record.decomposition, mask=mask), rel=1e-12)
        assert record.heldout_error == pytest.approx(
            heldout_error(tensor, record.decomposition, mask), rel=1e-8)
    flow, _, parafac = result
    assert flow.recovered == 2 and flow.heldout_error < 1e-3 and flow.converged
    assert flow.order_tau == pytest.approx(1.0)
    # TensorLy's parafac fits all components at once: no order to score, no verdict.
    assert parafac.order_tau is None and parafac.converged is None
    table = result.table()
    assert "held-out" in table.splitlines()[0]
    assert "2/2" in table.splitlines()[2]


def test_compare_on_observed_entries_gives_the_masked_records(completion):
    truth, tensor, mask, masked = completion
    result = compare(entries_of(tensor, mask), ("gradient_flow",), truth=truth,
                     random_state=0)
    assert result[0].heldout_error == pytest.approx(masked[0].heldout_error, rel=1e-6)


def test_compare_on_full_general_targets():
    truth = random_cp(SHAPE, 3, weights=[1.0, 0.6, 0.3], orthogonal=True, random_state=14)
    result = compare(truth, truth=truth, random_state=0)
    assert [r.method for r in result] == list(GENERAL_METHODS)
    for record in result:
        assert record.recovered == 3 and record.heldout_error is None
    assert "held-out" not in result.table()
    # A symmetric tensor runs the symmetric methods unless kind="general" is asked for.
    symmetric = random_symmetric_cp(5, 2, 3, random_state=0)
    assert compare(symmetric, ("power_deflation",), rank=2).kind == "symmetric"
    general = compare(symmetric, ("power_deflation", "tensorly_parafac"), kind="general",
                      truth=symmetric, random_state=0)
    assert general.kind == "general" and [r.recovered for r in general] == [2, 2]
    assert compare(dense(truth)[:, :6, :6][:6], ("tensorly_parafac",), rank=2).kind == "general"
    assert METHODS == ("gradient_flow", "power_deflation", "tensorly_power")


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"methods": ("tensorly_power",)}, ValueError, "takes no mask"),
    ({"methods": ("svd",)}, ValueError, "methods must be one of"),
    ({"kind": "symmetric"}, ValueError, "mask is for general targets"),
    ({"kind": "hermitian"}, ValueError, "kind must be one of"),
    ({"truth": random_cp((6, 7, 9), 2, random_state=0)}, ValueError, r"truth has shape"),
    ({"truth": np.ones(SHAPE)}, TypeError, "truth must be the known decomposition"),
    ({"method_options": {"tensorly_parafac": {"mask": None}}}, ValueError,
     r"must not set \['mask'\]"),
])
def test_compare_names_bad_general_arguments(kwargs, error, fragment):
    truth = random_cp(SHAPE, 2, random_state=0)
    with pytest.raises(error, match=fragment):
        compare(dense(truth), **{"mask": observed_mask(SHAPE, 0.5, 0), "rank": 2, **kwargs})


def test_compare_refuses_tensorly_parafac_on_a_symmetric_target():
    symmetric = random_symmetric_cp(5, 2, 3, random_state=0)
    with pytest.raises(ValueError, match="kind='general'"):
        compare(symmetric, ("tensorly_parafac",), rank=2)


# --- command line --------------------------------------------------------------------------------

def test_cli_general_synthetic_problem_with_missing_entries(capsys, tmp_path):
    path = tmp_path / "records.json"
    argv = ["compare", "--shape", "6,7,8", "--weights", "1,0.5", "--observed", "0.7",
            "--no-progress", "--json", str(path)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "synthetic: shape 6x7x8, r=2, random unit components, weights [1, 0.5]" in out
    assert "held-out" in out and "prod_k |<u_k, v_k>|" in out
    records = json.loads(path.read_text())["records"]
    assert [r["method"] for r in records] == ["gradient_flow", "power_deflation",
                                              "tensorly_parafac"]
    assert records[0]["recovered"] == 2 and records[0]["heldout_error"] < 1e-3


def test_cli_tensor_file_with_a_mask_goes_to_the_general_case(capsys, tmp_path):
    truth = random_cp((5, 6, 7), 2, weights=[1.0, 0.5], random_state=15)
    tensor, mask = dense(truth), observed_mask((5, 6, 7), 0.6, 16)
    np.save(tmp_path / "t.npy", np.where(mask, tensor, np.nan))
    np.save(tmp_path / "m.npy", mask)
    argv = ["compare", "--tensor", str(tmp_path / "t.npy"), "--mask", str(tmp_path / "m.npy"),
            "--rank", "2", "--methods", "gradient_flow,tensorly_parafac", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 't.npy'}: shape 5x6x7, general, observed" in out
    assert "tensorly_parafac" in out and "recovered" not in out


@pytest.mark.parametrize("argv, fragment", [
    (["compare", "--shape", "6,7", "--rank", "2"], "at least 3 dimensions"),
    (["compare", "--shape", "6,7,8", "--dim", "6"], "--shape (general problem) cannot be "
     "combined with --dim"),
    (["compare", "--shape", "6,7,8", "--observed", "0"], "--observed must be in (0, 1]"),
    (["compare", "--dim", "6", "--observed", "0.5"], "use --shape, or --kind general"),
    (["compare", "--mask", "m.npy"], "--mask goes with --tensor"),
    (["compare", "--shape", "3,7,8", "--rank", "4", "--orthogonal"],
     "4 orthogonal components do not fit in shape (3, 7, 8)"),
    (["compare", "--shape", "6,7,8", "--observed", "0.5", "--methods", "tensorly_power"],
     "takes no mask"),
])
def test_cli_general_flag_errors_are_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


# --- plots ---------------------------------------------------------------------------------------

def test_plots_draw_the_general_flow(completion):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tensorly_gfdeflate import plot_deflation, plot_discovery, plot_overview

    truth, _, _, result = completion
    flow, power = result[0], result[1]
    try:
        figure = plot_deflation(flow.trace, truth, decomposition=flow.decomposition,
                                power=(power.decomposition, power.trace))
        mass_ax, residual_ax = figure.axes
        curves = [line for line in mass_ax.get_lines() if line.get_linestyle() == "-"]
        assert [c.get_label() for c in curves] == ["weight 1", "weight 0.5"]
        # Each curve ends at the mass of its component: the slots' masses, summed.
        finals = sorted(c.get_ydata()[-1] for c in curves)
        expected = sorted(flow.trace.mass[-1, slots].sum()
                          for slots in flow.trace.component_slots)
        np.testing.assert_allclose(finals, expected, rtol=1e-12)
        np.testing.assert_allclose(residual_ax.get_lines()[0].get_ydata(), flow.trace.residual)
        discovery = plot_discovery(flow.trace, flow.decomposition.weights)
        assert len(discovery.axes[0].get_lines()[0].get_xdata()) == 2
        overview = plot_overview(flow.trace, truth, decomposition=flow.decomposition)
        assert len(overview.axes) == 3
    finally:
        plt.close("all")
