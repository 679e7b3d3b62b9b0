"""What code under test prints reaches the user attributed, never as the harness.

A worker's descriptors 1 and 2 (its stdout and stderr, and those of every
process it starts) go to a file of its own. After each answer, and after a
crash or a timeout, the harness relays what was written there to its own
stderr: each line prefixed with the implementation's name, control
characters shown escaped, at most RELAYED_LINES lines a call. The harness's
stdout, the summary a user pipes or parses, carries the harness's words only.
Before, a plug-in's ``print("2 cells: 2 ok")`` landed among the harness's
lines on stdout, and its escape sequences could move the cursor over them.
"""

from __future__ import annotations

import contextlib
import os
import sys

from adjointbench.suites.stacks import WorkerFile

RELAYED_LINES = 20  # a call's output beyond these is counted, not shown
READ_BYTES = 64 * 1024  # of a call's output, the most read back to show
_SHOWN_CONTROLS = "\t"


def capture_output_to(descriptor: int) -> None:
    """In a worker: send descriptors 1 and 2 to the file open as
    ``descriptor``, line-buffered, so that what is printed before a crash is
    there to relay."""
    flush_output()
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(line_buffering=True)


def flush_output() -> None:
    """In a worker: what the code under test printed, out of Python's buffers."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()


def escaped(line: str) -> str:
    """``line`` with control characters (escape sequences, carriage returns,
    backspaces) written as ``\\x1b``: shown, never obeyed."""
    return "".join(c if c.isprintable() or c in _SHOWN_CONTROLS else f"\\x{ord(c):02x}"
                   for c in line)


class OutputRelay(WorkerFile):
    """The harness's side of one worker's output file."""

    def __init__(self, name: str):
        super().__init__("output")
        self.name = name

    def _take(self) -> tuple[bytes, int]:
        """What the worker wrote since the last call (at most READ_BYTES of
        it) and its whole size; the file is emptied (the worker appends)."""
        try:
            size = self._size()
            if not size:
                return b"", 0
            data = self._read(0, READ_BYTES)
            os.ftruncate(self._file.fileno(), 0)
            return data, size
        except (OSError, ValueError):
            return b"", 0

    def relay(self, stream=None) -> None:
        """Write what the worker printed since the last relay to ``stream``
        (this process's stderr), each line as ``[name] line``."""
        data, size = self._take()
        if not data:
            return
        stream = stream or sys.stderr
        lines = data.decode("utf-8", errors="replace").splitlines()
        shown = [f"[{self.name}] {escaped(line)}\n" for line in lines[:RELAYED_LINES]]
        if len(lines) > RELAYED_LINES or size > len(data):
            shown.append(f"[{self.name}] ... its output went on: {size} bytes in all, of "
                         f"which the first {RELAYED_LINES} lines are shown\n")
        if stream.isatty():  # over the progress bar's line, which is drawn again after
            shown.insert(0, "\r\x1b[K")
        stream.write("".join(shown))
        stream.flush()
