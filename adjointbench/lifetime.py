"""Processes the harness starts die with it, even when it is killed by
SIGKILL and cannot stop them itself (Linux; elsewhere a watcher thread)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Callable

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # prctl(2) options
WATCH_S = 0.5


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(option, value)


def end_with_parent(end: Callable[[], None], kernel: bool = True) -> None:
    """Call ``end`` (which must not return) when this process's parent dies:
    a watcher thread looks for a changed parent every WATCH_S seconds, and
    with ``kernel`` the kernel sends SIGTERM at once. The kernel's signal
    comes when the *thread* that started this process ends, so ``kernel``
    is only for processes started by a thread that lives as long as they
    should."""
    parent = os.getppid()
    if kernel:
        signal.signal(signal.SIGTERM, lambda *_: end())
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch():
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        end()
    threading.Thread(target=watch, daemon=True).start()


def become_subreaper() -> None:
    """Orphaned descendants become this process's children (Linux), so that
    it can find and end them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
