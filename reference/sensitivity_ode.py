"""Adjoint-sensitivity problems through an ODE: the forced oscillator (two
losses) and a neural ODE with P weights. See reference/sensitivity.py."""

from __future__ import annotations

import mpmath
import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.ode import flow_mp
from adjointbench.reference.sensitivity import _fixed, _sensitivity, _sumsq

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


def oscillator_state_mp(theta, t):
    """(y, y') at time t, in closed form (underdamped: c^2 < 4 k)."""
    c, k, f, w = theta
    denominator = (k - w * w) ** 2 + (c * w) ** 2
    A, B = f * (k - w * w) / denominator, f * c * w / denominator  # y_p = A cos wt + B sin wt
    sigma, wd = c / 2, mpmath.sqrt(k - c * c / 4)
    C1 = mpmath.mpf(OSCILLATOR_Y0[0]) - A
    C2 = (sigma * C1 - B * w) / wd
    decay, cos_d, sin_d = mpmath.exp(-sigma * t), mpmath.cos(wd * t), mpmath.sin(wd * t)
    y = decay * (C1 * cos_d + C2 * sin_d) + A * mpmath.cos(w * t) + B * mpmath.sin(w * t)
    dy = (decay * ((wd * C2 - sigma * C1) * cos_d - (sigma * C2 + wd * C1) * sin_d)
          - A * w * mpmath.sin(w * t) + B * w * mpmath.cos(w * t))
    return y, dy


def reference_states() -> np.ndarray:
    """(y_ref, y_ref') at every observation time, float64, from the closed form."""
    theta = hp.to_mp(OSCILLATOR_REF_THETA)
    return np.array([[float(v) for v in oscillator_state_mp(theta, mpmath.mpf(t))]
                     for t in observation_times()])


def _terminal_mp(theta):
    T = mpmath.mpf(OSCILLATOR_T)
    y, ref = oscillator_state_mp(theta, T), oscillator_state_mp(hp.to_mp(OSCILLATOR_REF_THETA), T)
    return np.array(_sumsq([y[0] - ref[0], y[1] - ref[1]]), dtype=object)


def _trajectory_mp(theta):
    reference = hp.to_mp(OSCILLATOR_REF_THETA)
    total = mpmath.mpf(0)
    for t, weight in zip(hp.to_mp(observation_times()), hp.to_mp(trapezoid_weights())):
        total += weight * _sumsq([oscillator_state_mp(theta, t)[0] - oscillator_state_mp(reference, t)[0]])
    return np.array(total, dtype=object)


# --- 6b. neural_ode_params: u' = tanh(W u + b), theta = (W, b) flattened, P = n^2 + n;
# J = 0.5 ||u(1) - u_target||^2 with u0 and u_target seeded by n.
NEURAL_WIDTHS = (2, 8, 32, 100)
NEURAL_SIZES = tuple(n * n + n for n in NEURAL_WIDTHS)
NEURAL_TAYLOR_ORDER = 24


def neural_width(P: int) -> int:
    n = int(round((np.sqrt(1 + 4 * P) - 1) / 2))
    if n * n + n != P:
        raise ValueError(f"neural_ode_params needs P = n^2 + n, got P = {P}; "
                         f"valid sizes: {', '.join(map(str, NEURAL_SIZES))}")
    return n


def neural_fixed_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(u0, u_target), float32-exact, seeded by the width alone."""
    rng = np.random.default_rng([2024, n])
    u0, target = rng.standard_normal(n), 0.5 * rng.standard_normal(n)
    return (u0.astype(np.float32).astype(np.float64), target.astype(np.float32).astype(np.float64))


def split_weights(theta, n: int):
    return np.reshape(theta[:n * n], (n, n)), theta[n * n:]


def _neural_generate(P, rng):
    n = neural_width(P)
    W = 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)
    return {"theta": np.concatenate([W.ravel(), 0.5 * rng.standard_normal(n)])}


def _neural_mp(theta, steps: int = 8):
    n = neural_width(len(theta))
    W, b = split_weights(theta, n)
    u0, target = (hp.to_mp(a) for a in neural_fixed_data(n))
    u1 = flow_mp(u0, W, b, steps=steps, order=NEURAL_TAYLOR_ORDER)
    return np.array(_sumsq(u1 - target), dtype=object)


PROBLEMS = (
    _sensitivity("forced_oscillator_terminal", (4,), _fixed(OSCILLATOR_THETA), _terminal_mp,
                 lambda theta: 1.0,
                 "y'' + c y' + k y = f cos wt: J = 0.5 ||(y, y')(20) - ref||^2"),
    _sensitivity("forced_oscillator_trajectory", (4,), _fixed(OSCILLATOR_THETA), _trajectory_mp,
                 lambda theta: 1.0,
                 "the same oscillator: J = trapezoid of 0.5 (y(t) - y_ref(t))^2, 100 times"),
    _sensitivity("neural_ode_params", NEURAL_SIZES, _neural_generate, _neural_mp,
                 lambda theta: float(np.exp(np.linalg.norm(
                     split_weights(theta, neural_width(len(theta)))[0], 2))),
                 "J = 0.5 ||u(1) - u_target||^2 for a neural ODE with P = n^2 + n weights",
                 primal_mp_check=lambda theta: _neural_mp(theta, steps=16)),
)
