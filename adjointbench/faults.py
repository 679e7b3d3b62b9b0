"""Faults of the harness itself, as opposed to outcomes of code under test."""

from __future__ import annotations

import contextlib
import signal
import sys


class HarnessFault(RuntimeError):
    """The harness cannot go on: a folder it must write is unwritable, the disk
    is full, another run holds the results folder. The command line exits 2
    naming the path; no record blames an implementation for it."""


class FolderInUse(HarnessFault):
    """Another adjointbench run holds the results folder's lock."""


# --- Ctrl-C that is never swallowed ---
#
# Python raises KeyboardInterrupt wherever the main thread happens to be. When
# that is a finaliser (``__del__``, a weakref callback), Python prints
# "Exception ignored in ..." with a traceback and goes on as if nothing had
# happened: the sweep would carry on and exit 0. The handler below remembers
# the interrupt, and the sweep raises it again between cells.

_interrupted = False


def on_interrupt(signum, frame) -> None:
    """SIGINT handler: remember the interrupt, then raise it where we are."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if one was swallowed since the handler ran."""
    if _interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_never_swallowed():
    """Within: SIGINT goes through :func:`on_interrupt`, and a KeyboardInterrupt
    a finaliser swallowed is not printed as a traceback (it is remembered).
    The previous handler and hook are put back on the way out."""
    global _interrupted
    _interrupted = False
    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    previous_hook = sys.unraisablehook

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_hook
