"""Code under test in worker processes, one per implementation, under a
timeout: nothing an implementation does (hang, segfault, os._exit, runaway
memory, monkeypatching a library) can take the sweep down or reach the
oracle, its cache, the comparisons or the records, which stay in this
process. A worker is replaced after a cell that raised, hung or crashed in it
(its framework's state may be half-changed); a wrong value (mismatch) leaves
it as it was, so a declared defect costs no restart (a torch worker's start
and first transforms take ~3 s)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import multiprocessing as mp
import os
import signal
import struct
import sys
import threading
import time
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Callable

import numpy as np

from adjointbench.faults import (STARTED_ON_IMPORT_STATUS, HarnessFault, ScriptStartsOnImport,
                                 exit_if_importing_parents_script, stop_request)
from adjointbench.fence import fence_off
from adjointbench.lifetime import (WORKERS, become_subreaper, children, end_adopted,
                                   end_descendants, end_tree, end_with_parent, stop_signal)
from adjointbench.suites.executors import (ImplementationError, LocalExecutor, WorkerCrashed,
                                           WorkerTimeout)
from adjointbench.suites.memo import ExecutionMemo
from adjointbench.suites.results import Record
from adjointbench.suites.relay import (LIVE_RELAY_S, OutputRelay, capture_output_to,
                                       flush_output)
from adjointbench.suites.stacks import StackFile, where, write_stacks_to
from adjointbench.suites.threads import environment_with, pools_sized_to, requested_threads
from adjointbench.suites.wire import NotPlainData, dumps, loads, plain

DEFAULT_TIMEOUT_S = 300.0
REPLACE_AFTER = ("error", "timeout", "crashed")  # outcomes that may leave a worker unsound
LOAD_TIMEOUT_S = 300.0  # importing a framework is not the cell's time
ALIVE_CHECK_S = 0.2  # how often a worker that has not answered is seen to be alive
STOPPED_FOR_S = 1.0  # a worker stopped this long never answers (a debugger's stop is shorter)
STOP_GRACE_S = 0.05  # a worker asked to stop is then killed: results live in the parent
MEMORY_LIMIT_ENV = "ADJOINTBENCH_MEMORY_LIMIT_GB"
# multiprocessing's framing of a message (Connection.send_bytes): its size
# in 4 bytes, or -1 and the size in 8 more
SIZE, LONG_SIZE = struct.Struct("!i"), struct.Struct("!Q")
READ_CHUNK = 1 << 20
# a request this short fits the pipe's buffer, empty between calls: it never waits
UNBLOCKED_BYTES = 1 << 16


MEMORY_FRACTION = 0.5  # of physical memory, per worker, unless MEMORY_LIMIT_ENV says otherwise


def memory_limit_gb() -> float | None:
    """The workers' address-space cap in GiB: ``$ADJOINTBENCH_MEMORY_LIMIT_GB``
    (0 for none), else MEMORY_FRACTION of physical memory. A value that is
    no number of GiB is a HarnessFault (exit 2), found before any worker
    starts (:class:`Worker`); each worker, spawned, read it and died with
    status 1, told as its implementation failing to load."""
    text = os.environ.get(MEMORY_LIMIT_ENV)
    if text is not None:
        try:
            limit = float(text)
        except ValueError:
            limit = math.nan
        if not 0 <= limit < math.inf:
            raise HarnessFault(f"{MEMORY_LIMIT_ENV}={text!r} is not a number of GiB: set it to "
                               "the workers' memory cap in GiB, 0 for no cap, or unset it for "
                               f"{MEMORY_FRACTION:.0%} of physical memory")
        return limit if limit > 0 else None
    try:
        return MEMORY_FRACTION * _physical_memory_gb()
    except (ValueError, OSError):
        return None


def _physical_memory_gb() -> float:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def worker_memory_bytes() -> int:
    """The memory a worker may use: its cap, else the physical memory."""
    limit_gb = memory_limit_gb()
    return int((limit_gb if limit_gb is not None else _physical_memory_gb()) * 2**30)


# A full Jacobian or Hessian asked of a worker must fit this many times in
# its memory: the result, its copies on the way, the implementation's work
MATRIX_COPIES = 4


def refuse_beyond_memory(what: str, rows: int, columns: int, dtype: str) -> None:
    """NotImplementedError (``unsupported``) for a full matrix no worker can
    build, checked and timed alike: a right implementation of a declared
    problem of 200,000 entries was an ``error``, its worker out of memory
    after 34 s, asked for 320 GB. ``what``: the matrix, as the message names it."""
    need = rows * columns * np.dtype(dtype).itemsize
    memory = worker_memory_bytes()
    if need * MATRIX_COPIES > memory:
        raise NotImplementedError(
            f"{what} is a {rows:,} x {columns:,} matrix, {need / 2**30:,.1f} GiB in {dtype}: "
            f"more than a worker can build in its {memory / 2**30:.1f} GiB (its memory cap, "
            f"{MEMORY_LIMIT_ENV}); not asked")


def _limit_memory(limit_gb: float | None) -> None:
    if limit_gb:
        import resource
        size = int(limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


def _end_strays(rounds: int = 5) -> None:
    """End every process the code under test started and left running. The
    worker is a child subreaper, so orphaned grandchildren become its
    children and are ended in the next round; the dead are reaped."""
    for _ in range(rounds):
        strays = children()
        if not strays:
            return
        for pid in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _die_with_parent(harness: int) -> None:
    """End this worker's whole process group, and every process it started
    in another group or session, when the harness (the process ``harness``)
    dies, even by SIGKILL, and at once if it died while the worker started.
    The worker also becomes its descendants' subreaper (see
    :func:`_end_strays`)."""
    end_with_parent(lambda: (end_descendants(os.getpid()),
                             os.killpg(os.getpid(), signal.SIGKILL)), harness)
    become_subreaper()


def _leave_the_terminal() -> None:
    """A session of its own, and so a process group of its own (no Ctrl-C
    of the user's reaches it) with no controlling terminal: /dev/tty does not
    open here ("No such device or address"). In a process group alone, code
    under test could still open the user's terminal and write escape
    sequences and lines of its own among the harness's (clear the screen,
    print "1 cells: 1 ok"), past the relay that escapes what it prints."""
    os.setsid()


def _read_no_terminal() -> None:
    """Descriptor 0 from /dev/null: a worker's descriptor 0 may still be the
    terminal it left (:func:`_leave_the_terminal`), and reads end of file
    instead (in a process group outside the terminal's foreground, a read
    stopped the worker, SIGTTIN, until its timeout)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


# What a framework's allocator says when the worker's memory cap stops it
# (torch's CPU allocator, XLA's): a RuntimeError or XlaRuntimeError, not a MemoryError
OUT_OF_MEMORY = ("can't allocate memory", "RESOURCE_EXHAUSTED")


def _memory_cap_hint() -> str:
    return (f"the worker hit its memory cap of {memory_limit_gb():.1f} GiB; raise it with "
            f"{MEMORY_LIMIT_ENV} (0 for none) if the cell really needs more")


def _answer(call):
    """("ok", value), or ("raise", outcome, message) for what the call raised;
    plain data (suites/wire.py), converted here in the worker."""
    from adjointbench.suites.results import outcome_of

    try:
        return ("ok", plain(call()))
    except MemoryError:
        return ("raise", "error", f"MemoryError: {_memory_cap_hint()}")
    except Exception as e:  # the implementation's failure, sent back as its outcome
        outcome, message = outcome_of(e)
        if outcome == "error" and memory_limit_gb() and any(
                sign in message for sign in OUT_OF_MEMORY):
            message = f"{_memory_cap_hint()}: {message}"
        return plain(("raise", outcome, message))
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as e:
        # raised by the code under test (a worker has a process group of its
        # own: no Ctrl-C of the user's reaches it); the worker is replaced after
        return plain(("raise", "error", stop_request(e)))


def _serve(connection, spec: str, harness: int, stacks: int | None = None,
           output: int | None = None) -> None:
    """The worker: in a session of its own (:func:`_leave_the_terminal`),
    tied to the life of the harness (the process ``harness``) and under the
    memory cap, its stacks written to the file open as descriptor ``stacks``
    when it crashes or is asked (suites/stacks.py) and its output to the one
    open as ``output`` (suites/relay.py), load one implementation, then
    answer method calls."""
    _leave_the_terminal()
    fence_off(harness)  # it cannot signal the harness (adjointbench/fence.py)
    _read_no_terminal()
    _die_with_parent(harness)
    _limit_memory(memory_limit_gb())
    if stacks is not None:
        write_stacks_to(stacks)
    if output is not None:
        capture_output_to(output)
    from adjointbench.impls.registry import load_implementation

    executor = None

    def load() -> dict:  # its pools sized to the run's threads (suites/threads.py)
        nonlocal executor
        with pools_sized_to(requested_threads(os.environ)):
            executor = LocalExecutor(load_implementation(spec))
            return executor.describe()

    loaded = _answer(load)
    flush_output()
    connection.send_bytes(dumps(loaded))
    while loaded[0] == "ok":
        try:
            request = connection.recv()
        except (EOFError, OSError):  # the parent is gone (a Dask worker that closed)
            return
        if request is None:
            return
        method, args = request
        answer = _answer(lambda: getattr(executor, method)(*args))
        _end_strays()  # nothing the call started outlives it
        flush_output()
        connection.send_bytes(dumps(answer))


def _at(stacks: str) -> str:
    """'; it was in f (file.py:12), ...' from a worker's stacks, or ''."""
    frames = where(stacks)
    return f"; it was in {frames}" if frames else ""


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by signal {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def _started_on_import(exitcode: int | None) -> bool:
    """Whether a worker that died while loading ended because this process's
    script starts adjointbench on import (adjointbench.faults); only a
    script run as ``python script.py`` is imported again by spawn."""
    main = sys.modules.get("__main__")
    return exitcode == STARTED_ON_IMPORT_STATUS and getattr(main, "__file__", None) is not None


class Worker:
    """One worker process serving one implementation."""

    def __init__(self, context, spec: str, environment: dict[str, str], wait: bool = True,
                 load_timeout_s: float = LOAD_TIMEOUT_S):
        exit_if_importing_parents_script()  # here, the parent's script is unguarded
        # the longest message it can send (dumps builds it whole); the cap's setting checked here
        self.most_message_bytes = worker_memory_bytes()
        parent, child = context.Pipe()
        self.stacks, self.output = StackFile(), OutputRelay(spec)
        self.process = context.Process(target=_serve, daemon=True, args=(
            child, spec, os.getpid(), self.stacks.descriptor, self.output.descriptor))
        with environment_with(environment):
            self.process.start()
        WORKERS.add(self.process.pid)  # in a session of its own, and no stray (end_adopted)
        child.close()
        self.connection, self.spec = parent, spec
        self.supported: dict[tuple, bool] = {}  # its answers to supports(), asked once each
        self.unsent = False  # a request it never took is stuck in the pipe (_send)
        self.load_timeout_s = load_timeout_s
        self._load_deadline = time.monotonic() + load_timeout_s
        self.description: dict | None = None
        if wait:
            self.loaded()

    def loaded(self) -> dict:
        """The implementation's description, once its worker has loaded it
        (its first answer); raises what loading raised."""
        if self.description is None:
            self.description = self._receive(self._load_deadline, "loading")
        return self.description

    def _receive(self, deadline: float, what: str):
        """The answer, after relaying what the call printed, attributed. A
        failed call's worker is stopped next, and may print on until then
        (a hang in a loop that logs): its lines so far are shown, and
        stop() relays the rest and the count, once; the output of a timeout
        was told twice, 20 lines and a count each."""
        try:
            answer = self._answer(deadline, what)
        except BaseException:
            self.output.relay_so_far()
            raise
        self.output.relay()
        return answer

    def _answer(self, deadline: float, what: str):
        try:
            answer = loads(self._message(deadline, what))
        except NotPlainData as e:  # the worker is not to be trusted again
            raise ImplementationError(f"{e}. The harness reads only plain data from a worker: "
                                      "return NumPy arrays (or convert in to_numpy)") from None
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            self.process.join(timeout=5)
            stacks = self.stacks.read()
            # the parent's script ends a worker before it serves, so before any
            # stacks; a plug-in's os._exit(86) while loading writes them (stacks.py)
            if self.description is None and not stacks and _started_on_import(
                    self.process.exitcode):
                raise ScriptStartsOnImport() from None
            raise self._crashed(_at(stacks)) from None
        if answer[0] == "raise":
            _, kind, message = answer
            raise {"unsupported": NotImplementedError,
                   "mismatch": _wrong_result()}.get(kind, ImplementationError)(message)
        return answer[1]

    def _message(self, deadline: float, what: str) -> bytes:
        """The worker's next message, read under ``deadline`` as it arrives.
        Connection.recv_bytes waits for the whole message without a
        timeout: a plug-in that wrote a size onto its worker's pipe to this
        process and then stalled hung the sweep for good; a size of 2^44
        was a MemoryError here."""
        size, = SIZE.unpack(self._read(SIZE.size, deadline, what))
        header = SIZE.size
        if size == -1:
            size, = LONG_SIZE.unpack(self._read(LONG_SIZE.size, deadline, what, header))
            header += LONG_SIZE.size
        most = self.most_message_bytes
        if not 0 <= size <= most:
            raise ImplementationError(
                f"the worker announced a message of {size:,} bytes, more than the {most:,} "
                "its memory cap lets it build: code under test wrote on the worker's pipe to "
                "the harness. The worker was replaced; leave descriptors you did not open alone")
        return self._read(size, deadline, what, header)

    def _read(self, size: int, deadline: float, what: str, before: int = 0) -> bytes:
        """``size`` bytes from the worker, the ``before`` bytes of their
        message already read, or WorkerTimeout at ``deadline``."""
        parts, got = [], 0
        while got < size:
            if not self._answered_by(deadline):
                raise WorkerTimeout(self._silent(what, before + got, before + size))
            chunk = os.read(self.connection.fileno(), min(size - got, READ_CHUNK))
            if not chunk:
                raise EOFError("the worker's pipe closed within a message")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _silent(self, what: str, got: int, size: int) -> str:
        """Why no answer came: none at all, or a message that stopped after
        ``got`` of its ``size`` bytes (its framing included)."""
        stalled = "" if got == 0 else (
            f" (it had sent {got:,} of the {size:,} bytes of a message, then nothing: code "
            "under test wrote on the worker's pipe to the harness, or stopped it while it sent)")
        return self._killed_at_timeout(f"no answer within {self._limit(what)} while "
                                       f"{what}{stalled}", what)

    def _limit(self, what: str) -> str:
        return f"{self.load_timeout_s:g} s" if what == "loading" else "the timeout"

    def _killed_at_timeout(self, why: str, what: str = "") -> str:
        """``why`` a call timed out, where the worker was (its stacks) and the fix."""
        fix = (f"Raise --timeout above {self.load_timeout_s:g} s if loading it is just slow"
               if what == "loading" else "Raise --timeout if the cell is just slow")
        return f"{why}{_at(self.stacks.dump(self.process.pid))}; the worker was killed. {fix}."

    def _crashed(self, where: str = "") -> WorkerCrashed:
        """That the worker died, how, and ``where`` (from its stacks); one
        that exited with a status, with its last line of output: "exited
        with status 1" alone left the record without the reason a library
        printed before it called exit(1)."""
        code, said = self.process.exitcode, ""
        if code is not None and code > 0:
            last = self.output.last_line()
            said = f" (its last line of output: {last})" if last else ""
        return WorkerCrashed(f"the worker running {self.spec} {_death(code)}{said}{where}")

    def _answered_by(self, deadline: float) -> bool:
        """Whether the worker's answer is there by ``deadline`` (:meth:`_watched_until`)."""
        return self._watched_until(self.connection.poll, deadline)

    def _watched_until(self, ready: Callable[[float], bool], deadline: float) -> bool:
        """Whether ``ready(seconds)`` (a wait of at most that long) holds by
        ``deadline``, an answer there or a request taken; meanwhile,
        what it prints is relayed every LIVE_RELAY_S (a slow cell's
        progress, what a hanging one said before its timeout). A worker that
        dies without answering is seen within ALIVE_CHECK_S and raises
        EOFError, as when its end of the pipe closes: a process it started
        may hold that end (and its sentinel) open, and the wait would last
        until the timeout, a crash told as a hang. One stopped by a signal
        for STOPPED_FOR_S is a crash too (:meth:`_stopped`)."""
        relay_at = time.monotonic() + LIVE_RELAY_S
        stopped_since = None
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            if ready(min(remaining, ALIVE_CHECK_S)):
                return True
            if not self.process.is_alive():
                if ready(0.0):  # it answered (took the request), then died
                    return True
                raise EOFError("the worker died without answering")
            stopped_since = self._stopped(stopped_since)
            if remaining <= ALIVE_CHECK_S:
                return False
            if time.monotonic() >= relay_at:
                self.output.relay_so_far()
                relay_at += LIVE_RELAY_S

    def _stopped(self, since: float | None) -> float | None:
        """When the worker was first seen stopped by a signal (None: it runs);
        raises WorkerCrashed once it has stayed stopped STOPPED_FOR_S. A
        stopped process never answers: the cell waited out its timeout (300 s
        by default), told as a hang."""
        signum = stop_signal(self.process.pid)
        if signum is None:
            return None
        now = time.monotonic()
        if since is None or now - since < STOPPED_FOR_S:
            return now if since is None else since
        name = signal.Signals(signum).name
        terminal = (" (a process outside the terminal's foreground is stopped so when it reads "
                    "from the terminal, or changes its settings: read no input from it)"
                    if signum in (signal.SIGTTIN, signal.SIGTTOU) else "")
        raise WorkerCrashed(f"the worker running {self.spec} was stopped by signal {name}"
                            f"{terminal}, and a stopped process never answers; it was killed")

    def call(self, deadline: float, method: str, *args):
        self.stacks.mark()
        self._send((method, args), deadline, f"running {method}")
        return self._receive(deadline, f"running {method}")

    def _send(self, request, deadline: float, what: str) -> None:
        """``request`` to the worker by ``deadline``. One larger than
        UNBLOCKED_BYTES may fill the pipe and wait for the worker to read
        it: it is sent by a thread while the worker is watched as for an
        answer. A worker that no longer read (stopped by a signal between
        calls) hung the sweep in the send for good."""
        data = ForkingPickler.dumps(request)
        if len(data) <= UNBLOCKED_BYTES:
            return self._send_bytes(data)
        sent = concurrent.futures.Future()
        self.unsent = True  # until the thread has sent it all: stop() writes nothing behind it
        threading.Thread(target=self._send_bytes, args=(data, sent), daemon=True).start()
        try:
            taken = self._watched_until(
                lambda seconds: bool(concurrent.futures.wait([sent], seconds).done), deadline)
        except EOFError:  # it died
            raise self._crashed() from None
        if not taken:
            raise WorkerTimeout(self._killed_at_timeout(
                f"the worker took no request within {self._limit(what)} while {what}", what))
        sent.result()  # WorkerCrashed where the send failed
        self.unsent = False

    def _send_bytes(self, data, sent: concurrent.futures.Future | None = None) -> None:
        """``data`` down the pipe; WorkerCrashed if the worker is gone. With
        ``sent``, what happened is set on it instead (a sending thread)."""
        try:
            self.connection.send_bytes(data)
        except (BrokenPipeError, OSError):
            crashed = self._crashed()
            if sent is None:
                raise crashed from None
            sent.set_exception(crashed)
        else:
            if sent is not None:
                sent.set_result(None)

    def stop(self) -> None:
        """Stop the worker, and everything in its process group with it, and
        every process it started that is still its descendant, in whatever
        group or session (a hanging call's ``setsid`` child)."""
        if self.process.is_alive() and not self.unsent:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.connection.send(None)
            self.process.join(timeout=STOP_GRACE_S)  # it holds nothing worth a wait
        if self.process.is_alive():
            end_tree(self.process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.join()
        WORKERS.discard(self.process.pid)
        end_adopted(self.process.pid)  # what it left, adopted when it died
        self.stacks.close()
        self.output.relay()
        self.output.close()


def _wrong_result():
    from adjointbench.suites.compare import WrongResult
    return WrongResult


# After this many supports() questions hung, an implementation is asked no new
# one: each costs a cell the whole timeout, and a supports() that hangs on every
# question would take a sweep's few hundred questions times 300 s.
HUNG_QUESTIONS = 3


class RemoteExecutor:
    """A worker's executor, within one cell's time budget (see LocalExecutor).

    The budget counts only the time spent waiting for the worker: starting it
    and loading the implementation come before, and the oracle's work in
    this process between calls is not the implementation's.
    """

    def __init__(self, worker: Worker, timeout_s: float, unanswered: dict | None = None):
        self.worker, self.remaining_s = worker, timeout_s
        # supports() questions that hung in an earlier worker of this
        # implementation: what to tell instead of asking again
        self.unanswered = {} if unanswered is None else unanswered
        self.told_unanswered = False  # this cell's was one: its worker is sound

    def describe(self) -> dict:
        return self.worker.description

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        """The worker's answer, asked once per question: the same question
        comes for every size and dtype of a sweep (12,000 cells asked
        0.5 ms each, most of them unsupported). One that got no answer
        within the timeout is not asked again in this run (its worker was
        replaced, and the new one forgot): each of its cells was a timeout
        again after waiting the whole of it (300 s by default)."""
        question = (problem, op, method)
        if question in self.unanswered:
            self.told_unanswered = True
            raise WorkerTimeout(self.unanswered[question])
        if len(self.unanswered) >= HUNG_QUESTIONS and question not in self.worker.supported:
            self.told_unanswered = True
            raise WorkerTimeout(
                f"supports() gave no answer within the timeout to {len(self.unanswered)} "
                f"questions in this run ({', '.join(map(repr, list(self.unanswered)[:3]))}; "
                "their cells' records say where it hung), so no new question is asked: "
                "answer supports() at once, without work")
        if question not in self.worker.supported:
            try:
                self.worker.supported[question] = bool(self._call("supports", *question))
            except WorkerTimeout:
                self.unanswered[question] = (
                    f"supports{question!r} gave no answer within the timeout when first asked "
                    f"in this run (that cell's record says where it hung), so it is not asked "
                    "again: answer supports() at once, without work")
                raise
        return self.worker.supported[question]

    def _call(self, method: str, *args):
        """The worker's answer to ``method(*args)``, its wait charged to the budget."""
        start = time.monotonic()
        try:
            return self.worker.call(start + self.remaining_s, method, *args)
        finally:
            self.remaining_s -= time.monotonic() - start

    def __getattr__(self, method):
        return lambda *args: self._call(method, *args)


def compilation_cache_settings(cache_dir: Path) -> dict:
    """JAX's persistent compilation cache in ``cache_dir/jax``, keeping every
    compilation, so that a second sweep reuses the first one's: jax's config
    names and values. A cache the user configured (``JAX_COMPILATION_CACHE_DIR``)
    is left alone."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return {}
    return {"jax_compilation_cache_dir": str((Path(cache_dir) / "jax").resolve()),
            "jax_persistent_cache_min_compile_time_secs": 0.0,
            "jax_persistent_cache_min_entry_size_bytes": 0}


def compilation_cache_environment(cache_dir: Path) -> dict[str, str]:
    """:func:`compilation_cache_settings` as the environment of a worker, which
    jax reads when it loads."""
    return {name.upper(): str(value) for name, value in compilation_cache_settings(cache_dir).items()}


def use_compilation_cache(cache_dir: Path) -> None:
    """:func:`compilation_cache_settings` in this process (an in-process sweep,
    the pytest sweep): in the environment for a jax still to load, in its
    config if it has loaded. Without it every in-process run compiled anew:
    ``check --impl jax --in-process`` took 103 s, 40-42 s with it (38-47 s isolated)."""
    settings = compilation_cache_settings(cache_dir)
    os.environ.update(compilation_cache_environment(cache_dir))
    if "jax" in sys.modules:
        for name, value in settings.items():
            sys.modules["jax"].config.update(name, value)


class IsolatedRunner:
    """``run(cell) -> Record``: the oracle and the comparisons here, the
    implementation in its own worker, under a timeout per cell."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir=None,
                 environment: dict[str, str] | None = None, oracle=None,
                 unanswered: dict | None = None):
        """``unanswered``: the supports() questions that hung, per
        implementation (:meth:`RemoteExecutor.supports`), shared by the
        runners of one run."""
        from adjointbench.reference import Oracle

        self.timeout_s = timeout_s
        # importing a framework is not a cell's time: at least LOAD_TIMEOUT_S
        self.load_timeout_s = max(LOAD_TIMEOUT_S, timeout_s)
        self.oracle = oracle or Oracle(cache_dir)
        # for the workers (thread counts, compilation cache), set at their start
        self.environment = {**compilation_cache_environment(self.oracle.cache_dir),
                            **(environment or {})}
        self.threads = requested_threads(self.environment)  # timings are judged against it
        self._context = mp.get_context("spawn")  # no inherited JAX/torch threads
        self._workers: dict[str, Worker] = {}
        self._load_errors: dict[str, Exception] = {}  # from start(), raised by worker()
        self._memos: dict[str, ExecutionMemo] = {}  # per worker: its checked results
        self._unanswered: dict[str, dict] = {} if unanswered is None else unanswered

    def _live(self, spec: str) -> bool:
        worker = self._workers.get(spec)
        return worker is not None and worker.process.is_alive()

    def worker(self, spec: str) -> Worker:
        """The live worker of ``spec``, started (and its implementation loaded) if needed."""
        if spec in self._load_errors:
            raise self._load_errors.pop(spec)
        if not self._live(spec):
            self._memos.pop(spec, None)  # results are reused within one worker's life
            self._workers[spec] = Worker(self._context, spec, self.environment,
                                         load_timeout_s=self.load_timeout_s)
        return self._workers[spec]

    def start(self, specs) -> None:
        """Start the workers of ``specs`` at once and wait until each has
        loaded: their imports overlap instead of following one another. One
        that will not load is stopped; :meth:`worker` raises its reason."""
        starting = []
        try:
            for spec in dict.fromkeys(specs):
                if not self._live(spec):
                    starting.append(Worker(self._context, spec, self.environment, wait=False,
                                           load_timeout_s=self.load_timeout_s))
            while starting:
                self._adopt(starting[0])
                starting.pop(0)
        finally:  # interrupted: the workers not adopted yet end here
            for worker in starting:
                worker.stop()

    def _adopt(self, worker: Worker) -> None:
        """``worker`` as its implementation's, once loaded; stopped, and the
        reason kept for :meth:`worker`, if it would not load."""
        try:
            worker.loaded()
        except Exception as e:  # noqa: BLE001 - raised again where the worker is asked for
            worker.stop()
            self._load_errors[worker.spec] = e
            return
        self._memos.pop(worker.spec, None)
        self._workers[worker.spec] = worker

    def describe(self, spec: str) -> dict:
        """name, devices and expected outcomes, from the implementation's own worker."""
        return self.worker(spec).description

    def _stop(self, spec: str) -> None:
        worker = self._workers.pop(spec, None)
        self._memos.pop(spec, None)
        if worker is not None:
            worker.stop()

    def executor(self, spec: str) -> RemoteExecutor:
        """``spec``'s worker as an executor, within one cell's timeout."""
        return RemoteExecutor(self.worker(spec), self.timeout_s,
                              self._unanswered.setdefault(spec, {}))

    def run(self, cell, oracle=None) -> Record:
        """The cell's record, compared with ``oracle``'s references (default
        this runner's oracle)."""
        from adjointbench.suites.runner import run_cell
        from adjointbench.suites.results import outcome_of

        executor = None
        try:
            executor = self.executor(cell.impl)
            record = run_cell(cell, oracle or self.oracle, executor=executor,
                              memo=self._memos.setdefault(cell.impl, ExecutionMemo()),
                              threads=self.threads)
        except HarnessFault:
            raise
        except Exception as e:  # the implementation would not even load
            outcome, message = outcome_of(e)
            record = Record.for_cell(cell, outcome, message)
        if record.outcome in REPLACE_AFTER and not (executor and executor.told_unanswered):
            self._stop(cell.impl)  # a fresh worker for the next cell
        return record

    def close(self) -> None:
        for spec in list(self._workers):
            self._stop(spec)
        self._load_errors.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["DEFAULT_TIMEOUT_S", "IsolatedRunner"]
