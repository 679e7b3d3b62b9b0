"""Gradient methods for adjoint-sensitivity problems, written once.

A steady model (x solves r(x, theta) = 0, J = J(x, theta)) supplies
``solve(theta)``, ``loss(x, theta)`` and ``linearise(x, theta)``; an ODE model
supplies its dynamics, their derivatives and its observations. The methods
here never know which problem they run:

- finite differences, forward and central, one parameter at a time;
- forward sensitivities: r_x S = -r_theta, grad = J_theta + S^T J_x (P solves);
- the adjoint: r_x^T lam = J_x, grad = J_theta - r_theta^T lam (one solve);
- for ODEs, the forward-sensitivity ODE S' = f_z S + f_theta and the
  continuous adjoint a' = -f_z^T a, mu' = -f_theta^T a, integrated backward
  with a jump a += w_i g_i at each observation (differentiate, then discretise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse
from scipy.integrate import solve_ivp

# Steps: forward differences sqrt(eps) (truncation h against rounding eps/h),
# central differences eps^(1/3) (h^2 against eps/h), scaled by max(1, |theta_i|).
FD_FORWARD_STEP = np.finfo(np.float64).eps ** 0.5
FD_CENTRAL_STEP = np.finfo(np.float64).eps ** (1 / 3)
SENSITIVITY_CHUNK = 256
ODE_RTOL, ODE_ATOL = 1e-12, 1e-14


def fd_forward(loss: Callable[[np.ndarray], float], theta: np.ndarray) -> np.ndarray:
    base, grad = loss(theta), np.empty(len(theta))
    for i in range(len(theta)):
        h = FD_FORWARD_STEP * max(1.0, abs(theta[i]))
        shifted = theta.copy()
        shifted[i] += h
        grad[i] = (loss(shifted) - base) / (shifted[i] - theta[i])
    return grad


def fd_central(loss: Callable[[np.ndarray], float], theta: np.ndarray) -> np.ndarray:
    grad = np.empty(len(theta))
    for i in range(len(theta)):
        h = FD_CENTRAL_STEP * max(1.0, abs(theta[i]))
        plus, minus = theta.copy(), theta.copy()
        plus[i] += h
        minus[i] -= h
        grad[i] = (loss(plus) - loss(minus)) / (plus[i] - minus[i])
    return grad


# --- steady problems ---

@dataclass(frozen=True)
class Linearisation:
    solve_x: Callable[[np.ndarray], np.ndarray]   # rhs -> r_x^-1 rhs (reused factorisation)
    solve_xT: Callable[[np.ndarray], np.ndarray]  # rhs -> r_x^-T rhs
    r_theta: np.ndarray | scipy.sparse.spmatrix    # (n, P)
    J_x: np.ndarray
    J_theta: np.ndarray


@dataclass(frozen=True)
class SteadyModel:
    solve: Callable[[np.ndarray], np.ndarray]
    loss: Callable[[np.ndarray, np.ndarray], float]
    linearise: Callable[[np.ndarray, np.ndarray], Linearisation]

    def loss_of_theta(self, theta):
        return self.loss(self.solve(theta), theta)


def _dense(block):
    return block.toarray() if scipy.sparse.issparse(block) else np.asarray(block)


def steady_forward_sensitivity(model: SteadyModel, theta: np.ndarray) -> np.ndarray:
    x = model.solve(theta)
    lin = model.linearise(x, theta)
    grad = np.array(lin.J_theta, dtype=np.float64)
    for start in range(0, len(theta), SENSITIVITY_CHUNK):
        columns = slice(start, start + SENSITIVITY_CHUNK)
        S = -lin.solve_x(_dense(lin.r_theta[:, columns]))
        grad[columns] += S.T @ lin.J_x
    return grad


def steady_adjoint(model: SteadyModel, theta: np.ndarray) -> np.ndarray:
    x = model.solve(theta)
    lin = model.linearise(x, theta)
    lam = lin.solve_xT(lin.J_x)
    return lin.J_theta - lin.r_theta.T @ lam


# --- ODE problems: z' = f(t, z, theta), z(0) = z0, J = sum_i w_i l(z(t_i), i) ---

@dataclass(frozen=True)
class OdeModel:
    z0: np.ndarray
    f: Callable            # (t, z, theta) -> z'
    f_z: Callable          # (t, z, theta) -> (n, n)
    f_theta: Callable      # (t, z, theta) -> (n, P)
    f_theta_T: Callable    # (t, z, theta, a) -> f_theta^T a, (P,)
    times: np.ndarray      # observation times, ascending, the last one is T
    weights: np.ndarray
    obs_loss: Callable     # (z, i) -> l_i
    obs_grad: Callable     # (z, i) -> dl_i/dz


def _integrate(rhs, y0, t0, t1, dense=False):
    if t0 == t1:
        return None, np.asarray(y0, dtype=np.float64)
    sol = solve_ivp(rhs, (t0, t1), np.asarray(y0, dtype=np.float64), method="DOP853",
                    rtol=ODE_RTOL, atol=ODE_ATOL, dense_output=dense)
    if not sol.success:
        raise RuntimeError(f"ODE integration failed: {sol.message}")
    return sol, sol.y[:, -1]


def _forward_pass(model: OdeModel, theta, dense=False):
    """z at each observation time, and (optionally) the dense solution per segment."""
    z, t, states, segments = model.z0, 0.0, [], []
    for t_next in model.times:
        sol, z = _integrate(lambda s, y: model.f(s, y, theta), z, t, t_next, dense)
        segments.append((t, t_next, sol))
        states.append(z)
        t = t_next
    return states, segments


def ode_loss(model: OdeModel, theta: np.ndarray) -> float:
    states, _ = _forward_pass(model, theta)
    return float(sum(w * model.obs_loss(z, i) for i, (w, z) in enumerate(zip(model.weights, states))))


def ode_forward_sensitivity(model: OdeModel, theta: np.ndarray) -> np.ndarray:
    n, P = len(model.z0), len(theta)

    def rhs(t, y):
        z, S = y[:n], y[n:].reshape(n, P)
        dS = model.f_z(t, z, theta) @ S + model.f_theta(t, z, theta)
        return np.concatenate([model.f(t, z, theta), dS.ravel()])

    y, t, grad = np.concatenate([model.z0, np.zeros(n * P)]), 0.0, np.zeros(P)
    for i, (t_next, w) in enumerate(zip(model.times, model.weights)):
        _, y = _integrate(rhs, y, t, t_next)
        grad += w * (y[n:].reshape(n, P).T @ model.obs_grad(y[:n], i))
        t = t_next
    return grad


def ode_adjoint(model: OdeModel, theta: np.ndarray) -> np.ndarray:
    """The continuous adjoint, backward through the stored dense forward solution."""
    states, segments = _forward_pass(model, theta, dense=True)
    n, P = len(model.z0), len(theta)
    a, mu = np.zeros(n), np.zeros(P)
    for i in range(len(model.times) - 1, -1, -1):
        a = a + model.weights[i] * model.obs_grad(states[i], i)
        t0, t1, sol = segments[i]
        if sol is None:
            continue

        def rhs(t, y, sol=sol):
            z = sol.sol(t)
            return np.concatenate([-model.f_z(t, z, theta).T @ y[:n],
                                   -model.f_theta_T(t, z, theta, y[:n])])

        _, y = _integrate(rhs, np.concatenate([a, mu]), t1, t0)
        a, mu = y[:n], y[n:]
    return mu
