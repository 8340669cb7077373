"""Performance benchmarks of tensorly-gfdeflate, printed as tables.

Every speed is reported next to a reference measured in the same run (numpy's
matrix multiply, TensorLy's own power iteration), because the machine is
shared and absolute times drift. Timings are the best of ``--repeat`` runs.

Sections (issue 4):

1. dense operator throughput against numpy's matrix multiply;
2. time to recover every component of dense orthogonal tensors, against
   TensorLy's ``symmetric_parafac_power_iteration``;
3. scale: a CP target with d = 10,000 and the moments of 10^6 samples, each
   solver in its own process (time, peak memory, components recovered);
4. cost per flow step against width and dimension: the O(operator + m^2 d) law;
5. (only when asked) the sweep behind the flow's default settings.

Usage::

    python benchmarks/run.py --blas-threads 1               # sections 1-4, about 3 minutes
    python benchmarks/run.py --quick --blas-threads 1       # smoke run, about 10 s
    python benchmarks/run.py --sections 5 --blas-threads 1  # the defaults sweep, about 6 minutes
    python benchmarks/run.py --sections 1 4 --repeat 5 --output my_results.txt

On a shared machine pass ``--blas-threads 1``: OpenBLAS's second thread then
waits for a busy core at every small GEMM and runs many times slower.
"""

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorly as tl  # noqa: E402
from tensorly.cp_tensor import CPTensor  # noqa: E402
from tensorly.decomposition import symmetric_parafac_power_iteration  # noqa: E402

from tensorly_gfdeflate import (  # noqa: E402
    SampleMoments,
    components_recovered,
    gradient_flow_cp,
    power_deflation_cp,
    random_symmetric_cp,
    relative_error,
)
from tensorly_gfdeflate.models.symmetric import flow_point  # noqa: E402
from tensorly_gfdeflate.targets.symmetric import CPOperator, DenseOperator  # noqa: E402
from tensorly_gfdeflate.synthetic import random_unit_vectors  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.txt"
# Section 3's limits (issue 4): seconds and bytes of peak resident memory.
SCALE_SECONDS, SCALE_BYTES = 60.0, 2 * 1024**3


# --------------------------------------------------------------------------- helpers


def best_time(function, repeat, budget=20.0):
    """Best wall time of up to ``repeat`` calls (fewer once ``budget`` seconds are spent).

    Returns ``(seconds, result_of_last_call, calls)``.
    """
    times, result = [], None
    while len(times) < repeat and (not times or sum(times) < budget):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result, len(times)


def table(title, header, rows, note=""):
    """A plain-text table: title, aligned columns, optional note."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = [title, line, "  ".join(c.rjust(w) for c, w in zip(cells[0], widths)), line]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells[1:]]
    out.append(line)
    if note:
        out.append(note)
    return "\n".join(out) + "\n"


def _fmt(value):
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2e}"
    return str(value)


def machine_description():
    """CPU model and counts, the BLAS numpy uses (threadpoolctl) and package versions."""
    lines = [f"date (UTC): {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            if line.split(":")[0].strip() in ("Model name", "CPU(s)", "L2 cache", "L3 cache"):
                lines.append("cpu: " + " ".join(line.split()))
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            lines.append(
                f"blas: {pool.get('internal_api')} {pool.get('version')} "
                f"({pool.get('architecture')}), {pool.get('num_threads')} threads, "
                f"{pool.get('user_api')}"
            )
    except ImportError:
        lines.append("blas: threadpoolctl not installed")
    import tensorly

    lines.append(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"tensorly {tensorly.__version__}, backend {tl.get_backend()}"
    )
    lines.append("load average at start (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    return "\n".join(lines) + "\n"


def _quiet(function, *args, **kwargs):
    """Call ``function`` with warnings recorded instead of printed; returns (result, messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, sorted({type(w.message).__name__ for w in caught})


def _symmetric_dense(dim, order, seed):
    cp = random_symmetric_cp(dim, 8, order, orthogonal=False, random_state=seed)
    return tl.cp_to_tensor(cp)


# --------------------------------------------------------------------------- section 1


def section_throughput(quick, repeat):
    """Dense contraction GFLOP/s against the same GEMM and a square GEMM in numpy."""
    square = 1024 if quick else 2048
    A = np.random.RandomState(0).standard_normal((square, square))
    t_square, _, _ = best_time(lambda: A @ A, repeat)
    peak = 2 * square**3 / t_square / 1e9
    cases = [(3, 100, 64), (4, 30, 64)] if quick else [
        (3, 256, 32), (3, 256, 128), (4, 48, 32), (4, 48, 128)]
    rows = []
    for order, dim, width in cases:
        operator = DenseOperator(_symmetric_dense(dim, order, seed=order))
        V = random_unit_vectors(dim, width, np.random.RandomState(1))
        # The contraction's own first GEMM: the Khatri-Rao power of the columns
        # (order q = l // 2) times the (d^q, d^{l-q}) unfolding.
        split = order // 2
        unfolded = np.reshape(operator.tensor, (dim**split, -1))
        power = V.T
        for _ in range(split - 1):
            power = (power[:, :, None] * V.T[:, None, :]).reshape(width, -1)
        flops = 2 * dim**order * width
        t_gemm, _, _ = best_time(lambda: power @ unfolded, repeat)
        t_op, _, _ = best_time(lambda: operator.contract(V), repeat)
        gflops = flops / t_op / 1e9
        rows.append((order, dim, width, f"{dim**order * width:.1e}", t_op * 1e3, gflops,
                     flops / t_gemm / 1e9, t_gemm / t_op, gflops / peak))
    return table(
        f"1. Dense contraction T(v^(l-1), I) for a d x m batch "
        f"(numpy square {square}x{square} matmul: {peak:.1f} GFLOP/s)",
        ["order", "d", "m", "d^l*m", "ms", "GFLOP/s", "GEMM GFLOP/s", "vs GEMM", "vs square"],
        rows,
        "GFLOP/s counts 2 d^l m flops. 'vs square': against the square matmul above (the goal, "
        ">= 0.7); 'vs GEMM': against the contraction's first GEMM alone in numpy, "
        "(v^(x)(l//2))^T times the (d^(l//2), d^(l - l//2)) unfolding (so 1 - 'vs GEMM' is the "
        "cost of the follow-up contractions).",
    )


# --------------------------------------------------------------------------- section 2


def _tensorly_power(tensor, rank, seed):
    """TensorLy's method draws from numpy's global generator: seed it, then put it back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        weights, factor = symmetric_parafac_power_iteration(tensor, rank)
    finally:
        np.random.set_state(state)
    return CPTensor((weights, [factor] * tl.ndim(tensor)))


def section_recovery(quick, repeat):
    """Time to recover every component of dense orthogonal tensors, three solvers."""
    rank = 5
    dims = [20] if quick else [20, 50]
    rows = []
    for order in (3, 4):
        for dim in dims:
            truth = random_symmetric_cp(dim, rank, order, random_state=dim + order)
            tensor = tl.cp_to_tensor(truth)
            solvers = {
                "gradient_flow_cp": lambda: _quiet(gradient_flow_cp, tensor, rank,
                                                   random_state=0)[0],
                "power_deflation_cp": lambda: power_deflation_cp(tensor, rank, random_state=0),
                "tensorly symmetric_parafac_power_iteration": lambda: _tensorly_power(
                    tensor, rank, seed=0),
            }
            timed = {}
            for name, solve in solvers.items():
                seconds, cp, calls = best_time(solve, repeat, budget=10.0)
                timed[name] = (seconds, calls, relative_error(tensor, cp),
                               f"{components_recovered(truth, cp)}/{rank}")
            reference = timed["tensorly symmetric_parafac_power_iteration"][0]
            for name, (seconds, calls, error, recovered) in timed.items():
                rows.append((order, dim, name, seconds, calls, error, recovered,
                             reference / seconds))
    return table(
        f"2. Time to recover all components: dense orthogonal tensors, r = {rank}, "
        "weights 1 .. 0.1 (geometric)",
        ["order", "d", "solver", "seconds", "runs", "rel. error", "recovered", "speed-up"],
        rows,
        "All three get rank=5 and their other defaults; flow and power random_state=0, "
        "TensorLy's method with numpy's global generator seeded 0 (restored after). "
        "speed-up = TensorLy's time / this solver's time. Goals: power >= 10, flow > 1.",
    )


# --------------------------------------------------------------------------- section 3


def skewed_sources_problem(n_samples, dim, rank, seed):
    """Data ``X = S A^T``: independent centred gamma sources of unit variance, orthonormal ``A``.

    The raw third moment of ``X`` is ``sum_i skew_i a_i^(x)3`` up to sampling
    noise; returns ``(SampleMoments(X, 3), truth CPTensor)``.
    """
    rng = np.random.RandomState(seed)
    shapes = np.linspace(1.0, 4.0, rank)
    mixing, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    X = np.empty((n_samples, dim))
    block = 100_000
    for start in range(0, n_samples, block):
        rows = min(block, n_samples - start)
        sources = (rng.gamma(shapes, 1.0, size=(rows, rank)) - shapes) / np.sqrt(shapes)
        X[start:start + rows] = sources @ mixing.T
    skewness = 2.0 / np.sqrt(shapes)
    return SampleMoments(X, 3), CPTensor((skewness, [mixing] * 3))


def scale_problems(quick):
    if quick:
        return {"cp": dict(dim=2000, rank=20), "moments": dict(n=100_000, dim=20, rank=5)}
    return {"cp": dict(dim=10_000, rank=50), "moments": dict(n=1_000_000, dim=50, rank=10)}


def peak_rss_bytes():
    """This process's peak resident memory.

    Linux's ``getrusage`` maximum survives ``exec`` and so includes the parent
    this process was forked from; ``VmHWM`` belongs to the current image only.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _OutOfTime(Exception):
    pass


def scale_child(problem, solver, quick, limit):
    """Runs in its own process: build one scale problem, solve it, print one JSON line."""
    spec = scale_problems(quick)[problem]
    if problem == "cp":
        truth = random_symmetric_cp(spec["dim"], spec["rank"], 4, random_state=0)
        target, cosine, weight_rtol = truth, 0.99, 0.05
    else:
        target, truth = skewed_sources_problem(spec["n"], spec["dim"], spec["rank"], seed=0)
        # Sampling noise of 1/sqrt(n): the population truth is met only to that precision.
        cosine, weight_rtol = 0.99, 0.05
    rank = spec["rank"]

    def alarm(signum, frame):
        raise _OutOfTime

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(limit))
    start = time.perf_counter()
    report = dict(problem=problem, solver=solver)
    try:
        if solver == "flow":
            (cp, trace), _ = _quiet(gradient_flow_cp, target, rank, random_state=0,
                                    return_trace=True)
            report.update(steps=len(trace.times) + trace.refine_steps,
                          stop=trace.stop_reason)
        else:
            cp = power_deflation_cp(target, rank, random_state=0)
        report["seconds"] = time.perf_counter() - start
        signal.alarm(0)
        report["recovered"] = components_recovered(truth, cp, cosine=cosine,
                                                   weight_rtol=weight_rtol)
        report["error"] = relative_error(target, cp)
    except _OutOfTime:
        report["seconds"] = None
    report["rank"] = rank
    report["peak_rss"] = peak_rss_bytes()
    print(json.dumps(report))


def section_scale(quick, repeat):
    """Each (problem, solver) in a fresh process, so that its peak memory is its own."""
    limit = 15 if quick else 90
    spec = scale_problems(quick)
    rows = []
    for problem in ("cp", "moments"):
        for solver in ("flow", "power"):
            command = [sys.executable, __file__, "--scale-child", problem, solver,
                       "--limit", str(limit)] + (["--quick"] if quick else [])
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                rows.append((problem, solver, "failed: " + done.stderr.strip()[-200:]))
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            seconds = r["seconds"]
            ok = (seconds is not None and seconds <= SCALE_SECONDS
                  and r["peak_rss"] <= SCALE_BYTES and r.get("recovered") == r["rank"])
            rows.append((
                problem, solver,
                f"> {limit} (stopped)" if seconds is None else seconds,
                f"{r['peak_rss'] / 2**20:.0f}",
                f"{r['recovered']}/{r['rank']}" if "recovered" in r else "-",
                r.get("error", "-"), r.get("steps", "-"), r.get("stop", "-"),
                "yes" if ok else "no",
            ))
    cp, mo = spec["cp"], spec["moments"]
    return table(
        f"3. Scale: CP target d = {cp['dim']}, r = {cp['rank']}, order 4; SampleMoments of "
        f"n = {mo['n']} samples, d = {mo['dim']}, r = {mo['rank']} skewed sources, order 3",
        ["problem", "solver", "seconds", "peak RSS MiB", "recovered", "rel. error", "steps",
         "stop", "goal met"],
        rows,
        "Each row is one fresh process (peak RSS includes the data: X alone is "
        f"{mo['n'] * mo['dim'] * 8 / 2**20:.0f} MiB). Recovered: |<u, v>| >= 0.99 and weight "
        "within 5% of the population truth. Goal: <= 60 s, <= 2 GiB, all recovered.",
    )


# --------------------------------------------------------------------------- section 4


def section_step_cost(quick, repeat):
    """Seconds per flow step against width m and dimension d on a CP target of rank 10."""
    rank, order = 10, 4
    dims = [1000, 4000] if quick else [1000, 4000, 16000]
    widths = [16, 64] if quick else [16, 64, 256]
    rows, design, measured = [], [], []
    for dim in dims:
        operator = CPOperator(random_symmetric_cp(dim, rank, order, orthogonal=False,
                                                  random_state=0))
        for width in widths:
            W = 0.1 * random_unit_vectors(dim, width, np.random.RandomState(1))
            signs = np.ones(width)
            t_op, _, _ = best_time(lambda: operator.contract(W), repeat)
            t_step, _, _ = best_time(lambda: flow_point(operator, W, signs, 1e-3), repeat)
            model_work = width**2 * dim
            rows.append((dim, width, t_step * 1e3, t_op * 1e3,
                         (t_step - t_op) / model_work * 1e9, t_op / (width * rank * dim) * 1e9))
            design.append((width * rank * dim, model_work, 1.0))
            measured.append(t_step)
    coef, _ = nnls(np.array(design, float), np.array(measured))
    fitted = np.array(design, float) @ coef
    rows = [row + (measured[i] / fitted[i],) for i, row in enumerate(rows)]
    return table(
        f"4. Cost of one flow step (gradient, loss, residual) on a CP target, r = {rank}, "
        f"order {order}",
        ["d", "m", "step ms", "operator ms", "(step-op) ns/(m^2 d)", "op ns/(m r d)",
         "measured/fit"],
        rows,
        f"Fit: step = {coef[0] * 1e9:.3g} ns * m r d + {coef[1] * 1e9:.3g} ns * m^2 d "
        f"+ {coef[2] * 1e3:.3g} ms. A roughly constant (step-op)/(m^2 d) column is the "
        "O(operator + m^2 d) law.",
    )


# --------------------------------------------------------------------------- section 5


SWEEP_CONFIGS = {
    "defaults": {},
    "step_size=0.15": dict(step_size=0.15),
    "step_size=0.5": dict(step_size=0.5),
    "epoch_time=10": dict(epoch_time=10.0),
    "epoch_time=40": dict(epoch_time=40.0),
    "epoch_growth=1.0": dict(epoch_growth=1.0),
    "width=rank": dict(width="rank"),
    "width=3*rank": dict(width="3rank"),
}


def section_sweep(quick, repeat):
    """Recovery count and time over seeds for the defaults and a few alternatives."""
    problems = [(3, 20, 5, True), (4, 20, 5, True), (4, 20, 10, True), (4, 50, 5, True),
                (3, 20, 5, False), (4, 20, 5, False)]
    seeds = range(2 if quick else 5)
    rows = []
    for name, overrides in SWEEP_CONFIGS.items():
        for order, dim, rank, orthogonal in problems:
            counts, times, steps, back_offs, errors = [], [], [], [], []
            for seed in seeds:
                truth = random_symmetric_cp(dim, rank, order, orthogonal=orthogonal,
                                            random_state=100 + seed)
                tensor = tl.cp_to_tensor(truth)
                options = dict(overrides)
                if "width" in options:
                    options["width"] = {"rank": rank, "3rank": 3 * rank}[options["width"]]
                start = time.perf_counter()
                (cp, trace), _ = _quiet(gradient_flow_cp, tensor, rank, random_state=seed,
                                        return_trace=True, **options)
                times.append(time.perf_counter() - start)
                counts.append(components_recovered(truth, cp, weight_rtol=0.02))
                steps.append(len(trace.times) + trace.refine_steps)
                back_offs.append(sum(e.kind == "step_reduced" for e in trace.events))
                errors.append(relative_error(tensor, cp))
            rows.append((name, order, dim, rank, "yes" if orthogonal else "no",
                         ",".join(map(str, counts)),
                         f"{sum(c == rank for c in counts)}/{len(counts)}", max(errors),
                         float(np.median(times)), int(np.median(steps)), sum(back_offs)))
    return table(
        "5. Defaults sweep: dense targets, weights 1 .. 0.1, seeds "
        f"{list(seeds)}",
        ["setting", "order", "d", "r", "orth.", "recovered per seed", "all found",
         "max rel. error", "median s", "median steps", "back-offs"],
        rows,
        "Recovered: |<u, v>| >= 0.99 and weight within 2%. Steps include the refinement; "
        "back-offs: step halvings after a loss rise, summed over seeds.",
    )


SECTIONS = {
    1: section_throughput,
    2: section_recovery,
    3: section_scale,
    4: section_step_cost,
    5: section_sweep,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and fewer repeats: a smoke run under a minute")
    parser.add_argument("--sections", type=int, nargs="+", choices=sorted(SECTIONS),
                        default=[1, 2, 3, 4], help="which tables (default: 1 2 3 4)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timings are the best of this many runs (default 5, quick 2)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"also write the tables here (default {DEFAULT_OUTPUT})")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads (threadpoolctl); default: leave as is")
    parser.add_argument("--scale-child", nargs=2, metavar=("PROBLEM", "SOLVER"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, default=90, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads)
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.blas_threads)  # for section 3's processes
    if args.scale_child:
        scale_child(*args.scale_child, quick=args.quick, limit=args.limit)
        return
    repeat = args.repeat or (2 if args.quick else 5)
    report = io.StringIO()

    def emit(text):
        print(text, flush=True)
        report.write(text + "\n")

    emit(machine_description())
    start = time.perf_counter()
    for number in args.sections:
        emit(SECTIONS[number](args.quick, repeat))
    emit(f"total {time.perf_counter() - start:.0f} s; load average at end: "
         "%.2f %.2f %.2f" % os.getloadavg())
    args.output.write_text(report.getvalue())


if __name__ == "__main__":
    main()
