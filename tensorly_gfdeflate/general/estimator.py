""":func:`gradient_flow_parafac` as an estimator: TensorLy's ``fit_transform`` and scikit-learn's protocol."""

import tensorly as tl
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ..estimators import drive_estimator_flow, flow_summary, store_decomposition
from ..measures import relative_error
from .flow import drive_parafac_flow
from .operators import as_general_operator, is_dense_input

__all__ = ["GradientFlowParafac"]


class GradientFlowParafac(BaseEstimator):
    """General CP decomposition and completion by over-parametrized gradient flow, as an estimator.

    Every parameter is the keyword of the same name of
    :func:`~tensorly_gfdeflate.gradient_flow_parafac`, with the same default;
    ``mask`` is a parameter, as in TensorLy's ``CP``.

    Parameters
    ----------
    rank : int >= 1 or None, default=None
    mask : array of bool (or of 0 and 1), optional
        True where the entries of the dense tensors passed to ``fit`` and
        ``score`` are observed.
    width : int >= 1, optional
    regularization : "auto", float >= 0 or None, default=None
    init_scale : float > 0, optional
    step_size : float > 0, optional
    max_time : float > 0, optional
    tol : float > 0, optional
    random_state : None, int or numpy.random.RandomState
    callback : callable, optional
    verbose : bool, default=False
    warm_start : bool, default=False
        When True, ``fit`` continues the previous fit's flow for another
        ``max_time`` on the new tensor (same shape) instead of starting afresh.

    Attributes
    ----------
    decomposition_ : CPTensor
        ``(weights_, factors_)``, sorted by weight descending.
    weights_ : tensor of shape (n_components,)
    factors_ : list of tensors of shape (n_k, n_components)
        Unit columns, one matrix per mode.
    n_components_ : int
    trace_ : FlowTrace
    component_snr_ : ndarray of shape (n_components,)
        Each weight over the noise level along its component (inf where the
        tensor is taken as exact).
    noise_level_ : float
        The estimated noise level, relative to the tensor's norm.
    n_iter_ : int
        Euler steps of the flow and of the refinement.
    converged_ : bool
        ``trace_.converged``: the flow stopped by itself and the residual of the
        result holds nothing above the noise floor.

    See Also
    --------
    tensorly_gfdeflate.gradient_flow_parafac : the function this estimator calls.

    Examples
    --------
    >>> import numpy as np
    >>> import tensorly as tl
    >>> from tensorly_gfdeflate import GradientFlowParafac
    >>> rng = np.random.RandomState(0)
    >>> factors = [rng.standard_normal((n, 2)) for n in (8, 9, 10)]
    >>> tensor = tl.cp_to_tensor((np.ones(2), factors))
    >>> mask = rng.rand(8, 9, 10) < 0.5
    >>> model = GradientFlowParafac(mask=mask, random_state=0).fit(tensor)
    >>> model.n_components_, round(model.score(tensor), 4)
    (2, -0.0)
    """

    def __init__(
        self,
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
        verbose=False,
        warm_start=False,
    ):
        self.rank = rank
        self.mask = mask
        self.width = width
        self.regularization = regularization
        self.init_scale = init_scale
        self.step_size = step_size
        self.max_time = max_time
        self.tol = tol
        self.random_state = random_state
        self.callback = callback
        self.verbose = verbose
        self.warm_start = warm_start

    def fit(self, X, y=None):
        """Decompose the tensor ``X`` (dense array, CPTensor or ObservedEntries).

        Parameters
        ----------
        X : dense array, CPTensor or ObservedEntries
            The tensor (named ``X`` for scikit-learn's meta-estimators).
        y : None
            Ignored.

        Returns
        -------
        self
        """
        cp = store_decomposition(self, *drive_estimator_flow(self, drive_parafac_flow, X))
        self.factors_ = list(cp.factors)
        return self

    _summarize = staticmethod(flow_summary)

    def fit_transform(self, X, y=None):
        """Decompose ``X`` and return its ``CPTensor``."""
        return self.fit(X).decomposition_

    def score(self, X, y=None):
        """Minus the relative error on the observed entries of ``X`` (higher is better).

        Parameters
        ----------
        X : dense array, CPTensor or ObservedEntries
            Same shape as the fitted tensor. For a dense array the entries the
            ``mask`` observes count; for ObservedEntries, its entries (held-out
            entries, for instance).
        y : None
            Ignored.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        operator = as_general_operator(X, mask=self.mask if is_dense_input(X) else None,
                                       name="X")
        fitted_shape = tuple(int(tl.shape(f)[0]) for f in self.factors_)
        if tuple(operator.shape) != fitted_shape:
            raise ValueError(
                f"X has shape {tuple(operator.shape)} but the decomposition was fitted on a "
                f"tensor of shape {fitted_shape}; score a tensor of the fitted shape."
            )
        return -relative_error(operator, self.decomposition_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags
