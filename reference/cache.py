"""The oracle's disk cache: one JSON file per reference, checked on read.

Each entry stores its key: the oracle version, a hash of the problem's
definition (its declaration and the source of its family file), a hash of the
inputs it was computed at, the size, seed and point, and a checksum of the
reference itself. On read the whole key must match and the checksum must
hold; a damaged, mismatched or edited entry is discarded with a warning and
recomputed. Only the trusted side (the process that compares) writes here.

An implementation's worker runs as the same user and could write here too: an
entry whose key and checksum hold but whose reference is its own answer. So
an Oracle believes only the entries that were there, unchanged, when it was
made (before any worker of its run started) and those this process wrote
(adjointbench/vouched.py). Any other entry is recomputed and written over;
if it held another reference, ``altered`` says so. At ``close()`` every entry
it read or wrote that another process changed since is put back, and, with
``sweep`` (the CLI's runs), every other entry written meanwhile by another
process is removed, so that the next run does not believe it either.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import json
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from adjointbench.faults import HarnessFault
from adjointbench.lifetime import end_with_parent
from adjointbench.vouched import Vouched, write_atomically
from adjointbench.reference.catalogue import get_problem
from adjointbench.reference.oracle import ORACLE_VERSION, Reference, compute_reference
from adjointbench.reference.problem import Problem, make_inputs
from adjointbench.reference.second_order import SecondOrder, compute_second_order

DEFAULT_CACHE_DIR = ".oracle-cache"


def default_cache_dir() -> Path:
    """``$ADJOINTBENCH_CACHE_DIR``, else ``.oracle-cache`` in the working folder."""
    return Path(os.environ.get("ADJOINTBENCH_CACHE_DIR", DEFAULT_CACHE_DIR))


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


_DEFINITIONS: dict[int, str] = {}


def definition_hash(problem: Problem) -> str:
    """A hash of what defines the problem: its declared fields and the source
    of the module that declares it (generator, primal and closed form)."""
    if id(problem) not in _DEFINITIONS:
        _DEFINITIONS[id(problem)] = _definition_hash(problem)
    return _DEFINITIONS[id(problem)]


NOT_DEFINING = ("second_order",)  # planning flags: no reference depends on them


def _definition_hash(problem: Problem) -> str:
    fields = {k: v for k, v in vars(problem).items()
              if not callable(v) and k not in NOT_DEFINING}
    sources = sorted({_module_source(f) for f in vars(problem).values() if callable(f)})
    return _sha(json.dumps(fields, sort_keys=True, default=str) + "".join(sources))


def _module_source(function) -> str:
    """The source of the module defining ``function`` (unwrapped), else its repr."""
    function = inspect.unwrap(function)
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    try:
        return inspect.getsource(module) if module else repr(function)
    except (OSError, TypeError):
        return repr(function)


def inputs_hash(inputs: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name], dtype=np.float64)
        digest.update(f"{name}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(problem: Problem, size: int, seed: int, point: int = 0) -> dict:
    return {"oracle_version": ORACLE_VERSION, "problem": problem.name,
            "definition": definition_hash(problem),
            "inputs": inputs_hash(make_inputs(problem, size, seed, point)),
            "size": size, "seed": seed, "point": point}


def _checksum(reference: dict) -> str:
    return _sha(json.dumps(reference, sort_keys=True))


# kind -> (decode, compute) of a cache entry
KINDS = {"first": (Reference.from_json, compute_reference),
         "second": (SecondOrder.from_json, compute_second_order)}


# mpmath's working precision is process-global: one computation at a time here
_HERE = threading.Lock()
# the entries any Oracle of this process wrote: believed by the others too
_WRITTEN_HERE = Vouched()


def _start_oracle_process(parent: int) -> None:
    """An oracle process leaves Ctrl-C to its parent (the process ``parent``),
    and ends with it, even when the parent is killed by SIGKILL and cannot
    close the pool (watched for: any of the parent's threads may have
    started it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end_with_parent(lambda: os._exit(1), parent, kernel=False)


def entry_key(kind: str, problem: str, size: int, seed: int, point: int) -> dict:
    """The key a cache entry of ``kind`` stores and is checked against."""
    return {**cache_key(get_problem(problem), size, seed, point),
            **({} if kind == "first" else {"kind": kind})}


def computed_elsewhere(kind: str, key: dict) -> dict | None:
    """In an oracle process: the reference of ``key`` as its cache entry's
    JSON, or None where this process's problem is not the one the parent
    asked for (a problem declared in the parent alone)."""
    if entry_key(kind, key["problem"], key["size"], key["seed"], key["point"]) != key:
        return None
    return KINDS[kind][1](get_problem(key["problem"]), key["size"], key["seed"],
                          point=key["point"]).to_json()


def _frozen(key: dict) -> tuple:
    return tuple(sorted(key.items()))


class Oracle:
    """Reference values, computed once and then read from the cache.

    Thread-safe: threads asking for the same reference wait for one
    computation. With ``processes`` > 0, references not in the cache are
    computed in that many oracle processes (spawned on first need, trusted
    code only), so a parallel sweep on a cold cache computes several at once;
    one those processes cannot compute is computed here, raising as it would.

    >>> Oracle().reference("linear_solve", size=8).jvp.value.shape
    (8,)
    """

    computes = True  # what it lacks (a Dask task's GivenReferences holds only what it was sent)

    def __init__(self, cache_dir: str | Path | None = None, use_cache: bool = True,
                 processes: int = 0, sweep: bool = False):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self.processes = processes
        # close() removes the entries others wrote meanwhile: for a run whose
        # workers start after it is made and end before it closes (the CLI's)
        self.sweep = sweep and use_cache
        self._pool = None
        self._known: dict[tuple, concurrent.futures.Future] = {}
        self._started: dict[tuple, Any] = {}  # computations expect() began, by key
        self._guard = threading.Lock()
        self._vouched = self._entries_now()
        self._suspect: dict[Path, bytes] = {}  # unvouched entries found, until recomputed
        self.altered: list[str] = []  # entries another process changed, found so far

    def _entries_now(self) -> Vouched:
        """The cache entries there now, vouched for as long as they stay as they are."""
        vouched = Vouched()
        folder = self.cache_dir / f"oracle-v{ORACLE_VERSION}"
        if self.use_cache and folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name.endswith(".json"):
                    vouched.note(Path(entry.path), None)
        return vouched

    def _vouches(self, path: Path) -> bool:
        return self._vouched.holds(path) or _WRITTEN_HERE.holds(path)

    def _put_back_changed(self) -> None:
        """Put back the entries this Oracle read or wrote that another process
        changed since; another run's same reference (its own ``seconds``) stays.
        An entry removed meanwhile is put back unreported: a removal makes
        nobody believe a wrong reference, and another run sharing the cache
        removes this run's new entries when it ends (``sweep``)."""
        for path in self._vouched.changed():
            ours = json.loads(self._vouched.held(path))
            try:
                now = path.read_bytes()
            except FileNotFoundError:
                self._vouched.restore(path)
                continue
            except OSError:
                now = b""
            if _same_entry(now, ours["key"], ours["reference"]):
                self._vouched.note(path, now)
                continue
            self._vouched.restore(path)
            self._altered(path, "was changed by another process during the run (an "
                          "implementation under test?); the oracle's reference was put back")

    def _remove_foreign(self) -> None:
        """Remove the entries that appeared or changed since this Oracle was
        made, written by no Oracle of this process: believed by the next run,
        a forged one would judge it. One holding a reference this run holds
        too is kept; one at the key of a reference this run holds but with
        another value is forged (``altered``); the others (another run
        sharing the cache, or code under test) are only recomputed when needed."""
        folder = self.cache_dir / f"oracle-v{ORACLE_VERSION}"
        foreign = [Path(e.path) for e in (os.scandir(folder) if folder.is_dir() else ())
                   if e.name.endswith(".json") and not self._vouches(Path(e.path))]
        removed = 0
        for path in foreign:
            held = self._held(path)
            if held is True:
                continue
            path.unlink(missing_ok=True)
            if held is False:
                self._altered(path, "held another reference, written during the run by "
                              "another process (an implementation under test?); removed")
            removed += 1
        if removed:
            warnings.warn(f"removed {removed} oracle cache entr{'y' if removed == 1 else 'ies'} "
                          f"that another process wrote in {folder} during this run (another "
                          "adjointbench run sharing the cache, or an implementation under "
                          "test); they are recomputed when needed", stacklevel=3)

    def _held(self, path: Path) -> bool | None:
        """Whether the entry at ``path`` holds the reference this Oracle holds
        at its key; None where it holds none there (or the entry is unreadable)."""
        try:
            text = path.read_bytes()
            key = json.loads(text)["key"]
            known = self._known.get((key.get("kind", "first"), key["problem"], key["size"],
                                     key["seed"], key["point"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if known is None or not known.done() or known.exception() is not None:
            return None
        kind = key.get("kind", "first")
        expected = entry_key(kind, key["problem"], key["size"], key["seed"], key["point"])
        if key != expected:  # another version's, say: discarded when read anyway
            return None
        return _same_entry(text, expected, known.result().to_json())

    def close(self) -> None:
        """End the oracle processes, if any were started (work in flight is
        dropped), and put back the entries it used that another process changed."""
        self._put_back_changed()
        if self.sweep:
            self._remove_foreign()
        with self._guard:
            pool, self._pool = self._pool, None
            self._started.clear()
        if pool is not None:
            processes = list((pool._processes or {}).values())  # started so far
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()  # a reference in flight would delay the exit for minutes
                process.join()

    def path(self, problem: str, size: int, seed: int, point: int = 0,
             kind: str = "first") -> Path:
        suffix = "" if kind == "first" else f"-{kind}"
        return (self.cache_dir / f"oracle-v{ORACLE_VERSION}"
                / f"{problem}-n{size}-s{seed}-p{point}{suffix}.json")

    def expect(self, kind: str, problem: str, size: int, seed: int, points: Iterable[int]) -> None:
        """Begin computing, in the oracle processes, the references of these
        points that are not cached, so that they are computed side by side
        while the cell asks for them one by one (a cell's three input points
        on a cold cache). Without oracle processes, nothing."""
        if not self.processes:
            return
        for point in points:
            if ((kind, problem, size, seed, point) in self._known
                    or self._vouches(self.path(problem, size, seed, point, kind))):
                continue  # asked for already, or cached
            key = entry_key(kind, problem, size, seed, point)
            with self._guard:
                if _frozen(key) in self._started:
                    continue
                try:
                    self._started[_frozen(key)] = self._open_pool().submit(
                        computed_elsewhere, kind, key)
                except Exception:  # noqa: BLE001 - a broken pool: computed when asked for
                    return

    def holds(self, kind: str, problem: str, size: int, seed: int = 0, point: int = 0) -> bool:
        """Whether the reference is at hand without computing it: this Oracle
        has it, or the cache holds an entry it vouches for (``kind``:
        ``first`` or ``second``)."""
        known = self._known.get((kind, problem, size, seed, point))
        if known is not None and known.done() and known.exception() is None:
            return True
        path = self.path(problem, size, seed, point, kind)
        return self.use_cache and path.exists() and self._vouches(path)

    def reference(self, problem: str, size: int, seed: int = 0, point: int = 0) -> Reference:
        """Values and first derivatives (reference/oracle.py)."""
        return self._get("first", problem, size, seed, point)

    def second_order(self, problem: str, size: int, seed: int = 0,
                     point: int = 0) -> SecondOrder:
        """Second derivatives of <w, f> along the cell's probes (reference/second_order.py)."""
        return self._get("second", problem, size, seed, point)

    def _get(self, kind: str, problem: str, size: int, seed: int, point: int):
        key = (kind, problem, size, seed, point)
        with self._guard:
            known, mine = self._known.get(key), key not in self._known
            if mine:
                known = self._known[key] = concurrent.futures.Future()
        if mine:
            try:
                expected = entry_key(kind, problem, size, seed, point)
                known.set_result(self._load(kind, expected) or self._compute(kind, expected))
            except BaseException as e:  # every waiter sees it; the next asker tries again
                with self._guard:
                    del self._known[key]
                known.set_exception(e)
                raise
        return known.result()

    def _load(self, kind: str, key: dict):
        path = self.path(key["problem"], key["size"], key["seed"], key["point"], kind)
        if not (self.use_cache and path.exists()):
            return None
        try:
            text = path.read_bytes()
            if not self._vouches(path):  # read first: a write during the read shows too
                self._suspect[path] = text
                return None
            entry = json.loads(text)
            if entry["key"] != key:
                raise ValueError("its key does not match this problem, size, seed, point, "
                                 "inputs and oracle version")
            if entry["checksum"] != _checksum(entry["reference"]):
                raise ValueError("its checksum does not match its contents")
            self._vouched.note(path, text)
            return KINDS[kind][0](entry["reference"])
        except (ValueError, KeyError, TypeError, OSError) as e:  # UnicodeDecodeError too
            warnings.warn(f"discarding the oracle cache entry {path}: {e}; recomputing it",
                          stacklevel=2)
            return None

    def _compute(self, kind: str, key: dict):
        data = self._elsewhere(kind, key) if self.processes else None
        if data is not None:
            reference = KINDS[kind][0](data)
        else:
            with _HERE:
                reference = KINDS[kind][1](get_problem(key["problem"]), key["size"],
                                           key["seed"], point=key["point"])
        if self.use_cache:
            self._store(kind, key, reference)
        return reference

    def _elsewhere(self, kind: str, key: dict) -> dict | None:
        """The reference computed in an oracle process, as JSON; None if it
        could not be (computed here instead, where its error is raised)."""
        with self._guard:
            pool = self._open_pool()
            pending = self._started.pop(_frozen(key), None)
            try:
                pending = pending or pool.submit(computed_elsewhere, kind, key)
            except Exception:  # noqa: BLE001 - a broken pool (an oracle process died)
                return None
        while True:
            try:
                return pending.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if self._pool is not pool:
                    raise HarnessFault("the oracle was closed while a reference was being "
                                       "computed") from None
            except Exception:  # noqa: BLE001 - recomputed here, where it raises as it would
                return None

    def _open_pool(self):
        """The oracle processes (under ``_guard``), started on first need."""
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_oracle_process, initargs=(os.getpid(),))
        return self._pool

    def _store(self, kind: str, key: dict, reference) -> None:
        path = self.path(key["problem"], key["size"], key["seed"], key["point"], kind)
        data = reference.to_json()
        text = json.dumps({"key": key, "checksum": _checksum(data), "reference": data}).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, text)
        except OSError as e:
            raise HarnessFault(
                f"cannot write the oracle cache {path.parent}: {e.strerror or e}. Make it "
                "writable or set ADJOINTBENCH_CACHE_DIR to a writable folder") from None
        self._vouched.note(path, text)
        _WRITTEN_HERE.note(path, text)
        if not _same_entry(self._suspect.pop(path, None), key, data):
            self._altered(path, "held another reference, written during the run by another "
                          "process (an implementation under test?); recomputed and written over")

    def _altered(self, path: Path, what: str) -> None:
        self.altered.append(f"the oracle cache entry {path} {what}")
        warnings.warn(self.altered[-1], stacklevel=3)


def _same_entry(text: bytes | None, key: dict, reference: dict) -> bool:
    """Whether an entry's bytes (None: no entry) hold ``reference`` at ``key``:
    another harness sharing the cache wrote it, or nobody did."""
    if text is None:
        return True
    timeless = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # its own run's
    try:
        entry = json.loads(text)
        return entry["key"] == key and timeless(entry["reference"]) == timeless(reference)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
