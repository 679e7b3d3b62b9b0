"""The one ODE integrator the NumPy-based implementations share.

DOP853 (8th order, adaptive) with tolerances tight enough for the neural ODE's
declared accuracy floor (1e-11 relative), in float64 whatever the task dtype.
"""

import numpy as np
import scipy  # scipy.integrate loads on first use

RTOL = 1e-13
ATOL = 1e-15


def integrate(rhs, y0: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """y(t1) for y' = rhs(t, y), y(t0) = y0."""
    solution = scipy.integrate.solve_ivp(rhs, (t0, t1), np.asarray(y0, dtype=np.float64),
                         method="DOP853", rtol=RTOL, atol=ATOL)
    if not solution.success:
        raise RuntimeError(f"ODE integration failed: {solution.message}")
    return solution.y[:, -1]
