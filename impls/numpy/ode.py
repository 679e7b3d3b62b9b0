"""Neural ODE rules: forward sensitivities for the JVP, the continuous adjoint
for the VJP. u' = f(u) = tanh(W u + b); s = 1 - tanh^2(W u + b) = f'."""

import numpy as np

from adjointbench.impls.odeint import integrate
from adjointbench.impls.rules import Rule

T_FINAL = 1.0


def _flow(u0, W, b):
    return integrate(lambda t, u: np.tanh(W @ u + b), u0, 0.0, T_FINAL).astype(u0.dtype)


def _forward(u0, W, b):
    u1 = _flow(u0, W, b)
    return u1, (u0, W, b, u1)


def _jvp(res, du0, dW, db):
    # du' = s (W du + dW u + db), du(0) = du0
    u0, W, b, _ = res
    n = len(u0)

    def rhs(t, y):
        u, du = y[:n], y[n:]
        v = np.tanh(W @ u + b)
        return np.concatenate([v, (1 - v * v) * (W @ du + dW @ u + db)])

    return integrate(rhs, np.concatenate([u0, du0]), 0.0, T_FINAL)[n:].astype(u0.dtype)


def _vjp(res, u_bar):
    # Backwards from T with the state re-solved: a' = -W^T (s a), a(T) = u_bar;
    # W_bar' = -(s a) u^T, b_bar' = -(s a), both zero at T;  u0_bar = a(0).
    u0, W, b, u1 = res
    n = len(u0)

    def rhs(t, y):
        u, a = y[:n], y[n:2 * n]
        v = np.tanh(W @ u + b)
        sa = (1 - v * v) * a
        return np.concatenate([v, -W.T @ sa, -np.outer(sa, u).ravel(), -sa])

    y0 = np.concatenate([u1, u_bar, np.zeros(n * n + n)])
    y = integrate(rhs, y0, T_FINAL, 0.0)
    dtype = u0.dtype
    return (y[n:2 * n].astype(dtype), y[2 * n:2 * n + n * n].reshape(n, n).astype(dtype),
            y[2 * n + n * n:].astype(dtype))


RULES = {"neural_ode": Rule(primal=_flow, forward=_forward, jvp=_jvp, vjp=_vjp)}
