"""The one runner: cells of the sweep, and what each cell checks.

A cell is (problem, implementation, operation, size, dtype, device, seed).
Operations compared with the oracle: primal, jvp, vjp, jacfwd, jacrev (the
two Jacobians at each problem's smallest size) and, for batched problems,
batched_jacobian (the oracle's per-sample blocks at the smallest size, its
JVP contracted with the batched Jacobian elsewhere). Oracle-free identities
inside one implementation: ``transpose`` (<w, J u> = <J^T w, u>),
``linearity`` (J(a u + b v) = a J u + b J v) and, before any batched
Jacobian, that a tangent on one sample moves no other sample's output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np

from adjointbench.impls.protocol import DEVICES, DTYPES, OPERATIONS, Implementation, Task
from adjointbench.impls.registry import load_implementation
from adjointbench.reference import (Oracle, Problem, Reference, UncertifiedReference, get_problem,
                       make_inputs, make_probes, problems)
from adjointbench.reference.batched import batched_blocks
from adjointbench.reference.oracle import Estimate
from adjointbench.reference.catalogue import UnknownNameError, closest
from adjointbench.suites.compare import Comparison, WrongResult, compare, validate, worst_of
from adjointbench.suites.results import Record
from adjointbench.suites.tolerance import tolerance

CHECKS = ("transpose", "linearity")
ALL_OPS = OPERATIONS + CHECKS
FULL_JACOBIAN_OPS = ("jacfwd", "jacrev")
LINEARITY = (0.75, -1.25)


@dataclass(frozen=True)
class Cell:
    problem: str
    impl: str
    op: str
    size: int
    dtype: str = "float64"
    device: str = "cpu"
    seed: int = 0

    @property
    def id(self) -> str:
        """``numpy-linear_solve-n16-float32`` (a device suffix off the CPU)."""
        device = "" if self.device == "cpu" else f"-{self.device}"
        return f"{self.impl}-{self.problem}-n{self.size}-{self.dtype}{device}"

    @property
    def key(self) -> tuple:
        return (self.problem, self.impl, self.op, self.size, self.dtype, self.device, self.seed)


def _check_names(kind: str, asked: Iterable[str] | None, valid: Iterable[str]) -> list[str]:
    valid = list(valid)
    if asked is None:
        return valid
    asked = list(asked)
    for name in asked:
        if name not in valid:
            raise UnknownNameError(f"unknown {kind} {name!r}.{closest(name, valid)}")
    return asked


def check_sizes(chosen: Iterable[Problem], sizes: Iterable[int] | None,
                sizes_of: Callable[[Problem], Iterable[int]] = lambda p: p.sizes) -> None:
    """Raise UnknownNameError for a size that no chosen problem has."""
    if sizes is None:
        return
    offered = sorted({s for p in chosen for s in sizes_of(p)})
    for s in sizes:
        if s not in offered:
            raise UnknownNameError(f"no selected problem has size {s}. Valid sizes: "
                                   f"{', '.join(map(str, offered))}.")


def make_cells(impls: Iterable[str], problem_names: Iterable[str] | None = None,
               ops: Iterable[str] | None = None, dtypes: Iterable[str] | None = None,
               sizes: Iterable[int] | None = None, devices: Iterable[str] | None = None,
               seed: int = 0) -> list[Cell]:
    """The cells of a sweep; ``None`` means every value of that dimension.

    Raises :class:`UnknownNameError` (with the closest valid names) for an
    unknown problem, operation, dtype, device or a size no selected problem has.
    """
    chosen = [get_problem(n) for n in problem_names] if problem_names else problems()
    ops = _check_names("operation", ops, ALL_OPS)
    dtypes = _check_names("dtype", dtypes, DTYPES)
    devices = _check_names("device", devices, DEVICES if devices else ("cpu",))
    check_sizes(chosen, sizes)
    impls = list(impls)
    return [Cell(p.name, impl, op, size, dtype, device, seed)
            for p in chosen for size in p.sizes if sizes is None or size in sizes
            for impl in impls for op in ops
            if op not in FULL_JACOBIAN_OPS or size == p.smallest_size
            if op != "batched_jacobian" or p.batch_input
            for dtype in dtypes for device in devices]


# --- running one operation of one implementation ---

@dataclass(frozen=True)
class _Context:
    cell: Cell
    problem: Problem
    impl: Implementation
    reference: Reference
    inputs: dict
    probes: object

    def task(self, op: str, **kw) -> Task:
        return Task(self.problem.name, op, self.inputs, self.problem.differentiable,
                    self.cell.dtype, self.cell.device, **kw)

    def execute(self, op: str, **kw):
        prepared = self.impl.prepare(self.task(op, **kw))
        result = prepared.run()
        prepared.wait(result)
        return prepared.to_numpy(result)

    def output(self, op: str, **kw) -> np.ndarray:
        shape = self.reference.value.value.shape
        return validate(self.execute(op, **kw), shape, self.cell.dtype, f"{op} output")

    def jvp(self, tangent) -> np.ndarray:
        return self.output("jvp", tangent=tangent)

    def vjp(self, cotangent) -> list[np.ndarray]:
        result = self.execute("vjp", cotangent=cotangent)
        names = self.problem.differentiable
        if not isinstance(result, (tuple, list)) or len(result) != len(names):
            raise WrongResult(f"vjp must return a tuple of {len(names)} cotangents "
                              f"({', '.join(names)}), got {type(result).__name__}")
        return [validate(r, np.shape(self.inputs[n]), self.cell.dtype, f"cotangent for input {n!r}")
                for r, n in zip(result, names)]

    def tol(self, oracle_error: float = 0.0) -> float:
        return tolerance(self.cell.dtype, self.reference.condition, self.cell.size,
                         self.problem.accuracy_floor, oracle_error)

    def against(self, actual, estimate, what: str) -> Comparison:
        expected = estimate.certified(what)
        return compare(actual, expected, self.tol(estimate.relative_error), what,
                       self.reference.condition, oracle_err=estimate.relative_error)


def _check_primal(ctx: _Context) -> Comparison:
    return ctx.against(ctx.output("primal"), ctx.reference.value, "primal output")


def _check_jvp(ctx: _Context) -> Comparison:
    return ctx.against(ctx.jvp(ctx.probes.tangent), ctx.reference.jvp, "jvp output tangent")


def _check_vjp(ctx: _Context) -> Comparison:
    cotangents = ctx.vjp(ctx.probes.cotangent)
    names = ctx.problem.differentiable
    if ctx.reference.vjp is not None:
        return worst_of([ctx.against(c, ctx.reference.vjp[n], f"vjp cotangent for input {n!r}")
                         for c, n in zip(cotangents, names)])
    # <vjp(w), v> = <w, J v> for each projection direction v
    w = ctx.probes.cotangent
    parts = []
    for k, (v, jv) in enumerate(zip(ctx.probes.projections, ctx.reference.projected)):
        expected = float(np.sum(w * jv.certified(f"projection {k}")))
        terms = [c.astype(np.float64) * v[n] for c, n in zip(cotangents, names)]
        actual = float(sum(np.sum(t) for t in terms))
        scale = sum(float(np.sum(np.abs(t))) for t in terms)
        parts.append(compare(np.array(actual), np.array(expected),
                             ctx.tol(jv.relative_error), f"vjp projection <vjp(w), v{k}>",
                             ctx.reference.condition, scale=np.array(scale),
                             oracle_err=jv.relative_error))
    return worst_of(parts)


def _check_jacobian(op: str) -> Callable[[_Context], Comparison]:
    def check(ctx: _Context) -> Comparison:
        expected = ctx.reference.jacobian
        actual = validate(ctx.execute(op), expected.value.shape, ctx.cell.dtype, f"{op} Jacobian")
        return ctx.against(actual, expected, f"{op} Jacobian")
    return check


def _check_no_sample_mixing(ctx: _Context) -> None:
    """A tangent on sample 0 alone must leave every other sample's output still."""
    if not ctx.impl.supports(ctx.cell.problem, "jvp"):
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
    _check_no_sample_mixing(ctx)
    x = ctx.inputs[ctx.problem.batch_input]
    output_shape = ctx.reference.value.value.shape
    features, batch = x[..., 0].size, x.shape[-1]
    outputs = int(np.prod(output_shape[:-1]))
    actual = validate(ctx.execute("batched_jacobian"), (outputs, features, batch),
                      ctx.cell.dtype, "batched Jacobian")
    if ctx.reference.jacobian is not None:
        blocks, _ = batched_blocks(ctx.reference.jacobian.value, output_shape, x.shape)
        expected = Estimate(blocks, ctx.reference.jacobian.error)
        return ctx.against(actual, expected, "batched Jacobian (per-sample blocks)")
    # sum_j J[i, j, s] u[j, s] is the JVP of the whole batch
    u = ctx.probes.tangent[ctx.problem.batch_input].reshape(features, batch)
    contracted = np.einsum("ijs,js->is", actual.astype(np.float64), u).reshape(output_shape)
    return ctx.against(contracted, ctx.reference.jvp, "batched Jacobian contracted with u")


def _check_transpose(ctx: _Context) -> Comparison:
    u, w = ctx.probes.tangent, ctx.probes.cotangent
    ju = ctx.jvp(u).astype(np.float64)
    cotangents = ctx.vjp(w)
    lhs_terms = w * ju
    rhs_terms = [c.astype(np.float64) * u[n] for c, n in zip(cotangents, ctx.problem.differentiable)]
    lhs, rhs = float(np.sum(lhs_terms)), float(sum(np.sum(t) for t in rhs_terms))
    scale = max(float(np.sum(np.abs(lhs_terms))), sum(float(np.sum(np.abs(t))) for t in rhs_terms))
    return compare(np.array(rhs), np.array(lhs), ctx.tol(), "<J^T w, u> against <w, J u>",
                   ctx.reference.condition, scale=np.array(scale))


def _check_linearity(ctx: _Context) -> Comparison:
    a, b = LINEARITY
    u, v = ctx.probes.tangent, ctx.probes.tangent2
    combined = {n: a * u[n] + b * v[n] for n in u}
    ju, jv = ctx.jvp(u).astype(np.float64), ctx.jvp(v).astype(np.float64)
    expected = a * ju + b * jv
    return compare(ctx.jvp(combined), expected, ctx.tol(), "J(a u + b v) against a J u + b J v",
                   ctx.reference.condition, scale=np.abs(a * ju) + np.abs(b * jv))


CHECKERS: dict[str, Callable[[_Context], Comparison]] = {
    "primal": _check_primal, "jvp": _check_jvp, "vjp": _check_vjp,
    "jacfwd": _check_jacobian("jacfwd"), "jacrev": _check_jacobian("jacrev"),
    "batched_jacobian": _check_batched_jacobian,
    "transpose": _check_transpose, "linearity": _check_linearity,
}
NEEDS = {"transpose": ("jvp", "vjp"), "linearity": ("jvp",)}


def _unsupported_reason(cell: Cell, impl: Implementation) -> str | None:
    if cell.device not in impl.devices():
        return f"{cell.impl} offers no {cell.device} device here (has: {', '.join(impl.devices())})"
    for op in NEEDS.get(cell.op, (cell.op,)):
        if not impl.supports(cell.problem, op):
            return f"{cell.impl} does not support {op} of {cell.problem}"
    return None


def run_cell(cell: Cell, oracle: Oracle, impl: Implementation | None = None) -> Record:
    """Run one cell in this process and return its record; never raises for
    what the implementation does."""
    start = time.perf_counter()
    record = Record(cell.problem, cell.impl, cell.op, cell.dtype, cell.device, cell.size,
                    cell.seed, outcome="error")
    try:
        impl = impl or load_implementation(cell.impl)
        reason = _unsupported_reason(cell, impl)
        if reason:
            return replace(record, outcome="unsupported", message=reason)
        problem = get_problem(cell.problem)
        reference = oracle.reference(cell.problem, cell.size, cell.seed)
        inputs = make_inputs(problem, cell.size, cell.seed)
        probes = make_probes(problem, cell.size, inputs, reference.value.value.shape, cell.seed)
        ctx = _Context(cell, problem, impl, reference, inputs, probes)
        record = replace(record, condition=reference.condition)
        result = CHECKERS[cell.op](ctx)
        record = replace(record, outcome="ok" if result.ok else "mismatch",
                         max_abs_err=result.max_abs_err, max_rel_err=result.max_rel_err,
                         tol=result.tol, oracle_err=result.oracle_err, message=result.message)
    except UncertifiedReference as e:
        record = replace(record, outcome="ill_conditioned", message=str(e))
    except NotImplementedError as e:  # a size or case the implementation declines
        record = replace(record, outcome="unsupported", message=str(e))
    except WrongResult as e:
        record = replace(record, outcome="mismatch", message=str(e))
    except Exception as e:  # the implementation's failure is an outcome
        record = replace(record, outcome="error", message=f"{type(e).__name__}: {e}")
    return replace(record, seconds=time.perf_counter() - start)
