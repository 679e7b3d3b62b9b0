"""The result record, one per cell, and its JSON Lines file."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from adjointbench.faults import FolderInUse, HarnessFault
from adjointbench.vouched import Vouched, write_atomically

OUTCOMES = ("ok", "mismatch", "unsupported", "error", "timeout", "crashed", "ill_conditioned")
FAILURES = ("mismatch", "error", "timeout", "crashed")
RETRIED = ("timeout", "crashed", "error")  # what --retry runs again
FLOAT_FIELDS = ("max_abs_err", "max_rel_err", "tol", "condition", "oracle_err", "time_median_s",
                "time_iqr_s", "primal_median_s", "ratio_to_primal", "ratio_q1", "ratio_q3",
                "compile_s")


@dataclass
class Record:
    problem: str
    impl: str
    op: str
    dtype: str
    device: str
    size: int
    seed: int
    outcome: str
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    tol: float | None = None
    condition: float | None = None
    oracle_err: float | None = None
    message: str = ""
    seconds: float = 0.0
    # gradient cells: the method; for problems that record their values (and
    # gradients), the value computed and the oracle's (its projections
    # <grad, v_k> at sizes without a full reference)
    method: str | None = None
    value: list | None = None
    reference: list | None = None
    # timings (suites/timing.py), per call: "bench" cells and gradient cells
    suite: str = "check"  # "check" (correctness) or "bench" (throughput)
    # how the oracle certified its reference: exact (sympy), fd (mpmath
    # extrapolation) or fd64 (float64 extrapolation); its relative error is oracle_err
    level: str | None = None
    point: int | None = None  # the input point the record reports: the worst one
    time_median_s: float | None = None
    time_iqr_s: float | None = None
    primal_median_s: float | None = None
    # bench cells: the median of paired (operation, primal) sample ratios and
    # its quartiles over ``rounds`` pairs (suites/timing.py's sample_paired)
    ratio_to_primal: float | None = None
    ratio_q1: float | None = None
    ratio_q3: float | None = None
    compile_s: float | None = None
    rounds: int | None = None
    number: int | None = None  # calls per timed sample
    timing_warning: str | None = None  # why the figures are suspect (suites/bench.py)
    # bench cells: of the warm-up calls of the operation and its primal, those
    # whose result was still being computed when the implementation's wait
    # returned (suites/timing.py's warm_up; then timed with the harness's wait)
    early_waits: int | None = None
    # bench cells: of the operation and its primal, those whose run() returned
    # at its second warm-up call the very arrays of its first (a cached
    # result, which the timed calls only looked up: suites/bench.py's kept_results)
    kept_results: int | None = None
    # bench cells on the CPU: seconds of to_numpy() on a timed call's result
    # (the fastest of a few), which is not timed: a run() that defers its work
    # to to_numpy would be timed at nothing (suites/bench.py's timing_warning)
    to_numpy_s: float | None = None
    threads: int | None = None  # BLAS/OpenMP threads (torch's where it is the framework)
    # timed cells: CPU over wall seconds of the timed samples, the cores the
    # calls kept busy (suites/timing.py's Cores), judged against the run's threads
    cores: float | None = None
    # bench cells: the fewer of the cores the operation and its primal kept busy
    # (the gradient cells' one call: ``cores``); below suites/timing.py's
    # IDLE_BELOW the calls mostly waited (suites/bench.py's idle_warning)
    least_cores: float | None = None
    # bench cells: per-call times of the operation and of its primal, pair by
    # pair (at most suites/bench.py's STORED_SAMPLES), for compare's rank test
    samples_s: list | None = None
    primal_samples_s: list | None = None
    # primal cells: a fixed reference call timed in alternation with the primal
    # (suites/timing.py's reference_workload), the unit compare judges it in
    reference_samples_s: list | None = None
    # bench cells timed in several rounds, each in fresh worker processes
    # (suites/sweep.py's time_in_rounds): how many of the stored samples came
    # from each round, in order
    samples_per_round: list | None = None
    # the host that ran the cell, where it is not the run's own (a Dask
    # worker's; merged folders: each folder's environment.json machine)
    machine: str | None = None
    # check cells: the input points the cell was asked to check (--points),
    # so that --resume with more runs it again rather than keep fewer
    points: int | None = None

    def to_json(self) -> dict:
        # field by field, lists copied one level: ``asdict``'s deep copy took
        # 73 us a record, 0.9 s over a check sweep and a main job; this, 16 us
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data.update({name: list(v) for name, v in data.items() if isinstance(v, list)})
        for key in FLOAT_FIELDS:
            if data[key] is not None and not _finite(data[key]):
                data[key] = str(data[key])  # JSON has no inf/nan
        for key in ("value", "reference"):
            if data[key] is not None:
                data[key] = [x if _finite(x) else str(x) for x in _flat(data[key])]
        return data

    @classmethod
    def for_cell(cls, cell, outcome: str, message: str = "") -> "Record":
        """A record of ``cell`` (its key fields) with this outcome, no figures yet."""
        return cls(cell.problem, cell.impl, cell.op, cell.dtype, cell.device, cell.size,
                   cell.seed, outcome=outcome, message=message, method=cell.method,
                   suite=cell.suite, points=cell.points if cell.suite == "check" else None)

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_FIELD_NAMES = tuple(f.name for f in fields(Record))


def outcome_of(error: BaseException) -> tuple[str, str]:
    """The one mapping from an exception to (outcome, message), for every cell.

    A worker that answers too late is ``timeout``, one that dies ``crashed``;
    the oracle's refusal to certify is ``ill_conditioned``, unless the
    reference is merely too weak to judge (a float64 extrapolation), which
    is ``unsupported``; a case an
    implementation declines (NotImplementedError) is ``unsupported``; a result
    of the wrong shape, dtype or finiteness, an impure or non-reentrant call
    (WrongResult) is ``mismatch``; anything else the implementation raises is
    ``error``.
    """
    from adjointbench.faults import MESSAGE_LIMIT, described, said
    from adjointbench.reference.oracle import UncertifiedReference, WeakReference
    from adjointbench.suites.compare import WrongResult
    from adjointbench.suites.executors import ImplementationError, WorkerCrashed, WorkerTimeout

    table = ((WorkerTimeout, "timeout"), (WorkerCrashed, "crashed"),
             (ImplementationError, "error"), (WeakReference, "unsupported"),
             (UncertifiedReference, "ill_conditioned"),
             (NotImplementedError, "unsupported"), (WrongResult, "mismatch"))
    for kind, outcome in table:
        if isinstance(error, kind):  # the harness's words, around a message cut where raised
            return outcome, said(error, limit=2 * MESSAGE_LIMIT)
    return "error", described(error)


def _flat(values: list) -> list:
    return [x for v in values for x in (_flat(v) if isinstance(v, list) else [v])]


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


SYNC_EVERY_S = 0.5  # appends closer together than this share one fsync


class ResultsFile:
    """Appends records to ``DIR/results.jsonl``, each written to the kernel at
    once (a harness killed in any way loses none) and synced to the disk in
    groups: at the first append, then at the first append SYNC_EVERY_S or
    more after the last sync, and at ``unlock()`` (an fsync per record cost
    0.2-0.8 ms: seconds of a sweep of 12,000 cells, which waits for each
    record before its next cell). A machine that loses power can lose the
    records since the last sync (the kernel also writes them back on its
    own, within about 30 s); ``--resume`` runs those cells again.

    A run holds ``DIR/.lock`` (an ``flock``, released by the kernel when the
    process ends however it ends, so a dead holder never leaves it stale)
    while it appends: a second run on the same folder is refused.

    From ``lock()`` on, the file holds what the harness read and wrote and
    nothing else (adjointbench/vouched.py): a record an implementation's
    worker appends, or any other change made beside the harness, is found
    before the next write, at every read and at ``unlock()``; the harness's
    own content is put back and the change listed in ``altered``.
    """

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "results.jsonl"
        self._lock = None
        self._vouched: Vouched | None = None  # from lock(): the file as the harness wrote it
        self.altered: list[str] = []  # what was found changed, once each time
        self._synced_at: float | None = None  # when the disk last got every record
        self._pending = False  # records written since

    def lock(self) -> None:
        """Take the folder's lock for this process, or raise :class:`FolderInUse`
        naming the holder's PID."""
        import fcntl

        path = self.path.parent / ".lock"
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise FolderInUse(
                f"{self.path.parent} is in use by another adjointbench run (PID {holder}); "
                "wait for it to finish, or choose another --out") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle
        if self.path.exists() and not self.path.is_file():
            return  # refused by read(): nothing of ours to keep
        self._vouched = Vouched()
        self._written(bytearray(self.path.read_bytes() if self.path.is_file() else b""))

    def unlock(self) -> None:
        try:
            self.sync()
        finally:
            if self._lock is not None:
                self._keep_own(thorough=True)  # the workers are gone: a last look, byte by byte
                self._lock.close()  # closing releases the flock
                self._lock = None
                self._vouched = None

    def _keep_own(self, thorough: bool = False) -> None:
        """Put the harness's content back if another process changed the file."""
        if self._vouched is None or self._vouched.holds(self.path, thorough):
            return
        self.altered.append(f"{self.path} was changed by another process during the run "
                            "(an implementation under test?); the harness's own records "
                            "were put back")
        print(f"adjointbench: warning: {self.altered[-1]}", file=sys.stderr)
        try:
            self._vouched.restore(self.path)
        except OSError as e:
            raise HarnessFault(f"cannot restore {self.path}: {e.strerror or e}") from None

    def _written(self, content: bytearray) -> None:
        """The file holds ``content`` now, as the harness wrote it (kept as a
        bytearray, so that an append grows it in place)."""
        if self._vouched is not None:
            self._vouched.note(self.path, content)

    def append(self, record: Record) -> None:
        self._keep_own()
        line = (json.dumps(record.to_json()) + "\n").encode()
        try:
            with open(self.path, "a+b") as f:
                line = self._separator(f) + line
                f.write(line)
                f.flush()
                self._pending = True
                if self._synced_at is None or time.monotonic() - self._synced_at >= SYNC_EVERY_S:
                    self._sync(f.fileno())
        except OSError as e:
            self._own_failed_write()
            self._pending = False  # this error stops the run: unlock() need not tell it again
            raise HarnessFault(f"cannot append to {self.path}: {e.strerror or e}; the records "
                               "written so far are kept. Free space or fix the folder's "
                               "permissions, then rerun with --resume") from None
        if self._vouched is not None:
            own = self._vouched.held(self.path)
            own += line
            self._written(own)

    def _sync(self, fd: int) -> None:
        os.fsync(fd)
        self._synced_at, self._pending = time.monotonic(), False

    def sync(self) -> None:
        """Every record written so far on the disk."""
        if not self._pending:
            return
        try:
            with open(self.path, "rb") as f:
                self._sync(f.fileno())
        except OSError as e:
            raise HarnessFault(f"cannot sync {self.path}: {e.strerror or e}; run again with "
                               "--resume to redo any cell whose record is missing") from None

    def _own_failed_write(self) -> None:
        """A write of ours that failed part way is ours too (a damaged last
        line, skipped when read), not another process's change."""
        if self._vouched is not None:
            with contextlib.suppress(OSError):
                self._written(bytearray(self.path.read_bytes()))

    @staticmethod
    def _separator(f) -> bytes:
        """A newline if the file does not end with one (a write cut short),
        so that the next record never joins a damaged line."""
        if f.seek(0, os.SEEK_END) == 0:
            return b""
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(0, os.SEEK_END)
        return b"" if last == b"\n" else b"\n"

    def read(self) -> tuple[list[Record], int]:
        """The records, and how many damaged lines were skipped: a truncated
        last line, a line that is not a JSON object of a record, bytes that
        are not UTF-8."""
        self._keep_own()
        if not self.path.exists():
            return [], 0
        if not self.path.is_file():
            raise HarnessFault(f"{self.path} is not a regular file; move it away or choose "
                               "another --out")
        content = bytes(self._vouched.held(self.path)) if self._vouched else self.path.read_bytes()
        records, damaged = [], 0
        for raw in content.splitlines():
            if not raw.strip():
                continue
            try:
                data = json.loads(raw.decode("utf-8"))
                if not isinstance(data, dict):
                    raise TypeError("not a JSON object")
                records.append(Record.from_json(data))
            except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError):
                damaged += 1
        return records, damaged

    def rewrite(self, records: list[Record]) -> None:
        """Replace the file's content by ``records`` at once (a temporary file
        renamed over it: a kill leaves the old file or the new one)."""
        self._keep_own()
        content = "".join(json.dumps(r.to_json()) + "\n" for r in records).encode()
        try:
            write_atomically(self.path, content)
        except OSError as e:
            raise HarnessFault(f"cannot rewrite {self.path}: {e.strerror or e}") from None
        self._written(bytearray(content))

    def repair(self) -> int:
        """Rewrite the file without damaged lines; returns how many were dropped."""
        records, damaged = self.read()
        if damaged:
            self.rewrite(records)
        return damaged


def without_duplicates(records: list[Record]) -> tuple[list[Record], int]:
    """Each cell's first record, and how many later records of the same key
    were dropped (two runs that appended to one file)."""
    seen, kept = set(), []
    for r in records:
        key = record_key(r)
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept, len(records) - len(kept)


def record_key(r) -> tuple:
    """What identifies a cell across runs (a Record or a cell)."""
    return (getattr(r, "suite", "check"), r.problem, r.impl, r.op, r.size,
            getattr(r, "dtype", "float64"), r.device, r.seed, getattr(r, "method", None))
