"""
Blind source separation with the fourth cumulant
================================================

Three signals (a sine, a square wave and a sawtooth) are mixed linearly, as in
scikit-learn's FastICA example. :class:`~tensorly_gfdeflate.MomentDecomposition`
whitens the mixtures and decomposes their fourth cumulant tensor, never formed
as an array, with either solver: the over-parametrized gradient flow or the
tensor power method with deflation. All three sources have negative excess
kurtosis, so the flow runs with components of both signs.
"""

# %%
# Sources and mixtures
# --------------------
# 2000 samples, Gaussian noise of standard deviation 0.2, standardized, then
# mixed by a fixed matrix.

import matplotlib.pyplot as plt
import numpy as np
from scipy import signal
from sklearn.decomposition import FastICA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tensorly_gfdeflate import MomentDecomposition

rng = np.random.RandomState(0)
time = np.linspace(0, 8, 2000)
sources = np.c_[np.sin(2 * time), np.sign(np.sin(3 * time)), signal.sawtooth(2 * np.pi * time)]
sources += 0.2 * rng.standard_normal(sources.shape)
sources /= sources.std(axis=0)
mixing = np.array([[1, 1, 1], [0.5, 2, 1], [1.5, 1, 2]])
X = sources @ mixing.T

# %%
# Unmixing
# --------
# Recovered sources come in any order and sign; each is matched to the true
# source it correlates with most, for the plot and the table.

models = {
    "FastICA": FastICA(n_components=3, whiten="unit-variance", random_state=0),
    "MomentDecomposition, gradient flow": MomentDecomposition(random_state=0),
    "MomentDecomposition, power deflation": MomentDecomposition(
        solver="power_deflation", random_state=0),
}


def align(recovered, truth):
    """Recovered sources reordered and sign-flipped to face the true ones; |correlations|."""
    k = truth.shape[1]
    correlation = np.corrcoef(truth.T, recovered.T)[:k, k:]
    match = np.abs(correlation).argmax(axis=1)
    signs = np.sign(correlation[np.arange(k), match])
    return recovered[:, match] * signs, np.abs(correlation[np.arange(k), match])


recovered = {}
for name, model in models.items():
    aligned, correlations = align(model.fit_transform(X), sources)
    scores = ", ".join(f"{c:.4f}" for c in correlations)
    recovered[f"{name} (|correlation| {scores})"] = aligned
    print(f"{name:38s} |correlation| with sine, square, sawtooth: {scores}")

for name in list(models)[1:]:
    print(f"{name:38s} excess kurtosis: {np.round(models[name].weights_, 2)}")

# %%
# The picture
# -----------

rows = {"True sources": sources, "Observations (mixtures)": X, **recovered}
colors = ["tab:red", "tab:blue", "tab:orange"]
fig, axes = plt.subplots(len(rows), 1, figsize=(8, 10), sharex=True)
for ax, (title, signals) in zip(axes, rows.items()):
    # One lane per signal, so that the three do not hide each other.
    for lane, (column, color) in enumerate(zip(signals.T, colors)):
        ax.plot(time, column / np.abs(column).max() - 2.2 * lane, color=color, linewidth=0.6)
    ax.set_title(title, fontsize=10)
    ax.set_yticks([])
axes[-1].set_xlabel("time")
fig.tight_layout()
plt.show()

# %%
# In a pipeline
# -------------
# ``MomentDecomposition`` is a scikit-learn transformer. Here a classifier
# predicts the sign of the square wave from the mixtures, through the
# recovered sources.

labels = (sources[:, 1] > 0).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, labels, random_state=0)
pipeline = make_pipeline(StandardScaler(), MomentDecomposition(random_state=0),
                         LogisticRegression())
pipeline.fit(X_train, y_train)
print(f"test accuracy: {pipeline.score(X_test, y_test):.3f}")
print("logistic coefficients per recovered source:",
      np.round(pipeline[-1].coef_.ravel(), 2))
