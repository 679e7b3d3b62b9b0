"""Implementations that test the harness's hold on processes: one that
leaves child processes behind, one that hangs with a child, one that hangs
beside a child in a session of its own, two that exit leaving a child that
holds their pipe (in their session, or in one of its own), and one that
takes seconds to import. Each child's PID is
appended to ``$ADJOINTBENCH_TEST_PIDFILE`` so that a test can look for
survivors."""

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


def _fork_child(new_session: bool) -> None:
    """A forked copy of the worker, which holds the worker's end of its pipe;
    with ``new_session`` out of its process group and session too."""
    if os.fork() == 0:
        if new_session:
            os.setsid()
        with open(os.environ["ADJOINTBENCH_TEST_PIDFILE"], "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(300)
        os._exit(0)


class HangsBesideAChildOfItsOwnSession(_TanhOnly):
    """Forks a child that leaves the worker's session, then never answers:
    killing the worker's process group misses the child."""

    def prepare(self, task):
        def run():
            _fork_child(new_session=True)
            time.sleep(3600)
        return Prepared(run=run)


class ExitsLeavingAChild(_TanhOnly):
    """Forks a child, then exits without answering: the child keeps the pipe
    open, so no end of file tells the harness the worker is gone."""

    new_session = False

    def prepare(self, task):
        def run():
            _fork_child(new_session=self.new_session)
            time.sleep(0.2)  # the child's PID written
            os._exit(0)
        return Prepared(run=run)


class ExitsLeavingAChildOfItsOwnSession(ExitsLeavingAChild):
    """The same, its child out of the worker's group and session: once the
    worker is gone it is no one's descendant but the harness's, which
    adopts orphans when it runs as a program."""

    new_session = True


time.sleep(float(os.environ.get("ADJOINTBENCH_TEST_IMPORT_S", "0")))  # a slow import
slow_start = load_implementation("numpy")
