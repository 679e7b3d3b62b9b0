"""Roots of nonlinear equations: each solution declares its residual's
linearisation, and impls.rules.implicit_rule derives both products from it
(dx = -(dr/dx)^-1 (dr/dtheta) dtheta and its transpose)."""

import numpy as np
import scipy  # submodules load on first use

from adjointbench.impls.rules import Linearisation, implicit_rule

MAX_NEWTON_STEPS = 60


def newton_converged(step, x) -> bool:
    eps = np.finfo(np.asarray(x).dtype).eps
    return np.max(np.abs(step)) <= 32 * eps * max(1.0, float(np.max(np.abs(x))))


def _no_convergence(problem: str):
    return RuntimeError(f"{problem}: Newton did not converge in {MAX_NEWTON_STEPS} steps; "
                        "raise MAX_NEWTON_STEPS or check the inputs")


# scalar_root: r = x^3 + t0 x - t1.  dr/dx = 3x^2 + t0, dr/dtheta = (x, -1).
def _root(theta):
    t0, t1 = theta
    # |x|^3 < |t1| and t0 |x| < |t1|: start above the root on the convex side
    x = np.sign(t1) * min(abs(t1) / t0, np.cbrt(abs(t1)))
    for _ in range(MAX_NEWTON_STEPS):
        step = (x**3 + t0 * x - t1) / (3 * x * x + t0)
        x = x - step
        if newton_converged(step, x):
            return x
    raise _no_convergence("scalar_root")


def _root_linearise(x, theta):
    slope = 3 * x * x + theta[0]
    return Linearisation(solve_x=lambda rhs: rhs / slope, solve_xT=lambda rhs: rhs / slope,
                         r_theta=lambda dtheta: x * dtheta[0] - dtheta[1],
                         r_theta_T=lambda lam: (np.stack([x * lam, -lam]),))


# nonlinear_solve: r = A x + x^3 - theta.  dr/dx = A + 3 diag(x^2) (SPD), dr/dtheta = -I.
def _nonlinear(A, theta):
    x = np.linalg.solve(A, theta)
    for _ in range(MAX_NEWTON_STEPS):
        factor = scipy.linalg.cho_factor(A + np.diag(3 * x * x), check_finite=False)
        step = scipy.linalg.cho_solve(factor, A @ x + x**3 - theta, check_finite=False)
        x = x - step
        if newton_converged(step, x):
            return x
    raise _no_convergence("nonlinear_solve")


def _nonlinear_linearise(x, A, theta):
    factor = scipy.linalg.cho_factor(A + np.diag(3 * x * x), check_finite=False)
    solve = lambda rhs: scipy.linalg.cho_solve(factor, rhs, check_finite=False)  # symmetric
    return Linearisation(solve_x=solve, solve_xT=solve, r_theta=lambda dtheta: -dtheta,
                         r_theta_T=lambda lam: (-lam,))


RULES = {"scalar_root": implicit_rule(_root, _root_linearise),
         "nonlinear_solve": implicit_rule(_nonlinear, _nonlinear_linearise)}
