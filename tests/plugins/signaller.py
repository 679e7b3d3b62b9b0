"""numpy's rules, whose primal of scalar_add signals the harness (the
worker's parent) with the signal ADJOINTBENCH_TEST_SIGNAL names, at its
process id, at its process group and at every process (-1): only where a
seccomp filter is in place, since without one these signals would end the
test run, and -1 every process of the user (all of them, as root)."""

import os
import signal

from adjointbench.impls.numpy import NumpyImplementation


def _fenced() -> bool:
    """Whether this process runs under a seccomp filter (adjointbench/fence.py's)."""
    with open("/proc/self/status") as status:
        return any(line.split() == ["Seccomp:", "2"] for line in status)


def _refused(target: int, signum: int) -> bool:
    """Whether signalling ``target`` fails with EPERM (the filter looks at
    the target alone: signal 0 is asked first, and a real signal goes only
    where that was refused)."""
    try:
        os.kill(target, signum)
    except PermissionError:
        return True
    return False


class SignalsTheHarness(NumpyImplementation):
    name = "signaller"

    def prepare(self, task):
        if task.problem == "scalar_add":
            if not _fenced():  # unfenced, the signals would end the tests, and -1 everything
                raise RuntimeError("no seccomp filter in this worker: nothing was sent")
            signum = getattr(signal, os.environ["ADJOINTBENCH_TEST_SIGNAL"])
            refused = [target for target in (os.getppid(), -os.getpgid(os.getppid()), -1)
                       if _refused(target, 0) and _refused(target, signum)]
            raise PermissionError(f"refused {len(refused)} of 3")
        return super().prepare(task)


implementation = SignalsTheHarness()
