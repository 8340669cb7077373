"""Scale-out benchmark (issue 11): MomentDecomposition on a lazily generated Dask array.

The data, ``X = S A^T`` with eight independent non-Gaussian sources ``S``, is
generated chunk by chunk by Dask and never held in memory at once (10^8 x 8
float64 is 6.4 GB). Reported, each in a fresh process so that peak memory is
the fit's own:

- the reference: one plain Dask reduction over the same array,
  ``(X ** 2).sum()``, the cost of producing and reading it once;
- ``MomentDecomposition().fit(X)`` on Dask's threaded scheduler: time, the
  ratio of that time to the reference (goal: <= 4, the fit makes two passes),
  peak resident memory at the end of the fit (goal: <= 2 GB) and the
  recovered sources' smallest |correlation| with the true ones (goal: >=
  0.99), computed afterwards by two more passes that are not timed;
- the same fit on a ``distributed.LocalCluster`` of 2 worker processes (time;
  peak memory of the client process and the largest worker's).

Usage::

    python benchmarks/scale_out.py --blas-threads 1                 # 10^8 rows, several minutes
    python benchmarks/scale_out.py --n-samples 2e6 --blas-threads 1 # a quick check
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run import machine_description, peak_rss_bytes, table  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results_scale_out.txt"
GOALS = {"ratio": 4.0, "peak_bytes": 2 * 1024**3, "correlation": 0.99}


def lazy_sources(n_samples, chunk, seed):
    """Eight independent unit-variance non-Gaussian sources, as a lazy (n, 8) Dask array."""
    import dask.array as da

    rng = da.random.RandomState(seed)
    size, chunks = (n_samples,), (chunk,)
    columns = [
        rng.laplace(size=size, chunks=chunks) / np.sqrt(2.0),
        rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=size, chunks=chunks),
        rng.exponential(size=size, chunks=chunks) - 1.0,
        (rng.gamma(4.0, size=size, chunks=chunks) - 4.0) / 2.0,
        da.sign(rng.uniform(-1.0, 1.0, size=size, chunks=chunks)),
        (rng.beta(2.0, 2.0, size=size, chunks=chunks) - 0.5) * np.sqrt(20.0),
        rng.standard_t(6.0, size=size, chunks=chunks) / np.sqrt(1.5),
        (rng.power(0.5, size=size, chunks=chunks) - 1.0 / 3.0) / np.sqrt(4.0 / 45.0),
    ]
    return da.stack(columns, axis=1).rechunk({1: -1})


def lazy_problem(n_samples, chunk, seed):
    """``(X, S)``: the mixtures and the sources, both lazy."""
    sources = lazy_sources(n_samples, chunk, seed)
    mixing = np.random.RandomState(seed).standard_normal((8, 8))
    return sources @ mixing.T, sources


def smallest_correlation(recovered, sources):
    """Min over true sources of the best |corr| with a recovered one.

    Two passes, each one reduction: the mean first, computed on its own, since
    a lazy mean used again in the same graph makes Dask keep every chunk until
    the mean is known (the whole array in memory).
    """
    import dask.array as da

    k = sources.shape[1]
    joint = da.concatenate([recovered, sources], axis=1)
    mean = joint.mean(axis=0).compute()
    centred = joint - mean
    cov = (centred.T @ centred).compute() / joint.shape[0]
    scale = np.sqrt(np.diag(cov))
    corr = np.abs(cov / np.outer(scale, scale))[:k, k:]
    return float(np.min(np.max(corr, axis=0)))


def _own_peak_bytes():
    """Peak resident memory of the process it runs in (defined here so that the
    workers receive it by value: they cannot import benchmarks/run.py)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def child(task, n_samples, chunk, seed):
    """One measurement in this (fresh) process; prints a JSON line."""
    import dask

    from tensorly_gfdeflate import MomentDecomposition

    X, sources = lazy_problem(n_samples, chunk, seed)
    result = {}
    if task == "reference":
        start = time.perf_counter()
        with dask.config.set(scheduler="threads"):
            (X**2).sum().compute()
        result["seconds"] = time.perf_counter() - start
    elif task == "threads":
        with dask.config.set(scheduler="threads"):
            start = time.perf_counter()
            model = MomentDecomposition(random_state=seed).fit(X)
            result["seconds"] = time.perf_counter() - start
            result["peak_bytes"] = peak_rss_bytes()  # the fit's, before the check below
            result["correlation"] = smallest_correlation(model.transform(X), sources)
        result["sources_found"] = int(model.n_sources_found_)
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            start = time.perf_counter()
            model = MomentDecomposition(random_state=seed).fit(X)
            result["seconds"] = time.perf_counter() - start
            result["peak_bytes"] = peak_rss_bytes()
            result["worker_peak_bytes"] = max(client.run(_own_peak_bytes).values())
            result["correlation"] = smallest_correlation(model.transform(X), sources)
    result.setdefault("peak_bytes", peak_rss_bytes())
    print(json.dumps(result))


def measure(task, args):
    command = [sys.executable, __file__, "--child", task, "--n-samples", str(args.n_samples),
               "--chunk", str(args.chunk), "--seed", str(args.seed)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{task} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args):
    reference = measure("reference", args)
    rows = [("plain reduction (X**2).sum(), threads", f"{reference['seconds']:.1f}", "1",
             f"{reference['peak_bytes'] / 2**30:.2f}", "-", "-", "-")]
    verdicts = []
    for task, label in (("threads", "MomentDecomposition.fit, threads"),
                        ("cluster", "MomentDecomposition.fit, LocalCluster(2 processes)")):
        run = measure(task, args)
        ratio = run["seconds"] / reference["seconds"]
        peak = max(run["peak_bytes"], run.get("worker_peak_bytes", 0))
        rows.append((label, f"{run['seconds']:.1f}", f"{ratio:.2f}",
                     f"{run['peak_bytes'] / 2**30:.2f}",
                     f"{run['worker_peak_bytes'] / 2**30:.2f}" if "worker_peak_bytes" in run
                     else "-", f"{run['correlation']:.4f}",
                     "yes" if (ratio <= GOALS["ratio"] and peak <= GOALS["peak_bytes"]
                               and run["correlation"] >= GOALS["correlation"]) else "no"))
        verdicts.append(rows[-1][-1])
    gigabytes = args.n_samples * 8 * 8 / 1e9
    title = (f"MomentDecomposition on a lazy Dask array of {args.n_samples:.0e} x 8 float64 "
             f"({gigabytes:.1f} GB), chunks of {args.chunk:.0e} rows, seed {args.seed}")
    header = ("run", "seconds", "time / reference", "peak GB (process)", "peak GB (worker)",
              "min |corr|", "goals met")
    note = (f"goals: time / reference <= {GOALS['ratio']:g}, peak <= 2 GB, min |corr| >= "
            f"{GOALS['correlation']}; {verdicts.count('yes')} of {len(verdicts)} fits meet all")
    return table(title, header, rows, note)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=lambda text: int(float(text)), default=10**8)
    parser.add_argument("--chunk", type=lambda text: int(float(text)), default=10**6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, help="OpenBLAS threads (1 on shared machines)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.blas_threads:
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(
            args.blas_threads)
    if args.child:
        child(args.child, args.n_samples, args.chunk, args.seed)
        return
    command = "python benchmarks/scale_out.py " + " ".join(argv or sys.argv[1:])
    text = "\n".join([f"command: {command}", machine_description(), report(args)])
    print(text)
    args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
