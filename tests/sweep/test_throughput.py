"""The throughput suite under pytest-benchmark: problem x implementation x
operation x size, grouped by problem, operation and size.

Kept out of the default run by the ``bench`` marker. Run it with

    pytest tests/sweep/test_throughput.py -m bench --benchmark-json=results/benchmark.json

``ADJOINTBENCH_BENCH_SCALE`` picks the sizes: ``smoke`` (each problem's
smallest scaling size), ``quick`` (smallest and largest, the default) or
``full`` (the whole scaling sweep). The timing core prepares, warms up,
synchronises and calibrates each call (suites/timing.py); pytest-benchmark
repeats it. ``extra_info`` holds the primal's median, ``ratio_to_primal``
(the median of paired ratios, with quartiles, from the same core as
``adjointbench bench``), ``compile_s`` and the thread count, for reports.
Pools run on one thread, as bench's workers by default (OMP_NUM_THREADS=N
asks for N), and the samples on as many CPUs.
"""

import os

import pytest

from adjointbench.impls.registry import available_implementations, load_implementation
from adjointbench.suites.bench import (converted, kept_results, paired_fields, timed_on_run_cpus,
                                       warm_pair)
from adjointbench.suites.cells import Cell, plan_cells
from adjointbench.suites.executors import LocalExecutor
from adjointbench.suites.runner import unsupported_reason
from adjointbench.suites.threads import blas_threads, threads_of_a_run
from adjointbench.suites.timing import sample_paired

SCALES = ("smoke", "quick", "full")
SCALE = os.environ.get("ADJOINTBENCH_BENCH_SCALE", "quick")
if SCALE not in SCALES:
    raise ValueError(f"ADJOINTBENCH_BENCH_SCALE={SCALE!r}: choose one of {', '.join(SCALES)}")


def _cells() -> list[Cell]:
    cells = plan_cells(available_implementations(), suite="bench", quick=SCALE != "full")
    if SCALE == "smoke":
        smallest = {}
        for c in cells:
            smallest[c.problem] = min(smallest.get(c.problem, c.size), c.size)
        cells = [c for c in cells if c.size == smallest[c.problem]]
    return cells


@pytest.fixture(scope="module", autouse=True)
def _threads_as_bench():
    """One thread per library, as ``adjointbench bench``'s workers have by
    default, or the count OMP_NUM_THREADS asks for; the samples run confined
    to that many CPUs (timed_on_run_cpus)."""
    with threads_of_a_run():
        yield


@pytest.mark.bench
@pytest.mark.parametrize("cell", _cells(), ids=lambda c: f"{c.op}-{c.id}")
def test_throughput(benchmark, cell):
    impl = load_implementation(cell.impl)
    reason = unsupported_reason(cell, LocalExecutor(impl))
    if reason:
        pytest.skip(reason)
    try:
        primal, warm = warm_pair(cell, impl)
    except NotImplementedError as e:
        pytest.skip(str(e))
    benchmark.group = f"{cell.problem}-{cell.op}-n{cell.size}-{cell.dtype}-{cell.device}"
    benchmark.extra_info.update(problem=cell.problem, impl=cell.impl, op=cell.op,
                                size=cell.size, dtype=cell.dtype, device=cell.device,
                                threads=blas_threads())
    with timed_on_run_cpus(cell):
        benchmark.pedantic(warm.call, rounds=5, iterations=warm.number, warmup_rounds=0)
        sampled = sample_paired(primal, warm, cell.budget_s)
    early = warm.early_waits + (primal.early_waits if primal is not warm else 0)
    to_numpy_s = converted(warm.prepared.to_numpy, warm.result)[1] if cell.device == "cpu" \
        else None  # as bench cells do: work left to to_numpy is told
    paired = paired_fields(sampled, cell.op, warm.compile_s, warm.number, early, to_numpy_s,
                           blas_threads(), kept=kept_results(cell, primal, warm))
    benchmark.extra_info.update({k: paired[k] for k in (
        "primal_median_s", "ratio_to_primal", "ratio_q1", "ratio_q3", "compile_s",
        "early_waits", "kept_results", "to_numpy_s", "cores", "least_cores",
        "timing_warning")})
