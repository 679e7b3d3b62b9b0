"""numpy's rules whose primal waits twice as long as it computes, as a call
that hands its work to a server process (not the worker's child) would, or
one padded with a sleep: right values, and every ratio to that primal looks
three times cheaper than it is."""

import time

from adjointbench.impls.numpy import NumpyImplementation
from adjointbench.impls.protocol import Prepared


class Waiting(NumpyImplementation):
    name = "waiting"

    def prepare(self, task):
        prepared = super().prepare(task)
        if task.op != "primal":
            return prepared

        def run():
            start = time.perf_counter()
            result = prepared.run()
            time.sleep(max(2 * (time.perf_counter() - start), 1e-3))
            return result
        return Prepared(run=run, to_numpy=prepared.to_numpy)


implementation = Waiting()
