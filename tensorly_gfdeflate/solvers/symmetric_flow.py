"""Over-parametrized gradient flow for symmetric tensor decomposition.

Ge, Ren, Wang and Zhou (NeurIPS 2021): gradient flow from a small random point
fits the largest component first, then the next, like tensor deflation. The
flow is integrated by explicit Euler steps on the target normalized to unit
Frobenius norm, in three variants (``"vanilla"``, ``"paper"``, ``"merge"``),
by the flow engine shared with the general CP flow (:mod:`tensorly_gfdeflate.flow`).
"""

import warnings

import numpy as np

from .._checks import check_bool, check_callback, user_stacklevel
from ..flow.run import continue_run, start_run
from ..flow.settings import VARIANTS, FlowSettings
from ..models.symmetric import SymmetricModel
from ..targets.symmetric import as_operator

__all__ = ["gradient_flow_cp", "fit_symmetric_flow", "default_width", "paper_width",
           "VARIANTS"]


def _resolve_signs(signs, width, order):
    """The slot signs and whether re-drawn slots may take the sign the residual asks for.

    ``None`` starts every slot at +1; at even order a re-drawn slot then takes
    the sign of the residual direction it starts on, so that negative weights
    are fitted too. ``"mixed"`` and explicit signs are fixed.
    """
    if signs is None:
        return np.ones(width), order % 2 == 0
    if isinstance(signs, str) and signs == "mixed":
        if order % 2:
            return np.ones(width), False
        return np.where(np.arange(width) % 2 == 0, 1.0, -1.0), False
    try:
        values = np.asarray(signs, dtype=float).ravel()
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.shape != (width,) or not np.all(np.isin(values, (-1.0, 1.0))):
        raise ValueError(
            f"signs must be None, 'mixed' or {width} values (one per width slot), "
            f"each +1 or -1; got {signs!r}."
        )
    if order % 2 and np.any(values < 0):
        raise ValueError(
            "signs must all be +1 for an odd-order tensor: there -w_j already gives the "
            "negative component. Pass signs=None."
        )
    return values, False


def default_width(dim, rank):
    """The default number of slots: room for every component, and spare slots.

    Spare slots matter: an odd-order slot can start on the wrong side of every
    component and stall, merges need free slots to re-draw, and a whitened
    tensor's rank is its dimension (with ``width = dim`` one component of 20
    was missed).
    """
    if rank is not None:
        return max(2 * rank, 8)
    return min(dim, 50) + max(8, min(dim, 50) // 2)


#: Most slots :func:`paper_width` gives (unless ``default_width`` asks for more).
PAPER_WIDTH_CAP = 128


def paper_width(dim, order, rank):
    """The default number of slots of ``variant="paper"``: ``2 k^2``, at most 128.

    ``k`` is ``rank``, or ``dim`` when ``rank`` is None (an orthogonally
    decomposable tensor has at most ``dim`` components). Never fewer than
    :func:`default_width`; order 2 (a matrix) keeps that default.

    Every component must win a slot of its own. From a small random start a
    slot joins the component ``i`` with the largest ``a_i <u_i, w>^(l-2)``
    (at odd order, among those ``w`` correlates positively with), and the
    paper variant never frees a slot that joined a fitted component: only
    slots still below ``reinit_threshold`` are re-drawn, and in low dimension
    every slot grows past it while it aligns. The smallest of ``k``
    components wins a random slot with probability of order ``1 / k^2``
    (order 4, weights geometric from 1 to 0.2: 1 in 38 for ``k = 8``, 1 in 58
    for ``k = 10``), so ``2 k^2`` slots give it a few. Measured on order 4,
    ``d = 10``, eight orthogonal components with weights geometric from 1 to
    0.2: every component found in 2 of 8 seeds with the general default (18
    slots), 6 of 8 with 64, 30 of 30 with 128. The cap bounds the cost (linear
    in the width); in higher dimension slots align more slowly, most stay
    below ``reinit_threshold`` and are re-drawn, and fewer are needed. See the
    documentation page "The paper's claims, measured".
    """
    if order < 3:
        return default_width(dim, rank)
    k = dim if rank is None else rank
    return max(default_width(dim, rank), min(2 * k * k, PAPER_WIDTH_CAP))


def _width_rule(variant, operator):
    """``rank -> width`` when none is given: :func:`paper_width` for the paper variant."""
    if variant == "paper":
        return lambda rank: paper_width(operator.dim, operator.order, rank)
    return lambda rank: default_width(operator.dim, rank)


def gradient_flow_cp(
    tensor,
    rank=None,
    *,
    width=None,
    variant="merge",
    regularization="auto",
    init_scale=1e-3,
    reinit_threshold=1e-2,
    epoch_time=20.0,
    epoch_growth=0.5,
    step_size=None,
    max_time=5000.0,
    tol=1e-6,
    signs=None,
    debias=True,
    stop_at_plateau=False,
    random_state=None,
    callback=None,
    return_trace=False,
    verbose=False,
):
    """Symmetric CP decomposition by over-parametrized gradient flow.

    Runs gradient flow on ``1/2 |T(W) - T*|^2 + lambda/2 |W|^2`` with
    ``T(W) = sum_j s_j |w_j|^2 (w_j/|w_j|)^(x)l`` from a small random ``W``
    (Ge, Ren, Wang and Zhou, NeurIPS 2021), reads the fitted components out,
    and refines them with ``lambda = 0``.

    Parameters
    ----------
    tensor : dense symmetric array, symmetric CPTensor or SampleMoments
        The target ``T*`` of order ``l >= 2``, in any tensorly backend.
        Structured forms are never densified.
    rank : int >= 1 or None, default=None
        Keep the ``rank`` largest components. ``None``: every component the
        flow fitted (automatic rank, set by ``regularization``).
    width : int >= 1, optional
        Number ``m`` of model components. Default: ``max(2 * rank, 8)``, or
        ``min(dim, 50) + max(8, min(dim, 50) // 2)`` when ``rank`` is None
        (spare slots even when the rank equals the dimension, as for whitened
        moment tensors). With ``variant="paper"`` (order >= 3) the default is
        wider, so that every component can win a slot of its own:
        ``2 k^2`` with ``k = rank`` (``dim`` when ``rank`` is None), at most
        128, and never below the default above (see
        :func:`~tensorly_gfdeflate.solvers.symmetric_flow.paper_width`). The flow fits at most
        ``width`` components.
    variant : {"merge", "paper", "vanilla"}, default="merge"
        ``"vanilla"``: plain gradient flow (``lambda = 0`` unless given).
        ``"paper"``: the paper's modified flow, re-drawing components of norm
        below ``reinit_threshold`` at each epoch boundary. ``"merge"``: as
        ``"paper"``, and aligned components are first merged into the largest
        so that the freed slots can discover the remaining directions; when
        the epoch's power probe of the residual ran, re-drawn slots start on
        the directions it found (the rest uniformly at random).
    regularization : "auto" or float >= 0, default="auto"
        ``lambda``, relative to the target's Frobenius norm. A component of
        weight ``a`` is fitted only if ``a > lambda / 2`` (times the norm).
        ``"auto"`` (or None): 0 for ``"vanilla"``; otherwise 1e-3, raised for
        sample statistics (``SampleMoments``, ``SampleCumulants``) to twice 3
        standard errors of the statistic along its leading directions, so that
        sampling noise is not fitted; and the stop rules and the final check
        then also compare what is left with the noise (see Notes). A number
        is the floor itself: nothing else is compared with.
    init_scale : float > 0, default=1e-3
        ``delta0``: norm of the initial and re-drawn components (unit-norm target).
    reinit_threshold : float > 0, default=1e-2
        ``delta1``: components with ``|w_j|`` below it are re-drawn at epoch
        boundaries, and components of mass below its square are dropped at
        read-out.
    epoch_time : float > 0, default=20.0
        Length (in flow time) of the first epoch.
    epoch_growth : float >= 0, default=0.5
        ``gamma``: each epoch is ``1 + gamma`` times longer than the last.
    step_size : float > 0, optional
        Euler step ``eta`` on the unit-norm target. Default:
        0.3. A step that raises the loss (beyond rounding) is undone and the
        step halved, with a RuntimeWarning the first time when ``step_size``
        was given (the default's back-offs are silent, recorded in the
        trace); after 30 halvings a FloatingPointError says to lower
        ``step_size``.
    max_time : float > 0, default=5000.0
        Time horizon; reaching it raises a ConvergenceWarning.
    tol : float > 0, default=1e-6
        Stop once the relative residual ``|T(W) - T*| / |T*|`` is below
        ``tol``; also the target of the refinement. The residual is computed
        by an expansion that rounds to noise near ``sqrt(eps)`` and is
        reported no lower than ``sqrt(eps) / 2`` (1.7e-4 in float32, 7e-9 in
        float64): a smaller ``tol`` is never met and the other stop rules end
        the run.
    signs : None, "mixed" or array of +-1 of shape (width,)
        The signs ``s_j``. None: every slot starts at +1 and, at even order,
        a re-drawn slot takes the sign of the residual direction it starts on,
        so negative weights are fitted too. "mixed": fixed alternating +1 and
        -1 (even orders). An array: fixed signs.
    debias : bool, default=True
        Re-fit the weights of the kept directions by least squares and refine
        them by gradient flow with ``lambda = 0`` (removes the ``lambda / 2``
        shrinkage; exactly low-rank targets are then fitted to ``tol``).
    stop_at_plateau : bool, default=False
        Stop (``"plateau"``) at the first check where the loss has settled
        and the flow has nothing more to grow (``rank`` components fitted,
        or no slot could grow on what is left), whatever the residual still
        holds: for a fit that only starts another method (the latent models'
        EM, see :class:`SingleTopicModel`). The returned decomposition is
        checked as always, so the verdict says whether it explains the
        tensor.
    random_state : None, int or numpy.random.RandomState
        Seed of the initialization and re-draws; numpy's global random state
        is never used.
    callback : callable, optional
        Called after every Euler step with the integrator (attributes ``time``,
        ``point.loss``, ``point.residual``, ``point.norms``, ``W``). Returning
        True stops the flow; the result is read out from that point. An
        exception raised by ``callback`` propagates unchanged, with a note
        naming ``callback`` and the flow time.
    return_trace : bool, default=False
        Also return a :class:`FlowTrace`.
    verbose : bool, default=False
        Print one line per epoch.

    Returns
    -------
    CPTensor or (CPTensor, FlowTrace)
        ``(weights, [V] * order)`` sorted by ``|weight|`` descending, ``V`` with
        unit columns, in the backend, device and dtype of the input.

    Warns
    -----
    ConvergenceWarning
        Whenever the result falls short, with what to do: no component or
        fewer than ``rank`` found, ``max_time`` reached, or a residual that
        still holds a component above the noise floor. The trace records the
        verdict (``trace.explained``, ``trace.converged``).

    Notes
    -----
    The flow stops when the residual is below ``tol``; or, at a check (every
    epoch boundary, and every ``epoch_time`` in between), when the loss fell by
    less than 1% since the last check and power iterations on the residual
    find no direction whose weight stands above the noise floor: ``lambda / 2``
    with ``"auto"`` (``lambda`` when given), 3 standard errors for sample
    statistics, twice what Gaussian noise of the residual's unexplained size
    shows for a dense array (see :mod:`tensorly_gfdeflate.check.probe`); the
    residual probed is that of the fitted directions with least-squares
    weights, without the regularizer's shrinkage. With ``rank`` given it also
    needs ``rank`` distinct components fitted (``"rank_reached"``; otherwise
    ``"nothing_to_fit"``). The flow also stops (``"stalled"``) when, at two
    settled checks in a row, no slot could grow on what is left (the
    regularizer's shrinkage of non-orthogonal components leaves such weight);
    after four settled checks with the same number of components, it stops
    when the refined read-out already explains the tensor; vanilla runs
    stop when nothing moves any more; every run stops at
    ``max_time``. The returned
    decomposition is checked the same way: success is reported
    (``trace.converged``) only when its residual holds nothing above the floor.

    Examples
    --------
    >>> from tensorly_gfdeflate import gradient_flow_cp, random_symmetric_cp
    >>> truth = random_symmetric_cp(10, 3, 4, random_state=0)
    >>> cp = gradient_flow_cp(truth, random_state=0)
    >>> [round(float(w), 4) for w in cp.weights]
    [1.0, 0.3162, 0.1]
    """
    return_trace = check_bool("return_trace", return_trace)
    _, cp, trace = fit_symmetric_flow(
        tensor, None, rank=rank, width=width, variant=variant, regularization=regularization,
        init_scale=init_scale, reinit_threshold=reinit_threshold, epoch_time=epoch_time,
        epoch_growth=epoch_growth, step_size=step_size, max_time=max_time, tol=tol,
        signs=signs, debias=debias, stop_at_plateau=stop_at_plateau,
        random_state=random_state, callback=callback,
        verbose=verbose)
    trace.verdict.warn()
    return (cp, trace) if return_trace else cp


def fit_symmetric_flow(tensor, run, *, signs=None, random_state=None, callback=None,
                       **settings):
    """The one private fit behind :func:`gradient_flow_cp` and :class:`~tensorly_gfdeflate.GradientFlowCP`.

    Validates every setting (also when continuing ``run``, a warm start),
    starts a run on ``tensor`` or continues ``run`` on it, and returns
    ``(run, cp, trace)``; the verdict is on the trace, not yet warned.
    """
    settings = FlowSettings.validated(**settings)
    callback = check_callback(callback)
    operator = as_operator(tensor)
    if run is None:
        if operator.order == 2:
            warnings.warn(
                "the tensor has order 2 (a matrix): a symmetric matrix has infinitely many "
                "decompositions into non-orthogonal rank-one terms, so the components are "
                "identifiable only when they are orthogonal (the eigenvectors). Use order >= 3 "
                "to recover non-orthogonal components.", UserWarning,
                stacklevel=user_stacklevel())
        run = start_run(operator, SymmetricModel, settings, "gradient_flow_cp",
                        _width_rule(settings.variant, operator),
                        lambda width: _resolve_signs(signs, width, operator.order),
                        random_state)
    else:
        run.retarget(operator)
    return continue_run(run, settings, callback)
