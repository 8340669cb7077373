"""Building blocks of the method of moments: moment operators, whitening, un-whitening.

For a latent variable model whose second and third moments are
``M2 = sum_i w_i mu_i mu_i^T`` and ``M3 = sum_i w_i mu_i^(x)3``
(Anandkumar, Ge, Hsu, Kakade and Telgarsky, JMLR 2014; Hsu and Kakade 2013),
the model is recovered from a symmetric CP decomposition of ``M3``. The
operators here give ``M3`` (projected on ``k`` directions when the data are
high-dimensional) to the solvers without ever building the ``d^3`` array;
the functions turn ``M2`` into a whitening and the decomposition back into
the model's ``(w_i, mu_i)``.
"""

import copy
import dataclasses

import numpy as np
import scipy.sparse as sp
import tensorly as tl
from scipy.sparse.linalg import LinearOperator, eigsh

from ..._checks import check_random_state
from ...targets.base import int_power
from ...targets.symmetric import (
    _DENSE_CACHE_ENTRIES,
    DenseOperator,
    SampleMoments,
    SymmetricOperator,
)

__all__ = [
    "TopicMoments",
    "topic_third_sums",
    "topic_second_sums",
    "topic_second_from_sums",
    "topic_third_tensor",
    "SphericalCorrection",
    "MixtureMoments",
    "topic_second_moment",
    "top_eigenpairs",
    "check_rank",
    "whitening_from_eigenpairs",
    "unwhiten",
]

# Above this many features the top eigenpairs of M2 come from Lanczos
# iterations on the implicit matrix instead of a dense d x d eigensolver. Measured
# (10 eigenpairs, scikit-learn's docstrings, 1 BLAS thread): even at 200 words
# (9.6 ms dense, 9.0 ms Lanczos); at 1000 words 167 ms against 15 ms.
_DENSE_EIGEN_FEATURES = 200
# An eigenvalue below this fraction of the largest counts as zero when
# checking that M2 has rank n_components (rounding, not sampling, noise).
_RANK_TOLERANCE = 1e-10
# Documents per block when building the projected third moment: bounds the
# n_block x k^2 temporaries.
_BLOCK_ENTRIES = 2**22


def _inverse_falling_factorial(X, terms):
    """``1 / (L (L-1) ... (L-terms+1))`` per document of lengths ``L``: the unbiased
    estimators' normalization; defined for documents of at least ``terms`` words."""
    lengths = np.asarray(X.sum(axis=1), dtype=float).ravel()
    if lengths.size and lengths.min() < terms:
        raise ValueError(
            f"X has {int(np.sum(lengths < terms))} documents of fewer than {terms} words; "
            f"the order-{terms} moment needs {terms} words per document. Drop them first.")
    product = np.ones_like(lengths)
    for j in range(terms):
        product = product * (lengths - j)
    return 1.0 / product


class TopicMoments(SymmetricOperator):
    """Unbiased third moment ``M3(P, P, P)`` of the single-topic model, from word counts.

    For a document with word counts ``c`` and length ``L = sum(c)``,
    drawn from one topic ``mu`` (words independent given the topic), the
    per-document estimate

    ``(c^(x)3 - sum_i c_i sym(e_i, e_i, c) + 2 sum_i c_i e_i^(x)3) / (L (L-1) (L-2))``

    has expectation ``mu^(x)3`` whatever ``L`` (``sym`` sums the three
    placements of ``c``): it counts ordered triples of distinct word
    positions. The operator is the average over documents, projected by the
    ``d x k`` matrix ``P``: ``T = M3(P, P, P)`` of dimension ``k``. It is
    built in one pass over the documents as a dense ``k^3`` array, from
    ``Y = C P`` and the ``d x k`` correction ``Z = C^T (a Y)``; the
    ``d^3`` array is never built.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n_documents, n_words)
        Non-negative integer word counts, at least 3 words per document
        (shorter ones raise; the counts themselves are the caller's to
        validate: see :class:`~tensorly_gfdeflate.SingleTopicModel`).
    projection : ndarray of shape (n_words, k) or None, default=None
        ``P``: a whitening of ``M2`` (:func:`whitening_from_eigenpairs`) or an
        orthonormal basis of its top eigenspace. None: the identity, allowed
        only while the ``n_words^3`` array stays small (2**22 entries).

    Attributes
    ----------
    n_samples : int
        Number of documents.

    Notes
    -----
    :meth:`standard_error` is the standard deviation of the per-document
    estimates of ``T(v^3)`` over ``sqrt(n)``; the norm is exact.
    Contractions and the norm use ``tl`` operations on the dense ``k^3``
    array; building it and :meth:`standard_error` use numpy and
    ``scipy.sparse`` (word counts are numpy data).
    """

    def __init__(self, X, projection=None):
        if projection is None:
            if X.shape[1] ** 3 > _DENSE_CACHE_ENTRIES:
                raise ValueError(
                    f"projection=None with n_words={X.shape[1]} would build an n_words^3 array; "
                    "pass a projection (for example from whitening_from_eigenpairs).")
            projection = np.eye(X.shape[1])
        projection = np.asarray(projection, dtype=float)
        self._set_sums(X, projection, topic_third_sums(X, projection))

    @classmethod
    def from_sums(cls, X, projection, sums):
        """The operator from :func:`topic_third_sums` added up over all the documents.

        Parameters
        ----------
        X : ndarray or scipy.sparse matrix of shape (m, n_words)
            Some of those documents (for example one chunk of a Dask array),
            each of at least 3 words: they estimate :meth:`standard_error`.
        projection : ndarray of shape (n_words, k)
            ``P``, the one the sums were taken with.
        sums : dict
            The sums over all ``n_samples`` documents.
        """
        operator = cls.__new__(cls)
        operator._set_sums(X, np.asarray(projection, dtype=float), sums)
        return operator

    def _set_sums(self, X, projection, sums):
        self.X, self.projection = X, projection
        self.n_samples, self.order, self.dim = sums["n"], 3, projection.shape[1]
        self._doc_weights = _inverse_falling_factorial(X, 3)
        tensor = topic_third_tensor(sums, projection)
        self._dense = DenseOperator.from_trusted(tl.tensor(tensor))
        self._context = self._dense.context

    def __repr__(self):
        return f"TopicMoments(X of shape {(self.n_samples, self.X.shape[1])}, dim={self.dim})"

    def contract(self, V):
        return self._dense.contract(V)

    def _norm_parts(self):
        return self._dense._norm_parts()

    def to_dense(self):
        """The ``k^3`` array (tests and small problems)."""
        return self._dense.tensor

    def document_estimates(self, V):
        """Each document's unbiased estimate of ``T(v^3)``, shape ``(n_documents, m)``.

        ``((c.u)^3 - 3 (c.u) (c.u^2) + 2 c.u^3) / (L (L-1) (L-2))`` with
        ``u = P v``: their mean is :meth:`evaluate`. Of an operator made
        :meth:`from_sums`, the estimates of the documents it kept.
        """
        U = self.projection @ tl.to_numpy(V)
        first, second, third = (np.asarray(self.X @ int_power(U, j)) for j in (1, 2, 3))
        raw = int_power(first, 3) - 3.0 * first * second + 2.0 * third
        return self._doc_weights[:, None] * raw

    def standard_error(self, V):
        """Standard error of ``T(v^3)`` per column: the spread of the per-document estimates
        (of the documents kept, made :meth:`from_sums`) over ``sqrt(n_samples)``."""
        estimates = self.document_estimates(V)
        # Fewer than two documents (a Dask sample chunk of short ones) show no spread.
        spread = (estimates.std(axis=0, ddof=1) if len(estimates) > 1
                  else np.zeros(estimates.shape[1]))
        return tl.tensor(spread / np.sqrt(self.n_samples), **self.context)


def topic_third_sums(X, projection):
    """The sums over the documents ``X`` that make :class:`TopicMoments`.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n_documents, n_words)
        Word counts, at least 3 words per document.
    projection : ndarray of shape (n_words, k)
        ``P``.

    Returns
    -------
    dict
        ``n``; ``cubes``, the ``k x k^2`` unfolding of ``sum a y^(x)3`` with
        ``y = P^T c``; ``once``, the ``d x k`` ``sum a c y^T``; ``diagonal``,
        ``sum a c`` (``a = 1 / (L (L-1) (L-2))``). Sums of disjoint sets of
        documents add up to those of their union.
    """
    P, k, a = projection, projection.shape[1], _inverse_falling_factorial(X, 3)
    rows = max(1, _BLOCK_ENTRIES // (k * k))
    cubes = np.zeros((k, k * k))
    once = np.zeros_like(P)
    for start in range(0, X.shape[0], rows):
        counts = X[start:start + rows]
        Y = np.asarray(counts @ P)
        weighted = a[start:start + rows, None] * Y
        cubes += weighted.T @ (Y[:, :, None] * Y[:, None, :]).reshape(len(Y), -1)
        once += np.asarray(counts.T @ weighted)
    return dict(n=X.shape[0], cubes=cubes, once=once, diagonal=np.asarray(X.T @ a).ravel())


def topic_third_tensor(sums, projection):
    """The ``k^3`` array ``M3(P, P, P)`` from :func:`topic_third_sums`: the ``y^(x)3``
    term minus the rank-structured corrections."""
    P, k = projection, projection.shape[1]
    once = np.einsum("ia,ib,ic->abc", P, P, sums["once"])
    corrections = once + once.transpose(0, 2, 1) + once.transpose(2, 1, 0)
    diagonal = np.einsum("i,ia,ib,ic->abc", sums["diagonal"], P, P, P)
    tensor = sums["cubes"].reshape(k, k, k) - corrections + 2.0 * diagonal
    return tensor / sums["n"]


def topic_second_sums(X):
    """The sums over the documents ``X`` that make the dense unbiased second moment.

    ``M2 = (outer - diag(diagonal)) / n`` (:func:`topic_second_from_sums`)
    with ``outer = sum a c c^T`` and ``diagonal = sum a c``,
    ``a = 1 / (L (L-1))``: a ``d x d`` array, for a vocabulary small enough to
    hold it (a pass over a Dask array; in memory, :func:`topic_second_moment`
    never builds it).

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n_documents, n_words)
        Word counts of some documents (one chunk of a Dask array), at least 2
        words each.

    Returns
    -------
    dict
        ``n``, ``outer`` and ``diagonal``; sums of disjoint sets of documents
        add up to those of their union.
    """
    a = _inverse_falling_factorial(X, 2)
    weighted = X.multiply(a[:, None]) if sp.issparse(X) else a[:, None] * X
    outer = X.T @ weighted
    return dict(n=X.shape[0], outer=outer.toarray() if sp.issparse(outer) else outer,
                diagonal=np.asarray(X.T @ a).ravel())


def topic_second_from_sums(sums):
    """The unbiased second moment ``M2`` (a ``d x d`` array) from :func:`topic_second_sums`."""
    return (sums["outer"] - np.diag(sums["diagonal"])) / sums["n"]


def topic_second_moment(X):
    """The unbiased second moment ``M2`` of the single-topic model, as a symmetric LinearOperator.

    ``M2 v = C^T (a (C v)) - (C^T a) * v`` with ``a = 1 / (n L (L-1))``: the
    average of ``(c c^T - diag(c)) / (L (L-1))``, never built as a ``d x d``
    array.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n_documents, n_words)
        Word counts, at least 2 words per document.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator of shape (n_words, n_words)
    """
    a = _inverse_falling_factorial(X, 2) / X.shape[0]
    diagonal = np.asarray(X.T @ a).ravel()

    def apply(v):
        v = v.reshape(X.shape[1], -1)
        product = np.asarray(X.T @ (a[:, None] * np.asarray(X @ v))) - diagonal[:, None] * v
        return product

    d = X.shape[1]
    return LinearOperator((d, d), matvec=apply, matmat=apply, rmatvec=apply, dtype=float)


def top_eigenpairs(matrix, n_components, random_state=None):
    """The ``n_components`` largest eigenvalues (descending) and eigenvectors of a symmetric matrix.

    A dense eigensolver for small matrices; Lanczos iterations
    (``scipy.sparse.linalg.eigsh``) on the implicit operator above 200
    rows, started from a vector drawn from ``random_state``.

    Parameters
    ----------
    matrix : ndarray or scipy.sparse.linalg.LinearOperator of shape (d, d)
        Symmetric.
    n_components : int
        Number of eigenpairs, ``< d`` for the iterative solver.
    random_state : None, int or numpy.random.RandomState
        Start of the iterations; numpy's global random state is never used.

    Returns
    -------
    values : ndarray of shape (n_components,)
    vectors : ndarray of shape (d, n_components)
        Orthonormal columns, each with its largest-magnitude entry positive.
    """
    d = matrix.shape[0]
    if d <= _DENSE_EIGEN_FEATURES or n_components >= d - 1:
        dense = matrix @ np.eye(d) if isinstance(matrix, LinearOperator) else np.asarray(matrix)
        values, vectors = np.linalg.eigh((dense + dense.T) / 2)
        values, vectors = values[::-1][:n_components], vectors[:, ::-1][:, :n_components]
    else:
        start = check_random_state(random_state).standard_normal(d)
        values, vectors = eigsh(matrix, k=n_components, which="LA", v0=start)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
    largest = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])]
    return values, vectors * np.where(largest < 0, -1.0, 1.0)


def whitening_from_eigenpairs(values, vectors, name="n_components"):
    """``W = U diag(s)^(-1/2)``, so that ``W^T M2 W = I`` on the top eigenspace.

    Parameters
    ----------
    values : ndarray of shape (k,)
        The top eigenvalues ``s`` of ``M2``, descending.
    vectors : ndarray of shape (d, k)
        Their eigenvectors ``U``.
    name : str, default="n_components"
        The argument to blame when ``M2`` has rank below ``k``.

    Returns
    -------
    ndarray of shape (d, k)

    Raises
    ------
    ValueError
        When an eigenvalue is not positive: ``M2`` has rank below ``k``.
    """
    check_rank(values, name)
    return vectors / np.sqrt(values)


def check_rank(values, name="n_components"):
    """Raise unless the top ``k`` eigenvalues of ``M2`` are positive (``M2`` has rank ``>= k``)."""
    floor = _RANK_TOLERANCE * max(float(values[0]), 0.0)
    rank = int(np.sum(values > floor))
    if rank < len(values):
        raise ValueError(
            f"{name}={len(values)} exceeds the rank {rank} of the second moment M2: the data "
            f"support at most {rank} component(s). Lower {name}, or pass more (or more varied) "
            "data.")


def unwhiten(weights, factors, whitening):
    """The model's ``(w_i, mu_i)`` from the decomposition of a whitened third moment.

    The whitened tensor is ``sum_i w_i^(-1/2) (sqrt(w_i) W^T mu_i)^(x)3`` with
    orthonormal factors ``v_i``; hence ``mu_i = lambda_i (W^T)^+ v_i`` and
    ``w_i = lambda_i^(-2)``.

    Parameters
    ----------
    weights : ndarray of shape (r,)
        ``lambda_i``, positive.
    factors : ndarray of shape (k, r)
        Unit ``v_i``.
    whitening : ndarray of shape (d, k)
        ``W``.

    Returns
    -------
    mixing_weights : ndarray of shape (r,)
    means : ndarray of shape (r, d)
    """
    means = (np.linalg.pinv(whitening.T) @ factors * weights).T
    return weights ** -2.0, means


class SphericalCorrection(SymmetricOperator):
    """``sigma^2 sym(m (x) G)``: the correction of a third moment for spherical noise.

    For ``x = mu + sigma z`` with ``z`` standard Gaussian and ``E[x] = m``,
    ``E[x^(x)3] = sum_i w_i mu_i^(x)3 + sigma^2 sum_j sym(m, e_j, e_j)``
    (Hsu and Kakade 2013); projected by ``P`` the last term is
    ``sigma^2 sym(P^T m, G)`` with ``G = P^T P`` (``sym`` sums the three
    placements of ``m``). Its contraction is
    ``sigma^2 ((v^T G v) m + 2 (m.v) G v)``, in ``O(k^2)`` per vector; it
    is never densified.

    Parameters
    ----------
    mean : tensor of shape (k,)
        ``m`` (projected).
    variance : float
        ``sigma^2``.
    gram : tensor of shape (k, k)
        ``G``: the identity without projection.

    Notes
    -----
    Exact (``standard_error`` is None); its squared norm is
    ``sigma^4 (3 |m|^2 |G|_F^2 + 6 m^T G^2 m)``.
    """

    def __init__(self, mean, variance, gram):
        self.mean, self.variance, self.gram = tl.tensor(mean), float(variance), tl.tensor(gram)
        self.order, self.dim = 3, tl.shape(self.mean)[0]
        self._context = tl.context(self.mean)

    def contract(self, V):
        # The arrays' own operations (numpy and torch alike): no backend dispatch in a
        # flow step, which contracts this twice (a third of a wine-table fit's steps).
        GV = self.gram @ V
        quadratic = (V * GV).sum(axis=0)
        return self.variance * (self.mean.reshape(-1, 1) * quadratic
                                + 2.0 * (self.mean @ V) * GV)

    def _compute_norm_sq(self):
        Gm = tl.dot(self.gram, self.mean)
        return self.variance**2 * float(
            3.0 * tl.sum(self.mean**2) * tl.sum(self.gram**2) + 6.0 * tl.sum(Gm**2))

    def to_dense(self):
        """The dense ``k^3`` array (tests and small problems)."""
        once = tl.reshape(self.mean, (-1, 1, 1)) * tl.reshape(self.gram, (1, self.dim, self.dim))
        return self.variance * (once + tl.transpose(once, (1, 0, 2))
                                + tl.transpose(once, (1, 2, 0)))


class MixtureMoments(SymmetricOperator):
    """Third moment of a spherical Gaussian mixture with the noise removed: ``M3 - sigma^2 sym(m, I)``.

    ``SampleMoments(X P, 3)`` minus :class:`SphericalCorrection`, applied
    inside every contraction (neither is densified beyond what
    :class:`~tensorly_gfdeflate.SampleMoments` itself caches). Its
    expectation is ``sum_i w_i (P^T mu_i)^(x)3``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        The data.
    variance : float
        ``sigma^2``: the mean of the covariance's eigenvalues over
        ``noise_basis``.
    noise_basis : array of shape (n_features, q)
        Orthonormal eigenvectors of the covariance that the means do not
        span (the ``q`` smallest; used for the influence of ``sigma^2`` in
        :meth:`standard_error`).
    projection : array of shape (n_features, k) or None, default=None
        ``P`` (for example a whitening); None for the identity.

    Attributes
    ----------
    moments : SampleMoments
        The raw third moment of ``X P``.
    correction : SphericalCorrection

    Notes
    -----
    The squared norm is ``|M|^2 - 2 <M, C> + |C|^2`` with the cross term
    ``<M, C> = mean_s C(y_s^3)`` exact; ``|M|^2`` is that of
    :class:`~tensorly_gfdeflate.SampleMoments` (exact or its documented
    estimate). :meth:`standard_error` takes the first-order influence of
    each sample on ``T(v^3)``, through the moment, the mean and
    ``sigma^2`` (whose influence is ``|Q^T (x - m)|^2 / q - sigma^2`` for
    the noise basis ``Q``); the projection is held fixed.
    """

    def __init__(self, X, variance, noise_basis, projection=None):
        X = np.asarray(X, dtype=float)
        projection = np.eye(X.shape[1]) if projection is None else np.asarray(projection)
        Y = X @ projection
        self._set_parts(SampleMoments(tl.tensor(Y), 3), Y.mean(axis=0), variance, projection,
                        (X - X.mean(axis=0)) @ np.reshape(noise_basis, (X.shape[1], -1)))

    @classmethod
    def from_sums(cls, X, sums, rows, mean, variance, noise_basis, projection=None):
        """The operator from a pass over a Dask array
        (:func:`~tensorly_gfdeflate.targets.dask_moments.moment_sums`).

        Parameters
        ----------
        X : dask.array.Array of shape (n_samples, n_features)
            The data the sums describe (kept lazily, never computed).
        sums : MomentSums
            Order-3 sums of ``X P`` over all samples (``rotation=P.T``).
        rows : ndarray of shape (m, n_features)
            Some rows of ``X`` (one chunk): they estimate :meth:`standard_error`.
        mean : ndarray of shape (n_features,)
            The mean of all of ``X``.
        variance, noise_basis, projection
            As for the constructor.
        """
        projection = np.eye(len(mean)) if projection is None else np.asarray(projection)
        sums = dataclasses.replace(sums, sample=rows @ projection)
        operator = cls.__new__(cls)
        operator._set_parts(SampleMoments.from_sums(X @ projection, 3, sums), sums.first / sums.n,
                            variance, projection,
                            (rows - mean) @ np.reshape(noise_basis, (len(mean), -1)))
        return operator

    def _set_parts(self, moments, projected_mean, variance, projection, noise_scores):
        self.moments = moments
        self.correction = SphericalCorrection(projected_mean, variance,
                                              projection.T @ projection)
        self._noise_spread = np.mean(noise_scores**2, axis=1)
        self._projection, self._standard_error_of = projection, self
        self.order, self.dim = 3, moments.dim
        self.norm_is_estimate = self.moments.norm_is_estimate
        self._context = self.moments.context

    def recorrected(self, noise_means):
        """The same sample moment minus ``sym(P^T u, G)`` with ``u = noise_means``: the third
        moment with the noise of a fitted mixture taken out.

        For components of variances ``sigma_i^2``, ``u = sum_i w_i sigma_i^2 mu_i``
        (``sigma^2 m`` for a common variance). The standard errors stay those
        of this operator's estimate: the fitted noise is held fixed, as the
        projection is.
        """
        operator = copy.copy(self)
        operator.__dict__.pop("_norm_parts_cache", None)
        projected = tl.dot(tl.tensor(self._projection.T), tl.tensor(noise_means))
        operator.correction = SphericalCorrection(projected, 1.0, self.correction.gram)
        operator._standard_error_of = self
        return operator

    def _rows(self):
        """The rows of ``X P`` the standard errors come from: all, or one chunk of a Dask array."""
        return self.moments._error_rows if self.moments.is_reduced else self.moments.X

    def __repr__(self):
        return f"MixtureMoments(X of shape {(self.moments.n_samples, self.dim)})"

    def contract(self, V):
        return self.moments.contract(V) - self.correction.contract(V)

    def standard_error(self, V):
        """Standard error of ``T(v^3)`` per column, from each sample's first-order influence."""
        if self._standard_error_of is not self:
            return self._standard_error_of.standard_error(V)
        Y, correction = self._rows(), self.correction
        projected = tl.dot(Y, V)
        quadratic = tl.sum(V * tl.dot(correction.gram, V), axis=0)
        linear = tl.dot(correction.mean, V)
        influence = (int_power(projected, 3) - 3.0 * correction.variance * quadratic * projected
                     - 3.0 * quadratic * linear * tl.reshape(tl.tensor(self._noise_spread),
                                                             (-1, 1)))
        centred = influence - tl.mean(influence, axis=0)
        spread = tl.sum(centred * centred, axis=0) / (tl.shape(Y)[0] - 1)
        return tl.sqrt(spread / self.moments.n_samples)

    def _norm_parts(self):
        magnitude, moments_sq = self.moments._cached_norm_parts()
        correction = self.correction
        if self.moments.is_reduced:
            # mean_s (y_s^T G y_s) (m . y_s) is the dense moment tensor contracted with G and m.
            along = tl.reshape(correction.gram, (self.dim, self.dim, 1)) * correction.mean
            mean_cross = float(tl.sum(self.moments.to_dense() * along))
        else:
            Y = self.moments.X
            quadratic = tl.sum(Y * tl.dot(Y, correction.gram), axis=1)
            mean_cross = float(tl.mean(quadratic * tl.dot(Y, correction.mean)))
        cross = 3.0 * correction.variance * mean_cross
        # magnitude is a power of two at the scale of the moments: exact to divide by.
        total = moments_sq - 2.0 * cross / magnitude**2 + correction.norm_sq / magnitude**2
        return magnitude, max(total, 0.0)

    def to_dense(self):
        """The dense ``k^3`` array (tests and small problems)."""
        return self.moments.to_dense() - self.correction.to_dense()
