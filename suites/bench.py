"""The throughput suite: every operation of every implementation, timed by the
one timing core against its own primal, over each problem's scaling sizes.

A bench cell times the operation and its primal in one process (the primal
once per worker for all operations of the same inputs), so that
``ratio_to_primal`` compares like with like, within one run. Its record
(``suite == "bench"``) carries the timing fields of :mod:`suites.results`;
correctness is the check suite's business, but a result that is not finite
makes the cell a ``mismatch`` rather than a number.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from adjointbench.impls.protocol import Implementation, Prepared, Task
from adjointbench.reference import Problem, get_problem, make_inputs, make_probes
from adjointbench.suites.cells import Cell
from adjointbench.suites.purity import check_reentrant
from adjointbench.suites.results import Record
from adjointbench.suites.threads import blas_threads
from adjointbench.suites.timing import Timing, time_operation, timing_fields


def _task(cell: Cell, problem: Problem, op: str, inputs: dict, **kw) -> Task:
    return Task(problem.name, op, inputs, problem.differentiable, cell.dtype, cell.device,
                method=cell.method, **kw)


def _operation_task(cell: Cell, problem: Problem, inputs: dict, output_shape) -> Task:
    probes = make_probes(problem, cell.size, inputs, output_shape, cell.seed)
    extra = {"jvp": {"tangent": probes.tangent}, "vjp": {"cotangent": probes.cotangent}}
    return _task(cell, problem, cell.op, inputs, **extra.get(cell.op, {}))


def _all_finite(timing: Timing) -> bool:
    result = timing.result
    parts = result if isinstance(result, (tuple, list)) else (result,)
    return all(np.all(np.isfinite(np.asarray(p, dtype=np.float64))) for p in parts)


# The primal's timing per (impl, problem, size, dtype, device, seed, budget),
# shared by the operations of one worker process: ratios within one run.
_PRIMALS: dict[tuple, tuple[Timing, tuple]] = {}


def _primal_timing(cell: Cell, impl: Implementation, problem: Problem, inputs: dict):
    key = (cell.impl, cell.problem, cell.size, cell.dtype, cell.device, cell.seed, cell.budget_s)
    if key not in _PRIMALS:
        timing = time_operation(lambda: impl.prepare(_task(cell, problem, "primal", inputs)),
                                cell.budget_s)
        shape = np.shape(timing.result)
        _PRIMALS[key] = (timing, shape)
    return _PRIMALS[key]


def time_primal(cell: Cell, impl: Implementation) -> tuple[Timing, Callable[[], Prepared]]:
    """The primal's timing, and ``prepare()`` of the cell's operation (on the
    same inputs, with probes shaped by the primal's output)."""
    problem = get_problem(cell.problem)
    inputs = make_inputs(problem, cell.size, cell.seed)
    primal, output_shape = _primal_timing(cell, impl, problem, inputs)
    task = _operation_task(cell, problem, inputs, output_shape)
    return primal, lambda: impl.prepare(task)


def time_cell(cell: Cell, impl: Implementation, record: Record) -> Record:
    """The timing fields of one bench cell, run in this process."""
    record = replace(record, threads=blas_threads())
    primal, prepare = time_primal(cell, impl)
    timing = primal if cell.op == "primal" else time_operation(prepare, cell.budget_s)
    record = replace(record, outcome="ok", primal_median_s=primal.median_s,
                     ratio_to_primal=timing.median_s / primal.median_s, **timing_fields(timing))
    if not _all_finite(timing):
        return replace(record, outcome="mismatch",
                       message=f"{cell.op} returned NaN or Inf; its timing is not meaningful")
    check_reentrant(cell, cell.op, timing.result, timing.last_result)  # timed results are right
    return record
