"""Two problem declarations. Nothing here imports a framework: the oracle
imports this module on the trusted side."""

import sympy

from adjointbench import declare_problem


def _vector(size, rng):
    return {"x": 2.0 * rng.standard_normal(size)}


logsumexp = declare_problem(
    "example_logsumexp", inputs=("x",), sizes=(4, 16), generate=_vector,
    domain={"x": (-6.0, 6.0)},
    closed_form=lambda x: sympy.log(sum(sympy.exp(v) for v in x)),
    description="log(sum(exp(x))), x in R^n (example plug-in, sympy closed form)")


def _tridiagonal_system(size, rng):
    return {"lower": 0.5 * rng.standard_normal(size - 1),
            "diag": 4.0 + rng.uniform(size=size),
            "upper": 0.5 * rng.standard_normal(size - 1),
            "rhs": rng.standard_normal(size)}


def solve_tridiagonal(xp, lower, diag, upper, rhs):
    """The Thomas algorithm, written once: at 40 digits for the oracle (xp is
    adjointbench's mpmath namespace) and in float64 (its NumPy twin)."""
    n = len(diag)
    c, d = [upper[0] / diag[0]], [rhs[0] / diag[0]]
    for i in range(1, n):
        m = diag[i] - lower[i - 1] * c[i - 1]
        c.append(upper[i] / m if i < n - 1 else 0 * m)
        d.append((rhs[i] - lower[i - 1] * d[i - 1]) / m)
    x = [d[-1]]
    for i in range(n - 2, -1, -1):
        x.append(d[i] - c[i] * x[-1])
    return xp.stack(x[::-1])


tridiagonal_solve = declare_problem(
    "example_tridiagonal_solve", inputs=("lower", "diag", "upper", "rhs"), sizes=(4, 32),
    generate=_tridiagonal_system,
    # every point diagonally dominant: |lower| + |upper| < 2 < 3 <= diag
    domain={"lower": (-1.0, 1.0), "diag": (3.0, 5.0), "upper": (-1.0, 1.0), "rhs": (-2.0, 2.0)},
    primal=solve_tridiagonal, dtypes=("float64",),
    description="T(lower, diag, upper)^-1 rhs (example plug-in, high-precision primal)")
