"""Moments of data that does not fit in memory: one Dask reduction over the row chunks per pass.

A :class:`dask.array.Array` of shape ``(n_samples, n_features)``, chunked
along its rows only, is read chunk by chunk by whatever Dask scheduler is
active (a ``distributed.Client`` when the caller has made one, Dask's threads
otherwise). Each pass is a tree of partial sums, one leaf per chunk, so no
more than a chunk's worth of rows is ever in one place: ``X`` itself is never
computed. A pass returns the small sums the solvers need (count, first and
second moments, the dense ``d^l`` moment tensor) and one chunk of rows, kept
as a sample for standard errors.

Dask is imported only when a Dask array is passed: the package does not need
it otherwise (``pip install 'tensorly-gfdeflate[dask]'``).
"""

from dataclasses import dataclass
from functools import partial, reduce

import numpy as np
import scipy.sparse as sp

from .base import distinct_products, products

__all__ = ["check_dask_matrix", "chunk_sums", "MomentSums", "moment_sums",
           "mean_and_second_moment", "central_moment_sums"]

# The dense moment tensor built by a pass holds at most this many entries (32 MB).
MAX_DENSE_ENTRIES = 2**22
# Entries of the products formed at once when summing a chunk (16 MB of float64).
_SLICE_ENTRIES = 2**21
# Rows kept (from one chunk) to estimate standard errors of the statistics.
SAMPLE_ROWS = 100_000
# ... and at most this many entries of them (128 MB): wide X keeps fewer rows.
_SAMPLE_ENTRIES = 2**24


def check_dask_matrix(X, name="X", min_samples=2):
    """Raise a clear error unless ``X`` is a 2-D float Dask array chunked along rows only,
    of at least ``min_samples`` rows."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_samples, n_features) Dask array, "
                         f"got shape {X.shape}.")
    if any(np.isnan(size) for size in X.chunks[0]):
        raise ValueError(
            f"{name} has unknown chunk sizes (a Dask array from a DataFrame or a filter); "
            f"call {name}.compute_chunk_sizes(), or use DataFrame.to_dask_array(lengths=True)."
        )
    if len(X.chunks[1]) != 1:
        raise ValueError(
            f"{name} is chunked along its columns ({len(X.chunks[1])} column chunks); moments "
            f"need whole rows: rechunk with {name}.rechunk({{1: -1}})."
        )
    if not np.issubdtype(X.dtype, np.floating):
        raise TypeError(f"{name} has dtype {X.dtype}; pass a real floating-point array "
                        f"(for example {name}.astype(float)).")
    if X.shape[0] < min_samples:
        raise ValueError(f"{name} must have at least {min_samples} samples (rows), "
                         f"got {X.shape[0]}.")


@dataclass
class MomentSums:
    """What one pass over the rows ``y`` collected (sums, not means).

    Attributes
    ----------
    n : int
        Rows read.
    first : ndarray of shape (d,)
        ``sum y``.
    second : ndarray of shape (d, d)
        ``sum y y^T``.
    high : ndarray of shape (d,) * order, or None
        ``sum y^(x)order`` (order >= 3).
    sample : ndarray of shape (m, d)
        The rows of one chunk (at most ``SAMPLE_ROWS`` of them), as they were
        transformed.
    """

    n: int
    first: np.ndarray
    second: np.ndarray
    high: np.ndarray
    sample: np.ndarray


def _outer_power(rows, order):
    """``sum_s y_s^(x)order`` as an array of shape ``(d,) * order``.

    One GEMM of the distinct ``floor(l/2)``- and ``ceil(l/2)``-fold products
    of each row (order 4, d = 8: inner size 36 instead of 64), expanded to the
    full tensor at the end.
    """
    dim, split = rows.shape[1], order // 2
    (head, head_index), (tail, tail_index) = (distinct_products(dim, k)
                                              for k in (split, order - split))
    columns = np.ascontiguousarray(rows.T)
    distinct = products(columns, head) @ products(columns, tail).T
    return distinct[np.ix_(head_index, tail_index)].reshape((dim,) * order)


def _moment_chunk(rows, order, shift, rotation):
    """The moment sums of one chunk of rows, summed in slices so that the
    products of a slice (``rows x d^ceil(order / 2)``) stay near
    ``_SLICE_ENTRIES`` whatever the chunk size."""
    width = rows.shape[1] if rotation is None else rotation.shape[0]
    size = max(1, _SLICE_ENTRIES // width ** max(order - order // 2, 2))
    parts = [_slice_sums(rows[start:start + size], order, shift, rotation)
             for start in range(0, rows.shape[0], size)]
    return reduce(_add, parts)


def _slice_sums(rows, order, shift, rotation):
    if shift is not None:
        rows = rows - shift
    if rotation is not None:
        rows = rows @ rotation.T
    high = _outer_power(rows, order) if order >= 3 else None
    return dict(n=rows.shape[0], first=rows.sum(axis=0), second=rows.T @ rows, high=high)


def _add(left, right):
    """Key by key; None stays None."""
    return {key: None if value is None else value + right[key] for key, value in left.items()}


def _finite_problem(rows):
    values = rows.data if sp.issparse(rows) else rows
    if np.all(np.isfinite(values)):
        return None
    return "contains NaN or inf", "remove or impute those entries."


def _as_rows(block):
    """A chunk as float64: sparse chunks (scipy.sparse) stay sparse."""
    if sp.issparse(block):
        return block.astype(np.float64)
    return np.asarray(block, dtype=np.float64)


def _summarize_chunk(block, summarize, check, index):
    """``summarize`` of one chunk, with the chunk's problems (finite values first,
    then ``check``) recorded as ``bad = [(index, problem, fix)]`` instead."""
    rows = _as_rows(block)
    problem = _finite_problem(rows) or (check(rows) if check is not None else None)
    if problem is not None:
        return dict(bad=[(index, *problem)])
    return dict(summarize(rows), bad=[])


def _merge(left, right):
    """Two chunks' summaries: the sums, unless either found a problem (then only those)."""
    if left["bad"] or right["bad"]:
        return dict(bad=sorted(left["bad"] + right["bad"]))
    return _add(left, right)


def _pair(first, second):
    return first, second


def _tree_sum(delayed, parts):
    """Pairwise sums: depth ``log2(chunks)``, no node waiting on every chunk."""
    while len(parts) > 1:
        pairs = [delayed(_merge)(a, b) for a, b in zip(parts[::2], parts[1::2])]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def _compute(total, verbose):
    """Compute on the active scheduler, with Dask's own progress bar when asked."""
    import dask

    if not verbose:
        return dask.compute(total)[0]
    try:
        from distributed import default_client, progress
        client = default_client()
    except (ImportError, ValueError):
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return dask.compute(total)[0]
    future = client.compute(total)
    progress(future)
    return future.result()


def chunk_sums(X, summarize, *, check=None, sample=None, verbose=False, name="X"):
    """One pass over the Dask array ``X``: ``summarize`` of each row chunk, summed up a tree.

    The generic pass behind :func:`moment_sums` and the latent variable
    estimators: one Dask computation on the active scheduler, a leaf per
    chunk, partial sums added pairwise, so no node holds more than one chunk
    of rows.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Checked by the caller (:func:`check_dask_matrix`); never computed whole.
    summarize : callable
        ``summarize(rows)`` of a chunk's rows (float64; scipy.sparse chunks
        stay sparse) returns a dict of numbers and arrays (None allowed),
        the same keys for every chunk: the partial sums.
    check : callable, optional
        ``check(rows)`` returns None, or ``(problem, fix)`` for a chunk that
        must not be summed (for example ``("has negative entries", "X must
        hold counts.")``). NaN and inf are always checked first.
    sample : callable, optional
        Applied to the first ``SAMPLE_ROWS`` rows of the largest chunk (fewer
        for wide ``X``, at most 2**24 entries), in the same computation.
    verbose : bool, default=False
        Show Dask's progress bar (``distributed.progress`` under a client).
    name : str, default="X"
        The argument to blame in errors.

    Returns
    -------
    sums : dict
        The sums of ``summarize`` over all chunks.
    sample : object or None
        What ``sample`` returned.

    Raises
    ------
    ValueError
        When a chunk holds NaN or inf or fails ``check``: the error names the
        first such chunk's rows and the fix.
    """
    import dask

    chunk = dask.delayed(_summarize_chunk, pure=True)
    blocks = X.to_delayed().ravel()
    parts = [chunk(block, summarize, check, index) for index, block in enumerate(blocks)]
    rows = None if sample is None else dask.delayed(_sample_of, pure=True)(_sample_rows(X),
                                                                           sample)
    total, rows = _compute(dask.delayed(_pair)(_tree_sum(dask.delayed, parts), rows), verbose)
    if total["bad"]:
        starts = np.cumsum((0,) + X.chunks[0])
        first, problem, fix = total["bad"][0]
        raise ValueError(
            f"{name} {problem} in {len(total['bad'])} chunk(s), the first holding rows "
            f"{starts[first]} to {starts[first + 1] - 1}; {fix}")
    del total["bad"]
    return total, rows


def _sample_rows(X):
    """The largest chunk's first rows: a lazy piece of ``X``, one chunk at most."""
    largest = int(np.argmax(X.chunks[0]))
    start = int(np.sum(X.chunks[0][:largest]))
    size = min(SAMPLE_ROWS, X.chunks[0][largest], max(2, _SAMPLE_ENTRIES // max(X.shape[1], 1)))
    return X[start:start + size]


def _sample_of(block, sample):
    return sample(_as_rows(block))


def _transformed(rows, shift, rotation):
    if shift is not None:
        rows = rows - shift
    return rows if rotation is None else rows @ rotation.T


def moment_sums(X, order, *, shift=None, rotation=None, sample=None, verbose=False, name="X"):
    """One pass over the Dask array ``X``: the sums of ``y = (x - shift) @ rotation.T``.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Checked by :func:`check_dask_matrix`; never computed whole.
    order : int >= 2
        The highest moment: ``sum y^(x)order`` is built densely, so
        ``d^order`` (``d`` the columns of ``y``) must be at most
        ``MAX_DENSE_ENTRIES``.
    shift : ndarray of shape (n_features,), optional
        Subtracted from every row (a mean from an earlier pass).
    rotation : ndarray of shape (k, n_features), optional
        Applied to every row (a whitening from an earlier pass).
    sample : callable, optional
        What to keep of one chunk's rows (of ``X``, float64) as
        ``MomentSums.sample``; default: those rows transformed like the others.
    verbose : bool, default=False
        Show Dask's progress bar (``distributed.progress`` under a client).

    Returns
    -------
    MomentSums
    """
    check_dask_matrix(X, name)
    width = X.shape[1] if rotation is None else rotation.shape[0]
    if order >= 3 and width**order > MAX_DENSE_ENTRIES:
        raise ValueError(
            f"the order-{order} moments of {width} columns have {width}^{order} entries, more "
            f"than the {MAX_DENSE_ENTRIES} a pass over a Dask array builds: every contraction "
            "of the streamed tensor would read all of X again. Reduce the dimension first "
            "(MomentDecomposition whitens to n_components), or pass an in-memory array."
        )
    total, sample = chunk_sums(
        X, partial(_moment_chunk, order=order, shift=shift, rotation=rotation),
        sample=sample or partial(_transformed, shift=shift, rotation=rotation), verbose=verbose,
        name=name)
    return MomentSums(total["n"], total["first"], total["second"], total["high"], sample)


def mean_and_second_moment(X, *, verbose=False, name="X"):
    """One pass over the Dask array ``X``: ``(n, mean, second)``, ``second = E[x x^T]``."""
    check_dask_matrix(X, name)
    total, _ = chunk_sums(X, partial(_moment_chunk, order=2, shift=None, rotation=None),
                          verbose=verbose, name=name)
    return total["n"], total["first"] / total["n"], total["second"] / total["n"]


def central_moment_sums(X, order, *, rotation=None, verbose=False, name="X"):
    """Two passes: the mean and covariance of ``X``, then the sums of the centred rows.

    ``rotation``, when given, is a function of the covariance returning the
    ``(k, n_features)`` rows applied to the centred data in the second pass
    (a whitening computed from the first). Returns ``(mean, covariance,
    rows, sums)``, ``rows`` being what ``rotation`` returned (or None).
    """
    _, mean, second = mean_and_second_moment(X, verbose=verbose, name=name)
    covariance = second - np.outer(mean, mean)
    rows = None if rotation is None else rotation(covariance)
    sums = moment_sums(X, order, shift=mean, rotation=rows, verbose=verbose, name=name)
    return mean, covariance, rows, sums
