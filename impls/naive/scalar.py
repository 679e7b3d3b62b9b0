"""Scalar primitives: the Jacobian blocks are the partial derivatives."""

import numpy as np

from adjointbench.impls.rules import materialised_rule


def _one(x):
    return np.ones_like(x)


RULES = {
    "scalar_add": materialised_rule(lambda x, y: x + y, lambda x, y: (_one(x), _one(y))),
    "scalar_mul": materialised_rule(lambda x, y: x * y, lambda x, y: (y, x)),
    "scalar_sin": materialised_rule(lambda x: np.sin(x), lambda x: (np.cos(x),)),
}
