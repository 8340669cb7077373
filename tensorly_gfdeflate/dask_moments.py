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
from functools import reduce

import numpy as np

__all__ = ["is_dask_array", "check_dask_matrix", "MomentSums", "moment_sums"]

# The dense moment tensor built by a pass holds at most this many entries (32 MB).
MAX_DENSE_ENTRIES = 2**22
# Entries of the products formed at once when summing a chunk (16 MB of float64).
_SLICE_ENTRIES = 2**21
# Rows kept (from one chunk) to estimate standard errors of the statistics.
SAMPLE_ROWS = 100_000


def is_dask_array(value):
    """Whether ``value`` is a Dask array, without importing Dask."""
    return type(value).__module__.split(".")[0] == "dask" and hasattr(value, "chunks")


def check_dask_matrix(X, name="X"):
    """Raise a clear error unless ``X`` is a 2-D float Dask array chunked along rows only."""
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
    if X.shape[0] < 2:
        raise ValueError(f"{name} must have at least 2 samples (rows), got {X.shape[0]}.")


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
    """``sum_s y_s^(x)order`` as an array of shape ``(d,) * order``: one GEMM."""
    n, d = rows.shape
    left = rows
    for _ in range(order // 2 - 1):
        left = (left[:, :, None] * rows[:, None, :]).reshape(n, -1)
    right = rows
    for _ in range(order - order // 2 - 1):
        right = (right[:, :, None] * rows[:, None, :]).reshape(n, -1)
    return (left.T @ right).reshape((d,) * order)


def _chunk_sums(block, order, shift, rotation, index):
    """The partial sums of one chunk (and whether it holds NaN or inf).

    The chunk is summed in slices of rows, so that the products of a slice
    (``rows x d^(order - 1)``) stay near ``_SLICE_ENTRIES`` whatever the chunk size.
    """
    block = np.asarray(block)
    width = block.shape[1] if rotation is None else rotation.shape[0]
    size = max(1, _SLICE_ENTRIES // width ** max(order - 1, 1))
    parts = [_slice_sums(block[start:start + size], order, shift, rotation, index)
             for start in range(0, block.shape[0], size)]
    return reduce(_add, parts)


def _slice_sums(rows, order, shift, rotation, index):
    rows = np.asarray(rows, dtype=np.float64)
    finite = bool(np.all(np.isfinite(rows)))
    if shift is not None:
        rows = rows - shift
    if rotation is not None:
        rows = rows @ rotation.T
    high = _outer_power(rows, order) if order >= 3 else None
    return dict(n=rows.shape[0], first=rows.sum(axis=0), second=rows.T @ rows, high=high,
                bad=[] if finite else [index])


def _add(left, right):
    return dict(n=left["n"] + right["n"], first=left["first"] + right["first"],
                second=left["second"] + right["second"],
                high=None if left["high"] is None else left["high"] + right["high"],
                bad=sorted(set(left["bad"] + right["bad"])))


def _pair(first, second):
    return first, second


def _tree_sum(delayed, parts):
    """Pairwise sums: depth ``log2(chunks)``, no node waiting on every chunk."""
    while len(parts) > 1:
        pairs = [delayed(_add)(a, b) for a, b in zip(parts[::2], parts[1::2])]
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


def moment_sums(X, order, *, shift=None, rotation=None, verbose=False, name="X"):
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
    verbose : bool, default=False
        Show Dask's progress bar (``distributed.progress`` under a client).

    Returns
    -------
    MomentSums
    """
    import dask

    check_dask_matrix(X, name)
    width = X.shape[1] if rotation is None else rotation.shape[0]
    if order >= 3 and width**order > MAX_DENSE_ENTRIES:
        raise ValueError(
            f"the order-{order} moments of {width} columns have {width}^{order} entries, more "
            f"than the {MAX_DENSE_ENTRIES} a pass over a Dask array builds: every contraction "
            "of the streamed tensor would read all of X again. Reduce the dimension first "
            "(MomentDecomposition whitens to n_components), or pass an in-memory array."
        )
    chunk = dask.delayed(_chunk_sums, pure=True)
    blocks = X.to_delayed().ravel()
    parts = [chunk(block, order, shift, rotation, index) for index, block in enumerate(blocks)]
    sample = _sample_chunk(X, shift, rotation)
    total, sample = _compute(dask.delayed(_pair)(_tree_sum(dask.delayed, parts), sample),
                             verbose)
    if total["bad"]:
        starts = np.cumsum((0,) + X.chunks[0])
        first = total["bad"][0]
        raise ValueError(
            f"{name} contains NaN or inf in {len(total['bad'])} chunk(s), the first holding "
            f"rows {starts[first]} to {starts[first + 1] - 1}; remove or impute those entries."
        )
    return MomentSums(total["n"], total["first"], total["second"], total["high"], sample)


def _sample_chunk(X, shift, rotation):
    """The largest chunk's first ``SAMPLE_ROWS`` rows, transformed: a lazy piece of ``X``."""
    import dask

    largest = int(np.argmax(X.chunks[0]))
    start = int(np.sum(X.chunks[0][:largest]))
    rows = X[start:start + min(SAMPLE_ROWS, X.chunks[0][largest])]

    def transform(block):
        block = np.asarray(block, dtype=np.float64)
        if shift is not None:
            block = block - shift
        return block if rotation is None else block @ rotation.T

    return dask.delayed(transform, pure=True)(rows)
