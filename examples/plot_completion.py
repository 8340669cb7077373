"""
Tensor completion without a rank: components found one at a time
=================================================================

A rank-3 tensor of shape 30 x 30 x 30, of which only 10% of the entries are
observed. :func:`~tensorly_gfdeflate.gradient_flow_parafac` is given the
observed entries and no rank. From a small balanced start its slots fit the
largest component first, then the next: the rank comes out of the flow, and
the small start keeps the model from spending its freedom on the missing
entries. TensorLy's ``parafac(tensor, rank, mask=mask)`` (alternating least
squares on the observed entries) needs the rank, and with too large a rank it
fits the observed entries with components that mean nothing elsewhere: it
overfits.

The error that matters is on the **held-out** entries, the 90% that neither
method saw.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
import tensorly as tl
from tensorly.decomposition import parafac

from tensorly_gfdeflate import gradient_flow_parafac, plot_deflation

rng = np.random.RandomState(0)
shape, weights = (30, 30, 30), np.array([3.0, 1.5, 0.75])
factors = [rng.standard_normal((n, 3)) for n in shape]
factors = [f / np.linalg.norm(f, axis=0) for f in factors]
truth = tl.cp_tensor.CPTensor((weights, factors))
tensor = tl.cp_to_tensor(truth)
mask = rng.random_sample(shape) < 0.1  # True: observed
held = ~mask


def held_out_error(cp):
    """Relative error on the entries that were not observed."""
    difference = tl.cp_to_tensor(cp)[held] - tensor[held]
    return np.linalg.norm(difference) / np.linalg.norm(tensor[held])


print(f"{mask.sum()} of {mask.size} entries observed ({mask.mean():.1%})")

# %%
# The flow, without a rank
# ------------------------
# Unobserved entries may hold anything (NaN here): only the mask counts.

start = time.perf_counter()
cp, trace = gradient_flow_parafac(np.where(mask, tensor, np.nan), mask=mask,
                                  random_state=0, return_trace=True)
flow_seconds = time.perf_counter() - start
flow_error = held_out_error(cp)
print(f"gradient_flow_parafac: {len(cp.weights)} components, weights "
      f"{np.round(tl.to_numpy(cp.weights), 4)}, held-out error {flow_error:.2e} "
      f"({flow_seconds:.2f} s, stopped: {trace.stop_reason})")
print("discovery times:", trace.discovery_time)

# %%
# The deflation picture: the mass the flow carries along each true component
# against flow time (its discovery, at half its final mass, marked), and the
# relative residual on the observed entries, a staircase with one step per
# component. The largest weight is found first, the smallest last.

fig = plot_deflation(trace, truth, decomposition=cp)

# %%
# Alternating least squares at the true rank and at rank 10
# ---------------------------------------------------------
# TensorLy's ``parafac`` with the mask (its SVD initialization and, here,
# ``n_iter_max=1000``); zeros stand in for the unobserved entries, which the
# mask tells it to ignore.

als = {}
for rank in (3, 10):
    start = time.perf_counter()
    fit = parafac(np.where(mask, tensor, 0.0), rank, mask=mask, init="svd",
                  n_iter_max=1000, random_state=0)
    als[rank] = held_out_error(fit), time.perf_counter() - start
    print(f"tensorly parafac(rank={rank}, mask=mask): held-out error {als[rank][0]:.2e} "
          f"({als[rank][1]:.2f} s)")
print(f"ALS at rank 10 / flow: {als[10][0] / flow_error:.3g}")

labels = ["gradient_flow_parafac\n(no rank)", "parafac\nrank 3", "parafac\nrank 10"]
errors = [flow_error, als[3][0], als[10][0]]
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
bars = ax.bar(labels, errors, color=["tab:blue", "tab:gray", "tab:red"])
ax.bar_label(bars, labels=[f"{e:.1e}" for e in errors])
ax.set_yscale("log")
ax.set_ylabel("relative error on the held-out entries")
ax.set_title("Completion from 10% of the entries of a rank-3 tensor")
plt.show()

# %%
# At rank 10, least squares fits the 2,700 observed entries with components
# that do not generalize: the held-out error is that of a fit to noise. The
# flow uses no more components than the tensor holds. How the errors move
# with the observed fraction, over several seeds, is measured in
# ``benchmarks/general.py`` (see the user guide's page on general tensors).
