"""Linear algebra rules: A x, A B, A^-1 b."""

import numpy as np
import scipy.linalg

from adjointbench.impls.rules import Rule

# y = A x.  dy = dA x + A dx;  A_bar = y_bar x^T, x_bar = A^T y_bar.
matvec = Rule(
    forward=lambda A, x: (A @ x, (A, x)),
    jvp=lambda res, dA, dx: dA @ res[1] + res[0] @ dx,
    vjp=lambda res, y_bar: (np.outer(y_bar, res[1]), res[0].T @ y_bar))

# C = A B.  dC = dA B + A dB;  A_bar = C_bar B^T, B_bar = A^T C_bar.
matmul = Rule(
    forward=lambda A, B: (A @ B, (A, B)),
    jvp=lambda res, dA, dB: dA @ res[1] + res[0] @ dB,
    vjp=lambda res, C_bar: (C_bar @ res[1].T, res[0].T @ C_bar))


# x = A^-1 b, one LU factorisation shared by the primal and both rules.
def _solve_forward(A, b):
    lu = scipy.linalg.lu_factor(A, check_finite=False)
    x = scipy.linalg.lu_solve(lu, b, check_finite=False)
    return x, (lu, x)


def _solve_jvp(res, dA, db):
    # dx = A^-1 (db - dA x)
    lu, x = res
    return scipy.linalg.lu_solve(lu, db - dA @ x, check_finite=False)


def _solve_vjp(res, x_bar):
    # A^T lam = x_bar;  A_bar = -lam x^T, b_bar = lam
    lu, x = res
    lam = scipy.linalg.lu_solve(lu, x_bar, trans=1, check_finite=False)
    return -np.outer(lam, x), lam


linear_solve = Rule(forward=_solve_forward, jvp=_solve_jvp, vjp=_solve_vjp)

RULES = {"matvec": matvec, "matmul": matmul, "linear_solve": linear_solve}
