"""Tolerances from the dtype and the problem's conditioning, never one number.

    tol = max(accuracy_floor, SAFETY * eps(dtype) * condition * (1 + sqrt(n)))
          + the oracle's own relative error estimate

where n is the problem's size (rounding errors of sums of n terms grow like
sqrt(n) on random data) and ``accuracy_floor`` is what the problem asks of
implementations that must approximate, such as ODE integrators.
"""

from __future__ import annotations

import math

import numpy as np

EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}
SAFETY = 10.0


def tolerance(dtype: str, condition: float, size: int, accuracy_floor: float = 0.0,
              oracle_error: float = 0.0) -> float:
    rounding = SAFETY * EPS[dtype] * max(condition, 1.0) * (1.0 + math.sqrt(size))
    return max(accuracy_floor, rounding) + oracle_error
