"""The one timing core: everything that times (``adjointbench bench``, the
gradient cells, pytest-benchmark, asv) goes through here.

Only prepared callables are timed: conversion and compilation happen in
``prepare`` and on the first call, which are timed separately as ``compile_s``.
Every timed call ends with the implementation's ``wait`` (``block_until_ready``,
``cuda.synchronize``), so asynchronous dispatch is never mistaken for work.
After a warm-up, the number of calls per sample is calibrated so that one
sample lasts at least ``MIN_SAMPLE_S`` (far above the timer's resolution);
samples are taken until ``budget_s`` is spent (at least ``MIN_ROUNDS``), and
the median and interquartile range of the per-call times are reported,
with ``cores``: the CPU seconds of the whole process over the wall seconds
of the samples, the cores the call kept busy (more than the run's threads
means threads of its own, or a pool that ignored the setting).

An operation's cost relative to its primal is measured in pairs
(:func:`sample_paired`): primal and operation samples alternate in one
process on the same inputs, and the ratio is the median of the pairs' ratios,
reported with its quartiles.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from adjointbench.impls.protocol import Prepared, unready, waiting_for_all
from adjointbench.lifetime import descendants_cpu_s
from adjointbench.suites.purity import copy_arrays, leaves_of

MIN_SAMPLE_S = 2e-3
MIN_ROUNDS = 5
SLOW_MIN_ROUNDS = 3  # when samples overrun the budget, three are enough for a median
MAX_ROUNDS = 200
DEFAULT_BUDGET_S = 0.2
BENCH_ROUNDS = 2  # passes of a bench sweep, each in fresh worker processes (asv's ``processes``)
clock = time.perf_counter
cpu_clock = time.process_time  # every thread of this process
# A timed call may keep this many cores busy beyond its threads (JAX's
# dispatch overlapping Python, a collector) before its figure is flagged: on
# one thread the built-in implementations kept 0.89-1.2 busy, a JAX whose
# XLA pool had both of 2 cores 1.8-1.95 (suites/bench.py's cores_warning)
CORES_MARGIN = 0.5
# A CPU cell's timed calls that kept less than this share of one core busy
# spent most of their time waiting: a sleep, a lock, I/O, a process that is
# not the worker's child, or other work on the machine taking the CPU. Quiet,
# the main job's 411 bench cells kept 0.79-1.0 busy on the less busy side
# (median 1.0); gradient cells timed beside a cold check's parallel oracle,
# 0.59 at the least (suites/bench.py's idle_warning)
IDLE_BELOW = 0.5


@dataclass(frozen=True)
class Timing:
    """Per-call statistics of one prepared operation.

    ``median_s`` and ``iqr_s`` are over ``rounds`` samples of ``number`` calls
    each; ``compile_s`` is prepare plus the first call (conversion, tracing,
    compilation and one run); ``result`` is what the first call returned and
    ``last_result`` what a call after the timed ones returned, both as NumPy
    (callers check that they agree); ``prepared`` is the callable that was timed.
    """

    median_s: float
    iqr_s: float
    rounds: int
    number: int
    compile_s: float
    result: Any = None
    prepared: Prepared | None = None
    last_result: Any = None
    to_numpy_s: float | None = None  # the fastest conversion of the last result (untimed)
    early_waits: int = 0  # of the first two calls, those whose wait returned too early
    cores: float | None = None  # CPU over wall seconds of the timed samples (:class:`Cores`)


def synchronised(prepared: Prepared) -> Callable[[], Any]:
    """One call that returns only when its result is ready on the device."""
    run, wait = prepared.run, prepared.wait

    def call():
        result = run()
        wait(result)
        return result
    return call


def _sample(call: Callable[[], Any], number: int) -> float:
    """Seconds per call, averaged over ``number`` back-to-back calls."""
    start = clock()
    for _ in range(number):
        call()
    return (clock() - start) / number


class Cores:
    """Samples that also count this process's CPU seconds (all its threads):
    ``used`` is CPU over wall seconds, the cores the calls kept busy. With
    every pool at one thread a call keeps one core busy, or less when it
    waits; JAX's XLA pool, sized from the CPUs the process may run on and
    deaf to XLA_FLAGS, timed a 1024 x 1024 matmul at 16 ms on 1.9 cores
    against 32 ms on one (2 cores, jax 0.10)."""

    def __init__(self):
        self.cpu_s = self.wall_s = 0.0
        self.elsewhere_s = 0.0  # CPU seconds of child processes meanwhile (Elsewhere)

    def sample(self, call: Callable[[], Any], number: int) -> float:
        """:func:`_sample`, counted."""
        cpu = cpu_clock()
        per_call = _sample(call, number)
        self.cpu_s += cpu_clock() - cpu
        self.wall_s += per_call * number
        return per_call

    @property
    def used(self) -> float | None:
        return (self.cpu_s + self.elsewhere_s) / self.wall_s if self.wall_s > 0 else None


class Elsewhere:
    """The CPU seconds of this process's child processes from now on
    (adjointbench.lifetime's descendants_cpu_s), which process_time leaves
    out: work a call sends to a process pool. Counted over a whole sampling
    window (clock ticks, 10 ms), once at each end."""

    def __init__(self):
        self.start_cpu_s, self.start_s = descendants_cpu_s(), clock()

    def cpu_s(self) -> float:
        return descendants_cpu_s() - self.start_cpu_s

    def cores(self) -> float:
        return self.cpu_s() / max(clock() - self.start_s, 1e-9)


def calibrate(call: Callable[[], Any], min_sample_s: float = MIN_SAMPLE_S,
              one_call_s: float | None = None) -> int:
    """The smallest power of two of calls that lasts at least ``min_sample_s``,
    doubling from half of what ``one_call_s`` (a call timed alone) predicts,
    else from 1. From 1, a 7 us call took ten trial samples, 1023 calls; from
    the prediction it takes one or two, and a call that was slow alone (the
    first calls often are) only starts it lower."""
    number = 1
    if one_call_s and one_call_s > 0:
        number = 2 ** max(math.ceil(math.log2(min_sample_s / one_call_s)) - 1, 0)
    while _sample(call, number) * number < min_sample_s and number < 2**24:
        number *= 2
    return number


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    if len(samples) < 2:
        return samples[0], samples[0], samples[0]
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


@dataclass(frozen=True)
class WarmCall:
    """A prepared operation after its first call and warm-up: ``call`` runs it
    synchronised, ``number`` calls make one sample of at least MIN_SAMPLE_S;
    ``warm_s`` is the warm-up call after the first, in seconds."""

    call: Callable[[], Any]
    number: int
    compile_s: float
    result: Any
    prepared: Prepared
    warm_s: float = 0.0
    early_waits: int = 0  # of the first two calls, those whose wait returned too early
    repeated: bool = False  # the second call returned the very objects the first did


def warm_up(prepare: Callable[[], Prepared], budget_s: float = DEFAULT_BUDGET_S) -> WarmCall:
    """Prepare and call once (together ``compile_s``), warm up, calibrate.

    Warm-up is one call, two for calls cheap enough that it costs nothing; a
    call slower than ``MIN_SAMPLE_S`` is timed one at a time. If the result
    of either of the first two calls is still being computed when the
    implementation's ``wait`` returns (a JAX array not ready, a CUDA stream
    busy), the calls are timed with :func:`waiting_for_all` instead, and
    ``early_waits`` says so: timed to their dispatch, a JAX jvp of a 512 x
    512 matmul took half its time.
    """
    start = clock()
    prepared = prepare()
    call = synchronised(prepared)
    first = call()
    compile_s = clock() - start
    early = int(unready(first))
    start = clock()
    second = call()
    warm = clock() - start
    early += unready(second)
    if early:
        prepared = replace(prepared, wait=waiting_for_all(prepared.wait))
        call = synchronised(prepared)
        warm = _sample(call, 1)
    if warm < budget_s / 10:
        call()
    number = 1 if warm >= MIN_SAMPLE_S else calibrate(call, one_call_s=warm)
    return WarmCall(call, number, compile_s, first, prepared, warm, early,
                    same_objects(first, second))


def same_objects(a: Any, b: Any) -> bool:
    """Whether two results are the very same arrays, array for array (NumPy,
    JAX, torch: what has a shape; not a Python number, of which small ones
    are shared, nor a thunk left for to_numpy, which bench tells apart)."""
    x, y = (tuple(v for v in leaves_of(r) if hasattr(v, "shape")) for r in (a, b))
    return bool(x) and len(x) == len(y) and all(u is v for u, v in zip(x, y))


def sample(call: Callable[[], Any], number: int, budget_s: float = DEFAULT_BUDGET_S,
           min_rounds: int = MIN_ROUNDS, taken: tuple[float, ...] = (),
           cores: Cores | None = None) -> tuple[float, float, int]:
    """(median, IQR, rounds) of per-call times over samples of ``number`` calls,
    taken until ``budget_s`` is spent: at least ``min_rounds``, or
    SLOW_MIN_ROUNDS when those already overrun the budget; ``taken``: samples
    already taken, counted among them; ``cores`` counts the samples' CPU."""
    samples: list[float] = list(taken)
    meter, elsewhere = cores or Cores(), Elsewhere()
    deadline = clock() + budget_s
    while _more(len(samples), deadline, budget_s, min_rounds):
        samples.append(meter.sample(call, number))
    meter.elsewhere_s += elsewhere.cpu_s()
    q1, median, q3 = _quartiles(samples)
    return median, q3 - q1, len(samples)


def _more(taken: int, deadline: float, budget_s: float, min_rounds: int) -> bool:
    """Whether to take another sample: until the deadline (at most MAX_ROUNDS),
    then up to ``min_rounds`` within a second budget, SLOW_MIN_ROUNDS in any case."""
    if clock() >= deadline:
        return taken < min(min_rounds, SLOW_MIN_ROUNDS) or (
            taken < min_rounds and clock() < deadline + budget_s)
    return taken < MAX_ROUNDS


@dataclass(frozen=True)
class Paired:
    """An operation timed against its primal, their samples alternating.

    Each pair is one sample of the primal and one of the operation, taken
    back to back on the same inputs (which goes first alternates), so a stall
    of the machine lands in one pair rather than in one of the two medians.
    ``ratio`` is the median of the pairs' ratios, ``ratio_q1``/``ratio_q3``
    their quartiles; the per-call medians and IQRs are over the same samples.
    """

    median_s: float
    iqr_s: float
    primal_median_s: float
    primal_iqr_s: float
    ratio: float
    ratio_q1: float
    ratio_q3: float
    pairs: int
    samples_s: tuple[float, ...] = ()         # the operation's per-call times, in order
    primal_samples_s: tuple[float, ...] = ()  # the primal's, paired with them
    cores: float | None = None  # the most cores the operation or the primal kept busy (Cores)
    least_cores: float | None = None  # the fewest: below IDLE_BELOW, one of them waited


def reference_workload() -> Prepared:
    """A fixed call timed in alternation with each primal, the unit in which a
    primal's time is compared across runs: a 64 x 64 matrix product (compute),
    a sum over 1 MB (memory) and a short Python loop, about 60 us. Two runs of
    the same code on a shared machine differ by up to 2x in absolute time for
    some cells (the core's neighbours change); a call timed beside it slows
    down with it."""
    import numpy as np

    a = np.linspace(-1.0, 1.0, 64 * 64).reshape(64, 64)
    big = np.linspace(-1.0, 1.0, 2**17)

    def run():
        total = float(big.sum())
        for i in range(64):
            total += i * 0.5
        return a @ a + total
    return Prepared(run=run)


def sample_paired(primal: WarmCall, operation: WarmCall, budget_s: float = DEFAULT_BUDGET_S,
                  min_rounds: int = MIN_ROUNDS) -> Paired:
    """Alternate samples of ``primal`` and ``operation``, ``budget_s`` for each.

    >>> warm = warm_up(lambda: Prepared(run=lambda: sum(range(100))), budget_s=0.01)
    >>> paired = sample_paired(warm, warm, budget_s=0.01)
    >>> paired.pairs >= MIN_ROUNDS and paired.ratio_q1 <= paired.ratio <= paired.ratio_q3
    True
    """
    primal_s: list[float] = []
    operation_s: list[float] = []
    meters = {id(primal): Cores(), id(operation): Cores()}  # one when paired with itself
    elsewhere = Elsewhere()
    budget_s *= 2  # each pair is two samples: ``budget_s`` for each of the two
    deadline = clock() + budget_s
    while _more(len(primal_s), deadline, budget_s, min_rounds):
        first, second = (primal, operation) if len(primal_s) % 2 == 0 else (operation, primal)
        a = meters[id(first)].sample(first.call, first.number)
        b = meters[id(second)].sample(second.call, second.number)
        primal_s.append(a if first is primal else b)
        operation_s.append(b if first is primal else a)
    cores, children = [m.used for m in meters.values() if m.used is not None], elsewhere.cores()
    most, least = (max(cores) + children, min(cores) + children) if cores else (None, None)
    return replace(paired_from_samples(operation_s, primal_s), cores=most, least_cores=least)


def paired_from_samples(operation_s, primal_s) -> Paired:
    """The statistics of per-call times taken in pairs (``operation_s[k]``
    beside ``primal_s[k]``): medians, IQRs, the median paired ratio and its
    quartiles."""
    p1, primal_median, p3 = _quartiles(list(primal_s))
    o1, median, o3 = _quartiles(list(operation_s))
    r1, ratio, r3 = _quartiles([o / p for o, p in zip(operation_s, primal_s)])
    return Paired(median, o3 - o1, primal_median, p3 - p1, ratio, r1, r3, len(primal_s),
                  tuple(operation_s), tuple(primal_s))


class KeepingLast:
    """A call that keeps what it returned last."""

    def __init__(self, call: Callable[[], Any]):
        self.call, self.calls, self.last = call, 0, None

    def __call__(self) -> Any:
        self.calls += 1
        self.last = self.call()
        return self.last


def time_operation(prepare: Callable[[], Prepared], budget_s: float = DEFAULT_BUDGET_S,
                   min_rounds: int = MIN_ROUNDS) -> Timing:
    """Prepare, warm up, calibrate and time one operation; ``last_result`` is
    what the last timed call returned. A call slower than ``budget_s`` counts
    its warm-up call (the second) as its first sample: a gradient of a
    second takes four calls, not six.

    >>> t = time_operation(lambda: Prepared(run=lambda: 1), budget_s=0.01)
    >>> bool(t.median_s < 1e-3 and t.result == 1 and t.last_result == 1)
    True
    """
    warm = warm_up(prepare, budget_s)
    first = copy_arrays(warm.prepared.to_numpy(warm.result))
    call, cores = KeepingLast(warm.call), Cores()
    taken = (warm.warm_s,) if warm.number == 1 and warm.warm_s >= budget_s else ()
    median, iqr, rounds = sample(call, warm.number, budget_s, min_rounds, taken, cores)
    last, to_numpy_s = converted(warm.prepared.to_numpy, call.last if call.calls else call())
    return Timing(median, iqr, rounds, warm.number, warm.compile_s, first, warm.prepared,
                  last_result=last, to_numpy_s=to_numpy_s, early_waits=warm.early_waits,
                  cores=cores.used)


CONVERSIONS = 3  # to_numpy calls timed on a timed call's result: the fastest counts


def converted(to_numpy, result, times: int = CONVERSIONS) -> tuple[Any, float]:
    """``to_numpy(result)`` (the last of ``times`` calls) and the fastest call's
    seconds: to_numpy is not timed, so work it does would be missed
    (suites/bench.py's deferred_work)."""
    fastest = math.inf
    for _ in range(times):
        start = clock()
        value = to_numpy(result)
        fastest = min(fastest, clock() - start)
    return value, fastest


# The fields of a timing and their kinds (suites/wire.py's measurements)
TIMING_KINDS = {"time_median_s": float, "time_iqr_s": float, "rounds": int, "number": int,
                "compile_s": float, "to_numpy_s": float, "early_waits": int, "cores": float}
TIMING_FIELDS = tuple(TIMING_KINDS)


def timing_fields(timing: Timing) -> dict:
    """The record fields (suites/results.py) of a timing."""
    values = (timing.median_s, timing.iqr_s, timing.rounds, timing.number, timing.compile_s,
              timing.to_numpy_s, timing.early_waits, timing.cores)
    return dict(zip(TIMING_FIELDS, values))


def timer_overhead(budget_s: float = 0.2) -> float:
    """Seconds per call that the core itself adds: the median time of an empty
    prepared callable."""
    return time_operation(lambda: Prepared(run=lambda: None), budget_s).median_s
