"""
Automatic rank: regularization sets the smallest component fitted
=================================================================

Without a ``rank``, :func:`~tensorly_gfdeflate.gradient_flow_cp` returns every
component the flow fitted. Which ones is decided by the regularization
``lambda``: a model component aligned with a true component of weight ``a``
(relative to the tensor's Frobenius norm) has its norm growing at the rate
``2 a - lambda``, so components with ``a < lambda / 2`` can never grow, and a
fitted component carries ``a - lambda / 2``.

The flow stops when, at an epoch boundary, the loss has stopped falling and
power iterations on the residual find no direction of weight above
``lambda``. Components between ``lambda / 2`` and ``lambda`` grow slowly: they
are fitted if they grow before that check, and left out otherwise.
``lambda`` is therefore a floor on the weights returned, between
``lambda / 2`` and ``lambda`` times the norm.
"""

import numpy as np
import matplotlib.pyplot as plt
import tensorly as tl

from tensorly_gfdeflate import gradient_flow_cp, match_components, random_symmetric_cp

weights = np.array([1.0, 0.5, 0.25, 0.12, 0.06, 0.03, 0.015])
truth = random_symmetric_cp(12, len(weights), 4, weights=weights, random_state=0)
norm = np.linalg.norm(weights)  # Frobenius norm: the components are orthonormal
relative = weights / norm

# %%
# Components found against lambda
# --------------------------------
# For each ``lambda`` on a grid, the true components the flow returned
# (filled) and missed (open), by relative weight. The lines are
# ``a = lambda / 2``, below which nothing can be fitted, and ``a = lambda``,
# above which everything is.

lambdas = np.geomspace(2e-3, 0.5, 12)
found = np.zeros((len(lambdas), len(weights)), dtype=bool)
for k, lam in enumerate(lambdas):
    cp = gradient_flow_cp(truth, regularization=lam, random_state=0)
    index, cosine = match_components(truth, cp)
    found[k] = (index >= 0) & (cosine >= 0.99)

fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
grid_l, grid_a = np.meshgrid(lambdas, relative, indexing="ij")
ax.scatter(grid_l[found], grid_a[found], color="tab:blue", label="fitted")
ax.scatter(grid_l[~found], grid_a[~found], facecolors="none", edgecolors="tab:red",
           label="not fitted")
ax.plot(lambdas, lambdas / 2, "k--", linewidth=1, label="a = lambda / 2")
ax.plot(lambdas, lambdas, "k:", linewidth=1, label="a = lambda")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("regularization lambda")
ax.set_ylabel("true weight a / |T|")
ax.legend(fontsize=8, loc="lower right")
for lam, row in zip(lambdas, found):
    print(f"lambda = {lam:.4f}: {row.sum()} components, smallest relative weight fitted "
          f"{relative[row].min():.3f}")

# %%
# The shrinkage, and its removal
# ------------------------------
# The raw flow (``debias=False``) returns each weight shrunk by
# ``lambda / 2`` times the norm; the default read-out re-fits the weights by
# least squares and refines them with ``lambda = 0``, which removes the bias.
# Here the smallest component returned lies between ``lambda / 2`` and
# ``lambda``: it was still growing when the flow stopped, so its raw mass is
# even below ``a - lambda / 2``; the re-fit restores it too.

lam = 0.05
raw = gradient_flow_cp(truth, regularization=lam, debias=False, random_state=0)
debiased = gradient_flow_cp(truth, regularization=lam, random_state=0)
n = len(raw.weights)
print(f"lambda = {lam}: {n} components")
print("true weights        ", np.round(weights[:n], 4))
print("true - lambda |T|/2 ", np.round(weights[:n] - lam * norm / 2, 4))
print("debias=False        ", np.round(tl.to_numpy(raw.weights), 4))
print("default (debiased)  ", np.round(tl.to_numpy(debiased.weights), 4))
