"""numpy's rules, whose primal of scalar_add writes to the user's terminal
through /dev/tty (where the harness's own lines are): an escape sequence
that would clear the screen, then a summary of its own."""

from adjointbench.impls.numpy import NumpyImplementation

FORGED = "1 cells: 1 ok (forged)"


class WritesToTheTerminal(NumpyImplementation):
    name = "terminal"

    def prepare(self, task):
        if task.problem == "scalar_add":
            with open("/dev/tty", "w") as tty:
                tty.write(f"\x1b[2J\x1b[H{FORGED}\n")
        return super().prepare(task)


implementation = WritesToTheTerminal()
