"""Check your own function's derivative rules, from a test.

    from adjointbench.testing import check_rules, check_function

    check_rules(f, x, jvp=my_jvp, vjp=my_vjp)        # hand-written rules, NumPy
    check_function(softplus, "jax-reverse", x)      # a jax.custom_vjp function
    check_function(TriSolve.apply, "torch-reverse", a, b, c, d)
    check_function(f, "jax-forward-over-reverse", x,  # second derivatives
                   reference=HighPrecision(lambda xp, x: ...))

Both compare against a reference at several input points (the arguments
given, then ``points - 1`` points near them: each entry scaled by up to
exp(+-0.2), signs kept), check the identities <w, J u> = <J^T w, u> and
linearity, check that a second call returns the same (reentrancy) and that
no argument, tangent or cotangent was written to (purity). They return a
:class:`CheckResult` with the error of every check, and raise
``AssertionError`` with the harness's message (operation, input point,
worst element, error, tolerance, condition, reference level) when a check
fails or cannot be judged; its ``.result`` is the :class:`CheckResult`.

The reference (``reference=``), strongest first:

- :class:`ClosedForm` ``(lambda x, ...: sympy expression)``: exact;
- :class:`HighPrecision` ``(lambda xp, x, ...: ...)``: the primal written once
  against the harness's array namespace, run at 40 digits with mpmath;
- a problem from :func:`adjointbench.declare_problem`: its own source, at
  your arguments;
- ``None`` (default): ``f`` itself in float64, differenced and extrapolated
  (Ridders), certified to the level the extrapolation reaches (typically
  1e-9 to 1e-12, stated in every message); the primal is then not checked,
  since it is its own reference.

Cost: the reference needs (N + 3) directional derivatives per point for N
input entries up to N = 64 (the full Jacobian: VJPs are compared entry by
entry), 3 beyond (VJPs are compared through projections). In float64
extrapolation each takes a few dozen evaluations of ``f``: about 0.15 s per
call for a 64-entry NumPy function, 0.4 s for JAX (``f`` is compiled once);
at 40 digits an element costs microseconds, so a HighPrecision reference of
64 entries takes a few seconds. Nothing heavy is imported that the check does not need
(sympy only for a closed form, a framework only for its backend).
"""

from __future__ import annotations

from adjointbench.testing.checks import (CheckResult, ClosedForm, HighPrecision, check_function,
                                         check_rules)

__all__ = ["CheckResult", "ClosedForm", "HighPrecision", "check_function", "check_rules"]
