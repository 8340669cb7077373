"""What happens at an epoch boundary: merging aligned slots, re-drawing small ones.

Pure functions of explicit inputs; :class:`~tensorly_gfdeflate.flow.run.FlowRun`
applies them and records the events. See :ref:`theory-variants`.
"""

import numpy as np
import tensorly as tl

from ..check.readout import ALIGNMENT_TOL, group_aligned

__all__ = ["seed_slots", "redraw", "merge_aligned", "slots_still_pooling", "count_fitted"]


def seed_slots(slots, slot_signs, seeds, adaptive):
    """Which re-drawn slots start on which probed directions, and the slots' new signs.

    ``seeds`` is ``(directions, values)``, best first. A slot of fixed sign
    takes the best unused seed of its sign; an adaptive slot takes the best
    unused seed and its sign. Returns ``(pairs, signs)`` with ``pairs`` a
    list of ``(slot, seed column)``.
    """
    signs = slot_signs.copy()
    if seeds is None:
        return [], signs
    seed_signs = np.sign(seeds[1])
    unused = list(range(len(seed_signs)))
    pairs = []
    for slot in slots:
        match = next((k for k in unused if adaptive or seed_signs[k] == signs[slot]), None)
        if match is None:
            continue
        unused.remove(match)
        pairs.append((slot, match))
        if adaptive:
            signs[slot] = seed_signs[match]
    return pairs, signs


def redraw(model, W, slots, init_scale, rng, seeds=None, pairs=()):
    """Columns ``slots`` of ``W`` replaced by fresh slots of norm ``init_scale``.

    Slots in ``pairs`` start on their seed direction (a column of
    ``seeds[0]``), the others on random directions.
    """
    rows, m = tl.shape(W)
    keep = np.ones(m)
    keep[slots] = 0.0
    directions = np.zeros((rows, m))
    directions[:, slots] = tl.to_numpy(model.random(len(slots), rng))
    if pairs:
        seeded, columns = zip(*pairs)
        directions[:, list(seeded)] = tl.to_numpy(seeds[0][:, list(columns)])
    context = tl.context(W)
    fresh = model.slots(tl.tensor(directions, **context), init_scale)
    return W * tl.tensor(keep, **context) + fresh


def merge_aligned(W, point, model):
    """Each group of aligned slots collapses into its leader's slot.

    The merged slot carries the group's summed mass along its mass-weighted mean
    direction. Returns the new ``W`` and the groups of more than one slot.
    """
    groups = [g for g in group_aligned(model, point.directions, point.mass, ALIGNMENT_TOL)
              if len(g) > 1]
    if not groups:
        return W, []
    mass = tl.to_numpy(point.mass)
    keep = np.ones(len(mass))
    placement = np.zeros((len(groups), len(mass)))
    for g, (leader, *absorbed) in enumerate(groups):
        keep[[leader, *absorbed]] = 0.0
        placement[g, leader] = 1.0
    context = tl.context(W)
    norms = tl.tensor([np.sqrt(abs(mass[group].sum())) for group in groups], **context)
    merged = model.slots(model.pool(point.directions, mass, groups), norms)
    return W * tl.tensor(keep, **context) + tl.dot(merged, tl.tensor(placement, **context)), groups


def slots_still_pooling(point, model, min_mass):
    """Whether two fitted slots share a component without having merged yet.

    Such slots drift together at a rate set by the regularizer alone (pooling
    lowers the penalty ``sum |mass|``); stopping before they meet reads out a
    split component, which the refinement then turns into a wrong decomposition.
    """
    mass = np.abs(tl.to_numpy(point.mass))
    fitted = np.flatnonzero(mass >= min_mass)
    if len(fitted) < 2:
        return False
    alignment = model.alignment(point.directions[:, fitted.tolist()])
    np.fill_diagonal(alignment, 0.0)
    return bool(np.any(alignment >= 1.0 - ALIGNMENT_TOL))


def count_fitted(point, model, min_mass):
    """Number of distinct components carried by slots of |mass| >= ``min_mass``."""
    fitted = np.flatnonzero(np.abs(tl.to_numpy(point.mass)) >= min_mass).tolist()
    if not fitted:
        return 0
    return len(group_aligned(model, point.directions[:, fitted], point.mass[fitted],
                             ALIGNMENT_TOL))
