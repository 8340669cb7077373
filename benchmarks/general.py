"""General CP and completion benchmark (issue 12): gradient_flow_parafac against TensorLy.

``gradient_flow_parafac`` fits general (non-symmetric) CP decompositions, and
completes tensors from some of their entries, without being given a rank. This
script measures the issue's acceptance figures, each against TensorLy's
``parafac`` (alternating least squares, ALS) on the same data in the same run:

1. **exact** (``--sections exact``): shape (20, 25, 30), rank 5, factors with
   independent standard normal entries scaled to unit columns (not
   orthogonal), weights ``linspace(1, 0.2, 5)``, no noise, ``--seeds`` seeds
   (seed ``s`` draws the factors from ``RandomState(s)`` and is every solver's
   ``random_state``). The flow without a rank; TensorLy's
   ``parafac(T, 5, random_state=s)`` (its defaults: ``init="svd"``,
   ``n_iter_max=100``, ``tol=1e-8``), TensorLy's
   ``parafac_power_iteration(T, 5)`` (its defaults; it draws its starts from
   numpy's global random state, seeded here with ``np.random.seed(s)``) and
   this package's ``power_deflation_parafac(T, 5)``. Goal: 5 components and
   relative error <= 1e-6 for the flow.
2. **completion** (``--sections completion``): shape (30, 30, 30), rank 3,
   factors with independent standard normal entries (weights 1), 10% of the
   entries observed (each independently with probability 0.1, from the same
   ``RandomState(s)``), no noise. The flow gets the dense array with NaN where
   unobserved and the mask, and no rank; ALS gets
   ``parafac(T0, r, mask=mask, init=init, n_iter_max=--als-iter, random_state=s)``
   with ``T0`` zero where unobserved, at r = 3 (the true rank) and r = 10, for
   ``init="svd"`` and ``init="random"``. Error: relative error on the
   held-out (unobserved) entries, ``|T_hat - T|_held / |T|_held``. Goal, per
   seed, against ALS's better init at each rank (ALS's best case): the flow's
   held-out error <= 1e-2, at least 10 times below ALS's at r = 10, and no
   worse than ALS's at r = 3.
3. **sweep** (``--sections sweep``): as 2 for observed fractions 1%, 2%, 5%,
   10%, 20%, 50%, ``--sweep-seeds`` seeds; median held-out error of the flow
   (no rank) and of ALS at r = 3 and r = 10 (both inits).
4. **init** (``--sections init``): the start's scale. Tables 1's and 2's
   problems, ``--init-seeds`` seeds, the flow with ``init_scale`` 1e-3, 1e-2
   (the default) and 1e-1: outcome, flow time of the first discovery and
   seconds (the measurement behind the default).
5. **large** (``--sections large``, expensive: not run by default): shape
   (1000, 1000, 1000), rank 5, factors with standard normal entries, 10^6
   observed entries drawn as unique random flat indices (``randint`` then
   ``np.unique``, more drawn until there are enough, then a random subset),
   never a dense array; values computed from the factors at those
   coordinates; the flow gets an ``ObservedEntries`` and no rank. Held-out
   error on 10^5 other random coordinates. Run in a fresh process so that
   its peak resident memory (``VmHWM``, which includes Python, the libraries
   and the data) is its own. Goal: held-out error <= 1e-2 in <= 300 s with
   a peak <= 2 GiB. ``--large-seeds`` seeds (default 3), each drawing its own
   problem and flow start.

Times are wall-clock seconds of one call; the "x ALS" columns divide each
run's time by ALS's on the same seed (median over seeds). Warnings are
recorded (not shown) and counted.

Usage::

    python benchmarks/general.py --blas-threads 1                      # 1-4 (default)
    python benchmarks/general.py --sections large --blas-threads 1     # 5 alone
    python benchmarks/general.py --sections exact completion sweep init large --blas-threads 1
    python benchmarks/general.py --seeds 3 --sweep-seeds 2 --output /tmp/quick.txt  # a look
"""

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorly as tl  # noqa: E402
from tensorly.decomposition import parafac, parafac_power_iteration  # noqa: E402

from reliability import _wrap, git_commit  # noqa: E402
from run import machine_description, peak_rss_bytes, table  # noqa: E402
from tensorly_gfdeflate import (  # noqa: E402
    ObservedEntries,
    gradient_flow_parafac,
    power_deflation_parafac,
)
from tensorly_gfdeflate.solvers.general_flow import DEFAULT_INIT_SCALE  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results_general.txt"
EXACT_SHAPE, EXACT_RANK, EXACT_GOAL = (20, 25, 30), 5, 1e-6
COMPLETION_SHAPE, COMPLETION_RANK, COMPLETION_FRACTION = (30, 30, 30), 3, 0.1
OVER_RANK = 10
COMPLETION_GOAL, OVERFIT_FACTOR = 1e-2, 10.0
# Below this held-out error a fit has recovered the tensor (to its stopping tolerance).
RECOVERED = 1e-4
SWEEP_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
ALS_INITS = ("svd", "random")
LARGE_SIZE, LARGE_RANK, LARGE_ENTRIES, LARGE_HELD_OUT = 1000, 5, 10**6, 10**5
LARGE_SECONDS, LARGE_BYTES = 300.0, 2 * 2**30
INIT_SCALES = (1e-3, 1e-2, 1e-1)
_NOT_ALARMS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


class _OutOfTime(Exception):
    pass


@dataclass
class Result:
    error: float
    seconds: float
    components: int = -1
    alarms: list = field(default_factory=list)
    stop: str = "-"


def timed(function, *args, **kwargs):
    """``(value, seconds, warning class names)`` of one call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        value = function(*args, **kwargs)
        seconds = time.perf_counter() - start
    return value, seconds, [type(w.message).__name__ for w in caught
                            if not issubclass(w.category, _NOT_ALARMS)]


def n_components(cp):
    return int(tl.shape(cp[1][0])[1])


def _median(values):
    return float(np.median(values))


def _count(flags):
    return f"{sum(flags)}/{len(flags)}"


def _sci(value):
    return f"{value:.2e}"


# --------------------------------------------------------------------------- problems


def unit_columns(matrix):
    return matrix / np.linalg.norm(matrix, axis=0)


def exact_problem(seed):
    rng = np.random.RandomState(seed)
    factors = [unit_columns(rng.standard_normal((n, EXACT_RANK))) for n in EXACT_SHAPE]
    return tl.cp_to_tensor((np.linspace(1.0, 0.2, EXACT_RANK), factors))


def completion_problem(seed, fraction, shape=COMPLETION_SHAPE, rank=COMPLETION_RANK):
    """The full tensor and its mask (True: observed)."""
    rng = np.random.RandomState(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    tensor = tl.cp_to_tensor((None, factors))
    return tensor, rng.random_sample(shape) < fraction


def held_out_error(tensor, mask, cp):
    held = ~mask
    difference = tl.to_numpy(tl.cp_to_tensor(cp))[held] - tensor[held]
    return float(np.linalg.norm(difference) / np.linalg.norm(tensor[held]))


# --------------------------------------------------------------------------- solvers


def run_flow_completion(tensor, mask, seed):
    (cp, trace), seconds, alarms = timed(
        gradient_flow_parafac, np.where(mask, tensor, np.nan), mask=mask, random_state=seed,
        return_trace=True)
    return Result(held_out_error(tensor, mask, cp), seconds, n_components(cp), alarms,
                  trace.stop_reason)


def run_als_completion(tensor, mask, seed, rank, init, n_iter_max):
    cp, seconds, alarms = timed(parafac, np.where(mask, tensor, 0.0), rank, mask=mask,
                                init=init, n_iter_max=n_iter_max, random_state=seed)
    return Result(held_out_error(tensor, mask, cp), seconds, rank, alarms)


def completion_runs(seed, fraction, n_iter_max):
    """The flow's and every ALS configuration's result on one draw."""
    tensor, mask = completion_problem(seed, fraction)
    results = {"flow": run_flow_completion(tensor, mask, seed)}
    for rank in (COMPLETION_RANK, OVER_RANK):
        for init in ALS_INITS:
            results[rank, init] = run_als_completion(tensor, mask, seed, rank, init, n_iter_max)
    return results


def best_als(results, rank):
    """ALS's better init on this draw (its best case)."""
    return min((results[rank, init] for init in ALS_INITS), key=lambda r: r.error)


def flow_best(results):
    """The goal of table 2 on one draw: 10x below ALS at r = 10, no worse (or tied) at r = 3."""
    flow, als3 = results["flow"].error, best_als(results, COMPLETION_RANK).error
    return (flow * OVERFIT_FACTOR <= best_als(results, OVER_RANK).error
            and (flow <= als3 or max(flow, als3) <= RECOVERED))


def stop_counts(runs):
    """``"nothing_to_fit x2, max_time x1"``."""
    reasons = [r.stop for r in runs]
    return ", ".join(f"{name} x{reasons.count(name)}" for name in sorted(set(reasons)))


# --------------------------------------------------------------------------- sections


def section_exact(args):
    def relative(cp, tensor):
        return float(tl.norm(tl.cp_to_tensor(cp) - tensor) / tl.norm(tensor))

    def tensorly_power(tensor, seed):
        np.random.seed(seed)  # its starts come from numpy's global random state
        return parafac_power_iteration(tensor, EXACT_RANK)

    methods = {
        "gradient_flow_parafac(T)": lambda t, s: gradient_flow_parafac(t, random_state=s),
        f"tensorly parafac(T, {EXACT_RANK})": lambda t, s: parafac(t, EXACT_RANK,
                                                                   random_state=s),
        f"tensorly parafac_power_iteration(T, {EXACT_RANK})": tensorly_power,
        f"power_deflation_parafac(T, {EXACT_RANK})": lambda t, s: power_deflation_parafac(
            t, EXACT_RANK, random_state=s),
    }
    reference = f"tensorly parafac(T, {EXACT_RANK})"
    runs = {name: [] for name in methods}
    for seed in range(args.seeds):
        tensor = exact_problem(seed)
        for name, method in methods.items():
            cp, seconds, alarms = timed(method, tensor, seed)
            runs[name].append(Result(relative(cp, tensor), seconds, n_components(cp), alarms))
    rows = []
    for name, results in runs.items():
        errors = [r.error for r in results]
        ratios = [r.seconds / ref.seconds for r, ref in zip(results, runs[reference])]
        rows.append((
            name,
            _count([r.components == EXACT_RANK for r in results]),
            _sci(_median(errors)), _sci(max(errors)),
            _count([e <= EXACT_GOAL for e in errors]),
            _count([bool(r.alarms) for r in results]),
            f"{_median([r.seconds for r in results]):.3f}",
            f"{_median(ratios):.1f}",
        ))
    flow = runs["gradient_flow_parafac(T)"]
    met = [r.components == EXACT_RANK and r.error <= EXACT_GOAL for r in flow]
    returned = sorted({r.components for r in flow})
    summary = (
        f"Goal (flow without a rank: {EXACT_RANK} components and relative error <= "
        f"{EXACT_GOAL:g}): met in {sum(met)} of {len(met)} seeds"
        + ("." if all(met) else
           f"; not met for seeds {[s for s, ok in enumerate(met) if not ok]} "
           f"(errors {[_sci(flow[s].error) for s, ok in enumerate(met) if not ok]}, "
           f"components {[flow[s].components for s, ok in enumerate(met) if not ok]}).")
        + f" The flow returned {', '.join(map(str, returned))} components.")
    notes = _wrap(
        f"Shape {EXACT_SHAPE}, rank {EXACT_RANK}, unit non-orthogonal factors, weights "
        f"linspace(1, 0.2, {EXACT_RANK}), no noise; seeds 0..{args.seeds - 1}. rank: runs "
        f"returning {EXACT_RANK} components; error: |T_hat - T| / |T| (median, max); <= "
        f"{EXACT_GOAL:g}: runs with that error; warned: runs with a warning; seconds: median "
        "of one call; x ALS: median over seeds of the time over ALS's on the same tensor. "
        "TensorLy's solvers with their defaults.") + "\n" + _wrap(summary)
    return table(
        f"1. Exact low rank: gradient_flow_parafac(T) without a rank, against rank-{EXACT_RANK} "
        "solvers",
        ["method", "rank", "median error", "max error", f"<= {EXACT_GOAL:g}", "warned",
         "seconds", "x ALS"],
        rows, notes)


def section_completion(args):
    results = [completion_runs(seed, COMPLETION_FRACTION, args.als_iter)
               for seed in range(args.seeds)]
    labels = {"flow": "gradient_flow_parafac(T, mask=mask)"}
    for rank in (COMPLETION_RANK, OVER_RANK):
        for init in ALS_INITS:
            labels[rank, init] = f"tensorly parafac(T, {rank}, mask=mask, init='{init}')"
    summary_rows = []
    for key, label in labels.items():
        runs = [r[key] for r in results]
        errors = [r.error for r in runs]
        ratios = [r.seconds / res[COMPLETION_RANK, "svd"].seconds
                  for r, res in zip(runs, results)]
        summary_rows.append((
            label,
            _count([r.components == COMPLETION_RANK for r in runs]) if key == "flow" else "-",
            _sci(_median(errors)), _sci(max(errors)),
            _count([e <= COMPLETION_GOAL for e in errors]),
            _count([bool(r.alarms) for r in runs]),
            f"{_median([r.seconds for r in runs]):.2f}",
            f"{_median(ratios):.1f}",
        ))
    seed_rows, verdicts = [], []
    for seed, res in enumerate(results):
        flow = res["flow"]
        als3, als10 = best_als(res, COMPLETION_RANK), best_als(res, OVER_RANK)
        small = flow.error <= COMPLETION_GOAL
        overfit = flow.error * OVERFIT_FACTOR <= als10.error
        strict = flow.error <= als3.error
        # Both at the exact fit: the difference is the solvers' stopping tolerances.
        tied = not strict and flow.error <= RECOVERED and als3.error <= RECOVERED
        verdicts.append((small, overfit, strict, tied))
        seed_rows.append((
            seed, flow.components, _sci(flow.error), flow.stop,
            _sci(res[COMPLETION_RANK, "svd"].error), _sci(res[COMPLETION_RANK, "random"].error),
            _sci(res[OVER_RANK, "svd"].error), _sci(res[OVER_RANK, "random"].error),
            f"{als10.error / flow.error:.3g}",
            "yes" if small else "NO",
            "yes" if overfit else "NO",
            "yes" if strict else ("tie" if tied else "NO"),
        ))
    n = len(results)
    small, overfit, strict, tied = (sum(v[i] for v in verdicts) for i in range(4))
    all_met = sum(1 for v in verdicts if v[0] and v[1] and v[2])
    all_met_tied = sum(1 for v in verdicts if v[0] and v[1] and (v[2] or v[3]))
    flow_errors = [r["flow"].error for r in results]
    summary = [
        f"Held-out error of the flow (no rank): median {_sci(_median(flow_errors))}, worst "
        f"{_sci(max(flow_errors))}; <= {COMPLETION_GOAL:g} in {small} of {n} seeds.",
        f"At least {OVERFIT_FACTOR:g}x below ALS at r = {OVER_RANK} (better init) in "
        f"{overfit} of {n} seeds (median ratio "
        f"{_median([best_als(r, OVER_RANK).error / r['flow'].error for r in results]):.3g}).",
        f"No worse than ALS at r = {COMPLETION_RANK} (better init) in {strict} of {n} seeds"
        + (f"; in {tied} more both are below {RECOVERED:g} (both recovered the tensor; the "
           "difference is the stopping tolerances)" if tied else "") + ".",
        f"Goal met in {all_met} of {n} seeds strictly"
        + (f", {all_met_tied} of {n} counting the ties" if all_met_tied != all_met else "")
        + ".",
    ]
    text = table(
        f"2. Completion: shape {COMPLETION_SHAPE}, rank {COMPLETION_RANK}, "
        f"{COMPLETION_FRACTION:.0%} observed; held-out relative error over seeds 0..{n - 1}",
        ["method", "rank", "median error", "worst error", f"<= {COMPLETION_GOAL:g}", "warned",
         "seconds", "x ALS r=3 svd"],
        summary_rows,
        _wrap(f"ALS: tensorly parafac with n_iter_max={args.als_iter}, tol=1e-8 (default), "
              "random_state=seed, zeros where unobserved; the flow: NaN where unobserved. "
              "rank: runs returning the true rank; warned: runs with a warning; seconds: "
              "median of one call; x ALS r=3 svd: median ratio of times on the same draw."))
    text += "\n" + table(
        "Per seed: held-out relative error",
        ["seed", "flow rank", "flow", "flow stop", "ALS 3 svd", "ALS 3 random", "ALS 10 svd",
         "ALS 10 random", "ALS 10 / flow", f"flow <= {COMPLETION_GOAL:g}",
         f">= {OVERFIT_FACTOR:g}x below ALS 10", "<= ALS 3"],
        seed_rows,
        _wrap("ALS 10 / flow and the last two columns use ALS's better init at each rank. "
              f"tie: the flow's error is above ALS's but both are below {RECOVERED:g}.")
        + "\n" + "\n".join(_wrap(line) for line in summary))
    return text


def section_sweep(args):
    rows = []
    for fraction in SWEEP_FRACTIONS:
        results = [completion_runs(seed, fraction, args.als_iter)
                   for seed in range(args.sweep_seeds)]
        flow = [r["flow"] for r in results]
        row = [f"{fraction:.0%}",
               int(round(fraction * np.prod(COMPLETION_SHAPE))),
               _sci(_median([r.error for r in flow])),
               f"{_median([r.components for r in flow]):g}",
               _count([bool(r.alarms) for r in flow]),
               f"{_median([r.seconds for r in flow]):.2f}"]
        for rank in (COMPLETION_RANK, OVER_RANK):
            for init in ALS_INITS:
                row.append(_sci(_median([r[rank, init].error for r in results])))
        row.append(_count([flow_best(r) for r in results]))
        row.append(stop_counts(flow))
        rows.append(row)
        print(f"  sweep {fraction:.0%} done", file=sys.stderr, flush=True)
    return table(
        f"3. Held-out relative error against the observed fraction: shape {COMPLETION_SHAPE}, "
        f"rank {COMPLETION_RANK}, median over seeds 0..{args.sweep_seeds - 1}",
        ["observed", "entries", "flow", "flow rank", "flow warned", "flow s",
         "ALS 3 svd", "ALS 3 random", "ALS 10 svd", "ALS 10 random", "flow best",
         "flow stops"],
        rows,
        _wrap(f"Problems as in table 2 at each fraction (the same seeds). flow: "
              "gradient_flow_parafac without a rank (median error, median rank returned, "
              f"runs with a warning, median seconds); ALS: tensorly parafac, n_iter_max="
              f"{args.als_iter}. flow best: seeds where the flow's error is at least "
              f"{OVERFIT_FACTOR:g}x below ALS's at r = {OVER_RANK} and no worse than ALS's at "
              f"r = {COMPLETION_RANK} (better init at each rank; a tie, both below "
              f"{RECOVERED:g}, counts as no worse); flow stops: the flow's stop reasons."))


def section_init(args):
    """The balanced start's scale: flow time, outcome and seconds for the two problems."""
    problems = {
        "exact": lambda seed: (exact_problem(seed), None),
        f"completion {COMPLETION_FRACTION:.0%}": lambda seed: completion_problem(
            seed, COMPLETION_FRACTION),
    }
    rows = []
    for name, make in problems.items():
        draws = [make(seed) for seed in range(args.init_seeds)]
        for scale in INIT_SCALES:
            results, horizons, firsts = [], [], []
            for seed, (tensor, mask) in enumerate(draws):
                target = tensor if mask is None else np.where(mask, tensor, np.nan)
                (cp, trace), seconds, alarms = timed(
                    gradient_flow_parafac, target, mask=mask, init_scale=scale,
                    random_state=seed, return_trace=True)
                if mask is None:
                    error = float(tl.norm(tl.cp_to_tensor(cp) - tensor) / tl.norm(tensor))
                else:
                    error = held_out_error(tensor, mask, cp)
                first = float(np.min(trace.discovery_time)) if len(trace.discovery_time) \
                    else np.nan
                results.append(Result(error, seconds, n_components(cp), alarms,
                                      trace.stop_reason))
                horizons.append(float(trace.times[-1]))
                firsts.append(first)
            errors = [r.error for r in results]
            rank = EXACT_RANK if mask is None else COMPLETION_RANK
            rows.append((name, f"{scale:g}", _count([r.components == rank for r in results]),
                         _sci(_median(errors)), _sci(max(errors)),
                         _count([bool(r.alarms) for r in results]),
                         ", ".join(sorted({a for r in results for a in r.alarms})) or "-",
                         f"{_median(firsts):.0f}", f"{_median(horizons):.0f}",
                         f"{_median([r.seconds for r in results]):.2f}", stop_counts(results)))
    return table(
        f"4. The start's scale (init_scale) over seeds 0..{args.init_seeds - 1}",
        ["problem", "init_scale", "rank", "median error", "max error", "warned", "warnings",
         "first discovery t", "flow time", "seconds", "stops"],
        rows,
        _wrap("exact: table 1's problem (relative error); completion: table 2's (held-out "
              "error). The flow without a rank, every other setting its default "
              f"(init_scale={DEFAULT_INIT_SCALE:g}). rank: runs returning the true rank; first "
              "discovery t: median flow time of the earliest discovery; flow time: median "
              "flow time at the end of the flow (before the refinement)."))


def large_problem(size, rank, n_entries, n_held_out, seed=0):
    """Factors, observed coordinates and values, held-out coordinates: never a dense array."""
    shape = (size,) * 3
    total = size**3
    rng = np.random.RandomState(seed)
    factors = [rng.standard_normal((n, rank)) for n in shape]
    flat = np.empty(0, dtype=np.int64)
    while len(flat) < n_entries + n_held_out:
        more = rng.randint(0, total, size=int(1.01 * (n_entries + n_held_out)) - len(flat) + 16,
                           dtype=np.int64)
        flat = np.unique(np.concatenate([flat, more]))
    # np.unique sorts: a random subset, not the smallest indices.
    chosen = flat[rng.permutation(len(flat))[:n_entries + n_held_out]]
    observed, held = np.sort(chosen[:n_entries]), np.sort(chosen[n_entries:])
    del flat, chosen
    return shape, factors, observed, held


def cp_at(weights, factors, flat, shape, block=10**6):
    """A CP tensor's entries at flat indices, in blocks (never the dense array)."""
    out = np.empty(len(flat))
    for start in range(0, len(flat), block):
        coordinates = np.unravel_index(flat[start:start + block], shape)
        terms = np.ones((len(coordinates[0]), len(weights))) * weights
        for factor, rows in zip(factors, coordinates):
            terms *= factor[rows]
        out[start:start + block] = terms.sum(axis=1)
    return out


def current_rss_bytes():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return -1


def large_child(args):
    """Runs in its own process: build the large problem, fit it, print one JSON line."""
    start = time.perf_counter()
    seed = args.large_seeds  # in the child: the one seed to run
    shape, factors, observed, held = large_problem(args.large_size, LARGE_RANK,
                                                   args.large_entries, LARGE_HELD_OUT, seed)
    ones = np.ones(LARGE_RANK)
    values = cp_at(ones, factors, observed, shape)
    entries = ObservedEntries(np.unravel_index(observed, shape), values, shape)
    build = time.perf_counter() - start
    rss_before = current_rss_bytes()

    def out_of_time(signum, frame):
        raise _OutOfTime

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.large_limit))
    fit_start = time.perf_counter()
    try:
        (cp, trace), seconds, alarms = timed(gradient_flow_parafac, entries, random_state=seed,
                                             return_trace=True)
    except _OutOfTime:
        print(json.dumps(dict(
            shape=list(shape), entries=int(len(observed)), held=int(len(held)), build=build,
            seconds=time.perf_counter() - fit_start, stopped=True, rss_before=rss_before,
            peak_rss=peak_rss_bytes())))
        return
    signal.alarm(0)
    estimate = cp_at(np.asarray(tl.to_numpy(cp.weights)),
                     [np.asarray(tl.to_numpy(f)) for f in cp.factors], held, shape)
    truth = cp_at(ones, factors, held, shape)
    error = float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))
    print(json.dumps(dict(
        shape=list(shape), entries=int(len(observed)), held=int(len(held)), build=build,
        seconds=seconds, error=error, components=n_components(cp), stop=trace.stop_reason,
        steps=len(trace.times), rss_before=rss_before, peak_rss=peak_rss_bytes(),
        alarms=alarms)))


def _large_run(args, seed):
    """One seed of table 5 in a fresh process (its peak memory is its own): the child's record."""
    command = [sys.executable, __file__, "--large-child", "--large-size", str(args.large_size),
               "--large-entries", str(args.large_entries), "--large-limit",
               str(args.large_limit), "--large-seeds", str(seed)]
    if args.blas_threads:
        command += ["--blas-threads", str(args.blas_threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"table 5, seed {seed} failed:\n" + done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _large_checks(r):
    if r.get("stopped"):
        return {f"fit <= {LARGE_SECONDS:g} s": False}
    return {
        f"held-out error <= {COMPLETION_GOAL:g}": r["error"] <= COMPLETION_GOAL,
        f"fit <= {LARGE_SECONDS:g} s": r["seconds"] <= LARGE_SECONDS,
        f"peak <= {LARGE_BYTES / 2**30:g} GiB": r["peak_rss"] <= LARGE_BYTES,
    }


def _large_row(seed, r):
    fraction = f"{r['entries'] / np.prod(r['shape']):.2g}"
    memory = (f"{r['rss_before'] / 2**20:.0f}", f"{r['peak_rss'] / 2**20:.0f}")
    if r.get("stopped"):
        return (seed, fraction, f"{r['build']:.1f}", f"> {r['seconds']:.0f} (stopped)",
                "-", "-", "-", "-", *memory, "-")
    return (seed, fraction, f"{r['build']:.1f}", f"{r['seconds']:.1f}", r["components"],
            _sci(r["error"]), r["stop"], r["steps"], *memory, ", ".join(r["alarms"]) or "none")


def section_large(args):
    seeds = range(args.large_seeds)
    records = [_large_run(args, seed) for seed in seeds]
    met = [all(_large_checks(r).values()) for r in records]
    failed = sorted({name for r in records for name, ok in _large_checks(r).items() if not ok})
    r = records[0]
    verdict = (f"Goal met in {sum(met)} of {len(met)} seeds"
               + (f"; failing: {', '.join(failed)}." if failed else "."))
    return table(
        f"5. Large sparse completion: shape {tuple(r['shape'])}, rank {LARGE_RANK}, "
        f"{r['entries']} observed entries as ObservedEntries",
        ["seed", "observed fraction", "build s", "fit s", "rank", "held-out error", "stop",
         "steps", "RSS before fit MiB", "peak RSS MiB", "warnings"],
        [_large_row(seed, r) for seed, r in zip(seeds, records)],
        _wrap(f"One fresh process per seed s: the problem drawn with seed s, "
              f"gradient_flow_parafac(entries, random_state=s) without a rank, stopped at "
              f"--large-limit {args.large_limit:g} s. build: drawing the factors and "
              f"coordinates and computing the values; held-out error on {r['held']} other "
              "random coordinates; peak RSS: the process's VmHWM (Python, libraries, data and "
              f"fit). Goal per seed: held-out error <= {COMPLETION_GOAL:g}, fit <= "
              f"{LARGE_SECONDS:g} s, peak <= {LARGE_BYTES / 2**30:g} GiB.")
        + "\n" + _wrap(verdict))


SECTIONS = {"exact": section_exact, "completion": section_completion, "sweep": section_sweep,
            "init": section_init, "large": section_large}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS),
                        default=["exact", "completion", "sweep", "init"],
                        help="which tables (default: exact completion sweep init; large is "
                        "expensive and runs only when named)")
    parser.add_argument("--seeds", type=int, default=10,
                        help="seeds 0..N-1 for tables 1 and 2 (default 10)")
    parser.add_argument("--sweep-seeds", type=int, default=3,
                        help="seeds per observed fraction in table 3 (default 3)")
    parser.add_argument("--init-seeds", type=int, default=3,
                        help="seeds per problem and init_scale in table 5 (default 3)")
    parser.add_argument("--als-iter", type=int, default=1000,
                        help="n_iter_max of TensorLy's parafac with a mask (default 1000)")
    parser.add_argument("--large-size", type=int, default=LARGE_SIZE,
                        help=f"table 4: each dimension (default {LARGE_SIZE})")
    parser.add_argument("--large-entries", type=int, default=LARGE_ENTRIES,
                        help=f"table 4: observed entries (default {LARGE_ENTRIES})")
    parser.add_argument("--large-limit", type=float, default=1800.0,
                        help="table 5: stop the fit after this many seconds (default 1800)")
    parser.add_argument("--large-seeds", type=int, default=3,
                        help="table 5: seeds, one fresh process each (default 3)")
    parser.add_argument("--large-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads (threadpoolctl); default: leave as is")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"also write the tables here (default {DEFAULT_OUTPUT})")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    if args.large_child:
        large_child(args)
        return
    command = shlex.join(["python", "benchmarks/general.py", *(argv or sys.argv[1:])])
    parts = [f"command: {command}\nseeds: {args.seeds} (sweep: {args.sweep_seeds}); "
             f"git commit: {git_commit()}\n" + machine_description()]
    print(parts[-1], flush=True)
    start = time.perf_counter()
    for name in args.sections:
        section_start = time.perf_counter()
        text = SECTIONS[name](args)
        parts.append(text + f"({name}: {time.perf_counter() - section_start:.0f} s)\n")
        print(parts[-1], flush=True)
    parts.append(f"total {time.perf_counter() - start:.0f} s; load average at end: "
                 "%.2f %.2f %.2f" % os.getloadavg())
    print(parts[-1], flush=True)
    args.output.write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
