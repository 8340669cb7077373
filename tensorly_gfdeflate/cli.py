"""Command line: ``python -m tensorly_gfdeflate`` / ``gfdeflate``.

``demo`` runs the paper's setting; ``compare`` runs the solvers side by side on
a synthetic problem or on a tensor read from a ``.npy`` file. Input errors end
the program with one line on stderr and exit status 2; a reader that goes away
(``| head``) ends it quietly with status 1.
"""

import argparse
import importlib.util
import itertools
import json
import math
import os
import sys
import warnings

import numpy as np
import tensorly as tl

__all__ = ["main", "build_parser"]

_PROG = "gfdeflate"
# The synthetic problem's defaults. The flags themselves default to None so that
# giving one with --tensor can be caught.
_DEFAULT_DIM, _DEFAULT_RANK, _DEFAULT_ORDER = 10, 5, 4
# Synthetic problems are built dense when noise is added; refuse larger ones.
_MAX_DENSE_ENTRIES = 10**7


class _UsageError(Exception):
    """A bad command line, reported as one line (argparse would print the usage too)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _float_list(text):
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 1,0.5,0.2; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _method_list(text):
    from .comparison import METHODS

    methods = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown or text!r}; choose from {','.join(METHODS)}")
    return methods


def build_parser():
    """The argument parser of the ``gfdeflate`` command."""
    from .comparison import METHODS

    parser = _Parser(
        prog=_PROG,
        description="Symmetric tensor decomposition: over-parametrized gradient flow "
        "beside tensor power deflation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="the paper's setting T = sum_{i<=5} a_i e_i^(x)4: both solvers side by side")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    compare = commands.add_parser(
        "compare",
        help="run the solvers side by side on a synthetic problem or a .npy tensor",
        description="Run gradient flow, power deflation and TensorLy's power iteration on one "
        "symmetric tensor and print time, error and recovery per method and run.",
    )
    problem = compare.add_argument_group(
        "synthetic problem", "T = sum_i a_i u_i^(x)order with unit u_i (not with --tensor)")
    problem.add_argument("--dim", type=int, help=f"dimension d (default {_DEFAULT_DIM})")
    problem.add_argument("--rank", type=int,
                         help=f"number of components r (default {_DEFAULT_RANK}, or the number "
                         "of --weights); with --tensor, the rank asked of the power methods")
    problem.add_argument("--order", type=int, help=f"tensor order (default {_DEFAULT_ORDER})")
    problem.add_argument("--weights", type=_float_list, metavar="A1,A2,...",
                         help="the weights a_i (default geometric from 1 to 0.1)")
    problem.add_argument("--orthogonal", action=argparse.BooleanOptionalAction, default=None,
                         help="orthonormal components (default) or random unit vectors")
    problem.add_argument("--noise", type=float,
                         help="add symmetric Gaussian noise of this Frobenius norm relative "
                         "to |T| (default 0)")
    compare.add_argument("--tensor", metavar="FILE.npy",
                         help="decompose the symmetric tensor saved in this file instead")
    compare.add_argument("--methods", type=_method_list, default=list(METHODS),
                         metavar="M1,M2", help=f"methods to run (default {','.join(METHODS)})")
    compare.add_argument("--width", type=int,
                         help="gradient-flow width m (default: gradient_flow_cp's, "
                         "which depends on the rank; see help(gradient_flow_cp))")
    compare.add_argument("--runs", type=int, default=1, help="runs per method (default 1)")
    compare.add_argument("--seed", type=int, default=0,
                         help="seed of the problem and the runs (default 0)")
    compare.add_argument("--plot", metavar="FILE",
                         help="write the deflation and discovery figures of run 0 (any "
                         "format matplotlib writes: .png, .pdf, .svg...)")
    compare.add_argument("--json", metavar="FILE",
                         help="write the records as JSON; '-' writes them to stdout and "
                         "the table to stderr")
    compare.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="progress bar on stderr (default: when stderr is a terminal)")
    return parser


def _symmetric_noise(dim, order, rng):
    """A Gaussian tensor averaged over all permutations of its modes, unit Frobenius norm."""
    draw = rng.standard_normal((dim,) * order)
    noise = sum(np.transpose(draw, axes) for axes in itertools.permutations(range(order)))
    return noise / np.linalg.norm(noise)


def _synthetic_sizes(args):
    """``(dim, rank, order)`` of the synthetic problem, defaults filled in."""
    dim = _DEFAULT_DIM if args.dim is None else args.dim
    order = _DEFAULT_ORDER if args.order is None else args.order
    weights, rank = args.weights, args.rank
    if weights is not None and rank is not None and len(weights) != rank:
        raise ValueError(f"--weights has {len(weights)} values but --rank is {rank}; "
                         "give one weight per component")
    if weights is not None:
        rank = len(weights)
    return dim, _DEFAULT_RANK if rank is None else rank, order


def _synthetic_problem(args):
    """``(tensor, truth, description)`` from the synthetic-problem flags."""
    from .synthetic import random_symmetric_cp

    dim, rank, order = _synthetic_sizes(args)
    weights = args.weights
    orthogonal = True if args.orthogonal is None else args.orthogonal
    noise = 0.0 if args.noise is None else args.noise
    rng = np.random.RandomState(args.seed)
    truth = random_symmetric_cp(dim, rank, order, weights=weights, orthogonal=orthogonal,
                                random_state=rng)
    tensor = truth
    if noise > 0:
        if dim**order > _MAX_DENSE_ENTRIES:
            raise ValueError(f"--noise needs the dense tensor, {dim}^{order} entries is too "
                             "large; lower --dim or drop --noise")
        dense = tl.to_numpy(tl.cp_to_tensor(truth))
        dense = dense + noise * np.linalg.norm(dense) * _symmetric_noise(dim, order, rng)
        tensor = tl.tensor(dense)
    weights_text = ", ".join(f"{float(w):.3g}" for w in tl.to_numpy(truth.weights))
    description = (f"synthetic: d={dim}, r={rank}, order {order}, "
                   f"{'orthogonal' if orthogonal else 'random unit'} components, "
                   f"weights [{weights_text}], noise {noise:g}, seed {args.seed}")
    return tensor, truth, description


def _file_problem(args):
    """``(operator, None, description)`` for the tensor in ``--tensor``."""
    from .operators import as_operator

    try:
        with open(args.tensor, "rb") as file:
            head = file.read(len(np.lib.format.MAGIC_PREFIX))
    except FileNotFoundError:
        raise OSError(f"tensor file not found: {args.tensor}") from None
    # numpy reads any other file as a pickle and, with pickles refused, says
    # "contains pickled (object) data", which misleads for a text file.
    if head != np.lib.format.MAGIC_PREFIX and not head.startswith(b"PK"):
        raise ValueError(f"{args.tensor} is not a .npy file (no numpy header); write the "
                         "tensor with numpy: np.save('T.npy', array)")
    array = np.load(args.tensor, allow_pickle=False)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{args.tensor} holds several arrays (.npz); save one array with np.save")
    operator = as_operator(array, name=f"the tensor in {args.tensor}")
    return operator, None, f"{args.tensor}: d={operator.dim}, order {operator.order}"


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path, description, result):
    records = [{key: _json_value(value) for key, value in record.items()}
               for record in result.to_dicts()]
    document = {"problem": description, "records": records}
    if path == "-":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    with open(path, "w") as file:
        json.dump(document, file, indent=2)


def _write_plot(path, result, truth):
    from .plotting import plot_overview

    flow = next(r for r in result if r.method == "gradient_flow")
    power = next((r for r in result if r.method == "power_deflation" and r.run == flow.run), None)
    figure = plot_overview(flow.trace, truth, decomposition=flow.decomposition,
                           power=None if power is None else (power.decomposition, power.trace))
    try:
        figure.savefig(path, dpi=110)
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def _check_tensor_flags(args):
    given = [flag for flag, value in (("--dim", args.dim), ("--order", args.order),
                                      ("--weights", args.weights), ("--noise", args.noise),
                                      ("--orthogonal", args.orthogonal)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} (synthetic problem) cannot be combined with "
                         "--tensor")
    if args.rank is None and any(m != "gradient_flow" for m in args.methods):
        raise ValueError("--rank is required with --tensor for the power methods "
                         "(or run --methods gradient_flow alone, with automatic rank)")


def _check_compare_flags(args):
    """Catch flag mistakes before any work, naming the flag (the library names its arguments)."""
    minimums = (("--dim", args.dim, 1), ("--rank", args.rank, 1), ("--order", args.order, 2),
                ("--width", args.width, 1), ("--runs", args.runs, 1))
    for flag, value, minimum in minimums:
        if value is not None and value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")
    if args.noise is not None and not args.noise >= 0:
        raise ValueError(f"--noise must be >= 0, got {args.noise}")
    if args.tensor is not None:
        _check_tensor_flags(args)
    elif args.orthogonal is not False:
        dim, rank, _ = _synthetic_sizes(args)
        if rank > dim:
            raise ValueError(f"{rank} orthogonal components do not fit in dimension {dim}: "
                             "raise --dim, lower --rank or pass --no-orthogonal")
    for flag, needs in (("--width", "sets the gradient flow's width"),
                        ("--plot", "draws the gradient flow's deflation")):
        if getattr(args, flag[2:]) is not None and "gradient_flow" not in args.methods:
            raise ValueError(f"{flag} {needs}: include gradient_flow in --methods")
    for flag in ("--plot", "--json"):
        path = getattr(args, flag[2:])
        if path not in (None, "-") and not os.path.isdir(os.path.dirname(path) or "."):
            raise OSError(f"{flag}: directory {os.path.dirname(path)!r} does not exist")
    if args.plot is not None:
        _check_plot_format(args.plot)


def _check_plot_format(path):
    """Refuse a file type matplotlib cannot write before the runs, not after them."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'tensorly-gfdeflate[plot]'")
    from matplotlib.backend_bases import FigureCanvasBase

    supported = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    if extension not in supported:
        got = f"'.{extension}' is not a format matplotlib writes" if extension else "no extension"
        raise ValueError(f"--plot {path}: {got}; end the name with one of "
                         f"{', '.join('.' + e for e in supported)}")


def _compare_with_progress(args, tensor, truth):
    from tqdm import tqdm

    from .comparison import compare

    options = {} if args.width is None else {"gradient_flow": {"width": args.width}}
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(total=args.runs * len(args.methods), unit="run", file=sys.stderr,
              disable=not show_progress) as bar:

        def progress(done, total, label):
            bar.set_postfix_str(label, refresh=False)
            bar.update(done - bar.n)

        return compare(tensor, args.methods, rank=args.rank, truth=truth, n_runs=args.runs,
                       random_state=args.seed, method_options=options, progress=progress)


def _run_compare(args):
    _check_compare_flags(args)
    if args.tensor is not None:
        tensor, truth, description = _file_problem(args)
    else:
        tensor, truth, description = _synthetic_problem(args)
    result = _compare_with_progress(args, tensor, truth)
    # With the JSON on stdout, everything else goes to stderr so that stdout parses.
    stream = sys.stderr if args.json == "-" else sys.stdout

    def out(line):
        print(line, file=stream)

    out(f"Problem: {description}")
    out("")
    out(result.table())
    if truth is not None:
        out("")
        out("recovered: true components with |<u, v>| >= 0.99 and weight within 5%. order tau: "
            "Kendall tau between\nthe order components were found and the order of their "
            "weights (+1: largest first).")
    if args.json is not None:
        _write_json(args.json, description, result)
        if args.json != "-":
            out(f"records written to {args.json}")
    if args.plot is not None:
        _write_plot(args.plot, result, truth)
        out(f"figure written to {args.plot}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{_PROG}: warning: {message}", file=sys.stderr)


def main(argv=None):
    """Entry point of the ``gfdeflate`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for a bad command line or bad input (one line on
        stderr), 1 when stdout was closed early (``| head``), 130 when
        interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            _dispatch(args)
        # Flushed here so that a closed pipe raises below, not at interpreter exit.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop without a message, as Python's docs
        # advise ("Note on SIGPIPE"), with stdout on devnull so that the interpreter's
        # own final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (_UsageError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


def _dispatch(args):
    if args.command == "demo":
        from .demo import run_demo

        run_demo(random_state=args.seed)
    else:
        _run_compare(args)


if __name__ == "__main__":
    sys.exit(main())
