"""Adjoint-sensitivity problems through an ODE: the forced oscillator (two
losses) and a neural ODE with P weights. See reference/steady_state.py: the
fixed data (initial state, observation times, reference states, weights,
targets) are non-differentiable inputs."""

from __future__ import annotations

from functools import cache

import mpmath
import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.ode import flow_mp
from adjointbench.reference.steady_state import _sumsq, sensitivity_problem

# --- 4. forced_oscillator: y'' + c y' + k y = f cos(w t), y(0) = 0.5, y'(0) = 0 ---
OSCILLATOR_THETA = np.array([0.4, 1.8, 0.6, 1.1])       # (c, k, f, w)
OSCILLATOR_REF_THETA = np.array([0.5, 2.0, 0.5, 1.05])
OSCILLATOR_Y0 = np.array([0.5, 0.0])
OSCILLATOR_T = 20.0
OBSERVATIONS = 100


def observation_times() -> np.ndarray:
    return np.linspace(0.0, OSCILLATOR_T, OBSERVATIONS)


def trapezoid_weights() -> np.ndarray:
    h = OSCILLATOR_T / (OBSERVATIONS - 1)
    weights = np.full(OBSERVATIONS, h)
    weights[[0, -1]] = h / 2
    return weights


def oscillator_state_mp(theta, t, y0=None):
    """(y, y') at time t from y(0) = y0, y'(0) = 0, in closed form (underdamped: c^2 < 4 k)."""
    c, k, f, w = theta
    denominator = (k - w * w) ** 2 + (c * w) ** 2
    A, B = f * (k - w * w) / denominator, f * c * w / denominator  # y_p = A cos wt + B sin wt
    sigma, wd = c / 2, mpmath.sqrt(k - c * c / 4)
    C1 = (mpmath.mpf(OSCILLATOR_Y0[0]) if y0 is None else y0) - A
    C2 = (sigma * C1 - B * w) / wd
    decay, cos_d, sin_d = mpmath.exp(-sigma * t), mpmath.cos(wd * t), mpmath.sin(wd * t)
    y = decay * (C1 * cos_d + C2 * sin_d) + A * mpmath.cos(w * t) + B * mpmath.sin(w * t)
    dy = (decay * ((wd * C2 - sigma * C1) * cos_d - (sigma * C2 + wd * C1) * sin_d)
          - A * w * mpmath.sin(w * t) + B * w * mpmath.cos(w * t))
    return y, dy


def reference_states() -> np.ndarray:
    """(y_ref, y_ref') at every observation time, float64, from the closed form:
    a fresh copy each call (the caller may change it), of states computed once."""
    return _reference_states().copy()


@cache
def _reference_states() -> np.ndarray:
    """The 100 closed-form states of ``reference_states``, read-only: 36 ms of
    mpmath that every input point of both oscillator problems asked for anew.
    Computed at 53 bits whatever precision the first caller works at, so that
    the inputs never depend on who asked first."""
    with mpmath.workprec(53):
        theta = hp.to_mp(OSCILLATOR_REF_THETA)
        states = np.array([[float(v) for v in oscillator_state_mp(theta, mpmath.mpf(t))]
                           for t in observation_times()])
    states.flags.writeable = False
    return states


def _oscillator_data(observed_state):
    """theta, y0 = (y, y')(0), the observation times, the reference states
    (y_ref, y_ref') at each, the quadrature weights and which components of
    the state the loss observes."""
    terminal = observed_state == "position and velocity at T"
    weights = np.zeros(OBSERVATIONS) if terminal else trapezoid_weights()
    if terminal:
        weights[-1] = 1.0
    components = np.array([1.0, 1.0]) if terminal else np.array([1.0, 0.0])
    return lambda size, rng: {"theta": OSCILLATOR_THETA, "y0": OSCILLATOR_Y0,
                              "times": observation_times(), "y_ref": reference_states(),
                              "weights": weights, "components": components}


def _oscillator_mp(theta, y0, times, y_ref, weights, components):
    # J = sum_i w_i 0.5 sum_c s_c (z_c(t_i) - z_ref_c(t_i))^2
    total = mpmath.mpf(0)
    for t, reference, w in zip(times, y_ref, weights):
        if w != 0:
            state = oscillator_state_mp(theta, t, y0[0])
            total += w * _sumsq([s * (z - r) for s, z, r in zip(components, state, reference)])
    return np.array(total, dtype=object)


# --- 6b. neural_ode_params: u' = tanh(W u + b), theta = (W, b) flattened, P = n^2 + n;
# J = 0.5 ||u(1) - u_target||^2 with u0 and u_target seeded by n.
NEURAL_WIDTHS = (2, 8, 32, 100)
NEURAL_SIZES = tuple(n * n + n for n in NEURAL_WIDTHS)
NEURAL_TAYLOR_ORDER = 24


def _neural_width(P: int) -> int:
    n = int(round((np.sqrt(1 + 4 * P) - 1) / 2))
    if n * n + n != P:
        raise ValueError(f"neural_ode_params needs P = n^2 + n, got P = {P}; "
                         f"valid sizes: {', '.join(map(str, NEURAL_SIZES))}")
    return n


def _neural_fixed_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(u0, u_target), float32-exact, seeded by the width alone."""
    rng = np.random.default_rng([2024, n])
    u0, target = rng.standard_normal(n), 0.5 * rng.standard_normal(n)
    return (u0.astype(np.float32).astype(np.float64), target.astype(np.float32).astype(np.float64))


def _split_weights(theta, n: int):
    return np.reshape(theta[:n * n], (n, n)), theta[n * n:]


def _neural_generate(P, rng):
    n = _neural_width(P)
    W = 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)
    u0, target = _neural_fixed_data(n)
    return {"theta": np.concatenate([W.ravel(), 0.5 * rng.standard_normal(n)]),
            "u0": u0, "target": target}


def _neural_mp(theta, u0, target, steps: int = 8):
    n = _neural_width(len(theta))
    W, b = _split_weights(theta, n)
    u1 = flow_mp(u0, W, b, steps=steps, order=NEURAL_TAYLOR_ORDER)
    return np.array(_sumsq(u1 - target), dtype=object)


def _adjoint_ode(name, inputs, sizes, generate, primal_mp, condition, description, **kw):
    return sensitivity_problem(name, inputs, sizes, generate, primal_mp, condition, description,
                               "adjoint_ode", **kw)


_OSCILLATOR_INPUTS = ("y0", "times", "y_ref", "weights", "components")

PROBLEMS = (
    _adjoint_ode("forced_oscillator_terminal", _OSCILLATOR_INPUTS, (4,),
                 _oscillator_data("position and velocity at T"), _oscillator_mp,
                 lambda **_: 1.0,
                 "y'' + c y' + k y = f cos wt: J = 0.5 ||(y, y')(20) - ref||^2"),
    _adjoint_ode("forced_oscillator_trajectory", _OSCILLATOR_INPUTS, (4,),
                 _oscillator_data("position along the trajectory"), _oscillator_mp,
                 lambda **_: 1.0,
                 "the same oscillator: J = trapezoid of 0.5 (y(t) - y_ref(t))^2, 100 times"),
    _adjoint_ode("neural_ode_params", ("u0", "target"), NEURAL_SIZES, _neural_generate,
                 _neural_mp,
                 lambda theta, **_: float(np.exp(np.linalg.norm(
                     _split_weights(theta, _neural_width(len(theta)))[0], 2))),
                 "J = 0.5 ||u(1) - u_target||^2 for a neural ODE with P = n^2 + n weights",
                 primal_mp_check=lambda theta, u0, target: _neural_mp(theta, u0, target, steps=16)),
)
