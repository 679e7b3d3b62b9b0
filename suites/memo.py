"""Checked results reused by the later cells of one worker's sweep.

The identity cells repeat their neighbours' executions: at the same input
point a transpose cell needs the jvp cell's J u and the vjp cell's J^T w,
a linearity cell J u again, a symmetry cell the hvp cell's H u. Each
execution is prepared anew, called twice and checked for reentrancy and
purity (``_Context.execute``, suites/runner.py); an :class:`ExecutionMemo`
keeps the first result of each one that passed, keyed by everything the
implementation was handed (problem, operation, method, dtype, device and the
bytes of every input and probe), so that the same task is not run again for
another cell. It lives in the trusted process, holds copies, and gives out
copies; an execution that raised is never kept (a later cell runs it
again). Memory is bounded by one problem's results: a task of another
problem clears it (the sweep plans its cells problem by problem).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np

from adjointbench.impls.protocol import Task
from adjointbench.suites.purity import copy_arrays


def _digest_arrays(h, value: Any) -> None:
    """Feed ``value`` (nested dicts of arrays, an array, or None) into ``h``."""
    if isinstance(value, dict):
        for k in sorted(value):
            h.update(repr(k).encode())
            _digest_arrays(h, value[k])
        return
    if value is None:
        h.update(b"None")
        return
    array = np.ascontiguousarray(value)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())


def task_key(task: Task) -> str:
    """A digest of everything ``task`` hands the implementation."""
    h = hashlib.blake2b(digest_size=20)
    h.update(repr((task.problem, task.op, task.method, task.dtype, task.device,
                   tuple(task.differentiable))).encode())
    for part in (task.inputs, task.tangent, task.cotangent):
        _digest_arrays(h, part)
    return h.hexdigest()


class ExecutionMemo:
    """First results of executions that passed their reentrancy and purity
    checks, for one implementation, one problem at a time."""

    def __init__(self):
        self._problem: str | None = None
        self._results: dict[str, Any] = {}
        self.hits = 0

    def run(self, task: Task, execute: Callable[[], Any]) -> Any:
        """A copy of the kept result of the same task, else ``execute()``'s
        (the checked first result), kept if it returns."""
        key = task_key(task)  # before the call: the copies handed over are pristine
        if task.problem != self._problem:
            self._problem, self._results = task.problem, {}
        if key in self._results:
            self.hits += 1
            return copy_arrays(self._results[key])
        result = execute()
        self._results[key] = copy_arrays(result)
        return result
