"""Code under test in worker processes, one per implementation, under a
timeout: nothing an implementation does (hang, segfault, os._exit, runaway
memory, monkeypatching a library) can take the sweep down or reach the
oracle, its cache, the comparisons or the records, which stay in this
process. A worker is replaced after any cell that did not end ok, unsupported
or ill_conditioned."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

from adjointbench.suites.executors import (ImplementationError, LocalExecutor, WorkerCrashed,
                                           WorkerTimeout)
from adjointbench.suites.results import FAILURES, Record

DEFAULT_TIMEOUT_S = 300.0
LOAD_TIMEOUT_S = 300.0  # importing a framework is not the cell's time
MEMORY_LIMIT_ENV = "ADJOINTBENCH_MEMORY_LIMIT_GB"


def _limit_memory() -> None:
    limit = os.environ.get(MEMORY_LIMIT_ENV)
    if limit:
        import resource
        size = int(float(limit) * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


def _answer(call):
    """("ok", value), or ("raise", outcome, message) for what the call raised."""
    from adjointbench.suites.results import outcome_of

    try:
        return ("ok", call())
    except Exception as e:  # the implementation's failure, sent back as its outcome
        return ("raise", *outcome_of(e))


def _serve(connection, spec: str) -> None:
    """The worker: load one implementation, then answer method calls."""
    _limit_memory()
    from adjointbench.impls.registry import load_implementation

    loaded = _answer(lambda: LocalExecutor(load_implementation(spec)))
    if loaded[0] == "ok":
        executor = loaded[1]
        loaded = ("ok", executor.describe())
    connection.send(loaded)
    while loaded[0] == "ok":
        request = connection.recv()
        if request is None:
            return
        method, args = request
        connection.send(_answer(lambda: getattr(executor, method)(*args)))


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


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by signal {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


class Worker:
    """One worker process serving one implementation."""

    def __init__(self, context, spec: str, environment: dict[str, str]):
        parent, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, spec), daemon=True)
        with _environment(environment):
            self.process.start()
        child.close()
        self.connection, self.spec = parent, spec
        self.description = self._receive(time.monotonic() + LOAD_TIMEOUT_S, "loading")

    def _receive(self, deadline: float, what: str):
        try:
            if not self.connection.poll(max(deadline - time.monotonic(), 0.0)):
                raise WorkerTimeout(f"no answer within the timeout while {what}; the worker "
                                    "was killed. Raise --timeout if the cell is just slow.")
            answer = self.connection.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self.process.join(timeout=5)
            raise WorkerCrashed(f"the worker running {self.spec} "
                                f"{_death(self.process.exitcode)}") from None
        if answer[0] == "raise":
            _, kind, message = answer
            raise {"unsupported": NotImplementedError,
                   "mismatch": _wrong_result()}.get(kind, ImplementationError)(message)
        return answer[1]

    def call(self, deadline: float, method: str, *args):
        try:
            self.connection.send((method, args))
        except (BrokenPipeError, OSError):
            raise WorkerCrashed(f"the worker running {self.spec} "
                                f"{_death(self.process.exitcode)}") from None
        return self._receive(deadline, f"running {method}")

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.connection.send(None)
            self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


def _wrong_result():
    from adjointbench.suites.compare import WrongResult
    return WrongResult


class RemoteExecutor:
    """A worker's executor, within one cell's deadline (see LocalExecutor)."""

    def __init__(self, worker: Worker, deadline: float):
        self.worker, self.deadline = worker, deadline

    def describe(self) -> dict:
        return self.worker.description

    def __getattr__(self, method):
        return lambda *args: self.worker.call(self.deadline, method, *args)


def compilation_cache_environment(cache_dir: Path) -> dict[str, str]:
    """JAX's persistent compilation cache in ``cache_dir/jax`` for the workers,
    so that a second sweep reuses the first one's XLA compilations; a cache
    the user configured (``JAX_COMPILATION_CACHE_DIR``) is left alone."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return {}
    return {"JAX_COMPILATION_CACHE_DIR": str((Path(cache_dir) / "jax").resolve()),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


class IsolatedRunner:
    """``run(cell) -> Record``: the oracle and the comparisons here, the
    implementation in its own worker, under a timeout per cell."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir=None,
                 environment: dict[str, str] | None = None, oracle=None):
        from adjointbench.reference import Oracle

        self.timeout_s = timeout_s
        self.oracle = oracle or Oracle(cache_dir)
        # for the workers (thread counts, compilation cache), set at their start
        self.environment = {**compilation_cache_environment(self.oracle.cache_dir),
                            **(environment or {})}
        self._context = mp.get_context("spawn")  # no inherited JAX/torch threads
        self._workers: dict[str, Worker] = {}

    def worker(self, spec: str) -> Worker:
        """The live worker of ``spec``, started (and its implementation loaded) if needed."""
        worker = self._workers.get(spec)
        if worker is None or not worker.process.is_alive():
            self._workers[spec] = Worker(self._context, spec, self.environment)
        return self._workers[spec]

    def describe(self, spec: str) -> dict:
        """name, devices and expected outcomes, from the implementation's own worker."""
        return self.worker(spec).description

    def _stop(self, spec: str) -> None:
        worker = self._workers.pop(spec, None)
        if worker is not None:
            worker.stop()

    def run(self, cell) -> Record:
        from adjointbench.suites.runner import run_cell
        from adjointbench.suites.results import outcome_of

        try:
            worker = self.worker(cell.impl)
            record = run_cell(cell, self.oracle,
                              executor=RemoteExecutor(worker, time.monotonic() + self.timeout_s))
        except Exception as e:  # the implementation would not even load
            outcome, message = outcome_of(e)
            record = Record(cell.problem, cell.impl, cell.op, cell.dtype, cell.device, cell.size,
                            cell.seed, outcome=outcome, message=message, method=cell.method,
                            suite=cell.suite)
        if record.outcome in FAILURES:
            self._stop(cell.impl)  # a fresh worker for the next cell
        return record

    def close(self) -> None:
        for spec in list(self._workers):
            self._stop(spec)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["DEFAULT_TIMEOUT_S", "IsolatedRunner"]
