"""High-precision arrays: numpy object arrays of mpmath numbers.

The reference primals are written against these helpers so that they read like
the float64 mathematics while every operation runs at ``mpmath.mp.dps`` digits.
"""

from __future__ import annotations

import mpmath
import numpy as np

_sin = np.frompyfunc(mpmath.sin, 1, 1)
_tanh = np.frompyfunc(mpmath.tanh, 1, 1)
_exp = np.frompyfunc(mpmath.exp, 1, 1)
_mpf = np.frompyfunc(mpmath.mpf, 1, 1)
_float = np.frompyfunc(float, 1, 1)


def to_mp(array) -> np.ndarray:
    """Exact conversion of float64 values to an object array of ``mpf``."""
    return np.asarray(_mpf(np.asarray(array, dtype=np.float64)), dtype=object)


def to_float(array) -> np.ndarray:
    return np.asarray(_float(np.asarray(array, dtype=object)), dtype=np.float64)


def sin(x):
    return _sin(x)


def tanh(x):
    return _tanh(x)


def exp(x):
    return _exp(x)


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A^-1 b by mpmath's LU with partial pivoting."""
    x = mpmath.lu_solve(mpmath.matrix(a.tolist()), mpmath.matrix(b.tolist()))
    return np.array([x[i] for i in range(len(b))], dtype=object)


def max_abs(x) -> mpmath.mpf:
    flat = np.ravel(np.asarray(x, dtype=object))
    return max((abs(v) for v in flat), default=mpmath.mpf(0))


def newton(residual, jacobian, x0: np.ndarray, max_steps: int = 60) -> np.ndarray:
    """Newton's method at the working precision, to full precision.

    ``residual(x)`` and ``jacobian(x)`` take and return object arrays.
    """
    x = np.array(x0, dtype=object)
    target = mpmath.mpf(10) ** (-(mpmath.mp.dps - 3))
    for _ in range(max_steps):
        step = solve(jacobian(x), residual(x))
        x = x - step
        if max_abs(step) <= target * max(mpmath.mpf(1), max_abs(x)):
            return x
    raise ArithmeticError(
        f"high-precision Newton did not converge in {max_steps} steps; "
        "the problem's generator produced a point without a nearby root")
