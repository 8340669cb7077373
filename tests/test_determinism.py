"""The same seed gives bit-identical results, and numpy's global random state is never used.

The one test of determinism for both solvers on symmetric and general targets,
:func:`compare` (which also runs TensorLy's methods) and every target form.
"""

import numpy as np
import pytest
import tensorly as tl

from tensorly_gfdeflate import (
    ObservedEntries,
    SampleMoments,
    compare,
    gradient_flow_cp,
    gradient_flow_parafac,
    power_deflation_cp,
    power_deflation_parafac,
    random_cp,
    random_symmetric_cp,
)

# A short horizon keeps the runs cheap; determinism does not depend on convergence.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SOLVERS = {
    "flow": lambda tensor, seed: gradient_flow_cp(tensor, 3, random_state=seed, max_time=150.0),
    "power": lambda tensor, seed: power_deflation_cp(tensor, 3, random_state=seed),
}
# Each runner gives a list of decompositions: compare gives one per method.
RUNNERS = {
    "flow": lambda tensor, seed: [SOLVERS["flow"](tensor, seed)],
    "power": lambda tensor, seed: [SOLVERS["power"](tensor, seed)],
    "compare": lambda tensor, seed: [
        record.decomposition for record in compare(
            tensor, rank=3, random_state=seed,
            method_options={"gradient_flow": {"max_time": 150.0}})],
}


# The general solvers on general targets (rank 2).
GENERAL_RUNNERS = {
    "parafac-flow": lambda target, seed: [gradient_flow_parafac(target, 2, random_state=seed)],
    "parafac-power": lambda target, seed: [power_deflation_parafac(target, 2,
                                                                   random_state=seed)],
    "compare-general": lambda target, seed: [record.decomposition for record in compare(
        target, rank=2, random_state=seed)],
}


def _targets():
    truth = random_symmetric_cp(6, 3, 4, orthogonal=False, random_state=7)
    X = np.random.RandomState(8).exponential(size=(60, 5))
    return {
        "dense": np.asarray(tl.cp_to_tensor(truth)),
        "cp": truth,
        "moments": SampleMoments(X, 3),
    }


def _general_targets():
    truth = random_cp((6, 7, 8), 2, weights=[1.0, 0.5], random_state=8)
    tensor = np.asarray(tl.cp_to_tensor(truth))
    mask = np.random.RandomState(9).rand(6, 7, 8) < 0.7
    return {"dense": tensor, "cp": truth,
            "entries": ObservedEntries(np.argwhere(mask), tensor[mask], tensor.shape)}


def _assert_identical(first, second):
    np.testing.assert_array_equal(first.weights, second.weights)
    for a, b in zip(first.factors, second.factors):
        np.testing.assert_array_equal(a, b)


CASES = ([(runner, form) for runner in sorted(RUNNERS) for form in ("dense", "cp", "moments")]
         + [(runner, form) for runner in sorted(GENERAL_RUNNERS)
            for form in ("dense", "cp", "entries")])


@pytest.mark.parametrize("runner, form", CASES)
def test_same_seed_gives_bit_identical_results(runner, form):
    run = {**RUNNERS, **GENERAL_RUNNERS}[runner]
    targets = _targets if runner in RUNNERS else _general_targets
    # The target is drawn afresh for each run: its own seeded draws are part of it.
    np.random.seed(0)
    first = run(targets()[form], 3)
    # Whatever numpy's global generator does in between changes nothing, and a
    # RandomState seeded with the int is the same seed.
    np.random.seed(99)
    np.random.standard_normal(17)
    second = run(targets()[form], np.random.RandomState(3))
    assert len(first) == len(second)
    for a, b in zip(first, second):
        _assert_identical(a, b)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_different_seeds_draw_different_starts(solver):
    # The seed reaches the solver: another seed moves the factors at least by rounding.
    tensor = _targets()["dense"]
    first, second = SOLVERS[solver](tensor, 0), SOLVERS[solver](tensor, 1)
    assert not np.array_equal(first.factors[0], second.factors[0])


@pytest.mark.parametrize("seed", [None, 5, "object"])
@pytest.mark.parametrize("runner", sorted(RUNNERS) + sorted(GENERAL_RUNNERS))
def test_global_random_state_is_untouched(runner, seed):
    # compare included: TensorLy's power iteration draws from the global generator,
    # which compare seeds for it and restores.
    random_state = np.random.RandomState(5) if seed == "object" else seed
    np.random.seed(1234)
    before = np.random.get_state()
    if runner in RUNNERS:
        RUNNERS[runner](_targets()["cp"], random_state)
    else:
        GENERAL_RUNNERS[runner](_general_targets()["entries"], random_state)
    random_symmetric_cp(5, 2, 3, random_state=random_state)
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])


def test_moment_norm_estimate_for_many_samples_uses_its_own_generator():
    # Above 4096 samples the norm is estimated from a subsample drawn from the
    # target's random_state (default 0), never from numpy's global generator.
    X = np.random.RandomState(12).standard_normal((5000, 3))
    np.random.seed(3)
    before = np.random.get_state()
    first = SampleMoments(X, 3).norm_sq
    after = np.random.get_state()
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2]
    np.random.seed(4)
    assert SampleMoments(X, 3).norm_sq == first
