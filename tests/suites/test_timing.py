"""The timing core: what it excludes, what it synchronises, how it samples."""

import subprocess
import sys
import time

import pytest

from adjointbench.impls.protocol import Prepared
from adjointbench.suites import threads, timing
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


def test_samples_are_calibrated_to_the_timer():
    timing = time_operation(lambda: Prepared(run=lambda: None), budget_s=0.01)
    assert timing.number > 1
    assert timing.number * timing.median_s >= MIN_SAMPLE_S / 4  # a sample far above resolution
    assert timing.rounds >= MIN_ROUNDS and timing.iqr_s >= 0


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


def test_timer_overhead_is_measured_per_call():
    assert 0 < timer_overhead(budget_s=0.01) < 1e-4


def test_thread_environment_covers_every_pool():
    env = threads.thread_environment(3)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert threads.thread_environment(None) == {}
    with pytest.raises(ValueError, match="at least 1"):
        threads.thread_environment(0)


def test_limit_threads_applies_to_blas_and_torch():
    code = ("import torch; from suites.threads import limit_threads, blas_threads;"
            "limit_threads(1); print(blas_threads(), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]
