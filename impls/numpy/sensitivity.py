"""The adjoint-sensitivity problems as NumPy/SciPy models, for the shared
gradient methods of impls/sensitivity.py (finite differences, forward
sensitivities, the adjoint)."""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg
import scipy.sparse

from adjointbench.impls import sensitivity as methods
from adjointbench.impls.sensitivity import Linearisation, OdeModel, SteadyModel
from adjointbench.reference import sensitivity as ref
from adjointbench.reference import sensitivity_ode as ref_ode


def _dense_linearisation(r_x, r_theta, J_x, J_theta):
    lu = scipy.linalg.lu_factor(r_x)
    return Linearisation(lambda rhs: scipy.linalg.lu_solve(lu, rhs),
                         lambda rhs: scipy.linalg.lu_solve(lu, rhs, trans=1),
                         r_theta, J_x, J_theta)


# r = A x - theta;  r_x = A, r_theta = -I;  J = 0.5 ||x - x_ref||^2
_LINEAR_LU = scipy.linalg.lu_factor(ref.LINEAR_A)
_X_REF = scipy.linalg.lu_solve(_LINEAR_LU, ref.LINEAR_B_TRUE)
linear_system = SteadyModel(
    solve=lambda theta: scipy.linalg.lu_solve(_LINEAR_LU, theta),
    loss=lambda x, theta: 0.5 * float(np.sum((x - _X_REF) ** 2)),
    linearise=lambda x, theta: _dense_linearisation(ref.LINEAR_A, -np.eye(3), x - _X_REF,
                                                    np.zeros(3)))


# r = k (a - v) g - F, g = 1 - b/s, s = sqrt(b^2 + 2 a v - v^2):
#   r_a = k g + k (a - v) b v / s^3,  r_b = k (a - v) (b^2/s^3 - 1/s),  r_k = (a - v) g
def _spring_r_theta(v, theta):
    a, b, k = theta
    s = np.sqrt(b * b + 2 * a * v - v * v)
    g = 1 - b / s
    return np.array([[k * g + k * (a - v) * b * v / s**3, k * (a - v) * (b * b / s**3 - 1 / s),
                      (a - v) * g]])


_V_REF = ref.spring_solve(ref.SPRING_REF)
scalar_nonlinear = SteadyModel(
    solve=lambda theta: np.array([ref.spring_solve(theta)]),
    loss=lambda x, theta: 0.5 * float((x[0] - _V_REF) ** 2),
    linearise=lambda x, theta: _dense_linearisation(
        np.array([[ref.spring_dv(x[0], *theta)]]), _spring_r_theta(x[0], theta),
        x - _V_REF, np.zeros(3)))


# r1 = x0 + t0 d^3 + t1, r2 = t2 (d - t3)^3, d = x0 - x1
def _system_r_theta(x, t):
    d = x[0] - x[1]
    return np.array([[d**3, 1.0, 0.0, 0.0], [0.0, 0.0, (d - t[3]) ** 3, -3 * t[2] * (d - t[3]) ** 2]])


nonlinear_system = SteadyModel(
    solve=ref.system_solve,
    loss=lambda x, theta: 0.5 * float(np.sum(x * x)),
    linearise=lambda x, theta: _dense_linearisation(ref.system_dx(x, theta),
                                                    _system_r_theta(x, theta), x, np.zeros(4)))


# A(kappa) = D^T diag(kappa) D / h^2 on interior nodes; r = A u - 1;
# r_theta[:, i] = kappa_i (D^T e_i)(D U)_i / h^2 with U the solution padded by zeros.
def _difference_operator(P):
    return scipy.sparse.diags([-np.ones(P - 1), np.ones(P - 1)], [0, -1], shape=(P, P - 1),
                              format="csr")


def _diffusion_banded(kappa):
    P = len(kappa)
    h2 = (1.0 / P) ** 2
    ab = np.zeros((3, P - 1))
    ab[0, 1:] = -kappa[1:-1] / h2
    ab[1] = (kappa[:-1] + kappa[1:]) / h2
    ab[2, :-1] = -kappa[1:-1] / h2
    return ab


def _diffusion_solve(theta):
    return scipy.linalg.solve_banded((1, 1), _diffusion_banded(np.exp(theta)), np.ones(len(theta) - 1))


def _diffusion_linearise(u, theta):
    P = len(theta)
    kappa, h = np.exp(theta), 1.0 / P
    D = _difference_operator(P)
    ab = _diffusion_banded(kappa)  # symmetric: A^T = A
    solve = lambda rhs: scipy.linalg.solve_banded((1, 1), ab, rhs)
    r_theta = D.T @ scipy.sparse.diags(kappa * (D @ u) / h**2)
    return Linearisation(solve, solve, r_theta.tocsc(), h * (u - _diffusion_obs(P)), np.zeros(P))


@functools.cache
def _diffusion_obs(P):
    return _diffusion_solve(ref.diffusion_theta_obs(P))


diffusion = SteadyModel(
    solve=_diffusion_solve,
    loss=lambda u, theta: 0.5 / len(theta) * float(np.sum((u - _diffusion_obs(len(theta))) ** 2)),
    linearise=_diffusion_linearise)


# --- ODE models ---
# z = (y, y'), z' = (y', f cos(w t) - c y' - k y)
def _oscillator_f(t, z, th):
    c, k, f, w = th
    return np.array([z[1], f * np.cos(w * t) - c * z[1] - k * z[0]])


def _oscillator_f_z(t, z, th):
    return np.array([[0.0, 1.0], [-th[1], -th[0]]])


def _oscillator_f_theta(t, z, th):
    c, k, f, w = th
    return np.array([[0.0, 0.0, 0.0, 0.0],
                     [-z[1], -z[0], np.cos(w * t), -f * t * np.sin(w * t)]])


_TIMES = ref_ode.observation_times()
_REF_STATES = ref_ode.reference_states()


def _oscillator(times, weights, reference, components):
    return OdeModel(
        z0=ref_ode.OSCILLATOR_Y0, f=_oscillator_f, f_z=_oscillator_f_z,
        f_theta=_oscillator_f_theta,
        f_theta_T=lambda t, z, th, a: _oscillator_f_theta(t, z, th).T @ a,
        times=times, weights=weights,
        obs_loss=lambda z, i: 0.5 * float(np.sum((z - reference[i])[components] ** 2)),
        obs_grad=lambda z, i: np.where(components, z - reference[i], 0.0))


forced_oscillator_terminal = _oscillator(_TIMES[-1:], np.ones(1), _REF_STATES[-1:],
                                         np.array([True, True]))
forced_oscillator_trajectory = _oscillator(_TIMES, ref_ode.trapezoid_weights(), _REF_STATES,
                                           np.array([True, False]))


# u' = tanh(W u + b), theta = (W, b);  s = 1 - u'^2:
#   f_u = s W,  f_W = s_j u_k at (j, (j, k)),  f_b = diag(s);  f_theta^T a = ((s a) u^T, s a)
def _neural_model(P):
    n = ref_ode.neural_width(P)
    u0, target = ref_ode.neural_fixed_data(n)

    def parts(u, th):
        W, b = ref_ode.split_weights(th, n)
        v = np.tanh(W @ u + b)
        return W, v, 1 - v * v

    def f_theta(t, u, th):
        _, _, s = parts(u, th)
        dW = np.einsum("j,jl,k->jlk", s, np.eye(n), u).reshape(n, n * n)
        return np.concatenate([dW, np.diag(s)], axis=1)

    def f_theta_T(t, u, th, a):
        _, _, s = parts(u, th)
        return np.concatenate([np.outer(s * a, u).ravel(), s * a])

    return OdeModel(
        z0=u0, f=lambda t, u, th: parts(u, th)[1],
        f_z=lambda t, u, th: parts(u, th)[2][:, None] * parts(u, th)[0],
        f_theta=f_theta, f_theta_T=f_theta_T,
        times=np.array([1.0]), weights=np.ones(1),
        obs_loss=lambda u, i: 0.5 * float(np.sum((u - target) ** 2)),
        obs_grad=lambda u, i: u - target)


def _unrolled_gd_loss(theta):
    x = ref.GD_START
    for _ in range(ref.GD_STEPS):
        x = x - ref.GD_STEP * (theta[0] * x - ref.GD_B)
    return x


STEADY = {"linear_system": linear_system, "scalar_nonlinear": scalar_nonlinear,
          "nonlinear_system": nonlinear_system, "diffusion": diffusion}
ODE = {"forced_oscillator_terminal": lambda P: forced_oscillator_terminal,
       "forced_oscillator_trajectory": lambda P: forced_oscillator_trajectory,
       "neural_ode_params": _neural_model}


def _methods_of(problem: str, P: int) -> dict:
    if problem in STEADY:
        model = STEADY[problem]
        loss = model.loss_of_theta
        exact = {"forward_sensitivity": lambda th: methods.steady_forward_sensitivity(model, th),
                 "adjoint": lambda th: methods.steady_adjoint(model, th)}
    elif problem in ODE:
        model = ODE[problem](P)
        loss = lambda th: methods.ode_loss(model, th)
        exact = {"forward_sensitivity": lambda th: methods.ode_forward_sensitivity(model, th),
                 "adjoint": lambda th: methods.ode_adjoint(model, th)}
    elif problem == "unrolled_gd":
        loss, exact = _unrolled_gd_loss, {}
    else:
        return {}
    return {"fd_forward": lambda th: methods.fd_forward(loss, th),
            "fd_central": lambda th: methods.fd_central(loss, th), **exact}


GRADIENT_METHODS = ("fd_forward", "fd_central", "forward_sensitivity", "adjoint")


def gradient_methods(problem: str) -> tuple[str, ...]:
    if problem in STEADY or problem in ODE:
        return GRADIENT_METHODS
    return GRADIENT_METHODS[:2] if problem == "unrolled_gd" else ()


def prepare_gradient(problem: str, method: str, theta: np.ndarray, device: str = "cpu"):
    """The gradient of ``problem``'s loss at ``theta`` by ``method``, ready to run."""
    from adjointbench.impls.protocol import Prepared

    run = _methods_of(problem, len(theta))[method]
    return Prepared(lambda: run(theta))
