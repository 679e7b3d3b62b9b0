"""Scalar primitives: the Jacobian blocks are the partial derivatives."""

import numpy as np

from adjointbench.impls.rules import materialised_rule


def _one(x):
    return np.ones_like(x)


def _entries(*rows):
    """A Hessian from its entries, each a scalar array."""
    return np.array([[np.ravel(e)[0] for e in row] for row in rows])


RULES = {
    # the second partial derivatives of <w, f>, entry by entry
    "scalar_add": materialised_rule(lambda x, y: x + y, lambda x, y: (_one(x), _one(y)),
                                    lambda w, x, y: _entries([0 * w, 0 * w], [0 * w, 0 * w])),
    "scalar_mul": materialised_rule(lambda x, y: x * y, lambda x, y: (y, x),
                                    lambda w, x, y: _entries([0 * w, w], [w, 0 * w])),
    "scalar_sin": materialised_rule(lambda x: np.sin(x), lambda x: (np.cos(x),),
                                    lambda w, x: _entries([-np.sin(x) * w])),
}
