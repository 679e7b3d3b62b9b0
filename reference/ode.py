"""The neural ODE: u(T) for du/dt = tanh(W u + b), u(0) = u0, T = 1.

The reference flow is a Taylor-series integrator at the working precision:
the Taylor coefficients of u come from the recurrences of z = W u + b and
v = tanh z, whose derivative obeys v' = (1 - v^2) z'. With order 32 and steps
of 1/8 the truncation error is far below 1e-30 for the generated weights; the
oracle checks this by comparing two step counts.
"""

from __future__ import annotations

import mpmath
import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.problem import Problem

T_FINAL = 1.0
TAYLOR_ORDER = 32


def taylor_step(u, W, b, h, order: int = TAYLOR_ORDER):
    """One step of length h: sum_k u_k h^k with u_{k+1} = v_k / (k + 1)."""
    u_coef = [u]
    z_coef = [W @ u + b]
    v_coef = [hp.tanh(z_coef[0])]
    one_minus_p = [1 - v_coef[0] * v_coef[0]]  # coefficients of 1 - v^2
    for k in range(order):
        u_coef.append(v_coef[k] / (k + 1))
        z_coef.append(W @ u_coef[k + 1])
        # (k+1) v_{k+1} = sum_{j=0..k} (1 - v^2)_j (k+1-j) z_{k+1-j}
        acc = sum(one_minus_p[j] * ((k + 1 - j) * z_coef[k + 1 - j]) for j in range(k + 1))
        v_coef.append(acc / (k + 1))
        p_next = sum(v_coef[i] * v_coef[k + 1 - i] for i in range(k + 2))
        one_minus_p.append(-p_next)
    # Horner in h
    out = u_coef[order]
    for k in range(order - 1, -1, -1):
        out = u_coef[k] + h * out
    return out


def flow_mp(u0, W, b, steps: int = 8, order: int = TAYLOR_ORDER):
    h = mpmath.mpf(T_FINAL) / steps
    u = np.array(u0, dtype=object)
    for _ in range(steps):
        u = taylor_step(u, W, b, h, order)
    return u


def _ode_inputs(size, rng):
    return {"u0": rng.standard_normal(size),
            "W": 0.5 * rng.standard_normal((size, size)) / np.sqrt(size),
            "b": 0.5 * rng.standard_normal(size)}


PROBLEMS = (
    Problem(name="neural_ode", second_order=False,  # the oracle would difference an integration
            family="ode", inputs=("u0", "W", "b"),
            differentiable=("u0", "W", "b"), sizes=(2, 4, 8), generate=_ode_inputs,
            primal_mp=flow_mp,
            primal_mp_check=lambda u0, W, b: flow_mp(u0, W, b, steps=16),
            condition=lambda u0, W, b: float(np.exp(np.linalg.norm(W, 2) * T_FINAL)),
            accuracy_floor=1e-11,
            description="u(1) of du/dt = tanh(W u + b), the exact flow"),
)
