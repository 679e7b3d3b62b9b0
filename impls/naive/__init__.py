"""The naive implementation: explicit loops that materialise every Jacobian
block, then multiply it by the tangent or cotangent. Slow by design, and the
easiest rules to audit."""

from adjointbench.impls.naive import elementwise, implicit, linalg, ode, reductions, scalar
from adjointbench.impls.rules import RuleImplementation


class NaiveImplementation(RuleImplementation):
    name = "naive"
    max_input_elements = 4096  # J of matmul at 32 x 32 is already 1024 x 2048
    rules = {name: rule for family in (scalar, elementwise, linalg, reductions, implicit, ode)
             for name, rule in family.RULES.items()}


implementation = NaiveImplementation()
