"""``adjointbench compare OLD NEW``: planted slowdowns and outcome
regressions are flagged, two runs of the same code are not."""

import json
from dataclasses import replace

import numpy as np
import pytest

from adjointbench.cli import main
from adjointbench.suites.comparison import (compare_folders, describe_change, judge_time,
                                           outcome_change, process_noise, round_spread,
                                           run_to_run_noise, time_change, to_text)
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


def test_a_machine_quicker_at_arithmetic_only_is_no_regression_of_a_memory_bound_primal():
    """Seen between two runs of the same code: the reference call and most
    primals 24 % quicker, a 1024 x 1024 matvec unchanged; over the reference
    (and over the drift) the matvec looked 1.3x slower."""
    rng = np.random.default_rng(3)
    noisy = lambda scale: scale * (1 + 0.1 * rng.random(60))

    def primal(time_s, reference_s):
        return replace(_bench_record(noisy(time_s), op="primal"),
                       reference_samples_s=list(noisy(reference_s)))
    old = primal(2e-4, 5e-5)
    held = primal(2e-4, 3.8e-5)  # the machine's arithmetic quicker, the matvec not
    kind, ratio, change, _ = time_change(old, held, 1.10, drift=0.76)
    assert kind is None and 0.9 < ratio < 1.1 and change > 1.2
    slower = primal(3e-4, 5e-5)  # the primal itself slowed, the machine held
    assert time_change(old, slower, 1.10, drift=1.0)[0] == "regression"


def test_the_noise_allowance_comes_from_the_side_a_regression_cannot_reach():
    rng = np.random.default_rng(4)
    same_code = list(np.exp(rng.normal(0, 0.08, 60)))  # a bad day: 8 % between runs
    slower, quicker = run_to_run_noise(same_code, "slower"), run_to_run_noise(same_code, "quicker")
    assert 1.08 < slower < 1.25 and 1.08 < quicker < 1.25
    calm = list(np.exp(rng.normal(0, 0.01, 40)))  # a quiet day: 1 %
    many_slowed = calm + [1.3] * 20  # a third of the cells 1.3x slower for real
    assert run_to_run_noise(many_slowed, "slower") < 1.05  # not taken for noise
    assert run_to_run_noise(many_slowed, "quicker") > 1.25  # a speed-up must beat it
    assert run_to_run_noise([1.3] * 30, "slower") == 1.0  # nothing moved the other way
    assert run_to_run_noise(list(np.exp(rng.normal(0, 2, 60))), "slower") == 1.5  # capped


def test_a_cell_whose_rounds_disagree_needs_more_than_that_to_regress(tmp_path):
    """Seen on this machine: l2_loss's primal at n = 1e5 took 55-77 us in
    runs minutes apart. A run whose two rounds disagree by 1.17x shows the
    cell's own noise, and a change of that size is none; the same change of
    a cell whose rounds agree is a regression."""
    rng = np.random.default_rng(6)
    noisy = lambda scale: list(scale * (1 + 0.03 * rng.random(30)))

    def primal(problem, first_s, second_s):
        return replace(_bench_record(noisy(first_s) + noisy(second_s), op="primal"),
                       problem=problem, reference_samples_s=noisy(5e-5) + noisy(5e-5),
                       samples_per_round=[30, 30])
    steady = [f"p{k}" for k in range(6)]
    old = [primal(p, 1e-5, 1e-5) for p in steady]
    new = [primal(p, 1e-5, 1e-5) for p in steady]
    old += [primal("modal", 4.8e-5, 5.6e-5), primal("slowed", 4.8e-5, 4.8e-5)]
    new += [primal("modal", 6e-5, 6.2e-5), primal("slowed", 5.7e-5, 5.7e-5)]
    comparison = compare_folders(_timed_folder(tmp_path / "old", old),
                                 _timed_folder(tmp_path / "new", new))
    assert [c.cell.split()[1] for c in comparison.regressions] == ["slowed/x/primal"]
    judged = judge_time(old[-2], new[-2])
    assert 1.15 < judged.spread < 1.25 and judged.kind(1.10) == "regression"  # without it


def test_a_change_within_the_usual_spread_of_its_kinds_rounds_is_unsettled(tmp_path):
    """Seen here between two runs of the same code: numpy's matmul primal at
    n = 8 in one mode in both rounds of one run and in the other mode in both
    of the next, 1.27x over the reference call, while other primals' rounds
    were up to 1.41x apart. A cell's own two rounds can agree by chance; the
    rounds of the cells judged as it is show what separates processes. The
    change is listed to be rerun, not counted; the same change where every
    other primal's rounds agree is a regression."""
    rng = np.random.default_rng(8)
    noisy = lambda scale, n=20: list(scale * (1 + 0.02 * rng.random(n)))

    def primal(problem, first_s, second_s):
        return replace(_bench_record(noisy(first_s) + noisy(second_s), op="primal"),
                       problem=problem, reference_samples_s=noisy(5e-5) + noisy(5e-5),
                       samples_per_round=[20, 20])
    bimodal = [(1e-5, 1.3e-5), (1.3e-5, 1e-5), (1e-5, 1e-5), (1.3e-5, 1.3e-5)] * 2
    others = [f"p{k}" for k in range(len(bimodal))]
    steady = [primal(p, 1e-5, 1e-5) for p in others]
    old = [primal(p, *times) for p, times in zip(others, bimodal)] + [primal("modal", 2e-5, 2e-5)]
    new = [primal(p, *times) for p, times in zip(others, reversed(bimodal))]
    new += [primal("modal", 2.55e-5, 2.55e-5)]
    comparison = compare_folders(_timed_folder(tmp_path / "old", old),
                                 _timed_folder(tmp_path / "new", new))
    assert not comparison.regressions
    modal = [c for c in comparison.changes if c.cell.startswith("bench modal/")]
    assert [c.kind for c in modal] == ["unsettled"] and 1.25 < modal[0].rounds < 1.35
    assert "rerun it to judge" in describe_change(modal[0])
    comparison = compare_folders(_timed_folder(tmp_path / "old2", steady + old[-1:]),
                                 _timed_folder(tmp_path / "new2", steady + new[-1:]))
    assert [(c.cell.split()[1], c.kind) for c in comparison.changes] == [
        ("modal/x/primal", "regression")]


def test_process_noise_is_taken_per_kind_of_judged_figure():
    judged = lambda *spreads: replace(judge_time(_bench_record([1.0] * 4), _bench_record([1.0] * 4)),
                                      round_spreads=spreads)
    primals = [judged(1.0 + 0.03 * k, 1.01) for k in range(10)]  # up to 1.27 apart
    operations = [judged(1.01, 1.02) for _ in range(10)]
    floors = process_noise(primals + operations, [True] * 10 + [False] * 10)
    assert 1.2 < floors[0] == floors[9] < 1.27 and floors[10] == floors[-1] < 1.03
    few = process_noise(primals + operations[:2], [True] * 10 + [False] * 2)
    pooled = [s for j in primals + operations[:2] for s in j.round_spreads]
    assert few[-1] == pytest.approx(np.percentile(pooled, 90)) != few[0]  # too few: all cells'
    assert process_noise(primals[:4], [True] * 4) == [1.0] * 4  # too few in all
    assert process_noise([judged(2.0, 3.0)] * 10, [True] * 10)[0] == 1.5  # capped
    assert process_noise([None, primals[0]], [True, True]) == [1.0, 1.0]


def test_round_spread_reads_each_rounds_samples():
    samples = [1.0] * 10 + [1.5] * 20
    record = replace(_bench_record(samples), samples_per_round=[10, 20])
    assert round_spread(record, samples) == 1.5
    assert round_spread(replace(record, samples_per_round=None), samples) == 1.0
    assert round_spread(replace(record, samples_per_round=[10, 10]), samples) == 1.0  # stale


def _timed_folder(folder, records):
    from adjointbench.suites.results import ResultsFile
    folder.mkdir()
    results = ResultsFile(folder)
    for r in records:
        results.append(r)
    return folder


def test_a_cell_timed_while_the_machine_moved_is_unsettled_not_a_regression(tmp_path):
    """Seen in a test run: softmax's primal 2.3x slower while the reference
    call timed beside it was 1.6x its run's usual: the machine, not the code."""
    rng = np.random.default_rng(5)
    noisy = lambda scale: list(scale * (1 + 0.05 * rng.random(40)))

    def primal(problem, time_s, reference_s):
        r = _bench_record(noisy(time_s), op="primal")
        return replace(r, problem=problem, reference_samples_s=noisy(reference_s))
    problems = [f"p{k}" for k in range(6)]
    old = [primal(p, 1e-5, 5e-5) for p in problems]
    disturbed = [primal(p, 1e-5, 5e-5) for p in problems[1:]] + [primal("p0", 2.3e-5, 8e-5)]
    comparison = compare_folders(_timed_folder(tmp_path / "old", old),
                                 _timed_folder(tmp_path / "new", disturbed))
    assert not comparison.regressions and comparison.count("unsettled") == 1
    (change,) = comparison.changes
    assert change.cell.startswith("bench p0/") and 1.5 < change.disturbed < 1.7
    # the same slowdown with the machine steady is a regression
    slowed = [primal(p, 1e-5, 5e-5) for p in problems[1:]] + [primal("p0", 2.3e-5, 5e-5)]
    comparison = compare_folders(tmp_path / "old", _timed_folder(tmp_path / "slowed", slowed))
    assert [c.kind for c in comparison.changes] == ["regression"]


def test_time_changes_of_a_run_on_a_busy_machine_are_unsettled(tmp_path, capsys):
    """Measured here: two spinning processes beside the new run made softmax's
    primal 2.4x slower over its reference call. A run whose environment says
    other processes kept the cores busy cannot show a regression in time,
    only unsettled cells and a note naming why; outcome changes still count."""
    rng = np.random.default_rng(7)
    noisy = lambda scale: list(scale * (1 + 0.03 * rng.random(40)))

    def primal(problem, time_s):
        r = _bench_record(noisy(time_s), op="primal")
        return replace(r, problem=problem, reference_samples_s=noisy(5e-5))
    problems = [f"p{k}" for k in range(6)]
    old = _timed_folder(tmp_path / "old", [primal(p, 1e-5) for p in problems])
    slowed = [primal(p, 1e-5) for p in problems[1:]] + [primal("p0", 2.4e-5)]
    quiet = _timed_folder(tmp_path / "quiet", slowed)
    busy = _timed_folder(tmp_path / "busy", slowed)
    (busy / "environment.json").write_text(json.dumps({"cpu_count": 2, "other_cores_busy": 1.4}))
    assert [c.kind for c in compare_folders(old, quiet).changes] == ["regression"]
    comparison = compare_folders(old, busy)
    assert [(c.kind, c.busy) for c in comparison.changes] == [("unsettled", "new")]
    assert comparison.busy[0] is None and "1.4 of its 2 cores" in comparison.busy[1]
    assert main(["compare", str(old), str(busy)]) == 0
    text = capsys.readouterr().out
    assert "note: the new run: the machine was busy" in text and "listed as unsettled" in text
    assert "the new run was timed on a busy machine: rerun on a quiet one" in text
    (old / "environment.json").write_text(json.dumps({"isolated": False}))
    assert "the old run timed its rounds in one process" in to_text(compare_folders(old, quiet))
    # the same folders the other way round: a speed-up on a busy machine is no improvement
    assert [(c.kind, c.busy) for c in compare_folders(busy, old).changes] == [("unsettled", "old")]


def _as_if_quiet(folder):
    """Drop what ``folder``'s environment.json says of the machine's load."""
    path = folder / "environment.json"
    environment = json.loads(path.read_text())
    for key in ("other_cores_busy", "load_before", "load_after"):
        environment.pop(key, None)
    path.write_text(json.dumps(environment))


def _run(args, out, monkeypatch, drift=""):
    monkeypatch.setenv("ADJOINTBENCH_TEST_DRIFT", drift)
    assert main([*args, "--impl", "drifting:implementation", "--out", str(out)]) in (0, 1)


def test_a_planted_slowdown_and_a_planted_failure_are_regressions(
        plugins_on_path, tmp_path, monkeypatch, capsys):
    for args in (BENCH, CHECK):
        _run(args, tmp_path / "old", monkeypatch)
    _run(BENCH, tmp_path / "new", monkeypatch, drift="slow")  # every VJP sleeps 2 ms
    _run(CHECK, tmp_path / "new", monkeypatch, drift="wrong")  # softmax's VJP doubled
    for run in ("old", "new"):  # judged as from a quiet machine, whatever else ran beside
        _as_if_quiet(tmp_path / run)  # this test: the busy-machine rule has its own
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
    """Isolated, as bench runs by default: each round in fresh workers, so the
    rounds show the process-to-process noise a comparison must allow for. (Run
    in one process, rounds share its state: 2 of 13 such pairs on a quiet
    machine here flagged a microsecond primal, none of 14 isolated pairs
    did.) On a busy machine the time changes come out unsettled, which is no
    regression either."""
    args = ["bench", "--problem", "softmax,matvec,matmul,broadcast_sin,linear_solve", "--op",
            "primal,jvp,vjp", "--quick", "--budget", "0.05", "--quiet"]
    for name in ("a", "b"):
        assert main([*args, "--impl", "numpy", "--out", str(tmp_path / name)]) == 0
    status = main(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    text = capsys.readouterr().out
    assert status == 0 and "0 regression" in text and "0 new, 0 vanished" in text, text


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


def test_the_cells_of_an_implementation_that_did_not_load_are_regressions(tmp_path, capsys):
    """A plug-in broken at import is left out of the new run (environment.json's
    not_loaded): its cells vanished, told as no failure (exit 0)."""
    main([*CHECK, "--impl", "numpy,naive", "--out", str(tmp_path / "old")])
    main([*CHECK, "--impl", "numpy", "--out", str(tmp_path / "new")])
    assert compare_folders(tmp_path / "old", tmp_path / "new").regressions == []
    environment = tmp_path / "new" / "environment.json"
    recorded = json.loads(environment.read_text())
    recorded["not_loaded"] = {"naive": "implementation 'naive' cannot be loaded: ImportError: x"}
    environment.write_text(json.dumps(recorded))
    comparison = compare_folders(tmp_path / "old", tmp_path / "new")
    naive = [c for c in comparison.changes if "/naive/" in c.cell]
    assert naive and all(c.kind == "regression" and describe_change(c) == "ok -> not loaded"
                         for c in naive)
    assert not [c for c in comparison.changes if "/numpy/" in c.cell]
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new")]) == 1
    assert ("note: naive did not load in the new run (implementation 'naive' cannot be "
            "loaded: ImportError: x)") in capsys.readouterr().out


def test_damaged_lines_are_told_and_a_folder_of_no_record_is_refused(tmp_path, capsys):
    """Damaged lines were dropped unsaid (their cells then read as new or
    vanished), and a folder of none compared as an empty run (exit 0)."""
    main([*CHECK, "--impl", "numpy", "--out", str(tmp_path / "old")])
    new = tmp_path / "new"
    new.mkdir()
    (new / "results.jsonl").write_bytes((tmp_path / "old" / "results.jsonl").read_bytes()
                                        + b'{"problem": "softm')
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "old"), str(new)]) == 0
    assert ("note: the new run's results.jsonl has 1 damaged line(s) (cut short, or not a "
            "record), left out") in capsys.readouterr().out
    assert compare_folders(tmp_path / "old", new).damaged == (0, 1)
    (new / "results.jsonl").write_text('{"garbage": 1}\n')
    assert main(["compare", str(tmp_path / "old"), str(new)]) == 2
    assert f"NEW {str(new)!r} holds no records (1 damaged line(s)" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path / "old"), "--against", str(new),
                 "--out", str(tmp_path / "report")]) == 0  # the report, without the comparison
    assert f"no comparison with {str(new)!r}: OLD" in capsys.readouterr().err


def test_the_report_shows_a_comparison(plugins_on_path, tmp_path, monkeypatch):
    _run(CHECK, tmp_path / "old", monkeypatch)
    _run(CHECK, tmp_path / "new", monkeypatch, drift="wrong")
    assert main(["report", "--results", str(tmp_path / "new"), "--against",
                 str(tmp_path / "old"), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'id="comparison"' in page and "ok -&gt; mismatch" in page
    assert "check softmax/drifting:implementation/vjp" in (tmp_path / "report" / "summary.md").read_text()


def test_a_cell_timed_on_more_cores_in_one_run_is_unsettled_not_a_regression():
    """A cell whose timed calls kept 1.9 cores busy in the old run and one in
    the new (its pool sized to the run's threads only in the new) is 2x
    slower by every statistic, with no code changed: unsettled, and the
    reason given. Within the margin, or with either unknown, it is judged."""
    from adjointbench.suites.comparison import compare_pair

    rng = np.random.default_rng(7)
    noisy = lambda scale: scale * (1 + 0.1 * rng.random(60))
    old = replace(_bench_record(noisy(1e-3), primal=noisy(1e-3)), cores=1.9)
    new = replace(_bench_record(noisy(2e-3), primal=noisy(1e-3)), cores=1.0)
    judged = judge_time(old, new)
    change = compare_pair(old, new, 1.10, judged)
    assert change.kind == "unsettled" and change.cores == (1.9, 1.0)
    assert "kept 1.90 cores busy in the old run and 1.00 in the new" in describe_change(change)
    assert compare_pair(replace(old, cores=1.2), new, 1.10, judged).kind == "regression"
    assert compare_pair(replace(old, cores=None), new, 1.10, judged).kind == "regression"
