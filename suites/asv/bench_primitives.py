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


def _from_threads(name: str):
    """suites/threads.py's ``name``, or None in a package without it: asv
    runs this file, the checkout's, against every commit it benchmarks,
    older ones included."""
    try:
        from adjointbench.suites import threads
    except ImportError:
        return None
    return getattr(threads, name, None)


def _threads_of_a_run():
    """This process's pools as a bench worker's, from setup to teardown: one
    thread per library, or the count ``OMP_NUM_THREADS`` asks for. asv's
    matrix sets them for the environments it builds, but not for an existing
    one (``--python=same``), where BLAS and torch took every core."""
    scoped = _from_threads("threads_of_a_run")
    return scoped() if scoped else contextlib.nullcontext()


def _pools_sized(threads):
    """Pools sized from the CPUs (XLA's) made with ``threads`` of them."""
    sized = _from_threads("pools_sized_to")
    return sized(threads) if sized else contextlib.nullcontext()


def _where_timed(cell):
    """Where bench takes a cell's samples (its timed_on_run_cpus), in a
    package that has it."""
    where = getattr(bench, "timed_on_run_cpus", None)
    return where(cell) if where else contextlib.nullcontext()


def _loaded(impl):
    try:
        return load_implementation(impl)
    except MissingDependency as e:  # asv: skipped
        raise NotImplementedError(str(e)) from None


class _CatalogueBenchmark:
    """Shared set-up; subclasses set ``problem`` and ``op``."""

    problem = op = ""
    param_names = ["impl", "size"]
    timeout = 300

    def setup(self, impl, size):
        cell = Cell(self.problem, impl, self.op, size, suite="bench")
        with contextlib.ExitStack() as timed:  # bench's threads, and where it samples
            threads = timed.enter_context(_threads_of_a_run())
            with _pools_sized(threads):
                implementation = _loaded(impl)
                reason = unsupported_reason(cell, LocalExecutor(implementation))
                if reason:
                    raise NotImplementedError(reason)
                self.primal, self.warm = bench.warm_pair(cell, implementation)
            timed.enter_context(_where_timed(cell))
            self._timed = timed.pop_all()  # until teardown

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
