"""The paper's claims, measured with the package's defaults (docs/paper.rst).

Ge, Ren, Wang and Zhou (NeurIPS 2021) prove that their modified gradient flow
(``variant="paper"``) on an orthogonally decomposable tensor recovers every
component, discovers them largest first (a deflation), and that a component of
weight ``a`` is discovered after flow time of order ``1 / a``. This script
checks the three claims over a grid of cells, ``--seeds`` seeds per cell:

* truth ``T = sum_i a_i u_i^(x)l``: ``random_symmetric_cp(d, r, l,
  weights=geomspace(1, 0.2, r), orthogonal=True, random_state=s)``, passed as
  the CP tensor (the flow never forms the dense array); dimension d in
  ``--dims`` (10, 20, 40), order l in ``--orders`` (3, 4), number of
  components r in ``--ranks`` (3, 5, 8);
* the flow: ``gradient_flow_cp(T, variant="paper", random_state=s,
  return_trace=True)``, everything else at its default (no rank, so the width
  is the paper variant's default, ``tensorly_gfdeflate.solvers.symmetric_flow.paper_width``).

Per cell the table gives:

* **recovered**: runs in which all r components are recovered
  (``components_recovered``: ``|cos| >= 0.99``, weight within 5%), and the
  components recovered out of all;
* **in order**: runs whose discovery times (``trace.discovery_time`` of the
  returned component matched to each true one, ``match_components``) do not
  decrease as the true weight decreases, and the pairs of components (over all
  runs) discovered in weight order, ties counted as in order;
* **slope, intercept, R^2**: the least-squares line ``t = intercept + slope / a``
  through the points (1 / a_i, discovery time of component i) of every run of
  the cell (a line with an intercept; R^2 is the usual one, about the mean);
* **max s**: the slowest run, in seconds.

The last rows pool the cells of each order, then all cells: the same line
through every point against ``1 / a``, and against ``|T| / a``: the flow runs
on ``T / |T|`` (``|T| = sqrt(sum a_i^2)``), where a component's weight is
``a / |T|``, so that the time scale of a cell grows with ``|T|``. The figure
(``--figure``) plots discovery time against ``1 / a``, one colour per cell,
with each cell's fitted line and R^2 in the legend.

``--compare-general-width`` adds the same table for the general default width
(``default_width(d, None)``: 18, 30 and 60 slots for d = 10, 20, 40), what the
paper variant used before it had its own default.

Usage::

    python benchmarks/paper.py --blas-threads 1 --compare-general-width   # as in the docs
    python benchmarks/paper.py --seeds 1 --dims 10                       # a quick look
"""

import argparse
import itertools
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reliability import _wrap, git_commit  # noqa: E402
from run import machine_description, table  # noqa: E402
from tensorly_gfdeflate import (  # noqa: E402
    components_recovered,
    gradient_flow_cp,
    match_components,
    random_symmetric_cp,
)
from tensorly_gfdeflate.solvers.symmetric_flow import default_width, paper_width  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results_paper.txt"
DEFAULT_FIGURE = ROOT / "docs" / "images" / "paper_discovery.png"
SMALLEST_WEIGHT = 0.2
COSINE = 0.99  # a true component counts as found (for its discovery time) from this alignment


@dataclass
class Run:
    recovered: int
    weights: np.ndarray  # true weights, descending
    times: np.ndarray  # discovery time of each true component (nan if not returned)
    seconds: float
    stop: str
    warned: bool


def weights_for(rank):
    return np.geomspace(1.0, SMALLEST_WEIGHT, rank) if rank > 1 else np.ones(1)


def run_once(dim, order, rank, seed, width=None):
    weights = weights_for(rank)
    truth = random_symmetric_cp(dim, rank, order, weights=weights, orthogonal=True,
                                random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cp, trace = gradient_flow_cp(truth, variant="paper", width=width, random_state=seed,
                                     return_trace=True)
    seconds = time.perf_counter() - start
    index, cosine = match_components(truth, cp)
    times = np.array([trace.discovery_time[j] if j >= 0 and c >= COSINE else np.nan
                      for j, c in zip(index, cosine)])
    warned = any(not issubclass(w.category, DeprecationWarning) for w in caught)
    return Run(components_recovered(truth, cp), weights, times, seconds,
               trace.stop_reason, warned)


def in_order(times):
    """Whether the discovery times do not decrease along the (descending) true weights.

    Components not found (nan) are left out.
    """
    times = times[np.isfinite(times)]
    return bool(np.all(np.diff(times) >= 0))


def ordered_pairs(times):
    """(pairs discovered in weight order, pairs), ties counted as in order; found ones only."""
    times = times[np.isfinite(times)]
    good = total = 0
    for i, j in itertools.combinations(range(len(times)), 2):
        total += 1
        good += times[i] <= times[j]
    return good, total


def fit_line(x, y):
    """Least squares ``y = intercept + slope * x``: (slope, intercept, R^2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    design = np.column_stack([np.ones_like(x), x])
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / total if total > 0 else float("nan")
    return float(slope), float(intercept), float(r2)


def points(runs, flow_units=False):
    """(1/a, discovery time) of every component of ``runs``; ``flow_units``: |T|/a.

    The flow works on ``T / |T|``, where the weight is ``a / |T|`` (``|T|`` =
    ``sqrt(sum a_i^2)`` for orthogonal components).
    """
    x = np.concatenate([(np.linalg.norm(r.weights) if flow_units else 1.0) / r.weights
                        for r in runs])
    y = np.concatenate([r.times for r in runs])
    return x, y


def cell_row(label, runs, rank):
    full = sum(r.recovered == rank for r in runs)
    found = sum(r.recovered for r in runs)
    ordered = sum(in_order(r.times) for r in runs)
    pairs = np.sum([ordered_pairs(r.times) for r in runs], axis=0)
    slope, intercept, r2 = fit_line(*points(runs))
    return [*label, f"{full}/{len(runs)}", f"{found}/{rank * len(runs)}",
            f"{ordered}/{len(runs)}", f"{pairs[0]}/{pairs[1]}", slope, intercept, f"{r2:.3f}",
            f"{max(r.seconds for r in runs):.2f}",
            sum(r.warned for r in runs)]


def measure(args, width_rule=None):
    results = {}
    for dim, order, rank in itertools.product(args.dims, args.orders, args.ranks):
        width = None if width_rule is None else width_rule(dim, order)
        results[dim, order, rank] = [run_once(dim, order, rank, seed, width)
                                     for seed in range(args.seeds)]
        print(f"  d={dim} l={order} r={rank} done", file=sys.stderr, flush=True)
    return results


def report(results, args, width_rule, title=None):
    header = ["d", "l", "r", "width", "all found", "found", "in order", "pairs in order",
              "slope", "intercept", "R^2", "max s", "warned"]
    rows = []
    for (dim, order, rank), runs in results.items():
        row = cell_row((dim, order, rank), runs, rank)
        rows.append(row[:3] + [width_rule(dim, order)] + row[3:])
    pooled = []
    for order in [*args.orders, None]:
        runs = [(r, k) for (d, o, k), rs in results.items() if order in (None, o) for r in rs]
        full = sum(r.recovered == k for r, k in runs)
        found = sum(r.recovered for r, _ in runs)
        ordered = sum(in_order(r.times) for r, _ in runs)
        pairs = np.sum([ordered_pairs(r.times) for r, _ in runs], axis=0)
        base = [f"{full}/{len(runs)}", f"{found}/{sum(k for _, k in runs)}",
                f"{ordered}/{len(runs)}", f"{pairs[0]}/{pairs[1]}"]
        label = "all" if order is None else order
        for name, unit in (("pooled, 1/a", False), ("pooled, |T|/a", True)):
            slope, intercept, r2 = fit_line(*points([r for r, _ in runs], unit))
            pooled.append([name, label, "all", "-", *base, slope, intercept, f"{r2:.3f}",
                           "-", "-"])
    note = ("width: the flow's width. all found: runs with "
            "every component recovered (|cos| >= 0.99, weight within 5%); found: components "
            "recovered of all. in order: runs whose discovery times do not decrease with the "
            "weight; pairs in order: pairs of components discovered in weight order (ties in "
            "order). slope, intercept, R^2: least-squares line t = intercept + slope / a "
            "through every (1/a, discovery time) point of the row (R^2 about the mean); pooled, "
            "|T|/a: the same through (|T|/a, time), |T| = sqrt(sum a_i^2), the weight the flow "
            "sees on the normalized T/|T| being a/|T|. "
            "warned: runs with a warning. Weights geomspace(1, 0.2, r), orthogonal components.")
    title = title or ("Discovery by the paper's flow (variant='paper', every setting at its "
                      "default; width: paper_width(d, l, None))")
    return table(f"{title}, {args.seeds} seeds per cell", header, rows + pooled, _wrap(note))


def draw(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orders = sorted({o for _, o, _ in results})
    fig, axes = plt.subplots(1, len(orders), figsize=(5.2 * len(orders), 4.6),
                             layout="constrained", squeeze=False)
    for ax, order in zip(axes[0], orders):
        cells = [key for key in results if key[1] == order]
        colours = plt.cm.viridis(np.linspace(0, 0.92, len(cells)))
        for colour, key in zip(colours, cells):
            x, y = points(results[key])
            slope, intercept, r2 = fit_line(x, y)
            ax.scatter(x, y, s=14, color=colour, alpha=0.75)
            grid = np.linspace(1.0, 1.0 / SMALLEST_WEIGHT, 20)
            ax.plot(grid, intercept + slope * grid, color=colour, lw=1,
                    label=f"d={key[0]}, r={key[2]}: R$^2$={r2:.2f}")
        x, y = points([r for key in cells for r in results[key]])
        slope, intercept, r2 = fit_line(x, y)
        ax.plot(grid, intercept + slope * grid, color="black", lw=1.2, ls="--",
                label=f"all cells of order {order}: R$^2$={r2:.2f}")
        ax.set_xlabel("1 / a  (a: the component's weight)")
        ax.set_ylabel("discovery time (flow time)")
        ax.set_title(f"order {order}: discovery time against 1/a", fontsize=10)
        ax.legend(fontsize=7, ncol=1, loc="upper left", frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="seeds 0..N-1 per cell (default 6)")
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--ranks", type=int, nargs="+", default=[3, 5, 8])
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads (threadpoolctl)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"also write the table here (default {DEFAULT_OUTPUT})")
    parser.add_argument("--compare-general-width", action="store_true",
                        help="also run the grid with the general default width, "
                        "default_width(d, None) (what variant='paper' used before)")
    parser.add_argument("--figure", type=Path, default=DEFAULT_FIGURE,
                        help=f"draw the figure here (default {DEFAULT_FIGURE})")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
    command = shlex.join(["python", "benchmarks/paper.py", *(argv or sys.argv[1:])])
    parts = [f"command: {command}\nseeds: {args.seeds}; git commit: {git_commit()}\n"
             + machine_description()]
    print(parts[-1], flush=True)
    start = time.perf_counter()
    results = measure(args)
    parts.append(report(results, args, lambda d, o: paper_width(d, o, None)))
    print(parts[-1], flush=True)
    draw(results, args.figure)
    if args.compare_general_width:
        def general(dim, order):
            return default_width(dim, None)

        parts.append(report(measure(args, general), args, general,
                            "For comparison: the same runs with width=default_width(d, None), "
                            "the general default (the paper variant's before)"))
        print(parts[-1], flush=True)
    figure = args.figure.resolve()
    shown = figure.relative_to(ROOT) if figure.is_relative_to(ROOT) else figure
    parts.append(f"figure: {shown}\n"
                 f"total {time.perf_counter() - start:.0f} s; load average at end: "
                 "%.2f %.2f %.2f" % os.getloadavg())
    print(parts[-1], flush=True)
    args.output.write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
