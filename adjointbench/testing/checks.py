"""check_rules and check_function: the harness's own checks, on your function.

Your function becomes a problem with explicit inputs (your arguments) and a
reference source, registered for the duration of the check; your rules
become an implementation that runs in this process. The cells (primal, jvp,
vjp, transpose, linearity; hvp and symmetry for second order) then run
through the same runner, oracle, tolerances and purity checks as the
catalogue's sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import math
import re
import reprlib
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from adjointbench.impls.autodiff import CANNOT_DIFFERENTIATE_AGAIN
from adjointbench.impls.protocol import Prepared, Task, as_numpy
from adjointbench.names import UnknownNameError, closest
from adjointbench.reference.catalogue import temporarily
from adjointbench.reference.declare import (NEIGHBOURHOOD, DeclarationError, declare_problem,
                                           fixed_inputs)
from adjointbench.reference.oracle import describe_level
from adjointbench.reference.problem import FULL_MATRICES_MAX, Problem, seeded_point
from adjointbench.suites.cells import Cell
from adjointbench.suites.compare import WrongResult
from adjointbench.suites.executors import LocalExecutor
from adjointbench.suites.purity import check_pure, check_reentrant, copy_arrays
from adjointbench.suites.results import Record
from adjointbench.suites.runner import check_point, unsupported_reason

DTYPES = ("float64", "float32")
_TAKEN: set[str] = set()  # the names of the checks running now (threads)
_TAKING = threading.Lock()


@dataclass(frozen=True)
class ClosedForm:
    """A sympy reference: ``expression(*inputs)`` with one sympy symbol per
    scalar argument and an object array of symbols per array argument
    (``elementwise=True``: a function of one symbol, applied entry by entry)."""

    expression: Callable[..., Any]
    elementwise: bool = False


@dataclass(frozen=True)
class HighPrecision:
    """A 40-digit reference: ``primal(xp, *inputs)`` written against the
    namespace of :mod:`adjointbench.reference.namespace`."""

    primal: Callable[..., Any]


@dataclass(frozen=True)
class CheckResult:
    """Every check of one function: one record per check and input point."""

    function: str
    records: tuple[Record, ...]
    differentiated: tuple[str, ...] = ()  # the inputs the checks differentiate in
    held_fixed: tuple[str, ...] = ()  # the arguments and inputs they do not
    through: str = ""  # how the derivatives were taken, where not the backend's usual way

    @property
    def ok(self) -> bool:
        return all(r.outcome == "ok" for r in self.records)

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if r.outcome != "ok"]

    @property
    def errors(self) -> dict[tuple[str, int], float | None]:
        """{(check, input point): relative error} (None where none was measured)."""
        return {(r.op, r.point): r.max_rel_err for r in self.records}

    def worst(self, op: str) -> Record:
        """The record of ``op`` with the largest relative error."""
        chosen = [r for r in self.records if r.op == op]
        return max(chosen, key=lambda r: r.max_rel_err or 0.0)

    def __str__(self) -> str:
        lines = [f"{self.function}: {len(self.records) - len(self.failures)} of "
                 f"{len(self.records)} checks ok"]
        for r in self.records:
            error = "" if r.max_rel_err is None else f"error {r.max_rel_err:.1e} <= tol {r.tol:.1e}"
            level = ("" if r.oracle_err is None or r.level is None
                     else f"  ({describe_level(r.level, r.oracle_err)})")
            lines.append(f"  {r.op:<10} point {r.point}  {r.outcome:<12} {error}{level}")
        lines += [f"  differentiated in: {', '.join(self.differentiated)}"] * bool(
            self.differentiated)
        lines += [f"  held fixed: {', '.join(self.held_fixed)}"] * bool(self.held_fixed)
        lines += [f"  differentiated through {self.through}"] * bool(self.through)
        return "\n".join(lines)


def _dtype(arrays: Sequence[np.ndarray]) -> str:
    kinds = {str(a.dtype) for a in arrays}
    if not kinds <= set(DTYPES):
        raise TypeError(f"the arguments must be float32 or float64 arrays, got "
                        f"{', '.join(sorted(kinds))}; convert them (np.asarray(x, float))")
    if len(kinds) > 1:
        raise TypeError(f"the arguments mix {' and '.join(sorted(kinds))}; give them one dtype")
    return kinds.pop()


def _names(f: Callable, count: int) -> tuple[str, ...]:
    """f's parameter names where they are plain positional ones, else x0, x1, ..."""
    with contextlib.suppress(TypeError, ValueError):
        params = list(inspect.signature(f).parameters.values())
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        names = tuple(p.name for p in params[:count] if p.kind in kinds)
        if len(names) == count and len(set(names)) == count:
            return names
    return tuple(f"x{i}" for i in range(count))


def _label(f: Callable) -> str:
    name = getattr(f, "__name__", None) or type(f).__name__
    owner = getattr(f, "__self__", None)
    if isinstance(owner, type):  # a torch.autograd.Function's apply
        name = f"{owner.__name__}.{name}"
    return name


@contextlib.contextmanager
def _name_of(f: Callable) -> Iterator[str]:
    """The name your function's problem is registered under while it is
    checked: the same in every run (input points 1, 2, ..., and each point's
    tangents and cotangents, are drawn from it; a counter in it moved them
    with the number of checks run before in the process, so a check could
    pass alone and fail in a test suite), numbered up only while another
    thread checks a function of that name."""
    identifier = re.sub(r"\W", "_", _label(f)).strip("_") or "function"
    with _TAKING:
        name = next(n for k in itertools.count() if (n := f"{identifier}_{k}") not in _TAKEN)
        _TAKEN.add(name)
    try:
        yield name
    finally:
        with _TAKING:
            _TAKEN.discard(name)


def _problem(name: str, f: Callable, arguments: _Arguments, reference: Any,
             float64_f: Callable, condition: Any = None) -> Problem:
    """Your function as the problem ``name``: your floating-point arguments
    its explicit inputs, the reference asked for (given your constants too),
    and your condition estimate (see :func:`_condition`) where you give one."""
    common = dict(differentiable=arguments.differentiable, dtypes=(arguments.dtype,),
                  family="testing", description=f"check of {_label(f)}")
    try:
        problem = _declared(name, arguments, _with_constants(reference, arguments), float64_f,
                            common)
    except DeclarationError as e:
        if not e.problems:
            raise
        raise DeclarationError(f"{_label(f)} cannot be checked at these arguments, its "
                               f"reference fails there: {'; '.join(e.problems)}"
                               f"{_in_float64_hint(reference, arguments)}", e.problems) from None
    if condition is not None:
        problem = dataclasses.replace(problem, condition=_condition(condition, problem.inputs,
                                                                    arguments))
    return problem


def _in_float64_hint(reference: Any, arguments: _Arguments) -> str:
    """Why the default reference can fail where your call does not: it runs
    your function on float64 copies of float32 arguments."""
    if reference is not None or arguments.dtype != "float32":
        return ""
    return (". The default reference runs your function in float64 (your float32 arguments "
            "as float64): one that holds float32 tensors of its own (a closure's weights) "
            "cannot run so. Pass them as arguments (argnums= naming those to differentiate "
            "in), hold them in a torch.nn.Module (whose weights the reference takes in "
            "float64), or give reference=HighPrecision(...)")


def _check_pure_and_reentrant(float64_f: Callable, arguments: _Arguments, label: str) -> Any:
    """``f``'s value at your arguments (here its float64 evaluation, which the
    default reference differences); AssertionError if it writes to an
    argument, or gives another value when called again: the checks, its
    reference and its callers rely on a function of its arguments alone.
    Two calls, each on copies; None where a call raises, which the
    declaration (:func:`_problem`) then names."""
    values = []
    for _ in range(2):
        given = {n: np.array(a, dtype=np.float64) for n, a in arguments.arrays.items()}
        pristine = copy_arrays(given)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # as the declaration's own evaluation
                values.append(float64_f(*given.values()))
        except Exception:  # noqa: BLE001 - told by the declaration (_problem)
            return None
        try:
            check_pure(label, "a call", {"inputs": given}, {"inputs": pristine})
        except WrongResult as e:
            raise AssertionError(f"{label}: {e}") from None
    size = sum(a.size for a in arguments.arrays.values())
    try:
        check_reentrant(Cell(label, label, "primal", size), label, *values)
    except WrongResult as e:
        raise AssertionError(f"{label}: {e} (no state kept between calls, no randomness)") \
            from None
    except (TypeError, ValueError):  # values that are not arrays of numbers: the declaration's
        pass
    return values[0]


def _refuse_rounded_outputs(value: Any, reference: Any, label: str) -> None:
    """TypeError where ``f``'s float64 evaluation ``value`` is not float64:
    integers (a piecewise-constant f, nothing to differentiate) or, where
    ``f`` is its own reference, a lower precision (it computes in float32
    somewhere, and float64 differences of it cannot converge). Both were
    told as a reference "too weak to judge" at a feature near the point."""
    if value is None:  # f raised: the declaration names it
        return
    dtypes = sorted({np.asarray(leaf).dtype for leaf in _leaves(value)}, key=str)
    if dtypes and all(d.kind in "biu" for d in dtypes):
        raise TypeError(f"{label} returns {', '.join(map(str, dtypes))} values: it is piecewise "
                        "constant, with no derivative to check; return floating-point values")
    rounded = [d for d in dtypes if d.kind == "f" and d.itemsize < 8]
    if rounded and reference is None:
        raise TypeError(
            f"{label} returns {rounded[0]} at float64 arguments: it computes in a lower "
            "precision somewhere (.astype(np.float32), a float32 array it holds), so float64 "
            "differences of it, the default reference, cannot converge. Compute in the "
            "arguments' dtype, or give reference=HighPrecision(...) or ClosedForm(...)")


def _with_constants(reference: Any, arguments: _Arguments) -> Any:
    """A ClosedForm or HighPrecision reference, written with every argument,
    as a function of the inputs alone."""
    if arguments.plain:
        return reference
    if isinstance(reference, ClosedForm):
        return dataclasses.replace(reference,
                                   expression=arguments.over_inputs(reference.expression))
    if isinstance(reference, HighPrecision):
        primal = reference.primal
        return HighPrecision(lambda xp, *values: primal(xp, *arguments.full(values)))
    return reference


def _declared(name: str, arguments: _Arguments, reference: Any, float64_f: Callable,
              common: dict) -> Problem:
    inputs = arguments.arrays
    if isinstance(reference, ClosedForm):
        return declare_problem(name, inputs, closed_form=reference.expression,
                               elementwise=reference.elementwise, **common)
    if isinstance(reference, HighPrecision):
        return declare_problem(name, inputs, primal=reference.primal, **common)
    if isinstance(reference, Problem):
        return _at_your_inputs(reference, name, arguments.inputs, inputs, common)
    if reference is None:
        return declare_problem(name, inputs, float64_primal=float64_f, **common)
    raise TypeError(f"reference must be ClosedForm(...), HighPrecision(...), a declared "
                    f"problem or None, got {type(reference).__name__}")


def _condition(condition: Any, names: tuple[str, ...],
               arguments: _Arguments) -> Callable[..., float]:
    """``condition``, a number or ``condition(*args) -> float`` (your
    arguments, the floating-point ones as float64 arrays at each input point),
    as a problem's ``condition(**inputs)``."""
    if callable(condition):
        return lambda **inputs: float(condition(*arguments.full(
            [np.asarray(inputs[n], dtype=np.float64) for n in names])))
    value = float(condition)
    if not value >= 1.0:
        raise ValueError(f"condition must be at least 1 (it multiplies the rounding "
                         f"tolerance), got {condition!r}")
    return lambda **_: value


def _at_your_inputs(declared: Problem, name: str, names: tuple[str, ...], inputs: dict,
                    common: dict) -> Problem:
    """A declared problem's reference source, at your arguments."""
    if len(declared.inputs) != len(names):
        raise TypeError(f"problem {declared.name!r} takes {len(declared.inputs)} inputs "
                        f"({', '.join(declared.inputs)}), your function {len(names)}")
    renamed = dict(zip(declared.inputs, inputs.values()))
    differentiable = tuple(declared.inputs[names.index(n)] for n in common["differentiable"])
    return dataclasses.replace(
        declared, name=name, family="testing", kind="primitive", generate=fixed_inputs(renamed),
        sizes=(sum(np.size(v) for v in renamed.values()),), differentiable=differentiable,
        domain={}, neighbourhood=NEIGHBOURHOOD, dtypes=common["dtypes"], max_points=None,
        max_full_jacobian=FULL_MATRICES_MAX)


def _array_or_number(x: Any) -> Any:
    """``x`` as a NumPy array; a built-in Python number, or a list, as it is:
    it has no dtype, and the check gives it the cell's where that holds
    every value exactly (a float32 result's ``.item()`` or ``.tolist()``);
    a tuple as it is too, as impls/protocol's as_numpy leaves one, so that
    the check can say what is wrong with it (``(dy,)`` for ``dy``)."""
    return x if type(x) in (int, float, list, tuple) else np.asarray(x)


class _UnderTest:
    """Your operations as an implementation: ``operations[op](task) -> run``."""

    name = "your function"

    def __init__(self, operations: dict[str, Callable[[Task], Callable[[], Any]]],
                 to_numpy: Callable[[Any], np.ndarray] | None = None):
        self.operations, self._to_numpy = operations, to_numpy or _array_or_number

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        return op in self.operations

    def prepare(self, task: Task) -> Prepared:
        convert = self._to_numpy
        if task.op in ("vjp", "hvp"):  # a tuple of arrays, one per differentiable input
            return Prepared(self.operations[task.op](task),
                            lambda r: tuple(convert(c) for c in r)
                            if isinstance(r, (tuple, list)) else r)
        return Prepared(self.operations[task.op](task), convert)


def _run(problem: Problem, impl: _UnderTest, ops: Sequence[str], points: int,
         label: str, arguments: "_Arguments", through: str = "") -> CheckResult:
    from adjointbench.reference.cache import Oracle

    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    oracle = Oracle(use_cache=False)  # your function's references live in memory only
    executor = LocalExecutor(impl)
    records = []
    with temporarily(problem):
        for op in ops:
            cell = Cell(problem.name, impl.name, op, problem.sizes[0], problem.dtypes[0],
                        points=points)
            blank = Record(cell.problem, cell.impl, op, cell.dtype, "cpu", cell.size, 0,
                           outcome="error")
            reason = unsupported_reason(cell, executor)
            if reason:
                records.append(dataclasses.replace(blank, outcome="unsupported", message=reason))
                continue
            records += [check_point(cell, oracle, executor, blank, point)
                        for point in range(points)]
    result = CheckResult(label, tuple(records), arguments.differentiable,
                         arguments.held_fixed, through)
    if not result.ok:
        failure = AssertionError(_failure_message(result, problem, arguments.constants))
        failure.result = result  # every check's record, beyond the few the message shows
        raise failure
    return result


def _failure_message(result: CheckResult, problem: Problem, constants: dict[str, Any]) -> str:
    from adjointbench.reference.problem import make_inputs

    lines = [f"{result.function}: {len(result.failures)} of {len(result.records)} checks "
             "failed or could not be judged:"]
    shown = {}
    for r in result.failures:
        shown[r.op] = shown.get(r.op, 0) + 1
        if shown[r.op] > 1:  # the first failing point of each check
            continue
        where = f" at input point {r.point}"
        lines.append(f"  {r.op}{where}: {r.outcome}: {r.message.replace(where, '', 1)}")
        inputs = make_inputs(problem, r.size, 0, seeded_point(problem, r.point or 0, r.dtype))
        if sum(np.size(v) for v in inputs.values()) <= 8:
            values = ", ".join(f"{k}={np.array2string(v, precision=6)}" for k, v in inputs.items())
            lines.append(f"    inputs at that point: {values}")
    if constants:
        held = ", ".join(f"{k}={reprlib.repr(v)}" for k, v in constants.items())
        lines.append(f"  held fixed at every point (not floating-point): {held}")
    more = sum(n - 1 for n in shown.values())
    lines += [f"  ({more} more at other input points)"] if more else []
    return "\n".join(lines + _rounding_hint(result.failures) + _framework_hints(result.failures))


# What JAX and torch say where a function cannot be differentiated as written, and the fix
_FRAMEWORK_HINTS = (
    (("forward-mode autodiff (jvp) to a custom_vjp function",
      "must implement the jvp function for custom autograd.Function",
      "Differentiation rule for 'custom_lin' not implemented"),
     "Your function has a reverse-mode rule only, which forward mode cannot go through: "
     "check it with 'jax-reverse' or 'torch-reverse' (its JVP is then the transposed VJP; "
     "for second order, a nesting whose inner mode is reverse, such as "
     "'jax-forward-over-reverse' or 'torch-reverse-over-reverse'), or write a forward rule "
     "(jax.custom_jvp, which JAX transposes for reverse mode; a jvp staticmethod beside "
     "torch's backward)."),
    (("must override the setup_context staticmethod",),
     "Your torch.autograd.Function has no setup_context (forward(ctx, ...) written the "
     "classic way), so torch.func cannot run it: forward mode needs one, with a jvp "
     "staticmethod; 'torch-reverse' and 'torch-reverse-over-reverse' check it as it is, "
     "through torch.autograd.grad, as loss.backward() runs it."),
    (("a backward marked @once_differentiable", "its VJP into a JVP of 0",
      "reverse mode's JVP, the VJP's own VJP"),
     "Your backward cannot be differentiated in its cotangent (torch's @once_differentiable, "
     "a cotangent detached or taken out of the framework): reverse mode then has the VJP "
     "alone, which the vjp checks judge; the JVP (the transposed VJP: jvp, linearity, "
     "transpose) and second derivatives need a backward the framework can differentiate. "
     "Write the backward in the framework's own operations without the mark, or give the "
     "rule a forward mode (a jvp staticmethod with setup_context, jax.custom_jvp) and check "
     "the forward backend."),
    (("forward mode's VJP, the JVP's own VJP",),
     "Your tangent rule (a jvp staticmethod, a jax.custom_jvp) cannot be differentiated in "
     "its tangent (detached, or taken out of the framework): forward mode then has the JVP "
     "alone, which the jvp checks judge; the VJP (the transposed JVP: vjp, transpose) needs "
     "a tangent rule written in the framework's own operations, or check the reverse "
     "backend."),
    (("TracerArrayConversionError", "ConcretizationTypeError", "TracerBoolConversionError",
      "TracerIntegerConversionError"),
     "Your function takes a traced JAX array out of JAX (np.sin, np.asarray, float(), or a "
     "Python if on an array's value), where JAX cannot follow it: compute with jax.numpy "
     "(jnp.where for a branch), or give the NumPy part a jax.custom_vjp with its rules."),
    (("Cannot access data pointer of Tensor that doesn't have storage",),
     "Your function takes its tensor out of torch (.numpy(), np.asarray, .tolist()), where "
     "torch.func cannot follow it: compute with torch's own functions, or give the NumPy "
     "part a torch.autograd.Function with its rules."),
)


def _framework_hints(failures: Sequence[Record]) -> list[str]:
    """The fix, where JAX or torch could not differentiate the function as
    written (_FRAMEWORK_HINTS), once each."""
    said = " ".join(r.message or "" for r in failures)
    return [f"  {hint}" for signs, hint in _FRAMEWORK_HINTS if any(s in said for s in signs)]


NEAR_ROUNDING = 1e3  # errors within this many tolerances get the hint below


def _rounding_hint(failures: Sequence[Record]) -> list[str]:
    """Where every mismatch is within NEAR_ROUNDING tolerances, what else
    than a wrong rule can explain it, and the way to say so."""
    near = [r for r in failures if r.outcome == "mismatch" and r.tol
            and r.max_rel_err is not None and r.max_rel_err <= NEAR_ROUNDING * r.tol]
    if not near or len(near) < sum(r.outcome == "mismatch" for r in failures):
        return []
    worst = max(r.max_rel_err / r.tol for r in near)
    return [f"  Every mismatch is within {worst:.3g} times its rounding tolerance. A right "
            "rule whose intermediate values cancel rounds this much: s (1 - s) of a "
            "softmax or sigmoid with s near 1, 1 - tanh(x)^2 at large |x|. If yours does, "
            "say how much with condition= (a number, or a function of your arguments), "
            "which multiplies the tolerance; a wrong rule is wrong by far more."]


@dataclass(frozen=True)
class _Arguments:
    """Your arguments: the floating-point ones become the problem's inputs;
    the others (a Python int or bool, an integer array, a string: a power,
    an axis, a mode) are constants, handed to every call as you gave them,
    never differentiated nor moved between input points. An argument that
    holds several arrays (a dict of parameters, a tuple of weights, nested
    as you like) gives one input per floating-point array in it, named by
    where it sits (``params['w']``), and is handed to every call in its
    own structure."""

    names: tuple[str, ...]  # every argument's, in order
    arrays: dict[str, np.ndarray]  # the floating-point ones (or their arrays): the inputs
    constants: dict[str, Any]
    differentiable: tuple[str, ...]  # of the inputs
    dtype: str
    trees: dict[str, Any] = dataclasses.field(default_factory=dict)  # argument -> skeleton

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    @property
    def differentiable_arguments(self) -> tuple[str, ...]:
        """The arguments whose arrays are differentiated in, in order."""
        return tuple(n for n in self.names if any(leaf in self.differentiable
                                                  for leaf in self._inputs_of(n)))

    def _inputs_of(self, name: str) -> list[str]:
        return _leaf_names(self.trees[name]) if name in self.trees else [name]

    def full(self, values: Sequence[Any]) -> tuple:
        """Every argument, ``values`` in the floating-point ones' places."""
        given = dict(zip(self.arrays, values))
        return tuple(self.argument(n, given) for n in self.names)

    def argument(self, name: str, given: dict, constants: bool = True) -> Any:
        """Argument ``name`` with the arrays ``given`` (by input name) in it;
        its constants as you gave them (None with ``constants=False``: in a
        tangent or a cotangent)."""
        if name in self.trees:
            return _filled(self.trees[name], given, constants)
        if name in given:
            return given[name]
        return _fresh(self.constants[name]) if constants else None

    def flat(self, per_argument: Any) -> Any:
        """Cotangents given per differentiable argument (a tree for one that
        holds several arrays) as one per input; anything else as it is (the
        checks say what is wrong with it)."""
        wanted = self.differentiable_arguments
        if not self.trees or not isinstance(per_argument, (tuple, list)) \
                or len(per_argument) != len(wanted):
            return per_argument
        return tuple(leaf for name, part in zip(wanted, per_argument)
                     for leaf in (_picked(self.trees[name], part, name)
                                  if name in self.trees else [part]))

    @property
    def held_fixed(self) -> tuple[str, ...]:
        """The arguments, inputs and constants inside arguments that are not
        differentiated in, by name (``p['n']`` for one in a dict)."""
        held = [n for n in self.inputs if n not in self.differentiable]
        inside = [name for skeleton in self.trees.values()
                  for name in _leaf_names(skeleton, _Constant)]
        return (*self.constants, *held, *inside)

    @property
    def plain(self) -> bool:
        """Every argument a floating-point array: f takes the inputs as they are."""
        return not self.constants and not self.trees

    def over_inputs(self, f: Callable) -> Callable:
        """``f(*every argument)`` as a function of the inputs alone."""
        if self.plain:
            return f
        return lambda *values: f(*self.full(values))


@dataclass(frozen=True)
class _Leaf:
    """Where an input sits in an argument that holds several arrays."""

    name: str


@dataclass(frozen=True)
class _Constant:
    """A value in an argument that holds several arrays that is not one of
    them (an int, a string, an axis tuple): handed over as it is."""

    value: Any
    name: str  # where it sits, as a _Leaf's name


def _holds_arrays(x: Any) -> bool:
    """A dict, a JAX pytree node of a class of its own (:class:`_Node`), or
    a list or tuple holding arrays (0-d ones too: a tuple of scalar
    parameters, as a jax.custom_vjp's cotangent has it) or containers; a
    list of plain numbers (Python's, or NumPy's scalars) is one array."""
    if isinstance(x, dict) or _node_children(x) is not None:
        return True
    return isinstance(x, (list, tuple)) and any(
        isinstance(v, (dict, list, tuple)) or _is_array(v) for v in x)


def _is_array(v: Any) -> bool:
    """An array object (NumPy's, JAX's, a torch tensor), of any shape."""
    return hasattr(v, "ndim") and hasattr(v, "shape") and not isinstance(v, np.generic)


@dataclass(frozen=True)
class _Node:
    """A JAX pytree node of a class of its own among the arguments or
    outputs (an Equinox module, a ``register_dataclass`` or
    ``register_pytree_node_class`` class, a flax struct): its children, by
    their key (``.w``, as ``jax.tree_util.keystr`` writes it), and its
    tree definition, which rebuilds one from new children. Such an argument
    was held fixed whole: a wrong cotangent for its weights passed every
    check."""

    keys: tuple[str, ...]
    children: tuple
    treedef: Any

    def rebuilt(self, children: Sequence[Any]) -> Any:
        return self.treedef.unflatten(list(children))


def _node_children(x: Any) -> _Node | None:
    """``x`` as a :class:`_Node` (its children as they are), or None where it
    is not a pytree node of a class of its own: a dict, list, tuple, None or
    array is handled as such, and without JAX loaded nothing is one."""
    jax = sys.modules.get("jax")
    if jax is None or x is None or isinstance(x, (dict, list, tuple)) or _is_array(x):
        return None
    tree_util = jax.tree_util
    one_level = lambda v: v is not x  # noqa: E731 - x's children as leaves
    keyed, treedef = tree_util.tree_flatten_with_path(x, is_leaf=one_level)
    if tree_util.treedef_is_leaf(treedef):
        return None
    return _Node(tuple(tree_util.keystr(path) for path, _ in keyed),
                 tuple(child for _, child in keyed), treedef)


def _same_kind(like: Any, parts: list) -> Any:
    """``parts`` as a container of ``like``'s type (a named tuple's too)."""
    return type(like)(*parts) if hasattr(like, "_fields") else type(like)(parts)


def _split(name: str, value: Any, inputs: dict) -> Any:
    """``value``'s skeleton: each floating-point array in it a _Leaf, put in
    ``inputs`` under the name of where it sits; constants as they are."""
    if isinstance(value, dict):
        return {k: _split(f"{name}[{k!r}]", v, inputs) for k, v in value.items()}
    node = _node_children(value)
    if node is not None:
        return dataclasses.replace(node, children=tuple(
            _split(f"{name}{key}", child, inputs) for key, child in zip(node.keys, node.children)))
    if _holds_arrays(value):
        return _same_kind(value, [_split(f"{name}[{i}]", v, inputs) for i, v in enumerate(value)])
    array = _floating(value)
    if array is None:
        return _Constant(value, name)
    inputs[name] = array
    return _Leaf(name)


def _filled(skeleton: Any, given: dict, constants: bool) -> Any:
    if isinstance(skeleton, _Leaf):
        return given.get(skeleton.name)
    if isinstance(skeleton, _Constant):
        return _fresh(skeleton.value) if constants else None
    if isinstance(skeleton, dict):
        return {k: _filled(v, given, constants) for k, v in skeleton.items()}
    if isinstance(skeleton, _Node):
        return skeleton.rebuilt(_filled(v, given, constants) for v in skeleton.children)
    return _same_kind(skeleton, [_filled(v, given, constants) for v in skeleton])


def _leaf_names(skeleton: Any, kind: type = _Leaf) -> list[str]:
    """The names of the skeleton's inputs (or, with ``kind=_Constant``, of
    its constants), in order."""
    if isinstance(skeleton, (_Leaf, _Constant)):
        return [skeleton.name] if isinstance(skeleton, kind) else []
    return [name for part in _parts(skeleton) for name in _leaf_names(part, kind)]


def _parts(skeleton: Any) -> Sequence[Any]:
    """The skeletons a skeleton of a container holds, in order."""
    if isinstance(skeleton, _Node):
        return skeleton.children
    return list(skeleton.values()) if isinstance(skeleton, dict) else skeleton


def _picked(skeleton: Any, tree: Any, where: str) -> list:
    """The arrays of ``tree`` (a cotangent in an argument's structure) at
    the places of the skeleton's inputs, in order (none is asked where the
    argument holds a constant: before, a dict's string entry made every
    cotangent "have no ['act']")."""
    if isinstance(skeleton, _Leaf):
        return [tree]
    if isinstance(skeleton, _Node):
        return _picked_from_node(skeleton, tree, where)
    keys = () if isinstance(skeleton, _Constant) else (
        skeleton.keys() if isinstance(skeleton, dict) else range(len(skeleton)))
    picked = []
    for key in keys:
        if not _leaf_names(skeleton[key]):  # a constant: no cotangent there to give
            continue
        try:
            part = tree[key]
        except (KeyError, IndexError, TypeError):
            raise TypeError(f"the cotangent for {where} has no [{key!r}]: give it in the "
                            f"structure of the argument") from None
        picked += _picked(skeleton[key], part, f"{where}[{key!r}]")
    return picked


def _picked_from_node(skeleton: _Node, tree: Any, where: str) -> list:
    """:func:`_picked` for an argument that is a pytree node of a class of
    its own: ``tree`` must be one with the same children (as jax.vjp gives
    its cotangent)."""
    node = _node_children(tree)
    if node is None or node.keys != skeleton.keys:
        raise TypeError(f"the cotangent for {where} is a {type(tree).__name__}, not a "
                        f"{skeleton.treedef.node_data()[0].__name__} with children "
                        f"{', '.join(skeleton.keys)}: give it in the structure of the argument")
    return [leaf for key, sub, part in zip(node.keys, skeleton.children, node.children)
            if _leaf_names(sub) for leaf in _picked(sub, part, f"{where}{key}")]


def _fresh(constant: Any) -> Any:
    """A copy of an array constant (a call may write to it), else the constant."""
    return constant.copy() if isinstance(constant, np.ndarray) else constant


LOW_PRECISION = ("float16", "float8", "float4")  # bfloat16 too; ml_dtypes' and torch's names


def _refuse_low_precision(x: Any) -> None:
    """A float16, bfloat16 or float8 argument is refused, naming the fix.
    Such a torch tensor has no NumPy form and bfloat16's NumPy dtype (from
    ml_dtypes) is not of kind "f": both were taken for constants and held
    fixed, their derivatives never checked, without a word."""
    name = str(getattr(x, "dtype", "")).removeprefix("torch.")
    if any(kind in name for kind in LOW_PRECISION):
        raise TypeError(f"a {name} argument: the checks take float32 or float64 arguments "
                        "(a rule's error hides in this dtype's rounding); convert it "
                        "(np.asarray(x, np.float32), x.float() in torch)")


def _floating(x: Any) -> np.ndarray | None:
    """``x`` as a floating-point array (a copy), or None for a constant."""
    if x is None or isinstance(x, (bool, int, str, bytes, np.integer, np.bool_)):
        return None
    _refuse_low_precision(x)
    try:
        array = np.array(as_numpy(x))
    except Exception:  # noqa: BLE001 - not an array at all: a constant
        return None
    if array.dtype.kind == "c":
        raise TypeError(f"a complex argument ({array.dtype}): the checks take real float32 "
                        "or float64 arguments; split it into its real and imaginary parts")
    return array if array.dtype.kind == "f" else None


def _prepare_arguments(f: Callable, args: tuple, argnums) -> _Arguments:
    if not args:
        raise TypeError("give the arguments to check f at: check_rules(f, x, ...)")
    names = _names(f, len(args))
    arrays, trees = {}, {}
    for name, value in zip(names, args):
        if _holds_arrays(value):
            trees[name] = _split(name, value, arrays)
        else:
            arrays[name] = _floating(value)
    chosen = _chosen(argnums, len(args))
    floating = [a for a in arrays.values() if a is not None]
    real = floating[0].dtype if floating else np.dtype(np.float64)
    for i in chosen or ():  # a number you ask to differentiate in is a real number
        if names[i] not in trees and arrays[names[i]] is None:
            arrays[names[i]] = _as_real(args[i], names[i], real)
    constants = {n: a for n, a in zip(names, args) if n not in trees and arrays[n] is None}
    arrays = {n: array for n, array in arrays.items() if array is not None}
    if not arrays:
        raise TypeError(f"no floating-point argument to differentiate in (held fixed: "
                        f"{', '.join(names)}): give the arguments as float32 or float64 arrays, or "
                        "numbers (2.0, not 2), or name them in argnums")
    for name, array in arrays.items():
        _check_usable(name, array)
    differentiable = tuple(arrays) if chosen is None else tuple(
        leaf for i in chosen for leaf in (_leaf_names(trees[names[i]]) if names[i] in trees
                                          else [names[i]]))
    return _Arguments(names, arrays, constants, differentiable, _dtype(list(arrays.values())),
                      trees)


@dataclass(frozen=True)
class _Outputs:
    """The outputs of a function that gives several (a tuple, list or dict
    of arrays, nested as you like), which the checks see as one vector of
    their entries in turn (:func:`_leaves`): a JVP's are joined the same
    way, and a VJP is handed its cotangent shaped like the outputs.
    ``skeleton`` None: one output, passed as it is."""

    skeleton: Any = None  # f's value, each array replaced by None
    shapes: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, value: Any) -> "_Outputs":
        """The outputs of ``value``, ``f``'s at your arguments."""
        if not _several(value):
            return cls()
        return cls(_skeleton(value), tuple(np.shape(leaf) for leaf in _leaves(value)))

    def join(self, y: Any) -> Any:
        return y if self.skeleton is None else _joined(y)

    def split(self, w: np.ndarray) -> Any:
        if self.skeleton is None:
            return w
        ends = np.cumsum([math.prod(shape) for shape in self.shapes])
        parts = (part.reshape(shape) for part, shape in zip(np.split(w, ends[:-1]), self.shapes))
        return _rebuilt(self.skeleton, parts)


def _several(y: Any) -> bool:
    return isinstance(y, (tuple, list, dict)) or _node_children(y) is not None


def _keys(tree: dict) -> list:
    """A dict's keys in the order its outputs are joined: sorted, as JAX
    flattens a dict (so a JVP may give its keys in any order), or as given
    where they do not sort."""
    try:
        return sorted(tree)
    except TypeError:
        return list(tree)


def _leaves(y: Any) -> list:
    """The arrays of a tree of outputs, in the order they are joined (None,
    an output with nothing in it, as JAX flattens it, gives none)."""
    if isinstance(y, dict):
        return [leaf for key in _keys(y) for leaf in _leaves(y[key])]
    if isinstance(y, (tuple, list)):
        return [leaf for part in y for leaf in _leaves(part)]
    node = _node_children(y)
    if node is not None:
        return [leaf for part in node.children for leaf in _leaves(part)]
    return [] if y is None else [y]


_NOTHING = "no output"  # where a tree of outputs holds None


def _skeleton(y: Any) -> Any:
    """``y``'s structure: None where it has an array, _NOTHING for None."""
    if isinstance(y, dict):
        return {key: _skeleton(y[key]) for key in _keys(y)}
    if isinstance(y, (tuple, list)):  # a named tuple's cotangent as a plain tuple
        return (list if isinstance(y, list) else tuple)(_skeleton(part) for part in y)
    node = _node_children(y)
    if node is not None:
        return dataclasses.replace(node, children=tuple(map(_skeleton, node.children)))
    return _NOTHING if y is None else None


def _rebuilt(skeleton: Any, parts: Iterator) -> Any:
    """``skeleton`` with its arrays taken from ``parts`` in turn."""
    if isinstance(skeleton, dict):
        return {key: _rebuilt(sub, parts) for key, sub in skeleton.items()}
    if isinstance(skeleton, (tuple, list)):
        return type(skeleton)(_rebuilt(sub, parts) for sub in skeleton)
    if isinstance(skeleton, _Node):
        return skeleton.rebuilt([_rebuilt(sub, parts) for sub in skeleton.children])
    return None if skeleton is _NOTHING else next(parts)


def _joined(y: Any) -> Any:
    """Several outputs (:func:`_several`) as one vector of their entries in
    turn (NumPy's, or the namespace's object arrays); one output as it is."""
    if not _several(y):
        return y
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in _leaves(y)])


def _joining(reference: Any) -> Any:
    """A HighPrecision reference whose primal gives a tuple of outputs, as
    one that gives them joined (:func:`_joined`), as the function's are."""
    if not isinstance(reference, HighPrecision):
        return reference
    primal = reference.primal
    return HighPrecision(lambda xp, *inputs: _joined(primal(xp, *inputs)))


def _check_usable(name: str, array: np.ndarray) -> None:
    """Raise ValueError where ``array`` cannot be checked at: empty, or not finite."""
    if not array.size:
        raise ValueError(f"argument {name!r} is empty: give at least one number to check at")
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"argument {name!r} holds {array[index]} at index {index}: the checks "
                         "need finite arguments (derivatives are taken at them and near them)")


def _chosen(argnums, count: int) -> tuple[int, ...] | None:
    """``argnums`` as a tuple of argument positions (None: not given)."""
    if argnums is None:
        return None
    chosen = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    wrong = [i for i in chosen if not isinstance(i, int) or not -count <= i < count]
    if wrong or not chosen:
        raise ValueError(f"argnums={argnums!r}: give positions of the {count} argument(s) "
                         f"to differentiate in, from 0 to {count - 1}")
    return tuple(i % count for i in chosen)


def _as_real(x: Any, name: str, dtype: np.dtype) -> np.ndarray:
    """An integer argument named in ``argnums``, as a real one of ``dtype``."""
    try:
        return np.array(as_numpy(x), dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(f"argument {name!r} ({type(x).__name__}) is not a number: it cannot "
                        "be differentiated in; leave it out of argnums") from None


def check_rules(f: Callable, *args, jvp: Callable | None = None, vjp: Callable | None = None,
                hvp: Callable | None = None, reference: Any = None, points: int = 3,
                argnums=None, condition: Any = None) -> CheckResult:
    """Check hand-written rules of ``f`` on NumPy arrays.

    ``f(*args) -> y``; ``jvp(args, tangents) -> dy``, ``vjp(args, w) ->
    tuple of cotangents`` and ``hvp(args, tangents, w) -> tuple``, the
    Hessian of <w, f> along the tangents (the second-order check, with
    the symmetry <u, H v> = <v, H u>), with one tangent and one cotangent per
    differentiable argument (every floating-point argument, or those in
    ``argnums``). Other arguments (an int, an integer array, a string) are
    held fixed: passed as given, in ``args`` too, never differentiated in.
    An argument holding several arrays (a dict, list or tuple, a JAX pytree
    of a class of its own) is differentiated in each of them, its tangent
    and cotangent given in its structure.
    Checks the primal (against a reference other than ``f`` itself), each
    rule given, the transpose identity when both are, and linearity of the
    JVP, at ``points`` input points; see the module docstring.
    ``condition``: a condition estimate (a number, or ``condition(*args)``
    at each point), which multiplies the rounding tolerance (default: 1, or
    a declared problem's own).

    >>> import numpy as np
    >>> r = check_rules(np.sin, np.array([0.5, 1.0]), jvp=lambda a, t: np.cos(a[0]) * t[0],
    ...                 vjp=lambda a, w: (np.cos(a[0]) * w,))
    >>> r.ok
    True
    """
    if jvp is None and vjp is None and hvp is None:
        raise TypeError("give the rules to check: jvp=(args, tangents) -> dy, "
                        "vjp=(args, w) -> tuple of cotangents and/or "
                        "hvp=(args, tangents, w) -> tuple")
    if hvp is not None and reference is None:
        raise ValueError("hvp= needs a reference the oracle can differentiate twice: "
                         "reference=HighPrecision(lambda xp, x: ...) or ClosedForm(...) (float64 "
                         "differences of f cannot certify second derivatives)")
    arguments = _prepare_arguments(f, args, argnums)
    differentiable = arguments.differentiable
    float64_f = lambda *values: f(*arguments.full(  # noqa: E731
        [np.asarray(v, dtype=np.float64) for v in values]))
    value = _check_pure_and_reentrant(float64_f, arguments, _label(f))
    _refuse_rounded_outputs(value, reference, _label(f))
    outputs = _Outputs.of(value)

    def arguments_at(task):
        return arguments.full([np.asarray(task.inputs[n], dtype=task.dtype)
                               for n in arguments.inputs])

    def along(task, field):  # per differentiable argument, in its structure
        given = {n: np.asarray(getattr(task, field)[n], dtype=task.dtype) for n in differentiable}
        return tuple(arguments.argument(n, given, constants=False)
                     for n in arguments.differentiable_arguments)

    operations = {"primal": lambda task: (lambda a=arguments_at(task): outputs.join(f(*a)))}
    if jvp is not None:
        operations["jvp"] = lambda task: (
            lambda a=arguments_at(task), t=along(task, "tangent"): outputs.join(jvp(a, t)))
    if vjp is not None:
        operations["vjp"] = lambda task: (
            lambda a=arguments_at(task), w=np.asarray(task.cotangent, dtype=task.dtype):
            arguments.flat(vjp(a, outputs.split(w))))
    if hvp is not None:
        operations["hvp"] = lambda task: (
            lambda a=arguments_at(task), t=along(task, "tangent"),
            w=np.asarray(task.cotangent, dtype=task.dtype):
            arguments.flat(hvp(a, t, outputs.split(w))))
    with _name_of(f) as name:
        problem = _problem(name, f, arguments, _joining(reference),
                           lambda *values: outputs.join(float64_f(*values)), condition)
        return _run(problem, _UnderTest(operations), _ops(jvp is not None, vjp is not None,
                                                            reference, hvp is not None),
                    points, _label(f), arguments)


def _ops(jvp: bool, vjp: bool, reference: Any, hvp: bool = False) -> list[str]:
    """The checks: the primal only against an independent reference."""
    ops = [] if reference is None else ["primal"]
    ops += (["jvp", "linearity"] if jvp else []) + (["vjp"] if vjp else [])
    return ops + (["transpose"] if jvp and vjp else []) + (["hvp", "symmetry"] if hvp else [])


def check_function(f: Callable, backend: str, *args, reference: Any = None, points: int = 3,
                   argnums=None, condition: Any = None) -> CheckResult:
    """Check a JAX or PyTorch function's derivatives, as its framework computes
    them (through your ``jax.custom_vjp``/``custom_jvp`` or
    ``torch.autograd.Function``).

    ``backend`` is a helper-API name: ``"jax-forward"`` and ``"torch-forward"``
    check the JVP, and the VJP obtained by transposing it; ``"jax-reverse"``
    and ``"torch-reverse"`` the VJP, and the JVP obtained by transposing it.
    ``args`` are NumPy arrays or the framework's own, all float32 or all
    float64; the derivatives are computed in that dtype. A
    ``torch.autograd.Function`` without ``setup_context``, which torch.func
    cannot run, is differentiated by torch.autograd.grad in the reverse
    modes (``.through`` says so); forward mode needs one. JAX needs float64
    enabled for float64 arguments; the default reference evaluates ``f`` in
    float64 (in JAX under a scoped ``jax.enable_x64``, which changes no
    global setting). ``condition``: as in :func:`check_rules`.

    Second order: a nesting of modes, such as ``"jax-forward-over-reverse"``
    or ``"torch-reverse-over-reverse"`` (every name the helper API's
    ``hessian_vector_product`` takes), checks the Hessian of <w, f> along
    the tangents against the oracle's, and its symmetry <u, H v> = <v, H u>,
    as ``check_rules``' ``hvp=`` does; it needs a ``HighPrecision`` or
    ``ClosedForm`` reference (float64 differences cannot certify second
    derivatives). A nesting the framework would carry through ``f`` wrong
    without an error raises ``NestingError``, naming the nestings that work.

    >>> import jax.numpy as jnp
    >>> check_function(jnp.tanh, "jax-reverse", jnp.array([0.5, -1.0])).ok
    True
    """
    framework, fw, mode, nesting = _framework_backend(backend)
    if nesting and reference is None:
        raise ValueError(f"{backend} checks second derivatives, which need a reference the "
                         "oracle can differentiate twice: reference=HighPrecision(lambda xp, x: "
                         "...) or ClosedForm(...) (float64 differences of f cannot certify them)")
    arguments = _prepare_arguments(f, args, argnums)
    _check_precision(framework, arguments.dtype)
    of_inputs = _one_output(arguments.over_inputs(f), fw)
    # f of the differentiable inputs at your arguments: what the questions below are asked at
    _, g, primals = _bound(of_inputs, fw, arguments.arrays, arguments.dtype, arguments.inputs,
                           arguments.differentiable)
    fw, through = _reverse_adapter(fw, g, primals, mode or nesting)
    if nesting:  # at your arguments, as the helper API refuses it
        from adjointbench.impls.backends import _refuse_lost_rules

        _refuse_lost_rules(fw, nesting, g, primals, backend)
    operations = _framework_operations(of_inputs, fw, mode, arguments.inputs,
                                       arguments.differentiable, nesting,
                                       _untransposable(fw, g, primals, mode))
    float64_f = _float64_twin(_one_output(arguments.over_inputs(
        _with_float64_state(f, framework)), fw), fw, framework)
    _refuse_rounded_outputs(_check_pure_and_reentrant(float64_f, arguments, _label(f)),
                            reference, _label(f))
    checks = _ops(False, False, reference, hvp=True) if nesting else _ops(True, True, reference)
    with _name_of(f) as name:
        problem = _problem(name, f, arguments, _joining(reference), float64_f, condition)
        return _run(problem, _UnderTest(operations, fw.to_numpy), checks, points, _label(f),
                    arguments, through)


def _reverse_adapter(fw, g: Callable, primals: tuple, mode: str) -> tuple[Any, str]:
    """(adapter, how it differentiates where not as usual): torch's reverse
    modes (``torch-reverse``, ``torch-reverse-over-reverse``) go through
    torch.autograd.grad where ``g`` calls a torch.autograd.Function written
    without ``setup_context``, which torch.func refuses to run (found by one
    VJP at your arguments); every check of one failed with torch.func's
    error before."""
    from adjointbench.impls.backends import autograd_can_run, transforms_refused

    if not autograd_can_run(fw, mode):  # no probe: JAX's would compile for nothing
        return fw, ""
    try:
        fw.vjp(g, primals, g(*primals) * 0)
    except Exception as error:  # noqa: BLE001 - any other failure is the checks' to tell
        if transforms_refused(fw, mode, error):
            from adjointbench.impls.torch import AUTOGRAD

            return AUTOGRAD, ("torch.autograd.grad: a torch.autograd.Function without "
                              "setup_context, which torch.func cannot run")
    return fw, ""


def _untransposable(fw, g: Callable, primals: tuple, mode: str | None) -> list[str]:
    """What ``g`` calls at ``primals`` whose VJP the framework would
    transpose wrong, without an error (reverse mode's JVP is the VJP's own
    VJP, in the cotangent): torch gave a @once_differentiable backward's
    transposed JVP as 0, a mismatch of a right rule."""
    if mode != "reverse":
        return []
    return fw.rules_lost_by("reverse_over_reverse", g, primals)


def _zero_along_random(product: Callable, like: tuple, fw, dtype: str) -> bool:
    """Whether the linear ``product`` (a VJP in its cotangent, a JVP in its
    tangent) is 0 along directions of seeded random entries shaped as
    ``like`` (not ones: a softmax's J^T 1 is 0). Where it is not, its
    transpose at a random direction is not 0 either (J u = 0 for a random u
    means J = 0): one that came out exactly 0 is no derivative but the
    framework losing the product's dependence on its direction."""
    rng = np.random.default_rng(0)
    directions = (fw.put(rng.standard_normal(np.shape(x)), dtype, "cpu") for x in like)
    return all(fw.is_zero(y) for y in product(*directions))


def _untransposed(what: str, product: str, example: str) -> RuntimeError:
    return RuntimeError(
        f"{CANNOT_DIFFERENTIATE_AGAIN}: {what}, came out 0 where the {product} is not: the "
        f"framework sees the {product} as not depending on its direction ({example}, or "
        "computes outside the framework), so it cannot be transposed")


def _framework_backend(backend: str) -> tuple[str, Any, str | None, str | None]:
    """(framework, its adapter, mode, nesting) of a helper-API backend name:
    first order (``jax-reverse``: a mode, no nesting) or second
    (``jax-forward-over-reverse``: a nesting, no mode)."""
    from adjointbench.impls.backends import (BACKENDS, SECOND_ORDER_BACKENDS, _backend,
                                             _second_order_backend)

    if backend in SECOND_ORDER_BACKENDS:
        fw, nesting = _second_order_backend(backend)
        return backend.split("-")[0], fw, None, nesting
    if backend not in BACKENDS:
        raise UnknownNameError(f"unknown backend {backend!r}."
                               f"{closest(backend, BACKENDS + SECOND_ORDER_BACKENDS)}")
    chosen = _backend(backend)
    return chosen.framework, chosen.ops, chosen.mode, None


def _one_output(f: Callable, fw) -> Callable:
    """``f`` with several outputs (a tuple, list or dict) joined into one
    vector, their entries in turn (:func:`_leaves`): the products of a
    function with several outputs are then those of that vector (its
    cotangent one vector too)."""
    def joined(*args):
        y = f(*args)
        _refuse_numbers(y, fw)
        return fw.xp.concat([leaf.reshape(-1) for leaf in _leaves(y)]) if _several(y) else y
    return joined


def _refuse_numbers(y: Any, fw) -> None:
    """A torch function's output that is a Python number (``.item()``,
    ``float()``) has left torch, and no derivative follows it (JAX's
    tracing stops such a function itself, see _FRAMEWORK_HINTS)."""
    if fw.name != "torch":
        return
    numbers = [leaf for leaf in _leaves(y) if isinstance(leaf, (int, float, np.number))]
    if numbers:
        raise TypeError(
            f"the function returned a Python {type(numbers[0]).__name__} "
            f"({reprlib.repr(numbers[0])}) where torch needs a tensor: .item(), float() or "
            ".tolist() take the value out of torch, where no derivative can follow it; "
            "return the tensor (a 0-d tensor for one number)")


def _check_precision(framework: str, dtype: str) -> None:
    if framework == "jax" and dtype == "float64":
        import jax
        if not jax.config.jax_enable_x64:
            raise ValueError("float64 arguments, but JAX's float64 mode is off, so JAX would "
                             "compute in float32: enable it at start-up "
                             "(jax.config.update('jax_enable_x64', True)) or pass float32 arrays")


def _with_float64_state(f: Callable, framework: str) -> Callable:
    """A torch.nn.Module as a function of its arguments with float64 copies
    of its floating parameters and buffers, for the float64 evaluation of the
    default reference (float32 weights against float64 arguments is an error
    in torch; JAX promotes them); anything else as it is."""
    if framework != "torch":
        return f
    import torch

    if not isinstance(f, torch.nn.Module):
        return f
    state = {name: value.detach().to(torch.float64) if value.is_floating_point() else value
             for name, value in itertools.chain(f.named_parameters(), f.named_buffers())}
    return lambda *args: torch.func.functional_call(f, state, args)


def _float64_twin(f: Callable, fw, framework: str) -> Callable:
    """f evaluated on float64 NumPy arrays, for the default reference (JAX:
    compiled once, since the reference calls it thousands of times)."""
    if framework == "jax":
        import jax

        compiled = jax.jit(f)

        def twin(*arrays):
            with jax.enable_x64(True):
                try:
                    return np.asarray(compiled(*(np.asarray(a, np.float64) for a in arrays)))
                except jax.errors.JAXTypeError:  # not traceable: run it as it is
                    return np.asarray(f(*(jax.numpy.asarray(a, np.float64) for a in arrays)))
        return twin
    return lambda *arrays: fw.to_numpy(f(*(fw.put(a, "float64", "cpu") for a in arrays)))


def _bound(f: Callable, fw, inputs: dict, dtype: str, names: tuple[str, ...],
           differentiable: tuple[str, ...]) -> tuple[dict, Callable, tuple]:
    """``inputs`` as the framework's arrays, ``f`` as a function of the
    differentiable ones alone (the others bound), and their values."""
    xs = {n: fw.put(inputs[n], dtype, "cpu") for n in names}
    g = lambda *d: f(*(d[differentiable.index(n)] if n in differentiable else xs[n]  # noqa: E731
                       for n in names))
    return xs, g, tuple(xs[n] for n in differentiable)


def _framework_operations(f: Callable, fw, mode: str | None, names: tuple[str, ...],
                          differentiable: tuple[str, ...], nesting: str | None = None,
                          untransposable: Sequence[str] = ()) -> dict:
    """primal, jvp and vjp of f through the framework, in its ``mode``; the
    other product by transposing (a JVP is linear in its tangent, so its VJP
    is the transposed product, and the other way round), refused where f
    calls what the framework transposes wrong (``untransposable``). With a
    ``nesting`` (second order), primal and hvp."""
    def bound(task):
        return _bound(f, fw, task.inputs, task.dtype, names, differentiable)

    def directions(task, field):
        return tuple(fw.put(getattr(task, field)[n], task.dtype, "cpu") for n in differentiable)

    def jvp(g, d, t, dtype):
        if mode == "forward":
            return fw.jvp(g, d, t)
        if untransposable:
            raise RuntimeError(f"{CANNOT_DIFFERENTIATE_AGAIN}: {', '.join(untransposable)}; "
                               "torch would transpose its VJP into a JVP of 0")
        w0 = g(*d) * 0
        tangent = fw.vjp(lambda w: tuple(fw.vjp(g, d, w)), (w0,), tuple(t))[0]
        if fw.is_zero(tangent) and not _zero_along_random(
                lambda w: fw.vjp(g, d, w), (w0,), fw, dtype):
            raise _untransposed("reverse mode's JVP, the VJP's own VJP in its cotangent",
                                "VJP", "a backward that detaches it")
        return tangent

    def vjp(g, d, w, dtype):
        if mode == "reverse":
            return tuple(fw.vjp(g, d, w))
        zeros = tuple(x * 0 for x in d)
        cotangents = tuple(fw.vjp(lambda *t: fw.jvp(g, d, t), zeros, w))
        if all(fw.is_zero(c) for c in cotangents) and not _zero_along_random(
                lambda *t: (fw.jvp(g, d, t),), zeros, fw, dtype):
            raise _untransposed("forward mode's VJP, the JVP's own VJP in its tangent",
                                "JVP", "a tangent rule that detaches it")
        return cotangents

    def primal_op(task):
        xs, g, d = bound(task)
        return lambda: g(*d)

    def jvp_op(task):
        xs, g, d = bound(task)
        t = directions(task, "tangent")
        return lambda: jvp(g, d, t, task.dtype)

    def vjp_op(task):
        xs, g, d = bound(task)
        w = fw.put(task.cotangent, task.dtype, "cpu")
        return lambda: vjp(g, d, w, task.dtype)

    def hvp_op(task):
        xs, g, d = bound(task)
        t, w = directions(task, "tangent"), fw.put(task.cotangent, task.dtype, "cpu")
        return lambda: fw.hvp(g, d, w, t, nesting)

    if nesting:
        return {"primal": primal_op, "hvp": hvp_op}
    return {"primal": primal_op, "jvp": jvp_op, "vjp": vjp_op}
