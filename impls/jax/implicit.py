"""Custom rules in JAX: implicit-function rules with jax.custom_jvp, adjoint
rules with jax.custom_vjp.

x(theta) solves r(x, theta) = 0:  dx = -(dr/dx)^-1 (dr/dtheta dtheta). The JVP
is linear in the tangents, so JAX transposes it for the VJP and jacrev.
"""

import jax
import jax.numpy as jnp


def implicit_solution(solve, residual):
    """``solve(*params) -> x`` with its derivative taken from ``residual(x, *params)``."""
    solution = jax.custom_jvp(solve)

    @solution.defjvp
    def _(params, tangents):
        x = solution(*params)
        dr = jax.jvp(lambda *p: residual(x, *p), params, tangents)[1]
        drdx = jax.jacfwd(lambda y: residual(y, *params))(x).reshape(x.size, x.size)
        dx = -jnp.linalg.solve(drdx, dr.reshape(-1)).reshape(x.shape)
        return x, dx

    return solution


def adjoint_solution(primal, adjoint):
    """``primal(*params) -> y`` whose VJP is ``adjoint(y, y_bar, *params)``
    (reverse mode only: custom_vjp has no JVP)."""
    solution = jax.custom_vjp(primal)

    def forward(*params):
        y = primal(*params)
        return y, (y, params)

    def backward(saved, y_bar):
        y, params = saved
        return tuple(adjoint(y, y_bar, *params))

    solution.defvjp(forward, backward)
    return solution
