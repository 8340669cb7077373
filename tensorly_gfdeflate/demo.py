"""The package's main job: the paper's setting, gradient flow beside power deflation.

``T = sum_{i<=5} a_i e_i^(x)4`` in dimension 10. The paper predicts that the
flow discovers the components one at a time, largest first, the order in which
the power method extracts them by explicit deflation. Prints both timelines,
both errors, and whether this run's discovery order followed the weights.
"""

import numpy as np
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from .comparison import order_agreement
from .solvers.symmetric_flow import gradient_flow_cp
from .check.measures import match_components, relative_error
from .solvers.power import power_deflation_cp

DEMO_WEIGHTS = (1.0, 0.7, 0.5, 0.3, 0.2)
DEMO_DIM = 10
DEMO_ORDER = 4


def demo_tensor(dim=DEMO_DIM, weights=DEMO_WEIGHTS, order=DEMO_ORDER):
    """``sum_i a_i e_i^(x)order`` as a dense array, and its truth as a CPTensor."""
    basis = np.eye(dim)[:, : len(weights)]
    truth = CPTensor((tl.tensor(np.asarray(weights, dtype=float)), [tl.tensor(basis)] * order))
    return tl.cp_to_tensor(truth), truth


def order_sentence(tau):
    """What a Kendall tau between discovery order and weight order says, as one sentence."""
    if np.isnan(tau):
        return ("Fewer than two components were discovered along their true directions: "
                "no discovery order to compare with the weights.")
    if tau == 1:
        return (f"Discovery order matches weight order, largest first (Kendall tau = {tau:+.2f}): "
                "the flow deflates like the power method.")
    if tau > 0:
        return (f"Discovery order only partly follows weight order (Kendall tau = {tau:+.2f}): "
                "some smaller weights were discovered before larger ones.")
    return (f"Discovery order does not follow weight order (Kendall tau = {tau:+.2f}): "
            "larger weights were not discovered first.")


def run_demo(random_state=0, out=print):
    """Run both solvers on :func:`demo_tensor` and print their timelines; returns the results."""
    tensor, truth = demo_tensor()
    flow_cp, flow_trace = gradient_flow_cp(tensor, random_state=random_state, return_trace=True)
    power_cp, power_trace = power_deflation_cp(
        tensor, len(DEMO_WEIGHTS), random_state=random_state, return_trace=True)

    flow_match, _ = match_components(truth, flow_cp)
    power_match, _ = match_components(truth, power_cp)
    out(f"Target: T = sum_i a_i e_i^(x){DEMO_ORDER} in dimension {DEMO_DIM}, "
        f"a = {list(DEMO_WEIGHTS)}")
    out("")
    out(f"{'component':>9} {'weight':>7} | {'flow: discovered at t':>22} {'fitted':>8} |"
        f" {'power: extracted':>17} {'fitted':>8}")
    for i, weight in enumerate(DEMO_WEIGHTS):
        f, p = flow_match[i], power_match[i]
        found = f"{flow_trace.discovery_time[f]:.1f}" if f >= 0 else "missed"
        fitted = f"{float(flow_cp.weights[f]):.4f}" if f >= 0 else "-"
        step = f"#{power_trace.extraction_index[p] + 1}" if p >= 0 else "missed"
        p_fitted = f"{float(power_cp.weights[p]):.4f}" if p >= 0 else "-"
        out(f"{f'e_{i + 1}':>9} {weight:>7.2f} | {found:>22} {fitted:>8} | {step:>17} {p_fitted:>8}")
    out("")
    flow_error = relative_error(tensor, flow_cp)
    power_error = relative_error(tensor, power_cp)
    out(f"gradient flow : {len(flow_cp.weights)} components (automatic rank), relative error "
        f"{flow_error:.2e}, {flow_trace.n_steps} Euler steps, stopped: {flow_trace.stop_reason}")
    out(f"power method  : {len(power_cp.weights)} components (rank given), relative error "
        f"{power_error:.2e}")
    tau = order_agreement(truth, flow_cp, np.asarray(flow_trace.discovery_time, dtype=float))
    out(order_sentence(tau))
    return {"flow": (flow_cp, flow_trace), "power": (power_cp, power_trace),
            "errors": (flow_error, power_error), "order_tau": tau}
