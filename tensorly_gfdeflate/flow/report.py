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
    weak: tuple = ()
    validation: object = None
    unobserved: tuple = ()

    @property
    def held_out(self):
        """Whether the rank was chosen by held-out error (the residual check then does not judge it)."""
        return self.validation is not None


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
    if o.rank is not None and o.weak:
        found.append((Shortfall.UNSUPPORTED,
                      f"kept {len(o.weak)} of its rank={o.rank} components that the data cannot "
                      f"tell from noise (positions {list(o.weak)}, largest weight first: weight "
                      "below twice the noise level along them, see component_snr)"))
    if o.unobserved:
        found.append((Shortfall.UNOBSERVED, _unobserved_clause(o)))
    if o.held_out and o.validation.at_limit:
        found.append((Shortfall.HELD_OUT_LIMIT,
                      f"chose rank {o.validation.chosen} by held-out error, the largest rank "
                      "tried, where the error was still falling"))
    if o.rank is None and o.most_fitted >= o.width and not o.held_out:
        found.append((Shortfall.WIDTH_EXHAUSTED,
                      f"used every one of its width={o.width} slots, so the automatic rank is "
                      "not to be trusted (the tensor may hold more components, or noise was "
                      "fitted as components)"))
    # A run cut at max_time has not converged, whatever its result holds.
    if o.stop_reason == "max_time":
        found.append((Shortfall.MAX_TIME,
                      f"reached max_time={o.time:g} before its stop rules were met "
                      f"({o.residual_text})"))
    # With a held-out rank the target is not low rank plus noise: what the residual
    # holds is what the folds say more components would not predict.
    if not check.explained and not o.held_out:
        found.append((Shortfall.UNEXPLAINED,
                      f"leaves a residual holding a component of weight {check.largest:.3g} "
                      f"(relative to |T|) in {check.unexplained} probed direction(s), above the "
                      f"noise floor {check.floor:.3g}: the decomposition does not explain the "
                      "tensor"))
    return found


def _unobserved_clause(outcome):
    listed = "; ".join(
        f"mode {mode}: {len(indices)} indices {list(indices[:10])}"
        + (" ..." if len(indices) > 10 else "")
        for mode, indices in outcome.unobserved)
    return (f"has slices with fewer observed entries than its {max(outcome.found, 1)} "
            f"components, whose factor rows the data do not determine ({listed}; see "
            "verdict.unobserved_slices)")


def _advice(outcome, check):
    o = outcome
    if o.unobserved:
        return ("Observe entries in the listed slices (at least one per component), or drop "
                "those indices: the values returned for them are not estimates.")
    if o.held_out and o.validation.at_limit:
        return (f"Pass a larger width (the path stops at width={o.width}), or observe more "
                "entries, to try larger ranks.")
    if o.rank is not None and o.weak:
        return ("Lower rank to drop them, or pass rank=None for the rank of least held-out "
                "error.")
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
    if o.rank is not None and o.stop_reason == "stalled" and not check.explained:
        return ("The flow grew no further component for many checks and the missing ones "
                f"were added on the residual's leading directions: rank={o.rank} components "
                "do not explain the tensor; pass rank=None (the automatic rank) or a larger "
                "rank.")
    if o.stop_reason == "max_time":
        return ("The flow was still fitting: increase max_time; if what is left is noise, "
                "raise regularization (or pass rank).")
    return "Try another random_state, a larger width or max_time, or variant='merge'."


def _summary(outcome):
    o = outcome
    if o.held_out:
        return (f"{o.name} chose {o.validation.chosen} components by held-out error "
                f"(ranks 1..{len(o.validation.ranks)} tried on {len(o.validation.errors)} "
                "folds of the observed entries).")
    return f"{o.name} explained the tensor with {o.found} components (stopped: {o.stop_reason})."


def flow_verdict(outcome, check):
    """The verdict of a flow run whose result the check ``check`` judged.

    A success is a clean one: the check explains the result (or the rank was
    chosen by held-out error) and nothing else fell short.
    """
    problems = _shortfalls(outcome, check)
    failed = {Shortfall.MAX_TIME, Shortfall.UNSUPPORTED, Shortfall.UNOBSERVED,
              Shortfall.HELD_OUT_LIMIT}
    success = ((check.explained or outcome.held_out)
               and not any(shortfall in failed for shortfall, _ in problems))
    return Verdict.from_problems(
        outcome.name, problems, _advice(outcome, check), _summary(outcome),
        success=success, status=str(outcome.stop_reason), check=check,
        explained=check.explained, n_components=outcome.found,
        weak_components=outcome.weak, unobserved_slices=outcome.unobserved)
