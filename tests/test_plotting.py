import sys
import warnings

import numpy as np
import pytest
import tensorly as tl
from sklearn.exceptions import ConvergenceWarning

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from tensorly_gfdeflate import (  # noqa: E402
    gradient_flow_cp,
    plot_deflation,
    plot_discovery,
    power_deflation_cp,
    random_symmetric_cp,
)
from tensorly_gfdeflate.demo import demo_tensor  # noqa: E402
from tensorly_gfdeflate.plotting import plot_overview  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def paper_run():
    """The paper's setting (weights 1, .7, .5, .3, .2 on e_1..e_5): merges happen here."""
    tensor, truth = demo_tensor()
    cp, trace = gradient_flow_cp(tensor, random_state=0, return_trace=True)
    power = power_deflation_cp(tensor, 5, random_state=0, return_trace=True)
    assert any(event.kind == "merge" for event in trace.events)
    return truth, cp, trace, power


@pytest.fixture(scope="module")
def stuck_run():
    """Vanilla flow stuck with 8 of 10 components (no events: slots never re-drawn)."""
    truth = random_symmetric_cp(20, 10, 4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cp, trace = gradient_flow_cp(truth, width=10, variant="vanilla", debias=False,
                                     step_size=0.25, random_state=0, return_trace=True)
    assert not trace.events
    return truth, cp, trace


def solid_lines(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "-"]


def test_curves_are_the_summed_slot_masses(stuck_run):
    truth, cp, trace = stuck_run
    figure = plot_deflation(trace, truth, decomposition=cp)
    mass_ax, residual_ax = figure.axes
    curves = solid_lines(mass_ax)
    assert len(curves) == len(trace.component_slots) == 8
    expected = {tuple(np.round(trace.mass[:, slots].sum(axis=1), 12))
                for slots in trace.component_slots}
    for curve in curves:
        np.testing.assert_array_equal(curve.get_xdata(), trace.times)
        assert tuple(np.round(curve.get_ydata(), 12)) in expected
    # The two smallest true components were never fitted: the title says which.
    title = mass_ax.get_title()
    assert "not found by the flow" in title and "0.215" in title and "0.1" in title
    assert len({tuple(np.round(c.get_ydata(), 12)) for c in curves}) == 8


def test_curves_follow_merges_and_redraws_to_the_discovery_times(paper_run):
    truth, cp, trace, _ = paper_run
    mass_ax, _ = plot_deflation(trace, truth, decomposition=cp).axes
    curves = solid_lines(mass_ax)
    assert [c.get_label() for c in curves] == [
        f"weight {w:.3g}" for w in (1.0, 0.7, 0.5, 0.3, 0.2)]
    for curve, found in zip(curves, trace.discovery_time):
        path = curve.get_ydata()
        # Half the final mass is first reached exactly at the recorded discovery time.
        first = np.flatnonzero(path >= 0.5 * path[-1])[0]
        assert trace.times[first] == found
    # Each curve ends at the mass its slots carry at the end.
    finals = sorted(c.get_ydata()[-1] for c in curves)
    expected = sorted(trace.mass[-1, slots].sum() for slots in trace.component_slots)
    np.testing.assert_allclose(finals, expected, rtol=1e-12)


def test_power_extraction_steps_are_marked_at_the_discoveries(paper_run):
    truth, cp, trace, power = paper_run
    mass_ax, _ = plot_deflation(trace, truth, decomposition=cp, power=power).axes
    marks = {text.get_text(): text.xy for text in mass_ax.texts}
    assert sorted(marks) == ["#1", "#2", "#3", "#4", "#5"]
    # The power method extracts e_1..e_5 in weight order, and the flow discovers them so too.
    xs = [marks[f"#{k}"][0] for k in range(1, 6)]
    np.testing.assert_array_equal(xs, trace.discovery_time)
    assert "extraction step" in mass_ax.get_title()


def test_residual_panel_is_the_trace_residual_on_a_log_scale(paper_run):
    truth, cp, trace, _ = paper_run
    _, residual_ax = plot_deflation(trace, truth, decomposition=cp).axes
    line = residual_ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), trace.times)
    np.testing.assert_array_equal(line.get_ydata(), trace.residual)
    assert residual_ax.get_yscale() == "log"
    labels = [line.get_label() for line in residual_ax.get_lines()]
    assert "merge" in labels
    assert any(label.startswith("returned decomposition") for label in labels)


def test_without_truth_one_curve_per_returned_component(paper_run):
    _, cp, trace, power = paper_run
    mass_ax, _ = plot_deflation(trace).axes
    assert [c.get_label() for c in solid_lines(mass_ax)] == [
        f"component {k}" for k in range(1, 6)]
    mass_ax, _ = plot_deflation(trace, decomposition=cp, power=power).axes
    assert len(mass_ax.texts) == 5


def test_plot_discovery_points_and_rising_line(paper_run):
    _, cp, trace, _ = paper_run
    ax = plot_discovery(trace, cp.weights).axes[0]
    points, fit = ax.get_lines()[:2]
    np.testing.assert_allclose(points.get_xdata(), 1 / np.abs(tl.to_numpy(cp.weights)))
    np.testing.assert_array_equal(points.get_ydata(), trace.discovery_time)
    # The paper's prediction, visible in the picture: later discovery for smaller weight.
    assert np.polyfit(fit.get_xdata(), fit.get_ydata(), 1)[0] > 0
    assert ax.get_xlabel() == "1 / weight"


def test_overview_holds_three_panels(paper_run):
    truth, cp, trace, power = paper_run
    figure = plot_overview(trace, truth, decomposition=cp, power=power)
    assert len(figure.axes) == 3
    assert figure.axes[2].get_xlabel() == "1 / weight"


def test_saved_png_is_a_real_picture(paper_run, tmp_path):
    truth, cp, trace, power = paper_run
    path = tmp_path / "deflation.png"
    plot_deflation(trace, truth, decomposition=cp, power=power).savefig(path, dpi=60)
    assert path.stat().st_size > 10_000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400
    # Many distinct colours: curves and text, not an empty canvas.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50


def test_bad_arguments(paper_run):
    truth, cp, trace, power = paper_run
    with pytest.raises(ValueError, match="decomposition="):
        plot_deflation(trace, truth)
    with pytest.raises(ValueError, match="truth= or decomposition="):
        plot_deflation(trace, power=power)
    short = (cp.weights[:3], [f[:, :3] for f in cp.factors])
    with pytest.raises(ValueError, match="decomposition has 3 components"):
        plot_deflation(trace, truth, decomposition=short)
    with pytest.raises(ValueError, match="one entry per returned component"):
        plot_discovery(trace, [1.0, 0.5])


def test_missing_matplotlib_names_the_plot_extra(monkeypatch, paper_run):
    _, cp, trace, _ = paper_run
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"tensorly-gfdeflate\[plot\]"):
        plot_discovery(trace, cp.weights)
