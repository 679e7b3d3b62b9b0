"""The steady-state sensitivity problems as NumPy/SciPy models, for the shared
gradient methods of impls/gradient_methods.py (finite differences, forward
sensitivities, the adjoint). Each model is built from the problem's data,
which arrive as its non-differentiable inputs; the formulas are written here."""

from __future__ import annotations

import numpy as np
import scipy  # submodules load on first use

from adjointbench.impls.gradient_methods import (SteadyLinearisation, SteadyModel, fd_central,
                                                 fd_forward, gradient_table, hvp_table, loss_of,
                                                 matrix_linearisation, steady_methods)
from adjointbench.impls.rules import Linearisation


def _lu_linearisation(r_x, r_theta, J_x, J_theta) -> SteadyLinearisation:
    lu = scipy.linalg.lu_factor(r_x)
    residual = matrix_linearisation(lambda rhs: scipy.linalg.lu_solve(lu, rhs),
                                    lambda rhs: scipy.linalg.lu_solve(lu, rhs, trans=1), r_theta)
    return SteadyLinearisation(residual, J_x, J_theta)


# r = A x - theta;  r_x = A, r_theta = -I;  J = 0.5 ||x - x_ref||^2
def _linear_system(P, A, x_ref):
    lu = scipy.linalg.lu_factor(A)
    return SteadyModel(
        solve=lambda theta: scipy.linalg.lu_solve(lu, theta),
        loss=lambda x, theta: 0.5 * float(np.sum((x - x_ref) ** 2)),
        linearise=lambda x, theta: _lu_linearisation(A, -np.eye(P), x - x_ref, np.zeros(P)))


# Second order (forward over the adjoint): A x = theta, A^T lam = x - x_ref,
# grad = lam.  Along u: A xdot = u, A^T lamdot = xdot, so H u = lamdot.
def _linear_system_hvp(theta, u, A, x_ref):
    lu = scipy.linalg.lu_factor(A)
    return scipy.linalg.lu_solve(lu, scipy.linalg.lu_solve(lu, u), trans=1)


# r = k (a - v) g - F, g = 1 - b/s, s = sqrt(b^2 + 2 a v - v^2):
#   r_v = -k g + k b (a - v)^2 / s^3,
#   r_a = k g + k (a - v) b v / s^3,  r_b = k (a - v) (b^2/s^3 - 1/s),  r_k = (a - v) g
SPRING_NEWTON_STEPS = 50


def _spring_parts(v, theta):
    a, b, k = theta
    s = np.sqrt(b * b + 2 * a * v - v * v)
    return a, b, k, s, 1 - b / s


def _scalar_nonlinear(P, v_ref, force, v_start):
    def residual(v, theta):
        a, b, k, s, g = _spring_parts(v, theta)
        return k * (a - v) * g - force

    def r_v(v, theta):
        a, b, k, s, g = _spring_parts(v, theta)
        return -k * g + k * b * (a - v) ** 2 / s**3

    def solve(theta):
        v = float(v_start)
        for _ in range(SPRING_NEWTON_STEPS):
            v = v - residual(v, theta) / r_v(v, theta)
        return np.array([v])

    def r_theta(v, theta):
        a, b, k, s, g = _spring_parts(v, theta)
        return np.array([[k * g + k * (a - v) * b * v / s**3,
                          k * (a - v) * (b * b / s**3 - 1 / s), (a - v) * g]])

    return SteadyModel(
        solve=solve, loss=lambda x, theta: 0.5 * float((x[0] - v_ref[0]) ** 2),
        linearise=lambda x, theta: _lu_linearisation(
            np.array([[r_v(x[0], theta)]]), r_theta(x[0], theta), x - v_ref, np.zeros(3)))


# r1 = x0 + t0 d^3 + t1, r2 = t2 (d - t3)^3, d = x0 - x1
SYSTEM_NEWTON_STEPS = 100


def _system_residual(x, t):
    d = x[0] - x[1]
    return np.array([x[0] + t[0] * d**3 + t[1], t[2] * (d - t[3]) ** 3])


def _system_dx(x, t):
    d = x[0] - x[1]
    g1, g2 = 3 * t[0] * d**2, 3 * t[2] * (d - t[3]) ** 2
    return np.array([[1 + g1, -g1], [g2, -g2]])


def _system_r_theta(x, t):
    d = x[0] - x[1]
    return np.array([[d**3, 1.0, 0.0, 0.0], [0.0, 0.0, (d - t[3]) ** 3, -3 * t[2] * (d - t[3]) ** 2]])


def _nonlinear_system(P, x_start):
    def solve(theta):
        x = np.array(x_start, dtype=np.float64)
        for _ in range(SYSTEM_NEWTON_STEPS):  # least squares: dr/dx turns singular at the root
            x = x - np.linalg.lstsq(_system_dx(x, theta), _system_residual(x, theta),
                                    rcond=None)[0]
        return x

    return SteadyModel(
        solve=solve, loss=lambda x, theta: 0.5 * float(np.sum(x * x)),
        linearise=lambda x, theta: _lu_linearisation(_system_dx(x, theta),
                                                      _system_r_theta(x, theta), x, np.zeros(4)))


# A(kappa) = D^T diag(kappa) D / h^2 on interior nodes, D the (P, P-1) difference
# (D u)_i = u_{i-1} - u_i with zero boundary values; r = A u - 1, so
# r_theta d = D^T (c * d) and r_theta^T lam = c * (D lam), c = kappa (D u) / h^2:
# applied without assembling a matrix (the adjoint gradient is -c * (D lam)).
def _difference(u):
    """D u along the first axis (zero boundary values)."""
    padding = [(1, 1)] + [(0, 0)] * (np.ndim(u) - 1)
    return -np.diff(np.pad(u, padding), axis=0)


def _difference_transposed(v):
    """D^T v along the first axis."""
    return np.diff(v, axis=0)


def _diffusion_banded(kappa):
    P = len(kappa)
    h2 = (1.0 / P) ** 2
    ab = np.zeros((3, P - 1))
    ab[0, 1:] = -kappa[1:-1] / h2
    ab[1] = (kappa[:-1] + kappa[1:]) / h2
    ab[2, :-1] = -kappa[1:-1] / h2
    return ab


def _diffusion(P, u_obs):
    h = 1.0 / P

    def solve(theta):
        return scipy.linalg.solve_banded((1, 1), _diffusion_banded(np.exp(theta)), np.ones(P - 1))

    def linearise(u, theta):
        ab = _diffusion_banded(np.exp(theta))  # symmetric: A^T = A
        banded = lambda rhs: scipy.linalg.solve_banded((1, 1), ab, rhs)
        c = np.exp(theta) * _difference(u) / h**2
        column = lambda a: c.reshape(c.shape + (1,) * (np.ndim(a) - 1))
        residual = Linearisation(banded, banded,
                                 lambda d: _difference_transposed(column(d) * d),
                                 lambda lam: (column(lam) * _difference(lam),))
        return SteadyLinearisation(residual, h * (u - u_obs), np.zeros(P))

    return SteadyModel(solve=solve, loss=lambda u, theta: 0.5 * h * float(np.sum((u - u_obs) ** 2)),
                       linearise=linearise)


# Second order (forward over the adjoint): A u = 1, A lam = h (u - u_obs),
# grad = -kappa (D u)(D lam) / h^2.  Along v (so kappa' = kappa v):
#   A udot = -D^T (kappa v D u) / h^2
#   A lamdot = h udot - D^T (kappa v D lam) / h^2
#   H v = -kappa (v (D u)(D lam) + (D udot)(D lam) + (D u)(D lamdot)) / h^2
# two more banded solves than the gradient, nothing assembled.
def _diffusion_hvp(theta, v, u_obs):
    P = len(theta)
    h2, kappa = (1.0 / P) ** 2, np.exp(theta)
    ab = _diffusion_banded(kappa)
    solve = lambda rhs: scipy.linalg.solve_banded((1, 1), ab, rhs)
    u = solve(np.ones(P - 1))
    lam = solve((u - u_obs) / P)
    Du, Dlam = _difference(u), _difference(lam)
    u_dot = solve(-_difference_transposed(kappa * v * Du) / h2)
    lam_dot = solve(u_dot / P - _difference_transposed(kappa * v * Dlam) / h2)
    return -kappa * (v * Du * Dlam + _difference(u_dot) * Dlam + Du * _difference(lam_dot)) / h2


# unrolled_gd: x_{t+1} = x_t - 0.1 (theta x_t - b), 1000 steps; gd_fixed_point: x* = b / theta
GD_STEP, GD_STEPS = 0.1, 1000


def _gd_final(theta, x0, b):
    x = float(x0)
    for _ in range(GD_STEPS):
        x = x - GD_STEP * (theta[0] * x - float(b))
    return x


def _finite_differences(loss):
    return {"fd_forward": lambda theta, **data: (fd_forward(lambda th: loss(th, **data), theta),),
            "fd_central": lambda theta, **data: (fd_central(lambda th: loss(th, **data), theta),)}


GRADIENTS = {
    "linear_system": gradient_table(_linear_system, steady_methods),
    "scalar_nonlinear": gradient_table(_scalar_nonlinear, steady_methods),
    "nonlinear_system": gradient_table(_nonlinear_system, steady_methods),
    "diffusion": gradient_table(_diffusion, steady_methods),
    "unrolled_gd": _finite_differences(_gd_final),
    "gd_fixed_point": _finite_differences(lambda theta, x0, b: float(b) / theta[0]),
}

HVPS = {
    "linear_system": hvp_table(_linear_system, _linear_system_hvp),
    "diffusion": hvp_table(_diffusion, _diffusion_hvp),
}

# J(theta) by the same models: the primal of the harness's adjoint benchmark
LOSSES = {name: loss_of(model, SteadyModel.loss_of_theta)
          for name, model in (("linear_system", _linear_system),
                              ("scalar_nonlinear", _scalar_nonlinear),
                              ("nonlinear_system", _nonlinear_system), ("diffusion", _diffusion))}
