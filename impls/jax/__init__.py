"""JAX, in one module: the array namespace of the traceable primals, the
framework adapter (jax.jvp, jax.vjp, jacfwd, jacrev under jit) that serves
the harness and the helper API, and the implementations built on it.

Importing this module changes no JAX setting. The harness's own worker turns
on float64 (``jax_enable_x64``) when it prepares a cell; the helper API
computes in the dtype of the arrays it is given.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from adjointbench.impls.autodiff import (Framework, custom_rule_implementation,
                                         per_sample_loop_implementation, unrolled_implementation)


def _fori(n, body, init):
    return jax.lax.fori_loop(0, n, lambda i, carry: body(carry), init)


def _iterates(n, body, init):
    """init and its n successors under body, stacked."""
    def step(carry, _):
        nxt = body(carry)
        return nxt, nxt
    return jnp.concatenate([init[None], jax.lax.scan(step, init, None, length=n)[1]])


XP = SimpleNamespace(exp=jnp.exp, sin=jnp.sin, tanh=jnp.tanh, sum=jnp.sum, max=jnp.max,
                     abs=jnp.abs, sign=jnp.sign, minimum=jnp.minimum, diag=jnp.diag,
                     solve=jnp.linalg.solve, fori=_fori, iterates=_iterates,
                     sqrt=jnp.sqrt, cos=jnp.cos, stack=jnp.stack, concat=jnp.concatenate,
                     axpy=lambda a, x, y: a * x + y, scale=lambda a, x: a * x,
                     lift=lambda constants, like: constants,
                     const=lambda a, like: jnp.asarray(a, dtype=like.dtype),
                     column_max=lambda x: jnp.max(x, axis=0, keepdims=True),
                     column_sum=lambda x: jnp.sum(x, axis=0, keepdims=True))


def _gpus():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


class JaxFramework(Framework):
    name = "jax"
    xp = XP
    _jvp, _vjp, _jacfwd, _jacrev = (staticmethod(jax.jvp), staticmethod(jax.vjp),
                                    staticmethod(jax.jacfwd), staticmethod(jax.jacrev))

    def devices(self):
        return ("cpu", "cuda") if _gpus() else ("cpu",)

    def prepare_process(self):
        if not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)

    def put(self, array, dtype, device):
        target = _gpus()[0] if device == "cuda" else jax.devices("cpu")[0]
        return jax.device_put(jnp.asarray(np.asarray(array), dtype=dtype), target)

    def asarray(self, x, dtype=None):
        return jnp.asarray(x, dtype=dtype)

    def compile(self, f):
        return jax.jit(f)

    def wait(self, result):
        jax.block_until_ready(result)

    def to_numpy(self, x):
        return np.asarray(x)

    def vmap(self, g, in_axis, out_axis):
        return jax.vmap(g, in_axes=in_axis, out_axes=out_axis)

    def expand(self, x, axis):
        return jnp.expand_dims(x, axis)

    def select(self, y, axis, index):
        return jnp.take(y, index, axis=axis)

    def is_zero(self, y):
        return bool(jnp.all(y == 0))


FRAMEWORK = JaxFramework()
implementation = unrolled_implementation("jax", FRAMEWORK)
loop_implementation = per_sample_loop_implementation("jax_loop", FRAMEWORK)

# Hand-written rules (implicit function, adjoint) instead of the solvers' iterations
from adjointbench.impls.jax.implicit import adjoint_solution, implicit_solution  # noqa: E402

implicit_implementation = custom_rule_implementation("jax_implicit", FRAMEWORK,
                                                     implicit_solution, adjoint_solution)
