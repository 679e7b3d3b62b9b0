"""Processes the harness starts die with it, even when it is killed by
SIGKILL and cannot stop them itself (Linux; elsewhere a watcher thread)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # prctl(2) options
WATCH_S = 0.5


def _prctl(option: int, value: int) -> bool:
    """Whether prctl(2) took the option (False off Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(option, value) == 0
    return False


def end_with_parent(end: Callable[[], None], parent: int, kernel: bool = True) -> None:
    """Call ``end`` (which must not return) when this process's parent, the
    process ``parent`` (its starter's ``os.getpid()``), dies: a watcher
    thread looks for a changed parent every WATCH_S seconds, and with
    ``kernel`` the kernel sends SIGTERM at once. The kernel's signal comes
    when the *thread* that started this process ends, so ``kernel`` is only
    for processes started by a thread that lives as long as they should.
    A parent that died before this process got here is seen at once:
    ``os.getppid()`` already names another process (taken for the parent
    before, and watched instead of it)."""
    if kernel:
        signal.signal(signal.SIGTERM, lambda *_: end())
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch():
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        end()
    threading.Thread(target=watch, daemon=True).start()


def become_subreaper() -> bool:
    """Orphaned descendants become this process's children (Linux), so that
    it can find and end them; whether they do."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


_ADOPTING = False  # whether this process adopts its orphaned descendants (adopt_orphans)
WORKERS: set[int] = set()  # this process's live workers, each in a session of its own


def adopt_orphans() -> None:
    """Make this process, the harness run as a program, the subreaper of all
    it starts: a process that leaves a worker's session and outlives the
    worker becomes its child instead of init's, and :func:`end_adopted`
    finds it. Not done where adjointbench is a library in someone's process."""
    global _ADOPTING
    _ADOPTING = become_subreaper()


def end_adopted(group: int) -> None:
    """End, and reap, this process's children that a worker (process group
    ``group``, ended) left behind and :func:`adopt_orphans` made its own:
    those still in the worker's group, and those in another session than
    this process's (the harness starts none but its workers, WORKERS).
    Nothing else is reaped: the workers' exit statuses are multiprocessing's."""
    if not _ADOPTING:
        return
    own = os.getsid(0)
    for pid in set(children()) - WORKERS:
        try:
            left = os.getpgid(pid) == group or os.getsid(pid) != own
        except OSError:
            continue
        if left:
            _reap(end_tree(pid))  # its own descendants are ours once it is gone


REAP_S = 1.0  # how long the ended are waited for: one SIGKILL cannot end is not waited on


def _reap(pids: list[int]) -> None:
    """Collect the exit status of those of ``pids`` that are this process's
    children, as each ends, for at most REAP_S (never blocking: a process the
    kill could not end, such as a set-user-ID one, would hang the harness)."""
    deadline, waiting = time.monotonic() + REAP_S, list(pids)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    waiting.remove(pid)
            except ChildProcessError:  # not (or no longer) a child of this process
                waiting.remove(pid)
        if waiting:
            time.sleep(0.01)


def children(pid: int | str = "self") -> list[int]:
    """The children of process ``pid`` (Linux /proc; empty elsewhere)."""
    pids = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(child) for child in listing.read_text().split()]
    return pids


def descendants(pid: int | str) -> list[int]:
    """Every live descendant of process ``pid``, children first (Linux /proc;
    empty elsewhere), whatever session or process group it moved to."""
    found, queue = [], children(pid)
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue += children(child)
    return found


def end_descendants(pid: int, rounds: int = 5) -> list[int]:
    """SIGKILL every descendant of process ``pid``, including those that
    left its process group or session (``setsid``), which a killpg misses:
    each is stopped first, so that none starts a new one meanwhile, then all
    are killed at once."""
    stopped: list[int] = []
    for _ in range(rounds):
        new = [p for p in descendants(pid) if p not in stopped]
        if not new:
            break
        _signal_each(new, signal.SIGSTOP)
        stopped += new
    _signal_each(stopped, signal.SIGKILL)
    return stopped


def end_tree(pid: int) -> list[int]:
    """SIGKILL process ``pid`` (another than this one) and every descendant
    it has (:func:`end_descendants`), ``pid`` stopped first; the processes
    ended, ``pid`` first."""
    _signal_each([pid], signal.SIGSTOP)
    ended = end_descendants(pid)
    _signal_each([pid], signal.SIGKILL)
    return [pid, *ended]


def stop_signal(pid: int) -> int | None:
    """The signal that stopped this process's child ``pid`` (SIGSTOP,
    SIGTSTP, SIGTTIN, SIGTTOU), or None while it is not stopped (or is no
    child of this process). The child stays waitable (WNOWAIT): its exit
    status is still there for whoever waits for it."""
    try:
        found = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, AttributeError):  # not a child; no waitid (not POSIX)
        return None
    return found.si_status if found is not None and found.si_code == os.CLD_STOPPED else None


def _signal_each(pids: list[int], signum: int) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signum)


def descendants_cpu_s() -> float:
    """CPU seconds this process's descendants have spent so far: the live
    ones' own and their reaped children's (``/proc/PID/stat``, in clock
    ticks), and those of the children this process reaped (getrusage).
    Only the reaped children's where there is no /proc; 0 without getrusage."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total, tick = usage.ru_utime + usage.ru_stime, os.sysconf("SC_CLK_TCK")
    for pid in descendants("self"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # after the command's ")": state is field 3, utime..cstime are 14-17
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15]) / tick
    return total
