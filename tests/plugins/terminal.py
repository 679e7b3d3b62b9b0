"""numpy's rules, whose primal of scalar_add writes to the user's terminal
through /dev/tty (where the harness's own lines are): an escape sequence
that would clear the screen, then a summary of its own."""

from adjointbench.impls.numpy import implementation as numpy_rules

FORGED = "1 cells: 1 ok (forged)"


class WritesToTheTerminal:
    name = "terminal"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op):
        return numpy_rules.supports(problem, op)

    def prepare(self, task):
        prepared = numpy_rules.prepare(task)

        def run():
            with open("/dev/tty", "w") as tty:
                tty.write(f"\x1b[2J\x1b[H{FORGED}\n")
            return prepared.run()
        return type(prepared)(run, prepared.to_numpy, prepared.wait)


implementation = WritesToTheTerminal()
