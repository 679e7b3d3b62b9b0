"""The numpy rules with three deliberate mistakes, to prove the suite sees them."""

from adjointbench.impls.numpy import NumpyImplementation
from adjointbench.impls.rules import Rule

_right = NumpyImplementation.rules


def _solve_vjp_wrong_sign(linearisation, x_bar):
    # should be -(dr/dtheta)^T lam, i.e. A_bar = -lam x^T, b_bar = lam
    return linearisation.r_theta_T(linearisation.solve_xT(x_bar))


WRONG = {
    # softmax VJP without its second term: x_bar = s * s_bar
    "softmax": Rule(_right["softmax"].primal, _right["softmax"].forward, _right["softmax"].jvp,
                    lambda s, s_bar: (s * s_bar,)),
    # matmul VJP with one factor transposed: A_bar = C_bar B (should be C_bar B^T)
    "matmul": Rule(_right["matmul"].primal, _right["matmul"].forward, _right["matmul"].jvp,
                   lambda res, C_bar: (C_bar @ res[1], res[0].T @ C_bar)),
    # linear-solve VJP with the wrong sign
    "linear_solve": Rule(_right["linear_solve"].primal, _right["linear_solve"].forward, _right["linear_solve"].jvp,
                         _solve_vjp_wrong_sign),
}


class WrongRules(NumpyImplementation):
    name = "wrong_rules"
    rules = {**_right, **WRONG}


implementation = WrongRules()
