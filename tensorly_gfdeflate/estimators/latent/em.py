"""Likelihood refinement of a moment estimate: expectation-maximization, one pass per step.

The method of moments gives a start without random restarts; EM then moves it
to a maximum of the likelihood of the data, which removes the moments' bias
when the data do not follow the model exactly (real counts, real tables).
Each step is one pass over the data: the E-step's sufficient statistics are
sums over samples, so a :class:`dask.array.Array` is read chunk by chunk
(:func:`~tensorly_gfdeflate.targets.dask_moments.chunk_sums`) and never
computed whole.
"""

from dataclasses import dataclass, replace
import numpy as np
from scipy.special import logsumexp

from ..._checks import is_dask_array
from ...targets.dask_moments import chunk_sums

__all__ = ["TopicParameters", "SphericalParameters", "EMResult", "refine",
           "topic_log_joint", "spherical_log_joint"]

# Variances are kept at least this (times the data's mean squared scale, see
# SphericalParameters), as GaussianMixture's reg_covar keeps them positive: a
# component that collapses on one sample would otherwise have variance 0.
_VARIANCE_FLOOR = 1e-6
# A component whose responsibilities sum to less than this keeps its parameters
# (its weight goes to about 0): its M-step would divide by nothing.
_EMPTY_COMPONENT = 1e-10


@dataclass(frozen=True)
class TopicParameters:
    """A mixture of multinomials (single-topic model).

    ``weights`` (k,) sum to 1; ``topics`` (k, n_words) rows sum to 1, every
    entry positive (smoothed); ``prior`` the pseudo-count added to each
    topic's word counts in the M-step.
    """

    weights: np.ndarray
    topics: np.ndarray
    prior: float

    def log_joint(self, X):
        return topic_log_joint(X, self.weights, self.topics)

    def reordered(self, order):
        return replace(self, weights=self.weights[order], topics=self.topics[order])

    def sufficient_sums(self, X):
        joint = self.log_joint(X)
        likelihood = logsumexp(joint, axis=1)
        responsibilities = np.exp(joint - likelihood[:, None])
        return {"n": X.shape[0], "log_likelihood": float(likelihood.sum()),
                "mass": responsibilities.sum(axis=0),
                "counts": np.asarray((X.T @ responsibilities).T)}

    def maximized(self, sums):
        counts = sums["counts"] + self.prior
        empty = sums["mass"] < _EMPTY_COMPONENT
        topics = np.where(empty[:, None], self.topics,
                          counts / counts.sum(axis=1, keepdims=True))
        return replace(self, weights=_normalized(sums["mass"]), topics=topics)


@dataclass(frozen=True)
class SphericalParameters:
    """A mixture of spherical Gaussians: ``weights`` (k,), ``means`` (k, d), ``variances`` (k,).

    With ``common`` the variances are one value, re-estimated pooled over the
    components (the model of the method of moments); otherwise one per
    component (``GaussianMixture(covariance_type="spherical")``).
    ``variance_floor`` keeps every variance positive.
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    common: bool
    variance_floor: float

    def log_joint(self, X):
        return spherical_log_joint(X, self.weights, self.means, self.variances)

    def reordered(self, order):
        return replace(self, weights=self.weights[order], means=self.means[order],
                       variances=self.variances[order])

    def sufficient_sums(self, X):
        joint = self.log_joint(X)
        likelihood = logsumexp(joint, axis=1)
        responsibilities = np.exp(joint - likelihood[:, None])
        return {"n": X.shape[0], "log_likelihood": float(likelihood.sum()),
                "mass": responsibilities.sum(axis=0),
                "first": responsibilities.T @ X,
                "square": responsibilities.T @ np.einsum("ij,ij->i", X, X)}

    def maximized(self, sums):
        mass, d = sums["mass"], self.means.shape[1]
        empty = mass < _EMPTY_COMPONENT
        safe_mass = np.where(empty, 1.0, mass)
        means = np.where(empty[:, None], self.means, sums["first"] / safe_mass[:, None])
        # sum_s r_si |x_s - mu_i|^2 = square_i - 2 mu_i . first_i + mass_i |mu_i|^2
        scatter = np.maximum(sums["square"] - 2.0 * np.einsum("ij,ij->i", means, sums["first"])
                             + mass * np.einsum("ij,ij->i", means, means), 0.0)
        if self.common:
            variances = np.full(len(mass), scatter.sum() / (d * mass.sum()))
        else:
            variances = np.where(empty, self.variances, scatter / (d * safe_mass))
        return replace(self, weights=_normalized(mass), means=means,
                       variances=np.maximum(variances, self.variance_floor))


@dataclass(frozen=True)
class EMResult:
    """What :func:`refine` reached: the parameters, the passes and whether they settled.

    ``log_likelihood`` is the mean per sample at the returned parameters'
    E-step (the last pass), ``history`` the mean of every pass.
    """

    parameters: object
    n_iter: int
    converged: bool
    log_likelihood: float
    history: tuple


def refine(X, parameters, *, max_iter, tol):
    """EM from ``parameters`` on ``X`` until the mean log-likelihood per sample gains less than ``tol``.

    Parameters
    ----------
    X : ndarray, scipy.sparse matrix or dask.array.Array of shape (n_samples, n_features)
        Checked by the caller. A Dask array is read once per pass.
    parameters : TopicParameters or SphericalParameters
        The start (the moment estimate).
    max_iter : int >= 1
        Passes at most (E-step and M-step each).
    tol : float > 0
        Gain in mean log-likelihood per sample below which EM has converged.

    Returns
    -------
    EMResult
    """
    history = []
    for n_iter in range(1, max_iter + 1):
        sums = _pass(X, parameters.sufficient_sums)
        history.append(sums["log_likelihood"] / sums["n"])
        parameters = parameters.maximized(sums)
        if n_iter > 1 and abs(history[-1] - history[-2]) < tol:
            return EMResult(parameters, n_iter, True, history[-1], tuple(history))
    return EMResult(parameters, max_iter, False, history[-1], tuple(history))


def _pass(X, summarize):
    """``summarize`` of all the rows of ``X``: at once, or chunk by chunk for Dask."""
    return chunk_sums(X, summarize)[0] if is_dask_array(X) else summarize(X)


def _normalized(mass):
    return mass / mass.sum()


def topic_log_joint(X, weights, topics):
    """``log w_i + sum_j c_j log mu_ij`` per document (row of counts) and topic.

    A probability of 0 (only in topics set by hand: fitted ones are smoothed)
    counts as the smallest positive float, so that a word absent from a
    document (count 0) contributes 0, not ``0 * -inf``."""
    tiny = np.finfo(float).tiny
    return np.asarray(X @ np.log(np.maximum(topics, tiny)).T) + np.log(np.maximum(weights, tiny))


def spherical_log_joint(X, weights, means, variances):
    """``log w_i + log N(x; mu_i, sigma_i^2 I)`` per sample and component."""
    d = X.shape[1]
    distances = np.maximum((np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * X @ means.T
                            + np.einsum("ij,ij->i", means, means)), 0.0)
    with np.errstate(divide="ignore"):
        return (-0.5 * (distances / variances + d * np.log(2 * np.pi * variances))
                + np.log(weights))
