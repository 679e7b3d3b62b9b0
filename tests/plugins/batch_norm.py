"""A dense layer that centres x over the batch before tanh(W x + b): its rules
are right for what it computes, but samples mix, so no per-sample Jacobian exists."""

import numpy as np

from adjointbench.impls.numpy import NumpyImplementation
from adjointbench.impls.rules import Rule


def _centre(x):
    return x - np.mean(x, axis=-1, keepdims=True)


# y = tanh(W c(x) + b), c = centring over the batch (self-adjoint).
def _forward(W, b, x):
    y = np.tanh(W @ _centre(x) + b[:, None])
    return y, (W, 1 - y * y)


batch_norm_dense = Rule(primal=lambda W, b, x: _forward(W, b, x)[0], forward=_forward,
                        jvp=lambda res, dx: res[1] * (res[0] @ _centre(dx)),
                        vjp=lambda res, y_bar: (_centre(res[0].T @ (res[1] * y_bar)),))


class BatchNorm(NumpyImplementation):
    name = "batch_norm"
    rules = {"batched_dense": batch_norm_dense}


implementation = BatchNorm()
