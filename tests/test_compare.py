import sys

import numpy as np
import pytest
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate import compare, random_symmetric_cp, relative_error
from tensorly_gfdeflate.comparison import METHODS, Comparison, order_agreement

WEIGHTS = [1.0, 0.5, 0.2]


@pytest.fixture(scope="module")
def truth():
    return random_symmetric_cp(8, 3, 4, weights=WEIGHTS, random_state=1)


@pytest.fixture(scope="module")
def comparison(truth):
    return compare(tl.cp_to_tensor(truth), truth=truth, n_runs=2, random_state=0)


def test_one_record_per_method_and_run_in_run_order(comparison):
    assert [(r.method, r.run) for r in comparison] == [
        (m, run) for run in range(2) for m in METHODS]


def test_records_against_the_known_truth(comparison, truth):
    dense = tl.cp_to_tensor(truth)
    for record in comparison:
        assert record.n_components == 3
        assert record.seconds > 0
        assert record.relative_error == pytest.approx(
            relative_error(dense, record.decomposition), rel=1e-12)
        if record.method in ("gradient_flow", "power_deflation"):
            # Orthogonal, well-separated weights: both find everything, largest first.
            assert record.recovered == 3
            assert record.relative_error < 1e-5
            assert record.order_tau == pytest.approx(1.0)
    flow = comparison[0]
    assert np.all(np.diff(flow.trace.discovery_time) > 0)


def test_order_agreement_counts_concordant_pairs(truth):
    # The estimate lists the true components in reverse order.
    weights, factors = truth
    estimate = CPTensor((weights[::-1], [f[:, ::-1] for f in factors]))
    # Estimate 0 is the weight-0.2 component; found first means the wrong order.
    assert order_agreement(truth, estimate, np.array([1.0, 2.0, 3.0])) == pytest.approx(-1.0)
    assert order_agreement(truth, estimate, np.array([3.0, 2.0, 1.0])) == pytest.approx(1.0)
    # One of the three pairs discordant: tau = (2 - 1) / 3.
    assert order_agreement(truth, estimate, np.array([3.0, 1.0, 2.0])) == pytest.approx(1 / 3)
    # A component never found does not take part; two left, in the right order.
    assert order_agreement(truth, estimate, np.array([np.nan, 2.0, 1.0])) == pytest.approx(1.0)
    assert np.isnan(order_agreement(truth, estimate, np.array([np.nan, np.nan, 1.0])))


def test_order_agreement_ignores_directions_that_were_not_found(truth):
    weights, factors = truth
    wrong = np.array(tl.to_numpy(factors[0]))
    wrong[:, 0] = wrong[:, 0] + wrong[:, 1]  # 45 degrees away from the largest component
    estimate = CPTensor((weights, [tl.tensor(wrong)] * 4))
    # Only components 1 and 2 take part: found in weight order, tau = 1 whatever slot 0 says.
    assert order_agreement(truth, estimate, np.array([99.0, 1.0, 2.0])) == pytest.approx(1.0)


def test_without_truth_no_recovery_fields_and_power_needs_rank(truth):
    result = compare(truth, ("gradient_flow",), random_state=0)
    assert result[0].recovered is None and result[0].order_tau is None
    assert result[0].n_components == 3
    with pytest.raises(ValueError, match="rank"):
        compare(truth, ("gradient_flow", "power_deflation"), random_state=0)
    result = compare(truth, ("power_deflation",), rank=2, random_state=0)
    assert result[0].n_components == 2


def test_method_options_reach_the_method(truth):
    result = compare(truth, ("gradient_flow",), truth=truth, random_state=0,
                     method_options={"gradient_flow": {"width": 3, "debias": False}})
    record = result[0]
    assert np.shape(record.trace.norms)[1] == 3
    # Without the re-fit, weights keep the lambda/2 shrinkage: not exact.
    assert record.relative_error > 1e-5


def test_progress_is_called_after_each_method_run(truth):
    calls = []
    compare(truth, ("gradient_flow", "power_deflation"), truth=truth, n_runs=2,
            random_state=0, progress=lambda done, total, label: calls.append((done, total, label)))
    assert [(d, t) for d, t, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    # Runs are numbered from 0, as in the records and the table.
    assert calls[2][2] == "gradient_flow, run 1"


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"methods": ("gradient_flow", "svd")}, ValueError, "methods"),
    ({"methods": ()}, ValueError, "methods"),
    ({"n_runs": 0}, ValueError, "n_runs"),
    ({"rank": 0}, ValueError, "rank"),
    ({"method_options": {"tensorly_power": {}}}, ValueError, "method_options"),
    ({"method_options": {"gradient_flow": 3}}, TypeError, "method_options"),
    ({"progress": 1}, TypeError, "progress"),
])
def test_bad_arguments_are_named(truth, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        compare(truth, **{"truth": truth, **kwargs})


def test_bad_truth_is_rejected(truth):
    with pytest.raises(TypeError, match="truth"):
        compare(truth, truth=tl.cp_to_tensor(truth))
    other = random_symmetric_cp(5, 2, 4, random_state=0)
    with pytest.raises(ValueError, match="truth"):
        compare(truth, truth=other)


def test_tensorly_power_refuses_a_huge_dense_tensor_before_any_work():
    big = random_symmetric_cp(60, 1, 4, random_state=0)  # 60^4 > 1e7 entries
    with pytest.raises(ValueError, match="tensorly_power"):
        compare(big, ("gradient_flow", "tensorly_power"), rank=1)


def test_table_shows_the_records(comparison):
    table = comparison.table()
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["method", "run", "seconds"]
    assert len(lines) == 2 + len(comparison)
    assert lines[2].split()[0] == "gradient_flow" and "3/3" in lines[2]
    assert str(comparison) == table


def test_frame_shows_the_records(comparison):
    pytest.importorskip("pandas")
    frame = comparison.to_frame()
    assert list(frame["method"]) == [r.method for r in comparison]
    assert list(frame["recovered"]) == [r.recovered for r in comparison]
    assert "decomposition" not in frame.columns


def test_table_marks_missing_values_and_to_frame_names_the_extra(monkeypatch, truth):
    result = compare(truth, ("gradient_flow",), random_state=0)
    assert "recovered" not in result.table()  # no truth: no recovery columns
    # A rank-one truth leaves no pair to order: tau is NaN, shown as "-".
    weights, factors = truth
    lonely = CPTensor((weights[:1], [f[:, :1] for f in factors]))
    result = compare(lonely, ("gradient_flow",), truth=lonely, random_state=0)
    row = result.table().splitlines()[2].split()
    assert row[-3:] == ["1/1", "-", "True"]
    assert isinstance(result, Comparison)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"tensorly-gfdeflate\[pandas\]"):
        result.to_frame()
