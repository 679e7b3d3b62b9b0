"""The oracle: reference values, with error estimates, for every problem.

Two paths, one result type:
- exact: problems with a sympy closed form are differentiated symbolically and
  evaluated with mpmath;
- finite differences: everything else runs its high-precision primal and takes
  central differences along a direction, extrapolated with Richardson's
  scheme, D(h) = J u + c1 h^2 + c2 h^4 + ..., until two extrapolants agree.

Cost policy (DESIGN.md): at a problem's smallest size the oracle builds the
full Jacobian column by column, so the VJP is the full gradient J^T w; at
larger sizes it computes J u for the tangent and J v for a few projection
directions, and the VJP is checked through <vjp(w), v> = <w, J v>.

A reference is certified only when its error estimate is at most
``CERTIFY_RTOL`` relative to its norm; otherwise asking for it raises
:class:`UncertifiedReference`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy

from adjointbench.reference import hp
from adjointbench.reference.problem import Arrays, Problem, make_inputs, make_probes

ORACLE_VERSION = "4"
DPS = 40
CERTIFY_RTOL = 1e-13
FD_LEVELS = 12
FLOAT64_ROUNDING = 2.0**-53


class UncertifiedReference(ArithmeticError):
    """The oracle cannot vouch for a reference value to CERTIFY_RTOL."""


@dataclass(frozen=True)
class Estimate:
    """A float64 reference value and an estimate of its absolute error."""

    value: np.ndarray
    error: float

    @property
    def relative_error(self) -> float:
        scale = float(np.max(np.abs(self.value), initial=0.0))
        return self.error / scale if scale > 0 else (0.0 if self.error == 0 else np.inf)

    def certified(self, what: str) -> np.ndarray:
        if not self.relative_error <= CERTIFY_RTOL:
            raise UncertifiedReference(
                f"the oracle cannot certify the {what}: its error estimate is "
                f"{self.relative_error:.1e} relative, above {CERTIFY_RTOL:.0e}. "
                "Raise reference.oracle.DPS or choose a better-conditioned input.")
        return self.value

    def to_json(self) -> dict:
        return {"value": self.value.tolist(), "shape": list(self.value.shape),
                "error": self.error}

    @classmethod
    def from_json(cls, data: dict) -> "Estimate":
        value = np.array(data["value"], dtype=np.float64).reshape(data["shape"])
        return cls(value, float(data["error"]))


@dataclass(frozen=True)
class Reference:
    """Everything the suites compare against, for one problem, size and seed.

    ``jacobian`` and ``vjp`` are present at the smallest size only; ``projected``
    (J v for each projection direction) at the other sizes.
    """

    problem: str
    size: int
    seed: int
    method: str
    condition: float
    value: Estimate
    jvp: Estimate
    projected: tuple[Estimate, ...] = ()
    jacobian: Estimate | None = None
    vjp: dict[str, Estimate] | None = None
    seconds: float = 0.0
    version: str = field(default=ORACLE_VERSION)

    def to_json(self) -> dict:
        return {
            "problem": self.problem, "size": self.size, "seed": self.seed,
            "method": self.method, "condition": self.condition,
            "value": self.value.to_json(), "jvp": self.jvp.to_json(),
            "projected": [p.to_json() for p in self.projected],
            "jacobian": self.jacobian.to_json() if self.jacobian else None,
            "vjp": {k: v.to_json() for k, v in self.vjp.items()} if self.vjp else None,
            "seconds": self.seconds, "version": self.version,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Reference":
        return cls(
            problem=data["problem"], size=data["size"], seed=data["seed"],
            method=data["method"], condition=data["condition"],
            value=Estimate.from_json(data["value"]), jvp=Estimate.from_json(data["jvp"]),
            projected=tuple(Estimate.from_json(p) for p in data["projected"]),
            jacobian=Estimate.from_json(data["jacobian"]) if data["jacobian"] else None,
            vjp={k: Estimate.from_json(v) for k, v in data["vjp"].items()} if data["vjp"] else None,
            seconds=data["seconds"], version=data["version"])


# --- the two paths: a value and directional derivatives in high precision ---

class _Exact:
    """Closed forms: sympy derivatives evaluated with mpmath."""

    method = "exact"

    def __init__(self, problem: Problem, inputs: Arrays):
        self.problem, self.inputs = problem, inputs
        if problem.elementwise:
            t = sympy.Symbol("t")
            expr = problem.closed_form(t)
            self._f = np.frompyfunc(sympy.lambdify(t, expr, "mpmath"), 1, 1)
            self._df = np.frompyfunc(sympy.lambdify(t, sympy.diff(expr, t), "mpmath"), 1, 1)
        else:
            syms = sympy.symbols(problem.inputs)
            expr = problem.closed_form(*syms)
            self._f = sympy.lambdify(syms, expr, "mpmath")
            self._grad = {s.name: sympy.lambdify(syms, sympy.diff(expr, s), "mpmath")
                          for s in syms if s.name in problem.differentiable}
        self._args = {k: hp.to_mp(v) for k, v in inputs.items()}

    def _scalar_args(self):
        return [self._args[name].item() for name in self.problem.inputs]

    def value(self):
        if self.problem.elementwise:
            return np.asarray(self._f(self._args["x"]), dtype=object), mpmath.mpf(0)
        return np.array(self._f(*self._scalar_args()), dtype=object), mpmath.mpf(0)

    def derivative(self, direction: Arrays):
        if self.problem.elementwise:
            du = self._df(self._args["x"]) * hp.to_mp(direction["x"])
            return np.asarray(du, dtype=object), mpmath.mpf(0)
        args = self._scalar_args()
        du = sum(self._grad[name](*args) * mpmath.mpf(float(direction[name]))
                 for name in self.problem.differentiable)
        return np.array(du, dtype=object), mpmath.mpf(0)


def high_precision_primal(problem: Problem):
    """The primal on object arrays: ``primal_mp``, else lambdified from sympy."""
    if problem.primal_mp is not None:
        return problem.primal_mp
    if problem.closed_form is None:
        raise ValueError(f"problem {problem.name!r} declares neither a closed form "
                         "nor a high-precision primal (primal_mp)")
    if problem.elementwise:
        t = sympy.Symbol("t")
        f = np.frompyfunc(sympy.lambdify(t, problem.closed_form(t), "mpmath"), 1, 1)
        return lambda x: f(x)
    syms = sympy.symbols(problem.inputs)
    f = sympy.lambdify(syms, problem.closed_form(*syms), "mpmath")
    return lambda **args: np.array(f(*(np.asarray(args[n], dtype=object).item()
                                             for n in problem.inputs)), dtype=object)


class _FiniteDifferences:
    """High-precision central differences with Richardson extrapolation."""

    method = "fd"

    def __init__(self, problem: Problem, inputs: Arrays):
        self.problem = problem
        self._primal_mp = high_precision_primal(problem)
        self._args = {k: hp.to_mp(v) for k, v in inputs.items()}

    def _primal(self, args):
        return np.asarray(self._primal_mp(**args), dtype=object)

    def value(self):
        y = self._primal(self._args)
        if self.problem.primal_mp_check is None:
            return y, mpmath.mpf(0)
        finer = np.asarray(self.problem.primal_mp_check(**self._args), dtype=object)
        return finer, hp.max_abs(finer - y)

    def _central(self, direction, h):
        plus, minus = dict(self._args), dict(self._args)
        for name, d in direction.items():
            plus[name] = self._args[name] + h * d
            minus[name] = self._args[name] - h * d
        return (self._primal(plus) - self._primal(minus)) / (2 * h)

    def derivative(self, direction: Arrays):
        norm = max(float(np.max(np.abs(d))) for d in direction.values())
        if norm == 0:
            return self._primal(self._args) * 0, mpmath.mpf(0)
        count = sum(d.size for d in direction.values())
        unit = {k: hp.to_mp(v) / norm for k, v in direction.items()}  # exact: norm is a float
        h0 = mpmath.mpf(1) / (16 * mpmath.sqrt(count))
        goal = mpmath.mpf(10) ** (-(DPS // 2 + 5))
        previous: list = []
        for k in range(FD_LEVELS):
            row = [self._central(unit, h0 / 2**k)]
            for j in range(1, k + 1):
                row.append(row[j - 1] + (row[j - 1] - previous[j - 1]) / (4**j - 1))
            if k >= 1:
                error = hp.max_abs(row[k] - previous[k - 1])
                if error <= goal * max(mpmath.mpf(1), hp.max_abs(row[k])):
                    break
            previous = row
        return row[-1] * norm, error * norm


def _path(problem: Problem, inputs: Arrays, method: str | None):
    if method == "fd" or (method is None and problem.closed_form is None):
        return _FiniteDifferences(problem, inputs)
    if problem.closed_form is None:
        raise ValueError(f"problem {problem.name!r} has no closed form for the exact path")
    return _Exact(problem, inputs)


def _estimate(mp_value, mp_error) -> Estimate:
    value = hp.to_float(mp_value)
    rounding = FLOAT64_ROUNDING * float(np.max(np.abs(value), initial=0.0))
    return Estimate(value, float(mp_error) + rounding)


def _basis(inputs: Arrays, names: tuple[str, ...]):
    """Unit directions, one per entry of the differentiable inputs, in order."""
    for name in names:
        for index in np.ndindex(np.shape(inputs[name])):
            direction = {n: np.zeros(np.shape(inputs[n])) for n in names}
            direction[name][index] = 1.0
            yield direction


def directional_derivative(problem: Problem, inputs: Arrays, direction: Arrays) -> Estimate:
    """The oracle's J u at any inputs (not only the seeded ones): exact where
    the problem has a closed form, high-precision differences elsewhere."""
    with mpmath.workdps(DPS):
        return _estimate(*_path(problem, inputs, None).derivative(direction))


def compute_reference(problem: Problem, size: int, seed: int = 0,
                      method: str | None = None, point: int = 0) -> Reference:
    """Compute (uncached) the reference of ``problem`` at ``size``, ``seed``
    and input point ``point``.

    ``method`` forces ``"exact"`` or ``"fd"``; by default a closed form is used
    where the problem has one.
    """
    start = time.perf_counter()
    inputs = make_inputs(problem, size, seed, point)
    with mpmath.workdps(DPS):
        path = _path(problem, inputs, method)
        try:
            value, value_err = path.value()
        except ArithmeticError as e:  # a singular or non-convergent high-precision solve
            raise UncertifiedReference(
                f"the oracle cannot evaluate {problem.name} at size {size} in high precision "
                f"({type(e).__name__}: {e}), so it cannot certify a reference there") from e
        probes = make_probes(problem, size, inputs, np.shape(value), seed, point)
        jvp = _estimate(*path.derivative(probes.tangent))
        projected, jacobian, vjp = (), None, None
        if size == problem.smallest_size:
            jacobian, vjp = _full_jacobian(path, inputs, problem, probes.cotangent)
        else:
            projected = tuple(_estimate(*path.derivative(v)) for v in probes.projections)
    return Reference(
        problem=problem.name, size=size, seed=seed, method=path.method,
        condition=float(problem.condition(**inputs)), value=_estimate(value, value_err),
        jvp=jvp, projected=projected, jacobian=jacobian, vjp=vjp,
        seconds=time.perf_counter() - start)


def _full_jacobian(path, inputs: Arrays, problem: Problem, cotangent: np.ndarray):
    columns, errors = [], []
    for direction in _basis(inputs, problem.differentiable):
        column, error = path.derivative(direction)
        columns.append(np.ravel(column))
        errors.append(error)
    jac = np.stack(columns, axis=1)  # (output size, input size), object
    w = hp.to_mp(np.ravel(cotangent))
    grad = w @ jac
    grad_error = sum(abs(float(x)) for x in np.ravel(cotangent)) * float(max(errors))
    vjp, start = {}, 0
    for name in problem.differentiable:
        shape = np.shape(inputs[name])
        stop = start + int(np.prod(shape, dtype=int))
        vjp[name] = _estimate(np.reshape(grad[start:stop], shape), grad_error)
        start = stop
    return _estimate(jac, max(errors)), vjp


__all__ = ["ORACLE_VERSION", "CERTIFY_RTOL", "DPS", "Estimate", "Reference",
           "UncertifiedReference", "compute_reference"]
