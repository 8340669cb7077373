"""The settings of a flow run: what the caller passed (validated), and what the run uses (resolved).

:class:`FlowSettings` holds the caller's values, each checked against the
declarative table :data:`FLOW_CONSTRAINTS` on every fit (a warm start
included). :meth:`FlowSettings.resolve` turns them into the
:class:`ResolvedSettings` the run reads: ``"auto"`` and ``None`` replaced by
numbers, derived thresholds computed. Neither is ever changed in place.
"""

from dataclasses import dataclass

import numpy as np

import tensorly as tl

from .._checks import (
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
)
from ..check.probe import (
    DEFAULT_FLOOR,
    NOISE_STANDARD_ERRORS,
    probe_residual,
    regularization_above_noise,
)
from ..models.protocol import check_rank_determinable

__all__ = ["VARIANTS", "FLOW_CONSTRAINTS", "FlowSettings", "ResolvedSettings",
           "automatic_regularization"]

VARIANTS = ("vanilla", "paper", "merge")
# The Euler step on the unit-norm target when none is given.
DEFAULT_STEP_SIZE = 0.3


def _optional_count(name, value):
    """None, or an integer >= 1 (a rank or a width)."""
    return None if value is None else check_int(name, value, 1)


def _regularization(name, value):
    """``"auto"`` (or None, its alias) or a number >= 0."""
    if value is None or isinstance(value, str):
        check_choice(name, "auto" if value is None else value, ("auto",))
        return "auto"
    return check_nonnegative(name, value)


def _optional_positive(name, value):
    return None if value is None else check_positive(name, value)


#: One check per parameter, as scikit-learn's ``_parameter_constraints``: each takes
#: ``(name, value)``, returns the value to store and raises, naming the argument and
#: the fix, on a bad one.
FLOW_CONSTRAINTS = {
    "rank": _optional_count,
    "width": _optional_count,
    "variant": lambda name, value: check_choice(name, value, VARIANTS),
    "regularization": _regularization,
    "init_scale": check_positive,
    "reinit_threshold": check_positive,
    "epoch_time": check_positive,
    "epoch_growth": check_nonnegative,
    "step_size": _optional_positive,
    "max_time": check_positive,
    "tol": check_positive,
    "debias": check_bool,
    "stop_at_plateau": check_bool,
    "verbose": check_bool,
}


@dataclass(frozen=True)
class FlowSettings:
    """The caller's settings of one flow run, validated; ``None`` and ``"auto"`` still unresolved."""

    rank: object
    width: object
    variant: str
    regularization: object
    init_scale: float
    reinit_threshold: float
    epoch_time: float
    epoch_growth: float
    step_size: object
    max_time: float
    tol: float
    debias: bool = True
    stop_at_plateau: bool = False
    verbose: bool = False

    @classmethod
    def validated(cls, **values):
        """Every value checked by :data:`FLOW_CONSTRAINTS`; a ValueError or TypeError names the bad one."""
        checked = {name: FLOW_CONSTRAINTS[name](name, value) for name, value in values.items()}
        settings = cls(**checked)
        if settings.rank is not None and settings.width is not None \
                and settings.width < settings.rank:
            raise ValueError(
                f"width={settings.width} must be >= rank={settings.rank}: the flow fits at "
                "most width components; increase width (default max(2 * rank, 8)) or lower "
                "rank.")
        return settings

    def resolve(self, name, target, model, default_width, rng, default_step=DEFAULT_STEP_SIZE):
        """The :class:`ResolvedSettings` of a run of the public function ``name`` on ``target``.

        ``default_width(rank)`` gives the width when none was passed; the
        automatic regularization draws from ``rng`` (sample statistics only,
        see :func:`automatic_regularization`). ``target`` is normalized.
        """
        check_rank_determinable(self.rank, target, model)
        # A given width was checked against the rank in validated(); every default
        # width rule gives at least max(2 * rank, 8).
        width = default_width(self.rank) if self.width is None else self.width
        auto = self.regularization == "auto"
        regularization = (automatic_regularization(target, model, self.variant, rng,
                                                   rounds=self.rank or _REGULARIZATION_ROUNDS)
                          if auto else self.regularization)
        return ResolvedSettings(
            name=name, rank=self.rank, width=width, variant=self.variant,
            regularization=regularization, noise_aware=auto,
            init_scale=self.init_scale, reinit_threshold=self.reinit_threshold,
            epoch_time=self.epoch_time, epoch_growth=self.epoch_growth,
            step_size=default_step if self.step_size is None else self.step_size,
            explicit_step=self.step_size is not None, tol=self.tol)


@dataclass(frozen=True)
class ResolvedSettings:
    """What a run reads: every value a number (or None for "no rank").

    ``noise_aware``: the regularization was automatic, so the stop rules and
    the check also compare what is left with the target's noise (an explicit
    regularization is the caller's floor, and nothing else is compared with).
    ``explicit_step``: the caller chose the step, so a back-off is worth a
    warning.
    """

    name: str
    rank: object
    width: int
    variant: str
    regularization: float
    noise_aware: bool
    init_scale: float
    reinit_threshold: float
    epoch_time: float
    epoch_growth: float
    step_size: float
    explicit_step: bool
    tol: float

    @property
    def drop_threshold(self):
        """Slots of mass below this are noise to the re-draw rule, not components."""
        return self.reinit_threshold**2

    @property
    def fit_threshold(self):
        """Residual weights at or below this are left alone (at least the tolerance).

        An explicit ``lambda`` is the user's floor: nothing up to ``lambda``
        needs fitting. With ``"auto"`` the floor is the noise's and
        ``lambda / 2``, below which a component cannot grow: a ``lambda``
        raised to six standard errors must not hide components between three
        and six.
        """
        floor = self.regularization / 2 if self.noise_aware else self.regularization
        return max(floor, self.tol)


# Rounds of the automatic regularization's search for structure when no rank is given
# (one more than the components it finds, at most).
_REGULARIZATION_ROUNDS = 8


def automatic_regularization(target, model, variant, rng, rounds=1):
    """``regularization="auto"``: 0 (vanilla), or 1e-3 raised to the sampling noise floor.

    For sample statistics, the floor that the result check applies to each
    direction (see :func:`~tensorly_gfdeflate.check.probe.check_fit`):
    ``NOISE_STANDARD_ERRORS`` standard errors there, the same estimate the
    power method is judged by. ``lambda / 2`` is the lowest of those floors
    among the directions that stand above theirs, found as the power method
    finds them: the target's leading directions (power iterations), then, for
    up to ``rounds`` rounds, those of what is left once the largest one found
    is taken out. So every direction the check would call structure can grow.
    When none stands above its floor, ``lambda / 2`` is the highest floor, so
    that noise is never fitted: without a floor the flow fits sampling noise
    until ``max_time``. (The largest standard error along the target's
    leading directions, used before, is set on real counts by a direction that
    a few documents dominate, 20 times the floor of the power method's check,
    and hid all but 1 of 10 topics of a corpus.) ``target`` is normalized; so
    is the result. See :ref:`theory-check`.
    """
    if variant == "vanilla":
        return 0.0
    if not target.is_sampled:
        return DEFAULT_FLOOR
    residual, lowest, highest = target, np.inf, 0.0
    for _ in range(rounds):
        probe = probe_residual(residual, model, None, rng)
        standard_errors = tl.to_numpy(target.standard_error(probe.directions))
        highest = max(highest, float(np.max(standard_errors, initial=0.0)))
        significant = np.flatnonzero(np.abs(probe.values) > NOISE_STANDARD_ERRORS
                                     * standard_errors)
        if not len(significant):
            break
        lowest = min(lowest, float(np.min(standard_errors[significant])))
        top = significant[np.argmax(np.abs(probe.values[significant]))]
        residual = residual.minus(tl.tensor(probe.weights[[top]], **target.context),
                                  probe.directions[:, [top]])
    return regularization_above_noise(lowest if np.isfinite(lowest) else highest)
