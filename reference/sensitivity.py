"""Adjoint-sensitivity problems: a scalar loss J(theta) through an implicit
solve, with the classic worked examples' values kept exactly (DESIGN.md).

Each is a :class:`Problem` of kind ``"sensitivity"`` with one input, theta,
whose values are used as given (no float32 rounding): the oracle
differentiates ``primal_mp`` (J in high precision) like any other primal.
``size`` is the number of parameters P. ``condition`` estimates the condition
of the solve at the solution; above ``ILL_CONDITIONED`` no gradient is
trusted, whatever method produced it.
"""

from __future__ import annotations

import mpmath
import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.problem import Problem

ILL_CONDITIONED = 1e10
_HALF = mpmath.mpf("0.5")


def _sumsq(r):
    return _HALF * sum(v * v for v in np.ravel(r))  # analytic: no abs, no conj


def _fixed(theta):
    return lambda size, rng: {"theta": np.array(theta, dtype=np.float64)}


def _cond(jacobian: np.ndarray) -> float:
    return float(np.linalg.cond(np.atleast_2d(jacobian)))


# --- 1. linear_system: A x = theta, J = 0.5 ||x - x_ref||^2, x_ref = A^-1 b_true ---
LINEAR_A = np.array([[10.0, 2, 1], [2, 5, 1], [1, 1, 3]])
LINEAR_B_TRUE = np.array([5.0, 4, 3])
LINEAR_THETA = np.array([1.0, 1, 1])


def _linear_system_mp(theta):
    A = hp.to_mp(LINEAR_A)
    return np.array(_sumsq(hp.solve(A, theta) - hp.solve(A, hp.to_mp(LINEAR_B_TRUE))), dtype=object)


# --- 2. scalar_nonlinear: two rollers and a spring ---
# r(v; a, b, k) = k (a - v) (1 - b / sqrt(b^2 + 2 a v - v^2)) - F
SPRING_FORCE = 10.0
SPRING_REF = np.array([1.0, 1.0, 200.0])
SPRING_THETA = np.array([0.9, 0.9, 180.0])
SPRING_START = 1.0


def spring_residual(v, a, b, k, sqrt=np.sqrt):
    return k * (a - v) * (1 - b / sqrt(b * b + 2 * a * v - v * v)) - SPRING_FORCE


def spring_dv(v, a, b, k, sqrt=np.sqrt):
    s = sqrt(b * b + 2 * a * v - v * v)
    return -k * (1 - b / s) + k * b * (a - v) ** 2 / s**3


def _spring_solve_mp(theta):
    a, b, k = theta
    r = lambda v: np.array([spring_residual(v[0], a, b, k, mpmath.sqrt)], dtype=object)
    dr = lambda v: np.array([[spring_dv(v[0], a, b, k, mpmath.sqrt)]], dtype=object)
    return hp.newton(r, dr, np.array([mpmath.mpf(SPRING_START)], dtype=object))[0]


def _scalar_nonlinear_mp(theta):
    v_ref = _spring_solve_mp(hp.to_mp(SPRING_REF))
    return np.array(_sumsq([_spring_solve_mp(theta) - v_ref]), dtype=object)


def spring_solve(theta, steps: int = 50) -> float:
    """Newton from v = 1 in float64 (shared by the condition estimate and the methods)."""
    v = SPRING_START
    for _ in range(steps):
        v = v - spring_residual(v, *theta) / spring_dv(v, *theta)
    return v


def _spring_condition(theta):
    v = spring_solve(theta)
    # relative condition of v(theta): |dv/dtheta| |theta| / |v|
    step = 1e-7 * np.abs(theta)
    slope = [(spring_solve(theta + e) - spring_solve(theta - e)) / (2 * e[i])
             for i, e in enumerate(np.diag(step))]
    return float(np.linalg.norm(slope) * np.linalg.norm(theta) / abs(v))


# --- 3. nonlinear_system: r = [x0 + t0 (x0 - x1)^3 + t1, t2 (x0 - x1 - t3)^3] ---
# The second equation has a triple root, so dr/dx is singular at the solution.
NONLINEAR_THETA = np.array([1.0, -2.0, 1.0, 1.2])
NONLINEAR_START = np.array([0.0, 0.0])


def system_residual(x, t):
    d = x[0] - x[1]
    return np.array([x[0] + t[0] * d**3 + t[1], t[2] * (d - t[3]) ** 3], dtype=x.dtype)


def system_dx(x, t):
    d = x[0] - x[1]
    g1, g2 = 3 * t[0] * d**2, 3 * t[2] * (d - t[3]) ** 2
    return np.array([[1 + g1, -g1], [g2, -g2]], dtype=x.dtype)


def system_solve(theta, steps: int = 100) -> np.ndarray:
    x = NONLINEAR_START.copy()
    for _ in range(steps):
        x = x - np.linalg.lstsq(system_dx(x, theta), system_residual(x, theta), rcond=None)[0]
    return x


def _nonlinear_system_mp(theta):
    x0 = np.array([mpmath.mpf(0), mpmath.mpf(0)], dtype=object)
    x = hp.newton(lambda x: system_residual(x, theta), lambda x: system_dx(x, theta), x0,
                  max_steps=400)
    return np.array(_sumsq(x), dtype=object)


# --- 5. unrolled_gd: x_{t+1} = x_t - 0.1 (theta x_t - b), b = 0, x_0 = 0.5 ---
GD_STEP, GD_START, GD_B, GD_STEPS = 0.1, 0.5, 0.0, 1000
GD_THETA = np.array([0.05])


def unrolled_gd_derivative(theta: float, t: np.ndarray) -> np.ndarray:
    """The closed form dx_t/dtheta = -0.1 t (1 - 0.1 theta)^(t - 1) * 0.5 (b = 0)."""
    return -GD_STEP * t * (1 - GD_STEP * theta) ** (t - 1) * GD_START


def unrolled_gd_implicit_derivative(theta: float) -> float:
    """x* = b / theta, so dx*/dtheta = -b / theta^2."""
    return -GD_B / theta**2


def _unrolled_gd_mp(theta):
    x = mpmath.mpf(GD_START)
    for _ in range(GD_STEPS):
        x = x - mpmath.mpf(GD_STEP) * (theta[0] * x - GD_B)
    return np.array(x, dtype=object)


# --- 6a. diffusion: -(kappa u')' = 1 on (0, 1), u(0) = u(1) = 0, kappa_i = exp(theta_i)
# per cell; n = P cells, A = D^T diag(kappa) D / h^2 on the n - 1 interior nodes.
# J = 0.5 h ||u - u_obs||^2, u_obs the solution for theta_obs = 0.3 sin(2 pi x).
DIFFUSION_SIZES = (8, 100, 1000, 10000)


def diffusion_theta_obs(P: int) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * (np.arange(P) + 0.5) / P)


def _tridiagonal_solve_mp(kappa, h):
    # Thomas algorithm on A u = 1: diag kappa_{j-1} + kappa_j, off-diagonal -kappa_j
    n = len(kappa) - 1
    diag = [kappa[j] + kappa[j + 1] for j in range(n)]
    rhs = [h * h] * n
    c, d = [mpmath.mpf(0)] * n, [mpmath.mpf(0)] * n
    for j in range(n):
        off = -kappa[j] if j > 0 else 0
        denom = diag[j] - (off * c[j - 1] if j > 0 else 0)
        c[j] = -kappa[j + 1] / denom
        d[j] = (rhs[j] - (off * d[j - 1] if j > 0 else 0)) / denom
    u = [mpmath.mpf(0)] * n
    for j in range(n - 1, -1, -1):
        u[j] = d[j] - (c[j] * u[j + 1] if j < n - 1 else 0)
    return u


def _diffusion_mp(theta):
    P = len(theta)
    h = mpmath.mpf(1) / P
    u = _tridiagonal_solve_mp([mpmath.exp(t) for t in theta], h)
    u_obs = _tridiagonal_solve_mp([mpmath.exp(t) for t in hp.to_mp(diffusion_theta_obs(P))], h)
    return np.array(h * _sumsq([a - b for a, b in zip(u, u_obs)]), dtype=object)


def _diffusion_condition(theta):
    kappa = np.exp(theta)
    return float(np.max(kappa) / np.min(kappa) * len(theta) ** 2)


def _random_theta(scale):
    return lambda size, rng: {"theta": scale * rng.standard_normal(size)}


def _sensitivity(name, sizes, generate, primal_mp, condition, description, **kw):
    return Problem(name=name, family="sensitivity", inputs=("theta",), differentiable=("theta",),
                   sizes=sizes, generate=generate, primal_mp=primal_mp, condition=condition,
                   description=description, kind="sensitivity", **kw)


PROBLEMS = (
    _sensitivity("linear_system", (3,), _fixed(LINEAR_THETA), _linear_system_mp,
                 lambda theta: _cond(LINEAR_A),
                 "J = 0.5 ||A^-1 theta - x_ref||^2, the 3x3 worked example"),
    _sensitivity("scalar_nonlinear", (3,), _fixed(SPRING_THETA), _scalar_nonlinear_mp,
                 _spring_condition, "two rollers and a spring: J = 0.5 (v - v_ref)^2"),
    _sensitivity("nonlinear_system", (4,), _fixed(NONLINEAR_THETA), _nonlinear_system_mp,
                 lambda theta: _cond(system_dx(system_solve(theta), theta)),
                 "J = 0.5 ||x||^2 at a triple root: dr/dx is singular at the solution"),
    _sensitivity("unrolled_gd", (1,), _fixed(GD_THETA), _unrolled_gd_mp, lambda theta: 1.0,
                 "x_1000 of gradient descent on 0.5 theta x^2 (the curse of unrolling)"),
    _sensitivity("diffusion", DIFFUSION_SIZES, _random_theta(0.3), _diffusion_mp,
                 _diffusion_condition,
                 "1-D diffusion, cell-wise kappa = exp(theta): J = 0.5 h ||u - u_obs||^2"),
)
