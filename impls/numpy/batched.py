"""Batched rules: per-sample functions applied to every column, no mixing."""

import numpy as np

from adjointbench.impls.numpy.elementwise import diagonal_rule
from adjointbench.impls.rules import Rule


# y = tanh(W x + b), per column.  dy = s (W dx);  x_bar = W^T (s y_bar), s = 1 - y^2.
def _dense(W, b, x):
    return np.tanh(W @ x + b[:, None])


def _dense_forward(W, b, x):
    y = _dense(W, b, x)
    return y, (W, 1 - y * y)


batched_dense = Rule(primal=_dense, forward=_dense_forward,
                     jvp=lambda res, dx: res[1] * (res[0] @ dx),
                     vjp=lambda res, y_bar: (res[0].T @ (res[1] * y_bar),))


# s = softmax of each column.  ds = s (dx - <s, dx>);  x_bar = s (s_bar - <s, s_bar>),
# the inner products taken per column.
def _column_softmax(x):
    e = np.exp(x - np.max(x, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def _column_dot(a, b):
    return np.sum(a * b, axis=0, keepdims=True)


batched_softmax = Rule(primal=_column_softmax, forward=lambda x: (_column_softmax(x),) * 2,
                       jvp=lambda s, dx: s * (dx - _column_dot(s, dx)),
                       vjp=lambda s, s_bar: (s * (s_bar - _column_dot(s, s_bar)),))

RULES = {"batched_dense": batched_dense, "batched_softmax": batched_softmax,
         "batched_sin": diagonal_rule(np.sin, lambda x, y: np.cos(x), lambda x, y: -y)}
