"""Side-by-side runs of the solvers on one target: time, error, recovery, order of discovery.

Three methods are known: ``"gradient_flow"`` (:func:`gradient_flow_cp`),
``"power_deflation"`` (:func:`power_deflation_cp`) and ``"tensorly_power"``,
TensorLy's own ``symmetric_parafac_power_iteration``, kept as an external
reference.
"""

import time
from dataclasses import dataclass, field, fields

import numpy as np
import tensorly as tl
from scipy.stats import kendalltau
from tensorly.cp_tensor import CPTensor

from ._checks import check_choice, check_int, check_random_state
from .flow import gradient_flow_cp
from .measures import components_recovered, match_components, relative_error
from .operators import CPOperator, as_operator
from .power_method import power_deflation_cp

__all__ = ["METHODS", "ComparisonRecord", "Comparison", "compare", "order_agreement"]

METHODS = ("gradient_flow", "power_deflation", "tensorly_power")

# A found component counts for the order agreement once it points along its
# true component as closely as components_recovered asks.
_ORDER_COSINE = 0.99
# tensorly_power works on the dense array; refuse to build one larger than this.
_MAX_DENSE_ENTRIES = 10**7


@dataclass(frozen=True)
class ComparisonRecord:
    """One run of one method.

    Attributes
    ----------
    method : str
        ``"gradient_flow"``, ``"power_deflation"`` or ``"tensorly_power"``.
    run : int
        Run number, from 0; every method of a run gets the same seed.
    seconds : float
        Wall-clock time of the call.
    relative_error : float
        ``|T_hat - T| / |T|``.
    n_components : int
        Number of components returned.
    recovered : int or None
        True components recovered (``|<u, v>| >= 0.99``, weight within 5%);
        None without a truth.
    order_tau : float or None
        Kendall tau between the order in which the method found the recovered
        directions and the order of their true weights, largest first: 1 when
        the larger weights were all found first, -1 for the reverse, NaN when
        fewer than two directions were found. None without a truth.
    converged : bool or None
        The method's own verdict on its result (``trace.converged``: the
        residual holds nothing above the noise floor); None for
        ``"tensorly_power"``, which does not check. When False the method has
        also warned.
    decomposition : CPTensor
        What the method returned (not shown in tables).
    trace : FlowTrace, PowerTrace or None
        The method's trace; None for ``"tensorly_power"`` (not shown in tables).
    """

    method: str
    run: int
    seconds: float
    relative_error: float
    n_components: int
    recovered: int | None = None
    order_tau: float | None = None
    converged: bool | None = None
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
    """

    def __init__(self, records=(), *, true_rank=None):
        super().__init__(records)
        self.true_rank = true_rank

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


def _check_dense_size(operator, methods):
    entries = operator.dim**operator.order
    if "tensorly_power" in methods and entries > _MAX_DENSE_ENTRIES:
        raise ValueError(
            f"method 'tensorly_power' needs the dense tensor ({entries:.2e} entries, more than "
            f"{_MAX_DENSE_ENTRIES:.0e}); leave it out of methods for a target this large."
        )


def _tensorly_power(operator, rank, seed):
    """TensorLy's symmetric_parafac_power_iteration, seeded without leaking into numpy's global RNG.

    It draws its restarts from numpy's global random state and takes no
    ``random_state``, so the global state is seeded for the call and restored
    afterwards: the caller's random stream is left as it was (not thread-safe).
    """
    from tensorly.decomposition import symmetric_parafac_power_iteration

    dense = operator.to_dense()
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        weights, factor = symmetric_parafac_power_iteration(dense, rank)
    finally:
        np.random.set_state(saved)
    return CPTensor((weights, [factor] * operator.order)), None


def _run_method(method, operator, rank, seed, options):
    if method == "gradient_flow":
        return gradient_flow_cp(operator, rank, random_state=seed, return_trace=True, **options)
    if method == "power_deflation":
        return power_deflation_cp(operator, rank, random_state=seed, return_trace=True, **options)
    return _tensorly_power(operator, rank, seed)


def _finding_order(method, decomposition, trace):
    """For each returned component, when it was found (smaller is earlier)."""
    if method == "gradient_flow":
        return np.asarray(trace.discovery_time, dtype=float)
    if method == "power_deflation":
        return np.asarray(trace.extraction_index, dtype=float)
    return np.arange(tl.shape(decomposition.weights)[0], dtype=float)


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


def _check_methods(methods):
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(methods)
    if not methods:
        raise ValueError(f"methods is empty; pass some of {METHODS}.")
    for method in methods:
        check_choice("methods", method, METHODS)
    return methods


def _check_options(method_options, methods):
    method_options = dict(method_options or {})
    for method, options in method_options.items():
        if method not in methods or method == "tensorly_power":
            raise ValueError(
                f"method_options has an entry for {method!r}, which is not one of the "
                f"configurable methods being run ({[m for m in methods if m != 'tensorly_power']})."
            )
        if not isinstance(options, dict):
            raise TypeError(
                f"method_options[{method!r}] must be a dict of keyword arguments, "
                f"got {type(options).__name__}."
            )
    return method_options


def _resolve_rank(rank, truth, methods):
    if rank is not None:
        return check_int("rank", rank, 1)
    if truth is not None:
        return tl.shape(truth[0])[0]
    if any(m != "gradient_flow" for m in methods):
        raise ValueError(
            "rank is None and no truth is given, but the power methods need a rank: "
            "pass rank= (gradient_flow alone can run with rank=None)."
        )
    return None


def compare(tensor, methods=METHODS, *, rank=None, truth=None, n_runs=1,
            random_state=None, method_options=None, progress=None):
    """Run several decomposition methods on one target, ``n_runs`` times each.

    Parameters
    ----------
    tensor : dense symmetric array, symmetric CPTensor or SampleMoments
        The target.
    methods : sequence of str, default=("gradient_flow", "power_deflation", "tensorly_power")
        Which methods to run, in this order within each run. ``"tensorly_power"``
        (TensorLy's ``symmetric_parafac_power_iteration``) needs the dense
        tensor: structured targets are densified for it, up to 1e7 entries.
    rank : int >= 1, optional
        Number of components asked of every method. Default: the truth's rank;
        without a truth only ``"gradient_flow"`` may run (automatic rank).
    truth : CPTensor, optional
        The known decomposition; adds ``recovered`` and ``order_tau``.
    n_runs : int >= 1, default=1
        Runs per method, each with a fresh seed drawn from ``random_state``.
    random_state : None, int or numpy.random.RandomState
        Seeds the runs; the same value gives the same records (apart from
        ``seconds``). numpy's global random state is left as it was.
    method_options : dict, optional
        Extra keyword arguments per method, e.g.
        ``{"gradient_flow": {"width": 20, "variant": "paper"}}``.
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
    ``"tensorly_power"`` draws from numpy's global random state and accepts no
    seed; it is run with that state seeded from ``random_state`` and the state
    is restored afterwards.

    Examples
    --------
    >>> from tensorly_gfdeflate import compare, random_symmetric_cp
    >>> truth = random_symmetric_cp(8, 3, 4, random_state=0)
    >>> result = compare(truth, ("gradient_flow", "power_deflation"), truth=truth,
    ...                  random_state=0)
    >>> [(r.method, r.recovered, r.order_tau) for r in result]
    [('gradient_flow', 3, 1.0), ('power_deflation', 3, 1.0)]
    """
    operator = as_operator(tensor)
    methods = _check_methods(methods)
    _check_dense_size(operator, methods)
    method_options = _check_options(method_options, methods)
    if truth is not None:
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
        truth = CPTensor((truth_operator.weights, [truth_operator.factor] * operator.order))
    rank = _resolve_rank(rank, truth, methods)
    n_runs = check_int("n_runs", n_runs, 1)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}.")
    rng = check_random_state(random_state)

    result = Comparison(true_rank=None if truth is None else tl.shape(truth[0])[0])
    total = n_runs * len(methods)
    for run in range(n_runs):
        seed = int(rng.randint(2**31 - 1))
        for method in methods:
            start = time.perf_counter()
            decomposition, trace = _run_method(
                method, operator, rank, seed, method_options.get(method, {}))
            seconds = time.perf_counter() - start
            recovered = tau = None
            if truth is not None:
                recovered = components_recovered(truth, decomposition)
                tau = order_agreement(
                    truth, decomposition, _finding_order(method, decomposition, trace))
            result.append(ComparisonRecord(
                method=method,
                run=run,
                seconds=seconds,
                relative_error=relative_error(operator, decomposition),
                # A zero-weight component stands for "nothing fitted".
                n_components=int(np.count_nonzero(tl.to_numpy(decomposition.weights))),
                recovered=recovered,
                order_tau=tau,
                converged=None if trace is None else bool(trace.converged),
                decomposition=decomposition,
                trace=trace,
            ))
            if progress is not None:
                progress(len(result), total, f"{method}, run {run}")
    return result
