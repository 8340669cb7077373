"""The record of a gradient-flow run: what researchers look at to see the deflation."""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FlowEvent", "FlowTrace", "SlotLineage", "discovery_times"]


@dataclass(frozen=True)
class FlowEvent:
    """Something the flow did besides an Euler step.

    ``kind`` is ``"redraw"`` (``slots`` re-drawn at the initial scale),
    ``"merge"`` (``slots[1:]`` merged into ``slots[0]``), ``"step_reduced"``
    (a step that raised the loss was undone and the step size halved;
    ``slots`` is empty) or ``"polish"`` (the seeded polish fitted the
    components the probe found, with the fitted ones; ``slots`` took the new
    ones).
    """

    time: float
    kind: str
    slots: tuple


@dataclass(repr=False)
class FlowTrace:
    """History of a :func:`~tensorly_gfdeflate.gradient_flow_cp` run.

    Masses and residuals are in units of the target's Frobenius norm ``scale``:
    the weight carried by slot ``j`` at snapshot ``k`` is
    ``scale * signs[k, j] * norms[k, j] ** 2``.

    Attributes
    ----------
    times : ndarray of shape (n_snapshots,)
        Flow time of each snapshot (one per accepted Euler step, and the start).
    loss : ndarray of shape (n_snapshots,)
        Regularized loss on the normalized target.
    residual : ndarray of shape (n_snapshots,)
        Relative residual ``|T(W) - T*| / |T*|``.
    norms : ndarray of shape (n_snapshots, width)
        Column norms ``|w_j|`` of the model.
    signs : ndarray of shape (n_snapshots, width)
        The slot signs ``s_j`` at each snapshot (at even order with
        ``signs=None``, a re-drawn slot takes the sign of the residual
        direction it starts on).
    events : list of FlowEvent
        Re-draws, merges and step reductions, in time order.
    discovery_time : ndarray of shape (n_components,)
        For each returned component, the earliest time at which the mass of the
        slots that end in it reached half its final value (history before a
        slot's last re-draw does not count).
    component_slots : list of list of int
        The slots read out into each returned component.
    stop_reason : str
        ``"tolerance"``, ``"nothing_to_fit"``, ``"rank_reached"``, ``"stalled"``,
        ``"plateau"``, ``"held_out"`` (general CP, see :ref:`automatic-rank-rules`),
        ``"callback"`` or ``"max_time"``.
    step_size : float
        The step size in use at the end (the default one adapts to the flow;
        a given one is smaller than at the start only after a divergence
        back-off).
    scale : float
        Frobenius norm of the target (the unit of masses and losses).
    refine_steps : int
        Polish sweeps and Euler steps of the refinement stage after read-out.
    final_error : float
        Relative reconstruction error of the returned decomposition.
    explained : bool
        Power iterations on the residual of the returned decomposition found
        no component above the noise floor (see :mod:`tensorly_gfdeflate.check.probe`).
    unexplained_weight : float
        The largest residual weight above its floor, relative to the target's
        norm (0.0 when ``explained``).
    noise_floor : float
        The floor it was compared with, relative to the target's norm.
    component_snr : ndarray
        For each returned component, ``|weight|`` over the noise level along
        its direction (see ``noise_level``): how sure the rank is. inf for a
        CP tensor, or with an explicit ``regularization`` (noise not sized).
    noise_level : float
        Relative to the target's norm: the standard error of a sample
        statistic along a component (the largest), or the largest weight that
        the dense target's noise shows in any direction (its injective norm;
        its size estimated from the residual's, scaled up for the degrees of
        freedom the fit took, see ``probe.fitted_noise_factor``); 0.0 for a CP
        tensor (exact by construction).
    most_fitted : int
        The most distinct components the flow held at any check (more than
        ``rank`` means the tensor has more components than were kept).
    validation : ValidationCurve or None
        The held-out error of each rank on each validation fold, where the
        automatic rank of a partly observed target was chosen by it
        (:class:`~tensorly_gfdeflate.flow.held_out.ValidationCurve`); None
        otherwise.
    verdict : Verdict
        The outcome of the fit (:class:`~tensorly_gfdeflate.check.verdict.Verdict`):
        ``success``, ``status`` (the stop reason), ``message`` and the
        ``shortfalls`` the one warning named.
    """

    times: np.ndarray
    loss: np.ndarray
    residual: np.ndarray
    norms: np.ndarray
    signs: np.ndarray
    events: list = field(default_factory=list)
    discovery_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    component_slots: list = field(default_factory=list)
    stop_reason: str = ""
    step_size: float = float("nan")
    scale: float = 1.0
    refine_steps: int = 0
    final_error: float = float("nan")
    explained: bool = False
    unexplained_weight: float = float("nan")
    noise_floor: float = float("nan")
    most_fitted: int = 0
    component_snr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    noise_level: float = float("nan")
    verdict: object = None
    validation: object = None

    def __repr__(self):
        # The dataclass repr would print every array (tens of thousands of characters).
        start, end = (float(self.times[0]), float(self.times[-1])) if len(self.times) else (0, 0)
        return (f"FlowTrace(stop_reason={self.stop_reason!r}, n_steps={self.n_steps}, "
                f"t={start:g}..{end:g}, n_components={len(self.discovery_time)}, "
                f"final_error={self.final_error:.3g}, n_events={len(self.events)})")

    @property
    def converged(self):
        """``verdict.success``: whether the returned decomposition explains the target.

        Success is what the check of the result says, however the run
        stopped: a run cut at ``max_time`` (or by a callback) whose result
        leaves nothing above the noise floor has converged, and a run whose
        stop rule fired on a result that falls short has not.
        """
        return self.explained if self.verdict is None else self.verdict.success

    @property
    def n_steps(self):
        return len(self.times) - 1

    @property
    def mass(self):
        """Signed mass ``scale * s_j |w_j|^2`` per snapshot and slot."""
        return self.scale * self.signs * self.norms**2


class SlotLineage:
    """Which stretches of which slots' histories make up each slot's current mass.

    A merge hands the absorbed slots' stretches to the leader; a re-draw starts
    a slot afresh. Stretches are ``(slot, first, stop)`` snapshot ranges,
    ``stop = None`` while open.
    """

    def __init__(self, width):
        self.stretches = [[(j, 0, None)] for j in range(width)]

    def merge(self, leader, absorbed, snapshot):
        for slot in absorbed:
            self.stretches[leader] += [
                (s, first, snapshot if stop is None else stop)
                for s, first, stop in self.stretches[slot]
            ]

    def redraw(self, slots, snapshot):
        for slot in slots:
            self.stretches[slot] = [(slot, snapshot, None)]


def discovery_times(times, norms, signs, lineage, component_slots):
    """Discovery time of each component from the slot history (see :class:`FlowTrace`)."""
    mass = signs * norms**2
    result = np.full(len(component_slots), np.nan)
    for c, slots in enumerate(component_slots):
        path = np.zeros(len(times))
        for slot in slots:
            for source, first, stop in lineage.stretches[slot]:
                path[first:stop] += mass[first:stop, source]
        final = path[-1]
        if final == 0:
            continue
        reached = np.flatnonzero(path / final >= 0.5)
        result[c] = times[reached[0]] if len(reached) else np.nan
    return result
