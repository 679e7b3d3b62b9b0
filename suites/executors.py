"""Where code under test runs: the untrusted side.

An executor runs one implementation's prepared operations and hands back raw
NumPy results; it never compares, never reads or writes the oracle's cache
and never writes records. :class:`LocalExecutor` runs in this process
(``--in-process``, the pytest sweep); a worker process serves the same
methods to a :class:`RemoteExecutor` (suites/isolation.py), so that the
process that compares never imports implementation code.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Callable

from adjointbench.faults import Terminated, stop_request
from adjointbench.impls.protocol import Implementation, Task, devices, prepare, supports
from adjointbench.suites.purity import (allocation_spans, arrays_in, copy_arrays, envelope,
                                          overlapping, same_arrays)
from adjointbench.suites.timing import synchronised, time_operation, timing_fields


class ImplementationError(RuntimeError):
    """What an implementation raised in a worker, as ``Type: message``."""


@contextlib.contextmanager
def stops_told_as_errors():
    """Around code under test run in this process (--in-process): a
    SystemExit or GeneratorExit it raises is its failure, an
    ImplementationError, as in a worker; before, ``sys.exit(0)`` in a rule
    ended the sweep with exit status 0 and no word. SIGTERM's Terminated and
    Ctrl-C (which cannot be told from a rule's KeyboardInterrupt here) stop
    the run."""
    try:
        yield
    except Terminated:
        raise
    except (SystemExit, GeneratorExit) as e:
        raise ImplementationError(stop_request(e)) from None


def numbers_in(value: Any) -> int:
    """How many numbers ``value`` holds, unconverted: the product of the
    shape of each leaf that has one (NumPy's arrays, a framework's), one for
    any other leaf."""
    from adjointbench.suites.purity import leaves_of

    def count(leaf) -> int:
        shape = getattr(leaf, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            return math.prod(shape)
        return 1
    return sum(map(count, leaves_of(value)))


def refuse_oversized(returned: Any, task: Task, most: int | None) -> None:
    """Raise WrongResult (a ``mismatch``) if ``returned`` holds more than
    ``most`` numbers: the wrong shape, told before it is converted, copied,
    called again and sent. A result of 10^8 numbers for a cell of four ran
    past a 20 s timeout in the worker's encoding, at 6.6 GB."""
    if most is None:
        return
    count = numbers_in(returned)
    if count > most:
        from adjointbench.suites.compare import WrongResult
        raise WrongResult(f"{task.op} returned {count:,} numbers, more than the {most:,} that "
                          f"any operation of {task.problem} gives at these inputs: the wrong "
                          "shape")


class WorkerTimeout(RuntimeError):
    """The worker gave no answer within the cell's timeout."""


class WorkerCrashed(RuntimeError):
    """The worker died (a segfault, os._exit, the memory cap)."""


def _buffers(task: Task) -> dict:
    """What was handed over, as the implementation left it."""
    return {"inputs": task.inputs, "tangent": task.tangent, "cotangent": task.cotangent}


RESULTS_KEPT = 32  # earlier executions' results watched for reuse, the newest ...
RESULTS_KEPT_BYTES = 32 * 2**20  # ... while their copies take at most this (the newest always)


@dataclass(frozen=True)
class _Returned:
    """One execution's first result: what run() returned, the to_numpy that
    converts it, a copy of the conversion taken then, and the conversion
    itself, held so that its memory cannot be handed to anyone else while
    it is watched, with the byte spans of the allocations behind it."""
    op: str
    returned: Any
    to_numpy: Callable[[Any], Any]
    then: Any
    converted: Any
    spans: tuple[tuple[int, int], ...]
    start: int  # the envelope of spans, a cheap first test
    end: int
    nbytes: int  # of then

    @classmethod
    def of(cls, op: str, returned: Any, to_numpy: Callable, then: Any,
           converted: Any) -> _Returned:
        spans = allocation_spans(converted)
        return cls(op, returned, to_numpy, then, converted, spans, *envelope(spans),
                   sum(part.nbytes for part in arrays_in(then)))

    def changed(self) -> tuple[str, Any, Any] | None:
        """(operation, then, now) if converting what run() returned no longer
        gives what it gave; else None (also when it no longer converts:
        its own cell judged it)."""
        try:
            now = copy_arrays(self.to_numpy(self.returned))
        except Exception:  # noqa: BLE001
            return None
        return None if same_arrays(now, self.then) else (self.op, self.then, now)


class LocalExecutor:
    """Runs one implementation here. Every method returns plain data."""

    def __init__(self, impl: Implementation):
        self.impl = impl
        self._returned: deque[_Returned] = deque()  # newest first
        self._kept_bytes = 0

    def describe(self) -> dict:
        return {"name": self.impl.name, "devices": devices(self.impl),
                "expected_outcomes": getattr(self.impl, "expected_outcomes", None)}

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        return supports(self.impl, problem, op, method)

    def execute(self, task: Task, most: int | None = None) -> tuple[Any, Any, dict]:
        """Prepare, call twice; (first result, second result, the buffers
        after, with ``earlier_results``: (operation, then, now) for each
        earlier execution's result that this one changed). A result of more
        than ``most`` numbers is refused (:func:`refuse_oversized`)."""
        prepared = prepare(self.impl, task)
        returned = synchronised(prepared)()
        refuse_oversized(returned, task, most)
        converted = prepared.to_numpy(returned)
        first = copy_arrays(converted)
        returned_again = synchronised(prepared)()
        refuse_oversized(returned_again, task, most)
        again = prepared.to_numpy(returned_again)
        second = copy_arrays(again)
        kept = _Returned.of(task.op, returned, prepared.to_numpy, first, converted)
        changed = self._changed_since_returned(kept.spans + allocation_spans(again))
        self._remember(kept)
        return first, second, {**_buffers(task), "earlier_results": changed}

    def _changed_since_returned(self, written: tuple) -> list[tuple[str, Any, Any]]:
        """Earlier executions' results that are no longer what they were when
        returned: an implementation that hands out buffers it reuses (a
        static output array, a pool of them handed out in turn) overwrites
        one at a later call, though each call alone returns the right
        values. The last execution's result is always looked at (whatever
        its memory: a device array, scratch space); an older one when this
        execution's results lie in the same allocation (``written``): a
        comparison of spans, about 1 us for all 32 kept results, where
        converting and comparing one 8 x 8 result takes about 11. What
        ``run()`` returned is converted again, so a staging buffer that
        ``to_numpy`` reuses (a device-to-host copy) is not taken for one."""
        if not self._returned:
            return []
        start, end = envelope(written)
        watched = [self._returned[0]] + [
            kept for kept in islice(self._returned, 1, None)
            if kept.start < end and start < kept.end and overlapping(kept.spans, written)]
        return [change for change in map(_Returned.changed, watched) if change]

    def _remember(self, returned: _Returned) -> None:
        """Keep ``returned`` and the newest results before it, at most
        RESULTS_KEPT of them and RESULTS_KEPT_BYTES of their copies."""
        self._returned.appendleft(returned)
        self._kept_bytes += returned.nbytes
        while len(self._returned) > 1 and (len(self._returned) > RESULTS_KEPT
                                           or self._kept_bytes > RESULTS_KEPT_BYTES):
            self._kept_bytes -= self._returned.pop().nbytes

    def time(self, task: Task, budget_s: float, rounds: int) -> tuple[dict, Any, Any, dict]:
        """Time the operation; (timing fields, first result, last result, buffers after)."""
        timing = time_operation(lambda: prepare(self.impl, task), budget_s, rounds)
        return timing_fields(timing), timing.result, timing.last_result, _buffers(task)

    def bench(self, cell, hand_back: bool = False) -> dict:
        """A bench cell's record fields, timed here, and (``result``, where
        ``hand_back``) what its last timed call returned, for the harness to
        judge (suites/bench.py's time_cell)."""
        from adjointbench.suites.bench import time_cell
        from adjointbench.suites.results import Record

        record, result = time_cell(cell, self.impl, Record.for_cell(cell, "error"), hand_back)
        return {**asdict(record), "result": result}
