"""The single-topic model fitted by the method of moments.

Each document draws one topic ``i`` with probability ``w_i``, then each of
its words independently from the topic's word distribution ``mu_i``. The
unbiased second and third moments of the word counts are
``M2 = sum_i w_i mu_i mu_i^T`` and ``M3 = sum_i w_i mu_i^(x)3``
(Anandkumar, Ge, Hsu, Kakade and Telgarsky, JMLR 2014, section 3.1).
"""

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import validate_data

from .._checks import user_stacklevel
from ._base import MomentEstimator
from .whitening import (
    TopicMoments,
    check_rank,
    top_eigenpairs,
    topic_second_moment,
    unwhiten,
    whitening_from_eigenpairs,
)

__all__ = ["SingleTopicModel"]

# Word probabilities are floored here in likelihoods: a word that the fitted
# topics give probability 0 (a clipped negative estimate) would otherwise
# make a document impossible under every topic.
_PROBABILITY_FLOOR = 1e-12
# The unbiased third moment needs three distinct word positions.
_MIN_DOCUMENT_LENGTH = 3


def check_counts(X):
    """Raise unless ``X`` holds non-negative integer counts (dense or sparse, float64)."""
    values = X.data if sp.issparse(X) else X
    if values.size and values.min() < 0:
        raise ValueError("X must hold non-negative word counts; it has negative entries.")
    if values.size and np.any(values != np.round(values)):
        raise ValueError(
            "X must hold integer word counts (documents x words); it has fractional entries. "
            "Pass raw counts, not frequencies or tf-idf weights.")


class SingleTopicModel(MomentEstimator):
    """Single-topic model (one topic per document) by decomposition of the third moment.

    ``fit`` forms the unbiased second moment ``M2`` of the word counts as an
    implicit operator, takes its top ``n_components`` eigenpairs, and
    decomposes the third moment projected on them (a ``k x k x k`` array,
    built in one pass over the documents; never ``n_words^3``) with
    :class:`~tensorly_gfdeflate.GradientFlowCP` or
    :class:`~tensorly_gfdeflate.PowerDeflationCP`.

    Parameters
    ----------
    n_components : int >= 1
        Number of topics ``k``; at most the rank of ``M2``.
    solver : {"gradient_flow", "power_deflation"}, default="gradient_flow"
        The decomposition: over-parametrized gradient flow or the tensor power
        method with deflation.
    whiten : bool, default=True
        True: project by the whitening ``W = U_k diag(s_k)^(-1/2)`` of ``M2``,
        which makes the components orthonormal (topic ``i`` becomes
        ``sqrt(w_i) W^T mu_i`` with weight ``w_i^(-1/2)``). False: project by
        the orthonormal eigenvectors ``U_k`` only, an isometry of the span of
        the topics, so that the components keep their geometry (non-orthogonal,
        the topics ``U_k^T mu_i`` with weights ``w_i``): the raw third moment,
        in ``k`` coordinates.
    solver_options : dict or None, default=None
        Parameters of the solver, except ``rank`` and ``random_state``.
    random_state : None, int or numpy.random.RandomState
        Seed of the eigensolver's start and of the solver; numpy's global
        random state is never used.

    Attributes
    ----------
    topic_word_ : ndarray of shape (n_found, n_words)
        Word distribution of each topic found: non-negative rows summing to 1
        (negative estimates, which sampling noise produces for rare words, are
        clipped to 0 before normalizing). Sorted by weight, descending.
    topic_weights_ : ndarray of shape (n_found,)
        Probability of each topic, normalized to sum to 1 over those found.
    n_sources_found_ : int
        Number ``n_found`` of topics the solver found; below ``n_components`` comes with
        a ConvergenceWarning, and missing topics are never filled in.
    converged_ : bool
        The solver's verdict (its result passed its check) and all topics found.
    trace_ : FlowTrace or PowerTrace
        The solver's trace.
    projection_ : ndarray of shape (n_words, n_components)
        The whitening ``W`` or the orthonormal basis ``U_k``.
    n_documents_dropped_ : int
        Documents of fewer than 3 words left out of ``fit``.
    n_features_in_ : int
        Number of words in the vocabulary.

    Notes
    -----
    Documents of different lengths each contribute their unbiased estimate
    (normalized by ``L (L-1)`` and ``L (L-1) (L-2)``), averaged with equal
    weight. Documents of fewer than 3 words carry no third-order
    information: ``fit`` drops them with a warning that says how many.

    With ``whiten=True`` the topics are ``mu_i = lambda_i (W^T)^+ v_i`` and
    the weights ``lambda_i^(-2)``; with ``whiten=False``,
    ``mu_i = U_k v_i / sum(U_k v_i)`` and ``w_i = lambda_i sum(U_k v_i)^3``.
    A component whose weight comes out non-positive is not a topic and is not
    counted as found.

    Examples
    --------
    >>> import numpy as np
    >>> from tensorly_gfdeflate import SingleTopicModel
    >>> rng = np.random.RandomState(0)
    >>> topics = np.array([[0.6, 0.3, 0.1, 0.0], [0.0, 0.1, 0.3, 0.6]])
    >>> labels = rng.choice(2, size=20000, p=[0.7, 0.3])
    >>> X = np.array([rng.multinomial(10, topics[i]) for i in labels])
    >>> model = SingleTopicModel(2, random_state=0).fit(X)
    >>> np.round(model.topic_weights_, 2)
    array([0.7, 0.3])
    >>> np.round(model.topic_word_, 1)
    array([[0.6, 0.3, 0.1, 0. ],
           [0. , 0.1, 0.3, 0.6]])
    """

    def fit(self, X, y=None):
        """Estimate the topics and their weights from the word counts ``X``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_documents, n_words)
            Non-negative integer word counts; never densified.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64)
        n_components = self._check_params(
            X.shape[1], f"the {X.shape[1]} words of X: M2 has rank at most {X.shape[1]}")
        check_counts(X)
        X = self._drop_short_documents(X)
        values, vectors = top_eigenpairs(topic_second_moment(X), n_components,
                                         self.random_state)
        check_rank(values)
        self.projection_ = (whitening_from_eigenpairs(values, vectors) if self.whiten
                            else vectors)
        weights, factors = self._decompose(TopicMoments(X, self.projection_), n_components)
        if self.whiten:
            topic_weights, topics = unwhiten(weights, factors, self.projection_)
        else:
            topics = (self.projection_ @ factors).T
            sums = topics.sum(axis=1)
            topic_weights, topics = weights * sums**3, topics / sums[:, None]
        self._set_topics(topic_weights, topics, n_components)
        return self

    def _drop_short_documents(self, X):
        lengths = np.asarray(X.sum(axis=1)).ravel()
        short = lengths < _MIN_DOCUMENT_LENGTH
        self.n_documents_dropped_ = int(short.sum())
        if short.all():
            raise ValueError(
                f"X has no document of at least {_MIN_DOCUMENT_LENGTH} words; the third "
                "moment needs three words per document.")
        if self.n_documents_dropped_:
            warnings.warn(
                f"{self.n_documents_dropped_} of {len(lengths)} documents in X have fewer than "
                f"{_MIN_DOCUMENT_LENGTH} words and were left out of fit.",
                UserWarning, stacklevel=user_stacklevel())
            X = X[~short]
        return X

    def _set_topics(self, weights, topics, n_components):
        """Keep the valid topics, normalized and sorted by weight; report how many."""
        # A real topic has positive weight and positive total mass; noise fitted
        # as a component can have either negative.
        valid = (weights > 0) & (topics.sum(axis=1) > 0)
        topics = np.clip(topics[valid], 0.0, None)
        weights = weights[valid]
        order = np.argsort(-weights, kind="stable")
        self.topic_word_ = topics[order] / topics[order].sum(axis=1, keepdims=True)
        self.topic_weights_ = weights[order] / weights.sum()
        self._report_found(len(weights), n_components)

    def _log_joint(self, X):
        """``log w_i + sum_j c_j log mu_ij`` per document and topic: the word sequence's
        log-probability under each topic."""
        self._check_fitted()
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        check_counts(X)
        log_topics = np.log(np.maximum(self.topic_word_, _PROBABILITY_FLOOR))
        return np.asarray(X @ log_topics.T) + np.log(self.topic_weights_)

    def transform(self, X):
        """Posterior probability of each topic for each document.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_documents, n_words)
            Word counts (any length, including empty documents).

        Returns
        -------
        ndarray of shape (n_documents, n_found)
            Rows sum to 1.
        """
        return self._posterior(X)

    def score(self, X, y=None):
        """Average log-likelihood per document of its word sequence under the fitted model.

        ``log sum_i w_i prod_j mu_ij^(c_j)``: the probability of the words in
        their order (the multinomial coefficient, which does not depend on the
        model, is left out). Word probabilities are floored at 1e-12.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_documents, n_words)
            Word counts.
        y : None
            Ignored.

        Returns
        -------
        float
        """
        return float(np.mean(self._log_likelihood(X)))
