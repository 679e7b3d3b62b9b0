"""Objects that do not satisfy the protocol."""


class NoPrepare:
    name = "no_prepare"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return True


nameless = object()


class PreparesABareFunction(NoPrepare):
    """prepare returns the callable itself, not a Prepared."""

    name = "bare_function"

    def supports(self, problem, op):
        return problem == "softmax" and op == "primal"

    def prepare(self, task):
        import numpy as np

        x = task.inputs["x"]
        return lambda: np.exp(x) / np.exp(x).sum()


bare_function = PreparesABareFunction()


class DevicesAsAString(PreparesABareFunction):
    """devices() returns "cpu", which would read as the devices c, p and u."""

    name = "devices_as_a_string"

    def devices(self):
        return "cpu"


devices_as_a_string = DevicesAsAString()


class SlowToLoad:
    """devices() answers after SLOW_TO_LOAD_S seconds (a plug-in that waits on
    a device or a licence while it loads); forever where that is None."""

    name = "slow_to_load"

    def devices(self):
        import os
        import time

        delay = os.environ.get("SLOW_TO_LOAD_S")
        time.sleep(float(delay) if delay else 3600)
        return ("cpu",)

    def supports(self, problem, op, method=None):
        return problem == "scalar_add" and op == "primal"

    def prepare(self, task):
        from adjointbench.impls.protocol import Prepared

        return Prepared(lambda: task.inputs["x"] + task.inputs["y"])
