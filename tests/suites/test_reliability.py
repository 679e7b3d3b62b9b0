"""Nothing an implementation does takes the sweep down, and nothing written is lost."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from adjointbench.faults import MESSAGE_LIMIT
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
    stopped, = [r for r in records if r.problem == "batched_sin"]
    assert "SIGSEGV" in crashed["matmul"] and "status 3" in crashed["softmax"]
    # where it crashed or hung, from the worker's own stacks (suites/stacks.py)
    assert "it was in string_at (ctypes/__init__.py:" in crashed["matmul"]
    assert "called from _segfault (misbehaving.py:" in crashed["matmul"]
    assert "; it was in _exit (misbehaving.py:" in crashed["softmax"]  # os._exit(3)
    # the reason it printed before it exited, in its record (before, on the screen only)
    assert crashed["softmax"].startswith("the worker running misbehaving:implementation exited "
                                         "with status 3 (its last line of output: fatal: the "
                                         "device was lost); it was in _exit")
    assert "; it was in _hang (misbehaving.py:" in records[list(EXPECTED).index("matvec")].message
    errors = {r.problem: r.message for r in records if r.outcome == "error"}
    assert "memory cap of 3.0 GiB" in errors["l2_loss"]
    # torch's allocator says so with a RuntimeError: the cap is named too
    assert errors["batched_dense"].startswith("the worker hit its memory cap of 3.0 GiB; raise "
                                              "it with ADJOINTBENCH_MEMORY_LIMIT_GB")
    assert "DefaultCPUAllocator: can't allocate memory" in errors["batched_dense"]
    assert errors["broadcast_tanh"].startswith("SystemExit: 0 raised by the implementation")
    # an exception whose __str__ raises: the worker formatting it died (status 1)
    assert errors["linear_solve"].startswith(
        "Unprintable: <str() of the Unprintable raised RuntimeError> at input point 0")
    # a megabyte message: kept in part, said so (a 50 MB one went whole into results.jsonl)
    assert len(errors["scalar_root"]) < MESSAGE_LIMIT + 200
    assert (f"{2**20:,} characters in all, of which the first {MESSAGE_LIMIT:,} are kept) "
            "at input point 0") in errors["scalar_root"]
    # stopped: told at once, not after the timeout
    assert "was stopped by signal SIGSTOP" in crashed["batched_sin"]
    assert stopped.seconds < 10
    # a worker reads no terminal (where one was its descriptor 0, SIGTTIN stopped it)
    assert errors["nonlinear_solve"].startswith("RuntimeError: read b'' from descriptor 0")
    assert len(ResultsFile(tmp_path).read()[0]) == len(cells)


def test_a_message_cut_where_it_was_raised_is_not_cut_again():
    """The worker cuts its implementation's message; the harness keeps that
    whole, and cuts a longer one only a worker it cannot trust would send."""
    from adjointbench.suites.executors import ImplementationError
    from adjointbench.suites.results import outcome_of

    outcome, cut = outcome_of(ValueError("x" * 10**6))
    assert outcome == "error" and cut.startswith("ValueError: xxx") and len(cut) < MESSAGE_LIMIT + 200
    assert "1,000,000 characters in all" in cut
    assert outcome_of(ImplementationError(cut)) == ("error", cut)
    forged = outcome_of(ImplementationError("y" * 10**6))[1]
    assert len(forged) < 2 * MESSAGE_LIMIT + 200 and "1,000,000 characters in all" in forged


def test_a_supports_question_that_hung_is_not_asked_again(plugins_on_path, oracle, tmp_path):
    """The same question comes for every size and dtype of a sweep, and each
    time from a fresh worker (the one that hung was killed): asked again, it
    cost every such cell the whole timeout. A new question is still asked,
    and what the implementation does answer runs as before."""
    spec = "undecided:implementation"
    cells = [Cell(p, spec, op, size, dtype=dtype, points=1)
             for p, sizes in (("matvec", (2, 8)), ("scalar_sin", (1,)))
             for op in ("primal", "jvp") for size in sizes for dtype in ("float64", "float32")]
    timeout_s, unanswered = 2.0, {}
    with IsolatedRunner(timeout_s=timeout_s, cache_dir=oracle.cache_dir,
                        unanswered=unanswered) as runner:
        records = run_sweep(cells, oracle, ResultsFile(tmp_path), progress=False,
                            runner=runner.run)
    with IsolatedRunner(timeout_s=timeout_s, cache_dir=oracle.cache_dir,
                        unanswered=unanswered) as beside:  # another runner of the run
        told = beside.run(cells[0])
    assert told.outcome == "timeout" and told.seconds < 1 and "not asked again" in told.message
    matvec = [r for r in records if r.problem == "matvec"]
    assert {r.outcome for r in matvec} == {"timeout"}
    first = {op: next(r for r in matvec if r.op == op) for op in ("primal", "jvp")}
    for op, r in first.items():  # asked, waited for, with where it hung
        assert r.seconds >= timeout_s and "it was in supports (undecided.py:" in r.message, r
    again = [r for r in matvec if r not in first.values()]
    assert len(again) == 6 and all(r.seconds < 1 for r in again), [r.seconds for r in again]
    for r in again:
        assert r.message.startswith(
            f"supports('matvec', '{r.op}', None) gave no answer within the timeout when "
            "first asked in this run"), r.message
    assert [r.outcome for r in records if r.problem == "scalar_sin"] == ["ok"] * 4


def test_a_sys_exit_of_code_under_test_in_this_process_is_its_failure(plugins_on_path, tmp_path,
                                                                      capsys):
    """--in-process: sys.exit(0) in a rule ended the sweep with exit status 0
    and no word, as did one at the plug-in's import; each is now what it is
    in a worker, an error of the implementation (and a load failure, exit 2)."""
    args = ["--op", "primal", "--dtype", "float64", "--quiet", "--in-process"]
    assert main(["check", "--impl", "misbehaving:implementation", "--problem",
                 "broadcast_tanh,scalar_add", *args, "--out", str(tmp_path / "rule")]) == 1
    records = {r.problem: r for r in ResultsFile(tmp_path / "rule").read()[0]}
    assert records["broadcast_tanh"].outcome == "error"
    assert records["broadcast_tanh"].message.startswith(
        "SystemExit: 0 raised by the implementation, a BaseException that asks a program")
    assert records["scalar_add"].outcome == "error"  # its own failure: the sweep went on
    assert main(["check", "--impl", "stops_loading:implementation", "--problem", "scalar_add",
                 *args, "--out", str(tmp_path / "load")]) == 2
    assert ("implementation 'stops_loading:implementation' cannot be loaded: SystemExit: 0 "
            "raised by the implementation") in capsys.readouterr().err


def test_a_supports_that_never_answers_costs_a_few_timeouts_not_one_per_question(
        plugins_on_path, oracle, tmp_path):
    """Each new question waited the whole timeout: a sweep's few hundred
    questions, 300 s each. After HUNG_QUESTIONS, no new one is asked."""
    from adjointbench.suites.isolation import HUNG_QUESTIONS

    cells = [Cell(p, "undecided:stuck", op, size, points=1)
             for p, size in (("matvec", 2), ("scalar_sin", 1), ("softmax", 4), ("matmul", 2))
             for op in ("primal", "jvp", "vjp")]
    timeout_s = 1.5
    with IsolatedRunner(timeout_s=timeout_s, cache_dir=oracle.cache_dir) as runner:
        records = run_sweep(cells, oracle, ResultsFile(tmp_path), progress=False,
                            runner=runner.run)
    assert {r.outcome for r in records} == {"timeout"}
    waited = [r for r in records if r.seconds >= timeout_s]
    assert len(waited) == HUNG_QUESTIONS and all(
        "it was in supports (undecided.py:" in r.message for r in waited)
    told = [r for r in records if r not in waited]
    assert all(r.seconds < 1 and "so no new question is asked" in r.message for r in told)


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


def test_resume_with_more_points_checks_the_cells_again(tmp_path, capsys):
    """--resume --points 3 after --points 1 kept every 1-point verdict and
    checked nothing ("checking 0 cells"); fewer points than before are enough."""
    args = ["check", "--impl", "numpy", "--problem", "softmax", "--op", "jvp", "--dtype",
            "float64", "--quick", "--in-process", "--quiet", "--out", str(tmp_path)]
    assert main([*args, "--points", "1"]) == 0
    assert main([*args, "--points", "3", "--resume"]) == 0
    assert "2 cell(s) were checked at fewer input points than --points asks: run again" in \
        capsys.readouterr().err
    records, _ = ResultsFile(tmp_path).read()
    assert len(records) == 2 and {r.points for r in records} == {3}
    assert main([*args, "--points", "2", "--resume"]) == 0
    assert "resuming: 2 of 2 cells already finished" in capsys.readouterr().err
    assert ResultsFile(tmp_path).read()[0] == records


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


@pytest.mark.parametrize("how", [[], ["--in-process"]])
def test_a_problem_whose_reference_fails_stops_the_run_blaming_no_implementation(
        plugins_on_path, tmp_path, capsys, how):
    """A declared problem whose primal raises at size 16: bad input (exit 2)
    naming the problem, the records before it kept. It was each cell's
    "error: TypeError: ..." against the implementation."""
    assert main(["check", "--problem", "failing_problem:problem", "--op", "primal,jvp",
                 "--impl", "failing_problem:implementation", "--dtype", "float64", "--quiet",
                 "--out", str(tmp_path), *how]) == 2
    err = capsys.readouterr().err
    assert ("the reference of problem 'fails_above_4' cannot be computed at size 16 at input "
            "point 0: the problem's own code raised TypeError: this primal breaks above size 4. "
            "This is a fault of the problem's declaration, not of failing_problem:implementation"
            ) in err
    kept = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert kept and all(r["size"] == 4 and r["outcome"] == "ok" for r in kept)


def test_a_problem_whose_high_precision_primal_computes_in_float64_stops_the_run(
        plugins_on_path, tmp_path, capsys):
    """Its every derivative was told as a kink ("not differentiable at this
    input point"), each cell unsupported, of a smooth exp."""
    assert main(["check", "--problem", "failing_problem:rounded", "--op", "jvp",
                 "--impl", "failing_problem:implementation", "--dtype", "float64", "--quiet",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "the high-precision primal of exp_in_float64 does not move" in err
    assert "computes in float64 somewhere" in err and "not of any implementation" in err


def test_a_failed_bench_cell_is_not_called_expected(plugins_on_path, tmp_path, capsys):
    """Expected outcomes are of check cells: a bench cell that fails is a
    failure (exit 1), and its line said "(expected)"."""
    args = ["--problem", "scalar_add", "--op", "primal", "--dtype", "float64", "--quiet"]
    assert main(["bench", "--impl", "misbehaving:ExpectsItsFailures", *args, "--budget", "0.01",
                 "--out", str(tmp_path / "bench")]) == 1
    line, = [x for x in capsys.readouterr().out.splitlines() if "scalar_add-n1" in x]
    assert line.startswith("  error") and "deliberate failure" in line and "expected" not in line
    assert main(["check", "--impl", "misbehaving:ExpectsItsFailures", *args,
                 "--out", str(tmp_path / "check")]) == 0
    line, = [x for x in capsys.readouterr().out.splitlines() if "scalar_add-n1" in x]
    assert "(expected)" in line


def test_a_bench_cell_timing_a_listed_wrong_rule_is_an_expected_mismatch(oracle, tmp_path,
                                                                          capsys):
    """torch's manifest lists its forward-over-forward HVP of linear_solve as a
    mismatch (torch.linalg.solve's JVP is not differentiable in A): timed at a
    checked size, its result is judged wrong too, and that is no surprise."""
    pytest.importorskip("torch")
    oracle.reference("linear_solve", 8)
    oracle.second_order("linear_solve", 8)  # at hand: the bench computes none
    assert main(["bench", "--impl", "torch", "--problem", "linear_solve", "--op", "hvp",
                 "--method", "forward_over_forward", "--size", "8", "--budget", "0.01",
                 "--rounds", "1", "--quiet", "--out", str(tmp_path)]) == 0
    line, = [x for x in capsys.readouterr().out.splitlines() if "linear_solve-n8" in x]
    assert line.startswith("  mismatch") and "(expected)" in line
    assert "the timed calls returned a wrong result" in line


@pytest.mark.parametrize("rules", [[{"problem": "matmul", "outcome": "broken"}], [7],
                                   [{"outcome": "error", "point": 2}], [{1: "x", "outcome": "ok"}]])
def test_bad_manifest_rules_are_named(rules):
    with pytest.raises(ValueError, match=r"bad rule .* of 'mine': a rule is a dict with an outcome"):
        load_manifest("mine", rules)


def test_expected_outcomes_not_a_list_are_named():
    with pytest.raises(ValueError, match="the expected outcomes of 'mine' are a dict: declare a list"):
        load_manifest("mine", {"problem": "matmul", "outcome": "error"})


@pytest.mark.parametrize("how", [[], ["--in-process"]])
@pytest.mark.parametrize("plugin", ["misbehaving:DeclaresABadRule", "misbehaving:DeclaresNoList"])
def test_a_plug_in_with_a_bad_manifest_is_refused_before_any_cell(plugins_on_path, tmp_path,
                                                                   capsys, plugin, how):
    """Bad input (exit 2) named before the sweep: a bad rule was found only
    when the sweep's outcomes were compared with it, and the run ended in a
    traceback (exit 1) after every cell had run."""
    assert main(["check", "--impl", plugin, "--problem", "scalar_add", "--op", "primal",
                 "--quiet", "--out", str(tmp_path), *how]) == 2
    err = capsys.readouterr().err
    assert f"the expected outcomes of {plugin!r}" in err and "a rule is a dict" in err
    assert not (tmp_path / "results.jsonl").exists() or not (tmp_path / "results.jsonl").read_text()


def test_a_plug_in_declares_its_own_expectations(plugins_on_path, tmp_path, capsys):
    args = ["--problem", "scalar_add,scalar_mul", "--op", "primal", "--dtype", "float64",
            "--quiet"]
    assert main(["check", "--impl", "misbehaving:ExpectsItsFailures", *args,
                 "--out", str(tmp_path / "both")]) == 0  # both failures were expected
    assert main(["check", "--impl", "misbehaving:ExpectsOneFailure", *args,
                 "--out", str(tmp_path / "one")]) == 1
    assert "scalar_mul-n1-float64-cpu is mismatch, its manifest expects ok" in capsys.readouterr().out
