"""power_deflation_cp: the robust tensor power method with explicit deflation."""

import numpy as np
import pytest
import tensorly as tl

from tensorly_gfdeflate import (
    components_recovered,
    power_deflation_cp,
    random_symmetric_cp,
    relative_error,
)


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_method_recovers_orthogonal_tensors(order, seed):
    truth = random_symmetric_cp(15, 5, order, random_state=seed)
    tensor = tl.cp_to_tensor(truth)
    cp, trace = power_deflation_cp(tensor, 5, random_state=seed, return_trace=True)
    assert relative_error(tensor, cp) <= 1e-8
    assert components_recovered(truth, cp, weight_rtol=1e-6) == 5
    # On an orthogonal tensor the largest remaining component is extracted first.
    np.testing.assert_array_equal(trace.extraction_index, np.arange(5))
    assert np.all(np.diff(trace.residual) < 0)
    # The trace measures through inner products, which floor at sqrt(machine eps).
    assert trace.residual[-1] <= 1e-7


def test_odd_order_weights_are_positive_and_even_order_keep_their_sign():
    odd = tl.cp_to_tensor(random_symmetric_cp(6, 2, 3, weights=[1.0, -0.5], random_state=0))
    assert np.all(power_deflation_cp(odd, 2, random_state=0).weights > 0)
    even = tl.cp_to_tensor(random_symmetric_cp(6, 2, 4, weights=[1.0, -0.5], random_state=0))
    np.testing.assert_allclose(power_deflation_cp(even, 2, random_state=0).weights, [1.0, -0.5])


def test_extracting_more_than_the_rank_never_gives_nan():
    tensor = tl.cp_to_tensor(random_symmetric_cp(6, 2, 3, random_state=0))
    cp = power_deflation_cp(tensor, 4, random_state=0)
    assert np.all(np.isfinite(cp.weights)) and np.all(np.isfinite(cp.factors[0]))
    assert relative_error(tensor, cp) <= 1e-8
