"""Running many cells: one loop, results written as they finish."""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable

from adjointbench.reference import Oracle
from adjointbench.suites.cells import Cell
from adjointbench.suites.results import Record, ResultsFile
from adjointbench.suites.runner import run_cell


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
    runner = runner or (lambda cell: run_cell(cell, oracle))
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
