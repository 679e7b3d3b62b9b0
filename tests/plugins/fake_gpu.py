"""numpy's rules, claiming a "cuda" device only in a process started with
ADJOINTBENCH_TEST_FAKE_GPU=1: which Dask worker ran a GPU cell shows in its
outcome (anywhere else it is unsupported, "offers no cuda device")."""

import os

from adjointbench.impls.numpy import implementation as numpy_rules


class FakeGPU:
    name = "fake_gpu"

    def devices(self):
        return ("cpu", "cuda") if os.environ.get("ADJOINTBENCH_TEST_FAKE_GPU") else ("cpu",)

    def supports(self, problem, op):
        return op in ("primal", "jvp", "vjp") and numpy_rules.supports(problem, op)

    def prepare(self, task):
        return numpy_rules.prepare(task)


implementation = FakeGPU()
