"""Where a worker was when it hung or crashed.

Each worker has Python's faulthandler write its threads' stacks to a file of
its own: on a fatal signal (a segfault, an abort) and when the harness asks
(:data:`DUMP_SIGNAL`, sent before it kills a worker that ran out of time).
The harness reads the file and names the implementation's innermost frames
in the record, so that "killed by signal SIGSEGV" or "no answer within the
timeout" comes with the line to look at.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import multiprocessing
import os
import re
import signal
import tempfile
import time
from multiprocessing import reduction
from pathlib import Path

DUMP_SIGNAL = signal.SIGUSR1
DUMP_WAIT_S = 0.5  # for the worker's stacks to appear once asked
SHOWN_FRAMES = 3
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')
# the harness's own frames: the serving loop, the executor, timing and wait
_HARNESS_FOLDERS = (str(Path(__file__).parent) + os.sep,
                    os.path.dirname(multiprocessing.__file__) + os.sep)
_HARNESS_FILE = str(Path(__file__).parent.parent / "impls" / "protocol.py")


_KEPT_OPEN: list = []  # faulthandler writes to the file's descriptor: it must stay open


def write_stacks_to(descriptor: int) -> None:
    """In a worker: dump every thread's stack to the file open as
    ``descriptor`` on a fatal signal and on DUMP_SIGNAL. The descriptor
    arrives inheritable (passed at spawn): a process the code under test
    starts does not get it."""
    import faulthandler

    os.set_inheritable(descriptor, False)
    stacks = open(descriptor, "a", encoding="utf-8")
    _KEPT_OPEN.append(stacks)
    faulthandler.enable(file=stacks, all_threads=True)
    faulthandler.register(DUMP_SIGNAL, file=stacks, all_threads=True, chain=False)
    os._exit = _dumping_before(os._exit, stacks)


def _dumping_before(exit_now, stacks):
    """``os._exit`` that first writes the stacks: it ends the process
    without a signal for faulthandler to catch, so "exited with status 3"
    came with no place to look."""
    import faulthandler

    def _exit(status):
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=stacks, all_threads=True)
        exit_now(status)
    return _exit


class WorkerFile:
    """The harness's side of a file a worker writes (its stacks, its output).
    The file never has a name: the worker inherits it as :attr:`descriptor`
    (pickled into the worker's arguments), so however either process ends,
    nothing is left in the temporary folder. Before, it was named until the
    worker opened it, and a process group killed while its worker started
    left the pair behind. Both ends share one file description in append
    mode: the worker's writes land at the end wherever the harness reads."""

    def __init__(self, kind: str):
        self._file = tempfile.TemporaryFile(prefix=f"adjointbench-{kind}-", suffix=".txt")
        flags = fcntl.fcntl(self._file.fileno(), fcntl.F_GETFL)
        fcntl.fcntl(self._file.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
        self.descriptor = InheritedDescriptor(self._file.fileno())

    def _size(self) -> int:
        try:
            return os.fstat(self._file.fileno()).st_size
        except (OSError, ValueError):
            return 0

    def _read(self, start: int, most: int) -> bytes:
        """Up to ``most`` bytes from ``start``, the worker's appends untouched."""
        return os.pread(self._file.fileno(), most, start)

    def close(self) -> None:
        self._file.close()


class InheritedDescriptor:
    """A descriptor a worker started by multiprocessing inherits: pickled
    while the worker starts, it arrives as the worker's own descriptor (an
    ``int``) open on the same file."""

    def __init__(self, descriptor: int):
        self._descriptor = descriptor

    def __reduce__(self):
        return _inherited, (reduction.DupFd(self._descriptor),)


def _inherited(duplicate) -> int:
    return duplicate.detach()


class StackFile(WorkerFile):
    """The harness's side of one worker's stack file."""

    def __init__(self):
        super().__init__("stacks")
        self.start = 0  # where the current call's stacks begin

    def mark(self) -> None:
        """A call begins: later reads see only what is written from now."""
        self.start = self._size()

    def read(self) -> str:
        """The stacks written since :meth:`mark` (a crash's)."""
        try:
            return self._read(self.start, max(self._size() - self.start, 0)).decode(
                "utf-8", errors="replace")
        except (OSError, ValueError):
            return ""

    def dump(self, pid: int) -> str:
        """Ask the worker ``pid`` for its stacks now, and return them."""
        self.start = self._size()
        try:
            os.kill(pid, DUMP_SIGNAL)
        except (ProcessLookupError, PermissionError):
            return ""
        deadline = time.monotonic() + DUMP_WAIT_S
        while self._size() == self.start and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.02)  # the rest of its threads
        return self.read()


def _harness(file: str) -> bool:
    return file.startswith(_HARNESS_FOLDERS) or file == _HARNESS_FILE


def where(stacks: str) -> str:
    """The innermost frames of the implementation in the thread that was
    serving the harness (the one whose stack holds the harness's frames), as
    "f (file.py:12), called from g (file.py:30)"; '' when none is known."""
    for block in reversed(re.split(r"\n(?=\S)", stacks)):  # the latest dump first
        frames = [m.groupdict() for m in _FRAME.finditer(block)]  # innermost first
        if not any(_harness(f["file"]) for f in frames):
            continue  # a thread of the framework's, or no Python frame
        theirs = itertools.dropwhile(lambda f: _harness(f["file"]), frames)
        shown = list(itertools.takewhile(lambda f: not _harness(f["file"]), theirs))
        return ", called from ".join(f"{f['func']} ({_short(f['file'])}:{f['line']})"
                                     for f in shown[:SHOWN_FRAMES])
    return ""


def _short(file: str) -> str:
    """A frame's file name, with its package for a package's ``__init__.py``."""
    path = Path(file)
    return f"{path.parent.name}/{path.name}" if path.name == "__init__.py" else path.name
