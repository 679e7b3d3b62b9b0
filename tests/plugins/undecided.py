"""numpy's rules, behind a ``supports()`` that never answers for one problem:
each question about it would otherwise cost its cells the whole timeout."""

import time

from adjointbench.impls.numpy import NumpyImplementation

UNDECIDED = "matvec"


class Undecided(NumpyImplementation):
    name = "undecided"

    def supports(self, problem, op, method=None):
        if problem == UNDECIDED:
            time.sleep(3600)
        return super().supports(problem, op, method)


implementation = Undecided()


class Stuck(NumpyImplementation):
    """A supports() that never answers at all."""
    name = "stuck"

    def supports(self, problem, op, method=None):
        time.sleep(3600)


stuck = Stuck()
