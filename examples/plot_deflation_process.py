"""
The deflation process
=====================

Ge, Ren, Wang and Zhou (NeurIPS 2021) show that gradient flow on an
over-parametrized model, started from a tiny random point, fits the components
of a tensor one at a time, largest first, as if it deflated the tensor. This
example reproduces the setting of their Figure 1,

.. math:: T = \\sum_{i=1}^{5} a_i \\, e_i^{\\otimes 4}, \\qquad
          a = (1, 0.7, 0.5, 0.3, 0.2),

in dimension 10, and puts the tensor power method with explicit deflation
beside it.
"""

import numpy as np
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate import (
    gradient_flow_cp,
    plot_deflation,
    plot_discovery,
    power_deflation_cp,
    random_symmetric_cp,
)

weights = np.array([1.0, 0.7, 0.5, 0.3, 0.2])
basis = np.eye(10)[:, :5]
truth = CPTensor((weights, [basis] * 4))
tensor = tl.cp_to_tensor(truth)  # the dense 10 x 10 x 10 x 10 array

# %%
# Both solvers
# ------------
# The flow is given no rank: it fits as many components as the regularization
# lets it (here all five). The power method is told there are five.

flow_cp, flow_trace = gradient_flow_cp(tensor, random_state=0, return_trace=True)
power_cp, power_trace = power_deflation_cp(tensor, 5, random_state=0, return_trace=True)

for weight, found in zip(flow_cp.weights, flow_trace.discovery_time):
    print(f"flow: weight {weight:.3f} discovered at t = {found:5.1f}")
print("power method, weights in extraction order:", np.round(power_trace.weights, 3))

# %%
# The picture
# -----------
# Top: the mass the flow carries along each true component against flow time.
# Each curve stays near zero while its component is hidden behind larger
# ones, then rises quickly to the weight (dotted level). The dots are the
# discovery times (half the final mass); ``#k`` says that the power method
# extracted the same component at its k-th deflation step. Bottom: the
# relative residual falls in steps, one per discovery: the flow deflates.
# Its last level is the regularization bias, which the read-out removes
# (dashed line: the error of the returned decomposition).

plot_deflation(flow_trace, truth, decomposition=flow_cp, power=(power_cp, power_trace))

# %%
# Discovery time grows like 1 / weight
# ------------------------------------
# A hidden component's mass grows like ``exp(c a t)`` from the initial scale,
# so it needs a time proportional to ``1 / a`` to become visible. With eight
# random orthogonal components spread from 1 to 0.1 the points line up.

spread = random_symmetric_cp(30, 8, 4, random_state=1)
spread_cp, spread_trace = gradient_flow_cp(spread, random_state=1, return_trace=True)
plot_discovery(spread_trace, spread_cp.weights)
