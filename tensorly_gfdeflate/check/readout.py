"""From model components to a CP decomposition; shared by both solvers.

Grouping of aligned components (the merge variant's epoch step and the read-out),
least-squares re-fit of the weights, sign convention, sorting, and the final
``CPTensor`` in the input's backend.
"""

import numpy as np
import tensorly as tl


__all__ = ["group_aligned", "refit_weights", "canonical_signs", "to_cp_tensor", "read_out"]

# Two unit directions are "the same component" when |<b_j, b_k>| >= 1 - ALIGNMENT_TOL.
# Slots converging onto one component drift together only at the rate the
# regularizer sets, so waiting for exact agreement is slow; pooling them along
# their mass-weighted mean direction changes T(W) to second order in the angle,
# which the flow (or the refinement) repairs in a few steps. The price:
# distinct true components closer than arccos(0.9) are fitted as one.
ALIGNMENT_TOL = 0.1


def group_aligned(model, directions, mass, tol):
    """Groups of slots whose directions agree, largest |mass| first in each group.

    Only slots of the same sign are grouped, so a group's summed mass keeps the
    sign of its leader. Agreement is ``model.alignment >= 1 - tol``: for
    symmetric odd orders and general tensors ``b`` and ``-b`` are different
    components, for even orders they are the same.

    Returns a list of index lists; every slot of ``mass`` appears in exactly one.
    """
    mass = np.asarray(tl.to_numpy(mass), dtype=float)
    alignment = model.alignment(directions)
    same = (alignment >= 1.0 - tol) & (np.sign(mass)[:, None] == np.sign(mass)[None, :])
    unassigned = np.ones(len(mass), dtype=bool)
    groups = []
    for leader in np.argsort(-np.abs(mass), kind="stable"):
        if not unassigned[leader]:
            continue
        members = np.flatnonzero(same[leader] & unassigned)
        members = [leader] + [k for k in members if k != leader]
        unassigned[members] = False
        groups.append(members)
    return groups


def refit_weights(target, vectors):
    """Least-squares weights for fixed unit directions: ``overlap(V) c = [T*(v_k^l)]_k``.

    ``overlap`` is the Gram matrix of the rank-one tensors under the target's
    inner product (positive semi-definite); a tiny ridge keeps the solve
    defined when two directions nearly coincide.
    """
    gram = target.overlap(vectors)
    rhs = target.evaluate(vectors)
    k = tl.shape(gram)[0]
    ridge = 1e-12 * float(tl.max(tl.abs(gram))) + 1e-300
    return tl.solve(gram + ridge * tl.eye(k, **tl.context(gram)), rhs)


def canonical_signs(model, weights, vectors):
    """Where a weight's sign can move into its vectors (odd order, general CP), make it positive."""
    if not model.signs_in_vectors:
        return weights, vectors
    flip = tl.sign(weights) + (weights == 0)
    return weights * flip, model.negate(vectors, flip)


def to_cp_tensor(model, weights, vectors, scale):
    """``CPTensor`` sorted by ``|weight|`` descending, weights times ``scale``; and the permutation."""
    weights, vectors = canonical_signs(model, weights, vectors)
    permutation = np.argsort(-np.abs(tl.to_numpy(weights)), kind="stable").tolist()
    weights = weights[permutation] * scale
    vectors = vectors[:, permutation]
    return model.to_cp(weights, vectors), permutation


def read_out(target, model, W, signs, rank, drop_threshold, debias, min_weight=0.0):
    """Weights, unit directions and slot groups of the components the model has fitted.

    Drops slots of |mass| below ``drop_threshold``, merges aligned slots (summing
    their signed mass), keeps the ``rank`` largest groups, and optionally re-fits
    the weights by least squares, which removes the ``lambda / 2`` shrinkage.
    After the re-fit, components of ``|weight|`` below ``min_weight`` are dropped
    (the flow cannot fit those: a slot there only soaks up residual) and the
    rest re-fitted.
    """
    norms, directions = model.split(W)
    mass = signs * norms**2
    kept = np.flatnonzero(np.abs(tl.to_numpy(mass)) >= drop_threshold).tolist()
    if not kept:
        return None, None, []
    groups = group_aligned(model, directions[:, kept], mass[kept], ALIGNMENT_TOL)
    groups = [[kept[i] for i in group] for group in groups]
    mass_np = tl.to_numpy(mass)
    group_mass = np.array([mass_np[group].sum() for group in groups])
    order = np.argsort(-np.abs(group_mass), kind="stable")
    if rank is not None:
        order = order[:rank]
    groups = [groups[i] for i in order]
    vectors = model.pool(directions, mass_np, groups)
    if not debias:
        return tl.tensor(group_mass[order], **tl.context(W)), vectors, groups
    weights = refit_weights(target, vectors)
    strong = np.flatnonzero(np.abs(tl.to_numpy(weights)) >= min_weight).tolist()
    if not strong:
        return None, None, []
    if len(strong) < len(groups):
        groups = [groups[i] for i in strong]
        vectors = vectors[:, strong]
        weights = refit_weights(target, vectors)
    return weights, vectors, groups
