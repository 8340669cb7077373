"""Speed benchmark (issue 21): the acceptance ratios, each measured against its reference in one run.

Every figure is a ratio of two timings taken in the same process, one after
the other, with one BLAS thread (the machine is shared: absolute seconds
move with its load, ratios much less). Each timing is the best of
``--repeat`` calls. Cases (the issue's acceptance list):

1. **symmetric dense** (orders 3 and 4, d = 20 and 50, rank 5, orthogonal,
   weights 1 .. 0.1): ``power_deflation_cp`` (its result check included) and
   ``gradient_flow_cp`` (rank given) against TensorLy's
   ``symmetric_parafac_power_iteration``. Goals: power >= 10x, flow >= 3x,
   relative error <= 1e-6.
2. **CP target** d = 10^4, r = 50, order 4 (``--big``; about a minute):
   ``gradient_flow_cp`` against ``power_deflation_cp`` on the same target.
   Goal: the flow within 3x, 50 of 50 components.
3. **general exact** shape (20, 25, 30), rank 5, no rank given:
   ``gradient_flow_parafac`` against TensorLy's ``parafac(T, 5, init="svd")``.
   Goal: within 5x, relative error <= 1e-10, 5 components.
4. **completion** 30^3, 10% observed, rank 3, no rank given:
   ``gradient_flow_parafac`` against masked ALS at the true rank
   (``parafac(T0, 3, mask=mask, init="svd", n_iter_max=1000)``). Goal: within
   3x, held-out error <= 1e-8.

Also printed: the flow's steps per fit (Euler steps, then refinement and
polish steps) and the share of a fit spent in the check of its result
(``check_fit`` timed by a wrapper; goal <= 20%).

Usage::

    python benchmarks/speed.py            # cases 1, 3, 4 (about a minute)
    python benchmarks/speed.py --big      # and case 2
    python benchmarks/speed.py --big --output benchmarks/results_speed.txt
"""

import argparse
import os

# One BLAS thread, before numpy loads: on a shared 2-core machine a second BLAS
# thread waits for a core at every small GEMM.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorly as tl  # noqa: E402
from tensorly.cp_tensor import CPTensor  # noqa: E402
from tensorly.decomposition import parafac, symmetric_parafac_power_iteration  # noqa: E402

import tensorly_gfdeflate.flow.selection as _selection  # noqa: E402
import tensorly_gfdeflate.solvers.power as _power  # noqa: E402
from tensorly_gfdeflate import (  # noqa: E402
    components_recovered,
    gradient_flow_cp,
    gradient_flow_parafac,
    power_deflation_cp,
    random_symmetric_cp,
    relative_error,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results_speed.txt"


class CheckClock:
    """Seconds spent in ``check_fit`` (the result check), installed where the solvers call it."""

    def __init__(self):
        self.seconds = 0.0
        self._original = _selection.check_fit

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        _selection.check_fit = _power.check_fit = timed
        return self

    def __exit__(self, *exc):
        _selection.check_fit = _power.check_fit = self._original


def best(function, repeat):
    """``(best seconds, result, check share of that call)`` over ``repeat`` calls, warnings kept quiet."""
    runs = []
    for _ in range(repeat):
        with warnings.catch_warnings(), CheckClock() as clock:
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            result = function()
            seconds = time.perf_counter() - start
        runs.append((seconds, result, clock.seconds / seconds))
    return min(runs, key=lambda run: run[0])


def tensorly_power(tensor, rank):
    """TensorLy's symmetric power method; it draws from numpy's global generator, restored after."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        weights, factor = symmetric_parafac_power_iteration(tensor, rank)
    finally:
        np.random.set_state(state)
    return CPTensor((weights, [factor] * tl.ndim(tensor)))


def flow_steps(trace):
    return f"{len(trace.times) - 1}+{trace.refine_steps}"


def table(title, header, rows, note):
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)
    lines = [title, rule, "  ".join(c.rjust(w) for c, w in zip(header, widths)), rule]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells[1:]]
    return "\n".join(lines + [rule, note, ""])


def section_symmetric(repeat):
    rows, rank = [], 5
    for order in (3, 4):
        for dim in (20, 50):
            truth = random_symmetric_cp(dim, rank, order, random_state=dim + order)
            tensor = tl.cp_to_tensor(truth)
            reference, _, _ = best(lambda: tensorly_power(tensor, rank), repeat)
            power_s, power_cp, power_check = best(
                lambda: power_deflation_cp(tensor, rank, random_state=0), repeat)
            flow_s, (flow_cp, trace), flow_check = best(
                lambda: gradient_flow_cp(tensor, rank, random_state=0, return_trace=True),
                repeat)
            rows.append([order, dim, f"{reference:.4f}", f"{power_s:.4f}",
                         f"{reference / power_s:.1f}", f"{power_check:.0%}",
                         f"{relative_error(tensor, power_cp):.1e}",
                         f"{flow_s:.4f}", f"{reference / flow_s:.1f}", f"{flow_check:.0%}",
                         f"{relative_error(tensor, flow_cp):.1e}",
                         f"{components_recovered(truth, flow_cp)}/{rank}", flow_steps(trace)])
    return table(
        "1. Symmetric dense, r = 5: speed-up over TensorLy's symmetric_parafac_power_iteration",
        ["order", "d", "tensorly s", "power s", "power x", "check", "power err",
         "flow s", "flow x", "check", "flow err", "found", "steps"], rows,
        "x: TensorLy's seconds / ours (goals: power >= 10, flow >= 3, error <= 1e-6). check: "
        "share of the call in the result check. steps: Euler + refinement/polish.")


def section_big(repeat):
    truth = random_symmetric_cp(10_000, 50, 4, random_state=0)
    power_s, power_cp, power_check = best(
        lambda: power_deflation_cp(truth, 50, random_state=0), repeat)
    flow_s, (flow_cp, trace), flow_check = best(
        lambda: gradient_flow_cp(truth, 50, random_state=0, return_trace=True), repeat)
    rows = [["power_deflation_cp", f"{power_s:.2f}", f"{power_check:.0%}",
             f"{components_recovered(truth, power_cp)}/50", "-", "-"],
            ["gradient_flow_cp", f"{flow_s:.2f}", f"{flow_check:.0%}",
             f"{components_recovered(truth, flow_cp)}/50", flow_steps(trace),
             f"{flow_s / power_s:.2f}"]]
    return table("2. CP target d = 10^4, r = 50, order 4",
                 ["solver", "seconds", "check", "found", "steps", "flow / power"], rows,
                 "Goal: flow / power <= 3, 50/50 found.")


def general_problem(seed=0, shape=(20, 25, 30), rank=5):
    rng = np.random.RandomState(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    factors = [f / np.linalg.norm(f, axis=0) for f in factors]
    return tl.cp_to_tensor((np.linspace(1.0, 0.2, rank), factors))


def section_general(repeat, seeds):
    rows = []
    for seed in range(seeds):
        tensor = general_problem(seed)
        als_s, als_cp, _ = best(lambda: parafac(tensor, 5, init="svd"), repeat)
        flow_s, (flow_cp, trace), check = best(
            lambda: gradient_flow_parafac(tensor, random_state=seed, return_trace=True), repeat)
        rows.append([seed, f"{als_s:.4f}", f"{relative_error(tensor, als_cp):.1e}",
                     f"{flow_s:.4f}", f"{relative_error(tensor, flow_cp):.1e}",
                     tl.shape(flow_cp[1][0])[1], flow_steps(trace), f"{check:.0%}",
                     f"{flow_s / als_s:.1f}"])
    return table(
        "3. General exact (20, 25, 30), rank 5: gradient_flow_parafac (no rank) vs "
        "parafac(T, 5, init='svd')",
        ["seed", "ALS s", "ALS err", "flow s", "flow err", "found", "steps", "check",
         "flow / ALS"], rows,
        "Goal: flow / ALS <= 5, flow error <= 1e-10, 5 components.")


def completion_problem(seed, shape=(30, 30, 30), rank=3, fraction=0.1):
    rng = np.random.RandomState(seed)
    tensor = tl.cp_to_tensor((None, [rng.standard_normal((n, rank)) for n in shape]))
    return tensor, rng.random_sample(shape) < fraction


def held_out(tensor, mask, cp):
    held = ~mask
    difference = tl.to_numpy(tl.cp_to_tensor(cp))[held] - tensor[held]
    return float(np.linalg.norm(difference) / np.linalg.norm(tensor[held]))


def section_completion(repeat, seeds):
    rows = []
    for seed in range(seeds):
        tensor, mask = completion_problem(seed)
        zeroed, nans = np.where(mask, tensor, 0.0), np.where(mask, tensor, np.nan)
        als_s, als_cp, _ = best(lambda: parafac(zeroed, 3, mask=mask, init="svd",
                                                n_iter_max=1000), repeat)
        flow_s, (flow_cp, trace), check = best(
            lambda: gradient_flow_parafac(nans, mask=mask, random_state=seed,
                                          return_trace=True), repeat)
        rows.append([seed, f"{als_s:.3f}", f"{held_out(tensor, mask, als_cp):.1e}",
                     f"{flow_s:.3f}", f"{held_out(tensor, mask, flow_cp):.1e}",
                     tl.shape(flow_cp[1][0])[1], flow_steps(trace), f"{check:.0%}",
                     f"{flow_s / als_s:.1f}"])
    return table(
        "4. Completion 30^3, 10% observed, rank 3: gradient_flow_parafac (no rank) vs masked "
        "ALS at rank 3",
        ["seed", "ALS s", "ALS held-out", "flow s", "flow held-out", "found", "steps",
         "check", "flow / ALS"], rows,
        "ALS: parafac(T0, 3, mask=mask, init='svd', n_iter_max=1000). Goal: flow / ALS <= 3, "
        "held-out <= 1e-8.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also the d = 10^4 CP target")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    header = (f"date (UTC) {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}; numpy "
              f"{np.__version__}, tensorly {tl.__version__}; 1 BLAS thread; load average "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")
    sections = [header, section_symmetric(args.repeat)]
    if args.big:
        sections.append(section_big(1))
    sections += [section_general(args.repeat, args.seeds),
                 section_completion(args.repeat, args.seeds)]
    text = "\n".join(sections)
    print(text)
    if args.output is not None:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
