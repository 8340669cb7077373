"""General (non-symmetric) operators and alternating power iterations, against dense numpy.

Every operator is checked against the obvious dense computation: einsum on
``T_eff = (1/p) P_Omega(T)`` for the contractions, and the observed-entry sum
``(1/p) sum_Omega`` for the inner product (overlap, norm).
"""

import numpy as np
import pytest
import tensorly as tl
from tensorly.cp_tensor import CPTensor

from tensorly_gfdeflate.targets.general import (
    DENSE_SHARE,
    DenseTensor,
    GeneralCPOperator,
    MaskedTensor,
    Coordinates,
    ObservedEntries,
    as_general_operator,
    split_blocks,
    stack_blocks,
)
from tensorly_gfdeflate.models.general import alternating_power_iterate

SHAPES = [(4, 5, 6), (3, 4, 5, 2)]
FORMS = ["dense", "masked", "observed", "cp"]


def _outer(vectors):
    """The dense rank-one tensor ``v_1 (x) ... (x) v_N``."""
    result = vectors[0]
    for vector in vectors[1:]:
        result = np.multiply.outer(result, vector)
    return result


def _reference_contract_mode(dense, V, k):
    """``dense(v_1, .., I at k, .., v_N)`` column by column with einsum."""
    blocks = split_blocks(V, dense.shape)
    columns = []
    for j in range(V.shape[1]):
        operands = [dense, list(range(dense.ndim))]
        for mode, block in enumerate(blocks):
            if mode != k:
                operands += [block[:, j], [mode]]
        columns.append(np.einsum(*operands, [k]))
    return np.stack(columns, axis=1)


def _reference_terms(V, shape):
    """The rank-one terms of the columns of ``V`` as dense tensors, stacked on the last axis."""
    blocks = split_blocks(V, shape)
    return np.stack([_outer([block[:, j] for block in blocks]) for j in range(V.shape[1])], -1)


class Target:
    """A random target in one form, with its dense truth: ``tensor``, ``observed`` and ``p``."""

    def __init__(self, form, shape, seed=0):
        rng = np.random.RandomState(seed)
        self.form, self.shape = form, shape
        if form == "cp":
            factors = [rng.standard_normal((n, 3)) for n in shape]
            self.cp = CPTensor((rng.uniform(0.5, 2, 3), factors))
            self.tensor = tl.cp_to_tensor(self.cp)
        else:
            self.tensor = rng.standard_normal(shape)
        self.observed = np.ones(shape, dtype=bool)
        if form in ("masked", "observed"):
            self.observed = rng.uniform(size=shape) < 0.3
        self.p = self.observed.mean()

    def operator(self):
        if self.form == "cp":
            return as_general_operator(self.cp)
        if self.form == "observed":
            return ObservedEntries(np.argwhere(self.observed), self.tensor[self.observed],
                                   self.shape)
        return as_general_operator(self.tensor, mask=None if self.form == "dense"
                                   else self.observed)

    def effective(self, dense):
        """``(1/p) P_Omega(dense)``."""
        return np.where(self.observed, dense, 0.0) / self.p

    def inner(self, a, b):
        """``(1/p) sum_Omega a_i b_i`` (over the leading axes; trailing axes kept)."""
        mask = self.observed.reshape(self.observed.shape + (1,) * (a.ndim - self.observed.ndim))
        return np.tensordot(a * mask, b, axes=(list(range(self.observed.ndim)),) * 2) / self.p


def _random_stacked(shape, m, seed):
    return np.random.RandomState(seed).standard_normal((sum(shape), m))


def _check_against_dense(operator, target, dense, V):
    """contract_mode, contract, evaluate, overlap and norm_sq of ``operator`` versus ``dense``."""
    effective = target.effective(dense)
    expected = [_reference_contract_mode(effective, V, k) for k in range(len(target.shape))]
    for k, block in enumerate(expected):
        np.testing.assert_allclose(operator.contract_mode(V, k), block, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(operator.contract(V), np.concatenate(expected), rtol=1e-10,
                               atol=1e-10)
    terms = _reference_terms(V, target.shape)
    np.testing.assert_allclose(operator.evaluate(V), target.inner(dense, terms), rtol=1e-10)
    np.testing.assert_allclose(operator.overlap(V), target.inner(terms, terms), rtol=1e-10)
    assert operator.norm_sq == pytest.approx(float(target.inner(dense, dense)), rel=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("form", FORMS)
def test_operator_matches_dense(form, shape):
    target = Target(form, shape)
    operator = target.operator()
    assert operator.shape == shape and operator.order == len(shape)
    assert operator.dim == sum(shape)
    assert operator.observed_fraction == pytest.approx(target.p)
    assert operator.n_observed == target.observed.sum()
    assert operator.is_dense == (form == "dense")
    _check_against_dense(operator, target, target.tensor, _random_stacked(shape, 4, 1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("form", FORMS)
def test_minus_and_minus_of_minus(form, shape):
    target = Target(form, shape)
    V1, V2 = _random_stacked(shape, 2, 2), _random_stacked(shape, 3, 3)
    w1, w2 = np.array([0.7, -1.3]), np.array([0.2, 0.5, -0.4])
    first = target.operator().minus(w1, V1)
    second = first.minus(w2, V2)
    dense_first = target.tensor - _reference_terms(V1, shape) @ w1
    dense_second = dense_first - _reference_terms(V2, shape) @ w2
    V = _random_stacked(shape, 3, 4)
    _check_against_dense(first, target, dense_first, V)
    _check_against_dense(second, target, dense_second, V)
    assert second.observed_fraction == pytest.approx(target.p)
    if form != "cp":  # explicit residuals keep their form
        assert type(second) is type(target.operator())
    np.testing.assert_allclose(second.to_dense(), np.where(target.observed, dense_second, 0.0),
                               atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_rescaled(form):
    target = Target(form, SHAPES[0])
    operator, factor = target.operator(), 2.5
    scaled = operator.rescaled(factor)
    V = _random_stacked(SHAPES[0], 3, 5)
    np.testing.assert_allclose(scaled.contract(V), factor * operator.contract(V))
    np.testing.assert_allclose(scaled.contract_mode(V, 1), factor * operator.contract_mode(V, 1))
    np.testing.assert_allclose(scaled.evaluate(V), factor * operator.evaluate(V))
    np.testing.assert_allclose(scaled.overlap(V), operator.overlap(V))
    assert scaled.norm == pytest.approx(factor * operator.norm, rel=1e-14)
    assert scaled.rescaled(0.5).norm == pytest.approx(0.5 * factor * operator.norm, rel=1e-14)
    np.testing.assert_allclose(scaled.to_dense(), factor * operator.to_dense())
    # c T - M: the scaled residual equals c (T - M / c).
    weights = np.array([1.0, -0.5, 2.0])
    dense_residual = factor * target.tensor - _reference_terms(V, SHAPES[0]) @ weights
    U = _random_stacked(SHAPES[0], 2, 6)
    _check_against_dense(scaled.minus(weights, V), target, dense_residual, U)


def test_masked_and_observed_entries_agree():
    target = Target("masked", SHAPES[1], seed=3)
    masked = target.operator()
    entries = ObservedEntries(tuple(np.nonzero(target.observed)), target.tensor[target.observed],
                              SHAPES[1])
    V = _random_stacked(SHAPES[1], 5, 7)
    for method in ("contract", "evaluate", "overlap"):
        np.testing.assert_allclose(getattr(entries, method)(V), getattr(masked, method)(V),
                                   rtol=1e-12, atol=1e-13)
    assert entries.norm_sq == pytest.approx(masked.norm_sq, rel=1e-13)
    np.testing.assert_array_equal(masked.observed_indices(), entries.observed_indices())
    np.testing.assert_array_equal(masked.observed_values(), entries.observed_values())
    np.testing.assert_array_equal(entries.to_dense(), masked.to_dense())
    # The least-squares image: GEMMs over the masked array, gathered rows on the entries.
    assert masked.observed_fraction * DENSE_SHARE >= 1.0
    blocks = split_blocks(V, SHAPES[1])
    for k in range(len(SHAPES[1])):
        np.testing.assert_allclose(masked.least_squares_image(blocks, k),
                                   entries.least_squares_image(blocks, k), rtol=1e-10)
        np.testing.assert_allclose(masked.rescaled(3.0).least_squares_image(blocks, k),
                                   3.0 * entries.least_squares_image(blocks, k), rtol=1e-10)


def test_fully_observed_mask_is_the_full_tensor():
    tensor = np.random.RandomState(0).standard_normal(SHAPES[0])
    full = as_general_operator(tensor)
    for mask in (np.ones(SHAPES[0], dtype=bool), np.ones(SHAPES[0])):
        operator = as_general_operator(tensor, mask=mask)
        assert type(operator) is DenseTensor and operator.is_dense
        V = _random_stacked(SHAPES[0], 3, 1)
        np.testing.assert_array_equal(operator.contract(V), full.contract(V))
        np.testing.assert_array_equal(operator.overlap(V), full.overlap(V))
        assert operator.norm_sq == full.norm_sq and operator.observed_fraction == 1.0


def test_nan_where_unobserved_is_ignored():
    target = Target("masked", SHAPES[0])
    holes = np.where(target.observed, target.tensor, np.nan)
    operator = as_general_operator(holes, mask=target.observed.astype(int))
    assert isinstance(operator, MaskedTensor)
    _check_against_dense(operator, target, target.tensor, _random_stacked(SHAPES[0], 2, 1))


def test_general_cp_weights_default_to_ones():
    factors = [np.random.RandomState(k).standard_normal((n, 2)) for k, n in enumerate((3, 4, 5))]
    operator = as_general_operator((None, factors))
    assert isinstance(operator, GeneralCPOperator)
    np.testing.assert_allclose(operator.to_dense(), tl.cp_to_tensor((np.ones(2), factors)))


def test_split_and_stack_blocks():
    V = _random_stacked((2, 3, 4), 5, 0)
    blocks = split_blocks(V, (2, 3, 4))
    assert [block.shape for block in blocks] == [(2, 5), (3, 5), (4, 5)]
    np.testing.assert_array_equal(stack_blocks(blocks), V)
    with pytest.raises(ValueError, match="V must have shape"):
        split_blocks(V[:-1], (2, 3, 4))


def test_scatter_add_sums_repeated_indices():
    rng = np.random.RandomState(0)
    index, rows = rng.randint(0, 7, 50), rng.standard_normal((50, 3))
    expected = np.zeros((9, 3))
    np.add.at(expected, index, rows)
    coordinates = Coordinates(index[:, None], tl.context(tl.tensor(rows)))
    np.testing.assert_allclose(coordinates.scatter(0, slice(0, 50), rows, 9), expected)


# --- bad inputs ----------------------------------------------------------------------------

_T = np.random.RandomState(0).standard_normal((3, 4, 5))
_MASK = np.random.RandomState(1).uniform(size=(3, 4, 5)) < 0.5
_IDX = np.argwhere(_MASK)
_VALS = _T[_MASK]
_CP = (np.ones(2), [np.ones((3, 2)), np.ones((4, 2)), np.ones((5, 2))])


def _with(array, position, value):
    array = np.array(array)
    array[position] = value
    return array


BAD_INPUTS = [
    # (call, exception, message pattern)
    (lambda: as_general_operator(_T, mask=_MASK[:2]), ValueError, "mask must have the shape"),
    (lambda: as_general_operator(_T, mask=_MASK.astype(str)), TypeError, "mask must be boolean"),
    (lambda: as_general_operator(_T, mask=2 * _MASK), ValueError, "mask must be boolean.*0 and 1"),
    (lambda: as_general_operator(_T, mask=np.zeros(_T.shape, bool)), ValueError,
     "mask observes no entry"),
    (lambda: as_general_operator(_CP, mask=_MASK), ValueError, "mask must be None"),
    (lambda: as_general_operator(ObservedEntries(_IDX, _VALS, _T.shape), mask=_MASK), ValueError,
     "mask must be None.*ObservedEntries"),
    (lambda: as_general_operator(np.where(_MASK, np.nan, _T), mask=_MASK), ValueError,
     "tensor contains NaN or inf at observed entries"),
    (lambda: as_general_operator(_with(_T, (0, 0, 0), np.inf)), ValueError,
     "tensor contains NaN or inf.*mask="),
    (lambda: as_general_operator(np.ones((3, 4, 5), dtype=int)), TypeError, "tensor has dtype"),
    (lambda: as_general_operator(_T[0]), ValueError, "tensor must have order >= 3"),
    (lambda: as_general_operator(None), TypeError, "tensor must be"),
    (lambda: as_general_operator(np.ones((3, 0, 2))), ValueError, "tensor is empty"),
    (lambda: as_general_operator((None, [np.ones((3, 2)), np.ones((4, 3)), np.ones((5, 2))])),
     ValueError, "tensor factors must all have the same number of columns"),
    (lambda: as_general_operator((None, [np.ones((3, 2)), np.ones(4), np.ones((5, 2))])),
     ValueError, r"tensor factors\[1\] must be a non-empty 2-D"),
    (lambda: as_general_operator((np.ones(3), _CP[1])), ValueError,
     r"tensor weights must have shape \(2,\)"),
    (lambda: as_general_operator((None, _CP[1][:2])), ValueError, "tensor must have order >= 3"),
    (lambda: ObservedEntries(_IDX.astype(float), _VALS, _T.shape), TypeError,
     "indices must hold integer"),
    (lambda: ObservedEntries(_IDX[:, :2], _VALS, _T.shape), ValueError,
     r"indices must have shape \(n_obs, 3\)"),
    (lambda: ObservedEntries(tuple(_IDX.T[:2]), _VALS, _T.shape), ValueError,
     "indices given as a tuple must hold one integer array per mode"),
    (lambda: ObservedEntries(_IDX, _VALS[:-1], _T.shape), ValueError,
     "values must be a 1-D array with one value per entry"),
    (lambda: ObservedEntries(_with(_IDX, (0, 1), 4), _VALS, _T.shape), ValueError,
     r"indices for mode 1 must be in \[0, 3\].*got 4"),
    (lambda: ObservedEntries(_with(_IDX, (0, 2), -1), _VALS, _T.shape), ValueError,
     r"indices for mode 2 must be in \[0, 4\].*got -1"),
    (lambda: ObservedEntries(np.concatenate([_IDX, _IDX[:2]]), np.concatenate([_VALS, _VALS[:2]]),
                             _T.shape), ValueError, "indices has 2 duplicated coordinates"),
    (lambda: ObservedEntries(_IDX, _with(_VALS, 0, np.nan), _T.shape), ValueError,
     "values contains NaN"),
    (lambda: ObservedEntries(_IDX[:0], _VALS[:0], _T.shape), ValueError,
     "indices holds no entries"),
    (lambda: ObservedEntries(_IDX, _VALS, (3, 0, 5)), ValueError, "shape must be a tuple"),
    (lambda: ObservedEntries(_IDX, _VALS.astype(int), _T.shape), TypeError, "values has dtype"),
    (lambda: as_general_operator(ObservedEntries(np.array([[0, 1]]), np.ones(1), (3, 4))),
     ValueError, "tensor must have order >= 3"),
    (lambda: as_general_operator(_T).contract_mode(np.ones((12, 1)), 3), ValueError,
     "k must be a mode"),
    (lambda: as_general_operator(_T).minus(np.ones(3), np.ones((12, 2))), ValueError,
     r"weights must have shape \(2,\)"),
]


@pytest.mark.parametrize("call, error, match", BAD_INPUTS,
                         ids=[str(i) for i in range(len(BAD_INPUTS))])
def test_bad_inputs_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_observed_entries_too_large_to_densify():
    entries = ObservedEntries(np.array([[0, 0, 0]]), np.array([1.0]), (1000, 1000, 1000))
    with pytest.raises(ValueError, match="too large to densify"):
        entries.to_dense()


# --- pytorch --------------------------------------------------------------------------------

@pytest.mark.backend
def test_pytorch_masked_and_observed_entries():
    torch = pytest.importorskip("torch")
    target = Target("masked", SHAPES[0], seed=2)
    V = _random_stacked(SHAPES[0], 3, 8)
    weights = np.array([0.5, -1.0, 2.0])
    expected = {}
    for form in ("masked", "observed"):
        target.form = form
        operator = target.operator()
        residual = operator.minus(weights, V)
        expected[form] = [operator.contract(V), operator.overlap(V), residual.evaluate(V),
                          residual.norm_sq]
    tl.set_backend("pytorch")
    tensor = torch.tensor(target.tensor, requires_grad=True)  # detached by the operator
    operators = {
        "masked": as_general_operator(tensor, mask=torch.tensor(target.observed)),
        "observed": ObservedEntries(np.argwhere(target.observed), tensor[target.observed],
                                    SHAPES[0]),
    }
    V_torch, w_torch = tl.tensor(V), tl.tensor(weights)
    for form, operator in operators.items():
        residual = operator.minus(w_torch, V_torch)
        got = [operator.contract(V_torch), operator.overlap(V_torch), residual.evaluate(V_torch)]
        for value, reference in zip(got, expected[form]):
            assert isinstance(value, torch.Tensor) and not value.requires_grad
            np.testing.assert_allclose(value.numpy(), reference, rtol=1e-10, atol=1e-12)
        assert residual.norm_sq == pytest.approx(expected[form][3], rel=1e-12)
        assert isinstance(operator.observed_values(), torch.Tensor)


# --- scale ----------------------------------------------------------------------------------

def test_observed_entries_at_scale_contract_by_entries():
    """10^5 entries of a 1000^3 tensor: the contraction never densifies and is right."""
    rng = np.random.RandomState(0)
    shape, m = (1000, 1000, 1000), 10
    indices = np.unique(rng.randint(0, 1000, size=(100_000, 3)), axis=0)
    values = rng.standard_normal(len(indices))
    entries = ObservedEntries(indices, values, shape)
    V = rng.standard_normal((3000, m))
    result = entries.contract(V)
    assert result.shape == (3000, m)
    blocks = split_blocks(V, shape)
    p = len(indices) / 1e9
    for row in indices[:3, 1]:  # mode-1 rows that are observed
        hits = indices[:, 1] == row
        expected = (values[hits, None] * blocks[0][indices[hits, 0]]
                    * blocks[2][indices[hits, 2]]).sum(axis=0) / p
        np.testing.assert_allclose(result[1000 + row], expected, rtol=1e-10)


# --- power iterations -----------------------------------------------------------------------

def _unit_factors(shape, rank, rng):
    return [np.linalg.qr(rng.standard_normal((n, rank)))[0] for n in shape]


def test_alternating_power_converges_on_rank_one():
    rng = np.random.RandomState(0)
    shape = (5, 6, 7)
    factors = _unit_factors(shape, 1, rng)
    operator = as_general_operator((np.array([2.0]), factors))
    V, iterations = alternating_power_iterate(operator, rng.standard_normal((18, 4)), 50, 1e-10)
    assert iterations < 50
    for block, factor in zip(split_blocks(V, shape), factors):
        np.testing.assert_allclose(np.abs(factor[:, 0] @ block), 1.0, rtol=1e-10)
    np.testing.assert_allclose(operator.evaluate(V), 2.0, rtol=1e-10)


def test_alternating_power_finds_the_largest_component_most_often():
    rng = np.random.RandomState(1)
    shape, weights = (6, 7, 8), np.array([1.0, 0.5, 0.25])
    factors = _unit_factors(shape, 3, rng)
    operator = as_general_operator((weights, factors))
    V, _ = alternating_power_iterate(operator, rng.standard_normal((21, 20)), 200, 1e-10)
    # Which component each column converged to: all modes must agree.
    alignment = np.stack([np.abs(factor.T @ block) for factor, block
                          in zip(factors, split_blocks(V, shape))])
    assert np.all(alignment.max(axis=1) > 1 - 1e-8)
    found = alignment[0].argmax(axis=0)
    assert np.all(alignment.argmax(axis=1) == found)
    assert np.sum(found == 0) > 10
    np.testing.assert_allclose(operator.evaluate(V), weights[found], rtol=1e-8)


def test_alternating_power_keeps_vanished_columns():
    operator = as_general_operator((np.array([1.0]), [np.eye(3, 1)] * 3))
    start = np.zeros((9, 1))
    start[[1, 4, 7], 0] = 1.0  # orthogonal to the tensor in every mode: contractions vanish
    V, iterations = alternating_power_iterate(operator, start, 10, 1e-10)
    np.testing.assert_array_equal(V, start)
    assert iterations == 1


def test_observed_entries_keep_their_own_copy_of_what_was_checked():
    # A NaN (or a moved index) written into the caller's arrays after construction
    # must not reach the solvers unchecked.
    rng = np.random.RandomState(3)
    indices = np.unique(rng.randint(0, 5, size=(40, 3)), axis=0)
    values = rng.standard_normal(len(indices))
    entries = ObservedEntries(indices, values, (5, 5, 5))
    expected_indices, expected_values = indices.copy(), values.copy()
    values[0], indices[0, 0] = np.nan, 4 - indices[0, 0]
    np.testing.assert_array_equal(tl.to_numpy(entries.observed_values()), expected_values)
    np.testing.assert_array_equal(entries.observed_indices(), expected_indices)
    assert np.isfinite(entries.norm)
