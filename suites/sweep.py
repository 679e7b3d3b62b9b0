"""Running many cells: one loop, results written as they finish."""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import sys
import threading
import time
from dataclasses import replace
from typing import Callable, Iterable, Iterator

from adjointbench.reference import Oracle
from adjointbench.suites.cells import Cell
from adjointbench.faults import raise_if_interrupted
from adjointbench.suites.memo import ExecutionMemo
from adjointbench.suites.results import FAILURES, Record, ResultsFile, record_key
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


def _finished(cells: list[Cell], runners) -> Iterator[Record]:
    """Each cell's record as it finishes: in order with one runner; with
    several, the cells' groups (:func:`affinity_groups`) spread over threads
    of this process, each thread driving a runner of its own (its own worker
    processes); or as a cluster finishes them (a runner with
    ``finished(cells)``, suites/distributed.py)."""
    if hasattr(runners, "finished"):
        yield from runners.finished(cells)
        return
    if len(runners) == 1:
        yield from map(runners[0], cells)
        return
    yield from _by_groups(affinity_groups(cells), runners)


def affinity_groups(cells: list[Cell]) -> list[list[Cell]]:
    """The cells of each (implementation, problem), in plan order, largest
    group first: one runner takes a whole group, so that the cells that
    reuse each other's checked results (the memo of suites/memo.py) and
    compiled operations meet in one worker, and each worker compiles a
    problem's operations once. Handed out cell by cell instead, two workers
    redid each other's work: ``check --quick`` took a median 37.3 s and 66
    CPU-seconds of workers, by groups 29.6 s and 53 (one worker: 50.5 s and 54).

    >>> from adjointbench.suites.cells import plan_cells
    >>> cells = plan_cells(["numpy", "naive"], ["matvec", "softmax"], ["jvp"], ["float64"],
    ...                    quick=True)
    >>> [(g[0].impl, g[0].problem, len(g)) for g in affinity_groups(cells)]
    [('numpy', 'matvec', 2), ('naive', 'matvec', 2), ('numpy', 'softmax', 2), ('naive', 'softmax', 2)]
    """
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.impl, cell.problem), []).append(cell)
    return sorted(groups.values(), key=len, reverse=True)


class _Groups:
    """The groups not taken yet, largest first, shared by the runners' threads."""

    def __init__(self, groups: list[list[Cell]]):
        self._groups, self._lock = list(groups), threading.Lock()

    def take(self, held: set[str]) -> list[Cell] | None:
        """The largest group of an implementation in ``held`` (whose worker
        the runner has started), else the largest of any; None when none is left."""
        with self._lock:
            if not self._groups:
                return None
            mine = (i for i, group in enumerate(self._groups) if group[0].impl in held)
            return self._groups.pop(next(mine, 0))


def _by_groups(groups: list[list[Cell]], runners) -> Iterator[Record]:
    """Each record as it finishes, each runner taking another group when its
    last is done: of an implementation it has run, while one is left, so
    that fewer workers load the same implementation. A runner that raises
    ends the sweep with that error."""
    left = _Groups(groups)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    stopping = threading.Event()

    def drive(runner) -> None:
        held: set[str] = set()
        try:
            while not stopping.is_set() and (group := left.take(held)) is not None:
                held.add(group[0].impl)
                for cell in group:
                    if stopping.is_set():
                        return
                    finished.put((runner(cell), None))
        except BaseException as e:  # noqa: BLE001 - raised again in the sweep's thread
            finished.put((None, e))

    pool = concurrent.futures.ThreadPoolExecutor(len(runners), "adjointbench-cell")
    try:
        for runner in runners:
            pool.submit(drive, runner)
        for _ in range(sum(map(len, groups))):
            record, error = finished.get()
            if error is not None:
                raise error
            yield record
    finally:  # interrupted or failed: nothing new starts; cells in flight end with their workers
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)


def run_sweep(cells: Iterable[Cell], oracle: Oracle | None = None,
              results: ResultsFile | None = None,
              on_record: Callable[[Record], None] | None = None,
              progress: bool = True, runner: Callable | list[Callable] | None = None,
              threads: int | None = None) -> list[Record]:
    """Run every cell; append each record to ``results`` as soon as it exists
    (here, in this thread: one writer, whatever runs the cells).

    ``runner(cell) -> Record`` defaults to running in this process (its
    timings judged against ``threads``, the run's); pass an
    :class:`suites.isolation.IsolatedRunner`'s ``run`` for timeouts and crashes,
    a list of runners to run that many cells at once, or a
    :class:`suites.distributed.DaskCells` to run them on a Dask cluster.
    """
    cells = list(cells)
    oracle = oracle or Oracle()
    memos = collections.defaultdict(ExecutionMemo)  # in this process: one per implementation
    runners = runner if isinstance(runner, list) or hasattr(runner, "finished") else [
        runner or (lambda cell: run_cell(cell, oracle, memo=memos[cell.impl], threads=threads))]
    bar = ProgressBar(len(cells)) if progress else None
    records = []
    failed = 0
    if bar and cells:
        bar.update(0, f"{cells[0].op} {cells[0].id}", failed)
    for done, record in enumerate(_finished(cells, runners), 1):
        failed += record.outcome in FAILURES
        records.append(record)
        if results:
            results.append(record)
        if on_record:
            on_record(record)
        if bar and done < len(cells):  # the next cell to start (several are in flight)
            bar.update(done, f"{cells[done].op} {cells[done].id}", failed)
        raise_if_interrupted()  # a Ctrl-C a finaliser swallowed during the cell
    if bar:
        bar.update(len(cells), "done", failed)
        bar.close()
    return records


def time_in_rounds(cells: list[Cell], rounds: int, oracle: Oracle | None = None,
                   results: ResultsFile | None = None, progress: bool = True,
                   runner: Callable | list[Callable] | None = None,
                   restart: Callable[[list[Cell]], None] = lambda cells: None,
                   threads: int | None = None) -> list[Record]:
    """Bench cells timed in ``rounds`` passes over the whole sweep, each cell
    with its share of the budget, ``restart(cells)`` (fresh worker processes
    for the next pass's cells) between passes; each cell's record pools its
    passes (suites/bench.py's merge_rounds), as asv's ``processes`` do. The
    first pass's records are written as they finish and replaced by the
    pooled ones at the end, at once: a sweep stopped in a later pass keeps
    its first-pass records. ``threads``: the run's, which the pooled
    records' timings are judged against."""
    from adjointbench.suites.bench import merge_rounds

    share = [replace(c, budget_s=c.budget_s / rounds) for c in cells]
    first = run_sweep(share, oracle, results, progress=progress, runner=runner, threads=threads)
    passes = {record_key(r): [r] for r in first}
    for k in range(2, rounds + 1):
        again = [c for c in share if passes[record_key(c)][0].outcome == "ok"]
        restart(again)
        print(f"round {k} of {rounds}: timing the {len(again)} timed cells again",
              file=sys.stderr)
        for record in run_sweep(again, oracle, progress=progress, runner=runner,
                                threads=threads):
            passes[record_key(record)].append(record)
    pooled = {key: merge_rounds(records, threads) for key, records in passes.items()}
    if results and rounds > 1:
        written, _ = results.read()
        results.rewrite([pooled.get(record_key(r), r) if r.suite == "bench" else r
                         for r in written])
    return [pooled[record_key(r)] for r in first]
