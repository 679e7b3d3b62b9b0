"""Faults of the harness itself, as opposed to outcomes of code under test."""

from __future__ import annotations

import contextlib
import os
import signal
import sys


class HarnessFault(RuntimeError):
    """The harness cannot go on: a folder it must write is unwritable, the disk
    is full, another run holds the results folder. The command line exits 2
    naming the path; no record blames an implementation for it."""


class FolderInUse(HarnessFault):
    """Another adjointbench run holds the results folder's lock."""


class Terminated(SystemExit):
    """SIGTERM, unwinding the harness as Ctrl-C does (exit status 128 + 15):
    the harness's own SystemExit, never the code under test's."""


def stop_request(error: BaseException) -> str:
    """What a SystemExit, KeyboardInterrupt or GeneratorExit that the code
    under test raised is told as: its failure, not a stop of the harness."""
    return (f"{described(error)} raised by the implementation, a BaseException that asks a "
            "program to stop; raise an Exception to report a failure")


# --- what the code under test's exceptions say ---

MESSAGE_LIMIT = 2000  # characters of an exception's message kept in a record


def said(error: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """``str(error)``, safely, for an exception the code under test raised:
    where its ``__str__`` raises, a line saying so (a worker formatting it
    died with status 1, a crash told for an error), and at most ``limit``
    characters (a 50 MB message went whole into results.jsonl and the
    report)."""
    try:
        text = str(error)
    except Exception as e:  # noqa: BLE001 - the code under test's own __str__
        text = f"<str() of the {type(error).__name__} raised {type(e).__name__}>"
    if len(text) <= limit:
        return text
    return (f"{text[:limit]}... (the message goes on: {len(text):,} characters in all, "
            f"of which the first {limit:,} are kept)")


def described(error: BaseException) -> str:
    """``Type: message`` of an exception the code under test raised (:func:`said`)."""
    message = said(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# --- a script that starts a sweep when it is imported ---
#
# Workers are started by multiprocessing's spawn, which imports the parent's
# script again in each worker (as ``__mp_main__``). A script that calls
# adjointbench at its top level, unguarded, would have every worker start
# workers of its own; multiprocessing refuses with a RuntimeError in each, and
# the parent saw only "exited with status 1". The worker ends with a status
# of its own instead, and the parent names the script and the fix.

STARTED_ON_IMPORT_STATUS = 86


class ScriptStartsOnImport(HarnessFault):
    """The parent's script starts adjointbench when imported by a worker."""

    def __init__(self):
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        script = repr(script) if script else "your script"
        super().__init__(
            f"each worker process imports {script} again (multiprocessing's spawn "
            "start method), and the script starts adjointbench when it is imported, "
            "so each worker tried to start workers of its own. Put the script's "
            "top-level code under `if __name__ == \"__main__\":`")


def exit_if_importing_parents_script() -> None:
    """In a worker still importing its parent's script, end it at once with
    STARTED_ON_IMPORT_STATUS, which the parent reads as :class:`ScriptStartsOnImport`."""
    from multiprocessing import current_process

    if getattr(current_process(), "_inheriting", False):  # multiprocessing's own test
        os._exit(STARTED_ON_IMPORT_STATUS)


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
