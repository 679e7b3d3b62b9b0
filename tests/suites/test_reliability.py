"""Nothing an implementation does takes the sweep down, and nothing written is lost."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from adjointbench.reference import get_problem
from adjointbench.suites.cells import plan_cells
from adjointbench.suites.isolation import IsolatedRunner
from adjointbench.suites.results import ResultsFile, record_key
from adjointbench.suites.runner import Cell
from adjointbench.suites.sweep import run_sweep


def test_every_misbehaviour_becomes_an_outcome(plugins_on_path, oracle, tmp_path, monkeypatch):
    from misbehaving import EXPECTED

    monkeypatch.setenv("ADJOINTBENCH_MEMORY_LIMIT_GB", "3")
    cells = [Cell(p, "misbehaving:implementation", "primal", get_problem(p).smallest_size)
             for p in EXPECTED] + [Cell("scalar_add", "numpy", "primal", 1)]
    with IsolatedRunner(timeout_s=15, cache_dir=oracle.cache_dir) as runner:
        records = run_sweep(cells, oracle, ResultsFile(tmp_path), progress=False,
                            runner=runner.run)
    outcomes = {r.problem: r.outcome for r in records if r.impl != "numpy"}
    assert outcomes == EXPECTED
    assert all(r.message for r in records[:-1])
    assert records[-1].outcome == "ok"  # the sweep went on after every failure
    crashed = {r.problem: r.message for r in records if r.outcome == "crashed"}
    assert "SIGSEGV" in crashed["matmul"] and "status 3" in crashed["softmax"]
    # where it crashed or hung, from the worker's own stacks (suites/stacks.py)
    assert "it was in string_at (ctypes/__init__.py:" in crashed["matmul"]
    assert "called from _segfault (misbehaving.py:" in crashed["matmul"]
    assert "; it was in _exit (misbehaving.py:" in crashed["softmax"]  # os._exit(3)
    assert "; it was in _hang (misbehaving.py:" in records[list(EXPECTED).index("matvec")].message
    errors = {r.problem: r.message for r in records if r.outcome == "error"}
    assert "memory cap of 3.0 GiB" in errors["l2_loss"]
    assert errors["broadcast_tanh"].startswith("SystemExit: 0 raised by the implementation")
    assert len(ResultsFile(tmp_path).read()[0]) == len(cells)


def test_a_wrong_value_keeps_the_worker_and_a_raise_replaces_it(plugins_on_path, oracle):
    """A mismatch (a torch defect the manifest declares, say) costs no
    restart; an exception may have left the framework half-changed."""
    spec = "misbehaving:implementation"
    cells = {p: Cell(p, spec, "primal", get_problem(p).smallest_size, points=1)
             for p in ("scalar_mul", "scalar_sin", "scalar_add")}
    with IsolatedRunner(timeout_s=15, cache_dir=oracle.cache_dir) as runner:
        pids = []
        for problem, outcome in [("scalar_mul", "mismatch"), ("scalar_sin", "mismatch"),
                                 ("scalar_add", "error"), ("scalar_sin", "mismatch")]:
            pids.append(runner.worker(spec).process.pid)
            assert runner.run(cells[problem]).outcome == outcome
        pids.append(runner.worker(spec).process.pid)
    # pids[i]: the worker that ran cell i; pids[4]: the one after the last cell
    assert pids[0] == pids[1] == pids[2]  # kept after two mismatches
    assert pids[3] != pids[2]  # replaced after the error
    assert pids[4] == pids[3]


def _check(*args, **kw):
    return subprocess.run([sys.executable, "-m", "adjointbench", "check", *args],
                          capture_output=True, text=True, **kw)


def test_resume_skips_finished_cells_and_drops_a_truncated_line(tmp_path):
    args = ["--impl", "numpy", "--problem", "scalar_add,scalar_mul", "--op", "primal,jvp",
            "--out", str(tmp_path), "--quiet", "--in-process"]
    assert _check(*args).returncode == 0
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])  # killed mid-write
    again = _check(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert "dropped 1 damaged line" in again.stderr
    assert f"{len(lines) - 1} of {len(lines)} cells already finished" in again.stderr
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == len(lines)
    assert len({(r["problem"], r["op"], r["dtype"]) for r in records}) == len(lines)


def test_existing_results_are_never_overwritten(tmp_path):
    args = ["--impl", "numpy", "--problem", "scalar_add", "--out", str(tmp_path), "--quiet",
            "--in-process"]
    assert _check(*args).returncode == 0
    before = (tmp_path / "results.jsonl").read_text()
    second = _check(*args)
    assert second.returncode == 2 and "--resume" in second.stderr
    assert (tmp_path / "results.jsonl").read_text() == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_keeps_every_finished_cell(tmp_path):
    args = ["--impl", "naive", "--problem", "matmul,matvec,softmax", "--out", str(tmp_path),
            "--quiet", "--in-process"]
    process = subprocess.Popen([sys.executable, "-m", "adjointbench", "check", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path = tmp_path / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err.decode()
    assert "records kept in" in err.decode() and "--resume" in err.decode()
    kept, damaged = ResultsFile(tmp_path).read()
    assert len(kept) >= 3 and damaged == 0
    finished = _check(*args, "--resume")
    assert finished.returncode == 0, finished.stderr
    total, _ = ResultsFile(tmp_path).read()
    keys = [record_key(r) for r in total]
    planned = plan_cells(["naive"], ["matmul", "matvec", "softmax"])
    assert len(keys) == len(set(keys)) == len(planned)  # every cell once, interrupted or not


# --- expected-outcome manifests, checked both ways ---

from adjointbench.cli import main  # noqa: E402
from adjointbench.suites.expected import load_manifest, surprises  # noqa: E402
from adjointbench.suites.results import Record  # noqa: E402


def _record(impl, outcome, problem="matmul", op="vjp"):
    return Record(problem, impl, op, "float64", "cpu", 8, 0, outcome)


def test_manifest_reports_new_failures_and_fixed_ones():
    rules = [{"problem": "matmul", "op": "vjp", "outcome": "mismatch"}]
    manifests = {"mine": rules}
    assert surprises([_record("mine", "mismatch")], manifests) == []
    fixed = _record("mine", "ok")
    assert surprises([fixed], manifests) == [(fixed, "mismatch")]  # a listed failure passes
    broken = _record("mine", "error", op="jvp")
    assert surprises([broken], manifests) == [(broken, "ok")]


def test_no_verdict_where_ok_is_expected_is_no_surprise_but_a_listed_one_must_hold():
    manifests = {"mine": [{"problem": "matmul", "op": "jvp", "outcome": "ill_conditioned"}]}
    no_verdict = [_record("mine", "unsupported"), _record("mine", "ill_conditioned")]
    assert surprises(no_verdict, manifests) == []  # vjp: ok expected
    fixed = _record("mine", "ok", op="jvp")
    assert surprises([fixed], manifests) == [(fixed, "ill_conditioned")]


def test_without_a_manifest_only_failures_are_surprises():
    records = [_record("x", o) for o in ("ok", "unsupported", "ill_conditioned", "crashed")]
    assert [r.outcome for r, _ in surprises(records, {"x": None})] == ["crashed"]


def test_a_built_in_named_by_its_module_and_object_keeps_its_manifest(tmp_path, capsys):
    """``--impl adjointbench.impls.torch:implementation`` is torch: its
    listed failures (forward over forward through linalg.solve) are expected,
    as under its name; only the built-ins' own entry points are recognised."""
    from adjointbench.impls.registry import built_in_name

    pytest.importorskip("torch")
    assert load_manifest("adjointbench.impls.torch:implementation") == load_manifest("torch")
    assert built_in_name("adjointbench.impls.torch:implicit_implementation") == "torch_implicit"
    assert built_in_name("torch") is None and built_in_name("my_torch:implementation") is None
    assert load_manifest("my_plugin.torch:implementation") is None
    args = ["--problem", "linear_solve", "--op", "hvp", "--method", "forward_over_forward",
            "--dtype", "float64", "--size", "8", "--points", "1", "--quiet"]
    assert main(["check", "--impl", "adjointbench.impls.torch:implementation", *args,
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mismatch" in out and "(expected)" in out and "unexpected" not in out


def test_bad_manifest_rules_are_named():
    with pytest.raises(ValueError, match="bad rule"):
        load_manifest("mine", [{"problem": "matmul", "outcome": "broken"}])


def test_a_plug_in_declares_its_own_expectations(plugins_on_path, tmp_path, capsys):
    args = ["--problem", "scalar_add,scalar_mul", "--op", "primal", "--dtype", "float64",
            "--quiet"]
    assert main(["check", "--impl", "misbehaving:ExpectsItsFailures", *args,
                 "--out", str(tmp_path / "both")]) == 0  # both failures were expected
    assert main(["check", "--impl", "misbehaving:ExpectsOneFailure", *args,
                 "--out", str(tmp_path / "one")]) == 1
    assert "scalar_mul-n1-float64-cpu is mismatch, its manifest expects ok" in capsys.readouterr().out
