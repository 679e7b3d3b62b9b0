"""The identity cells reuse the checked results of the cells before them
(suites/memo.py): fewer executions, the same verdicts, and nothing kept that
failed its checks."""

import collections
from dataclasses import replace

import numpy as np

from adjointbench.impls.numpy import implementation as numpy
from adjointbench.impls.protocol import Task
from adjointbench.suites.cells import plan_cells
from adjointbench.suites.isolation import IsolatedRunner
from adjointbench.suites.memo import ExecutionMemo, task_key
from adjointbench.suites.runner import run_cell

OPS = ["jvp", "vjp", "transpose", "linearity"]


class Counting:
    """numpy's rules, counting what is prepared; ``fail_first`` ops raise the
    first time they are prepared."""

    name = "numpy"

    def __init__(self, fail_first=()):
        self.prepared = collections.Counter()
        self.fail_first = set(fail_first)

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op, method=None):
        return numpy.supports(problem, op, method)

    def prepare(self, task):
        self.prepared[task.op] += 1
        if task.op in self.fail_first:
            self.fail_first.discard(task.op)
            raise RuntimeError(f"deliberate failure of the first {task.op}")
        return numpy.prepare(task)


def _cells(problem="softmax"):
    return plan_cells(["numpy"], [problem], OPS, ["float64"], quick=True)


def _sweep(impl, oracle, memo):
    return {(c.op, c.size): run_cell(c, oracle, impl=impl, memo=memo) for c in _cells()}


def test_identity_cells_reuse_checked_results_and_reach_the_same_verdicts(oracle):
    fresh, memoised = Counting(), Counting()
    without = _sweep(fresh, oracle, memo=None)
    memo = ExecutionMemo()
    with_memo = _sweep(memoised, oracle, memo)
    for key, record in without.items():
        assert record.outcome == "ok", record
        other = with_memo[key]
        assert (other.outcome, other.max_abs_err, other.max_rel_err, other.point) == (
            record.outcome, record.max_abs_err, record.max_rel_err, record.point), key
    sizes, points = len({c.size for c in _cells()}), _cells()[0].points
    # without: jvp 1 + transpose 1 + linearity 3 per point; vjp 1 + transpose 1
    assert fresh.prepared == {"jvp": 5 * sizes * points, "vjp": 2 * sizes * points}
    # with: transpose reuses J u and J^T w, linearity J u; its J v and J(a u + b v) are new
    assert memoised.prepared == {"jvp": 3 * sizes * points, "vjp": sizes * points}
    assert memo.hits == 3 * sizes * points


def test_an_execution_that_failed_is_run_again_by_the_next_cell(oracle):
    impl, memo = Counting(fail_first=["jvp"]), ExecutionMemo()
    records = _sweep(impl, oracle, memo)
    first_size = min(size for _, size in records)
    assert records["jvp", first_size].outcome == "error"
    assert "deliberate failure" in records["jvp", first_size].message
    # the transpose cell of that size ran its J u itself, and it held
    assert records["transpose", first_size].outcome == "ok"
    assert all(r.outcome == "ok" for (op, _), r in records.items() if op != "jvp")


def _task(**changes):
    base = Task("softmax", "jvp", {"x": np.arange(4.0)}, ("x",), tangent={"x": np.ones(4)})
    return replace(base, **changes)


def test_the_key_is_everything_the_implementation_is_handed():
    base = task_key(_task())
    assert task_key(_task()) == base  # equal content, other arrays
    changed = [_task(dtype="float32"), _task(method="unrolled"), _task(op="vjp"),
               _task(device="cuda"), _task(problem="l2_loss"),
               _task(inputs={"x": np.arange(4.0) + 1e-16 * 4}),
               _task(tangent={"x": np.ones(4) * (1 + 2**-52)}),
               _task(tangent=None, cotangent=np.ones(4)),
               _task(inputs={"x": np.arange(4.0).reshape(2, 2)})]
    keys = [task_key(t) for t in changed]
    assert base not in keys and len(set(keys)) == len(keys)


def test_the_memo_holds_one_problem_and_gives_out_copies():
    memo, calls = ExecutionMemo(), []
    run = lambda task: memo.run(task, lambda: calls.append(task) or np.arange(3.0))
    first = run(_task())
    first[0] = 99.0  # the caller's copy, not the kept result
    assert run(_task())[0] == 0.0 and len(calls) == 1 and memo.hits == 1
    run(_task(problem="l2_loss"))  # another problem: the first one's results are dropped
    run(_task())
    assert len(calls) == 3


def test_an_isolated_worker_reuses_its_checked_results(oracle):
    cells = plan_cells(["numpy"], ["matvec"], ["jvp", "vjp", "transpose"], ["float64"],
                       sizes=[2])
    with IsolatedRunner(oracle=oracle) as runner:
        records = [runner.run(c) for c in cells]
        assert [r.outcome for r in records] == ["ok"] * 3
        assert runner._memos["numpy"].hits == 2 * cells[0].points  # J u and J^T w per point
