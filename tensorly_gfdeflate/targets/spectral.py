"""Where a partly observed tensor's components lie, per mode: the spectral start of completion.

From a uniformly random direction, the first contraction of a sparsely
observed target ``(1/p) P_Omega(T)`` is dominated by the sampling, not by the
components: at ``p = 10^-3`` in ``1000^3`` it is about 70 times larger, and
power iterations (of the probe, and of the flow's small slots alike) run to
single observed entries ("spikes") instead of components. The unfolding along
a mode averages over whole fibres: the Gram matrix ``M_k M_k^T`` of the mode-k
unfolding, with its diagonal (each entry's product with itself, the sampling's
bias) deleted, has the column space of the components as its top eigenvectors
once ``|Omega|`` is of order ``n^(3/2)`` (Montanari and Sun, "Spectral
algorithms for tensor completion", CPAM 2018). Random directions drawn in
that space start aligned with the components.

The number of directions kept is read off the spectrum itself: the deleted
diagonal leaves the noise's eigenvalues spread on both sides of zero, the
components' only on the positive side, so the eigenvalues above the largest
negative one's magnitude stand out from the noise. Weak components may not:
a residual's spectrum, once the strong ones are fitted, shows them (each
partly observed operator computes its own, see ``start_subspaces``).
"""

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, eigsh

__all__ = ["observed_subspaces"]

# Up to this mode size the Gram matrix is decomposed densely; above, the leading
# eigenvectors (at most _MAX_DIRECTIONS) come from a Lanczos solver (measured at mode
# size 1000: 0.08 s against 0.26 s for the dense solver).
_DENSE_MODE = 512
_MAX_DIRECTIONS = 32
# Kept: twice the eigenvalues above the noise's edge, and at least this many (where the
# mode has them). Components just below the edge are then still inside (measured: a
# component of a third of the strongest's energy sat 4th to 6th), and draws in the
# basis stay diverse (with a 1- or 2-dimensional basis, half of the starting slots
# shared a mode vector: 5% observed 30^3 runs took up to 17 s instead of 1 s).
_MIN_DIRECTIONS = 8


def observed_subspaces(indices, values, shape):
    """Per mode, an orthonormal basis of where the components of the observed entries lie.

    The leading eigenvectors of the Gram matrix of each mode's unfolding of
    the observed entries (zero elsewhere), with its diagonal deleted: those
    whose eigenvalue exceeds the magnitude of the most negative one. Used by
    :func:`~tensorly_gfdeflate.gradient_flow_parafac` to draw half of its
    random directions on partly observed targets.

    Parameters
    ----------
    indices : (n_obs, N) int array
        Observed coordinates.
    values : (n_obs,) float numpy array
        The tensor at those coordinates.
    shape : tuple of N ints

    Returns
    -------
    tuple of N items, each an ``(n_k, s_k)`` numpy array with orthonormal columns
    (the eigenvectors that stand above the noise) or None where none does.
    """
    values = np.asarray(values, dtype=np.float64)
    return tuple(_mode_subspace(indices, values, shape, k) for k in range(len(shape)))


def _fibres(indices, shape, k):
    """For each entry, the index of its mode-``k`` fibre among the observed fibres, and their count.

    Only observed fibres are numbered: the Gram matrix of the unfolding does
    not see empty columns, and numbering all ``prod(shape) / n_k`` of them
    would cost an index array of that length (74.5 GiB for a mode of a
    ``(10^5)^3`` tensor).
    """
    others = [m for m in range(len(shape)) if m != k]
    other_shape = tuple(shape[m] for m in others)
    if math.prod(other_shape) < 2**62:
        keys = np.ravel_multi_index(tuple(indices[:, others].T), other_shape)
        _, fibres = np.unique(keys, return_inverse=True)
    else:  # too many fibres for one int64 key: compare the coordinates themselves
        _, fibres = np.unique(indices[:, others], axis=0, return_inverse=True)
    fibres = fibres.ravel()
    return fibres, int(fibres.max()) + 1


def _mode_subspace(indices, values, shape, k):
    n = shape[k]
    if n < 2:
        return None
    fibres, n_fibres = _fibres(indices, shape, k)
    unfolding = sp.csr_matrix((values, (indices[:, k], fibres)), shape=(n, n_fibres))
    gram = (unfolding @ unfolding.T).tocsr()
    gram.setdiag(0.0)
    gram.eliminate_zeros()
    if gram.nnz == 0:
        return None  # no two observed entries share a fibre: the spectrum says nothing
    lowest, eigenvalues, eigenvectors = _spectrum(gram)
    above = int(np.count_nonzero(eigenvalues > -lowest))
    if above == 0:
        return None
    keep = min(max(2 * above, _MIN_DIRECTIONS), len(eigenvalues))
    leading = np.argsort(-eigenvalues, kind="stable")[:keep]
    return eigenvectors[:, leading]


def _spectrum(gram):
    """``(lowest, eigenvalues, eigenvectors)``: the smallest eigenvalue, and the leading eigenpairs.

    When the Lanczos solver fails or does not converge, the pairs it did
    converge are used (none: the mode gets no subspace, and its starts stay
    uniform); an unconverged smallest eigenvalue counts as 0, so that every
    positive eigenvalue found stands above the noise.
    """
    n = gram.shape[0]
    if n <= _DENSE_MODE:
        eigenvalues, eigenvectors = np.linalg.eigh(gram.toarray())
        return eigenvalues[0], eigenvalues, eigenvectors
    start = np.ones(n) / math.sqrt(n)  # a fixed start: the same tensor, the same basis
    try:
        eigenvalues, eigenvectors = eigsh(gram, k=min(_MAX_DIRECTIONS, n - 2), which="LA",
                                          v0=start)
    except ArpackError as failure:  # ArpackNoConvergence keeps what did converge
        eigenvalues = getattr(failure, "eigenvalues", np.zeros(0))
        eigenvectors = getattr(failure, "eigenvectors", np.zeros((n, 0)))
    try:
        lowest = eigsh(gram, k=1, which="SA", v0=start, return_eigenvectors=False)[0]
    except ArpackError as failure:
        found = getattr(failure, "eigenvalues", np.zeros(0))
        lowest = float(found[0]) if len(found) else 0.0
    return lowest, eigenvalues, eigenvectors
