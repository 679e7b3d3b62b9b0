"""The one comparison: normwise relative error against a tolerance.

error = max |actual - expected| / max |scale|, where ``scale`` is the expected
value itself, or the magnitudes of the terms that cancel: for identities the
sum of their magnitudes, for a product by the oracle's Jacobian |J| |u|
(suites/runner.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    ok: bool
    max_abs_err: float
    max_rel_err: float
    tol: float
    message: str = ""
    oracle_err: float | None = None


class WrongResult(ValueError):
    """A result of the wrong shape or dtype, or with NaN or Inf in it."""


class NotFinite(WrongResult):
    """A result with NaN or Inf in it."""


def _as_array(actual, dtype: str) -> np.ndarray:
    """``actual`` as an array. A built-in Python number, or a list of them
    (``.tolist()``'s), has no dtype of its own: it takes the cell's when that
    holds every value exactly (a float32 result's ``.item()``, an exact
    ``0``); else NumPy's float64 or int64."""
    if np.dtype(dtype).kind != "f" or type(actual) not in (int, float, list):
        return np.asarray(actual)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            typed = np.asarray(actual, dtype=dtype)
    except (OverflowError, TypeError, ValueError):  # beyond every float, or not numbers
        return np.asarray(actual)
    untyped = np.asarray(actual)
    if untyped.dtype.kind not in "fi":  # an int beyond int64: compared as a Python number
        return typed if type(actual) is int and float(typed) == actual else untyped
    held = (typed == untyped) | (np.isnan(typed) & np.isnan(untyped))
    return typed if held.all() else untyped


def _in_native_order(array: np.ndarray) -> np.ndarray:
    """``array`` in this machine's byte order: a big-endian float64 holds
    every float64 value (a file or a device may store it so), and was called
    a dtype mismatch ("has dtype >f8"). Its dtype is then judged as any
    other: big-endian float32 in a float64 cell "has dtype float32"."""
    native = array.dtype.newbyteorder("=")
    return array.astype(native) if array.dtype != native else array


def cotangents_of(result, names: tuple[str, ...], op: str) -> list:
    """``result`` of an operation that returns one array per differentiable
    input (vjp, gradient, hvp: impls/protocol.py), as the list of them:
    a tuple (or list) of ``len(names)``, even for one input."""
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise WrongResult(f"{op} must return a tuple of {len(names)} cotangents "
                          f"({', '.join(names)}), got {type(result).__name__}"
                          + (f" of {len(result)}" if isinstance(result, (tuple, list)) else ""))
    return list(result)


def validate(actual, shape: tuple, dtype: str, what: str) -> np.ndarray:
    if actual is None:
        raise WrongResult(f"{what} is None: the operation must return its result, not write "
                          "it somewhere and return nothing")
    try:
        array = _in_native_order(_as_array(actual, dtype))
    except (TypeError, ValueError) as e:  # ragged, or not numbers at all
        raise WrongResult(f"{what} is not an array of numbers ({type(actual).__name__}: {e}), "
                          f"expected shape {tuple(shape)}") from None
    if array.shape != tuple(shape):
        raise WrongResult(f"{what} has shape {array.shape}, expected {tuple(shape)}"
                          f"{_wrapped_hint(actual, shape)}")
    if array.dtype != np.dtype(dtype):
        held = (f" (a Python {type(actual).__name__} that {dtype} cannot hold exactly: "
                f"computed in another precision)" if type(actual) in (int, float, list) else "")
        raise WrongResult(f"{what} has dtype {array.dtype}, expected {dtype}{held}")
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NotFinite(f"{what} is not finite: {array[index]} at index {index}")
    return array


def _wrapped_hint(actual, shape: tuple) -> str:
    """Where a result of the wrong shape is the right array in a tuple or list
    of one (a JVP returned as ``(dy,)``, as a VJP's cotangents are), say so."""
    if isinstance(actual, (tuple, list)) and len(actual) == 1 \
            and np.shape(actual[0]) == tuple(shape):
        return (f": a {type(actual).__name__} holding one array of the right shape; return "
                "the array itself (only vjp, gradient and hvp return one array per input)")
    return ""


def compare(actual: np.ndarray, expected: np.ndarray, tol: float, what: str,
            condition: float, scale: np.ndarray | None = None,
            oracle_err: float | None = None) -> Comparison:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    diff = np.abs(actual - expected)
    norm = float(np.max(np.abs(expected if scale is None else scale), initial=0.0))
    max_abs = float(np.max(diff, initial=0.0))
    rel = max_abs / norm if norm > 0 else (0.0 if max_abs == 0 else np.inf)
    if rel <= tol:
        return Comparison(True, max_abs, rel, tol, oracle_err=oracle_err)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
    message = (f"{what}: worst element {tuple(int(i) for i in worst)}: got {actual[worst]:.9g}, "
               f"want {expected[worst]:.9g}; error {max_abs:.2e} abs, {rel:.2e} rel > "
               f"tol {tol:.2e} (condition estimate {condition:.3g})")
    return Comparison(False, max_abs, rel, tol, message, oracle_err)


def worst_of(comparisons: list[Comparison]) -> Comparison:
    """Combine the parts of one cell: fails if any fails, reports the worst."""
    failing = [c for c in comparisons if not c.ok]
    pick = max(failing or comparisons, key=lambda c: c.max_rel_err)
    message = "; ".join(c.message for c in failing)
    oracle_errs = [c.oracle_err for c in comparisons if c.oracle_err is not None]
    return Comparison(not failing, max(c.max_abs_err for c in comparisons),
                      pick.max_rel_err, pick.tol, message, max(oracle_errs, default=None))


def _inner(left, right) -> tuple[float, float]:
    """sum_i <left_i, right_i>, and the sum of the magnitudes of its terms."""
    terms = [np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
             for a, b in zip(left, right)]
    return float(sum(np.sum(t) for t in terms)), float(sum(np.sum(np.abs(t)) for t in terms))


def compare_inner_products(expected_left, expected_right, actual_left, actual_right, tol: float,
                           what: str, condition: float,
                           oracle_err: float | None = None) -> Comparison:
    """The one inner-product identity: sum_i <actual_left_i, actual_right_i>
    against sum_i <expected_left_i, expected_right_i>, e.g. <J^T w, u> against
    <w, J u>. The error is relative to the magnitudes that cancel in the sums.
    """
    expected, expected_scale = _inner(expected_left, expected_right)
    actual, actual_scale = _inner(actual_left, actual_right)
    return compare(np.array(actual), np.array(expected), tol, what, condition,
                   scale=np.array(max(expected_scale, actual_scale)), oracle_err=oracle_err)
