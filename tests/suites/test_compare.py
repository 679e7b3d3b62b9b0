"""``adjointbench compare OLD NEW``: planted slowdowns and outcome
regressions are flagged, two runs of the same code are not."""

import json

import numpy as np
import pytest

from adjointbench.cli import main
from adjointbench.suites.comparison import compare_folders, outcome_change, time_change
from adjointbench.suites.results import Record

BENCH = ["bench", "--problem", "softmax,matvec", "--op", "primal,vjp", "--quick",
         "--budget", "0.05", "--quiet", "--in-process"]
CHECK = ["check", "--problem", "softmax,matvec", "--op", "vjp", "--dtype", "float64",
         "--quick", "--points", "1", "--quiet", "--in-process"]


def _bench_record(samples, outcome="ok", primal=None, op="vjp"):
    primal = np.full(len(samples), 1e-3) if primal is None else primal
    return Record("softmax", "x", op, "float64", "cpu", 8, 0, outcome, suite="bench",
                  time_median_s=float(np.median(samples)), samples_s=list(samples),
                  primal_samples_s=list(primal))


@pytest.mark.parametrize("old, new, kind", [
    ("ok", "mismatch", "regression"), ("ok", "crashed", "regression"),
    ("unsupported", "error", "regression"), ("mismatch", "ok", "improvement"),
    ("ok", "unsupported", "changed"), ("timeout", "crashed", "changed"), ("ok", "ok", None)])
def test_outcome_changes(old, new, kind):
    assert outcome_change(_bench_record([1.0], old), _bench_record([1.0], new)) == kind


def test_time_changes_need_size_significance_and_separation():
    rng = np.random.default_rng(0)
    noisy = lambda scale: scale * (1 + 0.3 * rng.random(60))  # 30% spread, like a busy machine
    base = _bench_record(noisy(1e-3))
    assert time_change(base, _bench_record(noisy(1e-3)), 1.10)[0] is None
    assert time_change(base, _bench_record(noisy(1.05e-3)), 1.10)[0] is None  # under threshold
    kind, ratio, change, p = time_change(base, _bench_record(noisy(1.6e-3)), 1.10)
    assert kind == "regression" and 1.4 < ratio < 1.8 and 1.4 < change < 1.8 and p < 1e-6
    assert time_change(base, _bench_record(noisy(0.5e-3)), 1.10)[0] == "improvement"
    few = _bench_record([1.2e-3, 1.3e-3])  # two samples cannot reach p < 0.01
    assert time_change(_bench_record([1e-3, 1.01e-3]), few, 1.10)[0] is None


def test_a_machine_slower_for_everything_is_not_a_regression():
    rng = np.random.default_rng(1)
    noisy = lambda scale: scale * (1 + 0.3 * rng.random(60))
    old = _bench_record(noisy(2e-3), primal=noisy(1e-3))
    busier = _bench_record(noisy(3e-3), primal=noisy(1.5e-3))  # both 1.5x slower, paired
    kind, ratio, change, _ = time_change(old, busier, 1.10)
    assert kind is None and ratio > 1.3 and 0.85 < change < 1.15
    old_primal = _bench_record(noisy(1e-3), op="primal")
    new_primal = _bench_record(noisy(1.5e-3), op="primal")
    assert time_change(old_primal, new_primal, 1.10, drift=1.5)[0] is None  # every primal slower
    assert time_change(old_primal, new_primal, 1.10, drift=1.0)[0] == "regression"


def test_a_primal_that_alone_moved_is_no_regression_of_its_operation():
    rng = np.random.default_rng(2)
    noisy = lambda scale: scale * (1 + 0.3 * rng.random(60))
    old = _bench_record(noisy(2e-3), primal=noisy(1e-3))
    quicker_primal = _bench_record(noisy(2e-3), primal=noisy(0.6e-3))  # vjp/primal up 1.7x
    kind, ratio, change, _ = time_change(old, quicker_primal, 1.10)
    assert kind is None and change > 1.4 and 0.85 < ratio < 1.15
    slower = _bench_record(noisy(3.4e-3), primal=noisy(1e-3))  # the vjp itself slowed
    assert time_change(old, slower, 1.10)[0] == "regression"


def _run(args, out, monkeypatch, drift=""):
    monkeypatch.setenv("ADJOINTBENCH_TEST_DRIFT", drift)
    assert main([*args, "--impl", "drifting:implementation", "--out", str(out)]) in (0, 1)


def test_a_planted_slowdown_and_a_planted_failure_are_regressions(
        plugins_on_path, tmp_path, monkeypatch, capsys):
    for args in (BENCH, CHECK):
        _run(args, tmp_path / "old", monkeypatch)
    _run(BENCH, tmp_path / "new", monkeypatch, drift="slow")  # every VJP sleeps 2 ms
    _run(CHECK, tmp_path / "new", monkeypatch, drift="wrong")  # softmax's VJP doubled
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--json"]) == 1
    changes = json.loads(capsys.readouterr().out)["changes"]
    regressions = {(c["what"], c["cell"].split()[1]) for c in changes if c["kind"] == "regression"}
    assert ("outcome", "softmax/drifting:implementation/vjp") in regressions
    assert {("time", "softmax/drifting:implementation/vjp"), ("time", "matvec/drifting:implementation/vjp")} <= regressions
    # the primal did not change: not flagged, allowing for what a loaded machine moves
    # a primal between two runs (up to 1.3x here, README: Comparing two runs)
    capsys.readouterr()
    main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--json", "--threshold", "1.5"])
    flagged = json.loads(capsys.readouterr().out)["changes"]
    assert not any(c["kind"] == "regression" and "/primal" in c["cell"] for c in flagged)
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--markdown"]) == 1
    comment = capsys.readouterr().out
    assert "regression(s)**" in comment and "| regression | `check softmax/drifting:implementation/vjp" in comment


def test_two_runs_of_the_same_code_do_not_regress(tmp_path, capsys):
    args = ["bench", "--problem", "softmax,matvec,matmul,broadcast_sin,linear_solve", "--op",
            "primal,jvp,vjp", "--quick", "--budget", "0.05", "--quiet", "--in-process"]
    for name in ("a", "b"):
        assert main([*args, "--impl", "numpy", "--out", str(tmp_path / name)]) == 0
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "0 regression" in text and "0 new, 0 vanished" in text


def test_new_and_vanished_cells_and_bad_folders(tmp_path, capsys):
    main([*CHECK, "--impl", "numpy", "--out", str(tmp_path / "old")])
    main(["check", "--problem", "softmax", "--op", "jvp", "--dtype", "float64", "--quick",
          "--quiet", "--in-process", "--impl", "numpy", "--out", str(tmp_path / "new")])
    comparison = compare_folders(tmp_path / "old", tmp_path / "new")
    assert comparison.count("new") == 2 and comparison.count("vanished") == 4
    assert comparison.regressions == []
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "nowhere")]) == 2
    assert "holds no results.jsonl" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"),
                 "--threshold", "0.9"]) == 2


def test_the_report_shows_a_comparison(plugins_on_path, tmp_path, monkeypatch):
    _run(CHECK, tmp_path / "old", monkeypatch)
    _run(CHECK, tmp_path / "new", monkeypatch, drift="wrong")
    assert main(["report", "--results", str(tmp_path / "new"), "--against",
                 str(tmp_path / "old"), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'id="comparison"' in page and "ok -&gt; mismatch" in page
    assert "check softmax/drifting:implementation/vjp" in (tmp_path / "report" / "summary.md").read_text()
