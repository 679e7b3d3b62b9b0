"""Verdicts the code under test cannot corrupt: several input points,
reentrancy, purity, workers per implementation, and a cache checked on read.
Each case is a small misbehaving plug-in in tests/plugins/untrustworthy.py."""

import json
import os
import sys

import numpy as np
import pytest

from adjointbench.cli import main
from adjointbench.reference import Oracle, get_problem, make_inputs
from adjointbench.reference.steady_state import THETA_NEIGHBOURHOOD
from adjointbench.suites.cells import Cell, plan_cells
from adjointbench.suites.isolation import IsolatedRunner
from adjointbench.suites.runner import run_cell
from adjointbench.suites.sweep import run_sweep


def _outcomes(impl, problem, ops, oracle, **kw):
    cells = plan_cells([f"untrustworthy:{impl}"], [problem], ops, ["float64"], **kw)
    return {(c.op, c.size): run_cell(c, oracle) for c in cells}


def test_a_rule_right_only_where_cos_is_positive_is_caught_at_another_point(plugins_on_path,
                                                                            oracle):
    for (op, size), record in _outcomes("cos_sign", "scalar_sin", ["jvp", "vjp"], oracle).items():
        assert record.outcome == "mismatch", (op, record)
        assert record.point > 0 and f"at input point {record.point}" in record.message
    one_point = plan_cells(["untrustworthy:cos_sign"], ["scalar_sin"], ["jvp"], ["float64"],
                           points=1)
    assert run_cell(one_point[0], oracle).outcome == "ok"  # why one point is not enough


@pytest.mark.parametrize("impl", ["fitted_to_worked_example", "gradient_cached_by_size"])
def test_a_gradient_right_only_at_the_worked_example_is_caught_at_another_point(
        impl, plugins_on_path, oracle):
    """Sensitivity problems keep the worked example's values at point 0 and
    move theta near it at points 1 and 2 (the fixed data stay put)."""
    [record] = _outcomes(impl, "linear_system", ["gradient"], oracle,
                         methods=["adjoint"]).values()
    assert record.outcome == "mismatch", record
    assert record.point > 0 and f"at input point {record.point}" in record.message
    assert "adjoint gradient for input 'theta'" in record.message
    [one_point] = plan_cells([f"untrustworthy:{impl}"], ["linear_system"], ["gradient"],
                             ["float64"], methods=["adjoint"], points=1)
    assert run_cell(one_point, oracle).outcome == "ok"  # why one point is not enough


def test_sensitivity_points_move_theta_alone_near_the_worked_example():
    problem = get_problem("scalar_nonlinear")
    worked = make_inputs(problem, 3)
    for point in (1, 2):
        moved = make_inputs(problem, 3, point=point)
        ratio = moved["theta"] / worked["theta"]
        assert np.all(ratio != 1) and np.all(np.abs(np.log(ratio)) <= THETA_NEIGHBOURHOOD)
        for name in problem.inputs[1:]:  # the worked example's fixed data
            np.testing.assert_array_equal(moved[name], worked[name])


@pytest.mark.parametrize("impl, problem, ops", [
    ("float32_residual", "broadcast_sin", ["jvp", "vjp"]),
    ("float32_tangent", "matvec", ["jvp"]),
    ("float32_cotangent", "softmax", ["vjp"])])
def test_data_kept_in_float32_is_caught_at_a_float64_point_of_its_own(plugins_on_path, oracle,
                                                                      impl, problem, ops):
    """Points 0 and 1 are float32-exact, shared with the float32 cells, and
    there these rules lose nothing; point 2 of a float64 cell is not."""
    for (op, size), record in _outcomes(impl, problem, ops, oracle).items():
        assert record.outcome == "mismatch" and record.point == 2, (op, size, record)
        assert "not float32-exact" in record.message
    float32 = plan_cells([f"untrustworthy:{impl}"], [problem], ops, ["float32"])
    assert {run_cell(c, oracle).outcome for c in float32} == {"ok"}  # float32 data is exact


def test_a_float64_cells_own_point_is_the_shared_point_unrounded():
    from adjointbench.reference.problem import float32_exact, seeded_point

    problem = get_problem("matvec")
    assert [seeded_point(problem, k, "float64") for k in range(4)] == [0, 1, -2, -3]
    assert [seeded_point(problem, k, "float32") for k in range(4)] == [0, 1, 2, 3]
    shared, own = make_inputs(problem, 8, point=2), make_inputs(problem, 8, point=-2)
    for name in problem.inputs:
        assert np.array_equal(float32_exact(own[name]), shared[name])
        assert not np.array_equal(own[name], shared[name])
    sensitivity = get_problem("linear_system")  # declared exactly: no float32 cells to share
    assert seeded_point(sensitivity, 2, "float64") == 2


def test_an_lu_cached_by_shape_is_caught_at_the_second_point(plugins_on_path, oracle):
    records = _outcomes("cache_by_shape", "linear_solve", ["jvp", "vjp"], oracle)
    assert {r.outcome for r in records.values()} == {"mismatch"}
    assert all(r.point > 0 for r in records.values())


@pytest.mark.parametrize("impl, ops", [("zero_cotangent", ["vjp", "transpose"]),
                                       ("zero_tangent", ["jvp", "transpose", "linearity"])])
def test_rules_that_zero_their_probes_are_caught_at_every_size(plugins_on_path, oracle, impl,
                                                               ops):
    records = _outcomes(impl, "softmax", ops, oracle)
    assert len({size for _, size in records}) == 3
    for record in records.values():
        assert record.outcome == "mismatch" and "mutated its" in record.message, record


def test_a_right_value_then_a_scribbled_cotangent_is_reported_as_impurity(plugins_on_path,
                                                                          oracle):
    for record in _outcomes("scale_cotangent", "softmax", ["vjp"], oracle).values():
        assert record.outcome == "mismatch"
        assert "mutated its cotangent in place" in record.message
        assert "got" not in record.message  # never blamed on the value


def test_right_values_in_one_reused_buffer_are_caught_at_the_second_point(plugins_on_path,
                                                                          oracle):
    """Each call is right and two calls agree, but every call returns the same
    array: the second point's call overwrites what the first returned."""
    records = _outcomes("static_output", "softmax", ["jvp", "linearity"], oracle)
    assert len(records) == 6
    for (op, _), record in records.items():
        assert record.outcome == "mismatch", record
        assert "changed a result it had already returned" in record.message, record
        assert record.point == (1 if op == "jvp" else 0)  # linearity's second jvp at point 0
    with IsolatedRunner(timeout_s=60, oracle=oracle) as runner:  # and in its own worker
        [isolated] = run_sweep(plan_cells(["untrustworthy:static_output"], ["softmax"], ["jvp"],
                                          ["float64"], [4]), oracle, progress=False,
                               runner=runner.run)
    assert isolated.outcome == "mismatch" and isolated.point == 1, isolated
    # a host buffer that only to_numpy reuses is not the implementation's result
    staged = _outcomes("staged_copies", "softmax", ["primal", "jvp", "linearity"], oracle)
    assert {r.outcome for r in staged.values()} == {"ok"}, staged


def test_torch_tensors_without_a_to_numpy_are_judged_as_arrays(plugins_on_path, oracle):
    """A plug-in may hand back tensors and leave to_numpy out: the default
    converts them. One tensor written again at every call was then unseen
    (the harness's copy of the first result was the tensor itself: 30
    cells ok), and tensors requiring grad were an error (numpy() refused)."""
    pytest.importorskip("torch")
    static = _outcomes("static_tensor", "softmax", ["jvp", "linearity"], oracle)
    for record in static.values():
        assert record.outcome == "mismatch", record
        assert "changed a result it had already returned" in record.message, record
    grad = _outcomes("tensors_requiring_grad", "softmax", ["primal", "jvp", "vjp", "transpose"],
                     oracle)
    assert {r.outcome for r in grad.values()} == {"ok"}, grad


def test_right_values_in_a_pool_of_reused_buffers_are_caught_when_the_pool_wraps(
        plugins_on_path, oracle):
    """Each call writes into the next of a pool of arrays handed out in turn,
    so what a call returned is overwritten POOL_SIZE calls later, long after
    the execution that follows it. Two calls per point: the pool wraps at
    point POOL_SIZE // 2, in the cell's own worker as in this process."""
    from untrustworthy import POOL_SIZE

    [cell] = plan_cells(["untrustworthy:pooled_output"], ["softmax"], ["jvp"], ["float64"], [4],
                        points=POOL_SIZE // 2 + 1)
    with IsolatedRunner(timeout_s=60, oracle=oracle) as runner:
        for record in (run_cell(cell, oracle), runner.run(cell)):
            assert record.outcome == "mismatch" and record.point == POOL_SIZE // 2, record
            assert "changed a result it had already returned" in record.message, record
    unwrapped = plan_cells(["untrustworthy:pooled_output"], ["softmax"], ["jvp"], ["float64"],
                           [64], points=POOL_SIZE // 2)
    assert run_cell(unwrapped[0], oracle).outcome == "ok"  # right until the pool wraps


def test_results_in_one_allocation_overlap_and_results_in_two_do_not():
    """What decides which older results are looked at again (suites/purity.py)."""
    from adjointbench.suites.purity import allocation_spans, overlapping

    scratch, other = np.zeros((4, 4)), np.zeros((4, 4))
    assert overlapping(allocation_spans(scratch[0]), allocation_spans((scratch[1],)))
    assert overlapping(allocation_spans([scratch.T[::2]]), allocation_spans({"y": scratch}))
    assert not overlapping(allocation_spans(scratch), allocation_spans(other))
    assert allocation_spans((np.zeros(0), 1.0)) == ()
    torch = pytest.importorskip("torch")
    storage = torch.zeros(4, 4)  # each .numpy() is a new array over the same memory
    assert overlapping(allocation_spans(storage.numpy()), allocation_spans(storage[2:].numpy()))
    assert not overlapping(allocation_spans(storage.numpy()), allocation_spans(other))


def test_results_returned_as_python_numbers_are_judged_by_the_precision_they_hold(
        plugins_on_path, oracle):
    """A built-in float, or a list of them, has no dtype: a float32 result's
    ``.item()`` or ``.tolist()`` is a float32 result (the same outcomes as
    numpy's, both dtypes), while math.sin's float64 in a float32 cell is
    not, nor a list of float64 values."""
    problems = ["scalar_sin", "scalar_mul", "l2_loss", "softmax", "matvec"]
    ops = ["primal", "jvp", "vjp", "hvp", "jacrev"]
    impls = ("numpy", "untrustworthy:python_scalars", "untrustworthy:python_lists")
    outcomes = {impl: {(c.problem, c.op, c.size, c.dtype): run_cell(c, oracle).outcome
                       for c in plan_cells([impl], problems, ops, ["float64", "float32"])}
                for impl in impls}
    assert outcomes["untrustworthy:python_scalars"] == outcomes["numpy"]
    assert outcomes["untrustworthy:python_lists"] == outcomes["numpy"]
    assert "ok" in outcomes["numpy"].values()
    [float32] = plan_cells(["untrustworthy:python_scalars"], ["l2_loss"], ["jvp"], ["float32"],
                           [64])
    with IsolatedRunner(timeout_s=60, oracle=oracle) as runner:  # a float crosses as a float
        assert runner.run(float32).outcome == "ok"
    for dtype, outcome in (("float64", "ok"), ("float32", "mismatch")):
        [cell] = plan_cells(["untrustworthy:float64_math"], ["scalar_sin"], ["primal"], [dtype])
        record = run_cell(cell, oracle)
        assert record.outcome == outcome, record
    assert "a Python float that float32 cannot hold exactly" in record.message
    from adjointbench.suites.compare import WrongResult, validate
    with pytest.raises(WrongResult, match="a Python list that float32 cannot hold exactly"):
        validate([0.5, 0.1], (2,), "float32", "jvp output")
    assert validate([[0.5, 2.0]], (1, 2), "float32", "jvp output").dtype == np.float32
    with pytest.raises(WrongResult, match="has dtype object"):  # beyond every float
        validate(10**400, (), "float64", "primal output")


def test_right_on_the_first_call_only_is_caught_in_check_bench_and_gradient(plugins_on_path,
                                                                            oracle):
    impl = "untrustworthy:first_call_only"
    [check] = plan_cells([impl], ["softmax"], ["vjp"], ["float64"], [4])
    [gradient] = plan_cells([impl], ["linear_system"], methods=["adjoint"], dtypes=["float64"])
    bench = Cell("softmax", impl, "vjp", 100, suite="bench", budget_s=0.01)
    for cell in (check, gradient, bench):
        record = run_cell(cell, oracle)
        assert record.outcome == "mismatch" and "not reentrant" in record.message, record


def test_sums_taken_in_another_order_each_call_are_reentrant_enough(plugins_on_path, oracle):
    """Right to rounding but not bitwise reproducible (a threaded or atomic
    reduction): ok in both dtypes; what rounding allows stays far below the
    1e-3 of a stateful rule (tests/testing: caught)."""
    from adjointbench.suites.purity import reordering_allowance

    cells = plan_cells(["untrustworthy:reordering_sums"], ["matvec"], ["jvp", "linearity"],
                       sizes=[32])
    records = [run_cell(cell, oracle) for cell in cells]
    assert {r.dtype for r in records} == {"float64", "float32"}
    assert all(r.outcome == "ok" for r in records), [r.message for r in records]
    assert reordering_allowance(cells[0]) < 1e-12 and reordering_allowance(cells[1]) < 1e-4

def test_quick_catches_a_rule_right_at_the_smallest_size_only(plugins_on_path, tmp_path):
    status = main(["check", "--impl", "untrustworthy:right_at_smallest_only", "--problem",
                   "softmax", "--op", "vjp", "--quick", "--in-process", "--quiet",
                   "--out", str(tmp_path)])
    assert status == 1
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {(r["size"], r["outcome"]) for r in records} == {(4, "ok"), (64, "mismatch")}


def test_a_monkeypatching_plug_in_touches_neither_numpy_nor_the_cache(plugins_on_path,
                                                                      tmp_path):
    cache = tmp_path / "cache"
    cells = [Cell(p, impl, "jvp", size, points=1) for p, size in (("softmax", 4), ("l2_loss", 4))
             for impl in ("untrustworthy:monkeypatcher", "numpy")]
    with IsolatedRunner(timeout_s=60, oracle=Oracle(cache)) as runner:
        records = run_sweep(cells, runner.oracle, progress=False, runner=runner.run)
    by_impl = {(r.impl, r.problem): r.outcome for r in records}
    assert by_impl[("untrustworthy:monkeypatcher", "softmax")] == "mismatch"
    assert by_impl[("numpy", "softmax")] == by_impl[("numpy", "l2_loss")] == "ok"
    # a later clean run trusts the cache, and the cache is right
    clean = [run_cell(Cell(p, "numpy", "jvp", 4, points=1), Oracle(cache))
             for p in ("softmax", "l2_loss")]
    assert {r.outcome for r in clean} == {"ok"}


def test_a_tampered_cache_entry_is_discarded_and_recomputed(tmp_path):
    oracle = Oracle(tmp_path)
    good = oracle.reference("softmax", 4)
    entry = oracle.path("softmax", 4, 0)
    other = oracle.path("l2_loss", 4, 0)
    Oracle(tmp_path).reference("l2_loss", 4)
    # one problem's entry copied over another's
    entry.write_text(other.read_text())
    with pytest.warns(UserWarning, match="key does not match"):
        again = Oracle(tmp_path).reference("softmax", 4)
    np.testing.assert_array_equal(again.jvp.value, good.jvp.value)
    # its version field edited
    data = json.loads(entry.read_text())
    data["key"]["oracle_version"] = "999"
    entry.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="key does not match"):
        Oracle(tmp_path).reference("softmax", 4)
    # a value edited, key untouched
    data = json.loads(entry.read_text())
    data["reference"]["jvp"]["value"][0] += 1.0
    entry.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="checksum"):
        again = Oracle(tmp_path).reference("softmax", 4)
    np.testing.assert_array_equal(again.jvp.value, good.jvp.value)


def _isolated(cells, tmp_path):
    with IsolatedRunner(timeout_s=60, oracle=Oracle(tmp_path / "cache")) as runner:
        return run_sweep(cells, runner.oracle, progress=False, runner=runner.run)


@pytest.mark.parametrize("impl", ["untrustworthy:smuggler", "untrustworthy:hijacker"])
def test_a_result_that_runs_code_when_read_never_runs_in_the_harness(plugins_on_path, tmp_path,
                                                                     monkeypatch, impl):
    """A plug-in's object whose conversion (or unpickling) would make every
    comparison pass: converted in the worker (smuggler), or refused when a
    patched worker sends something else (hijacker). Its wrong primal is never ok,
    numpy's right one is, and no plug-in code ran in this process."""
    monkeypatch.delenv("UNTRUSTWORTHY_RAN_IN", raising=False)
    cells = [Cell("softmax", name, "primal", 4, points=1) for name in (impl, "numpy")]
    records = {r.impl: r for r in _isolated(cells, tmp_path)}
    expected = "mismatch" if impl.endswith("smuggler") else "error"
    assert records[impl].outcome == expected, records[impl].message
    assert records["numpy"].outcome == "ok"
    if expected == "error":
        assert "not plain data" in records[impl].message
    assert "UNTRUSTWORTHY_RAN_IN" not in os.environ
    assert "untrustworthy" not in sys.modules  # never imported here, so never run here


def test_a_worker_can_neither_relabel_its_bench_record_nor_drop_its_warning(plugins_on_path,
                                                                            tmp_path):
    cell = Cell("softmax", "untrustworthy:relabeller", "vjp", 4, suite="bench", budget_s=0.01)
    [record] = _isolated([cell], tmp_path)
    assert record.outcome == "ok", record.message
    assert (record.impl, record.problem, record.op) == (cell.impl, "softmax", "vjp")
    assert record.ratio_to_primal == 0.5  # what it measured is its own to report ...
    assert "0.50x its primal" in record.timing_warning  # ... the verdict on it is not


def test_records_a_worker_writes_into_results_jsonl_are_not_kept(plugins_on_path, tmp_path,
                                                                  monkeypatch, capsys):
    """Its worker turns every mismatch in results.jsonl into ok (in place, the
    same size) and appends an ok record of its own: the harness finds it
    before its next write, puts its own records back and fails the run."""
    from adjointbench.suites.results import ResultsFile

    monkeypatch.setenv("UNTRUSTWORTHY_RESULTS", str(tmp_path / "results.jsonl"))
    status = main(["check", "--impl", "untrustworthy:record_forger", "--problem", "softmax",
                   "--op", "jvp,vjp,primal", "--size", "4", "--dtype", "float64",
                   "--out", str(tmp_path), "--quiet", "--workers", "1"])
    assert status == 1
    records, damaged = ResultsFile(tmp_path).read()
    assert damaged == 0 and len(records) == 3  # the harness's three, nothing else
    assert {r.op: r.outcome for r in records} == {"jvp": "ok", "vjp": "mismatch", "primal": "ok"}
    assert not any(r.message == "forged" for r in records)
    said = capsys.readouterr().out
    assert "altered: " in said and "environment.json was changed" in said
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["machine"] != "forged" and "load_after" in environment


def test_references_a_worker_forges_in_the_oracle_cache_are_not_believed(
        plugins_on_path, tmp_path, monkeypatch, capsys):
    """Its worker writes the cache entries of its cell with a reference equal
    to its own wrong primal (key and checksum as the harness computes them):
    the primal is a mismatch, in this run and the next, and the cache holds
    the oracle's references after each run."""
    from adjointbench.reference.problem import make_inputs as inputs_at

    cache = tmp_path / "cache"
    monkeypatch.setenv("ADJOINTBENCH_CACHE_DIR", str(cache))
    problem = get_problem("softmax")
    for point in range(3):  # a warm cache, as a user's is
        Oracle(cache).reference("softmax", 4, point=point)
    for run in ("first", "second"):
        status = main(["check", "--impl", "untrustworthy:reference_forger", "--problem",
                       "softmax", "--op", "primal", "--size", "4", "--dtype", "float64",
                       "--out", str(tmp_path / run), "--quiet"])
        assert status == 1, run
        [record] = [json.loads(line) for line in (tmp_path / run / "results.jsonl").open()]
        assert record["outcome"] == "mismatch", (run, record)
        for point in range(3):
            x = inputs_at(problem, 4, point=point)["x"]
            softmax = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
            cached = Oracle(cache).reference("softmax", 4, point=point).value.value
            np.testing.assert_allclose(cached, softmax, rtol=1e-14, atol=0)
        assert "altered: the oracle cache entry" in capsys.readouterr().out
    assert main(["check", "--impl", "numpy", "--problem", "softmax", "--op", "primal", "--size",
                 "4", "--dtype", "float64", "--out", str(tmp_path / "numpy"), "--quiet"]) == 0


def test_a_result_in_the_other_byte_order_is_judged_by_its_values(plugins_on_path, oracle):
    """A big-endian float64 array holds every float64 value: it was called a
    dtype mismatch ("has dtype >f8, expected float64"). Its precision is
    still judged: big-endian float32 in a float64 cell is a mismatch."""
    cells = plan_cells(["untrustworthy:big_endian"], ["softmax", "l2_loss"],
                       ["primal", "jvp", "vjp", "jacfwd"], ["float64", "float32"], [4])
    assert {run_cell(c, oracle).outcome for c in cells} == {"ok"}
    with IsolatedRunner(timeout_s=60, oracle=oracle) as runner:  # through a worker too
        assert {runner.run(c).outcome for c in cells[:4]} == {"ok"}
    [rounded] = plan_cells(["untrustworthy:big_endian_float32"], ["softmax"], ["jvp"],
                           ["float64"], [4])
    record = run_cell(rounded, oracle)
    assert record.outcome == "mismatch" and "has dtype float32, expected float64" in record.message


def test_a_result_far_too_large_is_refused_before_it_is_sent(plugins_on_path, oracle):
    """No operation of a problem gives more numbers than (inputs + outputs)^2:
    a result beyond that is the wrong shape, refused where it was returned,
    before it is converted, copied, checked twice and sent (10^8 numbers ran
    past a 20 s timeout at 6.6 GB)."""
    cells = plan_cells(["untrustworthy:oversized"], ["softmax"], ["jvp", "linearity", "vjp"],
                       ["float64"], [4])
    with IsolatedRunner(timeout_s=60, oracle=oracle) as runner:
        isolated = [runner.run(c) for c in cells]
    for records in (isolated, [run_cell(c, oracle) for c in cells]):
        jvp, linearity, vjp = records
        for r in (jvp, linearity):
            assert r.outcome == "mismatch" and r.message.startswith(
                "jvp returned 10,000,000 numbers, more than the 1,088 that any operation of "
                "softmax gives at these inputs"), r.message
        assert vjp.outcome == "ok"


def test_a_bench_cell_whose_timed_calls_return_a_wrong_result_is_a_mismatch(plugins_on_path,
                                                                            oracle):
    """Right in every check, wrong (and fast) only when the bench times it:
    at a size the problem is checked at, the timed calls' result is judged
    against the oracle in the harness, as input point 0 of the check, whose
    inputs and probes the bench times; a right one's error is recorded."""
    oracle.reference("matvec", 8)  # at hand, as after a check
    [check] = plan_cells(["untrustworthy:wrong_when_timed"], ["matvec"], ["vjp"], ["float64"],
                         sizes=[8])
    assert run_cell(check, oracle).outcome == "ok"
    for impl, outcome in (("untrustworthy:wrong_when_timed", "mismatch"), ("numpy", "ok")):
        cell = Cell("matvec", impl, "vjp", 8, budget_s=0.01, suite="bench")
        record = run_cell(cell, oracle)
        assert record.outcome == outcome, record
        if outcome == "mismatch":
            assert "the timed calls returned a wrong result" in record.message
            assert "vjp cotangent: <J^T w, v0>" in record.message and "got 0," in record.message
        else:
            assert 0 <= record.max_rel_err <= record.tol < 1e-10 and record.time_median_s > 0
    beyond = Cell("matvec", "untrustworthy:wrong_when_timed", "vjp", 128, budget_s=0.01,
                  suite="bench")  # beyond matvec's checked sizes (2, 8, 32), no reference
    timed_only = run_cell(beyond, oracle)  # is computed: not judged
    assert timed_only.outcome == "ok" and timed_only.max_rel_err is None


def test_a_bench_cell_up_to_the_largest_checked_size_is_judged_on_a_cold_cache(plugins_on_path,
                                                                              tmp_path):
    """Between matvec's checked sizes (2, 8, 32), at n = 16, and with no
    reference in the cache, the bench computes the reference of its input
    point 0 and judges what the timed calls returned: before, only checked
    sizes with a cached reference were judged (the main job's elementwise
    cells at n = 100 and batched ones at B = 1 never were)."""
    oracle = Oracle(cache_dir=tmp_path)
    try:
        assert not oracle.holds("first", "matvec", 16)
        for impl, outcome in (("untrustworthy:wrong_when_timed", "mismatch"), ("numpy", "ok")):
            record = run_cell(Cell("matvec", impl, "vjp", 16, budget_s=0.01, suite="bench"),
                              oracle)
            assert record.outcome == outcome, record
            if outcome == "mismatch":
                assert "the timed calls returned a wrong result" in record.message
            else:
                assert 0 <= record.max_rel_err <= record.tol < 1e-10 and record.level
        assert oracle.holds("first", "matvec", 16)
    finally:
        oracle.close()
