"""Baseline for general tensors: the tensor power method with explicit deflation.

For each component, a batch of restarts (one random unit vector per mode)
runs alternating rank-one power updates (the higher-order power method), the
restart with the largest ``|T(v_1, ..., v_N)|`` is refined and deflated. The
same routine as :func:`~tensorly_gfdeflate.power_deflation_cp`, on the general
model and operators.
"""

from .._checks import check_bool
from ..models.general import GeneralModel
from ..targets.general import as_general_operator
from .power import power_deflation

__all__ = ["power_deflation_parafac"]


def power_deflation_parafac(
    tensor,
    rank,
    *,
    mask=None,
    n_restarts=10,
    n_iter_max=100,
    tol=1e-10,
    random_state=None,
    return_trace=False,
    verbose=False,
):
    """General CP decomposition by alternating rank-one power iterations with deflation.

    Parameters
    ----------
    tensor : dense array, CPTensor or ObservedEntries
        The target, of order >= 3 and any shape, in any tensorly backend;
        structured forms are never densified (deflation stays implicit).
    rank : int >= 1
        Number of components to extract.
    mask : array of bool (or of 0 and 1), optional
        For a dense ``tensor``: True where observed. The contractions use the
        observed entries divided by their fraction, an unbiased estimate of
        the full tensor's only for entries missing at random.
    n_restarts : int >= 1, default=10
        Random restarts per component, iterated together.
    n_iter_max : int >= 1, default=100
        Maximum alternating sweeps per restart batch and for the refinement.
    tol : float > 0, default=1e-10
        Stop once every restart's mode vectors move by less than ``tol``.
    random_state : None, int or numpy.random.RandomState
        Seed of the restarts; numpy's global random state is never used.
    return_trace : bool, default=False
        Also return a :class:`~tensorly_gfdeflate.PowerTrace`.
    verbose : bool, default=False
        Print one line per extracted component.

    Returns
    -------
    CPTensor or (CPTensor, PowerTrace)
        ``(weights, [U_1, ..., U_N])`` with unit columns and positive weights,
        sorted descending.

    Notes
    -----
    Deflation errors accumulate when the components are not orthogonal; the
    result is checked like the flow's, and a ConvergenceWarning says when it
    falls short. TensorLy's ``parafac_power_iteration`` is the same idea with
    fixed iteration counts and no check.

    Examples
    --------
    >>> import numpy as np
    >>> import tensorly as tl
    >>> from tensorly_gfdeflate import power_deflation_parafac
    >>> rng = np.random.RandomState(0)
    >>> factors = [np.linalg.qr(rng.standard_normal((n, 2)))[0] for n in (5, 6, 7)]
    >>> tensor = tl.cp_to_tensor((np.array([1.0, 0.5]), factors))
    >>> cp = power_deflation_parafac(tensor, 2, random_state=0)
    >>> [round(float(w), 6) for w in cp.weights]
    [1.0, 0.5]
    """
    return_trace = check_bool("return_trace", return_trace)
    cp, trace = power_deflation(as_general_operator(tensor, mask=mask), GeneralModel, rank,
                                n_restarts=n_restarts,
                           n_iter_max=n_iter_max, tol=tol, random_state=random_state,
                                verbose=verbose,
                                names=("power_deflation_parafac", "gradient_flow_parafac"))
    trace.verdict.warn()
    return (cp, trace) if return_trace else cp
