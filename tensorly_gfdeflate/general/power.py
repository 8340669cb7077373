"""Alternating rank-one power iterations on a general tensor (the higher-order power method)."""

import tensorly as tl

from ..probe import _SETTLED_IN_EPS
from .operators import split_blocks, stack_blocks

__all__ = ["alternating_power_iterate"]


def _unit_columns(image, fallback):
    """``image`` with unit columns; a column that vanished is taken from ``fallback``."""
    lengths = tl.sqrt(tl.sum(image * image, axis=0))
    # Dividing the vanished columns by 1, not by a clipped 1e-300 (which is 0 in float32).
    return tl.where(lengths > 0, image / (lengths + (lengths == 0)), fallback)


def _moved(new, old):
    """How far each column moved, up to sign."""
    return tl.minimum(tl.sqrt(tl.sum((new - old) ** 2, axis=0)),
                      tl.sqrt(tl.sum((new + old) ** 2, axis=0)))


def alternating_power_iterate(operator, V, n_iter_max, tol):
    """Batched alternating rank-one power updates on the stacked columns of ``V``.

    One iteration updates the modes in turn (Gauss-Seidel): block ``k`` of
    every column becomes ``contract_mode(V, k)`` normalized per column, with
    the blocks already updated in this iteration. A column whose contraction
    vanishes keeps its block. The start blocks are normalized per column first.

    Parameters
    ----------
    operator : GeneralOperator
        The tensor (see :func:`~tensorly_gfdeflate.general.operators.as_general_operator`).
    V : tensor of shape (operator.dim, m)
        The starts, stacked (see :func:`~tensorly_gfdeflate.general.operators.split_blocks`).
    n_iter_max : int >= 1
        The most iterations (sweeps over all modes).
    tol : float
        Stop when every block of every column moved by less than ``tol`` (up to
        sign) in an iteration, or by less than a few machine epsilons of the
        dtype, the most a float32 column can settle to (as
        :func:`tensorly_gfdeflate.probe.power_iterate`).

    Returns
    -------
    V : tensor of shape (operator.dim, m)
        The iterates, with unit blocks (a zero start block stays zero).
    iterations : int
        The iterations done.
    """
    tol = max(tol, _SETTLED_IN_EPS * float(tl.eps(tl.context(V)["dtype"])))
    blocks = [_unit_columns(block, block) for block in split_blocks(V, operator.shape)]
    for iteration in range(1, n_iter_max + 1):
        largest_move = 0.0
        for k in range(operator.order):
            image = operator.contract_mode(stack_blocks(blocks), k)
            updated = _unit_columns(image, blocks[k])
            largest_move = max(largest_move, float(tl.max(_moved(updated, blocks[k]))))
            blocks[k] = updated
        if largest_move < tol:
            break
    return stack_blocks(blocks), iteration
