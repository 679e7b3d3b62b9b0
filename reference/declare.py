"""Declaring a problem from outside the catalogue: the stable, documented way.

    from adjointbench import declare_problem

    softplus = declare_problem(
        "softplus", inputs=("x",), sizes=(8, 64),
        generate=lambda size, rng: {"x": rng.standard_normal(size)},
        domain={"x": (-4.0, 4.0)},
        primal=lambda xp, x: xp.log1p(xp.exp(x)))      # or closed_form=, float64_primal=

A declaration names its inputs (and which are differentiable), says where
its inputs come from (a seeded ``generate(size, rng) -> {name: array}`` with
its ``sizes``, or explicit ``inputs={name: array}``), where they may range
(``domain``, for the several-points checks) and exactly one reference source,
strongest first:

- ``closed_form``: a sympy expression of the inputs, called with one sympy
  symbol per scalar input and an object array of symbols per array input
  (``elementwise=True``: a function of one symbol applied entry by entry);
  the oracle differentiates it exactly;
- ``primal``: ``primal(xp, *inputs)`` written against the namespace
  :mod:`adjointbench.reference.namespace`; the oracle runs it at 40 digits
  with mpmath and extrapolates its differences (error below 1e-13);
- ``float64_primal``: ``f(*inputs)`` on float64 NumPy arrays; the oracle
  extrapolates its differences in float64 and certifies them to the level
  they reach (about 1e-8 to 1e-11; a cell that needs more is ``unsupported``).

Register it under the entry-point group ``adjointbench.problems`` (the entry
point's name is the problem's) or name it as ``--problem module:object``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from adjointbench.faults import described
from adjointbench.reference.problem import FULL_MATRICES_MAX, Problem, make_inputs

DTYPES = ("float64", "float32")
NEIGHBOURHOOD = 0.2  # how far points 1, 2, ... of explicit inputs stray (relative)
SOURCES = ("closed_form", "primal_mp", "primal_float64")


class DeclarationError(ValueError):
    """A problem declaration that is incomplete or inconsistent; ``problems``
    says what, one line each."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.problems = tuple(problems)


def fixed_inputs(arrays: Mapping[str, Any]) -> Callable:
    frozen = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
    return lambda size, rng: {k: v.copy() for k, v in frozen.items()}


def _positional(f: Callable, names: tuple[str, ...], *lead) -> Callable:
    """``f(*lead, *inputs)`` called with the inputs as keywords (``__wrapped__``
    is ``f``, whose source the oracle's cache key hashes)."""
    def call(**inputs):
        return f(*lead, *(inputs[n] for n in names))
    call.__wrapped__ = f
    return call


def declare_problem(name: str, inputs: tuple[str, ...] | Mapping[str, Any], *,
                    differentiable: tuple[str, ...] | None = None,
                    generate: Callable | None = None, sizes: tuple[int, ...] | None = None,
                    domain: Mapping[str, tuple[float, float]] | None = None,
                    closed_form: Callable | None = None, primal: Callable | None = None,
                    float64_primal: Callable | None = None, elementwise: bool = False,
                    dtypes: tuple[str, ...] = DTYPES, description: str = "",
                    family: str = "plug-in", condition: Callable[..., float] | None = None,
                    varied: tuple[str, ...] | None = None,
                    max_full_jacobian: int | None = FULL_MATRICES_MAX) -> Problem:
    """A checked third-party problem (see the module docstring).

    ``inputs`` is either the input names (then ``generate`` and ``sizes`` are
    required) or ``{name: array}``, explicit inputs at one size (their total
    entry count); points 1, 2, ... then lie near them (each entry scaled by
    up to exp(+-0.2), signs kept) unless ``domain`` spreads an input.
    ``varied`` names the inputs points 1, 2, ... move (default: every
    input); leave fixed data out of it (a time grid, indices, a mask).
    ``differentiable`` defaults to every input. ``max_full_jacobian``: up to
    this many differentiable entries at the smallest size the oracle builds
    the full Jacobian and Hessian there (None: always); beyond, it checks
    along directions only (each full column costs one derivative, the Hessian
    one per pair of columns). ``condition(**inputs)`` is a
    condition estimate of the primal (default 1), which loosens tolerances.

    Raises :class:`DeclarationError` naming what is missing or wrong, found
    in the arguments or by evaluating the declaration once at its smallest
    size (:func:`_evaluation_problems`).
    """
    _refuse(name, list(_argument_problems(inputs, sizes, condition)))
    if condition is not None and not callable(condition):
        condition = _constant(float(condition))
    explicit = isinstance(inputs, Mapping)
    names = tuple(inputs)
    if explicit:
        if generate is not None or sizes is not None:
            raise DeclarationError(f"problem {name!r}: give explicit inputs or generate= and "
                                   "sizes=, not both")
        sizes = (sum(int(np.size(v)) for v in inputs.values()),)
        generate = fixed_inputs(inputs)
    if primal is not None:  # the same code in both namespaces
        from adjointbench.reference.namespace import F64, MP
        mp_primal, f64_primal = _positional(primal, names, MP), _positional(primal, names, F64)
    else:
        mp_primal = None
        f64_primal = _positional(float64_primal, names) if float64_primal else None
    problem = Problem(
        name=name, family=family, inputs=names,
        differentiable=tuple(differentiable) if differentiable is not None else names,
        sizes=tuple(sizes or ()), generate=generate, primal_mp=mp_primal,
        primal_float64=f64_primal, closed_form=closed_form, elementwise=elementwise,
        description=description, dtypes=tuple(dtypes), domain=dict(domain or {}),
        neighbourhood=NEIGHBOURHOOD if explicit else 0.0,
        varied=tuple(varied) if varied is not None else None, max_full_jacobian=max_full_jacobian,
        **({"condition": condition} if condition is not None else {}))
    check_declaration(problem, f"problem {name!r}")
    _refuse(name, list(_evaluation_problems(problem)))
    return problem


def _refuse(name: str, problems: list[str]) -> None:
    if problems:
        raise DeclarationError(f"problem {name!r} is not a complete problem declaration: "
                               f"{'; '.join(problems)}", problems)


def _constant(value: float) -> Callable[..., float]:
    return lambda **inputs: value


def _argument_problems(inputs: Any, sizes: Any, condition: Any):
    """What is of the wrong kind among declare_problem's arguments (a
    generator passed as ``inputs=``, a bare size), before anything is built
    from them: they raised a bare TypeError ("'function' object is not iterable")."""
    if isinstance(inputs, str) or not isinstance(inputs, (Mapping, tuple, list)):
        hint = " (pass it as generate=)" if callable(inputs) else ""
        yield (f"inputs= is the input names, such as ('x',), with generate= and sizes=, or "
               f"{{name: array}}; got a {type(inputs).__name__}{hint}")
    elif not all(isinstance(n, str) for n in inputs):
        yield f"the input names {tuple(inputs)!r} must be strings"
    if sizes is not None and not isinstance(sizes, (tuple, list)):
        yield f"sizes= is a tuple of positive whole numbers, such as (4, 64); got {sizes!r}"
    if not (condition is None or callable(condition) or _is_real(condition)):
        yield (f"condition= is a number or condition(**inputs) -> number; got a "
               f"{type(condition).__name__}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _evaluation_problems(p: Problem):
    """What evaluating the declaration once at its smallest size finds wrong:
    a ``generate`` that does not give the inputs, a primal or condition that
    raises or gives no finite number. Found later, in a sweep, each was told
    as the implementation's error at every cell, or passed unseen where
    ``check_rules`` brought inputs of its own. A closed form is not
    evaluated here (sympy's cost); the oracle names its faults."""
    size = min(p.sizes)
    try:
        inputs = make_inputs(p, size)  # the seeded inputs of its first check, exactly
    except Exception as e:  # noqa: BLE001 - the declaration's own code, reported
        yield _generate_problem(p, size, e)
        return
    if not _same_inputs(inputs, make_inputs(p, size)):
        yield (f"generate({size}, rng) gave other inputs when called again with the same "
               "seed: draw every random number from the rng it is given (np.random's own "
               "functions, or a generator made inside it, give each call other inputs, so "
               "the reference and each implementation would be handed different ones)")
        return
    yield from _value_problems(p.primal_float64, inputs, size, "primal", "an array of numbers")
    yield from _value_problems(p.condition, inputs, size, "condition", "a number")


def _same_inputs(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.shape(a[n]) == np.shape(b[n]) and np.array_equal(a[n], b[n], equal_nan=True)
        for n in a)


def _generate_problem(p: Problem, size: int, error: Exception) -> str:
    """Why the inputs at ``size`` could not be made (``error``), found by
    calling ``generate`` again, on its own."""
    try:
        raw = p.generate(size, np.random.default_rng(0))
    except Exception as e:  # noqa: BLE001 - the declaration's own code, reported
        return f"generate({size}, rng) raised {described(e)}"
    if not isinstance(raw, Mapping):
        return f"generate({size}, rng) returned a {type(raw).__name__}, not {{name: array}}"
    missing = [n for n in p.inputs if n not in raw]
    if missing:
        return (f"generate({size}, rng) gave no {', '.join(map(repr, missing))} (it gave "
                f"{', '.join(map(repr, raw)) or 'nothing'}): give every input it names")
    return f"its inputs at size {size} cannot be made: {described(error)}"


def _value_problems(f: Callable | None, inputs: dict, size: int, what: str, kind: str):
    if f is None:
        return
    try:
        with np.errstate(all="ignore"):  # what is not finite is told below
            value = np.asarray(f(**inputs))
    except Exception as e:  # noqa: BLE001 - the declaration's own code, reported
        yield f"its {what} raised {described(e)} at its seeded inputs of size {size}"
        return
    if value.dtype.kind not in "biuf" or (kind == "a number" and value.size != 1):
        yield f"its {what} gave {value!r:.60} at its seeded inputs of size {size}, not {kind}"
    elif not np.all(np.isfinite(value)):
        yield (f"its {what} is not finite at its seeded inputs of size {size}: the checks need "
               "finite values (keep generate= and domain= where it is)")


def check_declaration(problem: Any, origin: str) -> Problem:
    """``problem`` if it is a complete, consistent declaration; else raise
    :class:`DeclarationError` naming everything that is missing."""
    if not isinstance(problem, Problem):
        raise DeclarationError(
            f"{origin} is not a problem declaration (it is an object of type "
            f"{type(problem).__name__}): build one "
            "with adjointbench.declare_problem(name, inputs, ..., closed_form= | primal= | "
            "float64_primal=)")
    problems = list(_problems_with(problem))
    if problems:
        raise DeclarationError(f"{origin} is not a complete problem declaration: "
                               f"{'; '.join(problems)}")
    return problem


def _problems_with(p: Problem):
    if not (isinstance(p.name, str) and p.name and p.name.isidentifier()):
        yield f"name {p.name!r} must be a Python identifier (letters, digits, underscores)"
    if not p.inputs:
        yield "no inputs"
    if not p.differentiable:
        yield "no differentiable input"
    unknown = [n for n in (*p.differentiable, *p.domain, *(p.varied or ())) if n not in p.inputs]
    if unknown:
        yield (f"{', '.join(map(repr, unknown))} named in differentiable, domain or varied "
               "but not in inputs")
    if not callable(p.generate):
        yield "no input generator: pass generate=(size, rng) -> {name: array}, or inputs={...}"
    if not p.sizes or any(not isinstance(s, int) or s < 1 for s in p.sizes):
        yield f"sizes {p.sizes!r} must be positive whole numbers"
    for name, bounds in p.domain.items():
        low, high = bounds
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            yield f"domain of {name!r} must be (low, high) with low < high, got {bounds!r}"
    if not any(getattr(p, source) is not None for source in SOURCES):
        yield ("no reference source: give closed_form= (sympy), primal= (high precision, "
               "written against the xp namespace) or float64_primal=")
    if p.elementwise and (p.closed_form is None or len(p.inputs) != 1):
        yield "elementwise=True needs a closed form of one input"
    bad = [d for d in p.dtypes if d not in DTYPES]
    if bad or not p.dtypes:
        yield f"dtypes {p.dtypes!r} must be drawn from {DTYPES}"
    if p.kind not in ("primitive", "sensitivity"):
        yield f"kind {p.kind!r} must be 'primitive' or 'sensitivity'"
