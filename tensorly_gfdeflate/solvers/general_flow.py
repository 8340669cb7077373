"""General (non-symmetric) CP decomposition and completion by over-parametrized gradient flow.

The flow of :func:`~tensorly_gfdeflate.gradient_flow_cp`, on the general CP
model ``T(W) = sum_j w_j1 (x) ... (x) w_jN`` (:ref:`theory-general`), run by the same
flow engine (:mod:`tensorly_gfdeflate.flow`). From a small balanced start the
slots fit the largest component first, then the next (Razin, Maman and
Cohen, ICML 2021, show this incremental rank learning for general CP): the
rank comes out of the flow, and where entries are missing the small start
acts as a rank regularizer that a fixed-rank least-squares fit lacks.
"""

import numpy as np

from .._checks import check_bool, check_callback
from ..flow.run import continue_run, start_run
from ..flow.settings import FlowSettings
from ..models.general import GeneralModel
from ..targets.general import as_general_operator

__all__ = ["gradient_flow_parafac", "fit_parafac_flow", "default_parafac_width"]

# Slot norm of the balanced start (its mass is the square, as in the symmetric model).
# Every mode vector starts at length init_scale^(2/N); the flow's early phase runs
# about N - 2 powers of that length slower than the symmetric flow's, so the
# general start is larger: measured on shape (20, 25, 30), rank 5, flow time to the
# exact fit 4720 at 1e-3, 1326 at 3e-3, 384 at 1e-2; at 3e-2 noise slots filled the width.
DEFAULT_INIT_SCALE = 1e-2
# Above the start, so that slots which have not grown are re-drawn (on the probe's
# directions) and do not count as components; its square is the read-out's floor.
DEFAULT_REINIT_THRESHOLD = 3e-2
# The general loss is flatter than the symmetric one (each mode enters linearly): no
# back-off at 1.0 on the shapes measured, and half the steps of 0.5.
DEFAULT_STEP_SIZE = 1.0
DEFAULT_MAX_TIME = 5000.0
DEFAULT_TOL = 1e-6
# Without a rank: room for this many components (a warning says when all were used).
DEFAULT_AUTOMATIC_WIDTH = 16


def default_parafac_width(rank):
    """``max(2 * rank, 8)`` slots with a rank, else ``DEFAULT_AUTOMATIC_WIDTH``."""
    if rank is not None:
        return max(2 * rank, 8)
    return DEFAULT_AUTOMATIC_WIDTH


def gradient_flow_parafac(
    tensor,
    rank=None,
    *,
    mask=None,
    width=None,
    regularization=None,
    init_scale=None,
    step_size=None,
    max_time=None,
    tol=None,
    random_state=None,
    callback=None,
    return_trace=False,
    verbose=False,
):
    """CP decomposition (and completion) of a general tensor by over-parametrized gradient flow.

    Runs gradient flow on ``1/(2p) sum_{i observed} (T(W)_i - T_i)^2 +
    lambda/2 |W|^2`` with ``T(W) = sum_j w_j1 (x) ... (x) w_jN`` from a small
    balanced random start, ``p`` the observed fraction (1 without a mask),
    with the epochs, merges, re-draws, stop rules, read-out, refinement and
    check of :func:`~tensorly_gfdeflate.gradient_flow_cp`.

    Parameters
    ----------
    tensor : dense array, CPTensor or ObservedEntries
        The target, of order >= 3 and any shape, in any tensorly backend. A
        CPTensor (general factors) is never densified; an
        :class:`~tensorly_gfdeflate.ObservedEntries` (coordinates and values)
        is never densified either and is the form for large sparse completion.
    rank : int >= 1 or None, default=None
        Return that many components: the best fit of that rank (as TensorLy's
        ``parafac``). Components the flow did not grow are added on the
        residual's leading directions and refined with the rest (by ALS on
        the observed entries of a partly observed tensor); those the data
        cannot tell from noise are kept, listed in ``verdict.weak_components``
        and warned about. None: the automatic rank, every component the flow
        fitted above the noise floor, or, on a partly observed tensor that is
        not clearly low rank plus noise, the rank of least held-out error on
        5 folds of the observed entries (``trace.validation``); see
        :ref:`automatic-rank-rules`.
    mask : array of bool (or of 0 and 1), optional
        For a dense ``tensor``: True where the entry is observed. The loss and
        every check look at the observed entries only; unobserved entries may
        hold anything, NaN included.
    width : int >= 1, optional
        Number of slots. Default: ``max(2 * rank, 8)``, or 16 without a rank.
    regularization : "auto", float >= 0 or None, default=None
        ``lambda``, relative to the target's norm; None means "auto" (1e-3 and
        the noise-aware checks, as for ``gradient_flow_cp``).
    init_scale : float > 0, optional
        Norm of a fresh slot (its mass is the square; each mode vector has
        length ``init_scale^(2/N)``). Default 1e-2.
    step_size : float > 0, optional
        Euler step on the normalized target. Default 1.0; a step that raises
        the loss is undone and halved (with a RuntimeWarning when
        ``step_size`` was given).
    max_time : float > 0, optional
        Flow-time horizon, default 5000; reaching it raises a ConvergenceWarning.
    tol : float > 0, optional
        Stop once the relative residual on the observed entries is below
        ``tol``; default 1e-6.
    random_state : None, int or numpy.random.RandomState
        Seed of the start and re-draws; numpy's global random state is never used.
    callback : callable, optional
        Called after every Euler step with the integrator; returning True stops.
    return_trace : bool, default=False
        Also return the :class:`~tensorly_gfdeflate.FlowTrace`.
    verbose : bool, default=False
        Print one line per epoch.

    Returns
    -------
    CPTensor or (CPTensor, FlowTrace)
        ``(weights, [U_1, ..., U_N])`` with unit columns, positive weights
        sorted descending, in the backend, device and dtype of the input.

    Warns
    -----
    ConvergenceWarning
        Whenever the result falls short, saying what to do (see
        :func:`~tensorly_gfdeflate.gradient_flow_cp`); also when components
        of a given rank are below the noise, when a slice holds fewer observed
        entries than components (``verdict.unobserved_slices``: those factor
        rows are not estimates), and after ``max_time``.

    Examples
    --------
    >>> import numpy as np
    >>> import tensorly as tl
    >>> from tensorly_gfdeflate import gradient_flow_parafac
    >>> rng = np.random.RandomState(0)
    >>> factors = [np.linalg.qr(rng.standard_normal((n, 2)))[0] for n in (5, 6, 7)]
    >>> tensor = tl.cp_to_tensor((np.array([1.0, 0.5]), factors))
    >>> cp = gradient_flow_parafac(tensor, random_state=0)
    >>> [round(float(w), 4) for w in cp.weights]
    [1.0, 0.5]
    """
    return_trace = check_bool("return_trace", return_trace)
    _, cp, trace = fit_parafac_flow(
        tensor, None, mask=mask, rank=rank, width=width, regularization=regularization,
        init_scale=init_scale, step_size=step_size, max_time=max_time, tol=tol,
        random_state=random_state, callback=callback, verbose=verbose)
    trace.verdict.warn()
    return (cp, trace) if return_trace else cp


def fit_parafac_flow(tensor, run, *, mask=None, rank=None, width=None, regularization=None,
                     init_scale=None, step_size=None, max_time=None, tol=None,
                     random_state=None, callback=None, verbose=False):
    """The one private fit behind :func:`gradient_flow_parafac` and :class:`~tensorly_gfdeflate.GradientFlowParafac`.

    Validates every setting (also when continuing ``run``, a warm start),
    starts a run on ``tensor`` or continues ``run`` on it, and returns
    ``(run, cp, trace)``; the verdict is on the trace, not yet warned.
    """
    settings = FlowSettings.validated(
        rank=rank, width=width, variant="merge", regularization=regularization,
        init_scale=DEFAULT_INIT_SCALE if init_scale is None else init_scale,
        reinit_threshold=DEFAULT_REINIT_THRESHOLD, epoch_time=20.0, epoch_growth=0.5,
        step_size=step_size, max_time=DEFAULT_MAX_TIME if max_time is None else max_time,
        tol=DEFAULT_TOL if tol is None else tol, debias=True, verbose=verbose)
    callback = check_callback(callback)
    operator = as_general_operator(tensor, mask=mask)
    if run is None:
        run = start_run(operator, GeneralModel, settings, "gradient_flow_parafac",
                        default_parafac_width, lambda width: (np.ones(width), False),
                        random_state, default_step=DEFAULT_STEP_SIZE, rank_rules=True)
    else:
        run.retarget(operator)
    return continue_run(run, settings, callback)
