"""Adjoint-sensitivity problems through a steady solve: a scalar loss
J(theta) of x(theta) with r(x(theta), theta) = 0, the classic worked examples'
values kept exactly (DESIGN.md).

Each is a :class:`Problem` of kind ``"sensitivity"``: one differentiable
input, theta, and the problem's fixed data (matrices, reference solutions,
targets, starting points) as non-differentiable inputs, computed here once in
float64 and handed to implementations as they are, so that no implementation
needs this module. The oracle differentiates ``primal_mp`` (J in high
precision, from the same inputs) like any other primal. ``size`` is the
number of parameters P; its only operation is ``gradient``, by a named method.
"""

from __future__ import annotations

import mpmath
import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.problem import Problem

_HALF = mpmath.mpf("0.5")


def _sumsq(r):
    return _HALF * sum(v * v for v in np.ravel(r))  # analytic: no abs, no conj


def _cond(jacobian: np.ndarray) -> float:
    return float(np.linalg.cond(np.atleast_2d(jacobian)))


# Input points 1, 2, ... of a sensitivity problem scale each entry of theta by
# exp(0.1 u), u uniform in [-1, 1]: near the worked example (point 0, whose
# values are kept exactly), so its solvers still converge, yet far enough that
# a rule right only at the worked example's theta is caught.
THETA_NEIGHBOURHOOD = 0.1


def sensitivity_problem(name, inputs, sizes, generate, primal_mp, condition, description,
                        family, second_order=False, **kw) -> Problem:
    """A sensitivity problem; ``second_order`` gives it Hessian-vector products
    of J (the oracle differences J twice in high precision)."""
    return Problem(second_order=second_order, name=name, family=family, inputs=("theta", *inputs),
                   differentiable=("theta",), sizes=sizes, generate=generate,
                   primal_mp=primal_mp, condition=condition, description=description,
                   kind="sensitivity", dtypes=("float64",), neighbourhood=THETA_NEIGHBOURHOOD,
                   varied=("theta",), **kw)


def _steady(name, inputs, sizes, generate, primal_mp, condition, description, **kw):
    return sensitivity_problem(name, inputs, sizes, generate, primal_mp, condition, description,
                               "steady_state", **kw)


# --- 1. linear_system: A x = theta, J = 0.5 ||x - x_ref||^2, x_ref = A^-1 b_true ---
LINEAR_A = np.array([[10.0, 2, 1], [2, 5, 1], [1, 1, 3]])
LINEAR_B_TRUE = np.array([5.0, 4, 3])
LINEAR_THETA = np.array([1.0, 1, 1])


def _linear_data(size, rng):
    return {"theta": LINEAR_THETA, "A": LINEAR_A, "x_ref": np.linalg.solve(LINEAR_A, LINEAR_B_TRUE)}


def _linear_system_mp(theta, A, x_ref):
    return np.array(_sumsq(hp.solve(A, theta) - x_ref), dtype=object)


# --- 2. scalar_nonlinear: two rollers and a spring ---
# r(v; a, b, k) = k (a - v) (1 - b / sqrt(b^2 + 2 a v - v^2)) - F, Newton from v = 1
SPRING_FORCE = 10.0
SPRING_REF = np.array([1.0, 1.0, 200.0])
SPRING_THETA = np.array([0.9, 0.9, 180.0])
SPRING_START = 1.0


def _spring_residual(v, a, b, k, force, sqrt):
    return k * (a - v) * (1 - b / sqrt(b * b + 2 * a * v - v * v)) - force


def _spring_dv(v, a, b, k, sqrt):
    s = sqrt(b * b + 2 * a * v - v * v)
    return -k * (1 - b / s) + k * b * (a - v) ** 2 / s**3


def _spring_solve_mp(theta, force, v_start):
    a, b, k = theta
    r = lambda v: np.array([_spring_residual(v[0], a, b, k, force, mpmath.sqrt)], dtype=object)
    dr = lambda v: np.array([[_spring_dv(v[0], a, b, k, mpmath.sqrt)]], dtype=object)
    return hp.newton(r, dr, np.array([v_start], dtype=object))[0]


def _spring_data(size, rng):
    fixed = {"force": np.array(SPRING_FORCE), "v_start": np.array(SPRING_START)}
    with mpmath.workdps(30):
        v_ref = float(_spring_solve_mp(hp.to_mp(SPRING_REF), *hp.to_mp([SPRING_FORCE, SPRING_START])))
    return {"theta": SPRING_THETA, "v_ref": np.array([v_ref]), **fixed}


def _scalar_nonlinear_mp(theta, v_ref, force, v_start):
    v = _spring_solve_mp(theta, force.item(), v_start.item())
    return np.array(_sumsq([v - v_ref[0]]), dtype=object)


def _spring_condition(theta, v_ref, force, v_start):
    # relative condition of v(theta): |dv/dtheta| |theta| / |v|, dv/dtheta = -r_theta / r_v
    with mpmath.workdps(30):
        t = list(hp.to_mp(theta))
        v = _spring_solve_mp(t, force.item(), v_start.item())
        r = lambda a, b, k: _spring_residual(v, a, b, k, force.item(), mpmath.sqrt)
        r_theta = [mpmath.diff(r, t, tuple(int(i == j) for j in range(3))) for i in range(3)]
        slope = [-g / _spring_dv(v, *t, mpmath.sqrt) for g in r_theta]
        return float(mpmath.norm(slope) * mpmath.norm(t) / abs(v))


# --- 3. nonlinear_system: r = [x0 + t0 (x0 - x1)^3 + t1, t2 (x0 - x1 - t3)^3] ---
# The second equation has a triple root, so dr/dx is singular at the solution.
NONLINEAR_THETA = np.array([1.0, -2.0, 1.0, 1.2])
NONLINEAR_START = np.array([0.0, 0.0])


def _system_residual(x, t):
    d = x[0] - x[1]
    return np.array([x[0] + t[0] * d**3 + t[1], t[2] * (d - t[3]) ** 3], dtype=x.dtype)


def _system_dx(x, t):
    d = x[0] - x[1]
    g1, g2 = 3 * t[0] * d**2, 3 * t[2] * (d - t[3]) ** 2
    return np.array([[1 + g1, -g1], [g2, -g2]], dtype=x.dtype)


def _nonlinear_system_mp(theta, x_start):
    # The root in closed form: r2 = 0 forces d = x0 - x1 = t3 (a triple root, where
    # dr/dx is singular and Newton converges only linearly), then r1 = 0 gives
    # x0 = -t1 - t0 t3^3. x(theta) is smooth, so J and its gradient are certified.
    t0, t1, t2, t3 = theta
    x0 = -t1 - t0 * t3**3
    return np.array(_sumsq([x0, x0 - t3]), dtype=object)


def _system_condition(theta, x_start):
    x = np.array(x_start, dtype=np.float64)
    for _ in range(100):  # Newton converges linearly at the triple root
        x = x - np.linalg.lstsq(_system_dx(x, theta), _system_residual(x, theta), rcond=None)[0]
    return _cond(_system_dx(x, theta))


# --- 5. unrolled_gd: x_{t+1} = x_t - 0.1 (theta x_t - b), x_0 = 0.5, b = 0, 1000 steps ---
GD_STEP, GD_START, GD_B, GD_STEPS = 0.1, 0.5, 0.0, 1000
GD_THETA = np.array([0.05])


def _gd_data(size, rng):
    return {"theta": GD_THETA, "x0": np.array(GD_START), "b": np.array(GD_B)}


def _gd_iterates_mp(theta, x0, b):
    x, step = x0.item(), mpmath.mpf(GD_STEP)
    iterates = [x]
    for _ in range(GD_STEPS):
        x = x - step * (theta[0] * x - b.item())
        iterates.append(x)
    return np.array(iterates, dtype=object)


def _unrolled_gd_mp(theta, x0, b):
    return np.array(_gd_iterates_mp(theta, x0, b)[-1], dtype=object)


def _gd_fixed_point_mp(theta, x0, b):
    # x* minimises 0.5 theta x^2 - b x: theta x* = b
    return np.array(b.item() / theta[0], dtype=object)


# --- 6a. diffusion: -(kappa u')' = 1 on (0, 1), u(0) = u(1) = 0, kappa_i = exp(theta_i)
# per cell; n = P cells, A = D^T diag(kappa) D / h^2 on the n - 1 interior nodes.
# J = 0.5 h ||u - u_obs||^2, u_obs the solution for theta_obs = 0.3 sin(2 pi x).
DIFFUSION_SIZES = (8, 100, 1000, 10000)


def _diffusion_theta_obs(P: int) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * (np.arange(P) + 0.5) / P)


def _tridiagonal_solve(kappa, h, zero):
    # Thomas algorithm on A u = 1: diag kappa_{j-1} + kappa_j, off-diagonal -kappa_j
    n = len(kappa) - 1
    c, d = [zero] * n, [zero] * n
    for j in range(n):
        off = -kappa[j] if j > 0 else 0
        denom = kappa[j] + kappa[j + 1] - (off * c[j - 1] if j > 0 else 0)
        c[j] = -kappa[j + 1] / denom
        d[j] = (h * h - (off * d[j - 1] if j > 0 else 0)) / denom
    u = [zero] * n
    for j in range(n - 1, -1, -1):
        u[j] = d[j] - (c[j] * u[j + 1] if j < n - 1 else 0)
    return u


def _diffusion_generate(P, rng):
    u_obs = _tridiagonal_solve(np.exp(_diffusion_theta_obs(P)), 1.0 / P, 0.0)
    return {"theta": 0.3 * rng.standard_normal(P), "u_obs": np.array(u_obs)}


def _diffusion_mp(theta, u_obs):
    h = mpmath.mpf(1) / len(theta)
    u = _tridiagonal_solve([mpmath.exp(t) for t in theta], h, mpmath.mpf(0))
    return np.array(h * _sumsq([a - b for a, b in zip(u, u_obs)]), dtype=object)


def _diffusion_condition(theta, u_obs):
    kappa = np.exp(theta)
    return float(np.max(kappa) / np.min(kappa) * len(theta) ** 2)


PROBLEMS = (
    _steady("linear_system", ("A", "x_ref"), (3,), _linear_data, _linear_system_mp,
            lambda theta, A, x_ref: _cond(A),
            "J = 0.5 ||A^-1 theta - x_ref||^2, the 3x3 worked example", second_order=True),
    _steady("scalar_nonlinear", ("v_ref", "force", "v_start"), (3,), _spring_data,
            _scalar_nonlinear_mp, _spring_condition,
            "two rollers and a spring: J = 0.5 (v - v_ref)^2"),
    _steady("nonlinear_system", ("x_start",), (4,),
            lambda size, rng: {"theta": NONLINEAR_THETA, "x_start": NONLINEAR_START},
            _nonlinear_system_mp, _system_condition,
            "J = 0.5 ||x||^2 at a triple root: dr/dx is singular at the solution"),
    _steady("unrolled_gd", ("x0", "b"), (1,), _gd_data, _unrolled_gd_mp,
            lambda theta, x0, b: 1.0,
            "x_1000 of gradient descent on 0.5 theta x^2 - b x (the curse of unrolling)"),
    _steady("gd_fixed_point", ("x0", "b"), (1,), _gd_data, _gd_fixed_point_mp,
            lambda theta, x0, b: 1.0,
            "x* = b / theta, the fixed point that unrolled_gd's iterates approach"),
    _steady("diffusion", ("u_obs",), DIFFUSION_SIZES, _diffusion_generate, _diffusion_mp,
            _diffusion_condition,
            "1-D diffusion, cell-wise kappa = exp(theta): J = 0.5 h ||u - u_obs||^2",
            second_order=True),
)

# The unrolling curve: every iterate of unrolled_gd as a primitive's output, so
# its Jacobian (jacfwd) is dx_t/dtheta for t = 0..1000, whose closed form is
# -0.1 t (1 - 0.1 theta)^(t - 1) x_0 (b = 0).
PROBLEMS += (
    Problem(name="gd_trajectory", family="steady_state", inputs=("theta", "x0", "b"),
            differentiable=("theta",), sizes=(1,), generate=_gd_data,
            domain={"theta": (0.01, 0.5)},
            primal_mp=_gd_iterates_mp, record_values=True,
            # rounding errors accumulate over the iterations: x_t carries t of them
            condition=lambda theta, x0, b: float(GD_STEPS),
            description="x_0..x_1000 of unrolled_gd: its Jacobian is the unrolling curve"),
)
