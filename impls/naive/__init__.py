"""The naive implementation: explicit loops that materialise every Jacobian
block, then multiply it by the tangent or cotangent. Slow by design, and the
easiest rules to audit. ``RULES`` is merged over the family files."""

import sys

from adjointbench.impls.families import merged
from adjointbench.impls.rules import RuleImplementation


class NaiveImplementation(RuleImplementation):
    name = "naive"
    max_input_elements = 4096  # J of matmul at 32 x 32 is already 1024 x 2048
    max_second_order_elements = 512  # H of softmax at 1024 alone takes 5 s of loops
    second_order_method = "materialised"
    rules = merged(sys.modules[__name__], "RULES")


implementation = NaiveImplementation()
