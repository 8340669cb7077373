"""What every decomposition estimator shares: TensorLy's ``fit_transform`` and scikit-learn's protocol.

``fit_transform(tensor)`` returns the ``CPTensor`` as TensorLy's decomposition
classes do; ``fit(tensor, y=None)`` returns the estimator and ``score(tensor)``
is minus the relative reconstruction error, so ``clone``, ``Pipeline`` and
``GridSearchCV`` work. Each estimator calls one private fit, the one its
function calls (as scikit-learn's ``FastICA`` calls ``_fit_transform``), and
warns once with the fit's verdict.
"""

import numpy as np
import tensorly as tl
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._checks import check_bool
from ..check.measures import relative_error

__all__ = ["DecompositionEstimator", "FlowEstimator"]


class DecompositionEstimator(BaseEstimator):
    """Shared ``fit`` / ``fit_transform`` / ``score`` and fitted attributes.

    Subclasses implement ``_fit(X) -> (cp, trace)`` (the private fit, which
    does not warn), ``_as_operator(X)``, ``_n_iter(trace)`` and
    ``_store_factors(cp)``.
    """

    def fit(self, X, y=None):
        """Decompose the tensor ``X``.

        Parameters
        ----------
        X : tensor
            The tensor to decompose (named ``X`` for scikit-learn's meta-estimators);
            see the class documentation for the forms it may take.
        y : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        self
        """
        self._fit_quietly(X)
        self.verdict_.warn()
        return self

    def _fit_quietly(self, X):
        """Fit and set every fitted attribute; the verdict is left to the caller to warn."""
        cp, trace = self._fit(X)
        self.decomposition_ = cp
        self.weights_ = cp.weights
        # A zero-weight component stands for "nothing fitted" (see gradient_flow_cp).
        self.n_components_ = int(np.count_nonzero(tl.to_numpy(cp.weights)))
        self.trace_ = trace
        self.verdict_ = trace.verdict
        self.converged_ = trace.verdict.success
        self.n_iter_ = self._n_iter(trace)
        self.component_snr_, self.noise_level_ = trace.component_snr, trace.noise_level
        self._store_factors(cp)
        return self

    def fit_transform(self, X, y=None):
        """Decompose the tensor ``X`` and return its CP decomposition.

        Parameters
        ----------
        X : tensor
            The tensor to decompose.
        y : None
            Ignored.

        Returns
        -------
        CPTensor
            Sorted by ``|weight|`` descending.
        """
        return self.fit(X).decomposition_

    def score(self, X, y=None):
        """Minus the relative reconstruction error ``|T_hat - X| / |X|`` (higher is better).

        Parameters
        ----------
        X : tensor
            The tensor to compare the fitted decomposition with; same shape as
            the fitted one.
        y : None
            Ignored.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        operator = self._as_operator(X)
        self._check_fitted_shape(operator)
        return -relative_error(operator, self.decomposition_)

    def _check_fitted_shape(self, operator):
        fitted_shape = tuple(int(tl.shape(f)[0]) for f in self.decomposition_.factors)
        if tuple(operator.shape) != fitted_shape:
            raise ValueError(
                f"X has shape {tuple(operator.shape)} but the decomposition was fitted on a "
                f"tensor of shape {fitted_shape}; pass a tensor of the fitted shape."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is a tensor of any order (a symmetric matrix is order 2).
        tags.input_tags.three_d_array = True
        return tags


class FlowEstimator(DecompositionEstimator):
    """A gradient-flow estimator: ``warm_start`` continues the last fit's run.

    Subclasses set ``_flow_fit``, the solver's private fit
    ``(tensor, run, **params) -> (run, cp, trace)``.
    """

    def _fit(self, X):
        warm_start = check_bool("warm_start", self.warm_start)
        run = getattr(self, "_flow_run", None) if warm_start else None
        params = self.get_params(deep=False)
        del params["warm_start"]
        run, cp, trace = type(self)._flow_fit(X, run, **params)
        # Only a run that may be continued is kept: it holds the training tensor.
        if warm_start:
            self._flow_run = run
        elif hasattr(self, "_flow_run"):
            del self._flow_run
        return cp, trace

    @staticmethod
    def _n_iter(trace):
        """Euler steps of the flow and of the refinement."""
        return len(trace.times) - 1 + trace.refine_steps
