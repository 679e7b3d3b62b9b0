"""Primals written once for every framework whose AD traces array code.

Each family file defines ``f(xp, **inputs)`` against a small namespace ``xp``
(exp, sin, tanh, sum, max, abs, sign, minimum, solve, diag, fori, and
column_max / column_sum, reductions over axis 0 keeping it; axpy, a x + y,
and scale, a x, for a Python number a, and lift, fixed inputs tied to
differentiated ones before a loop: all three spare torch's forward mode its
ZeroTensor tangents, as ``a * x`` would not (a JVP through 32 products
``x * 3.0`` took 10 ms, 0.6 ms by scale; the same numbers)); JAX and
PyTorch each supply one, and their own AD differentiates straight through,
iterations included. Solvers run a fixed number of iterations, so the
derivative is the derivative of what was computed. Tables, each merged over
the family files that define it: ``PRIMALS`` (primitives), ``LOSSES``
(sensitivity problems' J(xp, theta, **data)), ``RESIDUALS`` and ``IMPLICIT``
(solutions declared with their residual), ``ADJOINTS`` and ``ADJOINT``
(solutions with a continuous-adjoint rule).
"""

import sys

from adjointbench.impls.families import merged

_package = sys.modules[__name__]
PRIMALS = merged(_package, "PRIMALS")
LOSSES = merged(_package, "LOSSES")
RESIDUALS = merged(_package, "RESIDUALS")
IMPLICIT = merged(_package, "IMPLICIT")
ADJOINTS = merged(_package, "ADJOINTS")
ADJOINT = merged(_package, "ADJOINT")
