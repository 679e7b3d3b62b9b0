"""Adjoint-sensitivity problems: the design's values, every method against the
oracle through the one protocol, the unrolling curve, and the ill-conditioned
system."""

import json

import numpy as np
import pytest

from adjointbench.cli import main
from adjointbench.reference import get_problem, make_inputs
from adjointbench.suites.cells import plan_cells
from adjointbench.impls.registry import load_implementation
from adjointbench.suites.executors import LocalExecutor
from adjointbench.suites.runner import run_cell

IMPLS = ["numpy", "jax", "torch", "jax_implicit", "torch_implicit"]
SMALL = [c for c in plan_cells(IMPLS, ops=["gradient"], dtypes=["float64"]) if c.size <= 100]


def test_the_worked_examples_keep_the_design_values():
    inputs = lambda name: make_inputs(get_problem(name), get_problem(name).smallest_size)
    np.testing.assert_array_equal(inputs("linear_system")["theta"], [1, 1, 1])
    np.testing.assert_array_equal(inputs("linear_system")["A"], [[10, 2, 1], [2, 5, 1], [1, 1, 3]])
    np.testing.assert_array_equal(inputs("scalar_nonlinear")["theta"], [0.9, 0.9, 180])
    np.testing.assert_array_equal(inputs("nonlinear_system")["theta"], [1, -2, 1, 1.2])
    np.testing.assert_array_equal(inputs("forced_oscillator_terminal")["theta"], [0.4, 1.8, 0.6, 1.1])
    assert len(inputs("forced_oscillator_trajectory")["times"]) == 100
    np.testing.assert_array_equal(inputs("unrolled_gd")["theta"], [0.05])
    assert max(get_problem("diffusion").sizes) >= 10_000
    assert max(get_problem("neural_ode_params").sizes) >= 10_000


def test_linear_system_oracle_matches_the_adjoint_by_hand(oracle):
    A, b_true = np.array([[10.0, 2, 1], [2, 5, 1], [1, 1, 3]]), np.array([5.0, 4, 3])
    x = np.linalg.solve(A, np.ones(3))
    # J = 0.5 ||x - x_ref||^2, x = A^-1 theta:  dJ/dtheta = A^-T (x - x_ref)
    expected = np.linalg.solve(A.T, x - np.linalg.solve(A, b_true))
    got = oracle.reference("linear_system", 3).jacobian.value.ravel()
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_every_method_is_planned_and_offered_somewhere():
    executors = {name: LocalExecutor(load_implementation(name)) for name in IMPLS}
    offered = {(c.problem, c.method) for c in SMALL
               if executors[c.impl].supports(c.problem, "gradient", c.method)}
    for problem in ("linear_system", "scalar_nonlinear", "diffusion"):
        for method in ("fd_forward", "fd_central", "forward_sensitivity", "adjoint",
                       "unrolled", "implicit"):
            assert (problem, method) in offered
    for problem in ("forced_oscillator_terminal", "forced_oscillator_trajectory"):
        for method in ("forward_sensitivity", "adjoint", "unrolled"):
            assert (problem, method) in offered


@pytest.mark.parametrize("cell", SMALL, ids=lambda c: c.id)
def test_gradient_against_the_oracle(cell, oracle):
    record = run_cell(cell, oracle)
    if record.outcome == "unsupported":
        pytest.skip(record.message)
    if cell.problem == "nonlinear_system" and cell.method not in ("fd_forward", "fd_central"):
        # the triple root: methods that need (dr/dx)^-1 cannot work there
        assert record.outcome == "ill_conditioned", record
        assert "condition estimate" in record.message
        return
    assert record.outcome == "ok", record.message
    assert record.method == cell.method and record.op == "gradient"
    assert len(record.value) == cell.size and record.time_median_s > 0 and record.rounds >= 3
    assert record.max_rel_err <= record.tol


def test_a_gradient_cell_is_timed_at_its_first_point_only(oracle):
    """The timing (rounds of calls) is the cell's, taken once; every point
    is still checked against its own reference, with two calls."""
    [cell] = plan_cells(["numpy"], ["forced_oscillator_terminal"], methods=["adjoint"],
                        dtypes=["float64"])
    executor = LocalExecutor(load_implementation("numpy"))
    timed, executed = [], []
    time, execute = executor.time, executor.execute
    executor.time = lambda task, *a: timed.append(task.inputs) or time(task, *a)
    executor.execute = lambda task: executed.append(task.inputs) or execute(task)
    record = run_cell(cell, oracle, executor=executor)
    assert record.outcome == "ok", record.message
    assert len(timed) == 1 and len(executed) == cell.points - 1
    assert record.rounds >= 3 and record.time_median_s > 0
    first, *others = timed + executed
    assert all(not np.array_equal(first["theta"], other["theta"]) for other in others)


@pytest.mark.parametrize("impl", ["jax", "torch"])
def test_unrolling_curve_is_gd_trajectorys_jacobian(impl, oracle):
    record = run_cell(plan_cells([impl], ["gd_trajectory"], ["jacfwd"], ["float64"])[0], oracle)
    assert record.outcome == "ok", record.message
    curve, reference = np.array(record.value).ravel(), np.array(record.reference).ravel()
    # the record keeps the values of its worst input point
    theta = make_inputs(get_problem("gd_trajectory"), 1, point=record.point)["theta"][0]
    t = np.arange(1001)
    closed_form = -0.1 * t * (1 - 0.1 * theta) ** (t - 1) * 0.5
    np.testing.assert_allclose(reference, closed_form, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(curve, closed_form, rtol=1e-12, atol=1e-300)


def test_implicit_answer_is_the_fixed_points(oracle):
    for impl in ("jax_implicit", "torch_implicit"):
        [cell] = plan_cells([impl], ["gd_fixed_point"], methods=["implicit"], dtypes=["float64"])
        record = run_cell(cell, oracle)
        assert record.outcome == "ok" and record.value == [0.0], record


def test_float32_gradient_cells_are_recorded_unsupported_with_the_reason(oracle):
    [cell] = plan_cells(["numpy"], ["linear_system"], methods=["adjoint"], dtypes=["float32"])
    record = run_cell(cell, oracle)
    assert record.outcome == "unsupported" and "float64 only" in record.message


def test_check_writes_method_and_value(tmp_path):
    status = main(["check", "--problem", "linear_system", "--method", "adjoint,fd_central",
                   "--dtype", "float64", "--out", str(tmp_path), "--quiet"])
    assert status == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"adjoint", "fd_central"}
    assert {r["outcome"] for r in records} == {"ok", "unsupported"}
    for r in records:
        assert r["op"] == "gradient"
        if r["outcome"] == "ok":
            assert len(r["value"]) == 3 and r["max_rel_err"] <= r["tol"]
