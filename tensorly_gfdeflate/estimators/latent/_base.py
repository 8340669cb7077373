"""What the latent variable estimators share: parameters, the decomposition, and its verdict."""

import warnings

import numpy as np
import tensorly as tl
from scipy.special import logsumexp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ..._checks import (
    check_bool,
    check_choice,
    check_int,
    check_solver_options,
    is_dask_array,
    user_stacklevel,
)
from ...targets.dask_moments import check_dask_matrix
from ..symmetric import GradientFlowCP, PowerDeflationCP

SOLVERS = {"gradient_flow": GradientFlowCP, "power_deflation": PowerDeflationCP}


def _of_chunk(block, method, block_info=None):
    """``method(block)``; a ValueError says which rows of the Dask array it is about."""
    try:
        return method(block)
    except ValueError as error:
        start, stop = block_info[0]["array-location"][0]
        raise ValueError(f"in rows {start} to {stop - 1}: {error}") from error


class MomentEstimator(BaseEstimator):
    """Parameters and the third-moment decomposition of :class:`SingleTopicModel` and
    :class:`SphericalGaussianMixture`.

    Subclasses implement ``fit`` with :meth:`_check_params` and :meth:`_decompose`,
    and ``_log_joint(X)``: the log-probability of each sample and each component.
    """

    def __init__(self, n_components, *, solver="gradient_flow", whiten=True,
                 solver_options=None, random_state=None):
        self.n_components = n_components
        self.solver = solver
        self.whiten = whiten
        self.solver_options = solver_options
        self.random_state = random_state

    def _check_params(self, max_components, reason):
        """Validate the parameters; ``n_components`` may not exceed ``max_components``
        (``reason`` says why, for the error)."""
        check_choice("solver", self.solver, tuple(SOLVERS))
        n_components = check_int("n_components", self.n_components, 1)
        if n_components > max_components:
            raise ValueError(
                f"n_components={n_components} exceeds {reason}. Lower n_components.")
        check_bool("whiten", self.whiten)
        check_solver_options(self.solver_options, SOLVERS, self.solver, type(self).__name__)
        return n_components

    def _decompose(self, operator, n_components):
        """``(weights, factors)`` of the positive components the solver found, as numpy.

        Sets ``trace_`` and ``converged_``. Weights that are not positive
        cannot be those of a mixture and are left out (an odd-order
        component ``-a v^3`` is ``a (-v)^3``; the solvers return positive
        weights for real components).
        """
        solver = SOLVERS[self.solver](n_components, random_state=self.random_state)
        solver.set_params(**(self.solver_options or {}))
        solver.fit(operator)
        self.trace_, self.verdict_ = solver.trace_, solver.verdict_
        self.converged_ = bool(solver.converged_)
        weights = np.asarray(tl.to_numpy(solver.weights_), dtype=float)
        factors = np.asarray(tl.to_numpy(solver.factor_), dtype=float)
        keep = weights > 0
        return weights[keep], factors[:, keep]

    def _report_found(self, n_found, n_components):
        """Set ``n_sources_found_``; warn when fewer than ``n_components`` were found."""
        self.n_sources_found_ = int(n_found)
        if n_found < n_components:
            message = (
                f"{type(self).__name__} found {n_found} of n_components={n_components} "
                f"components (solver={self.solver!r}); the fitted attributes hold only those "
                f"found. Try more data, another random_state, solver_options "
                f"(for example a longer max_time), or fewer components.")
            self.verdict_ = self.verdict_.fewer_than_asked(n_found, message)
            self.converged_ = self.verdict_.success
            warnings.warn(message, ConvergenceWarning, stacklevel=user_stacklevel())

    def _check_fitted(self):
        """Raise unless ``fit`` ran and found at least one component to evaluate data against."""
        check_is_fitted(self)
        if self.n_sources_found_ == 0:
            raise ValueError(
                f"{type(self).__name__} found no component in fit, so X cannot be evaluated; "
                "refit as its ConvergenceWarning suggests.")

    def _check_dask(self, X, reset):
        """A Dask ``X`` checked (whole rows, known chunks, float: integers are cast
        lazily); with ``reset``, recorded as the training data's width."""
        if np.issubdtype(X.dtype, np.integer):
            X = X.astype(np.float64)
        check_dask_matrix(X, min_samples=2 if reset else 1)
        if reset:
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input.")
        return X

    def _map_rows(self, X, method, width=None, dtype=np.float64):
        """``method`` of each row chunk of the Dask array ``X``: a lazy Dask array of
        ``width`` columns (None: one value per row). Chunks are checked as they are
        computed; an error names the chunk's rows."""
        self._check_fitted()
        X = self._check_dask(X, reset=False)
        if width is None:
            return X.map_blocks(_of_chunk, method, drop_axis=1, dtype=dtype)
        return X.map_blocks(_of_chunk, method, chunks=(X.chunks[0], (width,)), dtype=dtype)

    def _posterior(self, X):
        """Probability of each component given each sample (rows sum to 1); lazy for Dask."""
        if is_dask_array(X):
            return self._map_rows(X, self._posterior, self.n_sources_found_)
        joint = self._log_joint(X)
        return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))

    def _log_likelihood(self, X):
        """Log-probability of each sample under the fitted mixture; lazy for Dask."""
        if is_dask_array(X):
            return self._map_rows(X, self._log_likelihood)
        return logsumexp(self._log_joint(X), axis=1)

    def _mean_log_likelihood(self, X):
        """The average of :meth:`_log_likelihood`, for Dask computed chunk by chunk."""
        values = self._log_likelihood(X)
        return float(values.mean().compute() if is_dask_array(X) else np.mean(values))
