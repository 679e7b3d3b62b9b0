"""Gradient methods for adjoint-sensitivity problems, written once.

A steady model (x solves r(x, theta) = 0, J = J(x, theta)) supplies
``solve(theta)``, ``loss(x, theta)`` and ``linearise(x, theta)`` (the
residual's :class:`impls.rules.Linearisation`, the one the implicit-function
rule uses, with the loss's partials); an ODE model supplies its dynamics,
their derivatives and its observations. The methods here never know which
problem they run:

- finite differences, forward and central, a block of shifted parameter
  vectors at a time (for ODEs, integrated together as one system, so that
  every shifted trajectory takes the same steps: the differences carry no
  noise from step-size selection, and the solver's work per step is shared);
- forward sensitivities: r_x S = -r_theta, grad = J_theta + S^T J_x (P solves);
- the adjoint: r_x^T lam = J_x, grad = J_theta - r_theta^T lam (one solve);
- for ODEs, the forward-sensitivity ODE S' = f_z S + f_theta and the
  continuous adjoint a' = -f_z^T a, mu' = -f_theta^T a, integrated backward
  with a jump a += w_i g_i at each observation (differentiate, then discretise).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy  # submodules load on first use

from adjointbench.impls.rules import Linearisation

# Steps: forward differences sqrt(eps) (truncation h against rounding eps/h),
# central differences eps^(1/3) (h^2 against eps/h), scaled by max(1, |theta_i|).
FD_FORWARD_STEP = np.finfo(np.float64).eps ** 0.5
FD_CENTRAL_STEP = np.finfo(np.float64).eps ** (1 / 3)
SENSITIVITY_CHUNK = 256
FD_CHUNK = 256  # shifted parameter vectors evaluated together (an ODE's: as one system)
ODE_RTOL, ODE_ATOL = 1e-12, 1e-14
QUADRATURE_NODES = 6  # Gauss-Legendre nodes per adjoint step: order 12 > DOP853's 8


def _row_by_row(loss: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda rows: np.array([loss(row) for row in rows])


def _chunks(size: int, chunk: int):
    """Index arrays of at most ``chunk`` consecutive parameters."""
    return (np.arange(start, min(start + chunk, size)) for start in range(0, size, chunk))


def _shifted(theta: np.ndarray, index: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """One row per parameter of ``index``: theta with steps[j] added to theta[index[j]]."""
    rows = np.repeat(theta[None, :], len(index), axis=0)
    rows[np.arange(len(index)), index] += steps
    return rows


def fd_forward(loss: Callable[[np.ndarray], float], theta: np.ndarray,
               losses: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Forward differences; ``losses(rows)``, J at each row of a block of
    parameter vectors (default ``loss`` row by row), takes the base point
    with each block of shifted points."""
    losses, grad = losses or _row_by_row(loss), np.empty(len(theta))
    h = FD_FORWARD_STEP * np.maximum(1.0, np.abs(theta))
    for index in _chunks(len(theta), FD_CHUNK):
        plus = _shifted(theta, index, h[index])
        values = losses(np.concatenate([theta[None, :], plus]))
        grad[index] = (values[1:] - values[0]) / (plus[np.arange(len(index)), index] - theta[index])
    return grad


def fd_central(loss: Callable[[np.ndarray], float], theta: np.ndarray,
               losses: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Central differences; ``losses`` as for :func:`fd_forward`, each
    block holding the points on both sides."""
    losses, grad = losses or _row_by_row(loss), np.empty(len(theta))
    h = FD_CENTRAL_STEP * np.maximum(1.0, np.abs(theta))
    for index in _chunks(len(theta), FD_CHUNK):
        plus, minus = _shifted(theta, index, h[index]), _shifted(theta, index, -h[index])
        values, rows = losses(np.concatenate([plus, minus])), np.arange(len(index))
        grad[index] = ((values[:len(index)] - values[len(index):])
                       / (plus[rows, index] - minus[rows, index]))
    return grad


# --- steady problems ---

@dataclass(frozen=True)
class SteadyLinearisation:
    residual: Linearisation  # r_theta applies to a (P,) vector or a (P, k) block
    J_x: np.ndarray
    J_theta: np.ndarray


@dataclass(frozen=True)
class SteadyModel:
    solve: Callable[[np.ndarray], np.ndarray]
    loss: Callable[[np.ndarray, np.ndarray], float]
    linearise: Callable[[np.ndarray, np.ndarray], SteadyLinearisation]

    def loss_of_theta(self, theta):
        return self.loss(self.solve(theta), theta)


def matrix_linearisation(solve_x, solve_xT, r_theta) -> Linearisation:
    """A residual whose dr/dtheta is a (dense or sparse) matrix."""
    return Linearisation(solve_x, solve_xT, lambda d: r_theta @ d, lambda lam: (r_theta.T @ lam,))


def _dense(block):
    return block.toarray() if scipy.sparse.issparse(block) else np.asarray(block)


def steady_forward_sensitivity(model: SteadyModel, theta: np.ndarray) -> np.ndarray:
    # S = dx/dtheta = -r_x^-1 r_theta, P columns in chunks;  grad = J_theta + S^T J_x
    x = model.solve(theta)
    lin = model.linearise(x, theta)
    grad = np.array(lin.J_theta, dtype=np.float64)
    for index in _chunks(len(theta), SENSITIVITY_CHUNK):
        columns = np.zeros((len(theta), len(index)))  # the unit vectors e_i, i in index
        columns[index, np.arange(len(index))] = 1.0
        S = -lin.residual.solve_x(_dense(lin.residual.r_theta(columns)))
        grad[index] += S.T @ lin.J_x
    return grad


def steady_adjoint(model: SteadyModel, theta: np.ndarray) -> np.ndarray:
    # r_x^T lam = J_x;  grad = J_theta - r_theta^T lam  (the implicit rule's transpose)
    x = model.solve(theta)
    lin = model.linearise(x, theta)
    lam = lin.residual.solve_xT(lin.J_x)
    return lin.J_theta - lin.residual.r_theta_T(lam)[0]


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
    # (t, z, theta, a) -> (f, f_z^T a) in one evaluation, sharing their work (the
    # adjoint's right-hand side); default from f and f_z
    f_and_f_z_T: Callable | None = None
    # (t, Z, thetas) -> f of k systems at once, Z (k, n), thetas (k, P): finite
    # differences' blocks; default f row by row
    f_rows: Callable | None = None

    def observed(self) -> list[tuple[int, float, float]]:
        """(i, t_i, w_i) of the observations with a nonzero weight, in time
        order. The others add nothing to J, to its gradient or to the
        adjoint's jumps, so no integration stops at them: a loss on the
        final state of a trajectory observed 100 times integrates [0, T]
        once instead of in 100 pieces."""
        return [(i, t, w) for i, (t, w) in enumerate(zip(self.times, self.weights)) if w != 0]


def _integrate(rhs, y0, t0, t1, dense=False):
    if t0 == t1:
        return None, np.asarray(y0, dtype=np.float64)
    sol = scipy.integrate.solve_ivp(rhs, (t0, t1), np.asarray(y0, dtype=np.float64),
                                    method="DOP853", rtol=ODE_RTOL, atol=ODE_ATOL,
                                    dense_output=dense)
    if not sol.success:
        raise RuntimeError(f"ODE integration failed: {sol.message}")
    return sol, sol.y[:, -1]


def _forward_pass(model: OdeModel, theta) -> list[np.ndarray]:
    """z at each of ``model.observed()``'s times."""
    z, t, states = model.z0, 0.0, []
    for _, t_next, _ in model.observed():
        _, z = _integrate(lambda s, y: model.f(s, y, theta), z, t, t_next)
        states.append(z)
        t = t_next
    return states


def ode_loss(model: OdeModel, theta: np.ndarray) -> float:
    states = _forward_pass(model, theta)
    return float(sum(w * model.obs_loss(z, i) for (i, _, w), z in zip(model.observed(), states)))


def ode_losses(model: OdeModel, thetas: np.ndarray) -> np.ndarray:
    """J at each row of ``thetas``, their k systems integrated together as
    one (k n components) on one sequence of steps."""
    k, n = len(thetas), len(model.z0)
    f_rows = model.f_rows or (lambda t, Z, ths: np.stack([model.f(t, z, th)
                                                          for z, th in zip(Z, ths)]))
    rhs = lambda t, y: f_rows(t, y.reshape(k, n), thetas).ravel()
    y, t, total = np.tile(np.asarray(model.z0, dtype=np.float64), k), 0.0, np.zeros(k)
    for i, t_next, w in model.observed():
        _, y = _integrate(rhs, y, t, t_next)
        total += [w * model.obs_loss(z, i) for z in y.reshape(k, n)]
        t = t_next
    return total


def ode_forward_sensitivity(model: OdeModel, theta: np.ndarray) -> np.ndarray:
    n, P = len(model.z0), len(theta)

    def rhs(t, y):
        z, S = y[:n], y[n:].reshape(n, P)
        dS = model.f_z(t, z, theta) @ S + model.f_theta(t, z, theta)
        return np.concatenate([model.f(t, z, theta), dS.ravel()])

    y, t, grad = np.concatenate([model.z0, np.zeros(n * P)]), 0.0, np.zeros(P)
    for i, t_next, w in model.observed():
        _, y = _integrate(rhs, y, t, t_next)
        grad += w * (y[n:].reshape(n, P).T @ model.obs_grad(y[:n], i))
        t = t_next
    return grad


@functools.cache
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    """QUADRATURE_NODES Gauss-Legendre nodes and weights on [-1, 1], formed
    once (an eigenvalue problem: 12 % of the adjoint's time when formed per
    interval)."""
    return np.polynomial.legendre.leggauss(QUADRATURE_NODES)


def _gauss_nodes(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on each interval between consecutive
    ``times``: sum(weights * g(nodes)) integrates g over their span."""
    x, w = _legendre()
    times = np.sort(times)
    half, middle = np.diff(times)[:, None] / 2, (times[:-1] + times[1:])[:, None] / 2
    return np.ravel(middle + half * x), np.ravel(half * w)


def ode_adjoint(model: OdeModel, theta: np.ndarray) -> np.ndarray:
    """The continuous adjoint (Chen et al. 2018, alg. 1): the state is
    integrated back from each observation together with the adjoint,
    (z, a)' = (f, -f_z^T a), under the ODE tolerances, so nothing of the
    forward pass is stored or interpolated. The parameter sensitivity
    mu = int f_theta^T a dt is a quadrature over the backward pass's own steps
    (Gauss-Legendre on its dense output, of higher order than the
    integrator), so P parameters cost P-vector products at a few nodes per
    step instead of an (n + P)-dimensional integration.
    """
    observed = model.observed()
    states = _forward_pass(model, theta)
    n, P = len(model.z0), len(theta)
    a, mu = np.zeros(n), np.zeros(P)
    both = model.f_and_f_z_T or (lambda t, z, th, v: (model.f(t, z, th),
                                                      model.f_z(t, z, th).T @ v))

    def rhs(t, y):
        f, back = both(t, y[:n], theta, y[n:])
        return np.concatenate([f, -back])

    for j in range(len(observed) - 1, -1, -1):
        i, t1, weight = observed[j]
        t0 = observed[j - 1][1] if j > 0 else 0.0
        a = a + weight * model.obs_grad(states[j], i)
        if t0 == t1:
            continue
        backward, y_start = _integrate(rhs, np.concatenate([states[j], a]), t1, t0, dense=True)
        nodes, weights = _gauss_nodes(backward.t)
        y = backward.sol(nodes)
        mu = mu + sum(w * model.f_theta_T(t, y[:n, k], theta, y[n:, k])
                      for k, (t, w) in enumerate(zip(nodes, weights)))
        a = y_start[n:]
    return mu


def steady_methods(model: SteadyModel) -> dict:
    """Every method of a steady model: theta -> gradient."""
    return {"fd_forward": lambda th: fd_forward(model.loss_of_theta, th),
            "fd_central": lambda th: fd_central(model.loss_of_theta, th),
            "forward_sensitivity": lambda th: steady_forward_sensitivity(model, th),
            "adjoint": lambda th: steady_adjoint(model, th)}


def ode_methods(model: OdeModel) -> dict:
    """Every method of an ODE model: theta -> gradient."""
    loss, losses = (lambda th: ode_loss(model, th)), (lambda rows: ode_losses(model, rows))
    return {"fd_forward": lambda th: fd_forward(loss, th, losses),
            "fd_central": lambda th: fd_central(loss, th, losses),
            "forward_sensitivity": lambda th: ode_forward_sensitivity(model, th),
            "adjoint": lambda th: ode_adjoint(model, th)}


def gradient_table(model_of: Callable[..., Any], methods_of: Callable[[Any], dict],
                   names: tuple[str, ...] = ("fd_forward", "fd_central", "forward_sensitivity",
                                             "adjoint")) -> dict:
    """{method: gradient(theta, **data) -> (dJ/dtheta,)} for a model built from
    the problem's data (``model_of(P, **data)``)."""
    def method(name):
        return lambda theta, **data: (methods_of(model_of(len(theta), **data))[name](theta),)
    return {name: method(name) for name in names}


def fd_hvp(gradient: Callable[[np.ndarray], np.ndarray], theta: np.ndarray,
           u: np.ndarray) -> np.ndarray:
    """H u by central differences of the gradient along u, the step eps^(1/3)
    scaled by max(1, |theta|) over |u| (both in the max norm)."""
    size = float(np.max(np.abs(u), initial=0.0))
    if size == 0:
        return np.zeros_like(theta)
    h = FD_CENTRAL_STEP * max(1.0, float(np.max(np.abs(theta)))) / size
    return (gradient(theta + h * u) - gradient(theta - h * u)) / (2 * h)


def hvp_table(model_of: Callable[..., SteadyModel], second_order_adjoint: Callable) -> dict:
    """{method: hvp(inputs, w, u) -> (H u,)} for the loss of a steady model
    built from the problem's data (``model_of(P, **data)``), H the Hessian of
    w J: by ``second_order_adjoint(theta, u, **data)`` (the tangent of the
    adjoint gradient along u, written per problem), and by central differences
    of the adjoint gradient along u."""
    def split(inputs):
        data = {k: v for k, v in inputs.items() if k != "theta"}
        return inputs["theta"], data

    def adjoint(inputs, w, u):
        theta, data = split(inputs)
        return (w * second_order_adjoint(theta, u, **data),)

    def fd_gradient(inputs, w, u):
        theta, data = split(inputs)
        model = model_of(len(theta), **data)
        return (w * fd_hvp(lambda th: steady_adjoint(model, th), theta, u),)

    return {"second_order_adjoint": adjoint, "fd_gradient": fd_gradient}


def loss_of(model_of: Callable[..., Any], loss: Callable[[Any, np.ndarray], float]) -> Callable:
    """J(theta, **data) of a model built as :func:`gradient_table` builds it:
    the primal a gradient's cost is measured against."""
    return lambda theta, **data: loss(model_of(len(theta), **data), theta)

