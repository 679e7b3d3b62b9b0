"""An implementation that misbehaves in every way a harness must survive,
one way per problem (primal only)."""

import ctypes
import os
import signal
import sys
import time

import numpy as np

from adjointbench.impls.protocol import Prepared


def _raise():
    raise RuntimeError("deliberate failure")


def _hang():
    time.sleep(3600)


def _segfault():
    ctypes.string_at(0)


def _exit():  # as a C library that gives up: its reason, then exit(3)
    os.write(2, b"fatal: the device was lost\n")
    os._exit(3)


def _eat_memory():
    hoard = []
    while True:
        # 1 GiB at a time, reserved but not written: the cap is on address space,
        # and writing a fresh GiB took 2-11 s on a VM whose host was short of memory
        hoard.append(np.empty(2**27))


def _outgrow_torch():
    """8 TiB from torch's allocator, beyond any cap: a RuntimeError, not a MemoryError."""
    import torch
    return torch.empty(2**40, dtype=torch.float64).numpy()


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message")


def _raise_unprintable():
    raise Unprintable()


def _raise_a_megabyte():
    raise ValueError("x" * 2**20)


def _stop():
    os.kill(os.getpid(), signal.SIGSTOP)


def _read_the_terminal():
    raise RuntimeError(f"read {os.read(0, 1)!r} from descriptor 0")


BEHAVIOUR = {
    "scalar_add": _raise,
    "scalar_mul": lambda: np.array(np.nan),
    "scalar_sin": lambda: np.zeros(3),
    "broadcast_sin": lambda: np.zeros(4, dtype=np.float32),
    "matvec": _hang,
    "matmul": _segfault,
    "softmax": _exit,
    "l2_loss": _eat_memory,
    "batched_dense": _outgrow_torch,
    "broadcast_tanh": lambda: sys.exit(0),  # a BaseException: asks the program to stop
    "linear_solve": _raise_unprintable,
    "scalar_root": _raise_a_megabyte,
    "batched_sin": _stop,
    "nonlinear_solve": _read_the_terminal,  # a terminal would stop it (SIGTTIN)
}
EXPECTED = {"scalar_add": "error", "scalar_mul": "mismatch", "scalar_sin": "mismatch",
            "broadcast_sin": "mismatch", "matvec": "timeout", "matmul": "crashed",
            "softmax": "crashed", "l2_loss": "error", "batched_dense": "error",
            "broadcast_tanh": "error",
            "linear_solve": "error", "scalar_root": "error", "batched_sin": "crashed",
            "nonlinear_solve": "error"}


class Misbehaving:
    name = "misbehaving"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return problem in BEHAVIOUR and op == "primal"

    def prepare(self, task):
        return Prepared(run=BEHAVIOUR[task.problem])


implementation = Misbehaving()


class ExpectsItsFailures(Misbehaving):
    """Declares its two deliberate failures (checked in its own worker)."""
    expected_outcomes = [{"problem": p, "outcome": EXPECTED[p]} for p in ("scalar_add", "scalar_mul")]


class ExpectsOneFailure(Misbehaving):
    expected_outcomes = [{"problem": "scalar_add", "outcome": "error"}]


class DeclaresABadRule(Misbehaving):
    expected_outcomes = [{"problem": "scalar_add", "outcome": "error"}, {"problem": "matmul"}]


class DeclaresNoList(Misbehaving):
    expected_outcomes = {"problem": "scalar_add", "outcome": "error"}
