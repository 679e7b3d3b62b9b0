"""Running many cells: one loop, results written as they finish."""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable

from adjointbench.reference import Oracle
from adjointbench.suites.cells import Cell
from adjointbench.faults import raise_if_interrupted
from adjointbench.suites.results import FAILURES, Record, ResultsFile
from adjointbench.suites.runner import run_cell


class ProgressBar:
    """Progress of a sweep: a one-line bar on a terminal; elsewhere (a pipe,
    CI's log) a plain line at least every LINE_EVERY_S seconds."""

    LINE_EVERY_S = 10.0

    def __init__(self, total: int, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.start = self.last_line = time.perf_counter()

    def update(self, done: int, label: str, failed: int = 0) -> None:
        elapsed = time.perf_counter() - self.start
        if self.terminal:
            width = 30
            filled = int(width * done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                              f"{elapsed:5.1f}s {label[:50]:<50}")
            self.stream.flush()
        elif time.perf_counter() - self.last_line >= self.LINE_EVERY_S:
            self.last_line = time.perf_counter()
            eta = elapsed / done * (self.total - done) if done else float("nan")
            self.stream.write(f"adjointbench: {done}/{self.total} cells, {failed} failed, "
                              f"{elapsed:.0f} s elapsed, about {eta:.0f} s to go\n")
            self.stream.flush()

    def close(self) -> None:
        if self.terminal:
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
    runner = runner or (lambda cell: run_cell(cell, oracle))
    bar = ProgressBar(len(cells)) if progress else None
    records = []
    failed = 0
    for done, cell in enumerate(cells, 1):
        if bar:
            bar.update(done - 1, f"{cell.op} {cell.id}", failed)
        record = runner(cell)
        failed += record.outcome in FAILURES
        records.append(record)
        if results:
            results.append(record)
        if on_record:
            on_record(record)
        raise_if_interrupted()  # a Ctrl-C a finaliser swallowed during the cell
    if bar:
        bar.update(len(cells), "done", failed)
        bar.close()
    return records
