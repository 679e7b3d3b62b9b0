"""Implementations that write on their worker's pipe to the harness (any
socket among their own process's descriptors), as code under test can: a
message's size and then nothing more, or a size no worker could send. Each
does it when it prepares matvec's JVP, and is numpy's implementation
otherwise (tests/suites/test_robustness.py)."""

import os
import stat
import struct
import time

from adjointbench.impls.numpy import NumpyImplementation


def _own_sockets() -> list[int]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                found.append(int(name))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return found


class _PipeWriter(NumpyImplementation):
    written = b""

    def prepare(self, task):
        if (task.problem, task.op) != ("matvec", "jvp"):
            return super().prepare(task)
        for fd in _own_sockets():
            os.write(fd, self.written)
        time.sleep(3600)  # the harness's timeout ends it


class _Stalls(_PipeWriter):
    name = "stalls"
    written = struct.pack("!i", 1000) + b"{" * 10  # ten bytes of a thousand


class _AnnouncesTooMuch(_PipeWriter):
    name = "announces_too_much"
    written = struct.pack("!i", -1) + struct.pack("!Q", 2**44)


stalls = _Stalls()
announces_too_much = _AnnouncesTooMuch()
