"""The demo says what its own run showed, not what the paper predicts."""

import pytest

from tensorly_gfdeflate import demo


@pytest.fixture(scope="module")
def demo_run():
    return demo.run_demo(random_state=0, out=lambda line: None)


def test_a_run_found_in_reverse_order_says_so(monkeypatch):
    solve = demo.gradient_flow_cp

    def reversed_discovery(*args, **kwargs):
        cp, trace = solve(*args, **kwargs)
        trace.discovery_time = trace.discovery_time[::-1].copy()
        return cp, trace

    # In place of a run that really finds the smallest weight first.
    monkeypatch.setattr(demo, "gradient_flow_cp", reversed_discovery)
    lines = []
    result = demo.run_demo(random_state=0, out=lines.append)
    assert result["order_tau"] == pytest.approx(-1.0)
    assert lines[-1] == ("Discovery order does not follow weight order (Kendall tau = -1.00): "
                         "larger weights were not discovered first.")


def test_the_sentence_follows_the_tau(demo_run):
    assert demo_run["order_tau"] == 1.0  # exactly: five components in weight order
    assert demo.order_sentence(demo_run["order_tau"]).startswith(
        "Discovery order matches weight order, largest first (Kendall tau = +1.00)")
    assert "only partly" in demo.order_sentence(0.6)
    assert "Kendall tau = -0.20" in demo.order_sentence(-0.2)
    assert "no discovery order" in demo.order_sentence(float("nan"))


def test_the_trace_prints_as_one_short_line(demo_run):
    _, trace = demo_run["flow"]
    text = repr(trace)
    assert "\n" not in text and len(text) < 200
    assert text.startswith(f"FlowTrace(stop_reason={trace.stop_reason!r}, "
                           f"n_steps={trace.n_steps}, t=0..")
    assert f"n_components=5, final_error={trace.final_error:.3g}, " in text
    assert text.endswith(f"n_events={len(trace.events)})")
