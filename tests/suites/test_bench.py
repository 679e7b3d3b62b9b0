"""The throughput suite and its front ends: `adjointbench bench`,
pytest-benchmark and asv."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from adjointbench.cli import main
from adjointbench.reference import problems
from adjointbench.suites.cells import Cell, plan_cells
from adjointbench.suites.runner import run_cell
from adjointbench.suites.results import ResultsFile
from adjointbench.suites.threads import DEFAULT_THREADS, THREAD_VARIABLES, thread_environment
from adjointbench.suites.timing import CORES_MARGIN, SLOW_MIN_ROUNDS

ROOT = Path(__file__).parents[2]


def test_scaling_sweeps_span_two_decades():
    for name in ("broadcast_sin", "broadcast_tanh", "matvec", "matmul", "softmax",
                 "linear_solve"):
        sizes = next(p for p in problems() if p.name == name).timed_sizes
        assert max(sizes) / min(sizes) >= 100, name
    for p in problems():
        if p.batch_input:
            assert min(p.timed_sizes) == 1 and max(p.timed_sizes) == 1024, p.name


def test_full_jacobians_are_timed_at_correctness_sizes_only():
    cells = plan_cells(["numpy"], ["matmul"], ["jacfwd", "vjp"], suite="bench")
    assert {c.size for c in cells if c.op == "jacfwd"} == {2, 8, 16}
    assert max(c.size for c in cells if c.op == "vjp") == 1024


def test_bench_records_carry_every_timing_field(tmp_path, capsys):
    code = main(["bench", "--impl", "numpy", "--problem", "matmul", "--size", "8",
                 "--op", "primal,vjp", "--budget", "0.01", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    records, _ = ResultsFile(tmp_path).read()
    by_op = {r.op: r for r in records}
    assert set(by_op) == {"primal", "vjp"} and all(r.suite == "bench" for r in records)
    vjp = by_op["vjp"]
    assert vjp.outcome == "ok"
    assert vjp.time_median_s > 0 and vjp.time_iqr_s >= 0 and vjp.primal_median_s > 0
    assert vjp.ratio_q1 <= vjp.ratio_to_primal <= vjp.ratio_q3  # paired (test_timing.py)
    assert vjp.compile_s > 0 and vjp.rounds >= SLOW_MIN_ROUNDS and vjp.number >= 1
    assert vjp.threads == 1  # the default
    assert 0 < vjp.cores < 1.5  # one thread kept at most one core busy
    assert by_op["primal"].ratio_to_primal == 1.0
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["versions"]["numpy"] and environment["threads"]["cpu_count"]
    assert environment["other_cores_busy"] >= 0 and environment["load_after"]
    assert environment["isolated"] is True  # compare notes runs whose rounds shared a process


def test_a_bench_sweep_is_timed_in_two_rounds_and_pooled(tmp_path, capsys):
    """As asv's ``processes``: the sweep passes over its cells twice, in fresh
    workers, so that compare sees how far a cell's speed drifts within a run."""
    code = main(["bench", "--impl", "numpy", "--problem", "matmul", "--size", "8",
                 "--op", "primal,vjp", "--budget", "0.02", "--out", str(tmp_path), "--quiet"])
    assert code == 0 and "round 2 of 2" in capsys.readouterr().err
    records, damaged = ResultsFile(tmp_path).read()
    assert damaged == 0 and sorted(r.op for r in records) == ["primal", "vjp"]  # replaced
    for record in records:
        parts = record.samples_per_round
        assert len(parts) == 2 and min(parts) >= SLOW_MIN_ROUNDS
        assert sum(parts) == record.rounds == len(record.samples_s)
        beside = record.reference_samples_s if record.op == "primal" else record.primal_samples_s
        ratios = np.array(record.samples_s) / np.array(beside)
        if record.op == "vjp":  # the pooled pairs' median, not either round's
            assert record.ratio_to_primal == pytest.approx(np.median(ratios), rel=1e-3)
        assert record.time_median_s == pytest.approx(np.median(record.samples_s), rel=1e-3)
    assert main(["bench", "--impl", "numpy", "--problem", "matmul", "--size", "8", "--op",
                 "primal", "--rounds", "1", "--budget", "0.01", "--quiet",
                 "--out", str(tmp_path / "one")]) == 0
    (one,), _ = ResultsFile(tmp_path / "one").read()
    assert one.samples_per_round is None and "round 2" not in capsys.readouterr().err


def test_a_cell_not_ok_in_a_round_keeps_that_rounds_record():
    from adjointbench.suites.bench import merge_rounds
    from adjointbench.suites.results import Record

    ok = Record("matmul", "numpy", "vjp", "float64", "cpu", 8, 0, "ok", suite="bench",
                time_median_s=1e-5, samples_s=[1e-5] * 5, primal_samples_s=[1e-6] * 5,
                rounds=5, compile_s=0.1, number=1)
    failed = Record("matmul", "numpy", "vjp", "float64", "cpu", 8, 0, "timeout", suite="bench")
    assert merge_rounds([ok, failed]) is failed
    pooled = merge_rounds([ok, ok])
    assert pooled.samples_per_round == [5, 5] and pooled.ratio_to_primal == pytest.approx(10)
    deferring = [replace(ok, to_numpy_s=s) for s in (2e-4, 3e-4)]  # 20x a 10 us call
    assert merge_rounds(deferring).to_numpy_s == 2e-4  # the rounds' fastest conversion
    assert "to_numpy() took 200 us" in merge_rounds(deferring).timing_warning
    busy = [replace(ok, cores=c, threads=1) for c in (1.0, 1.9)]
    assert merge_rounds(busy).cores == 1.9  # the busiest round's
    assert "kept 1.90 cores busy while timed with 1 thread(s)" in merge_rounds(busy).timing_warning
    # judged against the run's threads where it is given, not the pools' count
    assert "with 2 thread(s)" not in (merge_rounds(busy, threads=2).timing_warning or "")
    waiting = [replace(ok, cores=1.0, least_cores=c) for c in (1.0, 0.3)]
    assert merge_rounds(waiting).least_cores == 0.3  # the round that waited most
    assert "kept a CPU busy only 30%" in merge_rounds(waiting).timing_warning


def test_pooled_rounds_name_a_drift_between_them():
    from adjointbench.suites.bench import merge_rounds
    from adjointbench.suites.results import Record

    def round_of(scale):  # the machine at another speed: operation and primal alike
        return Record("matmul", "numpy", "vjp", "float64", "cpu", 8, 0, "ok", suite="bench",
                      time_median_s=scale, samples_s=[scale] * 8,
                      primal_samples_s=[scale / 3] * 8, rounds=8, compile_s=0.1, number=1)
    pooled = merge_rounds([round_of(1e-5), round_of(2e-5)])
    assert pooled.ratio_to_primal == pytest.approx(3)  # paired within each round
    assert "2.00x apart" in pooled.timing_warning and "drifted" in pooled.timing_warning
    assert merge_rounds([round_of(1e-5), round_of(1e-5)]).timing_warning is None


FIRST_CALLS = """
import sys
from adjointbench.impls.registry import load_implementation
from adjointbench.suites.cells import plan_cells
from adjointbench.suites.executors import LocalExecutor
executor = LocalExecutor(load_implementation("torch"))  # as a fresh worker loads it
for op in ("jvp", "vjp", "batched_jacobian"):
    cell = plan_cells(["torch"], ["batched_dense"], [op], ["float64"], quick=True)[0]
    before = set(sys.modules)
    executor.bench(cell)
    late = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in ("torch", "sympy"))
    assert not late, f"the first {op} imported {len(late)} modules in its timed call: {late[:5]}"
"""


def test_no_torch_cell_pays_for_imports_in_its_timed_first_call():
    """compile_s is the cell's own preparation and first call: torch.func's
    forward mode used to import torch._dynamo and sympy (1.0 s) inside the
    first forward-mode cell of each worker."""
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, "-c", FIRST_CALLS], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_threads_option_reaches_the_worker(tmp_path, capsys):
    code = main(["bench", "--impl", "numpy", "--problem", "matvec", "--size", "128",
                 "--op", "primal", "--budget", "0.01", "--threads", "1", "--out", str(tmp_path),
                 "--quiet"])
    assert code == 0
    (record,), _ = ResultsFile(tmp_path).read()
    assert record.threads == 1  # measured in the worker
    threads = json.loads((tmp_path / "environment.json").read_text())["threads"]
    assert threads["requested"] == 1
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert threads["cpus_allowed"] == allowed  # what pools sized from the CPUs see
    # what the workers started with, not this process's pools (library defaults here)
    assert threads["of"] == "worker processes" and "pools" not in threads
    assert threads["environment"]["OPENBLAS_NUM_THREADS"] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in threads["environment"]["XLA_FLAGS"]


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda pid: ())(0)) < 2,
                    reason="needs two CPUs to tell one core from more")
def test_jax_is_timed_on_the_threads_it_was_given(tmp_path, capsys):
    """jax 0.10 ignores XLA_FLAGS' thread settings and sizes its CPU pool from
    the CPUs the process may use: its 1024 x 1024 matmul kept 1.9 of 2 cores
    busy while numpy and torch had one. Loaded under pools_sized_to, it keeps
    one, and its record has no warning of cores."""
    pytest.importorskip("jax")
    code = main(["bench", "--impl", "jax", "--problem", "matmul", "--size", "1024", "--op",
                 "primal", "--rounds", "1", "--budget", "0.05", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    (record,), _ = ResultsFile(tmp_path).read()
    assert record.outcome == "ok" and record.threads == 1
    assert record.cores < 1.3, record.cores
    assert "cores busy" not in (record.timing_warning or "")


def test_check_and_bench_share_one_results_table(tmp_path, capsys):
    common = ["--impl", "numpy", "--problem", "scalar_sin", "--op", "primal", "--out",
              str(tmp_path), "--quiet", "--in-process"]
    assert main(["check", *common]) == 0
    assert main(["bench", *common, "--budget", "0.01"]) == 0
    assert main(["bench", *common, "--budget", "0.01"]) == 2  # no silent second sweep
    records, _ = ResultsFile(tmp_path).read()
    assert sorted(r.suite for r in records) == ["bench", "check", "check"]  # check: both dtypes
    assert json.loads((tmp_path / "environment.json").read_text())["isolated"] is False


@pytest.mark.parametrize("args, hint", [
    (["--budget", "0"], "argument --budget: 0 is out of range: give a number of seconds above 0"),
    (["--threads", "0"], "argument --threads: 0 is out of range"),
    (["--op", "vjpp"], "vjp"),
    (["--size", "7"], "Valid sizes"),
])
def test_bad_bench_input_exits_2(args, hint, capsys):
    assert main(["bench", "--impl", "numpy", "--problem", "matmul", *args]) == 2
    assert hint in capsys.readouterr().err


def test_a_size_an_implementation_declines_is_unsupported():
    record = run_cell(Cell("matmul", "naive", "vjp", 128, budget_s=0.01, suite="bench"))
    assert record.outcome == "unsupported" and "materialises" in record.message


def test_a_non_finite_result_is_not_a_timing(plugins_on_path):
    record = run_cell(Cell("scalar_mul", "misbehaving:Misbehaving", "primal", 1,
                           budget_s=0.01, suite="bench"))
    assert record.outcome == "mismatch" and "not finite" in record.message


def test_bench_judges_the_form_of_a_result_as_check_does(plugins_on_path, oracle):
    """A list of Python numbers is an array (float32 where it holds float32
    values); a cotangent not in its tuple is a mismatch, in bench and check."""
    for impl, outcome in (("untrustworthy:python_lists", "ok"),
                          ("untrustworthy:bare_cotangent", "mismatch")):
        for dtype in ("float64", "float32"):
            timed = run_cell(Cell("softmax", impl, "vjp", 100, dtype=dtype, suite="bench",
                                  budget_s=0.01))
            [checked] = plan_cells([impl], ["softmax"], ["vjp"], [dtype], [4])
            for record in (timed, run_cell(checked, oracle)):
                assert record.outcome == outcome, record
                if outcome == "mismatch":
                    assert "must return a tuple of 1 cotangents (x), got ndarray" in record.message
            assert (timed.ratio_to_primal is not None) == (outcome == "ok")


def test_per_sample_loop_is_the_vmap_baseline():
    vmap = run_cell(Cell("batched_sin", "jax", "batched_jacobian", 64, budget_s=0.02, suite="bench"))
    loop = run_cell(Cell("batched_sin", "jax_loop", "batched_jacobian", 64, budget_s=0.02,
                         suite="bench"))
    assert vmap.outcome == loop.outcome == "ok"
    declined = run_cell(Cell("batched_sin", "jax_loop", "batched_jacobian", 1024, suite="bench"))
    assert declined.outcome == "unsupported" and "vmap" in declined.message


def _run(args, **env):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_pytest_benchmark_suite_smoke(tmp_path, monkeypatch):
    """Its figures as bench's: paired, on one thread (bench's default) where
    nothing asks for another count."""
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "benchmark.json"
    run = _run([sys.executable, "-m", "pytest", "tests/sweep/test_throughput.py", "-m", "bench",
                "-k", "numpy and (matmul or batched_sin)", "-q", "-p", "no:cacheprovider",
                f"--benchmark-json={out}"], ADJOINTBENCH_BENCH_SCALE="smoke")
    assert run.returncode == 0, run.stdout[-3000:]
    benchmarks = json.loads(out.read_text())["benchmarks"]
    groups = {b["group"] for b in benchmarks}
    assert {"matmul-vjp-n8-float64-cpu", "batched_sin-batched_jacobian-n1-float64-cpu"} <= groups
    for b in benchmarks:
        info = b["extra_info"]
        assert b["stats"]["median"] > 0 and info["primal_median_s"] > 0
        assert info["ratio_q1"] <= info["ratio_to_primal"] <= info["ratio_q3"]
        assert info["threads"] == 1 and info["cores"] < 1 + CORES_MARGIN
        if info["op"] == "primal":
            assert info["ratio_to_primal"] == 1.0
        assert info["early_waits"] == 0 and 0 <= info["to_numpy_s"] < 1e-4  # numpy: nothing left


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda pid: ())(0)) < 2,
                    reason="needs two CPUs to narrow them to one")
def test_asv_samples_run_where_bench_takes_them(monkeypatch):
    """asv times between setup and teardown: with one thread asked for, on
    one CPU, as ``adjointbench bench`` samples; all of them after."""
    from adjointbench.suites.asv import bench_primitives

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    everything = os.sched_getaffinity(0)
    benchmark = bench_primitives.softmax_vjp()
    benchmark.setup("numpy", 100)
    try:
        assert len(os.sched_getaffinity(0)) == 1
        benchmark.time_vjp("numpy", 100)
        assert benchmark.track_ratio_to_primal("numpy", 100) > 0
    finally:
        benchmark.teardown("numpy", 100)
    assert os.sched_getaffinity(0) == everything


@pytest.mark.parametrize("impl", ["numpy", "torch"])
def test_asv_benchmarks_take_bench_threads_where_the_matrix_does_not_reach(monkeypatch, impl):
    """``asv run --python=same`` ignores the matrix's thread variables: a
    benchmark's setup gives its process bench's threads itself (environment,
    BLAS, torch), and teardown gives back what was there."""
    from adjointbench.suites.asv import bench_primitives
    from adjointbench.suites.threads import blas_threads

    framework = pytest.importorskip(impl)
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = blas_threads(), getattr(framework, "get_num_threads", lambda: None)()
    benchmark = bench_primitives.softmax_vjp()
    benchmark.setup(impl, 100)
    try:
        assert os.environ["OMP_NUM_THREADS"] == str(DEFAULT_THREADS)
        assert blas_threads() in (None, DEFAULT_THREADS)
        if impl == "torch":
            assert framework.get_num_threads() == DEFAULT_THREADS
        benchmark.time_vjp(impl, 100)
    finally:
        benchmark.teardown(impl, 100)
    assert "OMP_NUM_THREADS" not in os.environ
    assert (blas_threads(), getattr(framework, "get_num_threads", lambda: None)()) == before


def test_asv_runs_its_benchmarks_with_the_threads_bench_gives_its_workers():
    """asv.conf.json's ``env_nobuild``: every benchmark process of a commit's
    environment has bench's default thread count (its samples then run
    confined as bench's do), without a rebuild for it."""
    config = json.loads((ROOT / "asv.conf.json").read_text())
    bench_workers = thread_environment(DEFAULT_THREADS)
    assert config["matrix"]["env_nobuild"] == {
        name: [bench_workers[name]] for name in THREAD_VARIABLES}


def test_asv_suite_is_valid():
    run = _run([sys.executable, "-m", "asv", "check", "--python=same"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No problems found" in run.stdout


def test_asv_continuous_builds_and_compares_two_commits(tmp_path):
    """asv as its users run it: each of two commits of a clone built into its
    own virtualenv (asv.conf.json), benchmarked, and compared."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout: asv benchmarks commits")
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD~1"],
                      capture_output=True).returncode != 0:
        pytest.skip("a shallow clone: asv continuous needs two commits")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes"], cwd=clone, check=True, capture_output=True)
    run = subprocess.run([*asv, "continuous", "HEAD~1", "HEAD", "--quick", "--bench",
                          r"softmax_vjp\.time_vjp"], cwd=clone, capture_output=True, text=True,
                         timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode in (0, 1), out  # 1: asv saw a change between the two
    for rev in ("HEAD~1", "HEAD"):
        commit = subprocess.run(["git", "rev-parse", "--short=8", rev], cwd=clone,
                                capture_output=True, text=True, check=True).stdout.strip()
        assert f"For adjointbench commit {commit}" in out, out
    assert "Building for virtualenv-py3.11" in out
    assert "OMP_NUM_THREADS1" in out  # benchmarked with bench's threads (asv.conf.json)
    assert out.count("softmax_vjp.time_vjp") >= 2 and "failed" not in out
    assert "| Change" in out or "BENCHMARKS NOT SIGNIFICANTLY CHANGED" in out, out


def test_what_a_primal_writes_to_its_inputs_reaches_no_operation():
    """The inputs and probes of a bench cell are made once per worker and
    handed out as copies: an implementation that overwrites what it was
    given (inputs, tangent, cotangent) leaves the next cells' as the
    catalogue makes them."""
    from adjointbench.impls.numpy import NumpyImplementation
    from adjointbench.impls.protocol import Prepared
    from adjointbench.reference import get_problem, make_inputs, make_probes
    from adjointbench.suites.purity import copy_arrays

    seen = {}

    class Scribbling(NumpyImplementation):
        name = "scribbling"

        def prepare(self, task):
            prepared = super().prepare(task)
            seen[task.op] = copy_arrays((task.inputs, task.tangent, task.cotangent))

            def run():
                result = prepared.run()
                for array in [*task.inputs.values(), *(task.tangent or {}).values(),
                              *([] if task.cotangent is None else [task.cotangent])]:
                    array[...] = 7.0
                return result
            return Prepared(run=run, to_numpy=prepared.to_numpy)

    impl = Scribbling()
    for op in ("primal", "jvp", "vjp"):
        cell = Cell("matvec", "scribbling", op, 8, suite="bench", budget_s=0.01, seed=91)
        run_cell(cell, impl=impl)  # its results change from call to call: a mismatch
    problem = get_problem("matvec")
    inputs = make_inputs(problem, 8, 91)
    probes = make_probes(problem, 8, inputs, seen["vjp"][2].shape, 91)  # the output's shape
    for op in ("primal", "jvp", "vjp"):
        for k in inputs:
            np.testing.assert_array_equal(seen[op][0][k], inputs[k])
    for k in probes.tangent:
        np.testing.assert_array_equal(seen["jvp"][1][k], probes.tangent[k])
    np.testing.assert_array_equal(seen["vjp"][2], probes.cotangent)


def test_a_full_matrix_no_worker_can_build_is_not_timed(plugins_on_path, monkeypatch):
    """bench asked a right implementation for each full matrix at every
    correctness size, a declared problem's 200,000 x 200,000 Jacobian too:
    its worker ran out of memory, an ``error``. As in check, a matrix that
    does not fit a worker's cap four times (here wide's 80 x 80 under 100 kB)
    is ``unsupported``, and the operations that build none are timed."""
    monkeypatch.setenv("ADJOINTBENCH_MEMORY_LIMIT_GB", str(1e5 / 2**30))
    cells = plan_cells(["wide:implementation"], ["wide:problem"],
                       ["jvp", "jacfwd", "jacrev", "hessian"], ["float64"], suite="bench",
                       methods=["rule"], budget_s=0.01)
    records = {r.op: r for r in map(run_cell, cells)}
    assert records["jvp"].outcome == "ok" and records["jvp"].ratio_to_primal > 0
    for op in ("jacfwd", "jacrev", "hessian"):
        assert records[op].outcome == "unsupported", records[op]
        assert records[op].message.startswith(
            f"{op} of wide at size 80 is a 80 x 80 matrix, 0.0 GiB in float64: more than a "
            "worker can build in its 0.0 GiB (its memory cap, ADJOINTBENCH_MEMORY_LIMIT_GB)")


def test_a_bench_after_a_check_judges_its_timed_results_and_says_how_many(tmp_path, capsys):
    args = ["--impl", "numpy", "--problem", "matvec", "--op", "primal,vjp", "--quiet",
            "--out", str(tmp_path)]
    assert main(["check", *args, "--size", "8"]) == 0  # its references, in the oracle's cache
    capsys.readouterr()
    assert main(["bench", *args, "--size", "8,128", "--budget", "0.01", "--rounds", "1",
                 "--resume"]) == 0
    out = capsys.readouterr().out
    assert "timed results judged against the oracle: 2 of 4 ok cells (the others at sizes" in out
    records, _ = ResultsFile(tmp_path).read()
    judged = {r.size: r.max_rel_err for r in records if r.suite == "bench" and r.op == "vjp"}
    assert judged[128] is None and 0 <= judged[8] < 1e-14  # numpy's VJP of A x at n = 8
    from adjointbench.reports.load import load
    from adjointbench.reports.tables import timing_table

    table = timing_table(load(tmp_path).results)
    row = (table["op"] == "vjp") & (table["size"] == 8)
    assert table.loc[row, "max_rel_err"].item() == judged[8]  # the Timings table's column
    from adjointbench.reports.render import render

    page = render(load(tmp_path), tmp_path / "report").read_text()  # and its caption's count
    assert "judged against the oracle (2 of 4 ok timed cells: up to each problem" in page
