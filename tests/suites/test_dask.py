"""--executor dask on a real cluster: a `dask scheduler` and `dask worker`
processes on loopback. The same outcomes as a local run, every cell recorded
once even when a worker is killed mid-sweep; a crashing and a hanging
plug-in are outcomes and leave the workers up; GPU cells go to the worker
with a GPU resource; bench cells never time side by side."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from adjointbench.cli import main
from adjointbench.suites.results import ResultsFile, record_key

pytest.importorskip("distributed", reason="the [dask] extra is not installed")

PLUGINS = Path(__file__).parent.parent / "plugins"
BIN = Path(sys.executable).parent
CHECK = ["check", "--impl", "numpy,naive", "--problem", "matmul,softmax,linear_solve,diffusion",
         "--quick", "--quiet"]


def _start(argv: list[str], log: Path, **env) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(PLUGINS), **env}
    return subprocess.Popen(argv, env=environment, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


def _end(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: list[dict]):
    """A scheduler and one single-threaded `dask worker` per entry of
    ``workers`` (its extra environment, and "resources"); yields the
    scheduler's address and the worker processes."""
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    processes = [_start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                         "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                        folder / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for i, settings in enumerate(workers):
            settings = dict(settings)
            resources = settings.pop("resources", None)
            processes.append(_start(
                [str(BIN / "dask"), "worker", "--scheduler-file", str(scheduler_file),
                 "--nthreads", "1", "--no-dashboard", "--name", f"worker-{i}",
                 *(["--resources", resources] if resources else [])],
                folder / f"worker-{i}.log", ADJOINTBENCH_MEMORY_LIMIT_GB="3", **settings))
        with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
            if workers:
                client.wait_for_workers(len(workers), timeout=120)
            address = client.scheduler.address
        yield address, processes[1:]
    finally:
        for process in processes:
            _end(process)


def _records(folder: Path) -> dict:
    records, damaged = ResultsFile(folder).read()
    keys = [record_key(r) for r in records]
    assert not damaged and len(keys) == len(set(keys))  # every cell exactly once
    return {record_key(r): r for r in records}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A plain worker and one started with a GPU resource (a fake GPU the
    fake_gpu plug-in sees); the overlap plug-in logs its calls in calls/."""
    folder = tmp_path_factory.mktemp("dask")
    calls = {"ADJOINTBENCH_TEST_CALLS": str(folder / "calls")}
    (folder / "calls").mkdir()
    with dask_cluster(folder, [calls, {**calls, "resources": "GPU=1",
                                       "ADJOINTBENCH_TEST_FAKE_GPU": "1"}]) as (address, workers):
        yield address, workers, folder / "calls"


def test_a_sweep_survives_a_worker_killed_mid_sweep(tmp_path):
    assert main([*CHECK, "--workers", "1", "--out", str(tmp_path / "local")]) == 0
    local = _records(tmp_path / "local")
    out = tmp_path / "dask"
    with dask_cluster(tmp_path / "cluster", [{}, {}]) as (address, workers):
        sweep = _start([str(BIN / "adjointbench"), *CHECK, "--executor", "dask", "--scheduler",
                        address, "--out", str(out)], tmp_path / "sweep.log")
        results, recorded = out / "results.jsonl", 0
        deadline = time.monotonic() + 300
        while recorded < 30 and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            recorded = len(results.read_text().splitlines()) if results.exists() else 0
        _end(workers[0])  # the worker, its nanny and its implementation workers
        assert sweep.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()
    assert recorded < len(local)  # the kill came mid-sweep
    remote = _records(out)
    assert {k: r.outcome for k, r in remote.items()} == {k: r.outcome for k, r in local.items()}
    environment = json.loads((out / "environment.json").read_text())
    assert environment["executor"] == "dask" and len(environment["dask_workers"]) == 2


def test_crashing_and_hanging_plugins_are_outcomes_on_dask(cluster, plugins_on_path, tmp_path):
    from misbehaving import EXPECTED
    from distributed import Client

    address, workers, _ = cluster
    # --timeout 15: the memory hog needs seconds to reach its cap on a loaded machine
    assert main(["check", "--impl", "misbehaving:implementation", "--op", "primal",
                 "--problem", ",".join(EXPECTED), "--quick", "--timeout", "15",
                 "--quiet", "--executor", "dask", "--scheduler", address,
                 "--out", str(tmp_path)]) == 1  # failures, and no manifest expects them
    outcomes = {}
    for r in _records(tmp_path).values():
        outcomes.setdefault(r.problem, set()).add(r.outcome)
    assert outcomes == {p: {outcome} for p, outcome in EXPECTED.items()}
    assert all(w.poll() is None for w in workers)  # segfault, exit, hang: workers still up
    with Client(address, timeout=30) as client:
        assert len(client.scheduler_info()["workers"]) == 2


def test_gpu_cells_go_only_to_gpu_workers(cluster, plugins_on_path, tmp_path):
    address, _, _ = cluster
    assert main(["check", "--impl", "fake_gpu:implementation", "--problem", "softmax,matmul",
                 "--op", "primal,vjp", "--quick", "--device", "cpu,cuda", "--quiet",
                 "--executor", "dask", "--scheduler", address, "--out", str(tmp_path)]) == 0
    records = _records(tmp_path).values()
    on = {device: [r.outcome for r in records if r.device == device] for device in ("cpu", "cuda")}
    assert on["cuda"] and on["cuda"] == ["ok"] * len(on["cpu"])  # no cuda cell on the plain one
    assert all(r.machine for r in records)


def test_bench_cells_never_time_side_by_side(cluster, plugins_on_path, tmp_path):
    """... and their timed results are judged as in a local run: where this
    machine's oracle holds the reference (matvec's 8, the quick bench's
    smallest size, is a checked one), or where the bench computes it, on the
    cluster (softmax's 100, below its largest checked size); not at 1024 and
    100000, beyond their problems' checked sizes, whose references it lacks."""
    from adjointbench.reference import Oracle

    address, _, calls = cluster
    Oracle().reference("matvec", 8)
    assert main(["bench", "--impl", "overlap:implementation", "--problem", "softmax,matvec",
                 "--op", "primal,vjp", "--quick", "--budget", "0.02", "--quiet",
                 "--executor", "dask", "--scheduler", address, "--out", str(tmp_path / "out")]) == 0
    records = _records(tmp_path / "out").values()
    assert all(r.outcome == "ok" and r.ratio_to_primal for r in records)
    judged = {(r.problem, r.size, r.op): r.max_rel_err for r in records
              if r.max_rel_err is not None}
    assert set(judged) == {("matvec", 8, "primal"), ("matvec", 8, "vjp"),
                           ("softmax", 100, "primal"), ("softmax", 100, "vjp")}
    assert {(r.problem, r.size) for r in records} >= {("matvec", 1024), ("softmax", 100000)}
    assert max(judged.values()) < 1e-14
    timed = sorted((*map(float, line.split()[1:]), log.stem)  # (start, end, process)
                   for log in calls.glob("*.txt") for line in log.read_text().splitlines())
    assert len({process for *_, process in timed}) >= 2  # both workers timed cells
    for (_, end, before), (start, _, after) in zip(timed, timed[1:]):
        assert before == after or start >= end, "two workers' bench calls ran at once"


def test_dask_needs_its_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert main([*CHECK, "--executor", "dask", "--out", str(tmp_path)]) == 2
    assert "adjointbench[dask]" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["notaurl", "tcp://127.0.0.1", "http://127.0.0.1:8786",
                                     "tcp://127.0.0.1:70000", "tcp://127.0.0.1:8786/status"])
def test_a_malformed_scheduler_address_is_bad_input(address, tmp_path, capsys):
    assert main([*CHECK, "--executor", "dask", "--scheduler", address,
                 "--out", str(tmp_path)]) == 2
    assert "is not a scheduler address: give tcp://HOST:PORT" in capsys.readouterr().err


def test_a_server_that_is_not_a_scheduler_is_bad_input(tmp_path, capsys, monkeypatch):
    """A web page at the address (the dashboard's port, a proxy) made Dask
    read its bytes as a frame length: a MemoryError's traceback, exit 1."""
    import socket
    import threading

    from adjointbench.suites import distributed

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 3)
    with socket.create_server(("127.0.0.1", 0)) as server:
        def answer_with_a_page():
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = server.accept()
                    connection.sendall(b"HTTP/1.1 200 OK\r\n\r\n<html>dashboard</html>" * 4)
        threading.Thread(target=answer_with_a_page, daemon=True).start()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        assert main([*CHECK, "--executor", "dask", "--scheduler", address,
                     "--out", str(tmp_path)]) == 2
    assert f"cannot use {address} as a Dask scheduler" in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["--scheduler", "tcp://127.0.0.1:9"], "add --executor dask"),
    (["--executor", "dask", "--in-process"], "drop one of them"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
     "drop --workers"),
])
def test_dask_options_are_checked(argv, says, tmp_path, capsys):
    assert main([*CHECK, *argv, "--out", str(tmp_path)]) == 2
    assert says in capsys.readouterr().err


def test_an_unreachable_scheduler_is_bad_input(tmp_path, capsys, monkeypatch):
    from adjointbench.suites import distributed

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 2)
    assert main([*CHECK, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9",
                 "--out", str(tmp_path)]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_a_scheduler_without_workers_is_bad_input(tmp_path, capsys, monkeypatch):
    from adjointbench.suites import distributed

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 3)
    with dask_cluster(tmp_path / "cluster", []) as (address, _):
        assert main([*CHECK, "--executor", "dask", "--scheduler", address,
                     "--out", str(tmp_path / "out")]) == 2
    assert "has no workers: start some with `dask worker" in capsys.readouterr().err


def test_each_reference_is_one_task_shared_by_the_cells_that_need_it():
    from adjointbench.suites.bench import references_computed_for
    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.distributed import DaskCells, compute_reference
    from adjointbench.suites.runner import seeded_points

    class Recorder:  # a client that only records what would be submitted
        def __init__(self):
            self.submitted = []

        def submit(self, function, *args, key, **options):
            self.submitted.append((function, args, key))
            return key

    client = Recorder()
    cells = plan_cells(["numpy", "naive"], ["softmax", "matmul"], ["vjp", "hvp"],
                       quick=True, methods=["rule", "materialised"]) + plan_cells(
        ["numpy"], ["softmax"], ["primal"], quick=True, suite="bench")
    runner = DaskCells(client, 10.0, {}, declined=lambda cell: None)
    references: dict = {}
    tasks = [runner._submit([cell], references) for cell in cells]
    made = [(args, key) for function, args, key in client.submitted
            if function is compute_reference]
    wanted = {(kind, c.problem, c.size, c.seed, p, False) for c in cells if c.suite == "check"
              for p in seeded_points(c)  # a float64 cell's third point is its own (-2)
              for kind in (("first", "second") if c.op == "hvp" else ("first",))}
    # a bench cell's at its input point 0 where the bench computes it (softmax at
    # n = 100), computed under the host's bench lease (True)
    bench = {("first", c.problem, c.size, c.seed, 0, True) for c in cells
             if c.suite == "bench" and references_computed_for(c)}
    assert {c.size for c in cells if c.suite == "bench"} == {100, 100000}
    assert bench == {("first", "softmax", 100, 0, 0, True)}
    assert sorted(args for args, _ in made) == sorted(wanted | bench)  # each once
    assert len({key for _, key in made}) == len(made) and len(set(tasks)) == len(cells)


def test_a_reference_a_bench_computes_holds_its_hosts_bench_lease(monkeypatch):
    """Computed beside a bench cell timing on the same host, its mpmath work
    would disturb that cell's figures: it waits for the lease bench cells
    hold; a check's reference takes none."""
    import socket

    import distributed

    from adjointbench.suites.distributed import compute_reference

    held = []

    class Lease:  # records which lease is held while the reference is computed
        def __init__(self, max_leases, name):
            self.name = name

        def __enter__(self):
            held.append(self.name)

        def __exit__(self, *exc):
            held.remove(self.name)

    seen = []

    def reference(self, *args):
        seen.append(list(held))
        return "computed"

    monkeypatch.setattr(distributed, "Semaphore", Lease)
    monkeypatch.setattr("adjointbench.reference.Oracle.reference", reference)
    assert compute_reference("first", "softmax", 100, 0, 0, True) == "computed"
    assert compute_reference("first", "softmax", 4, 0, 0) == "computed"
    assert seen == [[f"adjointbench-bench-{socket.gethostname()}"], []] and held == []


def test_a_local_dask_cluster_resumes_like_a_local_run(tmp_path, capsys):
    out = str(tmp_path / "out")
    one = ["check", "--impl", "numpy", "--quick", "--quiet", "--executor", "dask",
           "--workers", "1", "--out", out]
    assert main([*one, "--problem", "softmax"]) == 0
    first = _records(tmp_path / "out")
    capsys.readouterr()
    assert main([*one, "--problem", "softmax,matvec", "--resume"]) == 0
    assert f"resuming: {len(first)} of" in capsys.readouterr().err
    after = _records(tmp_path / "out")
    assert first.keys() < after.keys()
    assert all(after[k].outcome == r.outcome == "ok" for k, r in first.items())
    assert json.loads((tmp_path / "out" / "environment.json").read_text())["executor"] == "dask"


class _Done:
    """A finished task of :class:`_Cluster`: its value, or what it raised."""

    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def result(self):
        if self.error:
            raise self.error
        return self.value


class _Cluster:
    """A client that runs nothing: a cell task returns an ok record, unless
    its cell is in ``killer`` (every task holding it dies: KilledWorker).
    With ``stream``, a task streams the records of the cells it finished
    before a killer, as a Dask worker does."""

    def __init__(self, killer=(), stream=False):
        self.killer, self.stream, self.tasks, self.keys = set(killer), stream, [], []
        self.handlers = {}

    def submit(self, function, *args, key, **options):
        from distributed import KilledWorker

        from adjointbench.suites.distributed import compute_reference, record_message
        from adjointbench.suites.results import Record

        if function is compute_reference:
            return _Done(None)
        cells, topic = args[0], args[5]
        self.tasks.append(cells)
        self.keys.append(key)
        for index, cell in enumerate(cells):
            if (cell.op, cell.id) in self.killer:
                return _Done(error=KilledWorker(key, SimpleNamespace(address="tcp://10.0.0.9:1"), 3))
            if self.stream:
                self.handlers[topic]((0.0, record_message(key, index, Record.for_cell(cell, "ok"))))
        return _Done([Record.for_cell(cell, "ok") for cell in cells])

    def cancel(self, futures, force=False):
        pass

    def subscribe_topic(self, topic, handler):
        self.handlers[topic] = handler

    def unsubscribe_topic(self, topic):
        del self.handlers[topic]


class _AsCompleted:
    def __init__(self, futures):
        self.futures = list(futures)

    def add(self, future):
        self.futures.append(future)

    def has_ready(self):
        return bool(self.futures)

    def next_batch(self, block=True):
        batch, self.futures = self.futures, []
        return batch


def test_a_task_runs_a_whole_group_and_a_lost_group_is_retried_cell_by_cell(monkeypatch):
    import distributed

    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.distributed import DaskCells

    monkeypatch.setattr(distributed, "as_completed", _AsCompleted)
    cells = plan_cells(["numpy", "naive"], ["softmax", "matmul"], ["jvp", "vjp"], quick=True,
                       devices=["cpu", "cuda"])
    killer = next(c for c in cells if c.impl == "naive" and c.problem == "matmul")
    client = _Cluster(killer=[(killer.op, killer.id)])
    records = list(DaskCells(client, 10.0, {}, declined=lambda cell: None).finished(cells))
    # one task per (implementation, problem, device), holding all of its cells
    groups = [tuple(task) for task in client.tasks if len(task) > 1]
    key = lambda cell: (cell.op, cell.id)
    assert sorted(map(key, (c for g in groups for c in g))) == sorted(map(key, cells))
    assert all(len({(c.impl, c.problem, c.device) for c in g}) == 1 for g in groups)
    assert len(groups) == 8
    # the group that lost its workers was tried again cell by cell: only its killer is crashed
    lost = next(g for g in groups if killer in g)
    alone = [c for task in client.tasks if len(task) == 1 for c in task]
    assert sorted(map(key, alone)) == sorted(map(key, lost))
    crashed = [(r.impl, r.problem, r.op, r.size, r.device) for r in records if r.outcome == "crashed"]
    assert crashed == [(killer.impl, killer.problem, killer.op, killer.size, killer.device)]
    assert len(records) == len(cells) and sum(r.outcome == "ok" for r in records) == len(cells) - 1


def test_a_second_pass_never_reuses_a_task_key(monkeypatch):
    """A bench round submits the same cells again: a key the scheduler still
    held from the first round would hand back that round's records."""
    import distributed

    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.distributed import DaskCells

    monkeypatch.setattr(distributed, "as_completed", _AsCompleted)
    cells = plan_cells(["numpy"], ["softmax", "matmul"], ["primal", "vjp"], quick=True,
                       suite="bench")
    client = _Cluster(killer=[(cells[0].op, cells[0].id)])  # its group is retried cell by cell
    runner = DaskCells(client, 10.0, {}, declined=lambda cell: None)
    for _ in range(2):
        assert len(list(runner.finished(cells))) == len(cells)
    assert len(client.keys) > 4 and len(set(client.keys)) == len(client.keys)


def test_cells_a_lost_group_finished_and_streamed_are_not_run_again(monkeypatch):
    """A Dask worker streams each record as its cell finishes: when the
    group's workers die later, only its cells without a record are tried
    again, and no cell is recorded twice."""
    import distributed

    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.distributed import DaskCells

    monkeypatch.setattr(distributed, "as_completed", _AsCompleted)
    cells = plan_cells(["numpy"], ["softmax"], ["primal", "jvp", "vjp"], quick=True)
    killer = cells[3]
    client = _Cluster(killer=[(killer.op, killer.id)], stream=True)
    records = list(DaskCells(client, 10.0, {}, declined=lambda cell: None).finished(cells))
    key = lambda cell: (cell.op, cell.id)
    assert [len(task) for task in client.tasks] == [len(cells)] + [1] * (len(cells) - 3)
    assert [key(task[0]) for task in client.tasks[1:]] == list(map(key, cells[3:]))
    assert sorted((r.op, r.size, r.outcome) for r in records) == sorted(
        (c.op, c.size, "crashed" if c is killer else "ok") for c in cells)
    assert not client.handlers  # unsubscribed


def test_a_groups_records_arrive_as_its_cells_finish(cluster, plugins_on_path):
    """The parent has a group's first record (to write, and to count in its
    progress) while the group's next cell still runs: an interrupted Dask
    sweep keeps its finished cells."""
    from distributed import Client

    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.distributed import DaskCells, task_groups
    from slow_cells import SLOW_S, SMALL

    address, _, _ = cluster
    cells = plan_cells(["slow_cells:implementation"], ["softmax"], ["primal"], quick=True)
    assert len(task_groups(cells)) == 1 and [c.size for c in cells] == [SMALL, 64]
    with Client(address, timeout=30) as client:
        arrived = [(time.monotonic(), record) for record in
                   DaskCells(client, 60.0, {}, declined=lambda cell: None).finished(cells)]
    (first_at, first), (last_at, last) = arrived
    assert (first.size, first.outcome, last.size, last.outcome) == (SMALL, "ok", 64, "ok")
    # the second cell prepares three points, each SLOW_S: the first record came before
    assert last_at - first_at > 1.5 * SLOW_S
