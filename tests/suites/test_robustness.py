"""Runs that lose, double and hide nothing: concurrent runs, damaged files,
retries, the process tree after signals, timeouts, harness faults and bad
arguments, each through the command line as a user meets it."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest

from adjointbench.cli import main
from adjointbench.suites.isolation import memory_limit_gb
from adjointbench.suites.relay import KEPT_BYTES
from adjointbench.suites.results import Record, ResultsFile
from adjointbench.suites.sweep import ProgressBar

PLUGINS = Path(__file__).parents[1] / "plugins"
NUMPY_CELL = ["--impl", "numpy", "--problem", "scalar_add", "--op", "primal", "--dtype",
              "float64", "--quiet"]
posix = pytest.mark.skipif(sys.platform != "linux", reason="Linux process tree and /proc")


def _env(tmp_path, **extra) -> dict:
    path = os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path,
            "ADJOINTBENCH_TEST_PIDFILE": str(tmp_path / "pids"), **extra}


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "adjointbench", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _start(*args, env):
    return subprocess.Popen([sys.executable, "-m", "adjointbench", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for listing in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(p) for p in listing.read_text().split()]
            except OSError:
                continue
            found += children
            frontier += children
    return found


def _wait_for(condition, seconds=60.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _pids(tmp_path) -> list[int]:
    path = tmp_path / "pids"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


# --- one run per folder; what a killed run leaves ---

@posix
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
@pytest.mark.parametrize("hanging", ["HangsWithAChild", "HangsBesideAChildOfItsOwnSession"])
def test_a_second_run_is_refused_and_a_killed_run_takes_its_workers(tmp_path, kill, hanging):
    """The child of a hanging worker goes with it, also one in a session of
    its own (out of reach of a kill of the worker's process group)."""
    out = tmp_path / "out"
    env = _env(tmp_path)
    first = _start("check", "--impl", f"lifecycle:{hanging}", "--problem", "broadcast_tanh",
                   "--op", "primal", "--dtype", "float64", "--size", "4", "--timeout", "120",
                   "--quiet", "--out", str(out), env=env)
    assert _wait_for(lambda: _pids(tmp_path)), first.communicate(timeout=10)
    second = _cli("check", *NUMPY_CELL, "--out", str(out), "--resume", env=env)
    assert second.returncode == 2
    assert f"in use by another adjointbench run (PID {first.pid})" in second.stderr
    tree = _descendants(first.pid) + _pids(tmp_path)
    first.send_signal(kill)
    first.wait(timeout=30)
    assert _wait_for(lambda: not any(_alive(p) for p in tree), 15), \
        [p for p in tree if _alive(p)]  # the worker, its child, the resource tracker
    third = _cli("check", *NUMPY_CELL, "--out", str(out), "--resume", env=env)
    assert third.returncode == 0, third.stderr  # the dead holder's lock is gone with it


def _files_open_in(folder: Path, pids: list[int]) -> list[str]:
    """What the processes ``pids`` hold open in ``folder`` (a deleted file
    is listed with " (deleted)")."""
    found = []
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(folder)):
                found.append(target)
    return found


@posix
def test_a_run_killed_while_its_worker_loads_leaves_no_files_behind(tmp_path):
    """The worker's stack and output files are held by descriptor at both
    ends: once the worker has opened them, their names are gone, so a
    harness killed before the implementation has loaded leaves nothing in
    the temporary folder."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = _env(tmp_path, TMPDIR=str(temporary), ADJOINTBENCH_TEST_IMPORT_S="120")
    run = _start("check", "--impl", "lifecycle:slow_start", *NUMPY_CELL[2:], "--out",
                 str(tmp_path / "r"), env=env)
    opened = lambda: len(_files_open_in(temporary, _descendants(run.pid))) >= 2  # noqa: E731
    assert _wait_for(opened), (list(temporary.iterdir()), run.poll())
    workers = _descendants(run.pid)
    run.kill()
    run.wait(timeout=30)
    assert _wait_for(lambda: not any(_alive(p) for p in workers), 15)
    assert not list(temporary.glob("adjointbench-*")), list(temporary.iterdir())


@posix
def test_a_run_killed_with_its_worker_while_it_starts_leaves_no_files_behind(tmp_path):
    """A worker's stack and output files never have a name: the harness
    passes them to the worker by descriptor. Before, they were named until
    the worker opened them, and a process group killed while its worker was
    starting (as a Dask worker's is) left the pair in the temporary folder."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = _env(tmp_path, TMPDIR=str(temporary), ADJOINTBENCH_TEST_IMPORT_S="120")
    run = subprocess.Popen([sys.executable, "-m", "adjointbench", "check", "--impl",
                            "lifecycle:slow_start", *NUMPY_CELL[2:], "--out", str(tmp_path / "r")],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    named, opened, deadline = set(), [], time.time() + 60
    while time.time() < deadline and len(opened) < 4:  # both ends of both files
        named.update(p.name for p in temporary.glob("adjointbench-*"))
        opened = _files_open_in(temporary, [run.pid, *_descendants(run.pid)])
        time.sleep(0.005)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert len(opened) >= 4, (opened, run.poll())
    assert not named, f"named while the worker started: {sorted(named)}"
    assert not list(temporary.iterdir()), list(temporary.iterdir())


@posix
def test_children_left_by_a_cell_are_ended_and_a_pipe_does_not_hang(tmp_path):
    done = _cli("check", "--impl", "lifecycle:LeavesChildren", "--problem", "broadcast_tanh",
                "--op", "primal", "--dtype", "float64", "--size", "4", "--quiet",
                env=_env(tmp_path), timeout=120)  # stdout is a pipe, read to its end
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 cells: 1 ok" in done.stdout
    children = _pids(tmp_path)
    assert children and not any(_alive(p) for p in children)


@posix
def test_a_child_in_a_session_of_its_own_ends_with_its_hung_worker(tmp_path):
    """A worker killed at its timeout takes every process it started, also
    one that left its process group and session (setsid), which a kill of
    the group misses."""
    hung = _cli("check", "--impl", "lifecycle:HangsBesideAChildOfItsOwnSession", "--problem",
                "broadcast_tanh", "--op", "primal", "--dtype", "float64", "--size", "4",
                "--timeout", "3", "--quiet", "--out", str(tmp_path / "r"), env=_env(tmp_path),
                timeout=120)
    (record,), _ = ResultsFile(tmp_path / "r").read()
    assert record.outcome == "timeout", hung.stdout + hung.stderr
    children = _pids(tmp_path)
    assert children and _wait_for(lambda: not any(_alive(p) for p in children), 10)


@posix
@pytest.mark.parametrize("leaving", ["ExitsLeavingAChild", "ExitsLeavingAChildOfItsOwnSession"])
def test_a_worker_that_exits_while_its_child_holds_the_pipe_is_a_crash_told_at_once(
        tmp_path, leaving):
    """Its end of file never comes (the child holds the pipe open): the
    worker's own end is seen at once, not at the timeout, and told as what
    it is, with its status; the child goes with the worker's group, or,
    when it left the group and session, as the harness's adopted orphan."""
    done = _cli("check", "--impl", f"lifecycle:{leaving}", "--problem", "broadcast_tanh",
                "--op", "primal", "--dtype", "float64", "--size", "4", "--timeout", "60",
                "--quiet", "--out", str(tmp_path / "r"), env=_env(tmp_path), timeout=120)
    (record,), _ = ResultsFile(tmp_path / "r").read()
    assert record.outcome == "crashed", done.stdout + done.stderr
    assert "exited with status 0" in record.message and record.seconds < 10, record
    children = _pids(tmp_path)
    assert children and _wait_for(lambda: not any(_alive(p) for p in children), 10)


# --- the results file ---

def test_a_lost_final_newline_is_repaired_before_appending(tmp_path):
    assert _cli("check", *NUMPY_CELL, "--out", str(tmp_path)).returncode == 0
    path = tmp_path / "results.jsonl"
    path.write_text(path.read_text().rstrip("\n"))  # the last newline never reached the disk
    more = _cli("check", *NUMPY_CELL[:-5], "--op", "primal,jvp", "--dtype", "float64",
                "--quiet", "--out", str(tmp_path), "--resume")
    assert more.returncode == 0, more.stderr
    records, damaged = ResultsFile(tmp_path).read()
    assert damaged == 0 and sorted(r.op for r in records) == ["jvp", "primal"]


def test_a_record_goes_to_json_and_back_whole_and_its_json_shares_no_list():
    record = Record("matvec", "numpy", "vjp", "float64", "cpu", 8, 0, outcome="ok",
                    max_rel_err=float("nan"), ratio_to_primal=float("inf"),
                    value=[[1.0, float("-inf")], [3.0]], samples_s=[1e-5, 2e-5],
                    samples_per_round=[1, 1])
    data = record.to_json()
    assert data["value"] == [1.0, "-inf", 3.0] and data["max_rel_err"] == "nan"
    assert data["ratio_to_primal"] == "inf"
    again = Record.from_json(json.loads(json.dumps(data)))
    assert again.samples_s == [1e-5, 2e-5] and again.samples_per_round == [1, 1]
    assert [getattr(again, k) for k in ("problem", "impl", "op", "size", "outcome")] == \
        ["matvec", "numpy", "vjp", 8, "ok"]
    data["samples_s"].append(1.0)  # a reader that changes the JSON changes no record
    data["samples_per_round"][0] = 5
    assert record.samples_s == [1e-5, 2e-5] and record.samples_per_round == [1, 1]


def test_records_reach_the_kernel_at_once_and_the_disk_in_groups(tmp_path, monkeypatch):
    from adjointbench.suites import results

    synced = []
    monkeypatch.setattr(results.os, "fsync", synced.append)
    monkeypatch.setattr(results, "SYNC_EVERY_S", 3600.0)
    file = ResultsFile(tmp_path)
    file.lock()
    records = [Record("scalar_add", "numpy", "primal", "float64", "cpu", 1, k, "ok")
               for k in range(5)]
    for k, record in enumerate(records, 1):
        file.append(record)
        lines = (tmp_path / "results.jsonl").read_text().splitlines()
        assert [json.loads(line)["seed"] for line in lines] == list(range(k))  # a reader sees it
    assert len(synced) == 1  # the first append; the others wait for the next sync
    file.unlock()
    assert len(synced) == 2  # unlock syncs what is pending
    file.unlock()
    assert len(synced) == 2  # nothing pending, no sync
    monkeypatch.setattr(results, "SYNC_EVERY_S", 0.0)
    again = ResultsFile(tmp_path)
    again.lock()
    again.append(Record("scalar_add", "numpy", "primal", "float64", "cpu", 1, 9, "ok"))
    again.append(Record("scalar_add", "numpy", "primal", "float64", "cpu", 1, 10, "ok"))
    assert len(synced) == 4  # further apart than SYNC_EVERY_S: each one synced
    again.unlock()


def test_a_sync_that_fails_at_the_end_names_the_fix(tmp_path, monkeypatch):
    import errno

    from adjointbench.faults import HarnessFault
    from adjointbench.suites import results

    monkeypatch.setattr(results, "SYNC_EVERY_S", 3600.0)
    file = ResultsFile(tmp_path)
    file.lock()
    file.append(Record("scalar_add", "numpy", "primal", "float64", "cpu", 1, 0, "ok"))
    file.append(Record("scalar_add", "numpy", "primal", "float64", "cpu", 1, 1, "ok"))

    def full(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(HarnessFault, match="--resume"):
        file.unlock()
    assert file._lock is None  # the folder is released all the same


def test_implementations_load_at_once_and_one_that_fails_is_told(tmp_path, monkeypatch):
    from adjointbench.suites import isolation
    from adjointbench.suites.isolation import IsolatedRunner

    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS),
                                                      os.environ.get("PYTHONPATH", "")]))
    events, started, loaded = [], isolation.Worker.__init__, isolation.Worker.loaded
    monkeypatch.setattr(isolation.Worker, "__init__", lambda self, *a, **kw: (
        events.append("start"), started(self, *a, **kw))[1])
    monkeypatch.setattr(isolation.Worker, "loaded", lambda self: (
        events.append("wait"), loaded(self))[1])
    with IsolatedRunner(cache_dir=tmp_path) as runner:
        runner.start(["numpy", "broken:NoPrepare", "naive", "numpy"])
        assert events == ["start"] * 3 + ["wait"] * 3  # every worker started before any wait
        assert sorted(runner._workers) == ["naive", "numpy"]
        assert all(w.process.is_alive() for w in runner._workers.values())
        assert runner.describe("numpy")["name"] == "numpy"
        with pytest.raises(Exception, match="missing prepare"):
            runner.describe("broken:NoPrepare")  # its reason, from the load start() made
        with pytest.raises(Exception, match="missing prepare"):
            runner.describe("broken:NoPrepare")  # asked again: loaded again, the same reason
        workers = dict(runner._workers)
        runner.start(["numpy"])
        assert runner._workers["numpy"] is workers["numpy"]  # a live worker is kept
    assert not any(w.process.is_alive() for w in workers.values())


def test_a_run_naming_one_implementation_that_will_not_load_exits_2(tmp_path):
    done = _cli("check", "--impl", "numpy,broken:NoPrepare,naive", "--problem", "scalar_add",
                "--out", str(tmp_path), env=_env(tmp_path), timeout=120)
    assert done.returncode == 2, done.stderr
    assert "implementation 'broken:NoPrepare' cannot be loaded" in done.stderr
    assert "missing prepare" in done.stderr


def test_an_installed_implementation_that_will_not_load_is_left_out_and_told(tmp_path):
    """Without --impl a run takes every installed implementation: one whose
    package is broken is left out, said at once and after the summary, and
    recorded in environment.json; the others' cells run, and the run exits 1."""
    dist = tmp_path / "site" / "adjointbench_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: adjointbench-broken\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[adjointbench.impls]\nbroken = broken:NoPrepare\n")
    env = _env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env["PYTHONPATH"]])
    done = _cli("check", "--problem", "scalar_add", "--op", "primal", "--dtype", "float64",
                "--points", "1", "--out", str(tmp_path / "out"), "--quiet", env=env,
                timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "warning: implementation 'broken' cannot be loaded" in done.stderr
    assert "missing prepare" in done.stderr and "left out of this run" in done.stderr
    assert "the entry point broken:NoPrepare (adjointbench-broken)" in done.stderr
    assert "not loaded: implementation 'broken'" in done.stdout
    records, _ = ResultsFile(tmp_path / "out").read()
    ran = {r.impl for r in records}
    assert {"numpy", "naive"} <= ran and "broken" not in ran
    failed = [(r.impl, r.outcome, r.message) for r in records
              if r.outcome not in ("ok", "unsupported")]
    assert not failed, failed
    environment = json.loads((tmp_path / "out" / "environment.json").read_text())
    assert "missing prepare" in environment["not_loaded"]["broken"]
    report = _cli("report", "--results", str(tmp_path / "out"), env=env, timeout=300)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "implementation &#x27;broken&#x27; cannot be loaded" in page
    assert "left out of these results" in page


SCRIPT_CHECK = ("from adjointbench.cli import main\n"
                "status = main(['check', '--impl', 'numpy', '--problem', 'scalar_add', '--op',"
                " 'primal', '--dtype', 'float64', '--quiet', '--out', {out!r}])\n")
SCRIPT_SWEEP = ("from adjointbench import plan_cells, run_sweep\n"
                "from adjointbench.suites.isolation import IsolatedRunner\n"
                "with IsolatedRunner(cache_dir={out!r}) as runner:\n"
                "    records = run_sweep(plan_cells(['numpy'], ['scalar_add'], ['primal'],"
                " ['float64']), runner=runner.run, progress=False)\n"
                "status = int({{r.outcome for r in records}} != {{'ok'}})\n")


def _script(tmp_path, body: str, guarded: bool) -> subprocess.CompletedProcess:
    """``body`` run as ``python script.py``, its top level guarded or not."""
    if guarded:
        body = "if __name__ == '__main__':\n" + "".join(f"    {line}\n"
                                                       for line in body.splitlines())
    script = tmp_path / "my_rules_check.py"
    script.write_text(body + "raise SystemExit(status)\n" * (not guarded))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=_env(tmp_path), timeout=300, cwd=tmp_path)


@pytest.mark.parametrize("body", [SCRIPT_CHECK, SCRIPT_SWEEP], ids=["cli_main", "run_sweep"])
def test_a_script_that_starts_a_sweep_when_imported_is_told_to_guard_it(tmp_path, body):
    """Each worker imports the parent's script again (spawn): an unguarded
    script is named with the fix, once, instead of every worker's
    multiprocessing RuntimeError and "cannot be loaded"."""
    done = _script(tmp_path, body.format(out=str(tmp_path / "out")), guarded=False)
    assert done.returncode != 0
    assert "my_rules_check.py' again" in done.stderr, done.stderr
    assert 'under `if __name__ == "__main__":`' in done.stderr
    assert "RuntimeError" not in done.stderr and "cannot be loaded" not in done.stderr
    if body is SCRIPT_CHECK:
        assert done.returncode == 2
    guarded = _script(tmp_path, body.format(out=str(tmp_path / "guarded")), guarded=True)
    assert guarded.returncode == 0, guarded.stderr  # the same script, guarded, runs its cell

def test_a_plug_in_exiting_with_that_status_is_not_taken_for_the_script(tmp_path):
    """Its os._exit leaves the worker's stacks, which the script's exit
    (before the worker serves) never does: "cannot be loaded", where it was."""
    body = SCRIPT_CHECK.replace("'numpy'", "'exits_loading:implementation'")
    done = _script(tmp_path, body.format(out=str(tmp_path / "out")), guarded=True)
    assert "cannot be loaded" in done.stderr and "status 86" in done.stderr, done.stderr
    assert "exits_loading.py:" in done.stderr and "again" not in done.stderr


def _mark(path: Path, outcome: str) -> None:
    """Rewrite the only record of ``path`` as ``outcome``."""
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    record.update(outcome=outcome, message="worker gave no answer")
    path.write_text(json.dumps(record) + "\n")


def test_resume_counts_earlier_failures_and_retry_runs_them_again(tmp_path):
    assert _cli("check", *NUMPY_CELL, "--out", str(tmp_path)).returncode == 0
    _mark(tmp_path / "results.jsonl", "timeout")
    resumed = _cli("check", *NUMPY_CELL, "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 1 and "timeout" in resumed.stdout  # not a silent 0
    retried = _cli("check", *NUMPY_CELL, "--out", str(tmp_path), "--retry")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    (record,), _ = ResultsFile(tmp_path).read()
    assert record.outcome == "ok"  # replaced, not doubled


def test_lines_that_are_not_records_are_skipped_and_counted(tmp_path, capsys):
    assert main(["check", *NUMPY_CELL, "--in-process", "--out", str(tmp_path)]) == 0
    path = tmp_path / "results.jsonl"
    good = path.read_bytes()
    path.write_bytes(b"[1, 2]\n42\nnull\n\xff\xfe{}\n" + good + good)  # and a duplicate
    assert main(["report", "--results", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "skipped 4 damaged line(s)" in err and "dropped 1 duplicate" in err
    assert main(["check", *NUMPY_CELL, "--in-process", "--out", str(tmp_path),
                 "--resume"]) == 0
    records, damaged = ResultsFile(tmp_path).read()
    assert len(records) == 1 and damaged == 0


def test_a_name_that_is_mathtext_is_drawn_as_text(tmp_path):
    name = "$\\frac{$"
    results = ResultsFile(tmp_path)
    for op, ratio in (("primal", 1.0), ("vjp", 2.5)):
        results.append(Record("matmul", name, op, "float64", "cpu", 8, 0, "ok", suite="bench",
                              time_median_s=1e-5 * ratio, time_iqr_s=1e-7,
                              primal_median_s=1e-5, ratio_to_primal=ratio, ratio_q1=ratio,
                              ratio_q3=ratio))
    results.append(Record("matmul", name, "vjp", "float64", "cpu", 8, 0, "ok", max_rel_err=1e-16))
    assert main(["report", "--results", str(tmp_path)]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "This plot failed" not in page and "$\\frac{$" in page


# --- timeouts and the memory cap ---

def test_the_timeout_starts_when_the_worker_is_ready(tmp_path):
    slow = _cli("check", "--impl", "lifecycle:slow_start", "--problem", "scalar_add", "--op",
                "primal", "--dtype", "float64", "--timeout", "1", "--quiet",
                "--out", str(tmp_path), env=_env(tmp_path, ADJOINTBENCH_TEST_IMPORT_S="3"))
    assert slow.returncode == 0, slow.stdout + slow.stderr  # a 3 s import is not the cell's


def test_a_timeout_record_carries_the_time_spent(tmp_path):
    hung = _cli("check", "--impl", "misbehaving:implementation", "--problem", "matvec",
                "--op", "primal", "--dtype", "float64", "--size", "2", "--timeout", "2",
                "--quiet", "--out", str(tmp_path), env=_env(tmp_path))
    assert hung.returncode == 1
    (record,), _ = ResultsFile(tmp_path).read()
    assert record.outcome == "timeout" and record.seconds >= 2.0


@posix
@pytest.mark.parametrize("writer, outcome, told", [
    ("stalls", "timeout", "it had sent 14 of the 1,004 bytes of a message, then nothing"),
    ("announces_too_much", "error",
     "the worker announced a message of 17,592,186,044,416 bytes, more than the")])
def test_what_code_under_test_writes_on_its_workers_pipe_is_an_outcome(tmp_path, writer,
                                                                         outcome, told):
    """A message's size and then nothing hung the sweep for good (the
    harness waited for the rest without a timeout); a size of 2^44 was a
    MemoryError. Each is now its cell's outcome, and the sweep goes on."""
    run = _cli("check", "--impl", f"pipe_writer:{writer}", "--problem", "matvec,scalar_add",
               "--op", "jvp", "--dtype", "float64", "--timeout", "2", "--quiet",
               "--out", str(tmp_path), env=_env(tmp_path), timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    records, _ = ResultsFile(tmp_path).read()
    written = [r for r in records if r.problem == "matvec"]
    assert len(written) == 3 and all(r.outcome == outcome and told in r.message
                                     for r in written), [r.message for r in written]
    assert [r.outcome for r in records if r.problem == "scalar_add"] == ["ok"]


@posix
def test_a_worker_that_stops_reading_is_a_crash_not_a_hung_send(tmp_path):
    """A request larger than the pipe holds waits for the worker to read
    it: one that stopped itself after answering hung the sweep in the send."""
    run = _cli("check", "--impl", "stops_reading:implementation", "--problem",
               "stops_reading:problem", "--op", "primal", "--dtype", "float64", "--timeout", "20",
               "--quiet",
               "--out", str(tmp_path), env=_env(tmp_path), timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    (record,), _ = ResultsFile(tmp_path).read()
    assert record.outcome == "crashed" and record.seconds < 20, record
    assert "was stopped by signal SIGSTOP" in record.message, record.message


def test_a_memory_cap_that_is_no_number_exits_2_before_any_worker_starts(tmp_path):
    for setting in ("abc", "-1", "inf", "nan"):
        run = _cli("check", *NUMPY_CELL, "--out", str(tmp_path / setting),
                   env=_env(tmp_path, ADJOINTBENCH_MEMORY_LIMIT_GB=setting))
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert (f"ADJOINTBENCH_MEMORY_LIMIT_GB={setting!r} is not a number of GiB: set it to "
                "the workers' memory cap in GiB, 0 for no cap") in run.stderr, run.stderr


def test_workers_have_a_memory_cap_by_default(monkeypatch):
    monkeypatch.delenv("ADJOINTBENCH_MEMORY_LIMIT_GB", raising=False)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    assert memory_limit_gb() == pytest.approx(physical / 2)
    monkeypatch.setenv("ADJOINTBENCH_MEMORY_LIMIT_GB", "0")
    assert memory_limit_gb() is None


# --- harness faults and bad input: exit 2, naming the problem ---

def test_an_unwritable_oracle_cache_stops_the_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = _cli("check", *NUMPY_CELL, "--out", str(tmp_path / "out"),
                env={**os.environ, "ADJOINTBENCH_CACHE_DIR": str(blocker / "cache")})
    assert done.returncode == 2
    assert f"cannot write the oracle cache {blocker / 'cache'}" in done.stderr
    assert ResultsFile(tmp_path / "out").read() == ([], 0)  # no record blames numpy


def test_a_full_disk_stops_the_run(tmp_path, monkeypatch, capsys):
    import errno

    from adjointbench.suites import results

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(results.os, "fsync", full)
    assert main(["check", *NUMPY_CELL, "--in-process", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot append to {tmp_path / 'results.jsonl'}: No space left on device" in err


def test_a_results_path_that_is_not_a_file_is_refused(tmp_path):
    (tmp_path / "results.jsonl").symlink_to("/dev/zero")
    done = _cli("check", *NUMPY_CELL, "--out", str(tmp_path), "--resume", timeout=60)
    assert done.returncode == 2 and "not a regular file" in done.stderr


def test_a_plug_in_that_hangs_while_loading_is_stopped_after_the_load_timeout(
        plugins_on_path, tmp_path, capsys, monkeypatch):
    """Loading has its own limit, at least --timeout: a hang there was told as
    "no answer within the timeout ... Raise --timeout if the cell is just
    slow", though --timeout did not bound it; a slow load under a larger
    --timeout loads."""
    from adjointbench.suites import isolation

    monkeypatch.setattr(isolation, "LOAD_TIMEOUT_S", 2.0)
    cell = ["check", "--impl", "broken:SlowToLoad", "--problem", "scalar_add", "--quick",
            "--quiet"]
    assert main([*cell, "--timeout", "1", "--out", str(tmp_path / "hangs")]) == 2
    said = capsys.readouterr().err
    assert "no answer within 2 s while loading; it was in devices" in said, said
    assert "Raise --timeout above 2 s if loading it is just slow" in said
    monkeypatch.setenv("SLOW_TO_LOAD_S", "3")
    assert main([*cell, "--timeout", "6", "--out", str(tmp_path / "slow")]) == 0


@pytest.mark.parametrize("args, hint", [
    (["--timeout", "0"], "--timeout: 0 is out of range"),
    (["--timeout", "-5"], "--timeout: -5 is out of range"),
    (["--timeout", "nan"], "--timeout: nan is out of range"),
    (["--timeout", "inf"], "--timeout: inf is out of range"),
    (["--timeout", "1e300"], "--timeout: 1e300 is out of range"),
    (["--seed", "-1"], "--seed: -1 is out of range"),
    (["--points", "0"], "--points: 0 is out of range"),
    (["--impl", ""], "--impl: '' names nothing"),
    (["--impl", ","], "--impl: ',' names nothing"),
    (["--problem", ""], "--problem: '' names nothing"),
    (["--op", ""], "--op: '' names nothing"),
    (["--impl", "nosuchmod:obj"], "No module named 'nosuchmod'"),
    (["--impl", "plugins/mine.py:obj"], "'plugins/mine.py' is a file path, not a module: put "
     "its folder on PYTHONPATH and give the module's name"),
    (["--problem", "plugins/mine.py:problem"], "'plugins/mine.py' is a file path, not a "
     "module"),
    (["--device", "cuda", "--impl", "numpy"], "no implementation has the device"),
])
def test_bad_arguments_exit_2_with_the_valid_range(args, hint, capsys):
    assert main(["check", "--quiet", *args]) == 2
    assert hint in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["0", "-1", "nan", "1e9"])
def test_a_bad_budget_of_the_main_job_exits_2_with_the_valid_range(budget, capsys):
    assert main(["run", "--quiet", "--budget", budget]) == 2
    assert f"--budget: {budget} is out of range" in capsys.readouterr().err


def test_cells_on_an_absent_device_are_skipped_with_the_reason(tmp_path, capsys):
    assert main(["check", *NUMPY_CELL, "--device", "cpu,cuda", "--in-process",
                 "--out", str(tmp_path)]) == 0
    assert "skipping 1 cuda cell(s) of numpy: it sees no cuda device here" in \
        capsys.readouterr().err
    (record,), _ = ResultsFile(tmp_path).read()
    assert record.device == "cpu"


# --- what a user sees ---

def test_without_a_terminal_progress_is_a_line_every_few_seconds(monkeypatch):
    stream = StringIO()
    bar = ProgressBar(10, stream)
    monkeypatch.setattr(ProgressBar, "LINE_EVERY_S", 0.0)
    bar.update(4, "vjp numpy-matmul-n8", failed=1)
    assert "adjointbench: 4/10 cells, 1 failed," in stream.getvalue()
    assert "s to go" in stream.getvalue()


def test_the_main_job_can_be_rerun(tmp_path):
    """... and takes the larger --budget that a noisy cell's warning asks for."""
    out = tmp_path / "results"
    first = _cli("run", "--impl", "naive", "--out", str(out), "--quiet", timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "== adjointbench bench --quick --budget 0.05 " in first.stderr
    again = _cli("run", "--impl", "naive", "--out", str(out), "--quiet", "--budget", "0.1",
                 timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already holds a run: writing this one to" in again.stderr
    assert "== adjointbench bench --quick --budget 0.1 " in again.stderr
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert len(runs) == 2 and all((tmp_path / r / "report" / "index.html").exists() for r in runs)


def test_list_is_fast_and_pipe_safe():
    start = time.perf_counter()
    listed = subprocess.run(f"{sys.executable} -m adjointbench list --json | head -c 10",
                            shell=True, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert time.perf_counter() - start < 10  # generous on a loaded machine; ~0.6 s quiet
    full = json.loads(_cli("list", "--json").stdout)
    assert all(p["kind"] and p["family"] for p in full["problems"])


def test_a_family_name_selects_its_problems(capsys):
    assert main(["check", "--impl", "numpy", "--problem", "scalar", "--op", "primal",
                 "--dtype", "float64", "--quiet", "--in-process"]) == 0
    assert "cells: " in capsys.readouterr().out
    from adjointbench.suites.cells import plan_cells
    cells = plan_cells(["numpy"], ["scalar"], ["primal"], ["float64"])
    assert {c.problem for c in cells} == {"scalar_add", "scalar_mul", "scalar_sin"}


# --- what an implementation returns, and what it runs while the sweep plans ---

class _Oversized:
    """A gradient of five million entries for a problem with a handful."""

    name = "oversized"

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op, method=None):
        return op == "gradient"

    def prepare(self, task):
        import numpy as np

        from adjointbench.impls.protocol import Prepared
        return Prepared(run=lambda: (np.ones(5_000_000),))


class _SupportsRaises(_Oversized):
    def supports(self, problem, op, method=None):
        raise RuntimeError("supports() is broken")


def test_an_oversized_result_is_a_mismatch_and_is_not_stored():
    from adjointbench.suites.runner import Cell, run_cell

    record = run_cell(Cell("linear_system", "oversized", "gradient", 3, method="adjoint"),
                      impl=_Oversized())
    assert record.outcome == "mismatch" and "shape" in record.message
    assert record.value is None and len(json.dumps(record.to_json())) < 5000


def test_plug_in_code_run_while_planning_is_protected_like_a_cell():
    from adjointbench.suites.runner import Cell, run_cell
    from adjointbench.suites.sweep import run_sweep

    cells = [Cell("scalar_add", "broken", "primal", 1), Cell("scalar_mul", "broken", "primal", 1)]
    records = run_sweep(cells, progress=False,
                        runner=lambda cell: run_cell(cell, impl=_SupportsRaises()))
    assert [r.outcome for r in records] == ["error", "error"]
    assert all("supports() is broken" in r.message for r in records)


def test_a_timed_result_of_the_wrong_shape_is_a_mismatch():
    from adjointbench.suites.runner import Cell, run_cell

    class Truncated(_Oversized):
        def supports(self, problem, op, method=None):
            return op in ("primal", "vjp")

        def prepare(self, task):
            import numpy as np

            from adjointbench.impls.protocol import Prepared
            if task.op == "primal":
                return Prepared(run=lambda: task.inputs["A"] @ task.inputs["x"])
            return Prepared(run=lambda: (np.zeros(3), np.zeros(1)))  # both cotangents cut short

    record = run_cell(Cell("matvec", "truncated", "vjp", 8, budget_s=0.01, suite="bench"),
                      impl=Truncated())
    assert record.outcome == "mismatch" and "result 0 has shape (3,), expected" in record.message


def test_a_ragged_or_wrapped_result_is_a_mismatch_that_says_what_it_is():
    """A JVP returned as a ragged tuple raised NumPy's "inhomogeneous shape"
    in the comparison, told as an error of the implementation; one returned
    as ``(dy,)`` was "shape (1, 4)" without a word on why."""
    import numpy as np

    from adjointbench.impls.protocol import Prepared
    from adjointbench.suites.runner import Cell, run_cell

    class Wrapping:
        name = "wrapping"

        def __init__(self, extra):
            self.extra = extra

        def devices(self):
            return ("cpu",)

        def supports(self, problem, op, method=None):
            return op == "jvp"

        def prepare(self, task):
            dy = np.cos(task.inputs["x"]) * task.tangent["x"]
            return Prepared(run=lambda: (dy, *self.extra))

    ragged = run_cell(Cell("broadcast_sin", "wrapping", "jvp", 4), impl=Wrapping([np.zeros(2)]))
    assert ragged.outcome == "mismatch"
    assert "jvp output is not an array of numbers (tuple: " in ragged.message
    wrapped = run_cell(Cell("broadcast_sin", "wrapping", "jvp", 4), impl=Wrapping([]))
    assert wrapped.outcome == "mismatch" and wrapped.message.startswith(
        "jvp output has shape (1, 4), expected (4,): a tuple holding one array of the right "
        "shape; return the array itself")
    from adjointbench.testing import check_rules

    with pytest.raises(AssertionError, match=r"a tuple holding one array of the right shape"):
        check_rules(np.sin, np.linspace(-1.0, 1.0, 5), jvp=lambda a, t: (np.cos(a[0]) * t[0],))


@pytest.mark.parametrize("op", ["primal", "vjp"])
def test_an_operation_that_returns_nothing_is_told_so(op):
    """A rule that writes its result somewhere and returns None is a mismatch
    saying so, not a puzzle about shape ()."""
    from adjointbench.suites.runner import Cell, run_cell

    class ReturnsNothing(_Oversized):
        def supports(self, problem, op, method=None):
            return op in ("primal", "vjp")

        def prepare(self, task):
            from adjointbench.impls.protocol import Prepared
            return Prepared(run=lambda: None if task.op == "primal" else (None, None))

    record = run_cell(Cell("matvec", "returns_nothing", op, 3), impl=ReturnsNothing())
    assert record.outcome == "mismatch" and " is None: the operation must return" in record.message


def test_a_ctrl_c_a_finaliser_swallows_still_stops_the_sweep(capfd):
    """Python hands KeyboardInterrupt to whatever runs, a ``__del__`` included,
    which prints it and goes on: the sweep must stop at the next cell anyway."""
    from adjointbench import faults

    class InterruptedWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    with faults.interrupts_never_swallowed():
        InterruptedWhileCollected()  # collected at once: the interrupt lands in __del__
        with pytest.raises(KeyboardInterrupt):
            faults.raise_if_interrupted()
    assert "Traceback" not in capfd.readouterr().err
    with faults.interrupts_never_swallowed():
        faults.raise_if_interrupted()  # a new run starts clean


def test_a_worker_is_asked_each_supports_question_once():
    """The same question comes for every size and dtype of a sweep: the
    worker's first answer is kept for its lifetime, and a new question is asked."""
    from adjointbench.suites.isolation import RemoteExecutor

    class Worker:
        def __init__(self):
            self.supported, self.asked = {}, []

        def call(self, deadline, method, *args):
            self.asked.append((method, *args))
            return args[0] == "softmax"

    worker = Worker()
    answers = [RemoteExecutor(worker, 10.0).supports(p, "jvp", None)
               for p in ("softmax", "matmul", "softmax", "matmul")]
    assert answers == [True, False, True, False]
    assert worker.asked == [("supports", "softmax", "jvp", None),
                            ("supports", "matmul", "jvp", None)]


def test_what_code_under_test_prints_is_relayed_while_its_call_runs(tmp_path):
    """chatty:slow_implementation prints a line with the time, then half a
    line, then waits: the whole line reaches stderr seconds before the call
    ends, the half line only whole, after it."""
    wait_s = 4.0
    run = _start("check", "--impl", "chatty:slow_implementation", *NUMPY_CELL[2:],
                 "--out", str(tmp_path / "r"), env=_env(tmp_path, CHATTY_WAIT_S=str(wait_s)))
    arrived = {}
    for line in run.stderr:
        arrived.setdefault(line.rstrip("\n"), time.time())
    assert run.wait(60) == 0
    prefix = "[chatty:slow_implementation] chatty: "
    [(said, when)] = [(float(line.rsplit(" ", 1)[1]), t) for line, t in arrived.items()
                      if line.startswith(prefix + "waiting from ")]
    assert when - said < wait_s - 1.5, (when - said, arrived)  # relayed every second
    assert arrived[prefix + "an unfinished line ends here"] - said >= wait_s
    assert "line 0 of a call" in " ".join(arrived)  # and the lines of later calls, as before


def test_what_code_under_test_prints_is_relayed_attributed_and_never_on_stdout(tmp_path):
    """tests/plugins/chatty.py prints a forged summary, an escape sequence and
    50 lines a call: all reach stderr, each line named, none obeyed or on stdout."""
    done = _cli("check", "--impl", "chatty:implementation", *NUMPY_CELL[2:],
                "--out", str(tmp_path / "r"), env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "1 cells: 1 ok"  # scalar_add's primal, float64
    assert "chatty" not in done.stdout and "999 cells" not in done.stdout
    said = done.stderr.splitlines()
    for line in ("999 cells: 999 ok", "chatty: imported", "chatty: written to descriptor 1",
                 "chatty: from a child", "chatty: line 0 of a call", r"\x1b[2A\x1b[Kerased"):
        assert f"[chatty:implementation] {line}" in said
    assert "\x1b" not in done.stderr
    assert "line 49 of a call" not in done.stderr  # each call's first 20 lines are shown
    assert any("its output went on" in line for line in said)


def test_a_call_that_prints_without_end_does_not_fill_the_disk(tmp_path):
    """Its output file is emptied while the call runs, beyond the relay's
    KEPT_BYTES (nothing past the first lines is shown), its size counted."""
    chunk, chunks, seen = KEPT_BYTES + 2**20, 4, tmp_path / "seen"  # a chunk every 1.5 s
    done = _cli("check", "--impl", "chatty:flooding", *NUMPY_CELL[2:], "--out", str(tmp_path),
                env=_env(tmp_path, CHATTY_SEEN=str(seen), CHATTY_CHUNK=str(chunk),
                         CHATTY_CHUNKS=str(chunks)))
    assert done.returncode == 0, done.stderr
    assert int(seen.read_text()) <= 2 * chunk < chunks * chunk
    assert (f"its output went on: {chunks * chunk} bytes in all, of which the first 20 lines "
            "are shown") in done.stderr


def test_a_call_that_logs_past_its_timeout_is_told_once(tmp_path):
    """A hang in a loop that logs prints on between its timeout and its
    worker's end: its first lines are shown and then one count of all it
    wrote. Before, the lines it printed meanwhile were told as a second
    call's: 20 more lines and a second, smaller count."""
    done = _cli("check", "--impl", "chatty:logging_hang", *NUMPY_CELL[2:], "--timeout", "2",
                "--out", str(tmp_path), env=_env(tmp_path))
    assert done.returncode == 1, done.stderr
    said = done.stderr.splitlines()
    shown = [line for line in said if line.startswith("[chatty:logging_hang] chatty: logging line")]
    assert shown == [f"[chatty:logging_hang] chatty: logging line {i}" for i in range(20)]
    counts = [line for line in said if "its output went on" in line]
    assert len(counts) == 1, counts
    written = int(re.search(r"went on: (\d+) bytes", counts[0]).group(1))
    assert written > sum(len(f"{line[len('[chatty:logging_hang] '):]}\n") for line in shown)
    assert '"outcome": "timeout"' in (tmp_path / "results.jsonl").read_text()


@posix
def test_code_under_test_cannot_reach_the_users_terminal(plugins_on_path, tmp_path):
    """A worker is in a session of its own, with no controlling terminal:
    /dev/tty does not open there. Before, code under test could write
    escape sequences and lines of its own among the harness's on the
    user's screen (clear it, and print a summary), past the relay that
    escapes what it prints."""
    import pty
    import select

    from terminal import FORGED

    main_fd, terminal_fd = pty.openpty()
    # the harness in a session whose controlling terminal is the pty (set by
    # the harness's own process: a preexec_fn would fork this JAX-loaded one)
    argv = ["-m", "adjointbench", "check", "--impl", "terminal:implementation",
            *NUMPY_CELL[2:], "--out", str(tmp_path / "r")]
    take_the_terminal = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                         f"os.execv(sys.executable, [sys.executable, *{argv!r}])")
    run = subprocess.Popen([sys.executable, "-c", take_the_terminal], env=_env(tmp_path),
                           stdin=terminal_fd, stdout=terminal_fd, stderr=terminal_fd,
                           start_new_session=True)
    os.close(terminal_fd)
    seen, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline:  # what the terminal shows, until the harness closes it
        if not select.select([main_fd], [], [], 1.0)[0]:
            continue
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # EIO: no process holds the terminal any more
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_fd)
    assert run.wait(60) == 1, seen
    shown = seen.decode(errors="replace")
    assert FORGED not in shown and "\x1b[2J" not in shown, shown
    assert "error" in shown and "/dev/tty" in shown, shown


@posix
@pytest.mark.parametrize("signum", ["SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1"])
def test_a_worker_cannot_signal_the_harness(tmp_path, signum):
    """A plug-in that signals its worker's parent (by its id, its process
    group, or every process at once) ended the sweep: SIGHUP and SIGUSR1 at
    once and without a word, SIGTERM and SIGINT as an interrupt. Each signal
    is refused (EPERM: adjointbench/fence.py), the cell is an error, and the
    sweep goes on."""
    from adjointbench.fence import SYSCALLS

    if __import__("platform").machine() not in SYSCALLS:
        pytest.skip("the seccomp filter is written for x86-64 and arm64 Linux")
    trial = subprocess.run([sys.executable, "-c", "import os; from adjointbench.fence import "
                            "fence_off; print(fence_off(os.getppid()))"],
                           capture_output=True, text=True, timeout=60)
    if trial.stdout.strip() != "True":
        pytest.skip(f"this kernel or container allows no seccomp filter: {trial.stderr[-300:]}")
    done = _cli("check", "--impl", "signaller:implementation", "--problem",
                "scalar_add,scalar_mul", "--op", "primal", "--dtype", "float64", "--points", "1",
                "--quiet", "--out", str(tmp_path / "r"),
                env=_env(tmp_path, ADJOINTBENCH_TEST_SIGNAL=signum), timeout=120)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    records = {r.problem: r for r in ResultsFile(tmp_path / "r").read()[0]}
    assert records["scalar_add"].outcome == "error"
    assert records["scalar_add"].message.startswith("PermissionError: refused 3 of 3")
    assert records["scalar_mul"].outcome == "ok"
