"""Command line: ``python -m tensorly_gfdeflate`` / ``gfdeflate``.

``demo`` runs the paper's setting; ``compare`` runs the solvers side by side on
a synthetic problem (symmetric with ``--dim``, general with ``--shape``) or on
a tensor read from a ``.npy`` file. Input errors end
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


def _shape(text):
    try:
        shape = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 20,25,30; got {text!r}") from None
    if len(shape) < 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected at least 3 dimensions >= 1 (a tensor) such as 20,25,30; got {text!r}")
    return shape


def _all_methods():
    from .comparison import GENERAL_METHODS, METHODS

    return list(dict.fromkeys(METHODS + GENERAL_METHODS))


def _method_list(text):
    known = _all_methods()
    methods = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown or text!r}; choose from {','.join(known)}")
    return methods


def build_parser():
    """The argument parser of the ``gfdeflate`` command."""
    from .comparison import GENERAL_METHODS, METHODS

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
        description="Run gradient flow, power deflation and TensorLy's methods on one tensor "
        "(symmetric, or general with --shape or a non-symmetric --tensor, entries possibly "
        "missing) and print time, error and recovery per method and run.",
    )
    problem = compare.add_argument_group(
        "synthetic problem",
        "T = sum_i a_i u_i^(x)order with unit u_i (--dim, --order), or the general "
        "T = sum_i a_i u_1i (x) ... (x) u_Ni (--shape); not with --tensor")
    problem.add_argument("--dim", type=int, help=f"dimension d (default {_DEFAULT_DIM})")
    problem.add_argument("--rank", type=int,
                         help=f"number of components r (default {_DEFAULT_RANK}, or the number "
                         "of --weights); with --tensor, the rank asked of the methods")
    problem.add_argument("--order", type=int, help=f"tensor order (default {_DEFAULT_ORDER})")
    problem.add_argument("--shape", type=_shape, metavar="N1,N2,N3,...",
                         help="a general (non-symmetric) problem of this shape instead")
    problem.add_argument("--weights", type=_float_list, metavar="A1,A2,...",
                         help="the weights a_i (default geometric from 1 to 0.1)")
    problem.add_argument("--orthogonal", action=argparse.BooleanOptionalAction, default=None,
                         help="orthonormal components or random unit vectors (default: "
                         "orthonormal with --dim, random with --shape)")
    problem.add_argument("--noise", type=float,
                         help="add Gaussian noise (symmetrized with --dim) of this Frobenius "
                         "norm relative to |T| (default 0)")
    problem.add_argument("--observed", type=float, metavar="FRACTION",
                         help="general problems: observe this fraction of the entries, drawn "
                         "at random (default 1: all)")
    compare.add_argument("--tensor", metavar="FILE.npy",
                         help="decompose the tensor saved in this file instead (symmetric, or "
                         "general when it is not)")
    compare.add_argument("--mask", metavar="FILE.npy",
                         help="with --tensor: boolean array of its shape, True where observed "
                         "(the general methods complete the rest; the tensor's finite values "
                         "where it is False are held out and scored)")
    compare.add_argument("--kind", choices=("auto", "symmetric", "general"), default="auto",
                         help="which methods run: those for symmetric or for general tensors "
                         "(default auto: symmetric for a symmetric tensor)")
    compare.add_argument("--methods", type=_method_list, default=None,
                         metavar="M1,M2", help=f"methods to run (default {','.join(METHODS)} "
                         f"for a symmetric tensor, {','.join(GENERAL_METHODS)} for a general "
                         "one, without tensorly_power when entries are missing)")
    compare.add_argument("--width", type=int,
                         help="gradient-flow width m (default: gradient_flow_cp's, "
                         "which depends on the rank; see help(gradient_flow_cp), or "
                         "gradient_flow_parafac's for a general tensor)")
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
    """``(shape, rank)`` of the synthetic problem, defaults filled in."""
    if args.shape is not None:
        shape = tuple(args.shape)
    else:
        dim = _DEFAULT_DIM if args.dim is None else args.dim
        shape = (dim,) * (_DEFAULT_ORDER if args.order is None else args.order)
    weights, rank = args.weights, args.rank
    if weights is not None and rank is not None and len(weights) != rank:
        raise ValueError(f"--weights has {len(weights)} values but --rank is {rank}; "
                         "give one weight per component")
    if weights is not None:
        rank = len(weights)
    return shape, _DEFAULT_RANK if rank is None else rank


def _orthogonal(args):
    """Orthonormal components: the flag, else the default of the problem's generator."""
    return args.shape is None if args.orthogonal is None else args.orthogonal


def _synthetic_problem(args):
    """``(tensor, mask, truth, description)`` from the synthetic-problem flags."""
    from .synthetic import random_cp, random_symmetric_cp

    shape, rank = _synthetic_sizes(args)
    weights = args.weights
    if weights is None:  # both generators' spread, so that the order of discovery shows
        weights = np.geomspace(1.0, 0.1, rank) if rank > 1 else np.ones(1)
    orthogonal = _orthogonal(args)
    noise = 0.0 if args.noise is None else args.noise
    rng = np.random.RandomState(args.seed)
    general = args.shape is not None
    if general:
        truth = random_cp(shape, rank, weights=weights, orthogonal=orthogonal, random_state=rng)
    else:
        truth = random_symmetric_cp(shape[0], rank, len(shape), weights=weights,
                                    orthogonal=orthogonal, random_state=rng)
    tensor = truth
    if noise > 0:
        dense = tl.to_numpy(tl.cp_to_tensor(truth))
        draw = (rng.standard_normal(shape) if general
                else _symmetric_noise(shape[0], len(shape), rng))
        dense = dense + noise * np.linalg.norm(dense) * draw / np.linalg.norm(draw)
        tensor = tl.tensor(dense)
    mask = None
    if args.observed is not None and args.observed < 1:
        mask = rng.rand(*shape) < args.observed
        if not mask.any():
            raise ValueError(f"--observed {args.observed:g} drew no entry of the "
                             f"{math.prod(shape)}; raise --observed")
        if tensor is truth:
            tensor = tl.cp_to_tensor(truth)
    weights_text = ", ".join(f"{float(w):.3g}" for w in tl.to_numpy(truth.weights))
    if general:
        size = f"shape {'x'.join(map(str, shape))}, r={rank}"
    else:
        size = f"d={shape[0]}, r={rank}, order {len(shape)}"
    description = (f"synthetic: {size}, "
                   f"{'orthogonal' if orthogonal else 'random unit'} components, "
                   f"weights [{weights_text}], noise {noise:g}, "
                   f"{_observed_text(mask, shape)}seed {args.seed}")
    return tensor, mask, truth, description


def _observed_text(mask, shape):
    if mask is None:
        return ""
    count = int(np.count_nonzero(mask))
    return f"observed {count} of {math.prod(shape)} entries ({count / mask.size:.0%}), "


def _load_npy(path, what):
    """The one array in the ``.npy`` file ``path`` (``what`` names it in errors)."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(np.lib.format.MAGIC_PREFIX))
    except FileNotFoundError:
        raise OSError(f"{what} file not found: {path}") from None
    # numpy reads any other file as a pickle and, with pickles refused, says
    # "contains pickled (object) data", which misleads for a text file.
    if head != np.lib.format.MAGIC_PREFIX and not head.startswith(b"PK"):
        raise ValueError(f"{path} is not a .npy file (no numpy header); write the "
                         f"{what} with numpy: np.save('{what[0].upper()}.npy', array)")
    array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} holds several arrays (.npz); save one array with np.save")
    return array


def _file_problem(args):
    """``(operator, None, None, description)`` for the tensor in ``--tensor`` (and ``--mask``)."""
    from .comparison import target_kind
    from .targets.general import as_general_operator
    from .targets.symmetric import as_operator

    array = _load_npy(args.tensor, "tensor")
    mask = None if args.mask is None else _load_npy(args.mask, "mask")
    name = f"the tensor in {args.tensor}"
    kind = target_kind(array, mask) if args.kind == "auto" else args.kind
    if kind == "symmetric":
        if mask is not None:
            raise ValueError("--mask goes with the general methods: leave out --kind symmetric")
        operator = as_operator(array, name=name)
        return operator, None, None, f"{args.tensor}: d={operator.dim}, order {operator.order}"
    operator = as_general_operator(array, mask=mask, name=name)
    shape = "x".join(map(str, operator.shape))
    observed = ""
    if operator.observed_fraction < 1:
        observed = (f", observed {operator.n_observed} of {math.prod(operator.shape)} entries "
                    f"({operator.observed_fraction:.0%})")
    description = f"{args.tensor}: shape {shape}, general{observed}"
    if mask is not None:
        # The array and its mask, not the operator: the array's own values where the mask
        # is False are the held-out entries that compare scores.
        return array, mask, None, description
    return operator, None, None, description


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
                                      ("--shape", args.shape), ("--weights", args.weights),
                                      ("--noise", args.noise), ("--observed", args.observed),
                                      ("--orthogonal", args.orthogonal)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} (synthetic problem) cannot be combined with "
                         "--tensor")
    if args.rank is None and (args.methods is None
                              or any(m != "gradient_flow" for m in args.methods)):
        raise ValueError("--rank is required with --tensor for the methods other than "
                         "gradient_flow (or run --methods gradient_flow alone, with "
                         "automatic rank)")


def _check_synthetic_flags(args):
    if args.mask is not None:
        raise ValueError("--mask goes with --tensor; for a synthetic problem use --observed")
    if args.shape is not None:
        given = [flag for flag, value in (("--dim", args.dim), ("--order", args.order),
                                          ("--kind symmetric", args.kind == "symmetric" or None))
                 if value is not None]
        if given:
            raise ValueError(f"--shape (general problem) cannot be combined with "
                             f"{', '.join(given)} (symmetric problem); give one or the other")
    if args.observed is not None:
        if not 0 < args.observed <= 1:
            raise ValueError(f"--observed must be in (0, 1], got {args.observed}")
        if args.shape is None and args.kind != "general":
            raise ValueError("--observed hides entries, which only the general methods "
                             "complete: use --shape, or --kind general")
    shape, rank = _synthetic_sizes(args)
    if args.noise or (args.observed is not None and args.observed < 1):
        if math.prod(shape) > _MAX_DENSE_ENTRIES:
            raise ValueError(f"--noise and --observed need the dense tensor, {math.prod(shape)} "
                             "entries is too large; lower the dimensions or drop them")
    if _orthogonal(args) and rank > min(shape):
        where = f"dimension {shape[0]}" if args.shape is None else f"shape {tuple(shape)}"
        raise ValueError(f"{rank} orthogonal components do not fit in {where}: raise the "
                         "dimensions, lower --rank or pass --no-orthogonal")


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
    else:
        _check_synthetic_flags(args)
    for flag, needs in (("--width", "sets the gradient flow's width"),
                        ("--plot", "draws the gradient flow's deflation")):
        if (getattr(args, flag[2:]) is not None and args.methods is not None
                and "gradient_flow" not in args.methods):
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


def _methods(args, tensor, mask):
    """The methods to run: --methods, else compare's default for this target."""
    from .comparison import default_methods, target_kind

    if args.methods is not None:
        return args.methods
    kind = target_kind(tensor, mask) if args.kind == "auto" else args.kind
    partial = mask is not None or getattr(tensor, "observed_fraction", 1.0) < 1.0
    return list(default_methods(kind, partial))


def _compare_with_progress(args, tensor, mask, truth):
    from tqdm import tqdm

    from .comparison import compare

    options = {} if args.width is None else {"gradient_flow": {"width": args.width}}
    methods = _methods(args, tensor, mask)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(total=args.runs * len(methods), unit="run", file=sys.stderr,
              disable=not show_progress) as bar:

        def progress(done, total, label):
            bar.set_postfix_str(label, refresh=False)
            bar.update(done - bar.n)

        return compare(tensor, methods, kind=args.kind, mask=mask, rank=args.rank,
                       truth=truth, n_runs=args.runs, random_state=args.seed,
                       method_options=options, progress=progress)


def _run_compare(args):
    _check_compare_flags(args)
    if args.tensor is not None:
        tensor, mask, truth, description = _file_problem(args)
    else:
        tensor, mask, truth, description = _synthetic_problem(args)
    result = _compare_with_progress(args, tensor, mask, truth)
    # With the JSON on stdout, everything else goes to stderr so that stdout parses.
    stream = sys.stderr if args.json == "-" else sys.stdout

    def out(line):
        print(line, file=stream)

    out(f"Problem: {description}")
    out("")
    out(result.table())
    notes = []
    if any(record.heldout_error is not None for record in result):
        notes.append("rel. error: on the observed entries. held-out: relative error on the "
                     "entries that were not observed, against the truth (or, with --tensor "
                     "and --mask, the tensor's own finite values where the mask is False).")
    if truth is not None:
        cosine = "|<u, v>|" if result.kind == "symmetric" else "prod_k |<u_k, v_k>|"
        notes.append(f"recovered: true components with {cosine} >= 0.99 and weight within 5%. "
                     "order tau: Kendall tau between\nthe order components were found and the "
                     "order of their weights (+1: largest first).")
    if notes:
        out("")
        out("\n".join(notes))
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
