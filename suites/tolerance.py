"""The one tolerance table: per-dtype defaults merged with per-problem and
per-method overrides, never one global number (as jax's test utilities merge
their per-dtype table with a test's own tolerances).

    tol = max(accuracy floor, SAFETY * eps(dtype) * condition * (1 + sqrt(n)))
          + the oracle's own relative error estimate

n is the problem's size (rounding errors of sums of n terms grow like sqrt(n)
on random data). The accuracy floor is the largest of what the problem asks
of implementations that must approximate (its ``accuracy_floor``, e.g. ODE
integrators) and what the cell's gradient method can promise (METHOD_RTOL).
"""

from __future__ import annotations

import math

import numpy as np

EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}
SAFETY = 10.0
# Above this condition estimate no derivative is trusted, whatever computed it.
ILL_CONDITIONED = 1e10

# What each gradient method can promise, relative to the gradient's largest
# entry: forward differences O(sqrt eps), central O(eps^(2/3)), ODE integrators
# at rtol 1e-12 or RK4 with h = 0.01, and exact linear algebra.
# A sensitivity HVP by central differences of adjoint gradients promises what
# fd_central does; the second-order adjoint, what the adjoint does.
METHOD_RTOL = {"fd_forward": 1e-4, "fd_central": 1e-6, "forward_sensitivity": 1e-8,
               "adjoint": 1e-8, "unrolled": 1e-8, "implicit": 1e-8,
               "fd_gradient": 1e-6, "second_order_adjoint": 1e-8}
METHODS = ("fd_forward", "fd_central", "forward_sensitivity", "adjoint", "unrolled",
           "implicit")  # of gradient cells


def method_accuracy(method: str | None, size: int) -> float:
    """A finite difference's rounding error stays that of J while each entry of
    the gradient shrinks as P grows: its tolerance grows with sqrt(P)."""
    if method not in METHOD_RTOL:  # exact AD, in whatever nesting
        return 0.0
    return METHOD_RTOL[method] * (math.sqrt(size) if method.startswith("fd_") else 1.0)


def tolerance(dtype: str, condition: float, size: int, accuracy_floor: float = 0.0,
              oracle_error: float = 0.0, method: str | None = None) -> float:
    """The cell's relative tolerance. Beyond ILL_CONDITIONED the condition
    estimate no longer loosens it (a tolerance of order one would pass any
    value): results are judged as at condition 1, and the runner reports a
    failure there as ``ill_conditioned``, never a wrong value as ``ok``."""
    condition = condition if condition <= ILL_CONDITIONED else 1.0
    rounding = SAFETY * EPS[dtype] * max(condition, 1.0) * (1.0 + math.sqrt(size))
    floor = max(accuracy_floor, method_accuracy(method, size))
    return max(floor, rounding) + oracle_error
