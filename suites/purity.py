"""Reentrancy and purity: what every cell checks of every prepared callable.

Implementations get copies of the inputs and probes. After the calls, each
copy must still equal the harness's pristine original (callers reuse their
buffers: an operation that writes into its inputs, tangents or cotangents is
wrong even when it returns the right value), and a second call must return
what the first did, up to the rounding of sums taken in another order
(:func:`reordering_allowance`), and what a call returned must not change at a
later call (:func:`check_results_kept`: no output buffer reused across calls).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.array_utils import byte_bounds

from adjointbench.suites.compare import WrongResult
from adjointbench.suites.tolerance import tolerance

DEVICE_NONDETERMINISM_RTOL = 1e-12  # off the CPU, never less than this (as before)


def reordering_allowance(cell) -> float:
    """How far, relative to its largest entry, a second call may differ from
    the first: the rounding tolerance of the cell's dtype and size at
    condition 1 (suites/tolerance.py), what summing in another order can
    change (GPU reductions, threaded or atomic sums). A fixed 1e-12 flagged
    every float32 GPU reduction, whose reordering moves it by ~1e-7."""
    rounding = tolerance(cell.dtype, 1.0, cell.size)
    return rounding if cell.device == "cpu" else max(rounding, DEVICE_NONDETERMINISM_RTOL)


def copy_arrays(value: Any) -> Any:
    """A deep copy of nested dicts, tuples and lists of arrays (Python
    numbers kept as they are: they have no dtype to give them)."""
    if isinstance(value, dict):
        return {k: copy_arrays(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(copy_arrays(v) for v in value)
    if isinstance(value, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    return value  # a Python number is immutable, and validate judges it by its value


def leaves_of(value: Any):
    """The leaves of nested dicts, tuples and lists (whatever they are)."""
    if isinstance(value, dict):
        value = tuple(value.values())
    if isinstance(value, (tuple, list)):
        for part in value:
            yield from leaves_of(part)
    else:
        yield value


def arrays_in(value: Any):
    """The NumPy arrays in nested dicts, tuples and lists (as they are, not copied)."""
    return (leaf for leaf in leaves_of(value) if isinstance(leaf, np.ndarray))


def _allocation(array: np.ndarray) -> np.ndarray:
    """The outermost array whose memory ``array`` views (itself if it owns it)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def allocation_spans(value: Any) -> tuple[tuple[int, int], ...]:
    """The byte spans [start, end) of the allocations behind ``value``'s
    arrays: a view of a buffer spans the whole buffer, so two views of one
    scratch array overlap though their own elements do not."""
    spans = (byte_bounds(_allocation(a)) for a in arrays_in(value) if a.size)
    return tuple((int(start), int(end)) for start, end in spans)


def envelope(spans: tuple) -> tuple[int, int]:
    """The smallest span holding all of ``spans`` ((0, 0) for none)."""
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else (0, 0)


def overlapping(spans: tuple, others: tuple) -> bool:
    """Whether any span of ``spans`` shares a byte with any of ``others``."""
    return any(start < other_end and other_start < end
               for start, end in spans for other_start, other_end in others)


def _pairs(given: Any, pristine: Any, path: str):
    if isinstance(pristine, dict):
        for k in pristine:
            yield from _pairs(given.get(k) if isinstance(given, dict) else None, pristine[k],
                              f"{path} {k!r}" if path else k)
    elif isinstance(pristine, (tuple, list)):
        for i, p in enumerate(pristine):
            yield from _pairs(given[i], p, f"{path}[{i}]")
    else:
        yield path, given, pristine


def check_pure(impl: str, op: str, given: dict, pristine: dict) -> None:
    """Raise WrongResult naming the first buffer ``impl`` changed in place."""
    for name, after, before in _pairs(given, pristine, ""):
        before = np.asarray(before)
        after = np.asarray(after)
        if after.shape != before.shape or not np.array_equal(after, before, equal_nan=True):
            change = (float(np.max(np.abs(after - before), initial=0.0))
                      if after.shape == before.shape else float("nan"))
            what = "its cotangent" if name == "cotangent" else f"its {name}".replace("inputs ", "input ")
            raise WrongResult(
                f"{impl} mutated {what} in place during {op} (largest change {change:.3g}). "
                "Callers reuse their buffers, so an operation must leave its inputs, tangents "
                "and cotangents as it found them: copy before writing.")


def _flat(result: Any, dtype=np.float64) -> list[np.ndarray]:
    """A result's arrays (one, or a tuple or list of them), as ``dtype`` (None: as they are)."""
    parts = result if isinstance(result, (tuple, list)) else (result,)
    return [np.asarray(p, dtype=dtype) for p in parts]


def _largest_change(x: list[np.ndarray], y: list[np.ndarray]) -> float:
    """The largest absolute difference between same-shaped arrays of ``x`` and ``y``."""
    return max((float(np.max(np.abs(u - v), initial=0.0)) for u, v in zip(x, y)
                if u.shape == v.shape), default=float("nan"))


def same_arrays(a: Any, b: Any) -> bool:
    """Whether two results hold the same structure and values (NaN equal to NaN)."""
    x, y = _flat(a, None), _flat(b, None)
    return len(x) == len(y) and all(
        u.shape == v.shape and np.array_equal(u, v, equal_nan=True) for u, v in zip(x, y))


def check_results_kept(impl: str, op: str, earlier: list) -> None:
    """Raise WrongResult if ``impl`` changed a result it had returned before
    (``earlier_results`` of suites/executors.py's LocalExecutor.execute):
    callers keep what a call returns, so writing into it later corrupts
    their values."""
    for earlier_op, then, now in earlier or ():
        if same_arrays(then, now):
            continue
        raise WrongResult(
            f"{impl} changed a result it had already returned: the array a {earlier_op} call "
            f"returned was overwritten by a later call, seen when {op} ran (largest change "
            f"{_largest_change(_flat(then), _flat(now)):.3g}). Callers keep what a call "
            "returns, so each call must return new arrays, not a buffer the implementation "
            "reuses.")


def check_reentrant(cell, op: str, first: Any, second: Any) -> None:
    """Raise WrongResult if a second call of the same prepared callable differs."""
    a, b = _flat(first), _flat(second)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise WrongResult(f"{op} is not reentrant: its second call returned another structure")
    if same_arrays(a, b):
        return
    worst = _largest_change(a, b)
    scale = max((float(np.max(np.abs(x), initial=0.0)) for x in a), default=0.0)
    allowed = reordering_allowance(cell) * scale
    if not worst <= allowed:
        raise WrongResult(f"{op} is not reentrant: its second call differs from the first by "
                          f"{worst:.3g} (largest entry {scale:.3g}; summing in another order "
                          f"moves it by at most {allowed:.3g}); a prepared operation must give "
                          "the same result every time it is called")
