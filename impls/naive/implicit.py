"""Roots by the textbook route: solve, then invert dr/dx explicitly.

dx/dtheta = -(dr/dx)^-1 dr/dtheta, materialised in full.
"""

import numpy as np

from adjointbench.impls.naive.linalg import gaussian_solve
from adjointbench.impls.rules import materialised_rule

NEWTON_STEPS = 60


def _scalar_root_primal(theta):
    # the real eigenvalue of the cubic's companion matrix
    roots = np.roots([1.0, 0.0, float(theta[0]), -float(theta[1])])
    return theta.dtype.type(roots[np.argmin(np.abs(roots.imag))].real)


def _scalar_root_jacobian(theta):
    # r = x^3 + t0 x - t1:  dx/dt0 = -x / (3x^2 + t0),  dx/dt1 = 1 / (3x^2 + t0)
    x = _scalar_root_primal(theta)
    slope = 3 * x * x + theta[0]
    return (np.array([-x / slope, 1 / slope], dtype=theta.dtype),)


def _nonlinear_primal(A, theta):
    x = gaussian_solve(A, theta)
    eps = np.finfo(A.dtype).eps
    for _ in range(NEWTON_STEPS):
        step = gaussian_solve(A + np.diag(3 * x * x), A @ x + x**3 - theta)
        x = x - step
        if np.max(np.abs(step)) <= 32 * eps * max(1.0, float(np.max(np.abs(x)))):
            return x
    raise RuntimeError(f"nonlinear_solve: Newton did not converge in {NEWTON_STEPS} steps")


def _nonlinear_jacobian(A, theta):
    # r = A x + x^3 - theta:  dx/dtheta = (A + 3 diag(x^2))^-1
    x = _nonlinear_primal(A, theta)
    n = len(x)
    return (gaussian_solve(A + np.diag(3 * x * x), np.eye(n, dtype=A.dtype)),)


RULES = {
    "scalar_root": materialised_rule(_scalar_root_primal, _scalar_root_jacobian),
    "nonlinear_solve": materialised_rule(_nonlinear_primal, _nonlinear_jacobian),
}
