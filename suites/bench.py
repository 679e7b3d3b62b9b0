"""The throughput suite: every operation of every implementation, timed by the
one timing core against its own primal, over each problem's scaling sizes.

A bench cell times the operation and its primal in one process (the primal
once per worker for all operations of the same inputs), so that
``ratio_to_primal`` compares like with like, within one run. Its
record (``suite == "bench"``) carries the timing fields of
:mod:`suites.results`; correctness is the check suite's business, but a
result that is not finite makes the cell a ``mismatch`` rather than a number.
Full Jacobians grow as m x N, so they are timed at the correctness sizes only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from adjointbench.impls.protocol import DEVICES, DTYPES, OPERATIONS, Implementation, Prepared, Task
from adjointbench.impls.registry import load_implementation
from adjointbench.reference import Problem, get_problem, make_inputs, make_probes, problems
from adjointbench.suites.results import Record
from adjointbench.suites.runner import FULL_JACOBIAN_OPS, Cell, _check_names, _unsupported_reason, check_sizes
from adjointbench.suites.threads import blas_threads
from adjointbench.suites.timing import DEFAULT_BUDGET_S, Timing, time_operation, timing_fields

BENCH_OPS = OPERATIONS
DEFAULT_BENCH_OPS = ("primal", "jvp", "vjp", "batched_jacobian")


@dataclass(frozen=True)
class BenchCell(Cell):
    budget_s: float = DEFAULT_BUDGET_S
    suite: str = "bench"

    @property
    def id(self) -> str:
        return f"{self.impl}-{self.problem}-n{self.size}-{self.dtype}-{self.device}"


def bench_sizes(problem: Problem, sizes, quick: bool = False, op: str = "primal") -> list[int]:
    """The sizes a problem is timed at: those asked for that it has, else its
    scaling sweep (``quick``: its smallest and largest size). Full Jacobians
    use the correctness sizes."""
    own = problem.sizes if op in FULL_JACOBIAN_OPS else problem.timed_sizes
    if sizes is not None:
        return [s for s in sizes if s in own]
    return sorted({own[0], own[-1]}) if quick else list(own)


def make_bench_cells(impls, problem_names=None, ops=None, dtypes=None, sizes=None,
                     devices=None, seed: int = 0, budget_s: float = DEFAULT_BUDGET_S,
                     quick: bool = False) -> list[BenchCell]:
    """Bench cells of the primitive problems; ``None`` means the defaults
    (operations DEFAULT_BENCH_OPS, float64, CPU, each problem's scaling sizes).
    Raises UnknownNameError for any unknown name or size."""
    chosen = [get_problem(n) for n in problem_names] if problem_names else problems("primitive")
    ops = _check_names("operation", ops, BENCH_OPS) if ops else list(DEFAULT_BENCH_OPS)
    dtypes = _check_names("dtype", dtypes, DTYPES) if dtypes else ["float64"]
    devices = _check_names("device", devices, DEVICES) if devices else ["cpu"]
    check_sizes(chosen, sizes, lambda p: (*p.timed_sizes, *p.sizes))
    return [BenchCell(p.name, impl, op, size, dtype, device, seed, budget_s)
            for p in chosen if p.kind == "primitive"
            for op in ops if op != "batched_jacobian" or p.batch_input
            for size in bench_sizes(p, sizes, quick, op)
            for impl in impls
            for dtype in dtypes for device in devices]


def _task(cell: BenchCell, problem: Problem, op: str, inputs: dict, **kw) -> Task:
    return Task(problem.name, op, inputs, problem.differentiable, cell.dtype, cell.device, **kw)


def _operation_task(cell: BenchCell, problem: Problem, inputs: dict, output_shape) -> Task:
    probes = make_probes(problem, cell.size, inputs, output_shape, cell.seed)
    extra = {"jvp": {"tangent": probes.tangent}, "vjp": {"cotangent": probes.cotangent}}
    return _task(cell, problem, cell.op, inputs, **extra.get(cell.op, {}))


def _all_finite(timing: Timing) -> bool:
    result = timing.prepared.to_numpy(timing.result)
    parts = result if isinstance(result, (tuple, list)) else (result,)
    return all(np.all(np.isfinite(np.asarray(p, dtype=np.float64))) for p in parts)


# The primal's timing per (impl, problem, size, dtype, device, seed, budget),
# shared by the operations of one worker process: ratios within one run.
_PRIMALS: dict[tuple, tuple[Timing, tuple]] = {}


def _primal_timing(cell: BenchCell, impl: Implementation, problem: Problem, inputs: dict):
    key = (cell.impl, cell.problem, cell.size, cell.dtype, cell.device, cell.seed, cell.budget_s)
    if key not in _PRIMALS:
        timing = time_operation(lambda: impl.prepare(_task(cell, problem, "primal", inputs)),
                                cell.budget_s)
        shape = np.shape(timing.prepared.to_numpy(timing.result))
        _PRIMALS[key] = (timing, shape)
    return _PRIMALS[key]


def time_primal(cell: BenchCell, impl: Implementation) -> tuple[Timing, Callable[[], Prepared]]:
    """The primal's timing, and ``prepare()`` of the cell's operation (on the
    same inputs, with probes shaped by the primal's output)."""
    problem = get_problem(cell.problem)
    inputs = make_inputs(problem, cell.size, cell.seed)
    primal, output_shape = _primal_timing(cell, impl, problem, inputs)
    task = _operation_task(cell, problem, inputs, output_shape)
    return primal, lambda: impl.prepare(task)


def _time_cell(cell: BenchCell, impl: Implementation, record: Record) -> Record:
    primal, prepare = time_primal(cell, impl)
    timing = primal if cell.op == "primal" else time_operation(prepare, cell.budget_s)
    record = replace(record, outcome="ok", primal_median_s=primal.median_s,
                     ratio_to_primal=timing.median_s / primal.median_s, **timing_fields(timing))
    if not _all_finite(timing):
        return replace(record, outcome="mismatch",
                       message=f"{cell.op} returned NaN or Inf; its timing is not meaningful")
    return record


def run_bench_cell(cell: BenchCell, impl: Implementation | None = None) -> Record:
    """Time one cell in this process; never raises for what the implementation
    does (NotImplementedError, e.g. a size it declines, is ``unsupported``)."""
    start = time.perf_counter()
    record = Record(cell.problem, cell.impl, cell.op, cell.dtype, cell.device, cell.size,
                    cell.seed, outcome="error", suite="bench")
    try:
        impl = impl or load_implementation(cell.impl)
        reason = _unsupported_reason(cell, impl)
        if reason:
            return replace(record, outcome="unsupported", message=reason)
        record = _time_cell(cell, impl, replace(record, threads=blas_threads()))
    except NotImplementedError as e:
        record = replace(record, outcome="unsupported", message=str(e))
    except Exception as e:  # the implementation's failure is an outcome
        record = replace(record, outcome="error", message=f"{type(e).__name__}: {e}")
    return replace(record, seconds=time.perf_counter() - start)
