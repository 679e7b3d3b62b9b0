"""Primals written once for every framework whose AD traces array code.

Each family file defines ``f(xp, **inputs)`` against a small namespace ``xp``
(exp, sin, tanh, sum, max, abs, sign, minimum, solve, diag, fori, and
column_max / column_sum, reductions over axis 0 keeping it); JAX and
PyTorch each supply one, and their own AD differentiates straight through,
iterations included. Solvers run a fixed number of iterations, so the
derivative is the derivative of what was computed.
"""

from adjointbench.impls.traceable import batched, elementwise, implicit, linalg, ode, reductions, scalar

FAMILIES = (scalar, elementwise, linalg, reductions, implicit, ode, batched)
PRIMALS = {name: f for family in FAMILIES
           for name, f in family.PRIMALS.items()}
