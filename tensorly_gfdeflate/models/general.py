"""The general CP model ``T(W) = sum_j w_j1 (x) ... (x) w_jN``: its loss gradient and its geometry.

A slot holds one vector per mode; a batch of slots (or of unit components) is
one matrix whose column stacks the mode vectors (rows ``offsets[k]`` to
``offsets[k + 1]`` hold mode ``k``, see :mod:`tensorly_gfdeflate.targets.general`).
:class:`GeneralModel` answers the questions the shared flow engine, the
read-out, the probe and the power method ask, as
:class:`tensorly_gfdeflate.models.symmetric.SymmetricModel` does for symmetric tensors.

A slot's mass (its weight) is ``prod_k |w_jk|``; its "norm", which the engine
compares with the re-draw threshold, is the square root of that mass, as in the
symmetric model, so that ``init_scale``, ``reinit_threshold`` and the trace
mean the same in both. A fresh slot of norm ``s`` is balanced: every mode
vector has length ``s^(2/N)``.
"""

import math

import numpy as np
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from .symmetric import (
    _TINY,
    FlowPoint,
    column_change,
    normalize_columns,
    pool_block,
    reported_residual,
    settled_tolerance,
    split_columns,
)
from ..targets.base import concatenate_rows
from ..targets.general import (
    DenseTensor,
    _gram_product,
    _product,
    _products_except,
    split_blocks,
    stack_blocks,
)

__all__ = ["GeneralModel", "general_flow_point", "alternating_power_iterate"]

def general_flow_point(target, W, regularization):
    """Gradient, loss and relative residual of ``1/2 |T(W) - T*|^2 + lambda/2 |W|^2``.

    ``target`` is the (normalized) operator; for an observed (masked) target its
    inner product is the one on the observed entries divided by their fraction
    ``p``, so the same two lines serve: the residual ``R = T* - T(W)``, one
    stacked contraction ``R(w_j1, .., I, .., w_jN)`` per mode, and the gradient
    ``-R(..) + lambda w_jk`` with ``R = T* - T(W)`` (:ref:`theory-general`).
    A fully observed target takes :func:`_full_flow_point`, which never forms
    the residual.
    """
    if target.observed_fraction == 1.0:
        return _full_flow_point(target, W, regularization)
    residual = target.minus(tl.ones(tl.shape(W)[1], **tl.context(W)), W)
    gradient = regularization * W - residual.contract(W)
    residual_sq = residual.norm_sq
    norms, directions = GeneralModel(target.shape).split(W)
    loss = 0.5 * residual_sq + 0.5 * regularization * float(tl.sum(W * W))
    return FlowPoint(norms=norms, directions=directions, mass=norms**2, gradient=gradient,
                     loss=loss, residual=reported_residual(residual_sq, target.norm_sq, W))


def _full_flow_point(target, W, regularization):
    """:func:`general_flow_point` on a fully observed target, through the slots' Gram matrices.

    With mode blocks ``A_k``, ``G_k = A_k^T A_k`` and ``H_k = prod_{l != k} G_l``
    (elementwise), the model's part of the gradient is ``A_k H_k`` and
    ``|T(W)|^2 = sum(G_k H_k)``, so a step costs the target's contractions
    ``T*(.., I, ..)`` and ``m x m`` work, never a tensor-sized residual; the
    squared residual ``|T*|^2 - 2 <T*, T(W)> + |T(W)|^2`` rounds to noise only
    near ``sqrt(eps)``, where :func:`reported_residual` floors it anyway. Every
    operation is the arrays' own (no backend dispatch per operation).
    """
    blocks = split_blocks(W, target.shape)
    images = target.contract_blocks(blocks)
    grams = [block.T @ block for block in blocks]
    others = _products_except(grams, range(len(blocks)), 1.0)
    gradient = concatenate_rows([block @ other - image
                                 for block, other, image in zip(blocks, others, images)])
    if regularization:
        gradient = gradient + regularization * W
    model_sq = float((grams[0] * others[0]).sum())
    cross = float((blocks[0] * images[0]).sum())
    residual_sq = target.norm_sq - 2.0 * cross + model_sq
    lengths = [gram.diagonal() ** 0.5 for gram in grams]
    norms = _product(lengths) ** 0.5
    directions = concatenate_rows([block / length.clip(_TINY)
                                   for block, length in zip(blocks, lengths)])
    loss = 0.5 * residual_sq + 0.5 * regularization * float((W * W).sum())
    return FlowPoint(norms=norms, directions=directions, mass=norms**2, gradient=gradient,
                     loss=loss, residual=reported_residual(residual_sq, target.norm_sq, W))


def alternating_power_iterate(operator, V, n_iter_max, tol):
    """Batched alternating rank-one power updates (the higher-order power method).

    For each column, mode after mode, ``v_k <- T(v_1, .., I, .., v_N) / |.|``
    (Gauss-Seidel: each mode uses the modes already updated). Stops when every
    mode vector of every column moved by less than ``tol`` (up to sign), or by
    a few machine epsilons of the dtype. A mode whose contraction vanishes
    stays where it is. Returns ``(V, iterations)`` with unit mode vectors.

    On a partly observed operator each update is the least-squares one (the
    rank-one step of alternating least squares on the observed entries): the
    contraction divided, index by index, by :meth:`mode_overlap`. The plain
    contraction ``(1/p) P_Omega(T)(.., I, ..)`` converges to directions that
    meet only a few observed entries, where ``1/p`` inflates a few values:
    measured at 5% of a rank-3 30 x 30 x 30 tensor, with two of its
    components fitted, the probed directions of the residual hold a fifth of
    the third by least squares, those of these updates all of it.
    """
    shape = operator.shape
    tol = settled_tolerance(tol, V)
    blocks = [normalize_columns(block, block) for block in split_blocks(V, shape)]
    for iteration in range(1, n_iter_max + 1):
        change = 0.0
        for k in range(len(shape)):
            if operator.observed_fraction < 1.0:
                image = operator.least_squares_image(blocks, k)
            else:
                image = operator.contract_mode(stack_blocks(blocks), k)
            image = normalize_columns(image, blocks[k])
            change = max(change, float(column_change(image, blocks[k]).max()))
            blocks[k] = image
        if change < tol:
            break
    return stack_blocks(blocks), iteration


class GeneralModel:
    """Components ``c v_1 (x) ... (x) v_N`` of a tensor of shape ``shape``: one unit vector per mode.

    ``subspaces`` (one orthonormal numpy basis or None per mode) is where
    :meth:`random` draws half of its directions.
    """

    signs_in_vectors = True
    # A sweep updates every mode in turn: measured on completion residuals (shapes 100^3
    # and 300^3), 10 sweeps find the same largest weights as 30, at a third of the cost
    # that dominates large sparse runs.
    probe_sweeps = 10

    def __init__(self, shape, subspaces=None):
        self.shape = tuple(shape)
        self.order = len(self.shape)
        self.dim = int(sum(self.shape))
        self.subspaces = subspaces or (None,) * self.order

    @classmethod
    def for_target(cls, target):
        """The model of ``target``'s shape, drawing starts in its spectral subspaces (if any)."""
        return cls(target.shape, target.start_subspaces())

    def point(self, target, W, signs, regularization):
        """:func:`general_flow_point` (slots have no sign: it lives in the mode vectors)."""
        return general_flow_point(target, W, regularization)

    def random(self, count, rng, context=None):
        """``count`` components with each mode vector uniform on its unit sphere.

        Where a mode has a subspace (the spectral start of a partly observed
        target, :mod:`~tensorly_gfdeflate.targets.spectral`), every other column
        is uniform on the unit sphere of that subspace instead: those start
        aligned with the components, the others keep the whole space in view
        should the subspace miss one.
        """
        draws = rng.standard_normal((self.dim, count))
        offsets = np.cumsum((0,) + self.shape)
        for start, stop, basis in zip(offsets[:-1], offsets[1:], self.subspaces):
            if basis is not None:
                inside = rng.standard_normal((basis.shape[1], count))
                draws[start:stop, ::2] = basis @ inside[:, ::2]
            draws[start:stop] /= np.linalg.norm(draws[start:stop], axis=0, keepdims=True)
        return tl.tensor(draws, **(context or {}))

    def split(self, W):
        """``(norms, directions)``: ``norms**2 = prod_k |w_jk|``, unit mode vectors."""
        lengths, directions = zip(*(split_columns(block)
                                    for block in split_blocks(W, self.shape)))
        return tl.sqrt(_product(lengths)), stack_blocks(directions)

    def slots(self, directions, norms):
        """Balanced slots along ``directions`` whose mass is ``norms**2``."""
        return directions * norms ** (2.0 / self.order)

    def overlap(self, directions):
        """Gram matrix of the rank-one tensors: ``prod_k <v_jk, v_ik>``."""
        return _gram_product(split_blocks(directions, self.shape))

    def alignment(self, directions):
        """``prod_k <b_jk, b_ik>``: 1 for the same component, -1 for its negative."""
        return tl.to_numpy(self.overlap(directions))

    def pool(self, directions, mass, groups):
        """Per mode, the unit mass-weighted mean of each group, signs aligned with its leader."""
        return stack_blocks([pool_block(block, mass, groups)
                             for block in split_blocks(directions, self.shape)])

    def negate(self, vectors, flip):
        """The components times ``flip`` (+-1 per column): the first mode carries the sign."""
        blocks = split_blocks(vectors, self.shape)
        blocks[0] = blocks[0] * tl.reshape(flip, (1, -1))
        return stack_blocks(blocks)

    def parameters(self, count):
        """Free parameters of ``count`` components: ``sum(shape) - N + 1`` each (one scale)."""
        return count * (self.dim - self.order + 1)

    def power_iterate(self, operator, V, n_iter_max, tol):
        return alternating_power_iterate(operator, V, n_iter_max, tol)

    def polish_sweep(self, target, weights, vectors):
        """One sweep of :func:`als_polish`: ``(weights, vectors)``."""
        return als_polish(target, weights, vectors, 1)

    def degrees_of_freedom(self):
        """``(tensor, component)``: the entries of a tensor of this shape, and the parameters
        of one component (a unit vector per mode and a weight)."""
        return math.prod(self.shape), self.dim - self.order + 1

    def unit_noise(self, rng, max_entries):
        """A unit-norm Gaussian tensor (a dense target) and the factor to this shape.

        Drawn on the shape shrunk to ``max_entries`` entries; the factor is
        ``sqrt(sum(shape) / sum(measured))`` (the spectral norm's growth) over
        ``sqrt(prod(shape) / prod(measured))`` (the Frobenius norm's).
        """
        shape = self.shape
        shrink = min(1.0, (max_entries / math.prod(shape)) ** (1 / len(shape)))
        measured = tuple(max(2, int(n * shrink)) for n in shape)
        noise = rng.standard_normal(measured)
        noise /= np.linalg.norm(noise)
        growth = (np.sqrt(sum(shape) / sum(measured))
                  / np.sqrt(math.prod(shape) / math.prod(measured)))
        return DenseTensor(tl.tensor(noise)), growth

    def to_cp(self, weights, vectors):
        return CPTensor((weights, split_blocks(vectors, self.shape)))


# --- the exact polish ------------------------------------------------------------------------

def als_polish(target, weights, vectors, sweeps):
    """``sweeps`` sweeps of alternating least squares from unit ``vectors`` with ``weights``.

    Each mode's factor in turn is the exact least-squares one with the others
    fixed (the loss never rises), so once the flow has found the structure a
    few sweeps reach the rounding floor of an exactly low-rank target, where
    the plain gradient flow needs hundreds of steps. On a partly observed
    target each row of a factor solves its own small system over the
    entries it meets (:func:`_observed_update`); a row that meets none keeps
    its previous value. Returns ``(weights, vectors)`` with unit mode vectors.
    """
    blocks = split_blocks(vectors, target.shape)
    blocks[0] = blocks[0] * weights.reshape(1, -1)
    full = target.observed_fraction == 1.0
    for _ in range(sweeps):
        for k in range(len(blocks)):
            update = _full_update if full else _observed_update
            blocks[k] = update(target, blocks, k)
    lengths = [(block * block).sum(axis=0) ** 0.5 for block in blocks]
    fallback = split_blocks(vectors, target.shape)
    directions = [normalize_columns(block, old) for block, old in zip(blocks, fallback)]
    return _product(lengths), stack_blocks(directions)


def _ridge(gram):
    """A ridge at rounding scale: keeps the small systems solvable when two columns coincide."""
    return 1e-13 * float(gram.diagonal().sum()) + 1e-300


def _full_update(target, blocks, k):
    """Mode ``k``'s least-squares factor: ``T(.., I, ..) (prod_{l != k} A_l^T A_l)^-1``."""
    image = target.contract_blocks(blocks, [k])[0]
    others = _product([block.T @ block for l, block in enumerate(blocks) if l != k])
    eye = tl.eye(others.shape[0], **tl.context(others))
    return tl.transpose(tl.solve(others + _ridge(others) * eye, tl.transpose(image)))


def _observed_update(target, blocks, k):
    """Mode ``k``'s least-squares factor on the observed entries, one ``m x m`` system per row.

    Row ``i`` solves ``(sum_e z_e z_e^T) a = sum_e T_e z_e`` over the observed
    entries ``e`` with index ``i`` in mode ``k``, ``z_e`` the product of the
    other factors' rows at ``e``; the sums are scatter-added block by block.
    """
    pattern, values = target.observation_pattern, target.observed_values()
    n, m = blocks[k].shape
    grams, images = 0.0, 0.0
    for rows in pattern.slices(m):
        gathered = pattern.gather(blocks, rows)
        z = _product([part for l, part in enumerate(gathered) if l != k])
        outer = (z[:, :, None] * z[:, None, :]).reshape(-1, m * m)
        grams = grams + pattern.scatter(k, rows, outer, n)
        images = images + pattern.scatter(k, rows, values[rows].reshape(-1, 1) * z, n)
    grams = grams.reshape(n, m, m)
    scale = grams.diagonal(0, 1, 2).sum(axis=1)
    met = (scale > 0).reshape(n, 1)
    eye = tl.eye(m, **tl.context(grams)).reshape(1, m, m)
    ridge = (1e-13 * scale + 1e-300).reshape(n, 1, 1)
    solved = tl.solve(grams + ridge * eye, images.reshape(n, m, 1)).reshape(n, m)
    return tl.where(met, solved, blocks[k])
