"""Custom rules in JAX: the implicit-function rule (impls/autodiff.py)
registered with jax.custom_jvp, and adjoint rules with jax.custom_vjp. The
JVP is linear in the tangents, so JAX transposes it for the VJP and jacrev.
"""

import jax

from adjointbench.impls.autodiff import implicit_tangent


def implicit_solution(solve, residual):
    """``solve(*params) -> x`` with its derivative taken from ``residual(x, *params)``."""
    from adjointbench.impls.jax import FRAMEWORK

    solution = jax.custom_jvp(solve)

    @solution.defjvp
    def _(params, tangents):
        x = solution(*params)
        return x, implicit_tangent(FRAMEWORK, residual, x, params, tangents)

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
