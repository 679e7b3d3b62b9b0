"""The ODE sensitivity problems as NumPy/SciPy models for the shared gradient
methods (impls/gradient_methods.py): the forced oscillator and the neural
ODE's weights, built from the problems' data."""

from __future__ import annotations

import numpy as np

from adjointbench.impls.gradient_methods import (OdeModel, gradient_table, loss_of, ode_loss,
                                                 ode_methods)


# z = (y, y'), z' = (y', f cos(w t) - c y' - k y)
def _oscillator_f(t, z, th):
    c, k, f, w = th
    return np.array([z[1], f * np.cos(w * t) - c * z[1] - k * z[0]])


def _oscillator_f_rows(t, Z, ths):
    c, k, f, w = ths.T
    return np.stack([Z[:, 1], f * np.cos(w * t) - c * Z[:, 1] - k * Z[:, 0]], axis=1)


def _oscillator_f_z(t, z, th):
    return np.array([[0.0, 1.0], [-th[1], -th[0]]])


def _oscillator_f_theta(t, z, th):
    c, k, f, w = th
    return np.array([[0.0, 0.0, 0.0, 0.0],
                     [-z[1], -z[0], np.cos(w * t), -f * t * np.sin(w * t)]])


def _oscillator(P, y0, times, y_ref, weights, components):
    # J = sum_i w_i 0.5 sum_c s_c (z_c(t_i) - ref_ic)^2;  dJ_i/dz = s (z - ref_i)
    return OdeModel(
        z0=y0, f=_oscillator_f, f_rows=_oscillator_f_rows, f_z=_oscillator_f_z,
        f_theta=_oscillator_f_theta,
        f_theta_T=lambda t, z, th, a: _oscillator_f_theta(t, z, th).T @ a,
        times=times, weights=weights,
        obs_loss=lambda z, i: 0.5 * float(np.sum(components * (z - y_ref[i]) ** 2)),
        obs_grad=lambda z, i: components * (z - y_ref[i]))


# u' = tanh(W u + b), theta = (W, b);  s = 1 - u'^2:
#   f_u = s W,  f_W = s_j u_k at (j, (j, k)),  f_b = diag(s);  f_theta^T a = ((s a) u^T, s a),
#   f_u^T a = W^T (s a)
def _neural(P, u0, target):
    n = len(u0)

    def parts(u, th):
        W, b = th[:n * n].reshape(n, n), th[n * n:]
        v = np.tanh(W @ u + b)
        return W, v, 1 - v * v

    def f_theta(t, u, th):
        _, _, s = parts(u, th)
        dW = np.einsum("j,jl,k->jlk", s, np.eye(n), u).reshape(n, n * n)
        return np.concatenate([dW, np.diag(s)], axis=1)

    def f_theta_T(t, u, th, a):
        _, _, s = parts(u, th)
        return np.concatenate([np.outer(s * a, u).ravel(), s * a])

    def f_rows(t, U, ths):  # k systems: W_k u_k + b_k as one batched product
        W, b = ths[:, :n * n].reshape(-1, n, n), ths[:, n * n:]
        return np.tanh((W @ U[:, :, None])[:, :, 0] + b)

    def f_and_f_z_T(t, u, th, a):  # one tanh(W u + b) for both: 12 % of the adjoint
        W, v, s = parts(u, th)
        return v, W.T @ (s * a)

    return OdeModel(
        z0=u0, f=lambda t, u, th: parts(u, th)[1],
        f_z=lambda t, u, th: parts(u, th)[2][:, None] * parts(u, th)[0],
        f_theta=f_theta, f_theta_T=f_theta_T, f_and_f_z_T=f_and_f_z_T, f_rows=f_rows,
        times=np.array([1.0]), weights=np.ones(1),
        obs_loss=lambda u, i: 0.5 * float(np.sum((u - target) ** 2)),
        obs_grad=lambda u, i: u - target)


GRADIENTS = {
    "forced_oscillator_terminal": gradient_table(_oscillator, ode_methods),
    "forced_oscillator_trajectory": gradient_table(_oscillator, ode_methods),
    "neural_ode_params": gradient_table(_neural, ode_methods),
}

# J(theta) by the same model: the primal of the harness's adjoint benchmark
LOSSES = {"neural_ode_params": loss_of(_neural, ode_loss)}
