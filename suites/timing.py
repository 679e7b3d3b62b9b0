"""The one timing core: everything that times (``adjointbench bench``, the
gradient cells, pytest-benchmark, asv) goes through here.

Only prepared callables are timed: conversion and compilation happen in
``prepare`` and on the first call, which are timed separately as ``compile_s``.
Every timed call ends with the implementation's ``wait`` (``block_until_ready``,
``cuda.synchronize``), so asynchronous dispatch is never mistaken for work.
After a warm-up, the number of calls per sample is calibrated so that one
sample lasts at least ``MIN_SAMPLE_S`` (far above the timer's resolution);
samples are taken until ``budget_s`` is spent (at least ``MIN_ROUNDS``), and
the median and interquartile range of the per-call times are reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from adjointbench.impls.protocol import Prepared
from adjointbench.suites.purity import copy_arrays

MIN_SAMPLE_S = 2e-3
MIN_ROUNDS = 5
SLOW_MIN_ROUNDS = 3  # when samples overrun the budget, three are enough for a median
MAX_ROUNDS = 200
DEFAULT_BUDGET_S = 0.2
clock = time.perf_counter


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


def calibrate(call: Callable[[], Any], min_sample_s: float = MIN_SAMPLE_S) -> int:
    """The smallest power of two of calls that lasts at least ``min_sample_s``."""
    number = 1
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
    synchronised, ``number`` calls make one sample of at least MIN_SAMPLE_S."""

    call: Callable[[], Any]
    number: int
    compile_s: float
    result: Any
    prepared: Prepared


def warm_up(prepare: Callable[[], Prepared], budget_s: float = DEFAULT_BUDGET_S) -> WarmCall:
    """Prepare and call once (together ``compile_s``), warm up, calibrate.

    Warm-up is one call, two for calls cheap enough that it costs nothing; a
    call slower than ``MIN_SAMPLE_S`` is timed one at a time.
    """
    start = clock()
    prepared = prepare()
    call = synchronised(prepared)
    first = call()
    compile_s = clock() - start
    warm = _sample(call, 1)
    if warm < budget_s / 10:
        call()
    number = 1 if warm >= MIN_SAMPLE_S else calibrate(call)
    return WarmCall(call, number, compile_s, first, prepared)


def sample(call: Callable[[], Any], number: int, budget_s: float = DEFAULT_BUDGET_S,
           min_rounds: int = MIN_ROUNDS) -> tuple[float, float, int]:
    """(median, IQR, rounds) of per-call times over samples of ``number`` calls,
    taken until ``budget_s`` is spent: at least ``min_rounds``, or
    SLOW_MIN_ROUNDS when those already overrun the budget."""
    samples: list[float] = []
    deadline = clock() + budget_s

    def more() -> bool:
        if clock() >= deadline:
            return len(samples) < min(min_rounds, SLOW_MIN_ROUNDS) or (
                len(samples) < min_rounds and clock() < deadline + budget_s)
        return len(samples) < MAX_ROUNDS
    while more():
        samples.append(_sample(call, number))
    q1, median, q3 = _quartiles(samples)
    return median, q3 - q1, len(samples)


def time_operation(prepare: Callable[[], Prepared], budget_s: float = DEFAULT_BUDGET_S,
                   min_rounds: int = MIN_ROUNDS) -> Timing:
    """Prepare, warm up, calibrate and time one operation.

    >>> t = time_operation(lambda: Prepared(run=lambda: 1), budget_s=0.01)
    >>> t.median_s < 1e-3 and t.result == 1
    True
    """
    warm = warm_up(prepare, budget_s)
    first = copy_arrays(warm.prepared.to_numpy(warm.result))
    median, iqr, rounds = sample(warm.call, warm.number, budget_s, min_rounds)
    return Timing(median, iqr, rounds, warm.number, warm.compile_s, first, warm.prepared,
                  last_result=warm.prepared.to_numpy(warm.call()))


def timing_fields(timing: Timing) -> dict:
    """The record fields (suites/results.py) of a timing."""
    return {"time_median_s": timing.median_s, "time_iqr_s": timing.iqr_s,
            "rounds": timing.rounds, "number": timing.number, "compile_s": timing.compile_s}


def timer_overhead(budget_s: float = 0.2) -> float:
    """Seconds per call that the core itself adds: the median time of an empty
    prepared callable."""
    return time_operation(lambda: Prepared(run=lambda: None), budget_s).median_s
