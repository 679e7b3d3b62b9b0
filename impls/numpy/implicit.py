"""Implicit-function rules for roots of nonlinear equations.

For x(theta) with r(x, theta) = 0 the implicit function theorem gives
dx = -(dr/dx)^-1 (dr/dtheta) dtheta, and theta_bar = -(dr/dtheta)^T lam with
(dr/dx)^T lam = x_bar. The primal's last factorisation of dr/dx is reused.
"""

import numpy as np
import scipy.linalg

from adjointbench.impls.rules import Rule

MAX_NEWTON_STEPS = 60


def newton_converged(step, x) -> bool:
    eps = np.finfo(np.asarray(x).dtype).eps
    return np.max(np.abs(step)) <= 32 * eps * max(1.0, float(np.max(np.abs(x))))


def _no_convergence(problem: str):
    return RuntimeError(f"{problem}: Newton did not converge in {MAX_NEWTON_STEPS} steps; "
                        "raise MAX_NEWTON_STEPS or check the inputs")


# scalar_root: r = x^3 + t0 x - t1.  dr/dx = 3x^2 + t0, dr/dtheta = (x, -1).
def _root_forward(theta):
    t0, t1 = theta
    # |x|^3 < |t1| and t0 |x| < |t1|: start above the root on the convex side
    x = np.sign(t1) * min(abs(t1) / t0, np.cbrt(abs(t1)))
    for _ in range(MAX_NEWTON_STEPS):
        slope = 3 * x * x + t0
        step = (x**3 + t0 * x - t1) / slope
        x = x - step
        if newton_converged(step, x):
            return x, (x, slope)
    raise _no_convergence("scalar_root")


scalar_root = Rule(
    forward=_root_forward,
    # dx = (dt1 - x dt0) / (3x^2 + t0)
    jvp=lambda res, dtheta: (dtheta[1] - res[0] * dtheta[0]) / res[1],
    # theta_bar = (-x, 1) x_bar / (3x^2 + t0)
    vjp=lambda res, x_bar: (np.stack([-res[0] * x_bar, x_bar]) / res[1],))


# nonlinear_solve: r = A x + x^3 - theta.  dr/dx = A + 3 diag(x^2) (SPD), dr/dtheta = -I.
def _nonlinear_forward(A, theta):
    x = np.linalg.solve(A, theta)
    for _ in range(MAX_NEWTON_STEPS):
        factor = scipy.linalg.cho_factor(A + np.diag(3 * x * x), check_finite=False)
        step = scipy.linalg.cho_solve(factor, A @ x + x**3 - theta, check_finite=False)
        x = x - step
        if newton_converged(step, x):
            return x, factor
    raise _no_convergence("nonlinear_solve")


nonlinear_solve = Rule(
    forward=_nonlinear_forward,
    # dx = (dr/dx)^-1 dtheta;  theta_bar = (dr/dx)^-T x_bar, and dr/dx is symmetric
    jvp=lambda factor, dtheta: scipy.linalg.cho_solve(factor, dtheta, check_finite=False),
    vjp=lambda factor, x_bar: (scipy.linalg.cho_solve(factor, x_bar, check_finite=False),))

RULES = {"scalar_root": scalar_root, "nonlinear_solve": nonlinear_solve}
