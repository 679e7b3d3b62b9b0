"""Cells run in a worker process, under a timeout, so that nothing an
implementation does (hang, segfault, os._exit, runaway memory) can take the
sweep down. One worker serves cell after cell; it is replaced after a timeout
or a crash, and that cell's record says which."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal

from adjointbench.suites.results import Record

DEFAULT_TIMEOUT_S = 300.0
MEMORY_LIMIT_ENV = "ADJOINTBENCH_MEMORY_LIMIT_GB"


def _limit_memory() -> None:
    limit = os.environ.get(MEMORY_LIMIT_ENV)
    if limit:
        import resource
        size = int(float(limit) * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


def _serve(connection, cache_dir) -> None:
    from adjointbench.reference import Oracle
    from adjointbench.suites.runner import run_cell

    _limit_memory()
    oracle = Oracle(cache_dir)
    while True:
        cell = connection.recv()
        if cell is None:
            return
        connection.send(run_cell(cell, oracle).to_json())


@contextlib.contextmanager
def _environment(variables: dict[str, str]):
    """These variables in os.environ while a worker starts (it inherits them)."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _blank(cell, outcome: str, message: str) -> Record:
    return Record(cell.problem, cell.impl, cell.op, cell.dtype, cell.device, cell.size,
                  cell.seed, outcome=outcome, message=message, method=cell.method,
                  suite=cell.suite)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by signal {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


class IsolatedRunner:
    """``run(cell) -> Record`` in a worker process, with a timeout per cell."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir=None,
                 environment: dict[str, str] | None = None):
        self.timeout_s, self.cache_dir = timeout_s, cache_dir
        self.environment = environment or {}  # for the worker (thread counts), set at its start
        self._context = mp.get_context("spawn")  # no inherited JAX/torch threads
        self._worker = self._connection = None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._worker = self._context.Process(target=_serve, args=(child, self.cache_dir),
                                             daemon=True)
        with _environment(self.environment):
            self._worker.start()
        child.close()
        self._connection = parent

    def _stop(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker.join()
        self._worker = self._connection = None

    def run(self, cell) -> Record:
        if self._worker is None or not self._worker.is_alive():
            self._start()
        try:
            self._connection.send(cell)
            if self._connection.poll(self.timeout_s):
                return Record.from_json(self._connection.recv())
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._worker.join(timeout=5)
            record = _blank(cell, "crashed", f"the worker running {cell.impl} "
                                             f"{_death(self._worker.exitcode)}")
            self._stop()
            return record
        self._stop()
        return _blank(cell, "timeout", f"no result within {self.timeout_s:g} s; the worker "
                                       "was killed. Raise --timeout if the cell is just slow.")

    def close(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            try:
                self._connection.send(None)
                self._worker.join(timeout=5)
            except (BrokenPipeError, OSError):
                pass
        self._stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["DEFAULT_TIMEOUT_S", "IsolatedRunner"]
