"""A declared problem whose primal raises above its smallest size, and rules
for it: the reference's fault, which no implementation is to be blamed for."""

import math

import numpy as np

from adjointbench import declare_problem
from adjointbench.impls.rules import Rule, RuleImplementation


def _primal(xp, x):
    if len(x) > 4:
        raise TypeError("this primal breaks above size 4")
    return xp.exp(x)


problem = declare_problem("fails_above_4", inputs=("x",), sizes=(4, 16), primal=_primal,
                          generate=lambda size, rng: {"x": rng.standard_normal(size)})


# its high-precision primal computes in float64 (math.exp of each entry)
rounded = declare_problem("exp_in_float64", inputs=("x",), sizes=(4,),
                          primal=lambda xp, x: xp.stack([math.exp(v) for v in x]),
                          generate=lambda size, rng: {"x": rng.standard_normal(size)})

EXP = Rule(primal=lambda x: np.exp(x), forward=lambda x: (np.exp(x), np.exp(x)),
           jvp=lambda y, t: y * t, vjp=lambda y, w: (y * w,))


class ExpRules(RuleImplementation):
    name = "exp_rules"
    rules = {"fails_above_4": EXP, "exp_in_float64": EXP}


implementation = ExpRules()
