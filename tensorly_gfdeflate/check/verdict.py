"""One verdict per fit: whether it succeeded, how the run ended, what fell short, in figures and in words.

Modelled on scipy's ``OptimizeResult``: ``success``, ``status`` and
``message``, with the figures the check measured. Both solvers build one;
traces and estimators carry it; callers that act on a shortfall read
:attr:`Verdict.shortfalls`, never the message.
"""

import warnings
from dataclasses import dataclass, replace
from enum import Enum

from sklearn.exceptions import ConvergenceWarning

from .._checks import user_stacklevel

__all__ = ["Shortfall", "Verdict"]


class Shortfall(str, Enum):
    """What a result can fall short by (one warning names every one that applies)."""

    #: No component was fitted (the result is the zero tensor as one zero-weight component).
    NOTHING_FITTED = "nothing_fitted"
    #: Fewer components than the ``rank`` asked for.
    FEWER_THAN_RANK = "fewer_than_rank"
    #: More free parameters than observed entries: the fit predicts nothing.
    UNDERDETERMINED = "underdetermined"
    #: Every slot of the width was in use: the automatic rank is not to be trusted.
    WIDTH_EXHAUSTED = "width_exhausted"
    #: The run reached ``max_time`` and the result does not explain the target.
    MAX_TIME = "max_time"
    #: The residual holds a component above the noise floor.
    UNEXPLAINED = "unexplained"
    #: Power method: deflated components that are not orthogonal, without an exact fit.
    NOT_ORTHOGONAL = "not_orthogonal"
    #: Components kept for the given rank that the data cannot tell from noise.
    UNSUPPORTED = "unsupported"
    #: Slices with fewer observed entries than components: their factor rows are not determined.
    UNOBSERVED = "unobserved"
    #: The held-out error was still falling at the largest rank the path tried.
    HELD_OUT_LIMIT = "held_out_limit"
    #: Power method: the tensor was explained before ``rank`` extractions; the rest fill it.
    RANK_FILLED = "rank_filled"
    #: Power method: power iterations stopped at ``n_iter_max`` before they settled.
    NOT_SETTLED = "not_settled"
    #: Power method on a partly observed tensor: a least-squares fit of the same rank,
    #: started from its components, leaves far less residual on the observed entries.
    OBSERVED_MISFIT = "observed_misfit"
    #: Latent models: components whose moment weight is within the noise of zero.
    WEAK_COMPONENTS = "weak_components"
    #: Latent models: the data's third moment holds structure the fitted model lacks,
    #: so the data do not follow the model.
    MODEL_MISFIT = "model_misfit"
    #: Latent models: the likelihood refinement stopped at ``max_iter`` before it settled.
    EM_NOT_CONVERGED = "em_not_converged"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one fit.

    Attributes
    ----------
    success : bool
        The result explains the target: its residual holds nothing above
        the noise floor (and, for the power method, every extraction's
        iterations settled).
    status : str
        How the run ended: the flow's stop reason (``"tolerance"``,
        ``"nothing_to_fit"``, ``"rank_reached"``, ``"stalled"``, ``"plateau"``,
        ``"held_out"``, ``"callback"``, ``"max_time"``), ``"completed"`` for the power
        method, and for the latent models how EM ended (``"converged"``,
        ``"max_iter"``, or ``"moments_only"`` with ``refine=False``).
    message : str
        The warning's text when something fell short, else a one-line
        summary.
    shortfalls : tuple of Shortfall
        What fell short, in the order the message says it; empty on a clean
        success.
    explained : bool
        No probed residual direction holds a weight above its floor.
    unexplained_weight : float
        The largest residual weight above its floor, relative to the
        target's norm (0.0 when explained).
    noise_floor : float
        The floor it was compared with, relative to the target's norm.
    n_components : int
        Components returned with a nonzero weight.
    weak_components : tuple of int
        Positions (in the returned order, largest weight first) of the
        components the data cannot tell from noise: weight below twice the
        noise level along them (general CP flow).
    unobserved_slices : tuple of (int, tuple of int)
        ``(mode, indices)`` for each mode with slices holding fewer observed
        entries than components (none at all included): the factor rows of
        those indices are not determined by the data (general CP flow).
    """

    success: bool
    status: str
    message: str
    shortfalls: tuple
    explained: bool
    unexplained_weight: float
    noise_floor: float
    n_components: int
    weak_components: tuple = ()
    unobserved_slices: tuple = ()

    @classmethod
    def from_problems(cls, name, problems, advice, summary, *, success, status, check,
                      explained, n_components, weak_components=(), unobserved_slices=()):
        """The verdict of ``name``'s fit, from ``problems``: ``(Shortfall, clause)`` pairs.

        The message is one sentence naming every problem, then ``advice``;
        ``summary`` when there is none. ``check`` is the result's
        :class:`~tensorly_gfdeflate.check.probe.FitCheck`.
        """
        if problems:
            message = name + " " + "; it ".join(text for _, text in problems) + ". " + advice
        else:
            message = summary
        return cls(success=success, status=status, message=message,
                   shortfalls=tuple(shortfall for shortfall, _ in problems),
                   explained=explained, unexplained_weight=check.largest,
                   noise_floor=check.floor, n_components=n_components,
                   weak_components=tuple(weak_components),
                   unobserved_slices=tuple(unobserved_slices))

    def fewer_than_asked(self, found, message):
        """This verdict for a model that returns ``found`` components, fewer than asked:
        not a success, ``FEWER_THAN_RANK`` among the shortfalls, ``message`` its text."""
        shortfalls = self.shortfalls + (() if Shortfall.FEWER_THAN_RANK in self.shortfalls
                                        else (Shortfall.FEWER_THAN_RANK,))
        return replace(self, success=False, message=message, shortfalls=shortfalls,
                       n_components=int(found))

    def __bool__(self):
        return self.success

    def warn(self):
        """Raise the one ConvergenceWarning that says what fell short (nothing when nothing did)."""
        if self.shortfalls:
            warnings.warn(self.message, ConvergenceWarning, stacklevel=user_stacklevel())
