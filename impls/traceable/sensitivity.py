"""The adjoint-sensitivity problems for AD frameworks (see impls/traceable).

``LOSSES[problem](xp, theta) -> J`` differentiates through every iteration
(Newton steps, the LU of xp.solve, RK4 steps: discretise, then differentiate).
``IMPLICIT[problem] = (solve, residual, objective)`` gives the same J as
``objective(xp, x(theta), theta)`` where x solves residual(xp, x, theta) = 0,
so a framework's implicit-function rule (or, for the ODE, its adjoint rule)
can replace the iterations. Constants come from reference/ and enter through
``xp.const(array, like)``.
"""

import functools

import numpy as np

from adjointbench.impls.traceable.ode import neural_ode, neural_ode_adjoint
from adjointbench.reference import sensitivity as ref
from adjointbench.reference import sensitivity_ode as ref_ode

NEWTON_STEPS = 60
TRIPLE_ROOT_NEWTON_STEPS = 100   # linear convergence at the triple root
OSCILLATOR_SUBSTEPS = 20         # RK4 steps between observations: h = 20/99/20
DENSE_DIFFUSION_LIMIT = 2000     # the frameworks solve the diffusion system densely


def _half_sumsq(xp, r):
    return xp.sum(0.5 * r * r)


# --- linear_system: A x = theta ---
_X_REF = np.linalg.solve(ref.LINEAR_A, ref.LINEAR_B_TRUE)


def _linear_solve(xp, theta):
    return xp.solve(xp.const(ref.LINEAR_A, theta), theta)


def _linear_objective(xp, x, theta):
    return _half_sumsq(xp, x - xp.const(_X_REF, theta))


# --- scalar_nonlinear: Newton from v = 1 on the spring residual ---
_V_REF = ref.spring_solve(ref.SPRING_REF)


def _spring_solve(xp, theta):
    a, b, k = theta[0], theta[1], theta[2]
    step = lambda v: v - (ref.spring_residual(v, a, b, k, xp.sqrt)
                          / ref.spring_dv(v, a, b, k, xp.sqrt))
    return xp.fori(NEWTON_STEPS, step, 0 * theta[:1] + ref.SPRING_START)


def _spring_residual(xp, v, theta):
    return ref.spring_residual(v, theta[0], theta[1], theta[2], xp.sqrt)


# --- nonlinear_system: Newton from [0, 0] at a triple root ---
def _system_residual(xp, x, t):
    d = x[0] - x[1]
    return xp.stack([x[0] + t[0] * d**3 + t[1], t[2] * (d - t[3]) ** 3])


def _system_solve(xp, theta):
    def step(x):
        d = x[0] - x[1]
        g1, g2 = 3 * theta[0] * d**2, 3 * theta[2] * (d - theta[3]) ** 2
        jac = xp.stack([xp.stack([1 + g1, -g1]), xp.stack([g2, -g2])])
        return x - xp.solve(jac, _system_residual(xp, x, theta))
    return xp.fori(TRIPLE_ROOT_NEWTON_STEPS, step, 0 * theta[:2] + xp.const(ref.NONLINEAR_START, theta))


# --- unrolled_gd: x_{t+1} = x_t - 0.1 (theta x_t - b) ---
def _gd_step(theta):
    return lambda x: x - ref.GD_STEP * (theta[0] * x - ref.GD_B)


def _gd_final(xp, theta):
    return xp.fori(ref.GD_STEPS, _gd_step(theta), 0 * theta[0] + ref.GD_START)


def gd_trajectory(xp, theta):
    """x_0, ..., x_1000, for the unrolling curve."""
    return xp.iterates(ref.GD_STEPS, _gd_step(theta), 0 * theta[0] + ref.GD_START)


GD_IMPLICIT = (lambda xp, theta: ref.GD_B / theta,              # the fixed point x* = b / theta
               lambda xp, x, theta: theta * x - ref.GD_B,      # the gradient of f at x
               lambda xp, x, theta: x[0])


# --- diffusion: A(kappa) u = 1, dense ---
def _differences(P):
    return np.eye(P, P - 1, k=-1) - np.eye(P, P - 1)


def _diffusion_matrix(xp, theta):
    # A = D^T diag(exp theta) D / h^2
    P = theta.shape[0]
    if P > DENSE_DIFFUSION_LIMIT:
        raise NotImplementedError(f"diffusion with P = {P}: the dense solve here needs P <= "
                         f"{DENSE_DIFFUSION_LIMIT}; use the numpy methods for larger P")
    D = xp.const(_differences(P), theta)
    return (D.T * xp.exp(theta)) @ D * P**2


def _diffusion_solve(xp, theta):
    return xp.solve(_diffusion_matrix(xp, theta), 0 * theta[1:] + 1)


def _diffusion_objective(xp, u, theta):
    P = theta.shape[0]
    return _half_sumsq(xp, u - xp.const(_diffusion_obs(P), theta)) / P


@functools.cache
def _diffusion_obs(P):
    D = _differences(P)
    return np.linalg.solve((D.T * np.exp(ref.diffusion_theta_obs(P))) @ D * P**2, np.ones(P - 1))


# --- forced oscillator: RK4 with OSCILLATOR_SUBSTEPS steps between observations ---
_TIMES = ref_ode.observation_times()
_INTERVAL = _TIMES[1] - _TIMES[0]


def _oscillator_loss(weights, reference, velocity_weight):
    def loss(xp, theta):
        c, k, f, w = theta[0], theta[1], theta[2], theta[3]
        W, R = xp.const(weights, theta), xp.const(reference, theta)
        h = _INTERVAL / OSCILLATOR_SUBSTEPS
        accel = lambda t, y, v: f * xp.cos(w * t) - c * v - k * y

        def observe(i, y, v):
            return W[i] * 0.5 * ((y - R[i, 0]) ** 2 + velocity_weight * (v - R[i, 1]) ** 2)

        def rk4(state):
            t, y, v = state
            k1y, k1v = v, accel(t, y, v)
            k2y, k2v = v + 0.5 * h * k1v, accel(t + 0.5 * h, y + 0.5 * h * k1y, v + 0.5 * h * k1v)
            k3y, k3v = v + 0.5 * h * k2v, accel(t + 0.5 * h, y + 0.5 * h * k2y, v + 0.5 * h * k2v)
            k4y, k4v = v + h * k3v, accel(t + h, y + h * k3y, v + h * k3v)
            return (t + h, y + h / 6 * (k1y + 2 * k2y + 2 * k3y + k4y),
                    v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v))

        def interval(carry):
            i, t, y, v, total = carry
            t, y, v = xp.fori(OSCILLATOR_SUBSTEPS, rk4, (t, y, v))
            return i + 1, t, y, v, total + observe(i + 1, y, v)

        y0, v0 = 0 * c + ref_ode.OSCILLATOR_Y0[0], 0 * c + ref_ode.OSCILLATOR_Y0[1]
        start = (0, 0 * c, y0, v0, observe(0, y0, v0))
        return xp.fori(len(_TIMES) - 1, interval, start)[-1]
    return loss


_TERMINAL_WEIGHTS = np.zeros(len(_TIMES))
_TERMINAL_WEIGHTS[-1] = 1.0


# --- neural_ode_params: theta = (W, b) ---
def _neural_parts(xp, theta):
    n = ref_ode.neural_width(theta.shape[0])
    u0, target = ref_ode.neural_fixed_data(n)
    return (xp.const(u0, theta), theta[:n * n].reshape(n, n), theta[n * n:],
            xp.const(target, theta))


def _neural_loss(xp, theta):
    u0, W, b, target = _neural_parts(xp, theta)
    return _half_sumsq(xp, neural_ode(xp, u0, W, b) - target)


LOSSES = {
    "linear_system": lambda xp, th: _linear_objective(xp, _linear_solve(xp, th), th),
    "scalar_nonlinear": lambda xp, th: _half_sumsq(xp, _spring_solve(xp, th) - _V_REF),
    "nonlinear_system": lambda xp, th: _half_sumsq(xp, _system_solve(xp, th)),
    "unrolled_gd": _gd_final,
    "diffusion": lambda xp, th: _diffusion_objective(xp, _diffusion_solve(xp, th), th),
    "forced_oscillator_terminal": _oscillator_loss(_TERMINAL_WEIGHTS, ref_ode.reference_states(), 1.0),
    "forced_oscillator_trajectory": _oscillator_loss(ref_ode.trapezoid_weights(),
                                                     ref_ode.reference_states(), 0.0),
    "neural_ode_params": _neural_loss,
}

IMPLICIT = {
    "linear_system": (_linear_solve, lambda xp, x, th: xp.const(ref.LINEAR_A, th) @ x - th,
                      _linear_objective),
    "scalar_nonlinear": (_spring_solve, _spring_residual,
                         lambda xp, v, th: _half_sumsq(xp, v - _V_REF)),
    "nonlinear_system": (_system_solve, _system_residual, lambda xp, x, th: _half_sumsq(xp, x)),
    "diffusion": (_diffusion_solve,
                  lambda xp, u, th: _diffusion_matrix(xp, th) @ u - 1, _diffusion_objective),
    # the implicit answer is dx*/dtheta at the fixed point, not dx_1000/dtheta
    "unrolled_gd": GD_IMPLICIT,
}

# the neural ODE's flow u(1) with its continuous adjoint: (flow, adjoint, objective)
ADJOINT = {
    "neural_ode_params": (lambda xp, th: neural_ode(xp, *_neural_parts(xp, th)[:3]),
                          lambda xp, u1, u_bar, th: _neural_param_adjoint(xp, u1, u_bar, th),
                          lambda xp, u1, th: _half_sumsq(xp, u1 - _neural_parts(xp, th)[3])),
}


def _neural_param_adjoint(xp, u1, u_bar, theta):
    u0, W, b, _ = _neural_parts(xp, theta)
    _, W_bar, b_bar = neural_ode_adjoint(xp, u1, u_bar, u0, W, b)
    return (xp.concat([W_bar.reshape(-1), b_bar]),)
