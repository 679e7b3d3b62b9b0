"""numpy's rules as a plug-in that a second release makes worse, for the tests
of ``adjointbench compare``: ADJOINTBENCH_TEST_DRIFT=slow makes every VJP
sleep 2 ms, =wrong makes the VJP of softmax twice too large."""

import os
import time

from adjointbench.impls.numpy import implementation as numpy
from adjointbench.impls.protocol import Prepared

SLEEP_S = 0.002


class Drifting:
    name = "drifting"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op, method=None):
        return numpy.supports(problem, op, method)

    def prepare(self, task):
        prepared = numpy.prepare(task)
        drift = os.environ.get("ADJOINTBENCH_TEST_DRIFT", "")
        if task.op != "vjp" or not drift:
            return prepared
        if drift == "slow":
            def run():
                time.sleep(SLEEP_S)
                return prepared.run()
            return Prepared(run, prepared.to_numpy, prepared.wait)
        if drift == "wrong" and task.problem == "softmax":
            return Prepared(lambda: tuple(2 * c for c in prepared.run()), prepared.to_numpy,
                            prepared.wait)
        return prepared


implementation = Drifting()
