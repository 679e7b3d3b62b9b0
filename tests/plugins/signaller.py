"""numpy's rules, whose primal of scalar_add signals the harness (the
worker's parent) with the signal ADJOINTBENCH_TEST_SIGNAL names, at its
process id, at its process group and at every process (-1): only where a
seccomp filter is in place, since without one these signals would end the
test run, and -1 every process of the user (all of them, as root)."""

import os
import signal

from adjointbench.impls.numpy import implementation as numpy_rules


def _fenced() -> bool:
    """Whether this process runs under a seccomp filter (adjointbench/fence.py's)."""
    with open("/proc/self/status") as status:
        return any(line.split() == ["Seccomp:", "2"] for line in status)


class SignalsTheHarness:
    name = "signaller"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return numpy_rules.supports(problem, op)

    def prepare(self, task):
        if task.problem == "scalar_add":
            if not _fenced():  # unfenced, the signals would end the tests, and -1 everything
                raise RuntimeError("no seccomp filter in this worker: nothing was sent")
            signum = getattr(signal, os.environ["ADJOINTBENCH_TEST_SIGNAL"])
            refused = []
            for target in (os.getppid(), -os.getpgid(os.getppid()), -1):
                try:
                    os.kill(target, signum)
                except PermissionError:
                    refused.append(target)
            raise PermissionError(f"refused {len(refused)} of 3")
        return numpy_rules.prepare(task)


implementation = SignalsTheHarness()
