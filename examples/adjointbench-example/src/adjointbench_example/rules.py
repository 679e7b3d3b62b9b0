"""Hand-written NumPy rules for both problems: the rule-table route.

Each Rule is (primal, forward, jvp, vjp): ``forward`` returns the output and
the residuals both rules reuse (here the factorised system)."""

import numpy as np
from scipy.linalg import solve_banded

from adjointbench.impls.rules import Rule, RuleImplementation


def logsumexp_forward(x):
    top = np.max(x)
    y = top + np.log(np.sum(np.exp(x - top)))
    return y, np.exp(x - y)  # the softmax is both rules' residual


logsumexp = Rule(primal=lambda x: logsumexp_forward(x)[0], forward=logsumexp_forward,
                 jvp=lambda p, dx: np.sum(p * dx), vjp=lambda p, w: (p * w,))


def _banded(lower, diag, upper):
    return np.stack([np.concatenate([[0], upper]), diag, np.concatenate([lower, [0]])])


def _transposed(lower, diag, upper):
    return _banded(upper, diag, lower)


def tridiagonal_forward(lower, diag, upper, rhs):
    x = solve_banded((1, 1), _banded(lower, diag, upper), rhs)
    return x, (x, (lower, diag, upper))


def _t_times(x, dlower, ddiag, dupper):
    """(dT) x for a tridiagonal dT."""
    out = ddiag * x
    out[1:] += dlower * x[:-1]
    out[:-1] += dupper * x[1:]
    return out


def tridiagonal_jvp(residuals, dlower, ddiag, dupper, drhs):
    x, bands = residuals  # dx = T^-1 (drhs - dT x)
    return solve_banded((1, 1), _banded(*bands), drhs - _t_times(x, dlower, ddiag, dupper))


def tridiagonal_vjp(residuals, x_bar):
    x, bands = residuals  # lam = T^-T x_bar; bar(T) = -lam x^T on the three bands
    lam = solve_banded((1, 1), _transposed(*bands), x_bar)
    return (-lam[1:] * x[:-1], -lam * x, -lam[:-1] * x[1:], lam)


tridiagonal = Rule(primal=lambda **a: tridiagonal_forward(**a)[0], forward=tridiagonal_forward,
                   jvp=tridiagonal_jvp, vjp=tridiagonal_vjp)


class ExampleRules(RuleImplementation):
    name = "example"
    rules = {"example_logsumexp": logsumexp, "example_tridiagonal_solve": tridiagonal}
    expected_outcomes = []  # nothing known to fail


implementation = ExampleRules()
