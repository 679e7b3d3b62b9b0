"""Running many cells: one loop, results written as they finish."""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable

from adjointbench.reference import PROBLEMS, Oracle, get_problem
from adjointbench.suites.bench import BenchCell, run_bench_cell
from adjointbench.suites.results import Record, ResultsFile
from adjointbench.suites.runner import ALL_OPS, Cell, _check_names, check_sizes, make_cells, run_cell
from adjointbench.suites.sensitivity import (METHOD_RTOL, SENSITIVITY_OPS, GradientCell, make_gradient_cells,
                                run_sensitivity_cell)

OPS = ALL_OPS + SENSITIVITY_OPS


def plan_cells(impls, problem_names=None, ops=None, dtypes=None, sizes=None, devices=None,
               seed: int = 0, methods=None, quick: bool = False) -> list:
    """Every cell of a sweep over both kinds of problem, with the same filters:
    primitives get operation cells, sensitivity problems gradient cells (float64,
    CPU). ``quick`` keeps float64, each primitive's smallest size and the
    sensitivity problems' sizes up to QUICK_MAX_P, unless dtypes or sizes are
    asked for. Raises UnknownNameError for any unknown name or size."""
    cells = _plan(impls, problem_names, ops, dtypes or (["float64"] if quick else None), sizes,
                  devices, seed, methods)
    if quick and sizes is None:
        cells = [c for c in cells if _quick_size(get_problem(c.problem), c.size)]
    return cells


QUICK_MAX_P = 100  # two points of each scalable sensitivity problem


def _quick_size(problem, size: int) -> bool:
    if problem.kind == "sensitivity":
        return size <= QUICK_MAX_P
    return size == problem.smallest_size


def _plan(impls, problem_names, ops, dtypes, sizes, devices, seed, methods) -> list:
    names = problem_names or list(PROBLEMS)
    chosen = [get_problem(n) for n in names]
    ops = _check_names("operation", ops, OPS)
    methods = _check_names("method", methods, METHOD_RTOL)
    check_sizes(chosen, sizes)
    primitive = [p for p in chosen if p.kind == "primitive"]
    sensitive = [p.name for p in chosen if p.kind == "sensitivity"]
    cells: list = []
    primitive_ops = [o for o in ops if o in ALL_OPS]
    primitive_sizes = None if sizes is None else [s for s in sizes
                                                  if any(s in p.sizes for p in primitive)]
    if primitive and primitive_ops and primitive_sizes != []:
        cells += make_cells(impls, [p.name for p in primitive], primitive_ops, dtypes,
                            primitive_sizes, devices, seed)
    wants_float64 = dtypes is None or "float64" in dtypes
    wants_cpu = devices is None or "cpu" in devices
    if sensitive and wants_float64 and wants_cpu:
        cells += make_gradient_cells(impls, sensitive, methods, sizes, seed,
                                     [o for o in ops if o in SENSITIVITY_OPS])
    return cells


def run_any_cell(cell, oracle: Oracle) -> Record:
    if isinstance(cell, BenchCell):
        return run_bench_cell(cell)
    if isinstance(cell, GradientCell):
        return run_sensitivity_cell(cell, oracle)
    return run_cell(cell, oracle)


class ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, done: int, label: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                          f"{elapsed:5.1f}s {label[:50]:<50}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def run_sweep(cells: Iterable[Cell], oracle: Oracle | None = None,
              results: ResultsFile | None = None,
              on_record: Callable[[Record], None] | None = None,
              progress: bool = True, runner: Callable | None = None) -> list[Record]:
    """Run every cell; append each record to ``results`` as soon as it exists.

    ``runner(cell) -> Record`` defaults to running in this process; pass an
    :class:`suites.isolation.IsolatedRunner`'s ``run`` for timeouts and crashes.
    """
    cells = list(cells)
    oracle = oracle or Oracle()
    runner = runner or (lambda cell: run_any_cell(cell, oracle))
    bar = ProgressBar(len(cells)) if progress else None
    records = []
    for done, cell in enumerate(cells, 1):
        if bar:
            bar.update(done - 1, f"{cell.op} {cell.id}")
        record = runner(cell)
        records.append(record)
        if results:
            results.append(record)
        if on_record:
            on_record(record)
    if bar:
        bar.update(len(cells), "done")
        bar.close()
    return records
