"""Linear algebra rules: A x, A B, A^-1 b."""

import dataclasses

import numpy as np
import scipy  # submodules load on first use

from adjointbench.impls.rules import Linearisation, Rule, implicit_rule

# Second order: the tangent of the VJP (w fixed) along u.

# y = A x.  dy = dA x + A dx;  A_bar = y_bar x^T, x_bar = A^T y_bar.
# Bilinear, so H u = (y_bar u_x^T, u_A^T y_bar).
matvec = Rule(
    primal=lambda A, x: A @ x,
    forward=lambda A, x: (A @ x, (A, x)),
    jvp=lambda res, dA, dx: dA @ res[1] + res[0] @ dx,
    vjp=lambda res, y_bar: (np.outer(y_bar, res[1]), res[0].T @ y_bar),
    hvp=lambda inputs, y_bar, uA, ux: (np.outer(y_bar, ux), uA.T @ y_bar))

# C = A B.  dC = dA B + A dB;  A_bar = C_bar B^T, B_bar = A^T C_bar.
# Bilinear, so H u = (C_bar u_B^T, u_A^T C_bar).
matmul = Rule(
    primal=lambda A, B: A @ B,
    forward=lambda A, B: (A @ B, (A, B)),
    jvp=lambda res, dA, dB: dA @ res[1] + res[0] @ dB,
    vjp=lambda res, C_bar: (C_bar @ res[1].T, res[0].T @ C_bar),
    hvp=lambda inputs, C_bar, uA, uB: (C_bar @ uB.T, uA.T @ C_bar))


# x = A^-1 b solves r = A x - b = 0:  dr/dx = A (its LU, shared by both rules),
# dr/dA dA = dA x, (dr/dA)^T lam = lam x^T, dr/db = -I.  So dx = A^-1 (db - dA x),
# and with A^T lam = x_bar:  A_bar = -lam x^T, b_bar = lam.
def _solve(A, b):
    return scipy.linalg.lu_solve(scipy.linalg.lu_factor(A, check_finite=False), b,
                                 check_finite=False)


def _solve_forward(A, b):
    lu = scipy.linalg.lu_factor(A, check_finite=False)
    x = scipy.linalg.lu_solve(lu, b, check_finite=False)
    return x, Linearisation(
        solve_x=lambda rhs: scipy.linalg.lu_solve(lu, rhs, check_finite=False),
        solve_xT=lambda rhs: scipy.linalg.lu_solve(lu, rhs, trans=1, check_finite=False),
        r_theta=lambda dA, db: dA @ x - db,
        r_theta_T=lambda lam: (np.outer(lam, x), -lam))


# Second order: with lam = A^-T x_bar, the VJP is (-lam x^T, lam). Along u,
# dx = A^-1 (u_b - u_A x) and A^T lam = x_bar gives dlam = -A^-T (u_A^T lam), so
#   H u = (-(dlam x^T + lam dx^T), dlam).
def _solve_hvp(inputs, x_bar, uA, ub):
    lu = scipy.linalg.lu_factor(inputs["A"], check_finite=False)
    x = scipy.linalg.lu_solve(lu, inputs["b"], check_finite=False)
    lam = scipy.linalg.lu_solve(lu, x_bar, trans=1, check_finite=False)
    dx = scipy.linalg.lu_solve(lu, ub - uA @ x, check_finite=False)
    dlam = -scipy.linalg.lu_solve(lu, uA.T @ lam, trans=1, check_finite=False)
    return -(np.outer(dlam, x) + np.outer(lam, dx)), dlam


linear_solve = dataclasses.replace(implicit_rule(_solve, forward=_solve_forward), hvp=_solve_hvp)

RULES = {"matvec": matvec, "matmul": matmul, "linear_solve": linear_solve}
