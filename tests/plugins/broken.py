"""Objects that do not satisfy the protocol."""


class NoPrepare:
    name = "no_prepare"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return True


nameless = object()
