"""The hand-written rules: matrix-free JVPs and VJPs on NumPy/SciPy.

One file per family, mirroring ``reference/``; every rule reuses the primal's
residuals (factorisations included) through :class:`impls.rules.Rule`.
"""

from adjointbench.impls.numpy import (batched, elementwise, implicit, linalg, ode, reductions, scalar,
                         sensitivity)
from adjointbench.impls.rules import RuleImplementation


class NumpyImplementation(RuleImplementation):
    name = "numpy"
    rules = {name: rule for family in (scalar, elementwise, linalg, reductions, implicit,
                                                ode, batched)
             for name, rule in family.RULES.items()}


    def gradient_methods(self, problem: str) -> tuple[str, ...]:
        return sensitivity.gradient_methods(problem)

    def prepare_gradient(self, problem: str, method: str, theta, device: str = "cpu"):
        return sensitivity.prepare_gradient(problem, method, theta, device)


implementation = NumpyImplementation()
