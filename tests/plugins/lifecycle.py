"""Implementations that test the harness's hold on processes: one that
leaves child processes behind, one that hangs with a child, and one that
takes seconds to import. Each child's PID is appended to
``$ADJOINTBENCH_TEST_PIDFILE`` so that a test can look for survivors."""

import os
import subprocess
import time

import numpy as np

from adjointbench.impls.protocol import Prepared
from adjointbench.impls.registry import load_implementation


def _spawn_child() -> None:
    child = subprocess.Popen(["sleep", "300"])
    with open(os.environ["ADJOINTBENCH_TEST_PIDFILE"], "a") as f:
        f.write(f"{child.pid}\n")


class _TanhOnly:
    name = "lifecycle"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return problem == "broadcast_tanh" and op == "primal"


class LeavesChildren(_TanhOnly):
    """Right answers, and a `sleep 300` left running by every call."""

    def prepare(self, task):
        x = task.inputs["x"]

        def run():
            _spawn_child()
            return np.tanh(x)
        return Prepared(run=run)


class HangsWithAChild(_TanhOnly):
    """Starts a child, then never answers."""

    def prepare(self, task):
        _spawn_child()
        return Prepared(run=lambda: time.sleep(3600))


time.sleep(float(os.environ.get("ADJOINTBENCH_TEST_IMPORT_S", "0")))  # a slow import
slow_start = load_implementation("numpy")
