"""numpy's rules, slow to prepare beyond the smallest inputs: a group of
cells whose first finishes seconds before the next."""

import time

import numpy as np

from adjointbench.impls.numpy import implementation as numpy_rules

SLOW_S = 1.5  # per prepare: each input point of a cell prepares once
SMALL = 4  # elements of the largest input prepared at once


class SlowBeyondSmallest:
    name = "slow_cells"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return numpy_rules.supports(problem, op)

    def prepare(self, task):
        if max(np.size(x) for x in task.inputs.values()) > SMALL:
            time.sleep(SLOW_S)
        return numpy_rules.prepare(task)


implementation = SlowBeyondSmallest()
