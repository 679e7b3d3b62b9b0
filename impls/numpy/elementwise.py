"""Elementwise rules: the derivative is diagonal, so JVP and VJP are products."""

import numpy as np

from adjointbench.impls.rules import Rule


def diagonal_rule(f, derivative_from, second_derivative_from) -> Rule:
    """y = f(x) entrywise; dy = f'(x) dx, x_bar = f'(x) y_bar; the Hessian of
    <w, f> is diagonal too: H u = f''(x) w u."""
    def forward(x):
        y = f(x)
        return y, derivative_from(x, y)

    def hvp(inputs, w, u):
        x = inputs["x"]
        return (second_derivative_from(x, f(x)) * w * u,)
    return Rule(primal=lambda x: f(x), forward=forward,
                jvp=lambda slope, dx: slope * dx,
                vjp=lambda slope, y_bar: (slope * y_bar,), hvp=hvp)


RULES = {
    "broadcast_sin": diagonal_rule(np.sin, lambda x, y: np.cos(x), lambda x, y: -y),
    # tanh' = 1 - tanh^2 and tanh'' = -2 tanh (1 - tanh^2), from the output
    "broadcast_tanh": diagonal_rule(np.tanh, lambda x, y: 1 - y * y,
                                    lambda x, y: -2 * y * (1 - y * y)),
}
