"""A declared problem whose smallest size has more input entries than the
oracle builds full Jacobians and Hessians for, and numpy rules for it: right,
and with the VJP's and the HVP's second term dropped
(tests/suites/test_catches_wrong_rules.py).

y = x sum(sin x): J = s I + x cos(x)^T (s = sum sin x), dense."""

import numpy as np

from adjointbench import declare_problem
from adjointbench.impls.numpy import NumpyImplementation
from adjointbench.impls.rules import Rule

SIZE = 80  # above FULL_MATRICES_MAX


def _vector(size, rng):
    return {"x": rng.uniform(-2.0, 2.0, size)}


problem = declare_problem("wide", inputs=("x",), sizes=(SIZE,), generate=_vector,
                          domain={"x": (-2.0, 2.0)}, primal=lambda xp, x: x * xp.sum(xp.sin(x)),
                          description="x sum(sin x), dense Jacobian (test plug-in)")


def _forward(x):
    s = np.sum(np.sin(x))
    return x * s, (x, s)


def _right_hvp(inputs, w, u):
    x = inputs["x"]
    c, xw = np.cos(x), np.dot(x, w)
    return (w * np.dot(c, u) + c * np.dot(u, w) - np.sin(x) * u * xw,)


right = Rule(primal=lambda x: _forward(x)[0], forward=_forward,
             jvp=lambda res, dx: res[1] * dx + res[0] * np.dot(np.cos(res[0]), dx),
             vjp=lambda res, w: (res[1] * w + np.cos(res[0]) * np.dot(res[0], w),),
             hvp=_right_hvp)
# each without one of its terms
wrong = Rule(primal=right.primal, forward=_forward, jvp=right.jvp,
             vjp=lambda res, w: (res[1] * w,),
             hvp=lambda inputs, w, u: (w * np.dot(np.cos(inputs["x"]), u)
                                       + np.cos(inputs["x"]) * np.dot(u, w),))


class _Wide(NumpyImplementation):
    def __init__(self, name, rule):
        self.name, self.rules = name, {**NumpyImplementation.rules, "wide": rule}


implementation = _Wide("wide_rules", right)
wrong_rules = _Wide("wide_wrong_rules", wrong)
