"""Solutions of nonlinear equations, defined implicitly by a residual.

scalar_root: x with x^3 + theta0 x - theta1 = 0, theta0 > 0 (one real root).
nonlinear_solve: x with A x + x^3 - theta = 0, A symmetric positive definite
(a monotone map, so the root is unique).
"""

from __future__ import annotations

import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.problem import Problem


def _root_inputs(size, rng):
    return {"theta": np.array([0.5 + abs(rng.standard_normal()), 1.0 + rng.standard_normal()])}


def scalar_root_float(theta: np.ndarray) -> float:
    """The real root in float64, the start for the high-precision Newton."""
    roots = np.roots([1.0, 0.0, theta[0], -theta[1]])
    return float(roots[np.argmin(np.abs(roots.imag))].real)


def _scalar_root_mp(theta):
    x0 = np.array([scalar_root_float(hp.to_float(theta))], dtype=object)
    x = hp.newton(lambda x: x**3 + theta[0] * x - theta[1],
                  lambda x: np.array([[3 * x[0] ** 2 + theta[0]]], dtype=object),
                  hp.to_mp(x0))
    return np.array(x[0], dtype=object)


def _scalar_root_condition(theta) -> float:
    x = scalar_root_float(theta)
    return float((abs(x * theta[0]) + abs(theta[1])) / (abs(3 * x * x + theta[0]) * abs(x)))


def spd_matrix(size, rng) -> np.ndarray:
    m = rng.standard_normal((size, size))
    return m @ m.T / size + np.eye(size)


def _nonlinear_inputs(size, rng):
    return {"A": spd_matrix(size, rng), "theta": 2.0 * rng.standard_normal(size)}


def nonlinear_solve_float(A: np.ndarray, theta: np.ndarray) -> np.ndarray:
    x = np.linalg.solve(A, theta)
    for _ in range(100):
        step = np.linalg.solve(A + np.diag(3 * x * x), A @ x + x**3 - theta)
        x = x - step
        if np.max(np.abs(step)) <= 1e-15 * max(1.0, np.max(np.abs(x))):
            break
    return x


def _nonlinear_solve_mp(A, theta):
    x0 = nonlinear_solve_float(hp.to_float(A), hp.to_float(theta))
    return hp.newton(lambda x: A @ x + x**3 - theta,
                     lambda x: A + np.diag(3 * x * x),
                     hp.to_mp(x0))


def _nonlinear_condition(A, theta) -> float:
    x = nonlinear_solve_float(A, theta)
    return float(np.linalg.cond(A + np.diag(3 * x * x)))


PROBLEMS = (
    Problem(name="scalar_root", family="implicit", inputs=("theta",),
            differentiable=("theta",), sizes=(1,), generate=_root_inputs,
            primal_mp=_scalar_root_mp, condition=_scalar_root_condition,
            description="root of x^3 + theta0 x - theta1 = 0"),
    Problem(name="nonlinear_solve", family="implicit", inputs=("A", "theta"),
            differentiable=("theta",), sizes=(2, 8, 16), generate=_nonlinear_inputs,
            primal_mp=_nonlinear_solve_mp, condition=_nonlinear_condition,
            description="x with A x + x^3 = theta, A SPD"),
)
