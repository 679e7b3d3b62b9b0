"""logsumexp with a hand-written reverse-mode rule (jax.custom_vjp)."""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def logsumexp(x):
    top = jax.lax.stop_gradient(jnp.max(x))
    return top + jnp.log(jnp.sum(jnp.exp(x - top)))


def _forward(x):
    y = logsumexp(x)
    return y, (x, y)


def _backward(residuals, y_bar):
    x, y = residuals
    return (y_bar * jnp.exp(x - y),)


logsumexp.defvjp(_forward, _backward)
