"""What code under test prints reaches the user attributed, never as the harness.

A worker's descriptors 1 and 2 (its stdout and stderr, and those of every
process it starts) go to a file of its own. While a call runs (every
LIVE_RELAY_S, as its lines are completed), after each answer, and after a
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
LIVE_RELAY_S = 1.0  # while a call runs, how often what it printed is relayed
# a call's output beyond this, of which nothing more is shown, is counted and
# dropped while the call runs: a hang in a loop that prints wrote 330 MB a
# second, and would have filled the disk before a 300 s timeout
KEPT_BYTES = 1 << 24
LAST_LINE_CHARS = 200  # of a dead worker's last line of output, in its record
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
    """The harness's side of one worker's output file. While a call runs,
    :meth:`relay_so_far` shows its complete lines as they come (a plug-in's
    progress, or what it printed before it hung, is seen before the
    timeout); after the answer, :meth:`relay` shows the rest and empties
    the file. At most RELAYED_LINES lines of a call are shown, read from at
    most its first READ_BYTES."""

    def __init__(self, name: str):
        super().__init__("output")
        self.name = name
        self._relayed = 0  # bytes of this call's output already relayed
        self._shown = 0  # lines of this call's output shown
        self._held_back = False  # a line of this call's output was not shown
        self._dropped = 0  # bytes of this call's output dropped unread (KEPT_BYTES)

    def relay_so_far(self, stream=None) -> None:
        """While the worker runs a call: its complete lines printed since
        the last relay, each as ``[name] line`` on ``stream`` (this
        process's stderr). Only the harness reads the file meanwhile; the
        worker's writes land at its end. Beyond KEPT_BYTES the file is
        emptied, its size counted."""
        self._show(self._unrelayed(complete=True), stream)
        size = self._size()
        if size > KEPT_BYTES:  # its first READ_BYTES, all that is shown, are relayed by now
            with contextlib.suppress(OSError, ValueError):
                os.ftruncate(self._file.fileno(), 0)
            self._dropped += size
            self._relayed = READ_BYTES

    def relay(self, stream=None) -> None:
        """After an answer, a crash or a timeout (the worker writes no more
        for this call): the rest of what it printed, a note of how much was
        not shown, and the file is emptied for the next call."""
        size = self._size()
        self._show(self._unrelayed(complete=False), stream)
        if self._held_back or size > self._relayed or self._dropped:
            self._write([f"[{self.name}] ... its output went on: {size + self._dropped} bytes "
                         f"in all, of which the first {RELAYED_LINES} lines are shown\n"], stream)
        if size:
            with contextlib.suppress(OSError, ValueError):
                os.ftruncate(self._file.fileno(), 0)
        self._relayed, self._shown, self._held_back, self._dropped = 0, 0, False, 0

    def last_line(self, most: int = LAST_LINE_CHARS) -> str:
        """The last line the call printed that holds more than blanks, escaped
        and cut to ``most`` characters ('' if none): the reason a worker gives
        as it exits (a library's "fatal: ..." before exit(1), a traceback's
        last line), for the record that says it died."""
        size = self._size()
        try:
            tail = self._read(max(size - READ_BYTES, 0), min(size, READ_BYTES))
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in tail.decode("utf-8", errors="replace").splitlines()]
        said = escaped(next((line for line in reversed(lines) if line), ""))
        return said if len(said) <= most else said[:most] + "..."

    def _unrelayed(self, complete: bool) -> list[str]:
        """The lines written since the last relay, within the call's first
        READ_BYTES (only those ended by a newline if ``complete``)."""
        try:
            data = self._read(self._relayed, max(min(self._size(), READ_BYTES) - self._relayed, 0))
        except (OSError, ValueError):
            return []
        if complete and len(data) + self._relayed < READ_BYTES:  # a line still being written waits
            data = data[:data.rfind(b"\n") + 1]
        self._relayed += len(data)
        return data.decode("utf-8", errors="replace").splitlines()

    def _show(self, lines: list[str], stream) -> None:
        shown = lines[:max(RELAYED_LINES - self._shown, 0)]
        self._shown += len(shown)
        self._held_back |= len(shown) < len(lines)
        self._write([f"[{self.name}] {escaped(line)}\n" for line in shown], stream)

    def _write(self, lines: list[str], stream) -> None:
        if not lines:
            return
        stream = stream or sys.stderr
        if stream.isatty():  # over the progress bar's line, which is drawn again after
            lines.insert(0, "\r\x1b[K")
        stream.write("".join(lines))
        stream.flush()
