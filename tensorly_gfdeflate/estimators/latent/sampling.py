"""Synthetic data from the latent variable models, for tests, benchmarks and examples."""

import numpy as np
import scipy.sparse as sp

from ..._checks import check_int, check_random_state

__all__ = ["sample_topic_corpus", "sample_spherical_mixture"]

# Documents drawn per batch: bounds the token arrays (about 8 bytes x 3 per token).
_DOCUMENTS_PER_BATCH = 20000


def _draw_labels(weights, n, rng):
    weights = np.asarray(weights, dtype=float)
    return rng.choice(len(weights), size=n, p=weights / weights.sum())


def sample_topic_corpus(n_documents, topics, weights, lengths, random_state=None):
    """Word counts from the single-topic model, as a sparse matrix.

    Each document draws a topic ``i`` with probability ``weights[i]`` and a
    length uniformly in ``lengths`` (inclusive), then its words independently
    from ``topics[i]``. Memory stays bounded by batches of documents.

    Parameters
    ----------
    n_documents : int >= 1
    topics : array of shape (k, n_words)
        Word distributions, rows summing to 1.
    weights : array of shape (k,)
        Topic probabilities.
    lengths : (int, int)
        Smallest and largest document length.
    random_state : None, int or numpy.random.RandomState
        numpy's global random state is never used.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_documents, n_words)
    labels : ndarray of shape (n_documents,)
        The topic of each document.
    """
    n_documents = check_int("n_documents", n_documents, 1)
    rng = check_random_state(random_state)
    topics = np.asarray(topics, dtype=float)
    cumulative = np.cumsum(topics / topics.sum(axis=1, keepdims=True), axis=1)
    labels = _draw_labels(weights, n_documents, rng)
    batches = []
    for start in range(0, n_documents, _DOCUMENTS_PER_BATCH):
        batch = labels[start:start + _DOCUMENTS_PER_BATCH]
        sizes = rng.randint(lengths[0], lengths[1] + 1, size=len(batch))
        rows = np.repeat(np.arange(len(batch)), sizes)
        token_topics = np.repeat(batch, sizes)
        uniform = rng.random_sample(len(rows))
        words = np.empty(len(rows), dtype=np.int64)
        for i in np.unique(batch):
            chosen = token_topics == i
            words[chosen] = np.searchsorted(cumulative[i], uniform[chosen], side="right")
        words = np.minimum(words, topics.shape[1] - 1)  # rounding of the last cumulative sum
        batches.append(sp.csr_matrix((np.ones(len(rows)), (rows, words)),
                                     shape=(len(batch), topics.shape[1])))
    return sp.vstack(batches, format="csr"), labels


def sample_spherical_mixture(n_samples, means, weights, sigma=1.0, random_state=None):
    """Samples ``mu_i + sigma z`` of a spherical Gaussian mixture.

    Parameters
    ----------
    n_samples : int >= 1
    means : array of shape (k, n_features)
    weights : array of shape (k,)
        Mixing proportions.
    sigma : float, default=1.0
        Common standard deviation.
    random_state : None, int or numpy.random.RandomState
        numpy's global random state is never used.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
    """
    n_samples = check_int("n_samples", n_samples, 1)
    rng = check_random_state(random_state)
    means = np.asarray(means, dtype=float)
    labels = _draw_labels(weights, n_samples, rng)
    return means[labels] + sigma * rng.standard_normal((n_samples, means.shape[1])), labels
