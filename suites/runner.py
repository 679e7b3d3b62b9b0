"""The one runner: what each cell checks, and one record per cell.

Operations compared with the oracle: primal, jvp, vjp, jacfwd, jacrev (the
two Jacobians at each problem's smallest size), batched_jacobian (the
oracle's per-sample blocks at the smallest size, its JVP contracted with the
batched Jacobian elsewhere) and gradient (a sensitivity problem's dJ/dtheta
by a named method: the oracle's gradient at the smallest size, its
projections elsewhere; timed, since cost is half of a method's story).
Oracle-free identities inside one implementation: ``transpose``
(<w, J u> = <J^T w, u>), ``linearity`` (J(a u + b v) = a J u + b J v) and,
before any batched Jacobian, that a tangent on one sample moves no other
sample's output. Bench cells (suite ``bench``) are timed by suites/bench.py;
what their timed calls returned is judged here (:func:`judge_timed_result`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from adjointbench.faults import HarnessFault, described
from adjointbench.impls.protocol import Implementation, Task
from adjointbench.impls.registry import load_implementation
from adjointbench.reference import (Oracle, Problem, Reference, get_problem,
                                    make_inputs, make_probes)
from adjointbench.reference.problem import flatten, seeded_point, unflatten
from adjointbench.reference.oracle import (Estimate, NotDifferentiable, ReferenceFailure,
                                           UncertifiedReference, describe_level)
from adjointbench.suites.cells import Cell
from adjointbench.suites.compare import (Comparison, NotFinite, WrongResult, compare,
                                         compare_inner_products, cotangents_of, validate,
                                         worst_of)
from adjointbench.suites.memo import ExecutionMemo
from adjointbench.suites.results import Record, outcome_of
from adjointbench.suites.purity import (check_pure, check_reentrant, check_results_kept,
                                        copy_arrays)
from adjointbench.suites.bench import (JUDGED_OPS, bench_record, call_warning,
                                      references_computed_for)
from adjointbench.suites.executors import LocalExecutor, stops_told_as_errors
from adjointbench.suites.isolation import refuse_beyond_memory
from adjointbench.suites.timing import TIMING_FIELDS, TIMING_KINDS
from adjointbench.suites.tolerance import ILL_CONDITIONED, tolerance
from adjointbench.suites.wire import measurements

LINEARITY = (0.75, -1.25)
# Gradients at large P take seconds: three timed rounds, within a small budget
GRADIENT_ROUNDS, GRADIENT_BUDGET_S = 3, 0.1
NEEDS = {"transpose": ("jvp", "vjp"), "linearity": ("jvp",), "symmetry": ("hvp",)}
SECOND_ORDER_CHECKS = ("hvp", "hessian")  # compared with the oracle's second derivatives


def reference_kinds(op: str) -> tuple[str, ...]:
    """The oracle's references a check of ``op`` reads: ``first`` (values and
    first derivatives), and ``second`` for SECOND_ORDER_CHECKS."""
    return ("first", "second") if op in SECOND_ORDER_CHECKS else ("first",)


def holds_references(oracle, cell: Cell) -> bool:
    """Whether ``oracle`` holds, without computing them, the references a
    check of the cell's operation reads at its input point 0."""
    return all(oracle.holds(kind, cell.problem, cell.size, cell.seed)
               for kind in reference_kinds(cell.op))


@dataclass
class _Context:
    cell: Cell
    problem: Problem
    executor: LocalExecutor  # or a RemoteExecutor: the implementation's side
    reference: Reference
    inputs: dict
    probes: object
    point: int = 0  # which of the cell's input points
    fields: dict = field(default_factory=dict)  # extra record fields a check fills in
    second: object = None  # the oracle's second derivatives, for hvp and hessian cells
    memo: ExecutionMemo | None = None  # checked results of earlier cells, reused

    def task(self, op: str, inputs: dict | None = None, **kw) -> Task:
        return Task(self.problem.name, op, self.inputs if inputs is None else inputs,
                    self.problem.differentiable, self.cell.dtype, self.cell.device,
                    method=self.cell.method, **kw)

    def execute(self, op: str, **kw):
        """Prepare ``op`` on copies of the inputs and probes, call it twice and
        return the first result, after checking that the two calls agree
        (reentrancy) and that no buffer handed over was changed (purity);
        or the result of the same task that an earlier cell checked (memo)."""
        task = self.task(op, inputs=copy_arrays(self.inputs), **copy_arrays(kw))
        if self.memo is None:
            return self._checked(task, op, kw)
        return self.memo.run(task, lambda: self._checked(task, op, kw))

    def most_numbers(self) -> int:
        """More numbers than any operation of the problem returns at these
        inputs: a Jacobian is outputs x inputs, a Hessian inputs^2, a
        batched Jacobian less than either."""
        inputs = sum(int(np.size(x)) for x in self.inputs.values())
        return (inputs + int(np.size(self.reference.value.value))) ** 2 + 1024

    def _checked(self, task: Task, op: str, kw: dict):
        first, second, after = self.executor.execute(task, self.most_numbers())
        check_pure(self.cell.impl, op, {k: after[k] for k in ("inputs", *kw)},
                   {"inputs": self.inputs, **kw})
        check_results_kept(self.cell.impl, op, after.get("earlier_results"))
        check_reentrant(self.cell, op, first, second)
        return first

    def output(self, op: str, **kw) -> np.ndarray:
        shape = self.reference.value.value.shape
        return validate(self.execute(op, **kw), shape, self.cell.dtype, f"{op} output")

    def jvp(self, tangent) -> np.ndarray:
        return self.output("jvp", tangent=tangent)

    def cotangents(self, result, op: str) -> list[np.ndarray]:
        """``result`` checked as a tuple of one cotangent per differentiable input."""
        names = self.problem.differentiable
        return [validate(r, np.shape(self.inputs[n]), self.cell.dtype, f"cotangent for input {n!r}")
                for r, n in zip(cotangents_of(result, names, op), names)]

    def vjp(self, cotangent) -> list[np.ndarray]:
        return self.cotangents(self.execute("vjp", cotangent=cotangent), "vjp")

    def tol(self, oracle_error: float = 0.0) -> float:
        return tolerance(self.cell.dtype, self.reference.condition, self.cell.size,
                         self.problem.accuracy_floor, oracle_error, self.cell.method)

    def against(self, actual, estimate, what: str, terms: np.ndarray | None = None,
                part_of: Estimate | None = None) -> Comparison:
        """``actual`` against the oracle's ``estimate``, relative to its
        largest entry, or with ``terms`` (the magnitudes summed into each
        entry: |J| |u| for J u, see :func:`magnitudes`) relative to the
        largest of them: a right result's rounding is that of its terms, and
        where they cancel the sum is smaller than its rounding allows; the
        oracle's absolute error is allowed on top. ``part_of``: the vector
        ``estimate`` is a slice of (one input's share of J^T w or H u),
        certified as a whole: a share that is 0 to within the whole's error
        (b's share of the Hessian of sin(a x) + b: 40-digit noise) has no
        relative level of its own, and was ``ill_conditioned``."""
        certified = part_of or estimate
        certified.certified(what)
        expected = estimate.value
        if self.problem.record_values:
            self.fields.update(value=np.asarray(actual).tolist(), reference=expected.tolist())
        scale = np.abs(expected) if terms is None else np.maximum(terms, np.abs(expected))
        scale = np.maximum(scale, estimate.error)  # never below what the oracle can tell
        largest = float(np.max(scale, initial=0.0))
        oracle_error = estimate.error / largest if largest > 0 else estimate.relative_error
        return compare(actual, expected, self.tol(oracle_error), what, self.reference.condition,
                       scale=scale, oracle_err=certified.relative_error)


def _check_primal(ctx: _Context) -> Comparison:
    return ctx.against(ctx.output("primal"), ctx.reference.value, "primal output")


def magnitudes(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """|M| |v|: entry i is the sum of the magnitudes of the terms of (M v)_i,
    the scale of its rounding error (Higham, Accuracy and Stability of
    Numerical Algorithms, 3.5: |fl(M v) - M v| <= gamma_n |M| |v|)."""
    return np.abs(matrix) @ np.abs(vector)


def _check_jvp(ctx: _Context) -> Comparison:
    """J u against the oracle's, relative to |J| |u| where the oracle has the
    Jacobian (the smallest size), else to J u itself."""
    u, jacobian = ctx.probes.tangent, ctx.reference.jacobian
    expected = ctx.reference.jvp
    terms = (None if jacobian is None else magnitudes(
        jacobian.value, flatten(u, ctx.problem.differentiable)).reshape(expected.value.shape))
    return ctx.against(ctx.jvp(u), expected, "jvp output tangent", terms)


def _check_cotangents(ctx: _Context, cotangents: list, w: np.ndarray, what: str) -> Comparison:
    """Input cotangents J^T w against the oracle: w^T J from its full Jacobian
    where it has one, else <J^T w, v> = <w, J v> for each projection v."""
    names = ctx.problem.differentiable
    jacobian = ctx.reference.jacobian
    if jacobian is not None:
        full = np.ravel(w) @ jacobian.certified("Jacobian")
        terms = magnitudes(jacobian.value.T, np.ravel(w))  # |J|^T |w|
        error = float(np.sum(np.abs(w))) * jacobian.error
        return _per_input(ctx, cotangents, full, terms, error, jacobian.method, what)
    parts = []
    for k, (v, jv) in enumerate(zip(ctx.probes.projections, ctx.reference.projected)):
        parts.append(compare_inner_products(
            [w], [jv.certified(f"projection {k}")], cotangents, [v[n] for n in names],
            ctx.tol(jv.relative_error), f"{what}: <J^T w, v{k}> against the oracle's <w, J v{k}>",
            ctx.reference.condition, jv.relative_error))
    return worst_of(parts)


def _per_input(ctx: _Context, actual: list, full: np.ndarray, terms: np.ndarray, error: float,
               method: str, what: str) -> Comparison:
    """Each differentiable input's array of ``actual`` against its slice of
    the oracle's ``full`` vector (error ``error``), relative to its slice of
    ``terms``."""
    start, parts, whole = 0, [], Estimate(full, error, method)
    for a, n in zip(actual, ctx.problem.differentiable):
        stop = start + a.size
        share = full[start:stop].reshape(a.shape)
        if np.max(np.abs(share), initial=0.0) <= error:  # 0 to within what the oracle tells
            share = np.zeros_like(share)
        expected = Estimate(share, error, method)
        parts.append(ctx.against(a, expected, f"{what} for input {n!r}",
                                 terms[start:stop].reshape(a.shape), part_of=whole))
        start = stop
    return worst_of(parts)


def _check_vjp(ctx: _Context) -> Comparison:
    w = ctx.probes.cotangent
    return _check_cotangents(ctx, ctx.vjp(w), w, "vjp cotangent")


def _check_gradient(ctx: _Context) -> Comparison:
    """The gradient method against the oracle, timed at the cell's first point
    only (its figure feeds the report's cost-against-P plot); the other points
    are checked with two calls, like every other operation."""
    task = ctx.task("gradient", inputs=copy_arrays(ctx.inputs))
    if ctx.point == 0:
        fields, first, last, after = ctx.executor.time(task, GRADIENT_BUDGET_S, GRADIENT_ROUNDS)
        ctx.fields.update(measurements(fields, TIMING_KINDS))
    else:
        first, last, after = ctx.executor.execute(task)
    check_pure(ctx.cell.impl, "gradient", {"inputs": after["inputs"]}, {"inputs": ctx.inputs})
    check_results_kept(ctx.cell.impl, "gradient", after.get("earlier_results"))
    check_reentrant(ctx.cell, "gradient", first, last)
    gradient = ctx.cotangents(first, "gradient")
    ctx.fields.update(value=np.concatenate([np.ravel(g) for g in gradient]).tolist())
    w = np.ones(ctx.reference.value.value.shape)
    return _check_cotangents(ctx, gradient, w, f"{ctx.cell.method} gradient")


def _refuse_beyond_memory(ctx: _Context, op: str, rows: int, columns: int) -> None:
    refuse_beyond_memory(f"{op} of {ctx.problem.name} at size {ctx.cell.size}", rows, columns,
                         ctx.cell.dtype)


def _check_jacobian(op: str) -> Callable[[_Context], Comparison]:
    def check(ctx: _Context) -> Comparison:
        rows, columns = ctx.reference.value.value.size, _entries(ctx)
        _refuse_beyond_memory(ctx, op, rows, columns)
        actual = validate(ctx.execute(op), (rows, columns), ctx.cell.dtype, f"{op} Jacobian")
        expected = ctx.reference.jacobian
        if expected is None:
            return _jacobian_along_directions(ctx, op, actual)
        return ctx.against(actual, expected, f"{op} Jacobian")
    return check


def _entries(ctx: _Context) -> int:
    """How many numbers the differentiable inputs hold."""
    return sum(int(np.size(ctx.inputs[n])) for n in ctx.problem.differentiable)


def _jacobian_along_directions(ctx: _Context, op: str, jacobian: np.ndarray) -> Comparison:
    """A Jacobian where the oracle built none (more input entries than the
    problem's ``max_full_jacobian``): J u against the oracle's J u, and J v_k
    against its J v_k for each projection, as a JVP is checked."""
    names, value = ctx.problem.differentiable, ctx.reference.value.value
    actual = jacobian.astype(np.float64)
    along = [("u", ctx.probes.tangent, ctx.reference.jvp)] + [
        (f"v{k}", v, jv) for k, (v, jv) in enumerate(zip(ctx.probes.projections,
                                                          ctx.reference.projected))]
    return worst_of([ctx.against((actual @ flatten(d, names)).reshape(value.shape), expected,
                                 f"{op} Jacobian times {label}")
                     for label, d, expected in along])


def _check_no_sample_mixing(ctx: _Context) -> None:
    """A tangent on sample 0 alone must leave every other sample's output still."""
    if not ctx.executor.supports(ctx.cell.problem, "jvp"):
        return
    x = ctx.problem.batch_input
    tangent = np.zeros_like(ctx.probes.tangent[x])
    tangent[..., 0] = ctx.probes.tangent[x][..., 0]
    dy = ctx.jvp({x: tangent}).astype(np.float64)
    moved = np.max(np.abs(dy[..., 1:]), initial=0.0)
    if moved > ctx.tol() * max(np.max(np.abs(dy[..., 0])), 1.0):
        raise WrongResult(
            f"{ctx.cell.impl} mixes samples in {ctx.cell.problem}: a tangent on sample 0 "
            f"moves other samples' outputs by up to {moved:.2e}, so no per-sample Jacobian "
            "exists (batch normalisation does this). Make each output column depend on its "
            "own input column only.")


def _check_batched_jacobian(ctx: _Context) -> Comparison:
    from adjointbench.reference.batched import batched_blocks

    _check_no_sample_mixing(ctx)
    x = ctx.inputs[ctx.problem.batch_input]
    output_shape = ctx.reference.value.value.shape
    features, batch = x[..., 0].size, x.shape[-1]
    outputs = int(np.prod(output_shape[:-1]))
    actual = validate(ctx.execute("batched_jacobian"), (outputs, features, batch),
                      ctx.cell.dtype, "batched Jacobian")
    if ctx.reference.jacobian is not None:
        blocks, _ = batched_blocks(ctx.reference.jacobian.value, output_shape, x.shape)
        jacobian = ctx.reference.jacobian
        expected = Estimate(blocks, jacobian.error, jacobian.method, jacobian.kink)
        return ctx.against(actual, expected, "batched Jacobian (per-sample blocks)")
    # sum_j J[i, j, s] u[j, s] is the JVP of the whole batch
    u = ctx.probes.tangent[ctx.problem.batch_input].reshape(features, batch)
    contracted = np.einsum("ijs,js->is", actual.astype(np.float64), u).reshape(output_shape)
    # relative to J u itself: |J| |u| from the implementation's own blocks would
    # let the code under test set its own tolerance
    return ctx.against(contracted, ctx.reference.jvp, "batched Jacobian contracted with u")


def _check_transpose(ctx: _Context) -> Comparison:
    u, w = ctx.probes.tangent, ctx.probes.cotangent
    names = ctx.problem.differentiable
    return compare_inner_products([w], [ctx.jvp(u)], ctx.vjp(w), [u[n] for n in names],
                                  ctx.tol(), "<J^T w, u> against <w, J u>",
                                  ctx.reference.condition)


def _check_linearity(ctx: _Context) -> Comparison:
    a, b = LINEARITY
    u, v = ctx.probes.tangent, ctx.probes.tangent2
    combined = {n: a * u[n] + b * v[n] for n in u}
    ju, jv = ctx.jvp(u).astype(np.float64), ctx.jvp(v).astype(np.float64)
    expected = a * ju + b * jv
    return compare(ctx.jvp(combined), expected, ctx.tol(), "J(a u + b v) against a J u + b J v",
                   ctx.reference.condition, scale=np.abs(a * ju) + np.abs(b * jv))


def _hvp(ctx: _Context, u: dict) -> list[np.ndarray]:
    """H u from the implementation, one array per differentiable input."""
    w = ctx.probes.cotangent
    return ctx.cotangents(ctx.execute("hvp", tangent=u, cotangent=w), "hvp")


def _check_hvp(ctx: _Context) -> Comparison:
    """H u against the oracle's Hessian at the smallest size, else <v_k, H u>
    against its mixed second derivatives along each projection v_k."""
    u, names = ctx.probes.tangent, ctx.problem.differentiable
    actual, second = _hvp(ctx, u), ctx.second
    if second.hessian is not None:
        hessian = second.hessian
        flat_u = flatten(u, names)
        full = hessian.certified("Hessian") @ flat_u
        error = float(np.sum([np.sum(np.abs(u[n])) for n in names])) * hessian.error
        return _per_input(ctx, actual, full, magnitudes(hessian.value, flat_u), error, "fd",
                          "hvp (H u)")
    return _along_projections(ctx, actual, "hvp")


def _along_projections(ctx: _Context, hu: list[np.ndarray], what: str) -> Comparison:
    """``hu`` (H u, one array per differentiable input) through <v_k, H u>
    against the oracle's mixed second derivatives along each projection v_k."""
    names = ctx.problem.differentiable
    return worst_of([compare_inner_products(
        [np.array(1.0)], [e.certified(f"second derivative {k}")], hu, [v[n] for n in names],
        ctx.tol(e.relative_error), f"{what}: <v{k}, H u> against the oracle's second derivative",
        ctx.reference.condition, e.relative_error)
        for k, (v, e) in enumerate(zip(ctx.probes.projections, ctx.second.projected))])


def _check_hessian(ctx: _Context) -> Comparison:
    entries, names = _entries(ctx), ctx.problem.differentiable
    _refuse_beyond_memory(ctx, "hessian", entries, entries)
    actual = validate(ctx.execute("hessian", cotangent=ctx.probes.cotangent),
                      (entries, entries), ctx.cell.dtype, "Hessian")
    expected = ctx.second.hessian
    if expected is None:  # more input entries than the oracle builds a Hessian for
        hu = unflatten(actual.astype(np.float64) @ flatten(ctx.probes.tangent, names),
                       ctx.inputs, names)
        return _along_projections(ctx, [hu[n] for n in names], "Hessian times u")
    return ctx.against(actual, expected, "Hessian")


def _check_symmetry(ctx: _Context) -> Comparison:
    """<v, H u> = <u, H v> within the implementation (H is symmetric)."""
    u, v, names = ctx.probes.tangent, ctx.probes.tangent2, ctx.problem.differentiable
    return compare_inner_products([v[n] for n in names], _hvp(ctx, u), [u[n] for n in names],
                                  _hvp(ctx, v), ctx.tol(), "<u, H v> against <v, H u>",
                                  ctx.reference.condition)


CHECKERS: dict[str, Callable[[_Context], Comparison]] = {
    "primal": _check_primal, "jvp": _check_jvp, "vjp": _check_vjp,
    "jacfwd": _check_jacobian("jacfwd"), "jacrev": _check_jacobian("jacrev"),
    "batched_jacobian": _check_batched_jacobian, "gradient": _check_gradient,
    "transpose": _check_transpose, "linearity": _check_linearity,
    "hvp": _check_hvp, "hessian": _check_hessian, "symmetry": _check_symmetry,
}


def unsupported_reason(cell: Cell, executor: LocalExecutor, devices: bool = True) -> str | None:
    """Why the executor's implementation cannot run ``cell``, or None; with
    ``devices=False``, whatever device this machine has (a cluster's GPU
    worker may have the one asked for)."""
    problem = get_problem(cell.problem)
    if cell.dtype not in problem.dtypes:
        return (f"{cell.problem} is defined in {', '.join(problem.dtypes)} only: its solves "
                f"and integrators are judged at that accuracy")
    present = executor.describe()["devices"]
    if devices and cell.device not in present:
        return f"{cell.impl} offers no {cell.device} device here (has: {', '.join(present)})"
    for op in NEEDS.get(cell.op, (cell.op,)):
        if not executor.supports(cell.problem, op, cell.method):
            method = f" by {cell.method}" if cell.method else ""
            return f"{cell.impl} does not support {op}{method} of {cell.problem}"
    return None


def _ill_conditioned(record: Record, problem: Problem) -> Record:
    """A failure where the problem is ill-conditioned is no verdict on the
    implementation: a method that needs (dr/dx)^-1 cannot work there. Right
    answers stay ok; wrong ones are never ok."""
    if record.outcome in ("ok", "unsupported") or not (record.condition or 0) > ILL_CONDITIONED:
        return record
    return replace(record, outcome="ill_conditioned", message=(
        f"{problem.name} is ill-conditioned at these inputs (condition estimate "
        f"{record.condition:.1e} > {ILL_CONDITIONED:.0e}), and {record.impl}'s result did not "
        f"hold: {record.message}"))


def check_point(cell: Cell, oracle: Oracle, executor: LocalExecutor, record: Record,
                point: int, memo: ExecutionMemo | None = None) -> Record:
    """The record of one input point: prepared anew (or the checked result of
    an earlier cell's same task, from ``memo``), compared with its own reference."""
    problem = get_problem(cell.problem)
    record = replace(record, point=point)
    seeded = seeded_point(problem, point, cell.dtype)
    ctx = None
    try:
        with _problems_own_code(cell, point, seeded):
            reference = oracle.reference(cell.problem, cell.size, cell.seed, seeded)
        record = replace(record, condition=reference.condition, level=reference.method)
        with _problems_own_code(cell, point, seeded):
            inputs = make_inputs(problem, cell.size, cell.seed, seeded)
            probes = make_probes(problem, cell.size, inputs, reference.value.value.shape,
                                 cell.seed, seeded)
            second = (oracle.second_order(cell.problem, cell.size, cell.seed, seeded)
                      if cell.op in SECOND_ORDER_CHECKS else None)
        ctx = _Context(cell, problem, executor, reference, inputs, probes, point, memo=memo,
                       second=second)
        result = CHECKERS[cell.op](ctx)
    except HarnessFault:
        raise  # the harness's own fault stops the run; it is no implementation's outcome
    except Exception as e:  # the implementation's failure is an outcome
        outcome, message = outcome_of(_judged(e, ctx))
        where = _where(cell, point, seeded)
        return _ill_conditioned(replace(
            record, **(ctx.fields if ctx else {}), outcome=outcome,
            message=f"{message}{where}" if outcome != "unsupported" else message), problem)
    message = result.message
    if not result.ok:
        message += _where(cell, point, seeded)
        if result.oracle_err is not None:
            message += f"; {describe_level(reference.method, result.oracle_err)}"
    return _ill_conditioned(replace(
        record, **ctx.fields, outcome="ok" if result.ok else "mismatch",
        max_abs_err=result.max_abs_err, max_rel_err=result.max_rel_err, tol=result.tol,
        oracle_err=result.oracle_err, message=message), problem)


def _judged(error: Exception, ctx: "_Context | None") -> Exception:
    """A result that is not finite where the oracle cannot bound the
    derivative either (sqrt's infinite slope at 0, a step out of the domain:
    no finite error; a kink or a jump: no derivative) is no verdict, as the
    reference's refusal says; it was a ``mismatch`` of a rule that gave the
    infinite slope there. Where the oracle bounds a finite derivative, even
    too loosely to certify it, inf or NaN is wrong: a ``mismatch``."""
    if not isinstance(error, NotFinite) or ctx is None:
        return error
    derivative = ctx.reference.jvp
    try:
        derivative.certified("derivative")
    except NotDifferentiable as refusal:
        return type(refusal)(f"{error}, where {refusal}")
    except UncertifiedReference as refusal:
        if not np.isfinite(derivative.error):
            return type(refusal)(f"{error}, where {refusal}")
    return error


@contextlib.contextmanager
def _problems_own_code(cell: Cell, point: int, seeded: int):
    """Around the oracle's references, the inputs and the probes of one
    point: what the problem's own code raises there (its generator, primal
    or closed form; the oracle's refusal to certify aside) is
    ReferenceFailure, no outcome of the implementation, which it was told as
    ("error: TypeError: ..." of a user's primal)."""
    try:
        yield
    except (HarnessFault, UncertifiedReference):
        raise
    except Exception as e:  # noqa: BLE001 - the problem's code, named as such
        raise ReferenceFailure(
            f"the reference of problem {cell.problem!r} cannot be computed at size {cell.size}"
            f"{_where(cell, point, seeded)}: the problem's own code raised "
            f"{described(e)}{_on_exact_numbers(e)}. This is a fault of the problem's "
            f"declaration, not of {cell.impl}: fix it{_or_leave_out(cell)}") from e


def _or_leave_out(cell: Cell) -> str:
    """The other way out, in a sweep (not for check_rules' own reference)."""
    checking_yours = get_problem(cell.problem).family == "testing"
    return "" if checking_yours else ", or leave the problem out with --problem"


# What a reference's own code meets that float64 functions cannot take, and the fix
_FLOAT64_FUNCTIONS_ON = (
    (("of type mpf",), "its high-precision primal is given arrays of mpmath numbers: "
     "compute with the xp namespace it is given, xp.sin(x), not np.sin(x) or math.sin"),
    (("of type Symbol", "Cannot convert expression to float"), "its closed form is given "
     "sympy symbols: write it with sympy's functions, sympy.sin(t), not np.sin(t) or math.sin"),
)


def _on_exact_numbers(error: Exception) -> str:
    """The fix, where a problem's reference handed mpmath's numbers or
    sympy's symbols to a float64 function (``np.sin(x)``: "... of type mpf
    which has no callable sin method")."""
    said = str(error)
    return next((f" ({fix})" for signs, fix in _FLOAT64_FUNCTIONS_ON
                 if any(sign in said for sign in signs)), "")


def _where(cell: Cell, point: int, seeded: int) -> str:
    """`` at input point 2`` for a message, saying where the point is unrounded."""
    if cell.points <= 1:
        return ""
    own = " (float64 inputs and probes, not float32-exact)" if seeded < 0 else ""
    return f" at input point {point}{own}"


def seeded_points(cell: Cell) -> list[int]:
    """The seeded points of a check cell's input points (reference.problem.seeded_point)."""
    problem = get_problem(cell.problem)
    return [seeded_point(problem, point, cell.dtype) for point in range(cell.points)]


def _check(cell: Cell, oracle: Oracle, executor: LocalExecutor, record: Record,
           memo: ExecutionMemo | None = None, threads: int | None = None) -> Record:
    """Every input point of the cell in turn; the record is the worst point's
    (the first that is not ok, else the largest relative error), with the
    timing taken at the first point (gradient cells)."""
    worst, timing = None, {}
    expect = getattr(oracle, "expect", None)  # a cold cache: the points computed side by side
    if expect:
        for kind in reference_kinds(cell.op):
            expect(kind, cell.problem, cell.size, cell.seed, seeded_points(cell))
    for point in range(cell.points):
        result = check_point(cell, oracle, executor, record, point, memo)
        if point == 0:
            timing = _timing_of(cell, result, threads)
        if result.outcome != "ok":
            return replace(result, **timing)
        if worst is None or (result.max_rel_err or 0.0) > (worst.max_rel_err or 0.0):
            worst = result
    return replace(worst, **timing)


def _timing_of(cell: Cell, result: Record, threads: int | None = None) -> dict:
    """A timed cell's timing fields (its first point's), with a warning where
    its wait returned too early, a CPU cell's to_numpy did work its timing
    missed (off the CPU a copy to the host may cost more) or its calls kept
    more cores busy than ``threads`` (the run's) allow (suites/bench.py)."""
    timing = {k: getattr(result, k) for k in TIMING_FIELDS if getattr(result, k) is not None}
    if "time_median_s" in timing:
        judged = timing if cell.device == "cpu" else {**timing, "to_numpy_s": None}
        timing["timing_warning"] = call_warning(
            {**judged, "threads": result.threads, "device": cell.device},
            f"the {cell.method} gradient", threads)
    return timing


class NotReplayed(HarnessFault):
    """A check of a bench cell's timed result asked for another call than the
    one the bench timed: no verdict (raised past check_point, caught by
    :func:`judge_timed_result`)."""


class _Replay:
    """The implementation's side of the check of a bench cell's timed result:
    the task the bench timed, answered with what its last timed call
    returned. That result crossed from the worker as plain data, and is
    judged here, beside the oracle, where no code under test runs."""

    def __init__(self, op: str, result):
        self.op, self.result, self.asked = op, result, False

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        return op == self.op  # no other call to check with (batched_jacobian's JVP)

    def execute(self, task: Task, most_numbers: int | None = None):
        if task.op != self.op or self.asked:
            raise NotReplayed(f"the check of a timed {self.op} asked for another {task.op}")
        self.asked = True
        given = {k: getattr(task, k) for k in ("inputs", "tangent", "cotangent")}
        return self.result, self.result, given


JUDGED_FIELDS = ("max_abs_err", "max_rel_err", "tol", "oracle_err", "condition", "level")


def judges(cell: Cell, oracle) -> bool:
    """Whether a bench cell's timed result is judged against ``oracle``: its
    operation is one of JUDGED_OPS and the oracle holds the references of
    the cell's input point 0 or, where it computes what it lacks (not a Dask
    task's given references), the bench computes them at that size
    (:func:`suites.bench.references_computed_for`)."""
    if cell.op not in JUDGED_OPS:
        return False
    if getattr(oracle, "computes", False) and references_computed_for(cell):
        return True
    return holds_references(oracle, cell)


def judge_timed_result(cell: Cell, record: Record, result, oracle) -> Record:
    """A bench cell's record, with its timed result (handed back where
    :func:`judges`) judged against the oracle as the check judges input
    point 0, whose inputs and probes the bench timed. A wrong result makes
    the cell a ``mismatch``, whose figures timed wrong work; a right one adds
    its error to the record. Where the oracle gives no verdict (a kink, an
    ill-conditioned point, a reference it cannot certify) the record is as
    timed."""
    if record.outcome != "ok":
        return record
    if result is None:
        return replace(record, outcome="error", message=(
            "the bench worker handed back no result of the timed calls to judge: code under "
            "test changed the harness in its worker"))
    check = replace(cell, suite="check", points=1)
    try:
        judged = check_point(check, oracle, _Replay(cell.op, result), record, 0)
    except NotReplayed:
        return record
    if judged.outcome == "ok":
        return replace(record, **{k: getattr(judged, k) for k in JUDGED_FIELDS})
    if judged.outcome != "mismatch":
        return record
    return replace(record, outcome="mismatch", message=(
        f"the timed calls returned a wrong result (their figures timed other work): "
        f"{judged.message}"))


def _bench(cell: Cell, oracle: Oracle | None, executor: LocalExecutor,
           threads: int | None) -> Record:
    """A bench cell's record, its timed result judged where :func:`judges`
    (an oracle made here only for an operation it may judge)."""
    oracle = oracle or (Oracle() if cell.op in JUDGED_OPS else None)
    judged = oracle is not None and judges(cell, oracle)
    measured = executor.bench(cell, judged)
    record = bench_record(cell, measured, threads)
    return judge_timed_result(cell, record, measured.get("result"), oracle) if judged else record


def run_cell(cell: Cell, oracle: Oracle | None = None, impl: Implementation | None = None,
             executor: LocalExecutor | None = None, memo: ExecutionMemo | None = None,
             threads: int | None = None) -> Record:
    """Run one cell (check or bench) and return its record; never raises for
    what the implementation does. The implementation runs through
    ``executor`` (a worker's, see suites/isolation.py), else in this process;
    the oracle and every comparison stay here. ``memo``: the checked results
    of this implementation's earlier cells (suites/memo.py), reused;
    ``threads``: the run's, which timings are judged against (None: the
    thread count each timed record measured)."""
    start = time.perf_counter()
    record = Record.for_cell(cell, "error")
    try:
        with stops_told_as_errors():  # the implementation may run in this process
            executor = executor or LocalExecutor(impl or load_implementation(cell.impl))
            reason = unsupported_reason(cell, executor)
            if reason:
                record = replace(record, outcome="unsupported", message=reason)
            elif cell.suite == "bench":
                record = _bench(cell, oracle, executor, threads)
            else:
                record = _check(cell, oracle or Oracle(), executor, record, memo, threads)
    except HarnessFault:
        raise
    except Exception as e:  # the implementation's failure is an outcome
        outcome, message = outcome_of(e)
        record = replace(record, outcome=outcome, message=message)
    return replace(record, seconds=time.perf_counter() - start)
