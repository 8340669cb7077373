"""Side-by-side runs of the solvers on one target: time, error, recovery, order of discovery.

One harness for both kinds of target. A **symmetric** target (dense symmetric
array, symmetric CP tensor, SampleMoments) runs ``"gradient_flow"``
(:func:`gradient_flow_cp`), ``"power_deflation"`` (:func:`power_deflation_cp`)
and ``"tensorly_power"``, TensorLy's ``symmetric_parafac_power_iteration``. A
**general** target (any dense array of order >= 3, with an optional mask; a
general CP tensor; ObservedEntries) runs ``"gradient_flow"``
(:func:`gradient_flow_parafac`), ``"power_deflation"``
(:func:`power_deflation_parafac`), ``"tensorly_parafac"`` (TensorLy's
``parafac``, with the mask when entries are missing) and ``"tensorly_power"``
(TensorLy's ``parafac_power_iteration``, full tensors only). TensorLy's
methods are kept as external references.
"""

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import numpy as np
import tensorly as tl
from scipy.stats import kendalltau
from tensorly.cp_tensor import CPTensor

from ._checks import check_choice, check_int, check_random_state, is_cp_tensor
from .solvers.symmetric_flow import gradient_flow_cp
from .solvers.general_flow import gradient_flow_parafac
from .solvers.general_power import power_deflation_parafac
from .targets.general import GeneralCPOperator, GeneralOperator, as_general_operator
from .check.measures import _is_symmetric, components_recovered, match_components, relative_error
from .targets.symmetric import CPOperator, DenseOperator, SymmetricOperator, as_operator
from .solvers.power import power_deflation_cp

__all__ = ["METHODS", "GENERAL_METHODS", "KINDS", "ComparisonRecord", "Comparison", "compare",
           "order_agreement"]

# The methods of each kind of target, in the order they run by default.
METHODS = ("gradient_flow", "power_deflation", "tensorly_power")
GENERAL_METHODS = ("gradient_flow", "power_deflation", "tensorly_parafac", "tensorly_power")
KINDS = ("auto", "symmetric", "general")
# Methods that take no options through method_options (compare sets all they have).
_FIXED = ("tensorly_power",)
# Methods that find components one at a time, so that their order can be scored.
_SEQUENTIAL = ("gradient_flow", "power_deflation", "tensorly_power")

# A found component counts for the order agreement once it points along its
# true component as closely as components_recovered asks.
_ORDER_COSINE = 0.99
# TensorLy's methods and the held-out error work on dense arrays; none larger than this.
_MAX_DENSE_ENTRIES = 10**7


@dataclass(frozen=True)
class ComparisonRecord:
    """One run of one method.

    Attributes
    ----------
    method : str
        ``"gradient_flow"``, ``"power_deflation"``, ``"tensorly_parafac"`` or
        ``"tensorly_power"``.
    run : int
        Run number, from 0; every method of a run gets the same seed.
    seconds : float
        Wall-clock time of the call.
    relative_error : float
        ``|T_hat - T| / |T|``; on the observed entries only when entries are
        missing (a mask or ObservedEntries).
    n_components : int
        Number of components returned.
    recovered : int or None
        True components recovered (``|<u, v>| >= 0.99`` for a symmetric
        target, the product of the per-mode ``|<u_k, v_k>|`` for a general
        one; weight within 5%); None without a truth.
    order_tau : float or None
        Kendall tau between the order in which the method found the recovered
        directions and the order of their true weights, largest first: 1 when
        the larger weights were all found first, -1 for the reverse, NaN when
        fewer than two directions were found. None without a truth, and for
        ``"tensorly_parafac"``, which fits all components at once.
    converged : bool or None
        The method's own verdict on its result (``trace.converged``: the
        residual holds nothing above the noise floor); None for TensorLy's
        methods, which do not check. When False the method has also warned.
    heldout_error : float or None
        ``|P(T_hat - T*)| / |P(T*)|`` over the entries that were not observed,
        ``T*`` the truth, or without a truth a dense tensor's own finite
        values where the mask is False (the held-out entries): how well the
        method completed the tensor. None when every entry was observed,
        when there is nothing to score them against, or for a tensor of more
        than 1e7 entries.
    decomposition : CPTensor
        What the method returned (not shown in tables).
    trace : FlowTrace, PowerTrace or None
        The method's trace; None for TensorLy's methods (not shown in tables).
    """

    method: str
    run: int
    seconds: float
    relative_error: float
    n_components: int
    recovered: int | None = None
    order_tau: float | None = None
    converged: bool | None = None
    heldout_error: float | None = None
    decomposition: CPTensor | None = field(default=None, repr=False, compare=False)
    trace: object = field(default=None, repr=False, compare=False)

    def to_dict(self):
        """The table fields as plain Python values (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}


_COLUMNS = (
    ("method", "method", "{}"),
    ("run", "run", "{}"),
    ("seconds", "seconds", "{:.3f}"),
    ("relative_error", "rel. error", "{:.2e}"),
    ("heldout_error", "held-out", "{:.2e}"),
    ("n_components", "components", "{}"),
    ("recovered", "recovered", "{}"),
    ("order_tau", "order tau", "{:+.2f}"),
    ("converged", "converged", "{}"),
)


class Comparison(list):
    """The records of :func:`compare`, in run order; prints as a table.

    A plain list of :class:`ComparisonRecord` with :meth:`to_frame` (pandas)
    and :meth:`table` (plain text, what ``print`` shows).

    Parameters
    ----------
    records : iterable of ComparisonRecord
        The records.
    true_rank : int, optional
        Rank of the truth the records were scored against (shown as
        ``recovered/true_rank`` in the table).
    kind : {"symmetric", "general"}, optional
        Which methods ran: those for symmetric or for general targets.
    """

    def __init__(self, records=(), *, true_rank=None, kind=None):
        super().__init__(records)
        self.true_rank = true_rank
        self.kind = kind

    def to_dicts(self):
        """The records as a list of dicts (JSON-ready; no decompositions or traces)."""
        return [record.to_dict() for record in self]

    def to_frame(self):
        """The records as a :class:`pandas.DataFrame`, one row per method and run.

        Raises
        ------
        ImportError
            When pandas is not installed; ``print(comparison)`` shows the same
            numbers as a plain-text table.
        """
        try:
            import pandas
        except ImportError as exc:
            raise ImportError(
                "Comparison.to_frame needs pandas: pip install 'tensorly-gfdeflate[pandas]' "
                "(or print the comparison for a plain-text table)."
            ) from exc
        return pandas.DataFrame(self.to_dicts(), columns=[name for name, _, _ in _COLUMNS])

    def table(self):
        """A plain-text table, one line per record; ``-`` where a value does not apply.

        Columns that apply to no record (recovery without a truth) are left out.
        """
        columns = [(name, title, fmt) for name, title, fmt in _COLUMNS
                   if any(getattr(record, name) is not None for record in self)]
        rows = [[title for _, title, _ in columns]]
        for record in self:
            row = []
            for name, _, fmt in columns:
                value = getattr(record, name)
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    row.append("-")
                elif name == "recovered":
                    row.append(f"{value}/{self.true_rank}")
                else:
                    row.append(fmt.format(value))
            rows.append(row)
        widths = [max(len(row[k]) for row in rows) for k in range(len(columns))]
        lines = [
            "  ".join(cell.ljust(w) if k == 0 else cell.rjust(w)
                      for k, (cell, w) in enumerate(zip(row, widths)))
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def __str__(self):
        return self.table()


@dataclass(frozen=True)
class _Problem:
    """The target as the methods of its kind see it.

    ``observed`` is the numpy boolean array of the observed entries when some
    are missing (a mask or ObservedEntries) and the tensor has at most 1e7
    entries, else None.
    """

    kind: str
    operator: object
    observed: np.ndarray | None = None

    @property
    def partial(self):
        """Whether some entries are missing."""
        return self.kind == "general" and self.operator.observed_fraction < 1.0

    @property
    def n_entries(self):
        if self.kind == "general":
            return math.prod(self.operator.shape)
        return self.operator.dim**self.operator.order

    def dense(self):
        """The dense array (zero where unobserved), for TensorLy's methods."""
        return self.operator.to_dense()


def _is_symmetric_array(tensor):
    # The symmetric operator's own check (same tolerance) decides. Any other
    # defect of the array is reported by the general operator, in its words.
    try:
        DenseOperator(tensor)
    except ValueError:
        return False
    return True


def target_kind(tensor, mask=None):
    """``"general"`` or ``"symmetric"``: the methods ``compare(tensor, kind="auto")`` runs.

    General: a mask, an ObservedEntries or other general operator, a CP tensor
    whose factors differ, a dense array of order >= 3 that is not cubical or
    not symmetric (to the symmetric solvers' tolerance). Symmetric: the rest.
    """
    if mask is not None or isinstance(tensor, GeneralOperator):
        return "general"
    if isinstance(tensor, SymmetricOperator):
        return "symmetric"
    if is_cp_tensor(tensor):
        return "symmetric" if _is_symmetric(tensor[1]) else "general"
    if tensor is None:
        return "symmetric"  # as_operator names what it takes
    shape = tl.shape(tensor) if tl.is_tensor(tensor) else np.shape(tensor)
    if len(shape) >= 3 and (len(set(shape)) != 1 or not _is_symmetric_array(tensor)):
        return "general"
    return "symmetric"


def _problem(tensor, kind, mask):
    kind = check_choice("kind", kind, KINDS)
    if kind == "auto":
        kind = target_kind(tensor, mask)
    if kind == "symmetric":
        if mask is not None:
            raise ValueError("mask is for general targets (the symmetric solvers see every "
                             "entry): pass kind='general' or leave the mask out.")
        return _Problem(kind, as_operator(tensor), None)
    operator = as_general_operator(tensor, mask=mask)
    observed = None
    if operator.observed_fraction < 1.0 and math.prod(operator.shape) <= _MAX_DENSE_ENTRIES:
        observed = np.zeros(operator.shape, dtype=bool)
        observed[tuple(operator.observed_indices().T)] = True
    return _Problem(kind, operator, observed)


def default_methods(kind, partial=False):
    """The methods :func:`compare` runs by default on a target of this kind.

    Parameters
    ----------
    kind : {"symmetric", "general"}
    partial : bool, default=False
        Whether entries are missing: "tensorly_power" takes no mask and is left out.
    """
    allowed = METHODS if check_choice("kind", kind, KINDS[1:]) == "symmetric" else GENERAL_METHODS
    return tuple(m for m in allowed if not (m == "tensorly_power" and partial))


def _check_methods(methods, problem):
    allowed = METHODS if problem.kind == "symmetric" else GENERAL_METHODS
    if methods is None:
        methods = default_methods(problem.kind, problem.partial)
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(methods)
    if not methods:
        raise ValueError(f"methods is empty; pass some of {allowed}.")
    for method in methods:
        if method == "tensorly_parafac" and problem.kind == "symmetric":
            raise ValueError("methods: 'tensorly_parafac' decomposes general tensors; pass "
                             "kind='general' to run the general methods on a symmetric tensor.")
        check_choice("methods", method, allowed)
    if "tensorly_power" in methods and problem.partial:
        raise ValueError(
            "methods: 'tensorly_power' (TensorLy's parafac_power_iteration) takes no mask and "
            "would decompose the unobserved entries as zeros; leave it out when entries are "
            "missing (the default methods do)."
        )
    dense = [m for m in methods if m.startswith("tensorly_")]
    if dense and problem.n_entries > _MAX_DENSE_ENTRIES:
        raise ValueError(
            f"method {dense[0]!r} needs the dense tensor ({problem.n_entries:.2e} entries, "
            f"more than {_MAX_DENSE_ENTRIES:.0e}); leave it out of methods for a target "
            "this large."
        )
    return methods


@contextmanager
def _seeded_global_state(seed):
    """numpy's global random state seeded for the block, then restored (not thread-safe).

    TensorLy's power iterations draw from it and take no ``random_state``: the
    caller's random stream is left as it was.
    """
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        yield
    finally:
        np.random.set_state(saved)


def _tensorly_power(problem, rank, seed):
    """TensorLy's (symmetric_)parafac_power_iteration on the dense tensor, seeded."""
    from tensorly.decomposition import parafac_power_iteration, symmetric_parafac_power_iteration

    dense = problem.dense()
    with _seeded_global_state(seed):
        if problem.kind == "symmetric":
            weights, factor = symmetric_parafac_power_iteration(dense, rank)
            factors = [factor] * problem.operator.order
        else:
            weights, factors = parafac_power_iteration(dense, rank)
    return CPTensor((weights, list(factors))), None


def _tensorly_parafac(problem, rank, seed, options):
    """TensorLy's parafac (alternating least squares) with the mask, as unit columns and weights."""
    from tensorly.decomposition import parafac

    mask = None
    if problem.partial:
        context = problem.operator.context
        mask = tl.tensor(problem.observed, **({"device": context["device"]}
                                              if "device" in context else {}))
    cp = parafac(problem.dense(), rank, mask=mask, random_state=seed, **options)
    return tl.cp_normalize(cp), None


def _run_method(method, problem, rank, seed, options):
    if method in ("gradient_flow", "power_deflation"):
        # Looked up at each call, so that a solver patched in this module is the one run.
        solver = {
            ("symmetric", "gradient_flow"): gradient_flow_cp,
            ("symmetric", "power_deflation"): power_deflation_cp,
            ("general", "gradient_flow"): gradient_flow_parafac,
            ("general", "power_deflation"): power_deflation_parafac,
        }[problem.kind, method]
        return solver(problem.operator, rank, random_state=seed, return_trace=True, **options)
    if method == "tensorly_parafac":
        return _tensorly_parafac(problem, rank, seed, options)
    return _tensorly_power(problem, rank, seed)


def _finding_order(method, decomposition, trace):
    """For each returned component, when it was found (smaller is earlier); None if not in turn."""
    if method == "gradient_flow":
        return np.asarray(trace.discovery_time, dtype=float)
    if method == "power_deflation":
        return np.asarray(trace.extraction_index, dtype=float)
    if method in _SEQUENTIAL:
        return np.arange(tl.shape(decomposition.weights)[0], dtype=float)
    return None


def order_agreement(truth, decomposition, found_at):
    """Kendall tau between the order the components were found in and the order of the true weights.

    Only true components matched (by :func:`match_components`) with
    ``|cosine| >= 0.99`` and a known finding time take part.

    Parameters
    ----------
    truth : CPTensor
        The true decomposition.
    decomposition : CPTensor
        The estimate.
    found_at : array of shape (n_components,)
        When each estimated component was found (flow time, extraction step...).

    Returns
    -------
    float
        In [-1, 1]; 1 when larger true weights were always found first. NaN when
        fewer than two components take part or all were found at once.
    """
    index, cosine = match_components(truth, decomposition)
    true_weights = np.abs(np.asarray(tl.to_numpy(truth[0]), dtype=float))
    taking_part = [i for i, j in enumerate(index)
                   if j >= 0 and cosine[i] >= _ORDER_COSINE and np.isfinite(found_at[j])]
    if len(taking_part) < 2:
        return float("nan")
    when = found_at[index[taking_part]]
    if np.ptp(when) == 0:
        return float("nan")
    # Largest weight first: rank by -|a_i| so that agreement gives tau = +1.
    tau = kendalltau(when, -true_weights[taking_part]).statistic
    # kendalltau divides by a square root: a perfect agreement can come out as
    # 1 - 2e-16. Rounding gives the exact 1 (or -1) that the counts mean.
    return float(np.round(tau, 12))


def _check_options(method_options, methods):
    method_options = dict(method_options or {})
    configurable = [m for m in methods if m not in _FIXED]
    for method, options in method_options.items():
        if method not in configurable:
            raise ValueError(
                f"method_options has an entry for {method!r}, which is not one of the "
                f"configurable methods being run ({configurable})."
            )
        if not isinstance(options, dict):
            raise TypeError(
                f"method_options[{method!r}] must be a dict of keyword arguments, "
                f"got {type(options).__name__}."
            )
        fixed = sorted({"rank", "random_state", "return_trace", "mask"} & set(options))
        if fixed:
            raise ValueError(f"method_options[{method!r}] must not set {fixed}: compare sets "
                             "them (pass rank= and random_state= to compare).")
    return method_options


def _resolve_rank(rank, truth, methods):
    if rank is not None:
        return check_int("rank", rank, 1)
    if truth is not None:
        return tl.shape(truth[0])[0]
    if any(m != "gradient_flow" for m in methods):
        raise ValueError(
            "rank is None and no truth is given, but the other methods need a rank: "
            "pass rank= (gradient_flow alone can run with rank=None)."
        )
    return None


def _check_truth(truth, problem):
    """The truth as a CPTensor of the target's kind and shape."""
    operator = problem.operator
    if problem.kind == "symmetric":
        truth_operator = as_operator(truth, name="truth")
        if not isinstance(truth_operator, CPOperator):
            raise TypeError(
                "truth must be the known decomposition as a symmetric CPTensor, "
                f"got {type(truth).__name__}."
            )
        if (truth_operator.dim, truth_operator.order) != (operator.dim, operator.order):
            raise ValueError(
                f"truth has dimension {truth_operator.dim} and order {truth_operator.order}, "
                f"the tensor {operator.dim} and {operator.order}: pass the truth of this tensor."
            )
        return CPTensor((truth_operator.weights, [truth_operator.factor] * operator.order))
    if not (isinstance(truth, CPTensor) or (isinstance(truth, tuple) and len(truth) == 2)):
        raise TypeError(f"truth must be the known decomposition as a CPTensor, "
                        f"got {type(truth).__name__}.")
    truth_operator = GeneralCPOperator(truth, name="truth")
    if truth_operator.shape != operator.shape:
        raise ValueError(f"truth has shape {truth_operator.shape}, the tensor "
                         f"{operator.shape}: pass the truth of this tensor.")
    return CPTensor((truth_operator.weights, list(truth_operator.factors)))


def _heldout_target(truth, problem, tensor):
    """What the unobserved entries are scored against, or None where not measured.

    The dense truth there; without a truth, a dense ``tensor``'s own finite
    values where the mask is False (a tensor given whole, with the entries to
    fit marked: its other entries are held out).
    """
    if problem.observed is None:
        return None
    if truth is not None:
        return as_general_operator(tl.cp_to_tensor(truth), mask=~problem.observed, name="truth")
    if not (tl.is_tensor(tensor) or isinstance(tensor, np.ndarray)):
        return None
    values = np.asarray(tl.to_numpy(tensor), dtype=float)
    held = ~problem.observed & np.isfinite(values)
    if not held.any():
        return None
    return as_general_operator(tl.tensor(np.where(held, values, 0.0), **tl.context(tensor)),
                               mask=held, name="tensor")


def compare(tensor, methods=None, *, kind="auto", mask=None, rank=None, truth=None, n_runs=1,
            random_state=None, method_options=None, progress=None):
    """Run several decomposition methods on one target, ``n_runs`` times each.

    Parameters
    ----------
    tensor : dense array, CPTensor, SampleMoments or ObservedEntries
        The target. A symmetric one (dense symmetric array, symmetric CP
        tensor, SampleMoments) runs the symmetric methods; any other (a
        non-cubical or non-symmetric dense array of order >= 3, a general CP
        tensor, ObservedEntries, or any target with a ``mask``) the general
        ones. ``kind`` overrides the choice.
    methods : sequence of str, optional
        Which methods to run, in this order within each run. Default:
        ``METHODS`` = ("gradient_flow", "power_deflation", "tensorly_power")
        for a symmetric target, ``GENERAL_METHODS`` = ("gradient_flow",
        "power_deflation", "tensorly_parafac", "tensorly_power") for a general
        one, without "tensorly_power" when entries are missing (it takes no
        mask, and asking for it then is an error). TensorLy's methods need the
        dense tensor: structured targets are densified for them, up to 1e7
        entries.
    kind : {"auto", "symmetric", "general"}, default="auto"
        Which solvers to run: "general" runs :func:`gradient_flow_parafac`,
        :func:`power_deflation_parafac` and TensorLy's ``parafac`` even on a
        symmetric tensor.
    mask : array of bool, optional
        For a dense ``tensor``: True where observed (general methods only).
    rank : int >= 1, optional
        Number of components asked of every method. Default: the truth's rank;
        without a truth only ``"gradient_flow"`` may run (automatic rank).
    truth : CPTensor, optional
        The known decomposition; adds ``recovered`` and ``order_tau``, and
        ``heldout_error`` when entries are missing. Without it, a dense
        ``tensor`` with a ``mask`` is scored on its own finite values where
        the mask is False (``heldout_error``).
    n_runs : int >= 1, default=1
        Runs per method, each with a fresh seed drawn from ``random_state``.
    random_state : None, int or numpy.random.RandomState
        Seeds the runs; the same value gives the same records (apart from
        ``seconds``). numpy's global random state is left as it was.
    method_options : dict, optional
        Extra keyword arguments per method, e.g.
        ``{"gradient_flow": {"width": 20}, "tensorly_parafac": {"init": "random"}}``
        ("tensorly_power" takes none).
    progress : callable, optional
        Called as ``progress(done, total, label)`` after each method run, with
        ``done`` of ``total`` method runs finished and ``label`` such as
        ``"gradient_flow, run 0"`` (runs numbered as in the records).

    Returns
    -------
    Comparison
        A list of :class:`ComparisonRecord`, run by run; ``print`` shows a table
        and ``.to_frame()`` gives a pandas DataFrame.

    Notes
    -----
    TensorLy's power iterations draw from numpy's global random state and
    accept no seed; they run with that state seeded from ``random_state`` and
    the state is restored afterwards. TensorLy's ``parafac`` gets the run's
    seed as ``random_state`` (used with ``init="random"``; its default SVD
    start is deterministic).

    Examples
    --------
    >>> from tensorly_gfdeflate import compare, random_symmetric_cp
    >>> truth = random_symmetric_cp(8, 3, 4, random_state=0)
    >>> result = compare(truth, ("gradient_flow", "power_deflation"), truth=truth,
    ...                  random_state=0)
    >>> [(r.method, r.recovered, r.order_tau) for r in result]
    [('gradient_flow', 3, 1.0), ('power_deflation', 3, 1.0)]

    A general tensor with 30% of its entries observed:

    >>> import numpy as np
    >>> import tensorly as tl
    >>> from tensorly_gfdeflate import random_cp
    >>> truth = random_cp((10, 11, 12), 2, weights=[1.0, 0.5], random_state=0)
    >>> mask = np.random.RandomState(1).rand(10, 11, 12) < 0.3
    >>> result = compare(tl.cp_to_tensor(truth), ("gradient_flow",), mask=mask, truth=truth,
    ...                  random_state=0)
    >>> result[0].recovered, result[0].heldout_error < 1e-4
    (2, True)
    """
    problem = _problem(tensor, kind, mask)
    methods = _check_methods(methods, problem)
    method_options = _check_options(method_options, methods)
    if truth is not None:
        truth = _check_truth(truth, problem)
    rank = _resolve_rank(rank, truth, methods)
    n_runs = check_int("n_runs", n_runs, 1)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}.")
    rng = check_random_state(random_state)
    heldout = _heldout_target(truth, problem, tensor)

    result = Comparison(true_rank=None if truth is None else tl.shape(truth[0])[0],
                        kind=problem.kind)
    total = n_runs * len(methods)
    for run in range(n_runs):
        seed = int(rng.randint(2**31 - 1))
        for method in methods:
            start = time.perf_counter()
            decomposition, trace = _run_method(
                method, problem, rank, seed, method_options.get(method, {}))
            seconds = time.perf_counter() - start
            recovered = tau = None
            if truth is not None:
                recovered = components_recovered(truth, decomposition)
                found_at = _finding_order(method, decomposition, trace)
                if found_at is not None:
                    tau = order_agreement(truth, decomposition, found_at)
            result.append(ComparisonRecord(
                method=method,
                run=run,
                seconds=seconds,
                relative_error=relative_error(problem.operator, decomposition),
                # A zero-weight component stands for "nothing fitted".
                n_components=int(np.count_nonzero(tl.to_numpy(decomposition.weights))),
                recovered=recovered,
                order_tau=tau,
                converged=None if trace is None else bool(trace.converged),
                heldout_error=(None if heldout is None
                               else relative_error(heldout, decomposition)),
                decomposition=decomposition,
                trace=trace,
            ))
            if progress is not None:
                progress(len(result), total, f"{method}, run {run}")
    return result
