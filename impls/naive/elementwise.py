"""Elementwise primitives: a loop fills the diagonal Jacobian."""

import numpy as np

from adjointbench.impls.rules import materialised_rule


def diagonal_jacobian(derivative):
    def jacobian(x):
        J = np.zeros((x.size, x.size), dtype=x.dtype)
        for i in range(x.size):
            J[i, i] = derivative(x[i])
        return (J,)
    return jacobian


def diagonal_hessian(second_derivative):
    # the Hessian of <w, f> is diagonal: H_ii = w_i f''(x_i)
    def hessian(w, x):
        H = np.zeros((x.size, x.size), dtype=x.dtype)
        for i in range(x.size):
            H[i, i] = w[i] * second_derivative(x[i])
        return H
    return hessian


def elementwise(f, derivative, second_derivative):
    def primal(x):
        y = np.empty_like(x)
        for i in range(x.size):
            y[i] = f(x[i])
        return y
    return materialised_rule(primal, diagonal_jacobian(derivative),
                             diagonal_hessian(second_derivative))


RULES = {
    "broadcast_sin": elementwise(np.sin, np.cos, lambda t: -np.sin(t)),
    "broadcast_tanh": elementwise(np.tanh, lambda t: 1 - np.tanh(t) ** 2,
                                  lambda t: -2 * np.tanh(t) * (1 - np.tanh(t) ** 2)),
}
