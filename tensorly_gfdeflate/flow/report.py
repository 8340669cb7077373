"""The report step of a flow run: its :class:`~tensorly_gfdeflate.check.verdict.Verdict`, with the one warning's text.

:func:`flow_verdict` decides what fell short from explicit figures and says
it once, with what to do about it.
"""

from dataclasses import dataclass

from ..check.verdict import Shortfall, Verdict

__all__ = ["RunOutcome", "flow_verdict"]


@dataclass(frozen=True)
class RunOutcome:
    """The figures a flow's verdict is decided on.

    ``parameters`` and ``n_observed`` are the free parameters of the
    ``found`` components and the observed entries (``underdetermined`` when
    the first reaches the second on a partly observed target);
    ``residual_text`` describes the run's last relative residual.
    """

    name: str
    rank: object
    width: int
    found: int
    most_fitted: int
    stop_reason: str
    time: float
    underdetermined: bool
    parameters: int
    n_observed: int
    residual_text: str


def _shortfalls(outcome, check):
    """Each shortfall with its clause of the message, in the order the message says them."""
    o = outcome
    found = []
    if o.found == 0:
        found.append((Shortfall.NOTHING_FITTED,
                      "fitted no component (the returned CPTensor holds one component "
                      "of weight 0, the zero tensor)"))
    elif o.rank is not None and o.found < o.rank:
        found.append((Shortfall.FEWER_THAN_RANK,
                      f"found {o.found} components, fewer than rank={o.rank}"))
    if o.underdetermined:
        found.append((Shortfall.UNDERDETERMINED,
                      f"returned {o.found} components, {o.parameters} free parameters for "
                      f"{o.n_observed} observed entries: so many fit the observed entries "
                      "whatever the others hold, and predict nothing"))
    if o.rank is None and o.most_fitted >= o.width:
        found.append((Shortfall.WIDTH_EXHAUSTED,
                      f"used every one of its width={o.width} slots, so the automatic rank is "
                      "not to be trusted (the tensor may hold more components, or noise was "
                      "fitted as components)"))
    # A run cut short at max_time whose result passes the check is a result:
    # only when the check fails is the horizon worth mentioning.
    if o.stop_reason == "max_time" and not check.explained:
        found.append((Shortfall.MAX_TIME,
                      f"reached max_time={o.time:g} before its stop rules were met "
                      f"({o.residual_text})"))
    if not check.explained:
        found.append((Shortfall.UNEXPLAINED,
                      f"leaves a residual holding a component of weight {check.largest:.3g} "
                      f"(relative to |T|) in {check.unexplained} probed direction(s), above the "
                      f"noise floor {check.floor:.3g}: the decomposition does not explain the "
                      "tensor"))
    return found


def _advice(outcome, check):
    o = outcome
    if o.underdetermined:
        return (f"Observe more entries: {o.found} components need more than "
                f"{o.parameters} to be determined by them (or pass a smaller rank).")
    if o.most_fitted >= o.width:
        return (f"Every one of the width={o.width} slots was in use: increase width "
                f"(or lower rank).")
    if o.rank is not None and o.found < o.rank and check.explained:
        return (f"What is left holds nothing above the floor {check.floor:.3g}: the tensor "
                f"has fewer than rank={o.rank} components that large. Lower rank, or lower "
                "regularization if smaller components are expected.")
    if o.rank is not None and o.most_fitted > o.rank and not check.explained:
        return (f"The flow fitted {o.most_fitted} components and {o.rank} were kept: the "
                f"tensor needs more than rank={o.rank} components; pass rank=None (automatic "
                "rank) or a larger rank.")
    if o.stop_reason == "max_time":
        return ("The flow was still fitting: increase max_time; if what is left is noise, "
                "raise regularization (or pass rank).")
    return "Try another random_state, a larger width or max_time, or variant='merge'."


def flow_verdict(outcome, check):
    """The verdict of a flow run whose result the check ``check`` judged."""
    return Verdict.from_problems(
        outcome.name, _shortfalls(outcome, check), _advice(outcome, check),
        f"{outcome.name} explained the tensor with {outcome.found} components "
        f"(stopped: {outcome.stop_reason}).",
        success=check.explained, status=str(outcome.stop_reason), check=check,
        explained=check.explained, n_components=outcome.found)
