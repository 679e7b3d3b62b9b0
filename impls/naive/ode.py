"""The neural ODE with its full sensitivity matrix integrated alongside.

S = du/d(u0, W, b) obeys S' = diag(s) (W S + dz/d(W, b)), S(0) = [I, 0, 0],
with z = W u + b and s = 1 - tanh^2(z).
"""

import numpy as np

from adjointbench.impls.odeint import integrate
from adjointbench.impls.rules import materialised_rule

T_FINAL = 1.0


def _flow(u0, W, b):
    return integrate(lambda t, u: np.tanh(W @ u + b), u0, 0.0, T_FINAL).astype(u0.dtype)


def _sensitivity_rhs(W, b, n):
    params = n + n * n + n

    def rhs(t, y):
        u, S = y[:n], y[n:].reshape(n, params)
        v = np.tanh(W @ u + b)
        dz = W @ S
        for k in range(n):
            for l in range(n):
                dz[k, n + k * n + l] += u[l]  # dz_k / dW_kl
            dz[k, n + n * n + k] += 1.0        # dz_k / db_k
        return np.concatenate([v, ((1 - v * v)[:, None] * dz).ravel()])

    return rhs


def _sensitivities(u0, W, b):
    n = len(u0)
    S0 = np.zeros((n, n + n * n + n))
    S0[:, :n] = np.eye(n)
    y = integrate(_sensitivity_rhs(W, b, n), np.concatenate([u0, S0.ravel()]), 0.0, T_FINAL)
    S = y[n:].reshape(n, -1).astype(u0.dtype)
    return S[:, :n], S[:, n:n + n * n].reshape(n, n, n), S[:, n + n * n:]


RULES = {"neural_ode": materialised_rule(_flow, _sensitivities)}
