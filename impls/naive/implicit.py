"""Roots by the textbook route: solve, build dr/dx and dr/dtheta by hand, then
materialise dx/dtheta = -(dr/dx)^-1 dr/dtheta in full (impls.rules.implicit_jacobian)
with Gaussian elimination.
"""

import numpy as np

from adjointbench.impls.naive.linalg import gaussian_solve
from adjointbench.impls.rules import implicit_jacobian, materialised_rule

NEWTON_STEPS = 60


def _scalar_root_primal(theta):
    # the real eigenvalue of the cubic's companion matrix
    roots = np.roots([1.0, 0.0, float(theta[0]), -float(theta[1])])
    return theta.dtype.type(roots[np.argmin(np.abs(roots.imag))].real)


def _scalar_root_jacobian(theta):
    # r = x^3 + t0 x - t1:  dr/dx = 3x^2 + t0,  dr/dtheta = (x, -1)
    x = _scalar_root_primal(theta)
    r_x = np.array([[3 * x * x + theta[0]]], dtype=theta.dtype)
    return implicit_jacobian(r_x, (np.array([x, -1], dtype=theta.dtype),), gaussian_solve)


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
    # r = A x + x^3 - theta:  dr/dx = A + 3 diag(x^2),  dr/dtheta = -I
    x = _nonlinear_primal(A, theta)
    return implicit_jacobian(A + np.diag(3 * x * x), (-np.eye(len(x), dtype=A.dtype),),
                             gaussian_solve)


RULES = {
    "scalar_root": materialised_rule(_scalar_root_primal, _scalar_root_jacobian),
    "nonlinear_solve": materialised_rule(_nonlinear_primal, _nonlinear_jacobian),
}
