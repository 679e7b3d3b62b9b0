"""Where code under test runs: the untrusted side.

An executor runs one implementation's prepared operations and hands back raw
NumPy results; it never compares, never reads or writes the oracle's cache
and never writes records. :class:`LocalExecutor` runs in this process
(``--in-process``, the pytest sweep); a worker process serves the same
methods to a :class:`RemoteExecutor` (suites/isolation.py), so that the
process that compares never imports implementation code.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from adjointbench.impls.protocol import Implementation, Task, devices, prepare, supports
from adjointbench.suites.purity import copy_arrays, same_arrays
from adjointbench.suites.timing import synchronised, time_operation, timing_fields


class ImplementationError(RuntimeError):
    """What an implementation raised in a worker, as ``Type: message``."""


class WorkerTimeout(RuntimeError):
    """The worker gave no answer within the cell's timeout."""


class WorkerCrashed(RuntimeError):
    """The worker died (a segfault, os._exit, the memory cap)."""


def _buffers(task: Task) -> dict:
    """What was handed over, as the implementation left it."""
    return {"inputs": task.inputs, "tangent": task.tangent, "cotangent": task.cotangent}


class LocalExecutor:
    """Runs one implementation here. Every method returns plain data."""

    def __init__(self, impl: Implementation):
        self.impl = impl
        # the operation last executed: what its run() returned, its to_numpy, and
        # a copy of its NumPy result taken then
        self._returned: tuple[str, Any, Callable[[Any], Any], Any] | None = None

    def describe(self) -> dict:
        return {"name": self.impl.name, "devices": devices(self.impl),
                "expected_outcomes": getattr(self.impl, "expected_outcomes", None)}

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        return supports(self.impl, problem, op, method)

    def execute(self, task: Task) -> tuple[Any, Any, dict]:
        """Prepare, call twice; (first result, second result, the buffers
        after, with ``earlier_results``: the last execution's result as
        (operation, then, now) if this one changed it, else nothing)."""
        prepared = prepare(self.impl, task)
        returned = synchronised(prepared)()
        first = copy_arrays(prepared.to_numpy(returned))
        second = copy_arrays(prepared.to_numpy(synchronised(prepared)()))
        after = {**_buffers(task), "earlier_results": self._changed_since_returned()}
        self._returned = (task.op, returned, prepared.to_numpy, first)
        return first, second, after

    def _changed_since_returned(self) -> list[tuple[str, Any, Any]]:
        """The last execution's result if it is no longer what it was when
        returned: an implementation that hands out a buffer it reuses (a
        static output array) overwrites it at its next call,
        though each call alone returns the right values. What ``run()``
        returned is converted again, so a staging buffer that ``to_numpy``
        reuses (a device-to-host copy) is not taken for one. (Only the last
        is kept: comparing every operation's took 67 us per execution.)"""
        if self._returned is None:
            return []
        op, returned, to_numpy, then = self._returned
        try:
            now = copy_arrays(to_numpy(returned))
            return [] if same_arrays(now, then) else [(op, then, now)]
        except Exception:  # noqa: BLE001 - not numbers, or no longer convertible: its own cell judged it
            return []

    def time(self, task: Task, budget_s: float, rounds: int) -> tuple[dict, Any, Any, dict]:
        """Time the operation; (timing fields, first result, last result, buffers after)."""
        timing = time_operation(lambda: prepare(self.impl, task), budget_s, rounds)
        return timing_fields(timing), timing.result, timing.last_result, _buffers(task)

    def bench(self, cell) -> dict:
        """A bench cell's record fields, timed here."""
        from adjointbench.suites.bench import time_cell
        from adjointbench.suites.results import Record

        return asdict(time_cell(cell, self.impl, Record.for_cell(cell, "error")))
