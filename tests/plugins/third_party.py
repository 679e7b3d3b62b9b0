"""A third-party implementation, outside the project: the scalar primitives
written from scratch against the protocol alone (no project helpers)."""

import numpy as np

from adjointbench.impls.protocol import Prepared, Task


class ScalarOnly:
    name = "third_party"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return problem == "scalar_mul" and op in ("primal", "jvp", "vjp")

    def prepare(self, task: Task) -> Prepared:
        x, y = (np.asarray(task.inputs[k], dtype=task.dtype) for k in ("x", "y"))
        if task.op == "primal":
            return Prepared(run=lambda: x * y)
        if task.op == "jvp":
            dx, dy = (np.asarray(task.tangent[k], dtype=task.dtype) for k in ("x", "y"))
            return Prepared(run=lambda: y * dx + x * dy)
        w = np.asarray(task.cotangent, dtype=task.dtype)
        return Prepared(run=lambda: (y * w, x * w))


implementation = ScalarOnly()
