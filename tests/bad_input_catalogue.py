"""The catalogue of bad inputs: one source for ``test_bad_inputs.py`` and ``docs/bad_inputs.rst``.

Every case is a call that must raise ``error`` with a message matching
``match`` (the argument's name and the fix). The documentation table shows the
message the call actually produces; ``test_bad_inputs.py`` checks that the
committed table equals :func:`render_table`, so the two cannot drift.
Regenerate the table from the repository root with
``python -m tests.bad_input_catalogue``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tensorly as tl

from tensorly_gfdeflate import (
    GradientFlowParafac,
    MomentDecomposition,
    ObservedEntries,
    SampleMoments,
    SingleTopicModel,
    SphericalGaussianMixture,
    gradient_flow_cp,
    gradient_flow_parafac,
    power_deflation_cp,
    power_deflation_parafac,
    random_cp,
    random_symmetric_cp,
)

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "bad_inputs.rst"

# Small, fixed inputs: every case fails before any numerical work.
_TRUTH = random_symmetric_cp(4, 2, 3, random_state=0)
U = np.asarray(_TRUTH.factors[0])
W = np.asarray(_TRUTH.weights)
T3 = np.asarray(tl.cp_to_tensor(_TRUTH))
X = np.random.RandomState(0).standard_normal((20, 4))
# A general (4, 5, 6) tensor, about half of it observed, and its observed entries.
_GENERAL = random_cp((4, 5, 6), 2, random_state=0)
G = np.asarray(tl.cp_to_tensor(_GENERAL))
M = np.random.RandomState(0).rand(4, 5, 6) < 0.5
IDX = np.argwhere(M)


def _with(array, index, value):
    changed = np.array(array, dtype=np.result_type(array, type(value)))
    changed[index] = value
    return changed


def _raising_callback(integrator):
    raise KeyError("user error inside the callback")


@dataclass(frozen=True)
class Case:
    """One bad input: what is passed, the call, and what must come back."""

    id: str
    section: str
    code: str
    call: Callable[[], object]
    error: type
    match: str


def _solver_cases(section, rows):
    """Tensor-form cases run through both solvers (they share the validation)."""
    cases = []
    for case_id, code, tensor, error, match in rows:
        for solver, short in ((gradient_flow_cp, "flow"), (power_deflation_cp, "power")):
            cases.append(Case(
                f"{case_id}-{short}", section, f"solver({code}, 2)",
                (lambda solver=solver, tensor=tensor: solver(tensor, 2)), error, match))
    return cases


# The three public entry points of the general case; they share the validation.
GENERAL_SOLVERS = {
    "flow": lambda tensor, mask=None, **kw: gradient_flow_parafac(tensor, 2, mask=mask, **kw),
    "power": lambda tensor, mask=None, **kw: power_deflation_parafac(tensor, 2, mask=mask, **kw),
    "estimator": lambda tensor, mask=None, **kw: GradientFlowParafac(2, mask=mask, **kw).fit(
        tensor),
}


def _general_cases(section, rows):
    """Bad general targets and masks, run through each general entry point.

    ``make`` builds the target when the case runs, so that a bad ObservedEntries
    raises inside the call like any other bad input.
    """
    cases = []
    for case_id, code, make, mask, error, match in rows:
        for short, solver in GENERAL_SOLVERS.items():
            cases.append(Case(
                f"{case_id}-{short}", section, f"general_solver({code})",
                (lambda solver=solver, make=make, mask=mask: solver(make(), mask=mask)),
                error, match))
    return cases


def _entries(indices=None, values=None, shape=(4, 5, 6)):
    return lambda: ObservedEntries(IDX if indices is None else indices,
                                   G[M] if values is None else values, shape)


_GENERAL_TARGETS = [
    ("mask-shape", "G, mask=M[:, :4]", lambda: G, M[:, :4], ValueError,
     r"mask must have the shape of tensor, \(4, 5, 6\); got \(4, 4, 6\)"),
    ("mask-dtype", "G, mask=M.astype(str)", lambda: G, M.astype(str), TypeError,
     r"mask must be boolean \(True where an entry is observed\), got dtype <U5"),
    ("mask-fractional", "G, mask=M * 0.5", lambda: G, M * 0.5, ValueError,
     r"mask must be boolean, or hold only 0 and 1"),
    ("mask-observes-nothing", "G, mask=np.zeros(G.shape, bool)", lambda: G,
     np.zeros((4, 5, 6), bool), ValueError, r"mask observes no entry"),
    ("mask-nan-observed", "G with an observed entry NaN, mask=M",
     lambda: _with(G, tuple(IDX[0]), np.nan), M, ValueError,
     r"tensor contains NaN or inf at observed entries \(where mask is True\)"),
    ("nan-without-mask", "G with G[0, 0, 0] = nan", lambda: _with(G, (0, 0, 0), np.nan), None,
     ValueError, r"tensor contains NaN or inf. If those entries are missing, pass mask="),
    ("mask-with-cp", "random_cp((4, 5, 6), 2), mask=M", lambda: _GENERAL, M, ValueError,
     r"mask must be None for this tensor: it is not a dense array"),
    ("order-2", "np.ones((4, 5))", lambda: np.ones((4, 5)), None, ValueError,
     r"tensor must have order >= 3"),
    ("cp-ranks-differ", "(w, [U1, U2[:, :1], U3])",
     lambda: (_GENERAL.weights, [_GENERAL.factors[0], _GENERAL.factors[1][:, :1],
                                 _GENERAL.factors[2]]), None, ValueError,
     r"tensor factors must all have the same number of columns"),
    ("entries-out-of-range", "ObservedEntries(idx with a 4 in mode 0, values, (4, 5, 6))",
     _entries(indices=_with(IDX, (0, 0), 4)), None, ValueError,
     r"indices for mode 0 must be in \[0, 3\]"),
    ("entries-negative", "ObservedEntries(idx with a -1 in mode 2, values, (4, 5, 6))",
     _entries(indices=_with(IDX, (0, 2), -1)), None, ValueError,
     r"indices for mode 2 must be in \[0, 5\]"),
    ("entries-duplicated", "ObservedEntries(idx with row 1 = row 0, values, (4, 5, 6))",
     _entries(indices=np.concatenate([IDX[:1], IDX[:-1]])), None, ValueError,
     r"indices has 1 duplicated coordinates .* combine the duplicates"),
    ("entries-float-indices", "ObservedEntries(idx.astype(float), values, (4, 5, 6))",
     _entries(indices=IDX.astype(float)), None, TypeError,
     r"indices must hold integer positions"),
    ("entries-nan-value", "ObservedEntries(idx, values with a NaN, (4, 5, 6))",
     _entries(values=_with(G[M], 0, np.nan)), None, ValueError, r"values contains NaN or inf"),
    ("entries-values-length", "ObservedEntries(idx, values[:-1], (4, 5, 6))",
     _entries(values=G[M][:-1]), None, ValueError,
     r"values must be a 1-D array with one value per entry of indices"),
    ("entries-no-entries", "ObservedEntries(idx[:0], values[:0], (4, 5, 6))",
     _entries(indices=IDX[:0], values=G[M][:0]), None, ValueError,
     r"indices holds no entries"),
    ("entries-with-mask", "ObservedEntries(idx, values, (4, 5, 6)), mask=M", _entries(), M,
     ValueError, r"mask must be None for this tensor: an ObservedEntries already says"),
    ("float16", "G.astype(np.float16)", lambda: G.astype(np.float16), None, TypeError,
     r"tensor has dtype float16, too coarse for the solvers .* float32 or float64"),
    ("entries-as-tuple", "(idx, values, (4, 5, 6))", lambda: (IDX, G[M], (4, 5, 6)), None,
     TypeError, r"tensor is an \(indices, values, shape\) tuple; wrap it as ObservedEntries"),
]

_DENSE = [
    ("order-1", "np.ones(4)", np.ones(4), ValueError, r"tensor must have order >= 2"),
    ("order-0", "np.float64(1.0)", np.float64(1.0), ValueError, r"tensor must have order >= 2"),
    ("non-cubical", "np.ones((4, 4, 3))", np.ones((4, 4, 3)), ValueError,
     r"tensor must be cubical"),
    ("non-symmetric", "T with T[0, 1, 2] += 0.1", _with(T3, (0, 1, 2), T3[0, 1, 2] + 0.1),
     ValueError, r"tensor is not symmetric.*Symmetrize it"),
    ("int-dtype", "np.ones((3, 3, 3), dtype=int)", np.ones((3, 3, 3), dtype=int), TypeError,
     r"tensor has dtype int64; pass a real floating-point array"),
    ("bool-dtype", "np.ones((3, 3, 3), dtype=bool)", np.ones((3, 3, 3), dtype=bool),
     TypeError, r"tensor has dtype bool; pass a real floating-point array"),
    ("complex-dtype", "T.astype(complex)", T3.astype(complex), TypeError,
     r"tensor has dtype complex128; pass a real floating-point array"),
    ("object-dtype", "T.astype(object)", T3.astype(object), TypeError,
     r"tensor has dtype object; pass a real floating-point array"),
    ("string", '"T.npy"', "T.npy", TypeError, r"tensor must be a numeric array or a tensor"),
    ("none", "None", None, TypeError, r"tensor must be a dense symmetric array, a CPTensor"),
    ("ragged-list", "[[1.0, 2.0], [3.0]]", [[1.0, 2.0], [3.0]], TypeError,
     r"tensor must be a numeric array or a tensor.*ragged"),
    ("nan-entry", "T with T[0, 0, 0] = nan", _with(T3, (0, 0, 0), np.nan), ValueError,
     r"tensor contains NaN or inf; remove or impute"),
    ("inf-entry", "T with T[1, 1, 1] = inf", _with(T3, (1, 1, 1), np.inf), ValueError,
     r"tensor contains NaN or inf; remove or impute"),
    ("empty", "np.zeros((0, 0, 0))", np.zeros((0, 0, 0)), ValueError, r"tensor is empty"),
    ("zero-tensor", "np.zeros((3, 3, 3))", np.zeros((3, 3, 3)), ValueError,
     r"tensor is zero"),
    ("norm-overflow", "np.full((3, 3, 3), 1e308)", np.full((3, 3, 3), 1e308), ValueError,
     r"tensor's Frobenius norm overflows.*divide it by a constant"),
]

_CP = [
    ("cp-mismatched-factors", "(w, [U, U[:, :1], U])", (W, [U, U[:, :1], U]), ValueError,
     r"tensor factors must all have the same shape"),
    ("cp-different-factors", "(w, [U, -U, U])", (W, [U, -U, U]), ValueError,
     r"tensor is not a symmetric CP tensor.*same factor matrix"),
    ("cp-one-factor", "(w, [U])", (W, [U]), ValueError,
     r"tensor must be a CP tensor with at least 2 factors"),
    ("cp-weights-shape", "(np.ones(3), [U] * 3)", (np.ones(3), [U] * 3), ValueError,
     r"tensor weights must have shape \(2,\)"),
    ("cp-1d-factors", "(w, [U[:, 0]] * 3)", (W, [U[:, 0]] * 3), ValueError,
     r"tensor factors must be non-empty 2-D"),
    ("cp-empty-factors", "(np.ones(0), [np.ones((4, 0))] * 3)",
     (np.ones(0), [np.ones((4, 0))] * 3), ValueError, r"tensor factors must be non-empty 2-D"),
    ("cp-nan-weight", "(w with w[0] = nan, [U] * 3)", (_with(W, 0, np.nan), [U] * 3),
     ValueError, r"tensor weights contains NaN or inf"),
    ("cp-inf-factor", "(w, [U with U[0, 0] = inf] * 3)", (W, [_with(U, (0, 0), np.inf)] * 3),
     ValueError, r"tensor factors contains NaN or inf"),
    ("cp-int-factors", "(w, [np.eye(4, dtype=int)] * 3)",
     (np.ones(4), [np.eye(4, dtype=int)] * 3), TypeError,
     r"tensor factors has dtype int64; pass a real floating-point array"),
    ("cp-complex-weights", "(w.astype(complex), [U] * 3)", (W.astype(complex), [U] * 3),
     TypeError, r"tensor weights has dtype complex128"),
    ("cp-zero-weights", "(np.zeros(2), [U] * 3)", (np.zeros(2), [U] * 3), ValueError,
     r"tensor is zero"),
]

_MOMENTS = [
    Case("moments-nan-row", "SampleMoments", "SampleMoments(X with X[3] = nan, 3)",
         lambda: SampleMoments(_with(X, 3, np.nan), 3), ValueError,
         r"X contains NaN or inf; remove or impute"),
    Case("moments-single-sample", "SampleMoments", "SampleMoments(X[:1], 3)",
         lambda: SampleMoments(X[:1], 3), ValueError, r"X must have at least 2 samples.*X\.T"),
    Case("moments-no-samples", "SampleMoments", "SampleMoments(X[:0], 3)",
         lambda: SampleMoments(X[:0], 3), ValueError, r"X must have at least 2 samples"),
    Case("moments-no-features", "SampleMoments", "SampleMoments(X[:, :0], 3)",
         lambda: SampleMoments(X[:, :0], 3), ValueError, r"X has no features"),
    Case("moments-1d", "SampleMoments", "SampleMoments(X[:, 0], 3)",
         lambda: SampleMoments(X[:, 0], 3), ValueError,
         r"X must be a 2-D \(n_samples, n_features\)"),
    Case("moments-3d", "SampleMoments", "SampleMoments(X.reshape(5, 4, 4), 3)",
         lambda: SampleMoments(X.reshape(5, 4, 4), 3), ValueError,
         r"X must be a 2-D \(n_samples, n_features\)"),
    Case("moments-int-dtype", "SampleMoments", "SampleMoments(np.ones((5, 3), dtype=int), 3)",
         lambda: SampleMoments(np.ones((5, 3), dtype=int), 3), TypeError,
         r"X has dtype int64; pass a real floating-point array"),
    Case("moments-complex-dtype", "SampleMoments", "SampleMoments(X.astype(complex), 3)",
         lambda: SampleMoments(X.astype(complex), 3), TypeError, r"X has dtype complex128"),
    Case("moments-order-1", "SampleMoments", "SampleMoments(X, 1)",
         lambda: SampleMoments(X, 1), ValueError, r"order must be an integer >= 2"),
    Case("moments-order-float", "SampleMoments", "SampleMoments(X, 2.5)",
         lambda: SampleMoments(X, 2.5), TypeError, r"order must be an integer >= 2"),
    Case("moments-order-bool", "SampleMoments", "SampleMoments(X, True)",
         lambda: SampleMoments(X, True), TypeError, r"order must be an integer >= 2"),
    Case("moments-zero-data", "SampleMoments",
         "gradient_flow_cp(SampleMoments(np.zeros((5, 3)), 3))",
         lambda: gradient_flow_cp(SampleMoments(np.zeros((5, 3)), 3)), ValueError,
         r"tensor is zero"),
]


def _flow(code, error, match, **kwargs):
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    return Case(f"flow-{code}", "gradient_flow_cp parameters",
                f"gradient_flow_cp(T, {shown})", lambda: gradient_flow_cp(T3, **kwargs),
                error, match)


def _power(code, error, match, **kwargs):
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    return Case(f"power-{code}", "power_deflation_cp parameters",
                f"power_deflation_cp(T, {shown})", lambda: power_deflation_cp(T3, **kwargs),
                error, match)


def _synthetic(code, error, match, *args, **kwargs):
    shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return Case(f"random_cp-{code}", "random_symmetric_cp",
                f"random_symmetric_cp({shown})",
                lambda: random_symmetric_cp(*args, **kwargs), error, match)


_FLOW = [
    _flow("rank-zero", ValueError, r"rank must be an integer >= 1", rank=0),
    _flow("rank-float", TypeError, r"rank must be an integer >= 1", rank=2.5),
    _flow("rank-string", TypeError, r"rank must be an integer >= 1", rank="3"),
    _flow("rank-beyond-entries", ValueError,
          r"rank=1000000 exceeds the 20 entries of the tensor that could determine it",
          rank=10**6),
    _flow("width-zero", ValueError, r"width must be an integer >= 1", width=0),
    _flow("width-below-rank", ValueError, r"width=2 must be >= rank=3.*increase width",
          rank=3, width=2),
    _flow("variant-unknown", ValueError, r"variant must be one of 'vanilla', 'paper', 'merge'",
          variant="fast"),
    _flow("variant-case", ValueError, r"variant must be one of", variant="Merge"),
    _flow("regularization-negative", ValueError, r"regularization must be >= 0",
          regularization=-1e-3),
    _flow("init_scale-zero", ValueError, r"init_scale must be > 0", init_scale=0.0),
    _flow("reinit_threshold-negative", ValueError, r"reinit_threshold must be > 0",
          reinit_threshold=-0.01),
    _flow("epoch_time-zero", ValueError, r"epoch_time must be > 0", epoch_time=0),
    _flow("epoch_growth-negative", ValueError, r"epoch_growth must be >= 0", epoch_growth=-0.5),
    _flow("step_size-zero", ValueError, r"step_size must be > 0", step_size=0.0),
    _flow("step_size-nan", ValueError, r"step_size must be finite", step_size=float("nan")),
    _flow("step_size-string", TypeError, r"step_size must be a real number", step_size="0.5"),
    _flow("max_time-negative", ValueError, r"max_time must be > 0", max_time=-5.0),
    _flow("max_time-inf", ValueError, r"max_time must be finite", max_time=float("inf")),
    _flow("tol-zero", ValueError, r"tol must be > 0", tol=0.0),
    _flow("signs-unknown", ValueError, r"signs must be None, 'mixed' or", signs="random"),
    _flow("signs-length", ValueError, r"signs must be None, 'mixed' or 4 values", width=4,
          signs=[1, -1]),
    _flow("signs-values", ValueError, r"each \+1 or -1", width=4, signs=[1, 0, 1, 1]),
    _flow("signs-negative-odd-order", ValueError,
          r"signs must all be \+1 for an odd-order tensor", width=4, signs=[1, -1, 1, -1]),
    _flow("debias-string", TypeError, r"debias must be True or False", debias="no"),
    _flow("return_trace-none", TypeError, r"return_trace must be True or False",
          return_trace=None),
    _flow("verbose-level", TypeError, r"verbose must be True or False", verbose=2),
    _flow("callback-not-callable", TypeError, r"callback must be callable or None",
          callback="print"),
    Case("flow-callback-raises", "gradient_flow_cp parameters",
         "gradient_flow_cp(T, callback=f) with f raising KeyError",
         lambda: gradient_flow_cp(T3, callback=_raising_callback), KeyError,
         r"raised by the callback passed to gradient_flow_cp"),
    _flow("random_state-string", TypeError, r"random_state must be None, an int or a numpy",
          random_state="0"),
    _flow("random_state-float", TypeError, r"random_state must be None, an int or a numpy",
          random_state=0.5),
    _flow("random_state-negative", ValueError, r"random_state=-1 is out of range",
          random_state=-1),
    Case("flow-random_state-generator", "gradient_flow_cp parameters",
         "gradient_flow_cp(T, random_state=np.random.default_rng(0))",
         lambda: gradient_flow_cp(T3, random_state=np.random.default_rng(0)), TypeError,
         r"random_state must be None, an int or a numpy.random.RandomState, got Generator"),
]

_POWER = [
    _power("rank-missing", TypeError, r"rank must be an integer >= 1", rank=None),
    _power("rank-zero", ValueError, r"rank must be an integer >= 1", rank=0),
    _power("rank-beyond-entries", ValueError,
           r"rank=1000000 exceeds the 20 entries of the tensor that could determine it",
           rank=10**6),
    _power("n_restarts-zero", ValueError, r"n_restarts must be an integer >= 1",
           rank=2, n_restarts=0),
    _power("n_iter_max-float", TypeError, r"n_iter_max must be an integer >= 1",
           rank=2, n_iter_max=10.0),
    _power("tol-negative", ValueError, r"tol must be > 0", rank=2, tol=-1e-8),
    _power("return_trace-string", TypeError, r"return_trace must be True or False",
           rank=2, return_trace="yes"),
    _power("verbose-string", TypeError, r"verbose must be True or False",
           rank=2, verbose="quiet"),
    _power("random_state-string", TypeError, r"random_state must be None, an int",
           rank=2, random_state="seed"),
]

_SYNTHETIC = [
    _synthetic("dim-zero", ValueError, r"dim must be an integer >= 1", 0, 2, 3),
    _synthetic("order-1", ValueError, r"order must be an integer >= 2", 4, 2, 1),
    _synthetic("rank-above-dim", ValueError, r"rank=5 orthogonal components do not fit",
               4, 5, 3),
    _synthetic("weights-length", ValueError, r"weights must be 2 finite numbers", 4, 2, 3,
               weights=[1.0]),
    _synthetic("weights-nan", ValueError, r"weights must be 2 finite numbers", 4, 2, 3,
               weights=[1.0, float("nan")]),
    _synthetic("orthogonal-string", TypeError, r"orthogonal must be True or False", 4, 2, 3,
               orthogonal="yes"),
    _synthetic("random_state-float", TypeError, r"random_state must be None, an int", 4, 2, 3,
               random_state=1.5),
]

# Word counts: 30 documents of 4 to 6 words over 4 words; and the same using only words 0 and 1.
COUNTS = np.random.RandomState(0).randint(1, 3, size=(30, 4)).astype(float)
TWO_WORDS = np.c_[COUNTS[:, :2] + 2, np.zeros((30, 2))]


def _latent(code, shown, call, error, match):
    return Case(f"latent-{code}", "Latent variable models", shown, call, error, match)


_LATENT = [
    _latent("counts-negative", "SingleTopicModel(2).fit(-counts)",
            lambda: SingleTopicModel(2).fit(-COUNTS), ValueError,
            r"X must hold non-negative word counts"),
    _latent("counts-fractional", "SingleTopicModel(2).fit(counts / 2)",
            lambda: SingleTopicModel(2).fit(COUNTS / 2), ValueError,
            r"X must hold integer word counts"),
    _latent("documents-short", "SingleTopicModel(2).fit(documents of 2 words)",
            lambda: SingleTopicModel(2).fit(np.ones((30, 2))), ValueError,
            r"X has no document of at least 3 words"),
    _latent("n_components-above-words", "SingleTopicModel(5).fit(counts over 4 words)",
            lambda: SingleTopicModel(5).fit(COUNTS), ValueError,
            r"n_components=5 exceeds the 4 words of X"),
    _latent("n_components-above-rank", "SingleTopicModel(3).fit(counts using 2 words)",
            lambda: SingleTopicModel(3).fit(TWO_WORDS), ValueError,
            r"n_components=3 exceeds the rank [12] of the second moment"),
    _latent("n_components-float", "SingleTopicModel(2.0).fit(counts)",
            lambda: SingleTopicModel(2.0).fit(COUNTS), TypeError,
            r"n_components must be an integer >= 1"),
    _latent("solver-unknown", "SingleTopicModel(2, solver='em').fit(counts)",
            lambda: SingleTopicModel(2, solver="em").fit(COUNTS), ValueError,
            r"solver must be one of 'gradient_flow', 'power_deflation'"),
    _latent("solver_options-rank", "SingleTopicModel(2, solver_options={'rank': 3}).fit(counts)",
            lambda: SingleTopicModel(2, solver_options={"rank": 3}).fit(COUNTS), ValueError,
            r"solver_options must not set \['rank'\]"),
    _latent("mixture-n_components-above", "SphericalGaussianMixture(4).fit(X with 4 features)",
            lambda: SphericalGaussianMixture(4).fit(X), ValueError,
            r"n_components=4 exceeds n_features - 1 = 3"),
    _latent("mixture-whiten-string", "SphericalGaussianMixture(2, whiten='yes').fit(X)",
            lambda: SphericalGaussianMixture(2, whiten="yes").fit(X), TypeError,
            r"whiten must be True or False"),
    _latent("refine-string", "SingleTopicModel(2, refine='yes').fit(counts)",
            lambda: SingleTopicModel(2, refine="yes").fit(COUNTS), TypeError,
            r"refine must be True or False"),
    _latent("max_iter-zero", "SingleTopicModel(2, max_iter=0).fit(counts)",
            lambda: SingleTopicModel(2, max_iter=0).fit(COUNTS), ValueError,
            r"max_iter must be an integer >= 1"),
    _latent("tol-negative", "SphericalGaussianMixture(2, tol=-1).fit(X)",
            lambda: SphericalGaussianMixture(2, tol=-1).fit(X), ValueError,
            r"tol must be > 0"),
    _latent("topic_word_prior-zero", "SingleTopicModel(2, topic_word_prior=0).fit(counts)",
            lambda: SingleTopicModel(2, topic_word_prior=0).fit(COUNTS), ValueError,
            r"topic_word_prior must be > 0"),
    _latent("mixture-variance-unknown", "SphericalGaussianMixture(2, variance='full').fit(X)",
            lambda: SphericalGaussianMixture(2, variance="full").fit(X), ValueError,
            r"variance must be one of 'common', 'per_component'"),
]

def _sources(code, shown, call, error, match):
    return Case(f"sources-{code}", "Independent components (MomentDecomposition)", shown, call,
                error, match)


_WHITEN_VALUES = r"whiten must be one of True, 'unit-variance', False, 'feature-scaling'"
_SOURCES = [
    _sources("whiten-string", "MomentDecomposition(whiten='yes').fit(X)",
             lambda: MomentDecomposition(whiten="yes").fit(X), ValueError, _WHITEN_VALUES),
    # FastICA's other spelling: sources here always have unit variance.
    _sources("whiten-arbitrary-variance",
             "MomentDecomposition(whiten='arbitrary-variance').fit(X)",
             lambda: MomentDecomposition(whiten="arbitrary-variance").fit(X), ValueError,
             _WHITEN_VALUES),
    _sources("n_components-above-features-white",
             "MomentDecomposition(5, whiten=False).fit(X with 4 features)",
             lambda: MomentDecomposition(5, whiten=False).fit(X), ValueError,
             r"n_components=5 exceeds n_features=4; with whiten=False"),
    _sources("n_components-above-rank", "MomentDecomposition(5).fit(X with 4 features)",
             lambda: MomentDecomposition(5).fit(X), ValueError,
             r"n_components=5 exceeds the rank 4 of the centred data"),
    _sources("solver_options-rank", "MomentDecomposition(solver_options={'rank': 2}).fit(X)",
             lambda: MomentDecomposition(solver_options={"rank": 2}).fit(X), ValueError,
             r"n_components and random_state instead"),
]


def _parafac(code, error, match, solvers=("flow", "estimator"), **kwargs):
    """A bad parameter of the general flow, through the function and the estimator."""
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    return [Case(f"parafac-{code}-{short}", "General solvers' parameters",
                 f"general_solver(G, {shown})",
                 (lambda short=short: GENERAL_SOLVERS[short](G, **kwargs)), error, match)
            for short in solvers]


_PARAFAC = (
    _parafac("width-below-rank", ValueError, r"width=1 must be >= rank=2.*increase width",
             width=1)
    + _parafac("regularization-negative", ValueError, r"regularization must be >= 0",
               regularization=-1e-3)
    + _parafac("step_size-zero", ValueError, r"step_size must be > 0", step_size=0.0)
    + _parafac("max_time-inf", ValueError, r"max_time must be finite", max_time=float("inf"))
    + _parafac("callback-not-callable", TypeError, r"callback must be callable or None",
               callback="print")
    + _parafac("random_state-string", TypeError, r"random_state must be None, an int",
               solvers=("flow", "power", "estimator"), random_state="0")
    + _parafac("n_restarts-zero", ValueError, r"n_restarts must be an integer >= 1",
               solvers=("power",), n_restarts=0)
    + [Case("parafac-rank-zero", "General solvers' parameters", "gradient_flow_parafac(G, 0)",
            lambda: gradient_flow_parafac(G, 0), ValueError, r"rank must be an integer >= 1"),
       Case("parafac-power-rank-missing", "General solvers' parameters",
            "power_deflation_parafac(G, None)", lambda: power_deflation_parafac(G, None),
            TypeError, r"rank must be an integer >= 1"),
       Case("parafac-estimator-rank-float", "General solvers' parameters",
            "GradientFlowParafac(2.5).fit(G)", lambda: GradientFlowParafac(2.5).fit(G),
            TypeError, r"rank must be an integer >= 1")]
)

CASES = (
    _solver_cases("Dense tensors (either solver)", _DENSE)
    + _solver_cases("CP tensors (either solver)", _CP)
    + _MOMENTS + _FLOW + _POWER + _SYNTHETIC
    + _general_cases("General tensors and completion (each general solver)", _GENERAL_TARGETS)
    + _PARAFAC + _LATENT + _SOURCES
)


def observed_error(case):
    """The exception ``case.call()`` raises, or None if it returns."""
    try:
        case.call()
    except Exception as error:  # noqa: BLE001 - the catalogue records whatever comes back
        return error
    return None


def _message(error):
    notes = getattr(error, "__notes__", [])
    text = " ".join([str(error).strip("'\"")] + list(notes))
    return f"``{type(error).__name__}``: {text}"


def _shown_id(case_id):
    """The case's id without the solver it ran through (one table row for all of them)."""
    for suffix in ("-flow", "-estimator", "-power"):
        if case_id.endswith(suffix) and not case_id.startswith("power-"):
            return case_id.removesuffix(suffix)
    return case_id


def _escape(text):
    return text.replace("*", r"\*").replace("|", r"\|")


_SAFEGUARDS = [
    "Numerical safeguards (tested in ``tests/test_divergence.py`` and ``tests/test_scales.py``):",
    "",
    "* **Extreme scales.** The Frobenius norm is computed at the scale of the entries",
    "  (divided by a power of two near the largest entry before squaring), so ``1e-300 * T``",
    "  to ``1e+300 * T``, and float32 tensors near ``1e+-20``, are solved like ``T``:",
    "  weights scaled, factors unchanged, bit for bit when the factor is a power of two.",
    "* **float32.** Results keep the input's dtype. The flow's residual rounds to noise",
    "  near ``sqrt(eps)`` and is reported no lower than ``sqrt(eps) / 2`` (1.7e-4 in",
    "  float32): a smaller ``tol`` is never met there and the other stop rules end the run;",
    "  a loss rise within ``100 eps`` is rounding, not overshoot; power iterations stop",
    "  once restarts move by less than ``16 eps``.",
    "* **Too large a step.** ``gradient_flow_cp`` undoes a step that raises the loss,",
    "  halves the step, warns once (``RuntimeWarning``, when ``step_size`` was given)",
    "  and records a ``step_reduced``",
    "  event; after 30 halvings it raises a ``FloatingPointError`` that says to lower",
    "  ``step_size``.",
    "* **Vanishing residuals.** ``power_deflation_cp`` with ``rank`` above the true rank",
    "  leaves restarts whose contraction is exactly zero where they are and returns weight 0.",
    "",
]


def render_table():
    """The reStructuredText page: one table row per case, with the message it produces."""
    lines = [
        ".. This file is generated by tests/bad_input_catalogue.py; do not edit it by hand.",
        "",
        "Bad inputs and what you get",
        "===========================",
        "",
        "Every row is a test in ``tests/test_bad_inputs.py``: the call raises the error shown,",
        "whose message names the argument and the fix, before any numerical work. No bad",
        "input returns NaN, and the caller's arrays are never modified. ``T`` is a small",
        "symmetric order-3 array, ``(w, [U] * 3)`` a symmetric CP tensor and ``X`` a",
        "``20 x 4`` data matrix. ``solver`` is ``gradient_flow_cp`` or ``power_deflation_cp``:",
        "both give the same message (each is a test of its own). For general tensors, ``G``",
        "is a ``(4, 5, 6)`` array, ``M`` a boolean mask observing about half of it and",
        "``idx, values`` its observed entries (``np.argwhere(M), G[M]``); ``general_solver``",
        "is ``gradient_flow_parafac``, ``power_deflation_parafac`` or ``GradientFlowParafac``",
        "(the same message from each; ``mask`` is the estimator's parameter). NaN where the",
        "mask is False is not an error: those entries are never read.",
        "",
        "Choices made where there is more than one right answer:",
        "",
        "* A **callback that raises** is not wrapped: your exception propagates unchanged",
        "  (same type, same traceback), with a note naming ``callback`` and the flow time.",
        "* **Constant columns** in ``SampleMoments`` are accepted: raw moments of a constant",
        "  feature are well defined (a column of ones adds the lower-order moments). Only an",
        "  all-zero ``X`` is refused, as a zero tensor.",
        "* A **single sample** is refused: one row gives the rank-one tensor ``x^(x)l``, never",
        "  a moment estimate, and is almost always a transposed ``X``.",
        "* A **rank above the true rank** is not an error: the power method returns the extra",
        "  components with weight 0 (to rounding) and the flow returns what it fitted,",
        "  with a ``ConvergenceWarning``.",
        "",
    ]
    rows = [case for index, case in enumerate(CASES)
            if index == 0 or case.code != CASES[index - 1].code]
    lines += _SAFEGUARDS
    section = None
    for number, case in enumerate(rows, start=1):
        if case.section != section:
            section = case.section
            lines += [
                section,
                "-" * len(section),
                "",
                ".. list-table::",
                "   :header-rows: 1",
                "   :widths: 5 20 35 40",
                "",
                "   * - #",
                "     - case",
                "     - call",
                "     - what you get",
            ]
        lines += [
            f"   * - {number}",
            f"     - ``{_shown_id(case.id)}``",
            f"     - ``{case.code}``",
            f"     - {_escape(_message(observed_error(case)))}",
        ]
        if number == len(rows) or rows[number].section != section:
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    DOC_PATH.write_text(render_table())
    print(f"wrote the {len(CASES)} cases to {DOC_PATH}")
