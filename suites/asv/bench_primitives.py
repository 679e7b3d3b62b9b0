"""asv benchmarks generated from the catalogue: one class per primitive
problem and operation, ``params`` = implementation x size.

Each class has ``time_<op>`` (one synchronised call of the prepared
operation, prepared and warmed up in ``setup`` by the timing core) and
``track_ratio_to_primal`` (the median of paired operation/primal sample
ratios, the same figure as ``adjointbench bench``'s: suites/bench.py); batched Jacobians also get
``peakmem_batched_jacobian``. An implementation that is not installed, or a
cell it does not support, raises NotImplementedError in ``setup``, which asv
records as skipped.

By default the suite is representative, so that ``asv run --quick`` takes
minutes: the problems in REPRESENTATIVE (one per family that matters for
cost), the implementations in REPRESENTATIVE_IMPLS, each problem's smallest
and largest scaling size. ``ADJOINTBENCH_ASV_FULL=1`` runs every primitive,
every known implementation and the whole scaling sweep.
"""

import contextlib
import os

from adjointbench.impls.registry import MissingDependency, known_names, load_implementation
from adjointbench.reference import problems
from adjointbench.suites import bench
from adjointbench.suites.cells import DEFAULT_BENCH_OPS, Cell, plan_cells
from adjointbench.suites.executors import LocalExecutor
from adjointbench.suites.runner import unsupported_reason
from adjointbench.suites.timing import sample_paired

FULL = os.environ.get("ADJOINTBENCH_ASV_FULL") == "1"
REPRESENTATIVE = ("broadcast_tanh", "softmax", "matmul", "linear_solve", "batched_dense")
REPRESENTATIVE_IMPLS = ("numpy", "jax", "torch")


def _where_timed(cell):
    """Where bench takes a cell's samples (its timed_on_run_cpus), in a
    package that has it: asv runs this file, the checkout's, against every
    commit it benchmarks, older ones included."""
    where = getattr(bench, "timed_on_run_cpus", None)
    return where(cell) if where else contextlib.nullcontext()


class _CatalogueBenchmark:
    """Shared set-up; subclasses set ``problem`` and ``op``."""

    problem = op = ""
    param_names = ["impl", "size"]
    timeout = 300

    def setup(self, impl, size):
        cell = Cell(self.problem, impl, self.op, size, suite="bench")
        try:
            implementation = load_implementation(impl)
        except MissingDependency as e:
            raise NotImplementedError(str(e)) from None
        reason = unsupported_reason(cell, LocalExecutor(implementation))
        if reason:
            raise NotImplementedError(reason)
        self.primal, self.warm = bench.warm_pair(cell, implementation)
        self._timed = contextlib.ExitStack()  # the samples, where bench takes them
        self._timed.enter_context(_where_timed(cell))

    def teardown(self, impl, size):
        if hasattr(self, "_timed"):
            self._timed.close()

    def track_ratio_to_primal(self, impl, size):
        return sample_paired(self.primal, self.warm).ratio

    track_ratio_to_primal.unit = "ratio"


def _time(op):
    def time_op(self, impl, size):
        self.warm.call()
    time_op.__name__ = f"time_{op}"
    return time_op


def _peakmem(self, impl, size):
    self.warm.call()


def _sizes(problem, op) -> list[int]:
    cells = plan_cells(["any"], [problem.name], [op], suite="bench", quick=not FULL)
    return sorted({c.size for c in cells})


def _benchmark_class(problem, op):
    body = {"problem": problem.name, "op": op, f"time_{op}": _time(op),
            "params": [list(known_names() if FULL else REPRESENTATIVE_IMPLS),
                       _sizes(problem, op)],
            "__module__": __name__}
    if op == "batched_jacobian":
        body["peakmem_batched_jacobian"] = _peakmem
    return type(f"{problem.name}_{op}", (_CatalogueBenchmark,), body)


for _problem in problems("primitive"):
    if not FULL and _problem.name not in REPRESENTATIVE:
        continue
    for _op in DEFAULT_BENCH_OPS:
        if _op != "batched_jacobian" or _problem.batch_input:
            _class = _benchmark_class(_problem, _op)
            globals()[_class.__name__] = _class
