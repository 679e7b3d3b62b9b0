"""Linear algebra: A x, A B, and A^-1 b."""

from __future__ import annotations

import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.problem import MATRIX_BENCH_SIZES, Problem


def _summation_condition(product, abs_product) -> float:
    """||(|A||B|)|| / ||A B||: how much cancellation the sums suffer."""
    return float(np.max(abs_product) / max(np.max(np.abs(product)), np.finfo(float).tiny))


# Non-square on purpose: a transposed cotangent is then a shape error, and
# rules that assume m = n are exercised.
def _matvec_inputs(size, rng):
    return {"A": rng.standard_normal((size + 1, size)), "x": rng.standard_normal(size)}


def _matmul_inputs(size, rng):
    return {"A": rng.standard_normal((size, size + 1)),
            "B": rng.standard_normal((size + 1, size + 2))}


def well_conditioned_matrix(size, rng) -> np.ndarray:
    """A random matrix with eigenvalues clustered around 3: cond(A) of a few."""
    return rng.standard_normal((size, size)) / np.sqrt(size) + 3.0 * np.eye(size)


def _solve_inputs(size, rng):
    return {"A": well_conditioned_matrix(size, rng), "b": rng.standard_normal(size)}


PROBLEMS = (
    Problem(name="matvec", family="linalg", inputs=("A", "x"), differentiable=("A", "x"),
            sizes=(2, 8, 32), bench_sizes=MATRIX_BENCH_SIZES,
            generate=_matvec_inputs, domain={"A": (-2.0, 2.0), "x": (-2.0, 2.0)},
            primal_mp=lambda A, x: A @ x,
            condition=lambda A, x: _summation_condition(A @ x, np.abs(A) @ np.abs(x)),
            description="A x, A (n + 1) x n"),
    Problem(name="matmul", family="linalg", inputs=("A", "B"), differentiable=("A", "B"),
            sizes=(2, 8, 16), bench_sizes=MATRIX_BENCH_SIZES,
            generate=_matmul_inputs, domain={"A": (-2.0, 2.0), "B": (-2.0, 2.0)},
            primal_mp=lambda A, B: A @ B,
            condition=lambda A, B: _summation_condition(A @ B, np.abs(A) @ np.abs(B)),
            description="A B, A n x (n + 1), B (n + 1) x (n + 2)"),
    Problem(name="linear_solve", family="linalg", inputs=("A", "b"),
            differentiable=("A", "b"), sizes=(2, 8, 16), bench_sizes=MATRIX_BENCH_SIZES,
            generate=_solve_inputs,
            primal_mp=lambda A, b: hp.solve(A, b),
            condition=lambda A, b: float(np.linalg.cond(A)),
            description="A^-1 b, A n x n well conditioned"),
)
