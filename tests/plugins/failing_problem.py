"""A declared problem whose primal raises above its smallest size, and rules
for it: the reference's fault, which no implementation is to be blamed for."""

import numpy as np

from adjointbench import declare_problem
from adjointbench.impls.rules import Rule, RuleImplementation


def _primal(xp, x):
    if len(x) > 4:
        raise TypeError("this primal breaks above size 4")
    return xp.exp(x)


problem = declare_problem("fails_above_4", inputs=("x",), sizes=(4, 16), primal=_primal,
                          generate=lambda size, rng: {"x": rng.standard_normal(size)})


class ExpRules(RuleImplementation):
    name = "exp_rules"
    rules = {"fails_above_4": Rule(primal=lambda x: np.exp(x),
                                   forward=lambda x: (np.exp(x), np.exp(x)),
                                   jvp=lambda y, t: y * t, vjp=lambda y, w: (y * w,))}


implementation = ExpRules()
