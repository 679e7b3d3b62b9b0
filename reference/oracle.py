"""The oracle: reference values, with error estimates, for every problem.

Three paths, one result type, in the order a problem's declaration allows:
- exact: problems with a sympy closed form are differentiated symbolically and
  evaluated with mpmath, at 40 digits and at twice that: their disagreement
  is the error (more digits where the form cancels);
- fd: problems with a high-precision primal take central differences along a
  direction at 40 digits, extrapolated with Richardson's scheme,
  D(h) = J u + c1 h^2 + c2 h^4 + ..., until two extrapolants agree (else
  again from a smaller first step); the error is never below the rounding
  that twice the digits show (value and first step), and where that rounding
  is what stops it, the oracle takes more digits;
- fd64: problems with only a float64 primal get the same extrapolation in
  float64 (Ridders' tableau), certified to the level its error estimate
  reaches, which is recorded with every result.

Cost policy (DESIGN.md): at a problem's smallest size the oracle builds the
full Jacobian column by column, so the VJP is the full gradient J^T w (up to
the problem's ``max_full_jacobian`` input entries: a declared problem's
default is 64); at larger sizes it computes J u for the tangent and J v for
a few projection directions, and the VJP is checked through <vjp(w), v> =
<w, J v>, a Jacobian through J u and J v.

A reference is certified only when its error estimate is at most
``CERTIFY_RTOL`` relative to its norm (``WEAKEST_REFERENCE`` for fd64);
otherwise asking for it raises :class:`UncertifiedReference`
(:class:`WeakReference` for fd64: the cell is ``unsupported``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mpmath
import numpy as np

from adjointbench.faults import HarnessFault
from adjointbench.reference import hp
from adjointbench.reference.problem import Arrays, Problem, make_inputs, make_probes

ORACLE_VERSION = "10"  # 8: one-sided derivatives checked (kinks); 9: jumps at the point;
# 10: none where the primal is not finite
DPS = 40
CERTIFY_RTOL = 1e-13
FD_LEVELS = 12
MP_STEP_RETRIES = 3  # first steps 1/16, 2^-14, 2^-24 (over sqrt of the entries), where a
                    # step leaves the domain or the levels never agree
MP_PRECISION_RETRIES = 2  # DPS, then 2 DPS and 4 DPS digits where a difference cancels
ROUNDING_SAFETY = 10.0  # a quotient's rounding error is estimated, not bounded
FLOAT64_ROUNDING = 2.0**-53
FLOAT64_EPS = 2.0**-52


# An estimate whose every entry lies within its error of 0, that error below
# this (absolute), is 0: the high-precision arithmetic's noise on a derivative
# that vanishes. The Hessian of x + y at seed 10's first point came out as
# -8.3e-39 +- 2.9e-38 with a "kink" of 8.3e-39 (the noise against an exact 0
# at 80 digits), so every one of its 40 cells was unsupported.
VANISHING = 1e-30

# A float64 extrapolation is certified to the level it reaches; beyond this
# relative error it cannot tell a right rule from a slightly wrong one
WEAKEST_REFERENCE = 1e-6
LEVELS = {"exact": "sympy closed form", "fd": f"{DPS}-digit mpmath extrapolation",
          "fd64": "float64 extrapolation"}


class ReferenceFailure(HarnessFault):
    """A problem's own code (its generator, primal or closed form) raised
    while its reference was computed: the declaration's fault, which stops
    the run (exit 2) rather than being told as an implementation's outcome."""


class UncertifiedReference(ArithmeticError):
    """The oracle cannot vouch for a reference value to CERTIFY_RTOL."""


class WeakReference(UncertifiedReference):
    """A float64-extrapolated reference too inaccurate to judge a cell."""


class LowPrecisionPrimal(ReferenceFailure):
    """A high-precision primal that computes in float64 somewhere (float(),
    math.sin, .astype(float)): its value does not move when its inputs move
    by far less than a float64 rounding, so its one-sided differences vanish
    and every derivative would be told as a kink."""


class NotFiniteThere(WeakReference):
    """The primal is not finite at the input point (outside its domain: a
    zero entry of a user's arguments moved below 0 for sqrt or log): there
    is nothing to judge there (the cell is ``unsupported``)."""


class NotDifferentiable(WeakReference):
    """The primal has a kink at the input point along the direction taken:
    its one-sided derivatives differ, and no rule's value there can be judged
    (the cell is ``unsupported``)."""


def describe_level(method: str, relative_error: float) -> str:
    """``reference certified to 3e-10 by float64 extrapolation``."""
    return f"reference certified to {relative_error:.0e} by {LEVELS.get(method, method)}"


@dataclass(frozen=True)
class Estimate:
    """A float64 reference value and an estimate of its absolute error."""

    value: np.ndarray
    error: float
    method: str = "exact"  # the path that computed it (see LEVELS)
    kink: float = 0.0  # one-sided against central difference (_OneSided, _Kinks), in error too

    def __post_init__(self):
        if self.vanishes:
            object.__setattr__(self, "value", np.zeros_like(self.value))
            object.__setattr__(self, "error", 0.0)
            object.__setattr__(self, "kink", 0.0)

    @property
    def vanishes(self) -> bool:
        """High-precision noise around 0 (see VANISHING), certified as 0."""
        return (self.method in ("exact", "fd") and self.error <= VANISHING
                and self._within_error_of_zero)

    @property
    def _within_error_of_zero(self) -> bool:
        return 0 < self.error and float(np.max(np.abs(self.value), initial=0.0)) <= self.error

    @property
    def relative_error(self) -> float:
        scale = float(np.max(np.abs(self.value), initial=0.0))
        return self.error / scale if scale > 0 else (0.0 if self.error == 0 else np.inf)

    def certified(self, what: str) -> np.ndarray:
        if self.kink > 0 and not self.relative_kink <= self._weakest:
            raise NotDifferentiable(
                f"the {what} has no reference here: the primal is not differentiable at "
                f"this input point along the direction taken (a one-sided difference is "
                f"{self.relative_kink:.1e} relative away from the central one: a kink such "
                "as abs or max at 0; a value at the point unlike the values around it, from "
                "a branch taken only there (where(x == 0, ...)) or a sign convention of a QR "
                "or eigen decomposition; or for a second derivative a kink of the gradient, "
                "relu(x)^2 at 0). A rule's value there is a convention the oracle cannot "
                "judge: choose input points away from kinks (a domain that excludes them).")
        if self.method == "fd64":
            if self._within_error_of_zero and self.error <= WEAKEST_REFERENCE:
                raise WeakReference(
                    f"the {what} is 0 to within its float64 extrapolation's error "
                    f"({self.error:.1e}) at this input point, a stationary point (cos or x^2 "
                    "at 0): float64 differences cannot certify a relative level for 0. Pass a "
                    "high-precision reference (reference=HighPrecision(...) or "
                    "ClosedForm(...)), which can, or choose points off it.")
            if self.error == np.inf:
                raise WeakReference(
                    f"the {what}'s reference is too weak to judge it: float64 differences of "
                    "the primal do not converge at this input point (a feature nearer than "
                    "their smallest step: a kink or singularity close by, the edge of its "
                    "domain, as 0 for sqrt or log, or an infinite slope). Choose input points "
                    "away from it (your arguments, or a declared problem's domain=), or give "
                    "a closed form or a high-precision primal (reference=...).")
            if not self.relative_error <= WEAKEST_REFERENCE:
                raise WeakReference(
                    f"the {what}'s reference is too weak to judge it: "
                    f"{describe_level(self.method, self.relative_error)}, above "
                    f"{WEAKEST_REFERENCE:.0e}. Declare a sympy closed form or a high-precision "
                    "primal for the problem (reference=...).")
            return self.value
        if not self.relative_error <= CERTIFY_RTOL:
            raise UncertifiedReference(
                f"the oracle cannot certify the {what}: its error estimate is "
                f"{self.relative_error:.1e} relative, above {CERTIFY_RTOL:.0e}. "
                "Raise reference.oracle.DPS or choose a better-conditioned input.")
        return self.value

    @property
    def relative_kink(self) -> float:
        scale = float(np.max(np.abs(self.value), initial=0.0))
        return self.kink / scale if scale > 0 else (0.0 if self.kink == 0 else np.inf)

    @property
    def _weakest(self) -> float:
        return WEAKEST_REFERENCE if self.method == "fd64" else CERTIFY_RTOL

    def to_json(self) -> dict:
        return {"value": self.value.tolist(), "shape": list(self.value.shape),
                "error": self.error, "method": self.method, "kink": self.kink}

    @classmethod
    def from_json(cls, data: dict) -> "Estimate":
        value = np.array(data["value"], dtype=np.float64).reshape(data["shape"])
        return cls(value, float(data["error"]), data["method"], float(data["kink"]))


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


# --- the three paths: a value and directional derivatives, each with its error ---

def _symbols(problem: Problem, inputs: Arrays) -> dict:
    """One sympy symbol per input entry: a plain symbol for a 0-d input, an
    object array of symbols (the input's shape) otherwise."""
    import sympy  # only closed forms need it

    symbols = {}
    for name in problem.inputs:
        shape = np.shape(inputs[name])
        if shape == ():
            symbols[name] = sympy.Symbol(name)
            continue
        array = np.empty(int(np.prod(shape, dtype=int)), dtype=object)
        array[:] = sympy.symbols(f"{name}_0:{array.size}")
        symbols[name] = array.reshape(shape)
    return symbols


def _flat_symbols(symbols: dict, names) -> list:
    return [s for n in names for s in np.ravel(np.asarray(symbols[n], dtype=object))]


def _mp_array(values, shape) -> np.ndarray:
    """lambdify's nested lists (constants come back as ints) as mpf, shaped."""
    flat = np.array([mpmath.mpf(v) for v in np.ravel(np.array(values, dtype=object))],
                    dtype=object)
    return flat.reshape(shape)


class _Exact:
    """Closed forms: sympy derivatives evaluated with mpmath. Elementwise
    forms are differentiated once, as functions of one variable; any other
    form is differentiated entry by entry (its whole symbolic Jacobian), which
    suits the small sizes such problems are declared at."""

    method = "exact"

    def __init__(self, problem: Problem, inputs: Arrays):
        self.problem = problem
        import sympy  # only closed forms need it

        self._args = {k: hp.to_mp(v) for k, v in inputs.items()}
        if problem.elementwise:
            t = sympy.Symbol("t")
            expr = problem.closed_form(t)
            f = np.frompyfunc(sympy.lambdify(t, expr, "mpmath"), 1, 1)
            df = np.frompyfunc(sympy.lambdify(t, sympy.diff(expr, t), "mpmath"), 1, 1)
            (x,) = problem.inputs
            self._primal = _by_name(f, problem, ())
            self._value = at_more_digits(lambda: self._primal(**self._args))
            self._slope = at_more_digits(lambda: df(self._args[x]))
            self._one_sided = _OneSided(self._primal, self._args, problem.name)
            return
        symbols = _symbols(problem, inputs)
        output = np.array(problem.closed_form(*(symbols[n] for n in problem.inputs)),
                          dtype=object)
        shape = output.shape
        every = _flat_symbols(symbols, problem.inputs)
        jacobian = sympy.Matrix(list(output.ravel())).jacobian(
            _flat_symbols(symbols, problem.differentiable))
        f = sympy.lambdify(every, list(output.ravel()), "mpmath")
        df = sympy.lambdify(every, jacobian.tolist(), "mpmath")
        values = [v for n in problem.inputs for v in np.ravel(self._args[n])]
        self._primal = _by_name(f, problem, shape)
        self._value = at_more_digits(lambda: self._primal(**self._args))
        self._jacobian = at_more_digits(lambda: _mp_array(df(*values), jacobian.shape))
        self._one_sided = _OneSided(self._primal, self._args, problem.name)

    def value(self):
        """The closed form's value, and how far it moved with twice the digits."""
        return self._value

    def derivative(self, direction: Arrays):
        """The closed form's derivative along ``direction``, its error, and the
        kink a one-sided difference shows (see _OneSided): sympy
        differentiates Abs or Max at 0 to a convention too."""
        return _with_kink(self._one_sided, direction, *self._along(direction))

    def _along(self, direction: Arrays):
        if self.problem.elementwise:
            (x,) = self.problem.inputs
            (slope, error), u = self._slope, hp.to_mp(direction[x])
            return np.asarray(slope * u, dtype=object), error * hp.max_abs(u)
        (jacobian, error), u = self._jacobian, hp.to_mp(
            np.concatenate([np.ravel(direction[n]) for n in self.problem.differentiable]))
        value = jacobian @ u
        return value.reshape(np.shape(self._value[0])), error * sum(abs(v) for v in u)


def high_precision_primal(problem: Problem, inputs: Arrays):
    """The primal on object arrays: ``primal_mp``, else lambdified from sympy."""
    import sympy  # only closed forms need it

    if problem.primal_mp is not None:
        return problem.primal_mp
    if problem.closed_form is None:
        raise ValueError(f"problem {problem.name!r} declares neither a closed form "
                         "nor a high-precision primal (primal_mp)")
    if problem.elementwise:
        t = sympy.Symbol("t")
        f = np.frompyfunc(sympy.lambdify(t, problem.closed_form(t), "mpmath"), 1, 1)
        return _by_name(f, problem, ())
    symbols = _symbols(problem, inputs)
    output = np.array(problem.closed_form(*(symbols[n] for n in problem.inputs)), dtype=object)
    f = sympy.lambdify(_flat_symbols(symbols, problem.inputs), list(output.ravel()), "mpmath")
    return _by_name(f, problem, output.shape)


def _by_name(f, problem: Problem, shape):
    """A lambdified closed form ``f`` as ``primal(**inputs)``: entry by entry
    for an elementwise form, else on every input's entries in order, shaped."""
    if problem.elementwise:
        (x,) = problem.inputs
        return lambda **args: f(args[x])
    return lambda **args: _mp_array(
        f(*(v for n in problem.inputs for v in np.ravel(np.asarray(args[n], dtype=object)))),
        shape)


class _FiniteDifferences:
    """High-precision central differences with Richardson extrapolation."""

    method = "fd"

    def __init__(self, problem: Problem, inputs: Arrays):
        self.problem = problem
        self._primal_mp = high_precision_primal(problem, inputs)
        self._args = {k: hp.to_mp(v) for k, v in inputs.items()}
        self._one_sided = _OneSided(self._primal_mp, self._args, problem.name)

    def _primal(self, args):
        return np.asarray(self._primal_mp(**args), dtype=object)

    def value(self):
        y, rounding = at_more_digits(lambda: self._primal(self._args))
        if self.problem.primal_mp_check is None:
            return y, rounding
        finer = np.asarray(self.problem.primal_mp_check(**self._args), dtype=object)
        return finer, max(rounding, hp.max_abs(finer - y))

    def _central(self, direction, h):
        plus, minus = dict(self._args), dict(self._args)
        for name, d in direction.items():
            plus[name] = self._args[name] + h * d
            minus[name] = self._args[name] - h * d
        return difference_quotient([self._primal(plus), -self._primal(minus)], 2 * h)

    def derivative(self, direction: Arrays):
        norm = max(float(np.max(np.abs(d))) for d in direction.values())
        if norm == 0:
            return self._primal(self._args) * 0, mpmath.mpf(0), mpmath.mpf(0)
        count = sum(d.size for d in direction.values())

        def steps():
            unit = {k: hp.to_mp(v) / norm for k, v in direction.items()}
            return lambda h: self._central(unit, h), mpmath.mpf(1) / (16 * mpmath.sqrt(count))

        value, error = extrapolate(steps, mpmath.mpf(10) ** (-(DPS // 2 + 5)), self.problem.name)
        return _with_kink(self._one_sided, direction, value * norm, error * norm)


ONE_SIDED_RATIO = 1000  # the second one-sided step, against the first
KINK_CONSTANCY = 2.0  # a kink's gap is the same at both steps, within this factor


class _OneSided:
    """The kink check of the high-precision paths: how far the one-sided
    derivative of the primal along a unit direction u is from the central
    estimate. The right quotient (f(x + h u) - f(x)) / h, at twice the
    working digits and h = 10^-(digits/2) (1e-20 at 40 digits), errs by
    h f''/2 and by the primal's own error over h; over the built-in catalogue
    that left at most 6e-18 of the scale, nothing next to the 1e-13 a
    reference is certified to. At a kink the central difference gives the
    mean of the one-sided derivatives, which no rule need return (relu'(0) is
    0 in torch, 1/2 for jnp.maximum): the gap is then half their jump,
    whatever h. So a gap that is not negligible is taken again at a step
    ONE_SIDED_RATIO times larger, and is a kink only where it stays the same
    (a gap of rounding or truncation moves with h, and is the central
    estimate's business). Where it grows as 1/h instead (ONE_SIDED_RATIO
    times at the smaller step), f(x + h u) - f(x) does not tend to 0: the
    value at x is not the limit of the values around it (a branch taken only
    at the point, such as where(x == 0, ...), or a sign convention of a QR
    or eigen decomposition there). The central difference never looks at
    f(x) and converges all the same, to the derivative of the values around
    x, which no rule at x need return: that is told as a kink too. The left
    side is taken where a right step leaves the primal's domain; where both
    do, the central steps could not succeed either."""

    def __init__(self, primal, args: dict, name: str):
        self._primal, self._args, self._at_x, self._name = primal, args, None, name

    def _quotient(self, unit: dict, h):
        moved = {k: self._args[k] + h * unit[k] if k in unit else self._args[k]
                 for k in self._args}
        return (_real(np.asarray(self._primal(**moved), dtype=object)) - self._at_x) / h

    def gap(self, unit: dict, central: np.ndarray):
        step = mpmath.mpf(10) ** (-(mpmath.mp.dps // 2))
        with mpmath.workdps(2 * mpmath.mp.dps):
            if self._at_x is None:
                self._at_x = np.asarray(self._primal(**self._args), dtype=object)
            gap = kink_gap(lambda h: self._quotient(unit, h), central, step)
            # a derivative that vanishes (VANISHING: high-precision noise, softmax along
            # ones) leaves a right primal unmoved too
            if gap > negligible_gap(central) and hp.max_abs(central) > VANISHING \
                    and self._unmoved(unit, step):
                raise LowPrecisionPrimal(_computes_in_float64(self._name, step, central))
            return gap

    def _unmoved(self, unit: dict, step) -> bool:
        """Whether the primal's value is the same at x, x + step u and
        x - step u: no function that is continuous there with a derivative
        that is not 0 can be, at 1e-20; one that rounds to float64 is."""
        try:
            return all(hp.max_abs(self._quotient(unit, side * step)) == 0 for side in (1, -1))
        except (TypeError, ValueError, ZeroDivisionError):  # a side leaves the domain
            return False


def _computes_in_float64(name: str, step, central) -> str:
    return (f"the high-precision primal of {name} does not move when its inputs move by "
            f"{float(step):.0e} either way (every entry of its value stays the same), though "
            f"its derivative there is {float(hp.max_abs(central)):.2g} along that direction: "
            "it computes in float64 somewhere (float(), math.sin, numpy's functions on plain "
            "floats, .astype(float)), and every derivative would be told as a kink. Write it "
            "with the functions of the xp namespace it is given, on the values it is given (a "
            "fault of the problem's declaration, not of any implementation).")


def negligible_gap(central):
    """A kink gap this small beside ``central`` is nothing: 1e-3 of what a
    reference is certified to."""
    return 1e-3 * CERTIFY_RTOL * hp.max_abs(central)


def kink_gap(one_sided, central, step, order: int = 1):
    """The kink a one-sided difference quotient shows against the central
    estimate (see _OneSided): ``one_sided(h)`` from the right for h > 0, from
    the left for h < 0 (where the right leaves the primal's domain). A gap
    within 1e-3 of what a reference is certified to is returned as it is; a
    larger one only if it is the same at a step ONE_SIDED_RATIO times larger,
    or ONE_SIDED_RATIO ** ``order`` times smaller there (a quotient over
    h ** order of a difference that does not vanish: the value at x is not
    the limit around it); else 0 (rounding or truncation, the central
    estimate's own business)."""
    negligible = negligible_gap(central)
    for side in (1, -1):
        try:
            near = hp.max_abs(one_sided(side * step) - central)
            if near <= negligible:
                return near
            far = hp.max_abs(one_sided(side * step * ONE_SIDED_RATIO) - central)
        except (TypeError, ValueError, ZeroDivisionError):  # left the domain
            continue
        if _within_factor(near, far, KINK_CONSTANCY):
            return min(near, far)
        jumps = _within_factor(near, ONE_SIDED_RATIO**order * far, KINK_CONSTANCY)
        return far if jumps else mpmath.mpf(0)
    return mpmath.mpf(0)


def _within_factor(a, b, factor) -> bool:
    return a <= factor * b and b <= factor * a


def _with_kink(one_sided: _OneSided, direction: Arrays, value, error):
    """(value, error, kink) of a high-precision derivative along ``direction``:
    the kink (see _OneSided) is part of the error."""
    norm = max(float(np.max(np.abs(d), initial=0.0)) for d in direction.values())
    if norm == 0:
        return value, error, mpmath.mpf(0)
    unit = {k: hp.to_mp(v) / norm for k, v in direction.items()}
    kink = one_sided.gap(unit, np.asarray(value, dtype=object) / norm) * norm
    return value, max(error, kink), kink


def difference_quotient(terms: list, divisor) -> tuple:
    """(sum of ``terms``) / ``divisor``, refused (TypeError) if a step left the
    real domain, and the rounding level of the terms it cancels: the unit
    roundoff times their size, over the divisor. A quotient no larger than
    that is rounding about zero."""
    for term in terms:
        _real(term)
    size = sum(hp.max_abs(term) for term in terms)
    return sum(terms[1:], terms[0]) / divisor, mpmath.eps * size / abs(divisor)


@dataclass(frozen=True)
class Extrapolated:
    """A Richardson result: the value, its error, the rounding floor under
    the error (what twice the digits showed), the rounding level of the
    cancelled terms, and whether two levels agreed (else the levels ran out)."""

    value: np.ndarray
    error: mpmath.mpf
    floor: mpmath.mpf
    noise: mpmath.mpf
    agreed: bool

    def more_digits_would_help(self, goal) -> bool:
        """Rounding, not the scheme, keeps it from ``goal``, and the value is
        not rounding about zero (a Hessian entry that is 0): it stands above
        the rounding of its terms, or the rounding twice the digits showed is
        far above that (terms that cancel inside the primal)."""
        size = hp.max_abs(self.value)
        return self.floor > goal * size and max(size, self.floor) > ROUNDING_SAFETY * self.noise


def extrapolate(steps, goal, name: str) -> tuple:
    """(value, error) of the Richardson extrapolation of a difference quotient,
    where ``steps()`` gives the quotient (a function of h returning it and its
    rounding level, see difference_quotient) and the first step, at the
    working precision. Where rounding keeps the result from ``goal``
    (``Extrapolated.more_digits_would_help``), it is recomputed at twice the
    digits, MP_PRECISION_RETRIES times at most."""
    digits = mpmath.mp.dps
    for retry in range(MP_PRECISION_RETRIES + 1):
        with mpmath.workdps(digits * 2**retry):
            result = _extrapolate_from_steps(steps, goal, name)
        if not result.more_digits_would_help(goal):
            break
    return result.value, result.error


def _extrapolate_from_steps(steps, goal, name: str) -> Extrapolated:
    """richardson from the first step ``steps()`` gives, or from one 2^10 times
    smaller (MP_STEP_RETRIES tries in all) where that step leaves the primal's
    domain or the levels never agree (a feature narrower than the step: a
    steep or fast primal). The result with the smallest error wins."""
    difference, h0 = steps()
    with mpmath.workdps(2 * mpmath.mp.dps):
        finer, _ = steps()
    best = None
    for _ in range(MP_STEP_RETRIES):
        try:
            result = richardson(_rechecked(difference, finer, h0), h0, goal)
        except (TypeError, ValueError, ZeroDivisionError):  # a step left the domain
            h0 /= 2**10
            continue
        if best is None or result.error < best.error:
            best = result
        if result.agreed:
            break
        h0 /= 2**10
    if best is None:
        raise UncertifiedReference(
            f"the oracle cannot difference {name} here: every step down to "
            f"{float(h0):.0e} leaves the primal's domain (a complex or undefined value)")
    return best


def _rechecked(difference, finer, h0):
    """``difference`` (a function of h) with the rounding twice the digits
    show: how far its value at the first step moves with them (``finer``),
    scaled by h0 / h to the later steps. That sees rounding anywhere, in the
    output's cancelling terms or inside the primal before its output, and a
    quotient the same at both precisions (a Hessian that is zero) has none."""
    shown = []

    def quotient(h):
        value, noise = difference(h)
        if not shown:
            with mpmath.workdps(2 * mpmath.mp.dps):
                shown.append(hp.max_abs(finer(h)[0] - value))
        return value, noise, shown[0] * h0 / h

    return quotient


def at_more_digits(evaluate) -> tuple:
    """(value, error) of ``evaluate()`` (an object array), taken at the working
    precision and at twice its digits: the finer value, and their disagreement
    as its error. Where they disagree by more than the Richardson goal
    relatively (the evaluation cancels), the digits double again, up to
    2^(MP_PRECISION_RETRIES + 1) times the working precision."""
    digits = mpmath.mp.dps
    goal = mpmath.mpf(10) ** (-(digits // 2 + 5))
    coarse = np.asarray(evaluate(), dtype=object)
    for retry in range(1, MP_PRECISION_RETRIES + 2):
        with mpmath.workdps(digits * 2**retry):
            finer = np.asarray(evaluate(), dtype=object)
            error = hp.max_abs(finer - coarse)
        if error <= goal * hp.max_abs(finer):
            break
        coarse = finer
    return finer, error


def richardson(difference, h0, goal) -> Extrapolated:
    """Richardson extrapolation of a difference quotient whose error expands in
    even powers of h, halving h from ``h0``; ``difference(h)`` returns the
    quotient, the rounding level of its terms and the rounding twice the
    digits showed.

    It stops when two levels agree to ``goal`` relatively, or to within the
    rounding (finer levels would only add rounding). The error is the larger
    of their disagreement and the floor (ROUNDING_SAFETY times the rounding
    shown): steps h0 / 2^k can round alike, so levels may agree far below the
    rounding they share."""
    previous: list = []
    error, floor, noise = mpmath.inf, mpmath.mpf(0), mpmath.mpf(0)
    for k in range(FD_LEVELS):
        quotient, quotient_noise, shown = difference(h0 / 2**k)
        floor = max(floor, ROUNDING_SAFETY * shown)
        noise = max(noise, quotient_noise)
        row = [quotient]
        for j in range(1, k + 1):
            row.append(row[j - 1] + (row[j - 1] - previous[j - 1]) / (4**j - 1))
        if k >= 1:
            disagreement = hp.max_abs(row[k] - previous[k - 1])
            error = max(disagreement, floor)
            if disagreement <= max(goal * hp.max_abs(row[k]), ROUNDING_SAFETY * noise, floor):
                return Extrapolated(row[-1], error, floor, noise, True)
        previous = row
    return Extrapolated(row[-1], error, floor, noise, False)


def _real(values: np.ndarray) -> np.ndarray:
    """``values``, refused (TypeError) if a step left the real domain."""
    if any(isinstance(v, mpmath.mpc) for v in np.ravel(values)):
        raise TypeError("complex value")
    return values


# float64 extrapolation: Ridders' tableau (central differences, h halved at
# each level, Richardson in h^2); the entry with the smallest error estimate
# wins, its estimate inflated by a safety factor (it is an estimate, not a bound)
F64_LEVELS = 20
F64_ORDERS = 6  # Richardson columns: h^2 ... h^12 cancelled
F64_SAFETY = 10.0
F64_FIRST_STEPS = (0.1, 0.1 / 3**0.5)  # down to 2e-7 in F64_LEVELS halvings
# f(x) unlike the values around it (see _Kinks): the steps' offsets from it
# stay within this fraction of each other over this many rows, and above this
# many times their rounding (a continuous f's shrink 4 times a row)
JUMP_ROWS, JUMP_AGREEMENT, JUMP_FLOOR = 3, 0.1, 1e6


class _Float64Differences:
    """What is left when a problem declares neither a closed form nor a
    high-precision primal: its float64 primal, differenced and extrapolated.
    Certified to the level the extrapolation reaches (1e-8 to 1e-11 for
    smooth functions); a cell whose tolerance needs more is ``unsupported``."""

    method = "fd64"

    def __init__(self, problem: Problem, inputs: Arrays):
        self.problem = problem
        self._args = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
        self._at_x = None  # f(x), for the steps' even parts (see _Kinks)

    def _primal(self, args) -> np.ndarray:
        return np.asarray(self.problem.primal_float64(**args), dtype=np.float64)

    def value(self):
        return self._primal(self._args), 0.0

    def _central(self, direction: Arrays, h: float) -> tuple[np.ndarray, np.ndarray, float]:
        """The central difference (f(x + h u) - f(x - h u)) / 2h, the even part
        of the step (f(x + h u) + f(x - h u) - 2 f(x)) / 2h (see _Kinks), and
        their rounding error: eps |f| / h. A step may leave the function's
        domain (sqrt near 0): the NaN it gives stops that row's convergence
        (see _tableau), and NumPy's warning about it is the oracle's
        business, not the user's."""
        plus, minus = dict(self._args), dict(self._args)
        for name, d in direction.items():
            plus[name] = self._args[name] + h * d
            minus[name] = self._args[name] - h * d
        with np.errstate(all="ignore"):
            f_plus, f_minus = self._primal(plus), self._primal(minus)
        size = max(float(np.max(np.abs(f_plus), initial=0.0)),
                   float(np.max(np.abs(f_minus), initial=0.0)))
        return ((f_plus - f_minus) / (2 * h), (f_plus + f_minus - 2 * self._at_x) / (2 * h),
                FLOAT64_EPS * size / h)

    def _tableau(self, unit: Arrays, h: float) -> tuple[np.ndarray | None, float, float]:
        """Ridders' tableau from step h: its entry with the smallest error
        estimate, among the rows where the plain central differences are
        converging, entry by entry (each change at most half the one before,
        or at the rounding level), and the kink the steps' even parts show
        (see _Kinks). A feature smaller than every step but not at x (a kink
        or a singularity within 1e-7) makes no row converge, and no estimate."""
        best, best_error, previous, changes = None, np.inf, [], []
        kinks = _Kinks()
        for k in range(F64_LEVELS):
            difference, even, rounding = self._central(unit, h / 2**k)
            row = [difference]
            if k:
                changes.append(np.abs(difference - previous[0]))
            converging = len(changes) >= 2 and bool(np.all(
                (changes[-1] <= 0.5 * changes[-2]) | (changes[-1] <= 4 * rounding)))
            kinks.add(even, 2 * rounding, converging, h / 2**k)
            for j in range(1, min(k, F64_ORDERS) + 1):
                row.append(row[j - 1] + (row[j - 1] - previous[j - 1]) / (4**j - 1))
                # neighbours in the tableau disagree by about the error; an
                # accidental agreement is no better than the rounding level
                error = max(float(np.max(np.abs(row[j] - row[j - 1]))),
                            float(np.max(np.abs(row[j] - previous[j - 1]))), rounding)
                if converging and error < best_error:
                    best, best_error = row[j], error
            if rounding > best_error:  # every later entry's error is at least its rounding
                break
            previous = row
        return best, best_error, kinks.gap()

    def derivative(self, direction: Arrays):
        """Two tableaux from incommensurate first steps: each one's estimate,
        and their disagreement, bound the error (an accidental agreement
        inside one tableau, at a step far too large, does not survive the
        other). A kink must show in both; its gap is part of the error."""
        norm = max(float(np.max(np.abs(d), initial=0.0)) for d in direction.values())
        if norm == 0:
            return self._primal(self._args) * 0, 0.0, 0.0
        unit = {k: v / norm for k, v in direction.items()}
        if self._at_x is None:
            with np.errstate(all="ignore"):
                self._at_x = self._primal(self._args)
        (a, a_error, a_gap), (b, b_error, b_gap) = (self._tableau(unit, h)
                                                    for h in F64_FIRST_STEPS)
        if a is None or b is None or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            return self._primal(self._args) * 0, np.inf, 0.0
        disagreement = float(np.max(np.abs(a - b), initial=0.0))
        best = a if a_error <= b_error else b
        gap = min(a_gap, b_gap) * norm
        error = F64_SAFETY * max(a_error, b_error, disagreement) * norm
        return best * norm, max(error, gap), gap


class _Kinks:
    """Whether f(x + h u) has a kink at h = 0, from the even parts of the
    steps, e(h) = (f(x + h u) + f(x - h u) - 2 f(x)) / 2h. Where f is
    differentiable along u, e(h) = h f''/2 + h^3 f''''/24 + ... tends to 0;
    at a kink it tends to half the jump of the one-sided derivatives, and
    the central difference to their mean, which no rule need return (relu'(0)
    is 0 in torch, 1/2 for jnp.maximum). Richardson in odd powers of h
    extrapolates e to h = 0, entry by entry, with the error its neighbours
    show; ``gap()`` is the largest limit that stands out of that error
    (F64_SAFETY times it), else 0. As for the derivative, only rows where
    the central differences converge count. Where instead h e(h) =
    (f(x + h u) + f(x - h u)) / 2 - f(x) stays the same over the last rows
    (JUMP_ROWS of them, within JUMP_AGREEMENT, well above rounding), f(x) is
    not the limit of the values around it (see _OneSided): a jump, told as
    a kink of h e(h) / h at the smallest step."""

    def __init__(self):
        self.previous, self.best, self.best_error, self.offsets = [], None, np.inf, []

    def add(self, even: np.ndarray, rounding: float, converging: bool, h: float) -> None:
        self.offsets.append((even * h, rounding * h, h))
        row = [even]
        for j in range(1, min(len(self.previous), F64_ORDERS) + 1):
            row.append(row[j - 1] + (row[j - 1] - self.previous[j - 1]) / (2**(2 * j - 1) - 1))
            error = max(float(np.max(np.abs(row[j] - row[j - 1]), initial=0.0)),
                        float(np.max(np.abs(row[j] - self.previous[j - 1]), initial=0.0)),
                        rounding)
            if converging and error < self.best_error:
                self.best, self.best_error = row[j], error
        self.previous = row

    def gap(self) -> float:
        if self.best is None or not np.all(np.isfinite(self.best)):
            return 0.0
        standing = np.abs(self.best)[np.abs(self.best) > F64_SAFETY * self.best_error]
        return max(float(np.max(standing, initial=0.0)), self._jump())

    def _jump(self) -> float:
        last = self.offsets[-JUMP_ROWS:]
        if len(last) < JUMP_ROWS:
            return 0.0
        offset, rounding, h = last[-1]
        size = float(np.max(np.abs(offset), initial=0.0))
        steady = all(np.max(np.abs(other - offset)) <= JUMP_AGREEMENT * size
                     for other, _, _ in last[:-1])
        return size / h if steady and size > JUMP_FLOOR * rounding else 0.0


def reference_source(problem: Problem) -> str:
    """Which path defines the problem's reference: ``exact`` (sympy),
    ``fd`` (mpmath differences of its high-precision primal) or ``fd64``
    (float64 extrapolation of its float64 primal)."""
    if problem.closed_form is not None:
        return "exact"
    return "fd" if problem.primal_mp is not None else "fd64"


def _path(problem: Problem, inputs: Arrays, method: str | None):
    method = method or reference_source(problem)
    if method == "fd64":
        return _Float64Differences(problem, inputs)
    if method == "fd":
        return _FiniteDifferences(problem, inputs)
    if problem.closed_form is None:
        raise ValueError(f"problem {problem.name!r} has no closed form for the exact path")
    return _Exact(problem, inputs)


def _estimate(mp_value, mp_error, method: str, kink=0.0) -> Estimate:
    value = hp.to_float(mp_value)
    rounding = FLOAT64_ROUNDING * float(np.max(np.abs(value), initial=0.0))
    return Estimate(value, float(mp_error) + rounding, method, float(kink))


def _derivative_estimate(path, direction: Arrays) -> Estimate:
    value, error, kink = path.derivative(direction)
    return _estimate(value, error, path.method, kink)


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
        path = _path(problem, inputs, None)
        return _derivative_estimate(path, direction)


def compute_reference(problem: Problem, size: int, seed: int = 0,
                      method: str | None = None, point: int = 0) -> Reference:
    """Compute (uncached) the reference of ``problem`` at ``size``, ``seed``
    and input point ``point``.

    ``method`` forces ``"exact"``, ``"fd"`` or ``"fd64"``; by default the
    problem's own source (:func:`reference_source`).
    """
    start = time.perf_counter()
    inputs = make_inputs(problem, size, seed, point)
    # a reference that is not finite is the oracle's verdict to give (an
    # estimate with an infinite error), not NumPy's warning to the user
    with mpmath.workdps(DPS), np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        path = _path(problem, inputs, method)
        try:
            value, value_err = path.value()
        except ArithmeticError as e:  # a singular or non-convergent high-precision solve
            raise UncertifiedReference(
                f"the oracle cannot evaluate {problem.name} at size {size} in high precision "
                f"({type(e).__name__}: {e}), so it cannot certify a reference there") from e
        _refuse_not_finite(problem, value, point)
        probes = make_probes(problem, size, inputs, np.shape(value), seed, point)
        jvp = _derivative_estimate(path, probes.tangent)
        projected, jacobian, vjp = (), None, None
        if builds_full_matrices(problem, size, inputs):
            jacobian, vjp = _full_jacobian(path, inputs, problem, probes.cotangent)
        else:
            projected = tuple(_derivative_estimate(path, v)
                              for v in probes.projections)
    return Reference(
        problem=problem.name, size=size, seed=seed, method=path.method,
        condition=float(problem.condition(**inputs)),
        value=_estimate(value, value_err, path.method),
        jvp=jvp, projected=projected, jacobian=jacobian, vjp=vjp,
        seconds=time.perf_counter() - start)


def _refuse_not_finite(problem: Problem, value: np.ndarray, point: int) -> None:
    """NotFiniteThere where the primal's value at the input point is not
    finite: every derivative there came out NaN, and a rule's NaN was
    judged against it (a mismatch). A complex value (a 40-digit primal
    outside its domain) is left to the differences, which say so."""
    try:
        value = hp.to_float(np.asarray(value, dtype=object))
    except TypeError:
        return
    bad = ~np.isfinite(value)
    if bad.any():
        raise NotFiniteThere(
            f"{problem.name} is not finite at input point {point} ({value[bad][0]} at entry "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}): the point lies outside its "
            "domain (points 1, 2, ... move a user's arguments, a zero entry to either sign), "
            "and there is nothing to judge there. Keep the points inside it: arguments away "
            "from its edge, or a declared problem's domain=.")


def builds_full_matrices(problem: Problem, size: int, inputs: Arrays) -> bool:
    """Whether the oracle builds the full Jacobian and Hessian (see
    Problem.max_full_jacobian): a column, or a pair of columns, per input
    entry; else the cells that need them are checked along directions."""
    entries = sum(np.size(inputs[n]) for n in problem.differentiable)
    limit = problem.max_full_jacobian
    return size == problem.smallest_size and (limit is None or entries <= limit)


def _full_jacobian(path, inputs: Arrays, problem: Problem, cotangent: np.ndarray):
    columns, errors, kinks = [], [], []
    for direction in _basis(inputs, problem.differentiable):
        column, error, kink = path.derivative(direction)
        columns.append(np.ravel(column))
        errors.append(error)
        kinks.append(kink)
    jac = np.stack(columns, axis=1)  # (output size, input size), object
    w = hp.to_mp(np.ravel(cotangent))
    grad = w @ jac
    w_norm = sum(abs(float(x)) for x in np.ravel(cotangent))
    grad_error, grad_kink = w_norm * float(max(errors)), w_norm * float(max(kinks))
    vjp, start = {}, 0
    for name in problem.differentiable:
        shape = np.shape(inputs[name])
        stop = start + int(np.prod(shape, dtype=int))
        vjp[name] = _estimate(np.reshape(grad[start:stop], shape), grad_error, path.method,
                              grad_kink)
        start = stop
    return _estimate(jac, max(errors), path.method, max(kinks)), vjp


__all__ = ["ORACLE_VERSION", "CERTIFY_RTOL", "DPS", "Estimate", "LEVELS", "NotDifferentiable",
           "Reference", "UncertifiedReference", "WEAKEST_REFERENCE", "WeakReference",
           "compute_reference", "describe_level", "reference_source"]
