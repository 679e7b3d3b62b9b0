"""JAX: jax.jvp, jax.vjp, jacfwd and jacrev under jit, float64 enabled."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from adjointbench.impls.autodiff import (custom_rule_implementation, per_sample_loop_implementation,
                            unrolled_implementation)

jax.config.update("jax_enable_x64", True)


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
                     const=lambda a, like: jnp.asarray(a, dtype=like.dtype),
                     column_max=lambda x: jnp.max(x, axis=0, keepdims=True),
                     column_sum=lambda x: jnp.sum(x, axis=0, keepdims=True))


def _gpus():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


class JaxFramework:
    name = "jax"
    xp = XP

    def devices(self):
        return ("cpu", "cuda") if _gpus() else ("cpu",)

    def put(self, array, dtype, device):
        target = _gpus()[0] if device == "cuda" else jax.devices("cpu")[0]
        return jax.device_put(jnp.asarray(np.asarray(array), dtype=dtype), target)

    def compile(self, f):
        return jax.jit(f)

    def wait(self, result):
        jax.block_until_ready(result)

    def to_numpy(self, x):
        return np.asarray(x)

    def jvp(self, f, primals, tangents):
        return jax.jvp(f, primals, tangents)[1]

    def vjp(self, f, primals, cotangent):
        return jax.vjp(f, *primals)[1](cotangent)

    def jacfwd(self, f, primals):
        return jax.jacfwd(f, argnums=tuple(range(len(primals))))(*primals)

    def jacrev(self, f, primals):
        return jax.jacrev(f, argnums=tuple(range(len(primals))))(*primals)

    def vmap_jacobian(self, g, x):
        return jax.vmap(jax.jacfwd(g), in_axes=-1, out_axes=-1)(x)


FRAMEWORK = JaxFramework()
implementation = unrolled_implementation("jax", FRAMEWORK)
loop_implementation = per_sample_loop_implementation("jax_loop", FRAMEWORK)

# Hand-written rules (implicit function, adjoint) instead of the solvers' iterations
from adjointbench.impls.jax.implicit import adjoint_solution, implicit_solution  # noqa: E402

implicit_implementation = custom_rule_implementation("jax_implicit", FRAMEWORK,
                                                     implicit_solution, adjoint_solution)
