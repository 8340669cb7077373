"""The rank of a partly observed target chosen by held-out error, and a given rank filled.

Both grow a fit one component at a time, in the order the flow discovers
them (the largest left in the residual first), each rank starting from the
one below: a new component on the residual's leading rank-one direction,
then every component refined together (:func:`polish`: ALS on the observed
entries of a partly observed target, else the flow with ``lambda = 0``). One
such path visits every rank; :func:`held_out_path` walks it once per
validation fold, on the observed entries outside the fold, and records the
relative error on the fold's entries (the validation curve). See
:ref:`automatic-rank-rules`.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
import tensorly as tl

from ..check.probe import NOISE_MARGIN, signal_to_noise
from .alternating import observed_als
from ..targets.general import Coordinates, ObservedEntries, split_blocks

__all__ = ["ValidationCurve", "extend_fit", "held_out_path", "needs_held_out", "can_hold_out", "weak_components",
           "unobserved_slices", "polish", "N_FOLDS", "ENOUGH_HELD_OUT", "PATIENCE", "CLEAR_SNR"]

# The noise floor's automatic rank is kept on a partly observed target only when every
# component stands this many times above the noise along it. Measured (regularization
# "auto", mask seed 0): synthetic rank 3 with 5% noise at 10% and 30% observed, smallest
# ratio 28 and 49; real tensors (covid-19 serology at 10-50%, digits, IL2 at 50%), whose
# smallest components stand 2.9 to 4.6 times above it, every one below 10.
CLEAR_SNR = 10.0


# Validation folds drawn from the observed entries (each holds out a fifth of them, as
# the 5-fold cross-validation a careful ALS user runs).
N_FOLDS = 5
# Folds are walked until their held-out entries number this many (all five below 4,000
# entries a fold): on a large tensor one fold's error is already precise, and every fold
# walked costs a whole path.
ENOUGH_HELD_OUT = 20_000
# The path stops once this many ranks in a row have not lowered the mean held-out error.
PATIENCE = 2
# Power-iteration starts for each component the path adds.
NEW_COMPONENT_STARTS = 8
# Mean held-out errors within this fraction of the least count as tied (the smallest rank
# wins). On IL2 at 50% observed the one-standard-error rule kept rank 4 (error .246 against
# .236 at rank 9, and .18 for ALS at rank 8): the folds' spread is large on real tensors.
TIE = 0.01
# Each fold needs this many training entries per free parameter of the largest rank tried.
_ENTRIES_PER_PARAMETER = 2


@dataclass(frozen=True)
class ValidationCurve:
    """Held-out error along the rank path: the automatic rank's evidence.

    Attributes
    ----------
    ranks : ndarray of shape (n_ranks,)
        The ranks tried, ``1, 2, ...``.
    errors : ndarray of shape (n_folds, n_ranks)
        Relative error ``|T_hat - T| / |T|`` on each fold's held-out entries
        of the fit of that rank to the other observed entries.
    chosen : int
        The rank chosen: the smallest whose mean error over the folds is
        within ``TIE`` (1%) of the least.
    limit : int
        The largest rank the path could try (see :func:`max_path_rank`).
    """

    ranks: np.ndarray
    errors: np.ndarray
    chosen: int
    limit: int

    @property
    def at_limit(self):
        """Whether the chosen rank is the largest the path could try (more might predict better)."""
        return self.chosen == self.limit

    @property
    def mean(self):
        """The mean held-out error of each rank over the folds."""
        return self.errors.mean(axis=0)


def _least_error_rank(errors):
    """The smallest rank whose mean error is within ``TIE`` of the least mean error.

    Ranks the folds cannot tell apart (an exact low-rank tensor's are all at
    the refinement's precision) go to the smallest.
    """
    mean = errors.mean(axis=0)
    return int(np.flatnonzero(mean <= np.min(mean) * (1.0 + TIE) + 1e-12)[0]) + 1


def _leading_start(subspaces, shape, rng):
    """One start on the leading eigenvector of each mode's spectrum (uniform where none)."""
    columns = []
    for basis, n in zip(subspaces, shape):
        column = basis[:, 0] if basis is not None else rng.standard_normal(n)
        columns.append(column / np.linalg.norm(column))
    return np.concatenate(columns)[:, None]


def _new_component(selection, weights, vectors, rng):
    """The residual's leading rank-one direction and its least-squares weight, appended.

    Power iterations from the leading eigenvectors of the residual's own
    spectrum (per mode, diagonal deleted: see
    :mod:`~tensorly_gfdeflate.targets.spectral`) and ``NEW_COMPONENT_STARTS``
    random draws (half in that spectrum); the direction that explains most
    of the residual's norm is taken. The spectrum keeps a start off the few
    entries that stand out of a real tensor: on IL2 at 10% observed, random
    starts alone settled on them, and the rank-1 fits of the folds predicted
    nothing (error .92, against .43 for ALS).
    """
    target = selection.target
    residual = target if weights is None else target.minus(weights, vectors)
    model = selection.model.for_target(residual)
    starts = np.concatenate(
        [_leading_start(model.subspaces, target.shape, rng),
         tl.to_numpy(model.random(NEW_COMPONENT_STARTS, rng))], axis=1)
    directions, _ = model.power_iterate(residual, tl.tensor(starts, **target.context),
                                        model.probe_sweeps, 1e-8)
    values = tl.to_numpy(residual.evaluate(directions))
    squared = (tl.to_numpy(residual.overlap_diagonal(directions)) if selection.partly_observed
               else np.ones(len(values)))
    explained = np.abs(values) / np.sqrt(np.where(squared > 0, squared, np.inf))
    best = int(np.argmax(explained))
    direction = directions[:, best:best + 1]
    weight = tl.tensor([values[best] / squared[best] if squared[best] > 0 else 0.0],
                       **target.context)
    if weights is None:
        return weight, direction
    return tl.concatenate([weights, weight]), tl.concatenate([vectors, direction], axis=1)


def polish(selection, weights, vectors):
    """The fit refined at its rank: ``(weights, vectors, steps)``.

    ALS on the observed entries of a partly observed target
    (:func:`~tensorly_gfdeflate.flow.alternating.observed_als`), else the
    gradient refinement.
    """
    if selection.partly_observed and not selection.target.is_sampled:
        return observed_als(selection.target, weights, vectors)
    return selection.refine(weights, vectors)


def extend_fit(selection, weights, vectors, rank, rng):
    """Grow the fit ``(weights, vectors)`` (None: nothing yet) to ``rank`` components.

    Each new component starts on the residual's leading direction and is
    refined with the others (:func:`polish`). Returns ``(weights, vectors,
    steps)``.
    """
    count, steps = (0 if weights is None else tl.shape(weights)[0]), 0
    while count < rank:
        weights, vectors = _new_component(selection, weights, vectors, rng)
        weights, vectors, spent = polish(selection, weights, vectors)
        count, steps = count + 1, steps + spent
    return weights, vectors, steps


def held_out_error(weights, vectors, shape, indices, values):
    """``|T_hat - T| / |T|`` on the entries ``indices`` (``(m, N)``) of values ``values``."""
    blocks = [tl.to_numpy(block) for block in split_blocks(vectors, shape)]
    terms = np.asarray(tl.to_numpy(weights), dtype=float)[None, :]
    for k, block in enumerate(blocks):
        terms = terms * block[indices[:, k]]
    return float(np.linalg.norm(terms.sum(axis=1) - values) / max(np.linalg.norm(values), 1e-300))


def _folds(target, rng):
    """``(train target, held-out indices, held-out values)`` per fold walked (see
    ``ENOUGH_HELD_OUT``), the entries dealt into ``N_FOLDS`` folds at random."""
    indices = np.asarray(target.observed_indices())
    values = tl.to_numpy(target.observed_values())
    fold_of = rng.permutation(len(indices)) % N_FOLDS
    walked = min(N_FOLDS, math.ceil(ENOUGH_HELD_OUT / max(len(indices) // N_FOLDS, 1)))
    folds = []
    for fold in range(walked):
        inside = fold_of == fold
        train = indices[~inside]
        train.setflags(write=False)
        train_values = tl.tensor(values[~inside], **target.context)
        folds.append((ObservedEntries._trusted(train, Coordinates(train, target.context),
                                               train_values, target.shape),
                      indices[inside], values[inside]))
    return folds


def max_path_rank(selection, width):
    """The largest rank the path tries: ``width``, and few enough parameters for a fold."""
    per_fold = selection.target.n_observed * (N_FOLDS - 1) / N_FOLDS
    determined = int(per_fold // (_ENTRIES_PER_PARAMETER * selection.model.parameters(1)))
    return max(1, min(width, determined))


def held_out_path(selection, width, rng):
    """The validation curve of the rank path on ``selection``'s partly observed target.

    Every fold walks its own path, its held-out entries never entering its
    fits; the folds go up the ranks together, up to :func:`max_path_rank`,
    until ``PATIENCE`` ranks in a row leave the mean error above its best.
    Returns ``(curve, steps)``.
    """
    top = max_path_rank(selection, width)
    folds = [(replace(selection, target=train), indices, values, None, None)
             for train, indices, values in _folds(selection.target, rng)]
    errors = np.full((len(folds), top), np.nan)
    steps = 0
    for rank in range(1, top + 1):
        for fold, (fold_selection, indices, values, weights, vectors) in enumerate(folds):
            weights, vectors, spent = extend_fit(fold_selection, weights, vectors, rank, rng)
            steps += spent
            errors[fold, rank - 1] = held_out_error(weights, vectors, selection.target.shape,
                                                    indices, values)
            folds[fold] = (fold_selection, indices, values, weights, vectors)
        mean = errors[:, :rank].mean(axis=0)
        if rank - 1 - int(np.argmin(mean)) >= PATIENCE:
            break
    errors = errors[:, :rank]
    curve = ValidationCurve(np.arange(1, rank + 1), errors, _least_error_rank(errors), top)
    return curve, steps


def can_hold_out(selection):
    """Whether ``selection``'s target has entries to hold out: partly observed (not sample
    statistics), with enough for a fold's complement to determine one component."""
    target = selection.target
    if not selection.partly_observed or target.is_sampled:
        return False
    per_fold = target.n_observed * (N_FOLDS - 1) / N_FOLDS
    return per_fold >= _ENTRIES_PER_PARAMETER * selection.model.parameters(1)


def needs_held_out(selection, weights, check, found):
    """Whether the rank of this noise-floor result is chosen by held-out error instead.

    Only a partly observed tensor has entries to hold out, and there the
    noise floor's rank stands when the target is clearly low rank plus noise:
    the result explains the observed entries and each component stands
    ``CLEAR_SNR`` times above the noise. Too few entries for a fold to
    determine one component leave the noise floor's rule too.
    """
    if not can_hold_out(selection):
        return False
    if found == 0 or not check.explained or selection.underdetermined(found):
        return True
    snr, _ = signal_to_noise(weights, check)
    return bool(np.min(snr) < CLEAR_SNR)


def weak_components(weights, snr, floor):
    """Positions (largest weight first) of components the data cannot tell from noise.

    A weight below ``NOISE_MARGIN`` times the noise along it, or at most the
    solver's own floor ``floor`` (a target taken as exact has no noise level).
    """
    magnitudes = np.abs(np.asarray(tl.to_numpy(weights), dtype=float))
    if not np.any(magnitudes):
        return ()
    order = np.argsort(-magnitudes, kind="stable")
    weak = (snr[order] < NOISE_MARGIN) | (magnitudes[order] <= floor)
    return tuple(int(p) for p in np.flatnonzero(weak))


def unobserved_slices(target, found):
    """Per mode, the indices whose slice holds fewer observed entries than ``found`` components.

    Each such index's factor row has ``found`` unknowns and fewer equations
    (none for a slice never observed): the data do not determine it. A tuple
    of ``(mode, indices)`` for the modes that have any; empty for a fully
    observed target.
    """
    if target.observed_fraction == 1.0 or target.is_sampled:
        return ()
    indices = np.asarray(target.observed_indices())
    short = []
    for k, n in enumerate(target.shape):
        counts = np.bincount(indices[:, k], minlength=n)
        few = np.flatnonzero(counts < max(found, 1))
        if len(few):
            short.append((k, tuple(int(i) for i in few)))
    return tuple(short)
