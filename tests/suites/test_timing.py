"""The timing core: what it excludes, what it synchronises, how it samples."""

import os
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from adjointbench.impls.protocol import Prepared
from adjointbench.suites import environment, threads, timing
from adjointbench.suites.timing import MIN_ROUNDS, MIN_SAMPLE_S, calibrate, time_operation, timer_overhead


class FakeAsync:
    """run() dispatches and returns at once; only wait() does the work."""

    def __init__(self, first_call_s=0.0):
        self.calls = self.waits = 0
        self.first_call_s = first_call_s

    def prepare(self):
        return Prepared(run=self.run, wait=self.wait)

    def run(self):
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.first_call_s)  # compilation on the first call
        return self.calls

    def wait(self, token):
        self.waits += 1
        time.sleep(1e-4)  # the device finishing


def test_every_timed_call_waits_for_its_result():
    device = FakeAsync()
    timing = time_operation(device.prepare, budget_s=0.01)
    assert device.waits == device.calls
    # the work happens in wait(), so it must be in the median
    assert timing.median_s >= 1e-4


def test_without_a_wait_of_its_own_a_jax_result_is_waited_for():
    """A plug-in that returns JAX arrays and leaves ``wait`` to its default
    is timed to its results (nested in tuples and dicts), not to its dispatch."""
    jax = pytest.importorskip("jax")
    x = jax.numpy.ones((1000, 1000))
    cube = jax.jit(lambda a: a @ a @ a)
    cube(x).block_until_ready()  # compiled
    assert not cube(x).is_ready()  # dispatched only: what a timer would stop at
    result = timing.synchronised(Prepared(run=lambda: (cube(x), {"k": [cube(x)]})))()
    assert result[0].is_ready() and result[1]["k"][0].is_ready()


def test_a_wait_that_returns_before_the_result_is_computed_is_made_to_wait():
    """A plug-in whose own ``wait`` does nothing is caught at warm-up (its
    JAX result is not ready when the wait returns) and timed with the
    harness's wait on every array; a right wait is left alone."""
    jax = pytest.importorskip("jax")
    x = jax.numpy.ones((1000, 1000))
    cube = jax.jit(lambda a: a @ a @ a)
    cube(x).block_until_ready()  # compiled
    forgetful = timing.warm_up(lambda: Prepared(run=lambda: (cube(x),), wait=lambda r: None),
                               budget_s=0.01)
    assert forgetful.early_waits >= 1
    assert forgetful.call()[0].is_ready()  # timed calls now end when the work does
    right = timing.warm_up(lambda: Prepared(run=lambda: (cube(x),), wait=jax.block_until_ready),
                           budget_s=0.01)
    assert right.early_waits == 0 and right.prepared.wait is jax.block_until_ready


def test_a_cuda_tensor_whose_stream_is_busy_is_unready(monkeypatch):
    from adjointbench.impls.protocol import unready

    busy = {"cuda:0": False, "cuda:1": True}  # query(): whether the stream's work is done
    fake_torch = type(sys)("torch")
    stream = lambda device: type("Stream", (), {"query": lambda self: busy[device]})()
    fake_torch.cuda = type("cuda", (), {"current_stream": staticmethod(stream)})
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    tensor = lambda device: type("Tensor", (), {"is_cuda": True, "device": device})()
    on_cpu = type("Tensor", (), {"is_cuda": False, "device": "cpu"})()
    assert unready((on_cpu, {"w": [tensor("cuda:0")]}))
    assert not unready((on_cpu, tensor("cuda:1"), np.ones(2)))


def test_a_bench_record_tells_of_a_wait_that_returned_too_early():
    """End to end: the built-in jax implementation with a ``wait`` that does
    nothing is timed like the built-in (its jvp at least its primal), and
    its record says why."""
    pytest.importorskip("jax")
    from adjointbench.impls.jax import implementation as jax_rules
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    class NoWait:
        name = "no_wait"

        def devices(self):
            return ("cpu",)

        def supports(self, problem, op, method=None):
            return jax_rules.supports(problem, op)

        def prepare(self, task):
            prepared = jax_rules.prepare(task)
            return Prepared(run=prepared.run, to_numpy=prepared.to_numpy, wait=lambda r: None)

    record = run_cell(Cell("matmul", "no_wait", "jvp", 512, suite="bench", budget_s=0.05),
                      impl=NoWait())
    assert record.outcome == "ok" and record.early_waits >= 1
    assert record.timing_warning.startswith("wait() returned before the result was computed")
    assert record.ratio_to_primal > 1.2  # a matmul's jvp is two of them, dispatch-timed ~1


def test_a_bench_record_tells_of_work_deferred_to_to_numpy():
    """End to end: numpy's rules whose run() returns a thunk that to_numpy
    calls are timed at nothing; the record carries to_numpy's time and says
    the figures miss the work. The eager rules, on the same cell, are not
    warned."""
    from adjointbench.impls.numpy import NumpyImplementation, implementation as numpy_rules
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    class Deferring(NumpyImplementation):
        name = "deferring"

        def prepare(self, task):
            prepared = super().prepare(task)
            return Prepared(run=lambda: prepared.run, to_numpy=lambda thunk: thunk())

    cell = Cell("matmul", "deferring", "jvp", 512, suite="bench", budget_s=0.05)
    deferred, eager = run_cell(cell, impl=Deferring()), run_cell(cell, impl=numpy_rules)
    assert deferred.outcome == eager.outcome == "ok"
    assert deferred.to_numpy_s > 10 * deferred.time_median_s  # the two products, untimed
    assert deferred.timing_warning.startswith("to_numpy() took ")
    assert "the work is done in to_numpy, which is not timed" in deferred.timing_warning
    assert eager.to_numpy_s < eager.time_median_s
    assert "to_numpy" not in (eager.timing_warning or "")


def test_a_gradient_cell_tells_of_work_deferred_to_to_numpy(oracle):
    """Gradient cells are timed too (the report's cost against P): a method
    whose run() returns a thunk that to_numpy computes (here with 2 ms of
    work) carries the same warning, and the eager method none."""
    from adjointbench.impls.numpy import NumpyImplementation, implementation as numpy_rules
    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.runner import run_cell

    class Deferring(NumpyImplementation):
        name = "deferring"

        def prepare(self, task):
            prepared = super().prepare(task)

            def compute(thunk):
                time.sleep(2e-3)  # the work that run() should have done
                return thunk()
            return Prepared(run=lambda: prepared.run, to_numpy=compute)

    [cell] = plan_cells(["deferring"], ["linear_system"], methods=["adjoint"], dtypes=["float64"])
    deferred = run_cell(cell, oracle, impl=Deferring())
    eager = run_cell(replace(cell, impl="numpy"), oracle, impl=numpy_rules)
    assert deferred.outcome == eager.outcome == "ok"
    assert deferred.to_numpy_s >= 2e-3 and "the work is done in to_numpy" in deferred.timing_warning
    assert eager.to_numpy_s < 1e-4 and eager.timing_warning is None

def test_a_gradient_cell_tells_of_a_wait_that_returned_too_early(oracle):
    """Gradient cells are warmed up by the same core: a method whose result is
    a JAX array still being computed when its (empty) wait returns is timed
    with the harness's wait, and its record counts and says so."""
    jax = pytest.importorskip("jax")
    from adjointbench.impls.numpy import NumpyImplementation
    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.runner import run_cell

    big = jax.numpy.ones((1000, 1000), dtype=jax.numpy.float32)
    cube = jax.jit(lambda a: a @ a @ a)
    cube(big).block_until_ready()  # compiled

    class Dispatching(NumpyImplementation):
        name = "dispatching"

        def prepare(self, task):
            prepared = super().prepare(task)
            # the right gradient, behind 20-60 ms of dispatched work
            run = lambda: (0 * cube(big)[0, :3].astype(np.float64) + prepared.run()[0],)  # noqa: E731
            return Prepared(run=run, to_numpy=lambda r: (np.asarray(r[0]),), wait=lambda r: None)

    jax.config.update("jax_enable_x64", True)
    [cell] = plan_cells(["dispatching"], ["linear_system"], methods=["adjoint"],
                        dtypes=["float64"])
    record = run_cell(cell, oracle, impl=Dispatching())
    assert record.outcome == "ok" and record.early_waits >= 1
    assert record.timing_warning.startswith("wait() returned before the result was computed")
    assert record.time_median_s > 5e-3  # the cube's time, not the dispatch's


def test_a_conversion_is_judged_against_the_timed_call_and_a_floor():
    from adjointbench.suites.bench import DEFERRED_FLOOR_S, timing_warning

    fields = {"time_median_s": 1e-3, "time_iqr_s": 1e-5, "ratio_to_primal": 2.0,
              "ratio_q1": 1.9, "ratio_q3": 2.1}
    assert timing_warning({**fields, "to_numpy_s": 4e-3}, "jvp").startswith(
        "to_numpy() took 4 ms against 1 ms per timed call")
    assert timing_warning({**fields, "to_numpy_s": 2e-3}, "jvp") is None  # a copy may cost that
    assert timing_warning({**fields, "to_numpy_s": None}, "jvp") is None  # off the CPU
    tiny = {**fields, "time_median_s": 1e-7, "time_iqr_s": 1e-9}
    assert timing_warning({**tiny, "to_numpy_s": DEFERRED_FLOOR_S / 2}, "jvp") is None

def test_without_a_wait_of_its_own_a_cuda_tensor_is_synchronised(monkeypatch):
    synchronised = []
    fake_torch = type(sys)("torch")
    fake_torch.cuda = type("cuda", (), {"synchronize": staticmethod(synchronised.append)})
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    tensor = type("Tensor", (), {"is_cuda": True, "device": "cuda:1"})()
    on_cpu = type("Tensor", (), {"is_cuda": False, "device": "cpu"})()
    timing.synchronised(Prepared(run=lambda: (on_cpu, tensor, np.ones(2))))()
    assert synchronised == ["cuda:1"]


def test_compilation_is_timed_apart_from_the_median():
    device = FakeAsync(first_call_s=0.05)
    timing = time_operation(device.prepare, budget_s=0.01)
    assert timing.compile_s >= 0.05
    assert timing.median_s < timing.compile_s / 10


def test_preparation_counts_as_compilation():
    def prepare():
        time.sleep(0.03)
        return Prepared(run=lambda: None)
    assert time_operation(prepare, budget_s=0.01).compile_s >= 0.03


def test_samples_are_calibrated_to_the_timer(monkeypatch):
    """A call far below the timer's resolution is repeated until a sample is
    long enough. A fake clock that each call advances by 100 ns makes this
    exact: a loaded machine cannot stall the calibration."""
    now = [0.0]
    monkeypatch.setattr(timing, "clock", lambda: now[0])
    tick = lambda: now.__setitem__(0, now[0] + 1e-7)
    result = time_operation(lambda: Prepared(run=tick), budget_s=0.01)
    assert result.number > 1
    assert result.number * result.median_s >= MIN_SAMPLE_S / 4  # a sample far above resolution
    assert result.median_s == pytest.approx(1e-7)
    assert result.rounds >= MIN_ROUNDS and result.iqr_s >= 0


def test_calibration_from_a_predicted_count_finds_the_same_count_in_fewer_calls(monkeypatch):
    """With a fake clock (each call 7 us): from 1, ten trial samples (1023
    calls) find 512; predicted from one call's time, the same 512 after one
    trial of 256 and one of 512, and a call that was 10x slower alone (a
    first call) only starts the doubling lower."""
    now, calls = [0.0], [0]
    monkeypatch.setattr(timing, "clock", lambda: now[0])

    def call():
        now[0] += 7e-6
        calls[0] += 1
    for one_call_s, expected_calls in ((None, 1023), (7e-6, 768), (7e-5, 1008)):
        calls[0] = 0
        assert calibrate(call, MIN_SAMPLE_S, one_call_s) == 512
        assert calls[0] == expected_calls


def test_slow_calls_are_timed_one_at_a_time():
    assert calibrate(lambda: time.sleep(MIN_SAMPLE_S)) == 1


def test_median_is_the_work_per_call(monkeypatch):
    """With a fake clock that each call advances by exactly its work, the
    median per call is that work, whatever the calibration chose."""
    now = [0.0]
    monkeypatch.setattr(timing, "clock", lambda: now[0])

    def work(seconds):
        return lambda: Prepared(run=lambda: now.__setitem__(0, now[0] + seconds))
    for seconds in (1e-6, 1e-3, 0.3):
        result = time_operation(work(seconds), budget_s=0.05)
        assert result.median_s == pytest.approx(seconds) and result.iqr_s == pytest.approx(0, abs=1e-12)


def test_a_slow_call_is_timed_in_four_calls_and_checked_against_the_last(monkeypatch):
    """A call slower than the budget: the compiling call, the warm-up call
    (the first sample) and two more samples; the last result is the last
    timed call's, not one more call's."""
    now, calls = [0.0], []
    monkeypatch.setattr(timing, "clock", lambda: now[0])

    def run():
        now[0] += 0.3 + 0.1 * len(calls)  # 0.3, 0.4, 0.5, 0.6 s
        calls.append(None)
        return len(calls)
    result = time_operation(lambda: Prepared(run=run), budget_s=0.05, min_rounds=3)
    assert len(calls) == 4 and result.rounds == 3
    assert result.result == 1 and result.last_result == 4
    assert result.median_s == pytest.approx(0.5)  # of the 0.4, 0.5 and 0.6 s calls
    assert result.compile_s == pytest.approx(0.3)


def test_timer_overhead_is_measured_per_call():
    assert 0 < timer_overhead(budget_s=0.01) < 1e-4


def test_thread_environment_covers_every_pool():
    env = threads.thread_environment(3)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert "XLA_FLAGS" not in env  # XLA has no setting for 3
    assert "intra_op_parallelism_threads=1" in threads.thread_environment(1)["XLA_FLAGS"]
    assert threads.thread_environment(None) == {}
    with pytest.raises(ValueError, match="at least 1"):
        threads.thread_environment(0)


def test_limit_threads_applies_to_blas_and_torch():
    code = ("import torch; from suites.threads import limit_threads, blas_threads;"
            "limit_threads(1); print(blas_threads(), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_timings_taken_in_this_process_get_the_runs_threads_and_give_them_back():
    """pytest-benchmark's suite times in the test process: within
    threads_of_a_run its pools have bench's one thread (or what
    OMP_NUM_THREADS asks for), after it their defaults again (two here)."""
    code = ("import os, torch; from adjointbench.suites.threads import blas_threads, "
            "threads_of_a_run as run\n"
            "before = (torch.get_num_threads(), blas_threads())\n"
            "with run() as n: print(n, torch.get_num_threads(), blas_threads(), "
            "os.environ['OMP_NUM_THREADS'])\n"
            "print((torch.get_num_threads(), blas_threads()) == before, "
            "'OMP_NUM_THREADS' in os.environ)\n"
            "os.environ['OMP_NUM_THREADS'] = '2'\n"
            "with run() as n: print(n, torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout.splitlines()
    assert out == ["1 1 1 1", "True False", "2 2"]


@pytest.mark.parametrize("outside", [{}, {"OMP_NUM_THREADS": "2"}], ids=["default", "omp2"])
def test_a_torch_first_loaded_within_a_runs_threads_starts_afresh_after_it(outside):
    """pytest-benchmark's module imports torch inside the scope, where it
    reads OMP_NUM_THREADS=1: after the scope it gets the count a torch
    loaded outside starts with (asked of a fresh process here), not 1."""
    env = {**{k: v for k, v in os.environ.items() if k not in threads.THREAD_VARIABLES},
           **outside}
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True, env=env).stdout.split()
    code = ("from adjointbench.suites.threads import threads_of_a_run as run\n"
            "with run(1):\n    import torch\n    print(torch.get_num_threads())\n"
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    assert out == ["1", *fresh]


class Workload:
    """An implementation of scalar_sin (sin x) whose operations cost a known
    multiple of the primal: ``vjp`` repeats the primal's work three times,
    ``jvp`` once, and ``jacrev`` skips it (a result computed in prepare, the
    bug to flag). Its results are right: the bench judges them."""

    name = "workload"
    COST = {"primal": 1, "vjp": 3, "jvp": 1}

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op, method=None):
        return op in ("primal", "vjp", "jvp", "jacrev")

    def prepare(self, task):
        grid = np.linspace(0.0, 1.0, 20_000)
        work = lambda: float(np.sum(np.sin(grid) ** 2))
        x = task.inputs["x"]
        if task.op == "jacrev":
            cached = np.cos(x).reshape(1, 1)
            return Prepared(run=lambda: cached)
        repeats = self.COST[task.op]
        value = {"primal": lambda: np.sin(x), "jvp": lambda: np.cos(x) * task.tangent["x"],
                 "vjp": lambda: (np.cos(x) * task.cotangent,)}[task.op]

        def run():
            for _ in range(repeats):
                work()
            return value()
        return Prepared(run=run)


def _bench(op: str):
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    return run_cell(Cell("scalar_sin", "workload", op, 1, budget_s=0.05, suite="bench"),
                    impl=Workload())


def test_ratio_to_primal_is_the_median_of_paired_ratios():
    vjp = _bench("vjp")
    assert vjp.outcome == "ok", vjp.message
    assert vjp.ratio_q1 <= vjp.ratio_to_primal <= vjp.ratio_q3
    assert 2.0 < vjp.ratio_to_primal < 4.5  # three times the primal's work, paired
    assert vjp.rounds >= MIN_ROUNDS and vjp.primal_median_s > 0
    primal = _bench("primal")
    assert primal.ratio_to_primal == primal.ratio_q1 == primal.ratio_q3 == 1.0


def test_an_operation_cheaper_than_its_forward_pass_is_flagged():
    jacrev = _bench("jacrev")
    assert jacrev.outcome == "ok" and jacrev.ratio_to_primal < 1
    assert "includes the forward pass" in jacrev.timing_warning
    assert "forward pass" not in (_bench("vjp").timing_warning or "")  # 3x its primal


def test_a_ratio_within_the_pairs_resolution_of_one_is_not_cheaper_than_the_forward():
    """Calls of equal cost pair a few percent either side of 1 (jax's VJP of
    linear_solve, which runs the forward's LU: 0.99x, quartiles 0.976-0.992):
    not a figure to disbelieve. Well below 1 it is, for an operation that
    includes the forward pass, and never for a JVP, which does not."""
    from adjointbench.suites.bench import missed_work, timing_warning

    fields = {"time_median_s": 1e-3, "time_iqr_s": 1e-5, "to_numpy_s": None}
    level = {**fields, "ratio_to_primal": 0.99, "ratio_q1": 0.976, "ratio_q3": 0.992}
    assert timing_warning(level, "vjp") is None and not missed_work(level, "vjp")
    below = {**fields, "ratio_to_primal": 0.9, "ratio_q1": 0.88, "ratio_q3": 0.92}
    assert "vjp timed at 0.90x its primal" in timing_warning(below, "vjp")
    assert missed_work(below, "vjp")
    assert timing_warning(below, "jvp") is None and not missed_work(below, "jvp")


class CachedPrimal(Workload):
    """Workload's, with the primal's result computed once, in prepare or at
    the first call, and the very same array handed back at every call."""

    name = "cached"

    def __init__(self, when: str):
        self.when = when

    def prepare(self, task):
        honest = super().prepare(task)
        if task.op != "primal":
            return honest
        kept = [honest.run()] if self.when == "prepare" else []
        return Prepared(run=lambda: kept[0] if kept else kept.append(honest.run()) or kept[0])


@pytest.mark.parametrize("when", ["prepare", "first call"])
def test_a_result_cached_before_the_timed_calls_is_flagged(when):
    """A primal timed as a lookup, named in its own record and in those of
    the operations timed against it (their ratios are to a lookup)."""
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    for op in ("primal", "vjp"):
        record = run_cell(Cell("scalar_sin", "cached", op, 1, budget_s=0.05, suite="bench"),
                          impl=CachedPrimal(when))
        assert record.outcome == "ok" and record.kept_results == 1, record
        assert "returned the very arrays it had returned before" in record.timing_warning
    honest = _bench("primal")
    assert honest.kept_results == 0 and "very arrays" not in (honest.timing_warning or "")


def test_an_operation_that_hands_back_what_it_was_given_caches_nothing():
    """The VJP of x + y is its cotangent, twice: no work to time, rightly."""
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    record = run_cell(Cell("scalar_add", "numpy", "vjp", 1, budget_s=0.05, suite="bench"))
    assert record.outcome == "ok" and record.kept_results == 0, record
    assert "very arrays" not in (record.timing_warning or "")


def test_a_noisy_spread_is_flagged():
    from adjointbench.suites.bench import timing_warning

    fields = {"time_median_s": 1e-3, "time_iqr_s": 6e-4, "ratio_to_primal": 2.0,
              "ratio_q1": 1.9, "ratio_q3": 2.1}
    assert "time IQR 60% of its median" in timing_warning(fields, "jvp")
    fields.update(time_iqr_s=1e-5)
    assert timing_warning(fields, "jvp") is None


def test_a_drift_between_rounds_is_named_as_such():
    from adjointbench.suites.bench import round_drift, timing_warning

    quick, slow = [1e-3] * 20, [1.5e-3] * 20  # each round steady, the second 1.5x slower
    assert round_drift(quick + slow, [20, 20]) == pytest.approx(1.5)
    assert round_drift(quick + slow, [40]) is None and round_drift(quick, None) is None
    pooled = np.array(quick + slow)
    q1, q3 = np.percentile(pooled, [25, 75])
    fields = {"time_median_s": float(np.median(pooled)), "time_iqr_s": float(q3 - q1),
              "ratio_to_primal": 2.0, "ratio_q1": 1.95, "ratio_q3": 2.05,
              "samples_s": quick + slow, "samples_per_round": [20, 20]}
    warning = timing_warning(fields, "jvp")
    assert "1.50x apart" in warning and "drifted between rounds" in warning
    steady = {**fields, "samples_per_round": None}  # one round: the old advice
    assert "larger --budget" in timing_warning(steady, "jvp")


def test_a_jax_worker_runs_xla_on_one_thread():
    pytest.importorskip("jax")
    env = {**os.environ, **threads.thread_environment(1)}
    code = ("import jax, jax.numpy as jnp; jnp.ones(4).block_until_ready();"
            "import os; print(os.environ['XLA_FLAGS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert "xla_cpu_multi_thread_eigen=false" in out.stdout  # jax started with the flag


def test_the_adjoint_benchmark_prints_paired_ratios(capsys):
    from adjointbench.suites import harness

    harness.adjoint(budget_s=0.02)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(harness.ADJOINT_SIZES)
    for line in lines:
        ratio = float(line.split()[1])
        assert ratio > 1.0, line  # a gradient includes its forward pass


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="no /proc/stat on this system")
def test_the_cpu_of_the_harness_workers_is_not_counted_as_other_work():
    """A reaped child's CPU (as a sweep's workers, closed before the sweep's
    environment is finished) is the harness's own: subtracted from the
    machine's busy time, whatever else the machine was doing."""
    since = environment.cpu_mark()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 1.0\n"
                    "while time.process_time() < end: pass"], check=True)
    others = environment.other_cores_busy(since)
    now = environment.cpu_mark()
    wall = now["wall"] - since["wall"]
    assert now["own"] - since["own"] >= 0.9  # the child's second of CPU is ours
    machine_cores = (now["busy"] - since["busy"]) / wall
    assert 0.0 <= others <= machine_cores - 0.8 / wall + 0.05  # and not the others'


def test_a_busy_machine_is_judged_by_other_processes_cpu_not_the_load_average():
    """The load average still counts, for a minute, the workers of a sweep
    that just ended (run's check before its bench); the CPU the other
    processes used during the run does not."""
    after_our_check = {"cpu_count": 2, "load_before": [1.9, 1.0, 0.5], "load_after": [1.4, 1, 1]}
    assert environment.machine_was_loaded({**after_our_check, "other_cores_busy": 0.1}) is None
    busy = environment.machine_was_loaded({**after_our_check, "other_cores_busy": 0.98})
    assert busy and "0.98 of its 2 cores" in busy  # a second core kept busy beside a bench
    assert environment.machine_was_loaded(after_our_check)  # older results: the load average
    assert environment.machine_was_loaded({"cpu_count": 2, "load_before": [0.2, 0, 0],
                                           "load_after": [1.3, 0, 0]}) is None


def test_the_harness_benchmarks_run_commands_with_python_bytecode_caching(monkeypatch):
    """As a user's shell runs them: a sandbox's PYTHONDONTWRITEBYTECODE would
    make every timed command compile the project from source."""
    from adjointbench.suites import harness

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("ADJOINTBENCH_SOMETHING_ELSE", "kept")
    environment = harness.user_environment()
    assert "PYTHONDONTWRITEBYTECODE" not in environment
    assert environment["ADJOINTBENCH_SOMETHING_ELSE"] == "kept"
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"  # this process's own is untouched
    written = subprocess.run([sys.executable, "-c", "import sys; print(sys.dont_write_bytecode)"],
                             env=environment, capture_output=True, text=True, check=True)
    assert written.stdout.strip() == "False"


def _two_cpus() -> bool:
    return len(getattr(os, "sched_getaffinity", lambda pid: ())(0)) >= 2


def _skip_unless_two_cores_free() -> None:
    """Skip when two threads of matrix products cannot keep two cores busy
    now (other work on the machine): then nothing can show more than one."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    x = np.linspace(0.0, 1.0, 10**5)
    with threadpool_limits(1), ThreadPoolExecutor(2) as pool:
        meter = timing.Cores()
        meter.sample(lambda: [f.result() for f in [pool.submit(lambda: [np.sin(x) for _ in range(20)])
                                                   for _ in range(2)]], 5)
    if meter.used < 1.8:  # the tests' warning needs above 1.5: room for the load to move
        pytest.skip(f"the machine is busy: two threads kept only {meter.used:.2f} cores busy")


@pytest.mark.skipif(not _two_cpus(), reason="needs two CPUs to tell one core from more")
def test_a_bench_record_tells_of_threads_the_implementation_started(monkeypatch):
    """numpy's rules whose run() also runs its work in two threads of its own
    keep two cores busy where the run allows one: the record measures it and
    says its time is not comparable. The rules run once per call are not
    warned. Elementwise work, which holds no lock across threads (OpenBLAS
    at one thread let two matrix products overlap only in part: 1.34 cores).
    Here the samples are not confined (no threads in the environment)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    _skip_unless_two_cores_free()
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from adjointbench.impls.numpy import NumpyImplementation, implementation as numpy_rules
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    class Threaded(NumpyImplementation):
        name = "threaded"

        def prepare(self, task):
            prepared = super().prepare(task)
            pool = ThreadPoolExecutor(2)

            def run():  # the products in two threads at once (numpy lets go of the GIL)
                return [f.result() for f in [pool.submit(prepared.run) for _ in range(2)]][0]
            return Prepared(run=run, to_numpy=prepared.to_numpy)

    cell = Cell("broadcast_sin", "threaded", "jvp", 10**5, suite="bench", budget_s=0.1)
    with threadpool_limits(1):
        threaded = run_cell(cell, impl=Threaded(), threads=1)
        single = run_cell(replace(cell, impl="numpy"), impl=numpy_rules, threads=1)
    assert threaded.outcome == single.outcome == "ok"
    assert threaded.cores > 1.5, threaded.cores
    assert "kept" in threaded.timing_warning and "cores busy while timed with 1 thread(s)" \
        in threaded.timing_warning
    assert single.cores < 1.3 and "cores busy" not in (single.timing_warning or "")


@pytest.mark.skipif(not _two_cpus(), reason="needs two CPUs to narrow them to one")
@pytest.mark.parametrize("where", [[], ["--in-process"]])
def test_a_sweep_times_a_plug_in_that_ignores_its_threads_on_the_runs_cpus(
        where, plugins_on_path, tmp_path):
    """End to end, in workers and in this process: tests/plugins/threaded.py
    runs each call twice at once in threads of its own. With --threads 1 its
    samples run on one CPU, where its threads take turns: its time is one
    CPU's, like every other cell's (unconfined it kept 1.9 cores busy)."""
    from adjointbench.cli import main
    from adjointbench.suites.results import ResultsFile

    assert main(["bench", "--impl", "threaded:implementation", "--problem", "broadcast_sin",
                 "--size", "100000", "--op", "jvp", "--rounds", "1", "--budget", "0.2",
                 "--threads", "1", "--quiet", "--out", str(tmp_path), *where]) == 0
    (record,), _ = ResultsFile(tmp_path).read()
    assert record.outcome == "ok" and record.cores < 1.3, record.cores
    assert "cores busy" not in (record.timing_warning or "")


@pytest.mark.skipif(not _two_cpus(), reason="needs two CPUs to narrow them to one")
def test_threads_a_plug_in_started_before_the_samples_run_on_the_runs_cpu(monkeypatch):
    """With one thread asked for (the run's environment), the paired samples
    run on one CPU, the pool a plug-in started in prepare() with them; the
    warm-up and what follows the cell run on all of them."""
    from concurrent.futures import ThreadPoolExecutor

    from adjointbench.impls.numpy import NumpyImplementation
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    seen = []

    class Pooled(NumpyImplementation):
        name = "pooled"

        def prepare(self, task):
            prepared, pool = super().prepare(task), ThreadPoolExecutor(2)

            def work():
                seen.append(len(os.sched_getaffinity(0)))
                return prepared.run()

            def run():
                return [f.result() for f in [pool.submit(work) for _ in range(2)]][0]
            return Prepared(run=run, to_numpy=prepared.to_numpy)

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    everything = os.sched_getaffinity(0)
    record = run_cell(Cell("broadcast_sin", "pooled", "jvp", 1000, suite="bench",
                           budget_s=0.02), impl=Pooled(), threads=1)
    assert record.outcome == "ok", record.message
    assert seen[0] == len(everything) and seen[-1] == 1 and set(seen) == {len(everything), 1}
    assert record.cores < 1.3, record.cores
    assert os.sched_getaffinity(0) == everything


@pytest.mark.skipif(not _two_cpus(), reason="needs two CPUs to tell one core from more")
def test_a_bench_record_counts_the_work_of_processes_the_call_starts(monkeypatch):
    """A run() that hands its work to two child processes at once (here, 50
    ms of CPU each) and waits keeps two cores busy, which this process's own
    CPU time does not show: the children's are counted too. (With the run's
    threads in the environment the samples are confined to them, and
    children started then share them: their time is one CPU's.)"""
    _skip_unless_two_cores_free()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    import subprocess

    from adjointbench.impls.numpy import NumpyImplementation
    from adjointbench.suites.cells import Cell
    from adjointbench.suites.runner import run_cell

    busy = ("import time\nstart = time.process_time()\n"
            "while time.process_time() - start < 0.05:\n    pass")

    class Forking(NumpyImplementation):
        name = "forking"

        def prepare(self, task):
            prepared = super().prepare(task)

            def run():
                helpers = [subprocess.Popen([sys.executable, "-S", "-c", busy]) for _ in range(2)]
                for helper in helpers:
                    helper.wait()
                return prepared.run()
            return Prepared(run=run, to_numpy=prepared.to_numpy)

    record = run_cell(Cell("matvec", "forking", "jvp", 8, suite="bench", budget_s=0.2),
                      impl=Forking(), threads=1)
    assert record.outcome == "ok"
    assert record.cores > 1.5, record.cores
    assert "cores busy while timed with 1 thread(s)" in record.timing_warning
    # waiting for its children is not waiting: their CPU counts on the less busy side too
    assert record.least_cores > 1.5 and "kept a CPU busy only" not in record.timing_warning


def test_cores_are_judged_against_the_runs_threads_with_a_margin():
    from adjointbench.suites.bench import cores_warning
    from adjointbench.suites.timing import CORES_MARGIN

    assert cores_warning({"cores": 1 + CORES_MARGIN, "threads": 1}, "jvp") is None
    assert "jvp kept 1.60 cores busy" in cores_warning({"cores": 1.6, "threads": 1}, "jvp")
    # the run's threads first; the pools' count where the run's is not known
    assert cores_warning({"cores": 1.6, "threads": 4}, "jvp", threads=1) is not None
    assert cores_warning({"cores": 1.6, "threads": 2}, "jvp") is None
    assert cores_warning({"cores": None, "threads": 1}, "jvp") is None
    # off the CPU a host thread may spin while it waits for the device
    assert cores_warning({"cores": 1.9, "threads": 1, "device": "cuda"}, "jvp") is None


@pytest.mark.skipif(not _two_cpus(), reason="needs two CPUs to narrow them to one")
def test_pools_start_on_the_runs_threads_and_threads_run_anywhere_after():
    """Within pools_sized_to(1) a pool sized from the CPUs sees one; after it,
    every thread of the process, those started within too, may use them all."""
    import threading

    everything = os.sched_getaffinity(0)
    seen, release = {}, threading.Event()

    def started_within():
        seen["within"] = os.sched_getaffinity(0)
        release.wait()
        seen["after"] = os.sched_getaffinity(0)

    with threads.pools_sized_to(1):
        assert len(os.sched_getaffinity(0)) == 1
        helper = threading.Thread(target=started_within)
        helper.start()
        while "within" not in seen:
            time.sleep(1e-3)
    release.set()
    helper.join()
    assert len(seen["within"]) == 1
    assert seen["after"] == os.sched_getaffinity(0) == everything
    with threads.pools_sized_to(len(everything)):  # nothing to narrow
        assert os.sched_getaffinity(0) == everything



def test_calls_that_kept_a_cpu_busy_less_than_half_the_time_are_told():
    """A CPU cell's figure is judged by the fewer of the cores its operation
    and its primal kept busy (a gradient cell's one call: its cores), with
    the CPU of the processes the calls started counted in; off the CPU a host
    thread waits for the device, rightly."""
    from adjointbench.suites.bench import call_warning, timing_warning, waited
    from adjointbench.suites.timing import IDLE_BELOW

    fields = {"time_median_s": 1e-3, "time_iqr_s": 1e-5, "to_numpy_s": None,
              "ratio_to_primal": 1.2, "ratio_q1": 1.19, "ratio_q3": 1.21, "cores": 1.0}
    assert timing_warning({**fields, "least_cores": IDLE_BELOW}, "jvp") is None
    told = timing_warning({**fields, "least_cores": 0.3}, "jvp")
    assert "jvp or its primal kept a CPU busy only 30% of the time it was timed" in told
    assert timing_warning({**fields, "least_cores": 0.3, "device": "cuda"}, "jvp") is None
    assert waited({"cores": 0.2}) and not waited({"cores": None}) and not waited({})
    assert "gradient kept a CPU busy only 20%" in call_warning({"cores": 0.2}, "gradient")


def _skip_if_this_cpu_is_shared() -> None:
    """Skip when a loop of this process keeps a CPU busy less than 80 % of
    the time (other work on the machine): then right calls may wait too."""
    x = np.linspace(0.0, 1.0, 10**4)
    meter = timing.Cores()
    meter.sample(lambda: [np.sin(x) for _ in range(50)], 50)
    if meter.used < 0.8:
        pytest.skip(f"the machine is busy: a loop kept only {meter.used:.2f} of a CPU busy")


def test_a_sweep_tells_of_a_primal_that_waits(plugins_on_path, tmp_path):
    """End to end, in workers and over two rounds: tests/plugins/waiting.py's
    primal sleeps twice as long as it computes, so its JVP's ratio to it
    looks three times cheaper than it is. Both records say the calls waited;
    numpy's, the same rules without the sleep, do not."""
    from adjointbench.cli import main
    from adjointbench.suites.results import ResultsFile
    from adjointbench.suites.timing import IDLE_BELOW

    _skip_if_this_cpu_is_shared()
    assert main(["bench", "--impl", "waiting:implementation,numpy", "--problem", "broadcast_sin",
                 "--size", "100000", "--op", "primal,jvp", "--rounds", "2", "--budget", "0.1",
                 "--quiet", "--out", str(tmp_path)]) == 0
    records, _ = ResultsFile(tmp_path).read()
    by = {(r.impl.split(":")[0], r.op): r for r in records}
    for op in ("primal", "jvp"):
        waiting, numpy = by["waiting", op], by["numpy", op]
        assert waiting.outcome == numpy.outcome == "ok"
        assert waiting.least_cores < IDLE_BELOW < numpy.least_cores, (waiting, numpy)
        assert "kept a CPU busy only" in waiting.timing_warning
        assert "kept a CPU busy only" not in (numpy.timing_warning or "")
    assert by["waiting", "jvp"].ratio_to_primal < 0.6 * by["numpy", "jvp"].ratio_to_primal


@pytest.mark.skipif(not _two_cpus(), reason="needs two CPUs to narrow them to one")
def test_timed_samples_keep_every_thread_on_the_runs_cpus_and_release_them_after():
    """Within confined_to(1), threads started before (a pool's, XLA's) and
    within run on the one CPU the caller was on; after, every thread on all."""
    import threading

    everything = os.sched_getaffinity(0)
    seen, go, done = {}, threading.Event(), threading.Event()

    def started_before():
        go.wait(60)
        seen["before"] = os.sched_getaffinity(0)
        done.wait(60)
        seen["after"] = os.sched_getaffinity(0)

    earlier = threading.Thread(target=started_before, daemon=True)
    earlier.start()
    try:
        with threads.confined_to(1):
            confined = os.sched_getaffinity(0)
            within = threading.Thread(
                target=lambda: seen.setdefault("within", os.sched_getaffinity(0)))
            within.start()
            within.join()
            go.set()
            while "before" not in seen:
                time.sleep(1e-3)
    finally:
        go.set()
        done.set()
        earlier.join(60)
    assert len(confined) == 1 and seen["before"] == seen["within"] == confined
    assert seen["after"] == os.sched_getaffinity(0) == everything
    with threads.confined_to(None), threads.confined_to(len(everything)):  # nothing to narrow
        assert os.sched_getaffinity(0) == everything


def test_a_system_that_refuses_affinity_still_loads(monkeypatch):
    """Where setting an affinity fails (a container's policy), loading goes
    on with the pools as they come; the timings' cores still tell."""
    def refuse(pid, cpus):
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", refuse, raising=False)
    with threads.pools_sized_to(1):
        loaded = True
    assert loaded
