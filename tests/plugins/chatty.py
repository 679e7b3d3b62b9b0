"""numpy's rules, printing as code under test does: on stdout and stderr, at
import and on every call, through Python, through the descriptor and through
a child process; among it a forged summary line, an escape sequence that
would move a terminal's cursor, and more lines than anyone should see."""

import itertools
import os
import subprocess
import sys
import time

from adjointbench.impls.numpy import NumpyImplementation
from adjointbench.impls.protocol import Prepared

FORGED = "999 cells: 999 ok"
CURSOR_UP = "\x1b[2A\x1b[Kerased"
LINES_A_CALL = 50

print("chatty: imported")
print(FORGED)
print(CURSOR_UP, file=sys.stderr)
os.write(1, b"chatty: written to descriptor 1\n")
subprocess.run(["echo", "chatty: from a child"], check=True)


class Chatty(NumpyImplementation):
    name = "chatty"

    def prepare(self, task):
        prepared = super().prepare(task)

        def run():
            for i in range(LINES_A_CALL):
                print(f"chatty: line {i} of a call")
            return prepared.run()
        return Prepared(run=run, to_numpy=prepared.to_numpy, wait=prepared.wait)


implementation = Chatty()


WAIT_S = float(os.environ.get("CHATTY_WAIT_S", "4"))  # slow_implementation's first wait


class SlowAfterSaying(Chatty):
    """Says when it starts to wait (with the time), then waits WAIT_S, at
    its first prepare only: a slow cell's progress, a hang's last words."""
    name = "chatty_slow"
    waited = False

    def prepare(self, task):
        if not SlowAfterSaying.waited:
            SlowAfterSaying.waited = True
            print(f"chatty: waiting from {time.time():.3f}", flush=True)
            print("chatty: an unfinished line", end="", flush=True)
            time.sleep(WAIT_S)
            print(" ends here")
        return super().prepare(task)


slow_implementation = SlowAfterSaying()


class Flooding(NumpyImplementation):
    """Writes $CHATTY_CHUNKS chunks of $CHATTY_CHUNK bytes on descriptor 1
    in its first prepare, more than a second apart (a hang in a loop that
    logs wrote 330 MB a second), and records in $CHATTY_SEEN the largest
    size its output file reached meanwhile."""
    name = "chatty_flooding"
    written = False

    def prepare(self, task):
        if not Flooding.written:
            Flooding.written, largest = True, 0
            chunk = int(os.environ["CHATTY_CHUNK"])
            for _ in range(int(os.environ["CHATTY_CHUNKS"])):
                os.write(1, b"x" * (chunk - 1) + b"\n")
                largest = max(largest, os.fstat(1).st_size)
                time.sleep(1.5)
            with open(os.environ["CHATTY_SEEN"], "w") as seen:
                seen.write(str(largest))
        return super().prepare(task)


flooding = Flooding()


class LogsWhileItHangs(NumpyImplementation):
    """Hangs in its first prepare in a loop that logs a numbered line every
    millisecond: it still prints after its timeout, until its worker is stopped."""
    name = "chatty_logging"
    hung = False

    def prepare(self, task):
        if not LogsWhileItHangs.hung:
            LogsWhileItHangs.hung = True
            for i in itertools.count():
                print(f"chatty: logging line {i}", flush=True)
                time.sleep(0.001)
        return super().prepare(task)


logging_hang = LogsWhileItHangs()
