"""Pictures of the deflation: fitted mass against flow time, residual staircase, discovery times.

matplotlib is an optional extra (``pip install 'tensorly-gfdeflate[plot]'``);
it is imported only when a plot is drawn.
"""

import numpy as np
import tensorly as tl

from .check.measures import match_components
from .flow.trace import SlotLineage

__all__ = ["plot_deflation", "plot_discovery", "plot_overview"]

# A flow component stands for a reference component when it points along it this closely.
_MATCH_COSINE = 0.99


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "tensorly_gfdeflate's plots need matplotlib: "
            "pip install 'tensorly-gfdeflate[plot]'."
        ) from exc
    return plt


def _component_mass(trace):
    """Mass of each returned component through time, shape ``(n_snapshots, n_components)``.

    The slots that end in a component did not always carry it: a slot's history
    before its last re-draw belongs to another direction, and slots merged into
    it carried part of its mass before the merge. The trace's events are
    replayed into a :class:`SlotLineage` to follow exactly the stretches that
    make up each component (the same stretches its discovery time is read from).
    """
    times = np.asarray(trace.times)
    lineage = SlotLineage(np.shape(trace.norms)[1])
    for event in trace.events:
        snapshot = int(np.searchsorted(times, event.time, side="right")) - 1
        if event.kind == "merge":
            lineage.merge(event.slots[0], event.slots[1:], snapshot)
        elif event.kind == "redraw":
            lineage.redraw(event.slots, snapshot)
    mass = trace.mass
    paths = np.zeros((len(times), len(trace.component_slots)))
    for c, slots in enumerate(trace.component_slots):
        for slot in slots:
            for source, first, stop in lineage.stretches[slot]:
                paths[first:stop, c] += mass[first:stop, source]
    return paths


def _cp_weights(cp_tensor, name):
    """The weights of a CP tensor (symmetric or general) in numpy."""
    try:
        weights, factors = cp_tensor
        weights = np.asarray(tl.to_numpy(weights), dtype=float)
        has_factors = len(factors) > 0
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a CPTensor (weights, factors).") from exc
    if not has_factors:
        raise TypeError(f"{name} must be a CPTensor (weights, factors).")
    return weights


def _references(trace, truth, decomposition):
    """What each curve stands for: ``(weights, flow component index, matched)`` per reference.

    References are the true components when a truth is given, else the
    returned components.
    """
    n_components = len(trace.component_slots)
    if decomposition is not None:
        weights = _cp_weights(decomposition, "decomposition")
        if len(weights) != n_components:
            raise ValueError(
                f"decomposition has {len(weights)} components but the trace "
                f"{n_components}: pass the CPTensor returned together with this trace."
            )
    if truth is None:
        weights = None if decomposition is None else weights
        return weights, np.arange(n_components), np.ones(n_components, dtype=bool)
    if decomposition is None:
        raise ValueError(
            "plot_deflation needs decomposition= (the CPTensor returned with the trace) "
            "to tell which flow component fitted which true component."
        )
    true_weights = _cp_weights(truth, "truth")
    index, cosine = match_components(truth, decomposition)
    return true_weights, index, (index >= 0) & (cosine >= _MATCH_COSINE)


def _extraction_steps(power, reference, n_references):
    """The power method's extraction step (1 = first) of each reference component, or 0."""
    power_cp, power_trace = power
    index, cosine = match_components(reference, power_cp)
    steps = np.zeros(n_references, dtype=int)
    found = (index >= 0) & (cosine >= _MATCH_COSINE)
    steps[found] = np.asarray(power_trace.extraction_index)[index[found]] + 1
    return steps


def plot_deflation(trace, truth=None, *, decomposition=None, power=None, axes=None):
    """The deflation process of a gradient-flow run: fitted mass and residual against time.

    Top: for each true component (or each returned one, without a truth) the
    mass the flow carries along it, summed over the slots that end in it (a
    slot's mass is ``s_j |w_j|^2`` in the symmetric model and the product of
    its mode norms ``|w_j1| ... |w_jN|`` in the general one), with its
    discovery time (half its final mass) marked, the true or fitted weight as
    a dotted level, and, with ``power``, the step at which
    the power method extracted the same component. Bottom: the relative
    residual on a log scale (on the observed entries when some are missing),
    a staircase whose steps are the discoveries.

    Parameters
    ----------
    trace : FlowTrace
        From ``gradient_flow_cp(..., return_trace=True)`` or
        ``gradient_flow_parafac(..., return_trace=True)``.
    truth : CPTensor, optional
        The true decomposition (symmetric or general, as the target); curves
        are then labelled by true weight, and true components the flow missed
        are listed in the title.
    decomposition : CPTensor, optional
        The CPTensor returned with ``trace``. Needed with ``truth`` (to match
        flow components to true ones) and with ``power`` without a truth.
    power : tuple (CPTensor, PowerTrace), optional
        From ``power_deflation_cp(..., return_trace=True)`` (or
        ``power_deflation_parafac``) on the same target:
        each curve's discovery point is annotated with ``#k``, the step at
        which the power method extracted that component.
    axes : pair of matplotlib Axes, optional
        Where to draw (mass, residual); default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the two axes.

    Raises
    ------
    ImportError
        When matplotlib is not installed (the ``plot`` extra).
    """
    plt = _pyplot()
    weights, flow_index, matched = _references(trace, truth, decomposition)
    n_refs = len(flow_index)
    steps = np.zeros(n_refs, dtype=int)
    if power is not None:
        reference = truth if truth is not None else decomposition
        if reference is None:
            raise ValueError(
                "plot_deflation needs truth= or decomposition= to match the power "
                "method's components with the flow's."
            )
        steps = _extraction_steps(power, reference, n_refs)
    if axes is None:
        _, axes = plt.subplots(2, 1, sharex=True, figsize=(9, 6.5), height_ratios=[2, 1],
                               layout="constrained")
    mass_ax, residual_ax = axes

    times = np.asarray(trace.times)
    paths = _component_mass(trace)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(n_refs, 1)))
    missed = []
    for i in range(n_refs):
        label = f"component {i + 1}" if weights is None else f"weight {weights[i]:.3g}"
        if not matched[i]:
            missed.append(label)
            continue
        c = flow_index[i]
        mass_ax.plot(times, paths[:, c], color=colors[i], label=label)
        if weights is not None:
            mass_ax.axhline(weights[i], color=colors[i], linestyle=":", linewidth=0.8)
        found = trace.discovery_time[c]
        if np.isfinite(found):
            at = np.searchsorted(times, found)
            mass_ax.plot(found, paths[at, c], "o", color=colors[i], markersize=5)
            if steps[i]:
                mass_ax.annotate(f"#{steps[i]}", (found, paths[at, c]), xytext=(-14, 4),
                                 textcoords="offset points", fontsize=8, color=colors[i])
    title = "Mass fitted along each component"
    if power is not None:
        title += " (o: flow discovery; #k: power method's extraction step)"
    else:
        title += " (o: discovery at half mass)"
    if missed:
        title += "\nnot found by the flow: " + ", ".join(missed)
    mass_ax.set_title(title, fontsize=9)
    mass_ax.set_ylabel("fitted mass")
    mass_ax.legend(fontsize=8, ncol=2 if n_refs > 6 else 1, loc="upper left",
                   bbox_to_anchor=(1.0, 1.0))

    residual_ax.semilogy(times, trace.residual, color="black", label="gradient flow")
    merges = [event.time for event in trace.events if event.kind == "merge"]
    for k, time in enumerate(merges):
        residual_ax.axvline(time, color="tab:red", alpha=0.5, linewidth=0.8,
                            label="merge" if k == 0 else None)
    if np.isfinite(trace.final_error) and trace.final_error > 0:
        residual_ax.axhline(trace.final_error, color="gray", linestyle="--", linewidth=0.8,
                            label=f"returned decomposition ({trace.final_error:.1e})")
    residual_ax.set_xscale("symlog", linthresh=1.0)
    residual_ax.set_xlim(0, times[-1] * 1.05)
    residual_ax.set_xlabel("flow time t (on the target scaled to unit norm; log scale above 1)")
    residual_ax.set_ylabel("|T(W) - T*| / |T*|")
    residual_ax.set_title("Relative residual: a staircase, one step per discovery", fontsize=9)
    residual_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return mass_ax.figure


def plot_discovery(trace, weights, *, ax=None):
    """Discovery time of each component against 1 / weight, with a least-squares line.

    The paper predicts that a component of weight ``a`` is discovered after a
    time growing roughly like ``1 / a``: the points should rise along a line.

    Parameters
    ----------
    trace : FlowTrace
        From ``gradient_flow_cp`` or ``gradient_flow_parafac`` with ``return_trace=True``.
    weights : array-like of shape (n_components,)
        The weights of the returned components, in the same order (the
        returned CPTensor's ``weights``); their absolute values are used.
    ax : matplotlib Axes, optional
        Where to draw; default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.

    Raises
    ------
    ImportError
        When matplotlib is not installed (the ``plot`` extra).
    """
    plt = _pyplot()
    weights = np.abs(np.asarray(tl.to_numpy(weights) if tl.is_tensor(weights) else weights,
                                dtype=float)).ravel()
    found = np.asarray(trace.discovery_time, dtype=float)
    if weights.shape != found.shape:
        raise ValueError(
            f"weights must have one entry per returned component ({found.size}), "
            f"got {weights.size}: pass the weights of the CPTensor returned with this trace."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    keep = np.isfinite(found) & (weights > 0)
    inverse = 1.0 / weights[keep]
    ax.plot(inverse, found[keep], "o", color="tab:blue", label="components")
    for x, y, w in zip(inverse, found[keep], weights[keep]):
        ax.annotate(f"{w:.2g}", (x, y), xytext=(4, -10), textcoords="offset points", fontsize=7)
    if np.ptp(inverse) > 0:
        slope, intercept = np.polyfit(inverse, found[keep], 1)
        grid = np.linspace(inverse.min() * 0.9, inverse.max() * 1.05, 50)
        ax.plot(grid, intercept + slope * grid, "--", color="gray",
                label=f"least squares: t = {intercept:.3g} + {slope:.3g} / weight")
    ax.set_xlabel("1 / weight")
    ax.set_ylabel("discovery time t")
    ax.set_title("Discovery time against 1 / weight", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure


def plot_overview(trace, truth=None, *, decomposition, power=None):
    """One figure with :func:`plot_deflation` on the left and :func:`plot_discovery` on the right.

    Parameters
    ----------
    trace : FlowTrace
        From ``gradient_flow_cp`` or ``gradient_flow_parafac`` with ``return_trace=True``.
    truth : CPTensor, optional
        The true decomposition.
    decomposition : CPTensor
        The CPTensor returned with ``trace``.
    power : tuple (CPTensor, PowerTrace), optional
        From ``power_deflation_cp`` or ``power_deflation_parafac`` with
        ``return_trace=True``, on the same target.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (what ``gfdeflate compare --plot`` writes).
    """
    plt = _pyplot()
    figure = plt.figure(figsize=(13, 6.5), layout="constrained")
    grid = figure.add_gridspec(2, 2, width_ratios=[2, 1], height_ratios=[2, 1])
    mass_ax = figure.add_subplot(grid[0, 0])
    residual_ax = figure.add_subplot(grid[1, 0], sharex=mass_ax)
    mass_ax.tick_params(labelbottom=False)
    plot_deflation(trace, truth, decomposition=decomposition, power=power,
                   axes=(mass_ax, residual_ax))
    plot_discovery(trace, decomposition.weights, ax=figure.add_subplot(grid[:, 1]))
    return figure
