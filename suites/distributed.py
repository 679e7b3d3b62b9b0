"""Cells as Dask tasks (``--executor dask``): a sweep spread over the
processes and machines of a Dask cluster, recorded here as if run locally.

The parent (this process) plans, filters what no implementation supports,
and writes every record into the one results file (same lock, resume, retry
and outcomes as a local run). On the cluster, each reference is one task per
(problem, size, seed, point), computed by the trusted oracle of whichever
worker takes it and handed to every task that needs it. Each task runs the
cells of one (implementation, problem, device) in turn (:func:`task_groups`,
as a local parallel sweep hands out groups), each cell in an
:class:`~adjointbench.suites.isolation.IsolatedRunner` of its Dask worker:
the comparisons in the Dask worker, the implementation in a subprocess of
its own under the cell's timeout and memory cap, so a hang or a segfault is
an outcome and never takes a Dask worker down. A Dask worker that dies
mid-task has its task rerun elsewhere by the scheduler; a group whose
workers died each time it was tried is tried again cell by cell, so that
only the cell that kills them is recorded ``crashed``. The parent records
each cell once, as the worker streams its record (:func:`stream_record`),
or from its task's result.

GPU cells need a worker started with ``--resources GPU=1``; bench cells take
a lease per host, so no two time at once on one machine (nor beside the
references a bench computes, which take it too).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import socket
import threading
import uuid
from dataclasses import replace
from typing import Callable, Iterator

from adjointbench.faults import HarnessFault
from adjointbench.suites.cells import Cell
from adjointbench.suites.results import Record

DASK_EXTRA = "adjointbench[dask]"
CONNECT_TIMEOUT_S = 15
GPU_RESOURCE = "GPU"
POLL_S = 0.05  # the parent's wait for a streamed record between looks at its tasks


class MissingExtra(ImportError):
    """``--executor dask`` without Dask installed."""


def import_distributed():
    """dask.distributed, or :class:`MissingExtra` naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise MissingExtra(f"--executor dask needs Dask's distributed scheduler: pip install "
                           f"'{DASK_EXTRA}' (or dask[distributed])") from None
    return distributed


@contextlib.contextmanager
def dask_client(address: str | None, workers: int):
    """A client of the cluster at ``address``, or of a local cluster of
    ``workers`` single-threaded worker processes, closed on the way out."""
    import logging

    distributed = import_distributed()
    if address:
        try:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot reach the Dask scheduler at {address} ({e}); start "
                                  "one with `dask scheduler` and workers with `dask worker "
                                  f"{address}`, or drop --scheduler for a local cluster") from None
        except Exception as e:  # noqa: BLE001 - what answered is not a scheduler we can use
            raise ConnectionError(
                f"cannot use {address} as a Dask scheduler ({type(e).__name__}: {e}): give "
                "the address `dask scheduler` prints (its port, 8786 by default, not the "
                "dashboard's), with Dask's TLS settings configured for a tls:// one") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except TimeoutError:
                raise ConnectionError(f"the Dask scheduler at {address} has no workers: start "
                                      f"some with `dask worker {address}`") from None
            yield client
        return
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def cluster_summary(client) -> dict:
    """The scheduler and its workers (host, threads, resources), for environment.json."""
    info = client.scheduler_info()
    dashboard = "dashboard" in info.get("services", {}) and client.dashboard_link
    return {"scheduler": info.get("address"), "dashboard": dashboard or None,
            "dask_workers": {address: {"host": w.get("host"), "nthreads": w.get("nthreads"),
                                       "resources": w.get("resources") or {}}
                             for address, w in info.get("workers", {}).items()}}


def has_gpu_workers(client) -> bool:
    return any((w.get("resources") or {}).get(GPU_RESOURCE, 0) >= 1
               for w in client.scheduler_info().get("workers", {}).values())


# ---- on the Dask workers ---------------------------------------------------

class GivenReferences:
    """The oracle of a cell task: the references its reference tasks computed.
    What the oracle raised there (an uncertified reference) is raised here,
    where the cell's record makes it an outcome, as in a local run."""

    computes = False  # it holds what it was sent, and nothing else

    def __init__(self, first: dict, second: dict):
        from adjointbench.reference.cache import default_cache_dir

        self.cache_dir = default_cache_dir()  # the worker's JAX compilation cache
        self._given = {"first": first, "second": second}

    def _get(self, kind: str, problem: str, size: int, seed: int, point: int):
        try:
            answer = self._given[kind][point]
        except KeyError:
            raise HarnessFault(f"no {kind}-order reference was sent for {problem} n={size} "
                               f"seed={seed} point {point}") from None
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def holds(self, kind, problem, size, seed=0, point=0) -> bool:
        """Whether this reference was sent (to a bench cell, those the
        harness's machine held: DaskCells._held_references)."""
        answer = self._given[kind].get(point)
        return answer is not None and not isinstance(answer, BaseException)

    def reference(self, problem, size, seed=0, point=0):
        return self._get("first", problem, size, seed, point)

    def second_order(self, problem, size, seed=0, point=0):
        return self._get("second", problem, size, seed, point)


_ORACLE = threading.Lock()  # mpmath's precision is process-global: one reference at a time


def compute_reference(kind: str, problem: str, size: int, seed: int, point: int,
                      for_bench: bool = False):
    """One reference task: the worker's oracle (and its disk cache), or the
    exception it raised, returned so that each cell makes it an outcome.
    One at a time per process, whatever the worker's --nthreads: two at once
    would change each other's digits. A bench's (``for_bench``) holds its
    host's bench lease (:func:`_host_lease`): mpmath's work beside a timed
    cell would disturb that cell's figures."""
    from adjointbench.reference import Oracle

    oracle = Oracle()
    try:
        with _ORACLE, _host_lease(for_bench):
            return _computed(oracle, kind, problem, size, seed, point)
    except HarnessFault:
        raise
    except Exception as e:  # noqa: BLE001 - judged per cell (ill_conditioned, unsupported)
        return e


def _computed(oracle, kind: str, problem: str, size: int, seed: int, point: int):
    if kind == "first":
        return oracle.reference(problem, size, seed, point)
    return oracle.second_order(problem, size, seed, point)


_local = threading.local()  # the runners of one thread of a Dask worker


def _isolated_runner(timeout_s: float, environment: dict):
    """This thread's runner for these settings. The Dask worker may be a
    daemonic process, which multiprocessing forbids to have children; the
    implementation workers end with it all the same (isolation.py ties each
    to its parent's life)."""
    import multiprocessing

    from adjointbench.suites.isolation import IsolatedRunner

    runners = _local.__dict__.setdefault("runners", {})
    settings = (timeout_s, tuple(sorted(environment.items())))
    if settings not in runners:
        if multiprocessing.current_process().daemon:
            multiprocessing.current_process().daemon = False
        runners[settings] = IsolatedRunner(timeout_s, environment=environment,
                                           oracle=GivenReferences({}, {}))
    return runners[settings]


@contextlib.contextmanager
def _host_lease(held: bool = True):
    """The host's one bench lease, ``held`` by bench cells and the references
    a bench computes: none of them runs beside a timed cell."""
    if not held:
        yield
        return
    from distributed import Semaphore

    # the holder refreshes its lease; a dead holder's lapses (the scheduler's
    # distributed.scheduler.locks.lease-timeout)
    with Semaphore(max_leases=1, name=f"adjointbench-bench-{socket.gethostname()}"):
        yield


def run_cell_task(cell: Cell, first: dict, second: dict, timeout_s: float,
                  environment: dict) -> Record:
    """One cell task, on a Dask worker: its record, naming the machine."""
    runner = _isolated_runner(timeout_s, environment)
    with _host_lease(cell.suite == "bench"):
        record = runner.run(cell, oracle=GivenReferences(first, second))
    return replace(record, machine=socket.gethostname())


def run_group_task(cells: list[Cell], firsts: list[dict], seconds: list[dict],
                   timeout_s: float, environment: dict, topic: str | None = None,
                   key: str | None = None) -> list[Record]:
    """The cells of one group (:func:`task_groups`) in turn, on one Dask
    worker: the same records as one task per cell, in one implementation
    worker that reuses its compiled operations and checked results. Each
    record is also sent on ``topic`` as its cell finishes (:func:`stream_record`)."""
    records = []
    for index, (cell, first, second) in enumerate(zip(cells, firsts, seconds)):
        records.append(run_cell_task(cell, first, second, timeout_s, environment))
        if topic:
            stream_record(topic, key, index, records[-1])
    return records


def stream_record(topic: str, key: str, index: int, record: Record) -> None:
    """Send a finished cell's record to the parent at once, through the
    scheduler's event log, so that the parent writes it (and shows progress)
    before the rest of its group is done: an interrupted sweep keeps it. The
    task's result still carries every record; a record lost here is taken
    from there."""
    from distributed import get_worker

    try:
        get_worker().log_event(topic, record_message(key, index, record))
    except Exception:  # noqa: BLE001 - best effort: the task's result has the record
        pass


def record_message(key: str, index: int, record: Record) -> dict:
    """A streamed record: msgpack-able, its floats (NaN included) kept as floats."""
    return {"key": key, "index": index,
            "record": json.dumps(vars(record), default=lambda x: x.tolist())}


def _streamed_record(message, open_tasks: dict[str, set]) -> Record | None:
    """The record a worker streamed, unless its task is no longer open (its
    result was taken, or its cells were handed to other tasks) or the
    record was already taken."""
    taken = open_tasks.get(message.get("key")) if isinstance(message, dict) else None
    if taken is None or message.get("index") in taken:
        return None
    taken.add(message["index"])
    return Record(**json.loads(message["record"]))


def _arrived(events: queue.SimpleQueue, wait_s: float) -> list:
    """The messages in ``events``, waiting up to ``wait_s`` for the first."""
    try:
        messages = [events.get(timeout=wait_s) if wait_s > 0 else events.get_nowait()]
    except queue.Empty:
        return []
    with contextlib.suppress(queue.Empty):
        while True:
            messages.append(events.get_nowait())
    return messages


def describe_task(spec: str, timeout_s: float, environment: dict) -> dict:
    """An implementation's description as a (GPU) worker sees it, from its
    own implementation worker (never loaded into the Dask worker itself)."""
    return _isolated_runner(timeout_s, environment).describe(spec)


# ---- in the parent ---------------------------------------------------------

def declined_by(isolated) -> Callable[[Cell], str | None]:
    """Why the parent's own worker of a cell's implementation says the cell is
    unsupported (its devices aside: a GPU worker may have them), asked once
    per (implementation, problem, operation, method, dtype). Whatever else
    happens (the implementation raises, its worker dies) is left for the
    cluster to record, as a local run would."""
    from adjointbench.suites.runner import unsupported_reason

    seen: dict = {}

    def declined(cell: Cell) -> str | None:
        key = (cell.impl, cell.problem, cell.op, cell.method, cell.dtype)
        if key not in seen:
            try:
                seen[key] = unsupported_reason(cell, isolated.executor(cell.impl),
                                               devices=False)
            except HarnessFault:
                raise
            except Exception:  # noqa: BLE001 - an outcome, found where the cell runs
                seen[key] = None
        return seen[key]
    return declined


def gpu_worker_devices(client, names: list[str], cells: "DaskCells") -> dict[str, tuple]:
    """Each implementation's devices as a worker with a GPU resource sees
    them ({} without such a worker)."""
    if not has_gpu_workers(client):
        return {}
    futures = {name: client.submit(describe_task, name, cells.timeout_s, cells.environment,
                                   resources={GPU_RESOURCE: 1}, pure=False) for name in names}
    return {name: tuple(future.result()["devices"]) for name, future in futures.items()}


class DaskCells:
    """``finished(cells)``: each cell's record as its Dask task finishes.

    ``declined(cell)`` (the parent's own look at the implementation) gives
    the reason a cell is unsupported, or None: such cells are recorded here
    without a task and without references.
    """

    def __init__(self, client, timeout_s: float, environment: dict,
                 declined: Callable[[Cell], str | None], oracle=None):
        self.client, self.timeout_s, self.environment = client, timeout_s, environment
        self.declined = declined
        self.oracle = oracle  # this machine's: what bench cells are judged against
        self.sweep = uuid.uuid4().hex[:8]  # task keys of this sweep, apart from any other
        # each task's key is new, a bench round's too: a key the scheduler still
        # held from an earlier round would hand back that round's records
        self._tasks = itertools.count()

    def _reference(self, kind: str, cell: Cell, point: int):
        key = f"adjointbench-{self.sweep}-{kind}-{cell.problem}-n{cell.size}-s{cell.seed}-p{point}"
        return self.client.submit(compute_reference, kind, cell.problem, cell.size, cell.seed,
                                  point, cell.suite == "bench", key=key, pure=False)

    def _held_references(self, cell: Cell) -> tuple[dict, dict]:
        """A bench cell's references at input point 0, where this machine's
        oracle holds them already (at a size the bench computes none for:
        suites/bench.py's references_computed_for): its timed result is
        judged against them on the Dask worker, as in a local run
        (suites/runner.py's judge_timed_result)."""
        from adjointbench.suites.bench import JUDGED_OPS
        from adjointbench.suites.runner import holds_references, reference_kinds

        if (self.oracle is None or cell.op not in JUDGED_OPS
                or not holds_references(self.oracle, cell)):
            return {}, {}
        first = {0: self.oracle.reference(cell.problem, cell.size, cell.seed)}
        return first, ({0: self.oracle.second_order(cell.problem, cell.size, cell.seed)}
                       if "second" in reference_kinds(cell.op) else {})

    def _references_of(self, cell: Cell, references: dict) -> tuple[dict, dict]:
        """The reference tasks a cell needs, by input point: first and second
        order (a bench cell's at its input point 0 where the bench computes
        them, else those this machine holds: :meth:`_held_references`)."""
        from adjointbench.suites.bench import references_computed_for
        from adjointbench.suites.runner import reference_kinds, seeded_points

        if cell.suite == "bench" and not references_computed_for(cell):
            return self._held_references(cell)
        first, second = {}, {}
        if cell.suite in ("check", "bench"):
            for point in seeded_points(replace(cell, points=1) if cell.suite == "bench" else cell):
                for kind in reference_kinds(cell.op):
                    key = (kind, cell.problem, cell.size, cell.seed, point)
                    if key not in references:  # one task per reference, shared
                        references[key] = self._reference(kind, cell, point)
                    (first if kind == "first" else second)[point] = references[key]
        return first, second

    def _submit(self, group: list[Cell], references: dict, topic: str | None = None):
        """One task for a group of cells (:func:`task_groups`), or one cell:
        (its future, its key)."""
        needed = [self._references_of(cell, references) for cell in group]
        head = group[0]
        key = (f"adjointbench-{self.sweep}-{head.op if len(group) == 1 else 'group'}-"
               f"{head.suite}-{head.id}-t{next(self._tasks)}")
        return self.client.submit(
            run_group_task, group, [first for first, _ in needed],
            [second for _, second in needed], self.timeout_s, self.environment, topic, key,
            resources={GPU_RESOURCE: 1} if head.device != "cpu" else None, pure=False,
            key=key), key

    def finished(self, cells: list[Cell]) -> Iterator[Record]:
        """Each cell's record as soon as its Dask worker streams it
        (:func:`stream_record`), else when its task finishes; a group whose
        workers died is tried again cell by cell, its streamed cells not."""
        distributed = import_distributed()
        runnable = []
        for cell in cells:
            reason = self.declined(cell)
            if reason:
                yield Record.for_cell(cell, "unsupported", reason)
            else:
                runnable.append(cell)
        events: queue.SimpleQueue = queue.SimpleQueue()
        topic = f"adjointbench-{self.sweep}-records-{next(self._tasks)}"
        self.client.subscribe_topic(topic, lambda event: events.put(event[1]))
        references: dict = {}
        pending = {}  # future: (key, cells)
        for group in task_groups(runnable):
            future, key = self._submit(group, references, topic)
            pending[future] = (key, group)
        del references  # each reference lives while a task needs it
        taken: dict[str, set] = {key: set() for key, _ in pending.values()}  # open tasks' streamed
        tasks = distributed.as_completed(list(pending))
        try:
            while pending:
                for message in _arrived(events, 0 if tasks.has_ready() else POLL_S):
                    record = _streamed_record(message, taken)
                    if record is not None:
                        yield record
                for future in tasks.next_batch(block=False):
                    key, group = pending.pop(future)
                    streamed = taken.pop(key)
                    records = self._records_of(future, group, streamed)
                    if records is None:  # its Dask workers died: again cell by cell, to tell which
                        again: dict = {}
                        for index, cell in enumerate(group):
                            if index not in streamed:
                                single, single_key = self._submit([cell], again, topic)
                                pending[single], taken[single_key] = (single_key, [cell]), set()
                                tasks.add(single)
                        continue
                    yield from (r for i, r in enumerate(records) if i not in streamed)
        finally:  # interrupted: nothing new starts on the cluster
            self.client.cancel(list(pending), force=True)
            self.client.unsubscribe_topic(topic)

    @staticmethod
    def _records_of(future, group: list[Cell], streamed: set) -> list[Record] | None:
        """The task's records. A task never raises for what the
        implementation did (that is in its records), so anything else it
        raised is the harness's fault, or the cluster's: a lone cell whose
        Dask workers died each time it was tried is ``crashed``; for a
        group of cells with any not ``streamed`` yet, None (each is then
        tried alone)."""
        from distributed import KilledWorker

        try:
            return future.result()
        except KilledWorker as e:
            if len(group) > 1:
                return None if len(streamed) < len(group) else []
            cell = group[0]
            return [Record.for_cell(cell, "crashed", f"the Dask workers running this cell died "
                                    f"each time it was tried ({e}); run it locally to see why")]
        except HarnessFault:
            raise
        except Exception as e:
            what = f"{group[0].op} {group[0].id}"
            if len(group) > 1:
                what += f" and {len(group) - 1} more cells"
            raise HarnessFault(f"the task of {what} failed on the Dask cluster: "
                               f"{type(e).__name__}: {e}") from e


def task_groups(cells: list[Cell]) -> list[list[Cell]]:
    """The cells of each (implementation, problem, device), largest group
    first, one task each: the grouping of a local parallel sweep
    (suites/sweep.py's affinity_groups), split by device because a task
    asks for its device's resource. One task per cell let two Dask workers
    split a problem's cells and redo each other's compilations.

    >>> from adjointbench.suites.cells import plan_cells
    >>> cells = plan_cells(["numpy"], ["matvec", "softmax"], ["jvp"], ["float64"], quick=True,
    ...                    devices=["cpu", "cuda"])
    >>> [(g[0].problem, g[0].device, len(g)) for g in task_groups(cells)]
    [('matvec', 'cpu', 2), ('matvec', 'cuda', 2), ('softmax', 'cpu', 2), ('softmax', 'cuda', 2)]
    """
    from adjointbench.suites.sweep import affinity_groups

    by_device = [[cell for cell in group if cell.device == device]
                 for group in affinity_groups(cells)
                 for device in dict.fromkeys(cell.device for cell in group)]
    return sorted(by_device, key=len, reverse=True)


__all__ = ["DASK_EXTRA", "DaskCells", "MissingExtra", "cluster_summary", "dask_client",
           "declined_by", "gpu_worker_devices", "task_groups"]
