"""The hand-written rules: matrix-free JVPs and VJPs on NumPy/SciPy, and the
gradient methods of the sensitivity problems.

One file per family, mirroring ``reference/``; every rule reuses the primal's
residuals (factorisations included) through :class:`impls.rules.Rule`. The
tables ``RULES`` and ``GRADIENTS`` are merged over the family files.
"""

import sys

from adjointbench.impls.families import merged
from adjointbench.impls.rules import RuleImplementation


class NumpyImplementation(RuleImplementation):
    name = "numpy"
    rules = merged(sys.modules[__name__], "RULES")
    gradients = merged(sys.modules[__name__], "GRADIENTS")
    hvps = merged(sys.modules[__name__], "HVPS")
    losses = merged(sys.modules[__name__], "LOSSES")


implementation = NumpyImplementation()
