"""Reduction rules: the l2 loss and the softmax."""

import numpy as np

from adjointbench.impls.rules import Rule


# L = 0.5 ||r||^2, r = y - y_ref.  dL = <r, dy>;  y_bar = L_bar r;  H u = L_bar u.
def _l2_forward(y, y_ref):
    r = y - y_ref
    return 0.5 * np.dot(r, r), r


l2_loss = Rule(primal=lambda y, y_ref: _l2_forward(y, y_ref)[0], forward=_l2_forward,
               jvp=lambda r, dy: np.dot(r, dy),
               vjp=lambda r, L_bar: (L_bar * r,),
               hvp=lambda inputs, L_bar, u: (L_bar * u,))


# s = softmax(x).  ds = s (dx - <s, dx>);  x_bar = s (s_bar - <s, s_bar>).
# Its tangent along u, with ds = s (u - <s, u>):
#   d x_bar = ds (s_bar - <s, s_bar>) - s <ds, s_bar>.
def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def _softmax_hvp(inputs, s_bar, u):
    s = _softmax(inputs["x"])
    ds = s * (u - np.dot(s, u))
    return (ds * (s_bar - np.dot(s, s_bar)) - s * np.dot(ds, s_bar),)


softmax = Rule(primal=_softmax, forward=lambda x: (_softmax(x),) * 2,
               jvp=lambda s, dx: s * (dx - np.dot(s, dx)),
               vjp=lambda s, s_bar: (s * (s_bar - np.dot(s, s_bar)),),
               hvp=_softmax_hvp)

RULES = {"l2_loss": l2_loss, "softmax": softmax}
