"""Automatic rank benchmark (issue 13): the smallest decomposition, above the noise.

``gradient_flow_cp(T)`` without a rank decides how many components the tensor
holds. This script measures how often that number is the true one, over a grid
of cells and ``--seeds`` seeds per cell:

* truth ``T0 = sum_i a_i u_i^(x)l`` with r = 5 components in d = 12 (``--dim``,
  ``--rank``): orthogonal ``u_i`` or independent uniform unit vectors; order 3
  or 4; separated weights ``linspace(1, 0.3, r)`` or close ones
  ``linspace(1, 0.8, r)``;
* noise ``E``: a Gaussian tensor symmetrized over all permutations of its modes
  and scaled to Frobenius norm ``noise * |T0|``, for noise 0, 1%, 5%, 20% (the
  issue's levels) and 50% (beyond them, so that the table also shows cells
  below the goal's line). Seed ``s`` draws the truth from ``RandomState(s)``
  and ``E`` from ``RandomState(s + 10_000)`` (the stream of
  ``benchmarks/reliability.py``), and is the flow's ``random_state``. For a
  given seed and order, ``E`` has the same direction in every cell.

The flow runs with its defaults (``regularization="auto"``), warnings recorded.
Per cell the table gives:

* **SNR margin**: the smallest true weight over the injective norm of ``E``
  (its largest ``|E(v^l)|`` over unit ``v``), median and minimum over seeds.
  The norm is computed from ``E`` itself, which the flow never sees: the best of
  ``INJECTIVE_STARTS`` random starts, each run to convergence by power
  iterations (``tensorly_gfdeflate.models.symmetric.power_iterate``);
* **rank**: runs that returned exactly r components;
* **recovered**: runs in which all r true components are recovered
  (``components_recovered``) to the noise level's tolerance, ``TOLERANCES``:
  ``|cos| >= 0.99`` and weight within 5% for noise 0 and 1%; 0.98 / 10% for 5%;
  0.9 / 25% for 20%; 0.8 / 50% for 50% (first-order perturbation moves a
  direction by about ``|E|_inj / a`` radians and a weight by ``|E|_inj``, which
  at margin 3 is a third of the smallest weight);
* **warned**: runs with a warning (any ``Warning`` but the deprecation family,
  or an exception); **max_time**: runs with ``trace.stop_reason == "max_time"``;
* **more silent**: runs that returned more than r components without a warning
  (the goal wants none);
* **median s** of the flow; its median ``noise_level_`` estimate over the
  truth's (median ``trace.noise_level * |T| / |E|_inj``, 1 when the flow sized the
  noise exactly) and the median smallest ``component_snr``;
* two baselines' rank on the same tensor, both on the ``d x d^(l-1)``
  unfolding ``M`` (``d`` singular values; the signal has rank r <= d there):

  (a) **flattening** (the rank estimate behind Kileel and Pereira's subspace
      power method): the number of singular values of ``M`` above a
      threshold. The threshold is an oracle's: twice the spectral norm of the
      noise's own unfolding (known here, never in practice), and at least
      ``max(shape) * eps * sigma_1`` (numpy's ``matrix_rank``), so it is the
      best case of a threshold rule. The most square unfolding
      (``d^2 x d^2`` at order 4) is not used: a symmetric tensor's has rank at
      most ``d (d + 1) / 2``, so half its singular values vanish whatever the
      noise, which would break (b)'s median;
  (b) **Gavish-Donoho** optimal hard threshold for unknown noise (IEEE Trans.
      Inf. Theory 2014): singular values of ``M`` above
      ``omega(beta) * median(sigma)``, ``beta = d / d^(l-1)`` and
      ``omega(beta) ~ 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43``. Its
      model (i.i.d. noise entries, rank much below ``d``) is not quite met:
      the symmetrized noise repeats entries, and r = 5 of d = 12 singular
      values are signal, so the median is taken among the noise's largest.

**Goal** (issue 13), computed per cell: the true rank in at least 95% of the
runs whose margin is at least ``GOAL_MARGIN`` = 3 (cells with no such run:
"n/a"); no run to ``max_time``; no run returning more than r components without
a warning.

Usage::

    python benchmarks/rank.py --blas-threads 1              # 20 seeds, 40 cells
    python benchmarks/rank.py --seeds 3 --blas-threads 1    # a quick look
    python benchmarks/rank.py --orders 3 --noise 0 0.05     # part of the grid
"""

import argparse
import itertools
import os
import shlex
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorly as tl  # noqa: E402

from reliability import Problem, _wrap, git_commit, run_once  # noqa: E402
from run import machine_description, table  # noqa: E402
from tensorly_gfdeflate import (  # noqa: E402
    components_recovered,
    gradient_flow_cp,
    random_symmetric_cp,
)
from tensorly_gfdeflate.targets.symmetric import DenseOperator  # noqa: E402
from tensorly_gfdeflate.models.symmetric import power_iterate  # noqa: E402
from tensorly_gfdeflate.synthetic import random_unit_vectors  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results_rank.txt"
NOISE_LEVELS = (0.0, 0.01, 0.05, 0.2, 0.5)
WEIGHT_SPREADS = {"separated": 0.3, "close": 0.8}
# Per noise level: (|cos| at least, weight relative tolerance) for "recovered".
TOLERANCES = {0.0: (0.99, 0.05), 0.01: (0.99, 0.05), 0.05: (0.98, 0.10), 0.2: (0.9, 0.25),
              0.5: (0.8, 0.5)}
# The goal applies to runs whose smallest weight is this many times |E|_inj.
GOAL_MARGIN = 3.0
GOAL_RANK_FRACTION = 0.95
# Power iterations for the noise's injective norm: starts, iterations, tolerance.
INJECTIVE_STARTS, INJECTIVE_ITERATIONS = 256, 300


def tolerance(noise):
    """The recovery tolerance of a noise level: the listed one, else the next larger level's."""
    larger = [level for level in sorted(TOLERANCES) if level >= noise]
    return TOLERANCES[larger[0] if larger else max(TOLERANCES)]


# --------------------------------------------------------------------------- problems


@lru_cache(maxsize=None)
def unit_noise(dim, order, seed):
    """Seed ``seed``'s symmetrized Gaussian tensor of unit Frobenius norm, and its injective norm."""
    rng = np.random.RandomState(seed + 10_000)
    draw = rng.standard_normal((dim,) * order)
    noise = sum(np.transpose(draw, p) for p in itertools.permutations(range(order)))
    noise /= np.linalg.norm(noise)
    return noise, injective_norm(noise, np.random.RandomState(seed + 20_000))


def injective_norm(tensor, rng):
    """``max |T(v^l)|`` over unit ``v``: the best of many power-iteration restarts."""
    operator = DenseOperator.from_trusted(tl.tensor(tensor))
    starts = random_unit_vectors(operator.dim, INJECTIVE_STARTS, rng, operator.context)
    vectors, _ = power_iterate(operator, starts, INJECTIVE_ITERATIONS, 1e-12)
    return float(np.max(np.abs(tl.to_numpy(operator.evaluate(vectors)))))


@dataclass(frozen=True)
class Cell:
    orthogonal: bool
    order: int
    spread: str
    noise: float

    @property
    def label(self):
        return (f"{'orth' if self.orthogonal else 'non-orth'} l={self.order} "
                f"{self.spread} noise {self.noise:.0%}")


def make_problem(cell, dim, rank, seed):
    """``T0 + E`` with its truth; ``extra`` holds ``E``, its injective norm and the margin."""
    weights = np.linspace(1.0, WEIGHT_SPREADS[cell.spread], rank)
    truth = random_symmetric_cp(dim, rank, cell.order, weights=weights,
                                orthogonal=cell.orthogonal, random_state=seed)
    clean = tl.to_numpy(tl.cp_to_tensor(truth))
    direction, unit_injective = unit_noise(dim, cell.order, seed)
    scale = cell.noise * np.linalg.norm(clean)
    injective = scale * unit_injective
    margin = np.inf if injective == 0 else float(np.min(np.abs(weights))) / injective
    return Problem(clean + scale * direction, truth,
                   {"noise": scale * direction, "injective": injective, "margin": margin})


# --------------------------------------------------------------------------- baselines


def unfolding(tensor):
    """The ``d x d^(l-1)`` unfolding."""
    return np.reshape(tensor, (tensor.shape[0], -1))


def flattening_rank(problem):
    """Singular values of the unfolding above twice the noise unfolding's (an oracle threshold)."""
    matrix = unfolding(problem.data)
    singular = np.linalg.svd(matrix, compute_uv=False)
    numerical = max(matrix.shape) * np.finfo(matrix.dtype).eps * singular[0]
    noise = np.linalg.norm(unfolding(problem.extra["noise"]), 2)
    return int(np.sum(singular > max(2 * noise, numerical)))


def gavish_donoho_omega(beta):
    """Gavish and Donoho's ``omega(beta)`` (unknown noise level), their cubic approximation."""
    return 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43


def gavish_donoho_rank(problem):
    """Singular values of the unfolding above ``omega(beta) * median(sigma)``."""
    matrix = unfolding(problem.data)
    singular = np.linalg.svd(matrix, compute_uv=False)
    beta = min(matrix.shape) / max(matrix.shape)
    return int(np.sum(singular > gavish_donoho_omega(beta) * np.median(singular)))


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    returned: int
    recovered: int
    stop_reason: str
    noise_ratio: float
    smallest_snr: float


def flow(problem, seed):
    return gradient_flow_cp(problem.data, random_state=seed, return_trace=True)


def judge_for(cell, rank):
    cosine, weight_rtol = tolerance(cell.noise)

    def judge(problem, estimate):
        cp, trace = estimate
        returned = len(cp.weights)
        injective = problem.extra["injective"]
        # The flow's noise level is relative to |T|; the truth's is |E|_inj.
        norm = float(np.linalg.norm(problem.data))
        ratio = trace.noise_level * norm / injective if injective > 0 else np.nan
        snr = float(np.min(trace.component_snr)) if len(trace.component_snr) else np.nan
        outcome = Outcome(returned, components_recovered(problem.truth, cp, cosine=cosine,
                                                         weight_rtol=weight_rtol),
                          trace.stop_reason, ratio, snr)
        return returned == rank, outcome, returned

    return judge


def cells(args):
    for orthogonal, order, spread, noise in itertools.product(
            (True, False), args.orders, WEIGHT_SPREADS, args.noise):
        yield Cell(orthogonal, order, spread, noise)


def _fraction(count, total):
    return f"{count}/{total}"


def _median(values, spec=".2f"):
    values = [v for v in values if np.isfinite(v)]
    return format(float(np.median(values)), spec) if values else "-"


def _warning_counts(alarms):
    """``"RuntimeWarning x11, ConvergenceWarning x1"``: each class and how often it came."""
    names = sorted(set(alarms))
    return ", ".join(f"{name} x{alarms.count(name)}" for name in names) or "none"


def run_cell(cell, args):
    """One table row and the cell's goal verdict (None where the rank goal does not apply)."""
    rank = args.rank
    problems = [make_problem(cell, args.dim, rank, seed) for seed in range(args.seeds)]
    judge = judge_for(cell, rank)
    runs = [run_once(flow, problems[seed], seed, judge) for seed in range(args.seeds)]
    outcomes = [r.measure if isinstance(r.measure, Outcome) else None for r in runs]
    margins = np.array([p.extra["margin"] for p in problems])
    count = len(runs)
    right = [r.right for r in runs]
    above = margins >= GOAL_MARGIN
    max_time = sum(1 for o in outcomes if o is not None and o.stop_reason == "max_time")
    silent_more = sum(1 for r, o in zip(runs, outcomes)
                      if o is not None and o.returned > rank and not r.alarms)
    rank_goal = (None if not above.any()
                 else bool(np.mean(np.array(right)[above]) >= GOAL_RANK_FRACTION))
    met = rank_goal is not False and max_time == 0 and silent_more == 0
    verdict = ("yes" if met else "NO") + ("" if rank_goal is not None else " (rank n/a)")
    recovered = sum(1 for o in outcomes if o is not None and o.recovered == rank)
    row = (
        "orth" if cell.orthogonal else "non-orth", cell.order, cell.spread,
        f"{cell.noise:.0%}",
        "inf" if np.isinf(margins).all() else f"{np.median(margins):.1f} ({np.min(margins):.1f})",
        _fraction(sum(right), count),
        _fraction(recovered, count),
        _fraction(sum(1 for r in runs if r.alarms), count),
        _fraction(max_time, count),
        _fraction(silent_more, count),
        float(np.median([r.seconds for r in runs])),
        _median([o.noise_ratio for o in outcomes if o is not None]),
        _median([o.smallest_snr for o in outcomes if o is not None], ".3g"),
        _fraction(sum(flattening_rank(p) == rank for p in problems), count),
        _fraction(sum(gavish_donoho_rank(p) == rank for p in problems), count),
        _fraction(int(above.sum()), count),
        verdict,
    )
    details = [f"    {cell.label}, seed {seed}: returned {o.returned if o else '-'} "
               f"(margin {margins[seed]:.2f}), stop {o.stop_reason if o else '-'}, "
               f"warnings {_warning_counts(r.alarms)}"
               for seed, (r, o) in enumerate(zip(runs, outcomes))
               if not r.right or (o is not None and o.stop_reason == "max_time")]
    return row, met, rank_goal, details, runs, outcomes, above


def section_rank(args):
    rows, details = [], []
    totals = dict(runs=0, right=0, above=0, above_right=0, max_time=0, silent_more=0,
                  goal_cells=0, goal_met=0, failed_cells=[])
    for cell in cells(args):
        row, met, rank_goal, cell_details, runs, outcomes, above = run_cell(cell, args)
        rows.append(row)
        details += cell_details
        totals["runs"] += len(runs)
        totals["right"] += sum(r.right for r in runs)
        totals["above"] += int(above.sum())
        totals["above_right"] += sum(r.right for r, a in zip(runs, above) if a)
        totals["max_time"] += sum(1 for o in outcomes if o and o.stop_reason == "max_time")
        totals["silent_more"] += sum(1 for r, o in zip(runs, outcomes)
                                     if o and o.returned > args.rank and not r.alarms)
        if rank_goal is not None:
            totals["goal_cells"] += 1
        if not met:
            totals["failed_cells"].append(cell.label)
        print(f"  {cell.label} done", file=sys.stderr, flush=True)
    notes = _wrap(
        f"d = {args.dim}, r = {args.rank}; weights linspace(1, 0.3, r) (separated) or "
        "linspace(1, 0.8, r) (close); noise: |E| / |T0|. margin: smallest weight / |E|_inj, "
        "median (min) over seeds. rank: runs returning exactly r components; recovered: all r "
        "recovered to the noise level's tolerance (|cos|, weight): "
        + ", ".join(f"{n:.0%}: {c} / {w:.0%}" for n, (c, w) in TOLERANCES.items())
        + ". warned: runs with a warning or error; max_time: runs that stopped there; more "
        "silent: more than r components returned without a warning. noise est.: median of "
        "the flow's noise_level * |T| / |E|_inj; min SNR: median of the smallest "
        "component_snr. flattening / G-D: the baselines' rank right (see the script's "
        f"docstring). >= {GOAL_MARGIN:g}: runs with margin >= {GOAL_MARGIN:g}, where the rank "
        f"goal applies. goal: true rank in >= {GOAL_RANK_FRACTION:.0%} of those runs, no "
        "max_time, no silent extra component.")
    summary = [
        f"gradient_flow_cp (automatic rank): true rank in {totals['right']} of "
        f"{totals['runs']} runs ({totals['right'] / max(totals['runs'], 1):.1%}); in "
        f"{totals['above_right']} of the {totals['above']} runs with margin >= "
        f"{GOAL_MARGIN:g} ({totals['above_right'] / max(totals['above'], 1):.1%}).",
        f"Runs to max_time: {totals['max_time']}; runs returning more than r components "
        f"without a warning: {totals['silent_more']}.",
        f"Goal met in {len(rows) - len(totals['failed_cells'])} of {len(rows)} cells "
        f"({totals['goal_cells']} with runs where the rank goal applies)"
        + (f"; not met: {'; '.join(totals['failed_cells'])}." if totals["failed_cells"]
           else "."),
    ]
    for name, column in (("flattening (oracle threshold)", -4), ("Gavish-Donoho", -3)):
        right = sum(int(row[column].split("/")[0]) for row in rows)
        summary.append(f"{name}: true rank in {right} of {totals['runs']} runs "
                       f"({right / max(totals['runs'], 1):.1%}).")
    text = table(
        f"Automatic rank over seeds 0..{args.seeds - 1}: gradient_flow_cp(T) without a rank, "
        "and two matrix baselines",
        ["truth", "l", "weights", "noise", "margin", "rank", "recovered", "warned",
         "max_time", "more silent", "median s", "noise est.", "min SNR", "flattening",
         "G-D", f">= {GOAL_MARGIN:g}", "goal"],
        rows,
        notes + "\n" + "\n".join(_wrap(line) for line in summary),
    )
    if details:
        text += "Runs with another rank, or to max_time:\n" + "\n".join(details) + "\n"
    return text


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20,
                        help="seeds 0..N-1 per cell (default 20)")
    parser.add_argument("--dim", type=int, default=12, help="dimension d (default 12)")
    parser.add_argument("--rank", type=int, default=5, help="true rank r (default 5)")
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 4],
                        help="tensor orders (default: 3 4)")
    parser.add_argument("--noise", type=float, nargs="+", default=list(NOISE_LEVELS),
                        help="noise levels |E| / |T0| (default: %(default)s)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads (threadpoolctl); default: leave as is")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"also write the table here (default {DEFAULT_OUTPUT})")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    command = shlex.join(["python", "benchmarks/rank.py", *(argv or sys.argv[1:])])
    parts = [f"command: {command}\nseeds: {args.seeds}; git commit: {git_commit()}\n"
             + machine_description()]
    print(parts[-1], flush=True)
    start = time.perf_counter()
    parts.append(section_rank(args))
    print(parts[-1], flush=True)
    parts.append(f"total {time.perf_counter() - start:.0f} s; load average at end: "
                 "%.2f %.2f %.2f" % os.getloadavg())
    print(parts[-1], flush=True)
    args.output.write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
