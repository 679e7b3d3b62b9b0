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


def elementwise(f, derivative):
    def primal(x):
        y = np.empty_like(x)
        for i in range(x.size):
            y[i] = f(x[i])
        return y
    return materialised_rule(primal, diagonal_jacobian(derivative))


RULES = {
    "broadcast_sin": elementwise(np.sin, np.cos),
    "broadcast_tanh": elementwise(np.tanh, lambda t: 1 - np.tanh(t) ** 2),
}
