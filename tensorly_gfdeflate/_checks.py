"""Argument checks shared by the public entry points.

Every check raises at the public boundary with a message that names the
argument and says how to fix it.
"""

import numbers
import os
import sys

import numpy as np
from tensorly.cp_tensor import CPTensor

__all__ = [
    "check_random_state",
    "check_positive",
    "check_nonnegative",
    "check_int",
    "check_choice",
    "check_bool",
    "check_callback",
    "check_solver_options",
    "user_stacklevel",
    "is_dask_array",
    "is_cp_tensor",
]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def is_dask_array(value):
    """Whether ``value`` is a Dask array, without importing Dask (an optional dependency)."""
    return type(value).__module__.split(".")[0] == "dask" and hasattr(value, "chunks")


def is_cp_tensor(value):
    """Whether ``value`` is a CPTensor or a ``(weights, factors)`` pair, TensorLy's two CP forms."""
    return isinstance(value, CPTensor) or (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], (list, tuple)))


def user_stacklevel():
    """The ``stacklevel`` that points a warning at the first caller outside this package.

    Call it from the function that calls :func:`warnings.warn`. Warnings
    about a user's call belong on the user's line, not on ours.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def check_random_state(random_state):
    """Return a :class:`numpy.random.RandomState` that is never numpy's global one.

    ``None`` gives a fresh generator seeded from the operating system, unlike
    :func:`sklearn.utils.check_random_state`, which hands back the global
    singleton: drawing from that would change the caller's random stream.
    """
    if random_state is None:
        return np.random.RandomState()
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2**32:
            raise ValueError(
                f"random_state={random_state} is out of range: pass an int in [0, 2**32)."
            )
        return np.random.RandomState(int(random_state))
    raise TypeError(
        "random_state must be None, an int or a numpy.random.RandomState, "
        f"got {type(random_state).__name__}."
    )


def _check_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return float(value)


def check_positive(name, value):
    """Return ``value`` as a float, or raise unless it is a finite number > 0."""
    value = _check_real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return value


def check_nonnegative(name, value):
    """Return ``value`` as a float, or raise unless it is a finite number >= 0."""
    value = _check_real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}.")
    return value


def check_int(name, value, minimum):
    """Return ``value`` as an int, or raise unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_choice(name, value, choices):
    """Return ``value``, or raise unless it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}.")
    return value


def check_bool(name, value):
    """Return ``value`` as a bool, or raise unless it is True or False.

    A string such as ``"no"`` would otherwise silently count as True. The
    integers 0 and 1 pass, as scikit-learn's ``verbose=0`` does.
    """
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, numbers.Integral) and value in (0, 1)
    ):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}.")


def check_callback(callback):
    """``callback`` if it is None or callable; a TypeError otherwise."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    return callback


def check_solver_options(options, solvers, solver, owner):
    """Return ``options`` (a dict; None for empty) for ``solvers[solver]``, or raise.

    ``solvers`` maps the names an estimator's ``solver`` parameter takes to
    estimator classes. ``rank`` and ``random_state`` are the ``owner``
    estimator's to set (``n_components`` and ``random_state``); any other
    key must be a parameter of the chosen class.
    """
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise TypeError(f"solver_options must be a dict of solver parameters or None, "
                        f"got {type(options).__name__}.")
    reserved = sorted({"rank", "random_state"} & options.keys())
    if reserved:
        raise ValueError(f"solver_options must not set {reserved}: use {owner}'s "
                         "n_components and random_state instead.")
    valid = set(solvers[solver]._get_param_names()) - {"rank", "random_state"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"solver_options has unknown keys {unknown} for solver={solver!r}; "
                         f"valid keys: {sorted(valid)}.")
    return options
