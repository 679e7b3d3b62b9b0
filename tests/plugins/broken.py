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
