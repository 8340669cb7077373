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
from functools import partial
import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from ..._checks import is_dask_array
from ...targets.dask_moments import chunk_sums

__all__ = ["TopicParameters", "SphericalParameters", "EMResult", "refine",
           "merge_gains",
           "topic_log_joint", "spherical_log_joint", "squared_distances"]

# Variances are kept at least this (times the data's mean squared scale, see
# SphericalParameters), as GaussianMixture's reg_covar keeps them positive: a
# component that collapses on one sample would otherwise have variance 0.
_VARIANCE_FLOOR = 1e-6
# A component whose responsibilities sum to less than this keeps its parameters
# (its weight goes to about 0): its M-step would divide by nothing.
_EMPTY_COMPONENT = 1e-10
# EM re-seeds components that hold no sample at most this many times per fit.
_MAX_RESEEDS = 5


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
        """``log w_i + log p(words | topic i)`` per document and topic."""
        return topic_log_joint(X, self.weights, self.topics)

    def reordered(self, order):
        """The topics at the indices ``order``, in that order."""
        return replace(self, weights=self.weights[order], topics=self.topics[order])

    def nearest(self, i):
        """The topic closest to topic ``i`` in L1 distance."""
        distances = np.abs(self.topics - self.topics[i]).sum(axis=1)
        distances[i] = np.inf
        return int(np.argmin(distances))

    def merged(self, i, j):
        """Topic ``i`` merged into ``j``: their weights added, their word distributions mixed."""
        weights, topics = self.weights.copy(), self.topics.copy()
        total = weights[i] + weights[j]
        topics[j] = (weights[i] * topics[i] + weights[j] * topics[j]) / max(total, _EMPTY_COMPONENT)
        weights[j] = total
        keep = np.arange(len(weights)) != i
        return replace(self, weights=weights[keep], topics=topics[keep])

    def sufficient_sums(self, X):
        """The E-step on the documents ``X``: sums that add up over disjoint sets of rows."""
        sums, responsibilities = _expectation(self, X)
        return dict(sums, counts=np.asarray((X.T @ responsibilities).T))

    def maximized(self, sums):
        """The M-step from :meth:`sufficient_sums` over all documents (MAP with the prior)."""
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
        """``log w_i + log N(x; mu_i, sigma_i^2 I)`` per sample and component."""
        return spherical_log_joint(X, self.weights, self.means, self.variances)

    def reordered(self, order):
        """The components at the indices ``order``, in that order."""
        return replace(self, weights=self.weights[order], means=self.means[order],
                       variances=self.variances[order])

    def nearest(self, i):
        """The component whose mean is closest to component ``i``'s."""
        distances = np.linalg.norm(self.means - self.means[i], axis=1)
        distances[i] = np.inf
        return int(np.argmin(distances))

    def merged(self, i, j):
        """Component ``i`` merged into ``j``, matching the pair's weight, mean and spread."""
        weights, means, variances = self.weights.copy(), self.means.copy(), self.variances.copy()
        total = max(weights[i] + weights[j], _EMPTY_COMPONENT)
        share = np.array([weights[i], weights[j]]) / total
        mean = share @ means[[i, j]]
        spread = (np.sum((means[[i, j]] - mean) ** 2, axis=1) / means.shape[1]
                  + variances[[i, j]])
        means[j], variances[j], weights[j] = mean, share @ spread, total
        keep = np.arange(len(weights)) != i
        return replace(self, weights=weights[keep], means=means[keep], variances=variances[keep])

    def sufficient_sums(self, X):
        """The E-step on the samples ``X``: sums that add up over disjoint sets of rows."""
        sums, responsibilities = _expectation(self, X)
        return dict(sums, first=responsibilities.T @ X,
                    square=responsibilities.T @ np.einsum("ij,ij->i", X, X))

    def assigned_sums(self, X):
        """:meth:`sufficient_sums` of each sample given wholly to its nearest mean (a step of
        Lloyd's k-means), with ``inertia``, the sum of the squared distances."""
        squared = np.einsum("ij,ij->i", X, X)
        distances = squared_distances(X, squared, self.means,
                                      np.einsum("ij,ij->i", self.means, self.means))
        nearest = np.argmin(distances, axis=1)
        assignments = np.zeros_like(distances)
        assignments[np.arange(len(nearest)), nearest] = 1.0
        return {"n": X.shape[0], "inertia": float(distances[np.arange(len(nearest)), nearest].sum()),
                "mass": assignments.sum(axis=0), "first": assignments.T @ X,
                "square": assignments.T @ squared}

    def maximized(self, sums):
        """The M-step from :meth:`sufficient_sums` (or :meth:`assigned_sums`) over all samples."""
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


def refine(X, parameters, *, max_iter, tol, reseed=None):
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
    reseed : callable, optional
        ``reseed(parameters, indices)``: the parameters with the components at
        ``indices`` seeded afresh. Called for components left with less than
        one sample's worth of responsibility (an EM fixed point that wastes a
        component: a moment estimate far from every sample starts there), at
        most ``_MAX_RESEEDS`` times; convergence is judged only from the pass
        after.

    Returns
    -------
    EMResult
    """
    history, reseeds, settled_from = [], 0, 2
    for n_iter in range(1, max_iter + 1):
        sums = _pass(X, parameters.sufficient_sums)
        history.append(sums["log_likelihood"] / sums["n"])
        parameters = parameters.maximized(sums)
        empty = np.flatnonzero(sums["mass"] < 1.0)
        if reseed is not None and len(empty) and reseeds < _MAX_RESEEDS:
            parameters, reseeds, settled_from = reseed(parameters, empty), reseeds + 1, n_iter + 2
        elif n_iter >= settled_from and abs(history[-1] - history[-2]) < tol:
            return EMResult(parameters, n_iter, True, history[-1], tuple(history))
    return EMResult(parameters, max_iter, False, history[-1], tuple(history))


def kmeans(X, parameters, *, max_iter, tol):
    """Lloyd's k-means from the means of ``parameters``, one pass over ``X`` an iteration.

    ``GaussianMixture``'s start (its ``init_params="kmeans"``): each sample
    goes to its nearest mean, then the M-step of those hard assignments
    gives the means, the weights (the clusters' shares) and the variances
    (their spread). Stops once the sum of squared distances falls by less
    than ``tol`` (relative) or after ``max_iter`` passes. Returns
    ``(parameters, passes, inertia)``, the inertia of the last assignment.
    """
    inertia = []
    for n_iter in range(1, max_iter + 1):
        sums = _pass(X, parameters.assigned_sums)
        parameters = parameters.maximized(sums)
        inertia.append(sums["inertia"])
        if n_iter >= 2 and inertia[-2] - inertia[-1] <= tol * inertia[-2]:
            break
    return parameters, n_iter, inertia[-1]


def merge_gains(X, parameters):
    """How much the log-likelihood of ``X`` falls when each component is merged into its
    nearest (nats, one pass over ``X``).

    The merged component matches the pair's weight and moments
    (:meth:`merged`), nothing is refitted: the likelihood's own measure of whether
    the data need the component, beside the model with one component fewer. A
    component split off a cluster the model already describes gains little;
    ``inf`` for a lone component.
    """
    k = len(parameters.weights)
    if k == 1:
        return np.array([np.inf])
    merged = [parameters.merged(i, parameters.nearest(i)) for i in range(k)]
    sums = _pass(X, partial(_merged_sums, models=[parameters] + merged))
    return sums["log_likelihood"][0] - sums["log_likelihood"][1:]


def _merged_sums(X, models):
    return {"n": X.shape[0], "log_likelihood": np.array(
        [logsumexp(model.log_joint(X), axis=1).sum() for model in models])}


def _expectation(parameters, X):
    """The E-step both models share: ``(sums, responsibilities)``, the sums (rows, total
    log-likelihood, mass per component) adding up over disjoint sets of rows."""
    joint = parameters.log_joint(X)
    likelihood = logsumexp(joint, axis=1)
    responsibilities = np.exp(joint - likelihood[:, None])
    return ({"n": X.shape[0], "log_likelihood": float(likelihood.sum()),
             "mass": responsibilities.sum(axis=0)}, responsibilities)


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


def squared_distances(rows, squared_norms, centres, centre_norms):
    """``|x_s - c_i|^2`` for each row (dense or scipy.sparse) and centre (dense, or sparse
    rows), from the squared norms of both: clipped at 0, where the expansion rounds."""
    cross = rows @ centres.T
    cross = cross.toarray() if sp.issparse(cross) else np.asarray(cross)
    return np.maximum(squared_norms[:, None] - 2.0 * cross + centre_norms, 0.0)


def spherical_log_joint(X, weights, means, variances):
    """``log w_i + log N(x; mu_i, sigma_i^2 I)`` per sample and component."""
    d = X.shape[1]
    distances = squared_distances(X, np.einsum("ij,ij->i", X, X), means,
                                  np.einsum("ij,ij->i", means, means))
    with np.errstate(divide="ignore"):
        return (-0.5 * (distances / variances + d * np.log(2 * np.pi * variances))
                + np.log(weights))
